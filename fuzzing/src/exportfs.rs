//! What the kernel NFS server says back to the agent: `exportfs -v` (the exports active) and
//! nfs-utils' `/var/lib/nfs/etab` (each client's access, checked after every change).

use std::{net::IpAddr, path::PathBuf};

use rwxnfs_agent::{
    exporter::{
        Client, ExportSpec,
        kernel::{Etab, parse_active},
    },
    table::{Access, Squash},
};

/// Input: one text, read both as an `exportfs -v` listing and as an etab.
pub fn exportfs(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let ids = parse_active(text);
    assert!(ids.windows(2).all(|w| w[0] < w[1]), "{ids:?}");
    let etab = Etab::parse(text);
    for export_id in ids.iter().copied().chain([0, 1]) {
        for client in [
            Client::Address(IpAddr::from([10, 0, 0, 1])),
            Client::Address(IpAddr::from([0xfd00, 0, 0, 0, 0, 0, 0, 1])),
        ] {
            for access in [Access::Rw, Access::Ro] {
                let _ = etab.serves(&ExportSpec {
                    export_id,
                    path: PathBuf::from("/exports/volumes/a"),
                    pseudo_path: "/a".into(),
                    clients: vec![(client.clone(), access)],
                    squash: Squash::Root,
                    transport: Default::default(),
                });
            }
        }
    }
}
