//! What the kernel NFS server says back to the agent: `exportfs -v` (the exports active) and
//! nfs-utils' `/var/lib/nfs/etab` (each client's access, checked after every change; in the
//! `etab` mode the table the agent rewrites, keeping the host's lines).

use std::{
    net::IpAddr,
    path::{Path, PathBuf},
};

use rwxnfs_agent::{
    exporter::{
        Client, ExportSpec,
        kernel::{Etab, etab_line_path, is_agents_line, merge_etab, parse_active, render_etab},
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
    // The etab mode: whatever the table held, the agent's rewrite keeps exactly the host's
    // lines (none under the export root) and then its own, and reads back its own.
    let root = Path::new("/exports");
    let spec = ExportSpec {
        export_id: 7,
        path: root.join("volumes/a"),
        pseudo_path: "/a".into(),
        clients: vec![(Client::Address(IpAddr::from([10, 0, 0, 1])), Access::Rw)],
        squash: Squash::Root,
        transport: Default::default(),
    };
    let ours = render_etab([&spec].into_iter());
    let merged = merge_etab(text, root, &ours);
    assert!(merged.ends_with(&ours), "{merged:?}");
    let kept = &merged[..merged.len() - ours.len()];
    for line in kept.lines() {
        assert!(!is_agents_line(line, root), "{line:?}");
        assert!(
            text.lines().any(|l| l == line),
            "{line:?} is not from the table"
        );
    }
    for line in ours.lines() {
        assert!(is_agents_line(line, root), "{line:?}");
        assert_eq!(etab_line_path(line).as_deref(), Some("/exports/volumes/a"));
    }
    assert_eq!(parse_active(&ours), [7]);
    for line in text.lines() {
        if let Some(path) = etab_line_path(line) {
            assert!(path.len() <= line.len(), "{line:?} -> {path:?}");
        }
    }
}
