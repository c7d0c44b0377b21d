//! Failover, simulated: two NFS hosts (network namespaces, each with its own Ganesha and
//! agent) share one export root and state directory, standing in for the DRBD-replicated
//! filesystem. The host holding the floating address dies; the other takes over the address,
//! starts Ganesha and the agent, and the client reads what it wrote through the first host,
//! through the same address and the same export id.
#![allow(clippy::unwrap_used)]

use std::{sync::Arc, time::Instant};

use rwxnfs_agent::{
    ExportAgent, Settings,
    access::GrantRequest,
    exporter::{
        Exporter,
        ganesha::{GaneshaExporter, GaneshaSettings, INCLUDE_FILE},
    },
    exports::{CreateRequest, OptionsRequest},
    fs::plain::PlainFs,
    table::{Access, Squash, Table},
};
use rwxnfs_testbed::{Dbus, Ganesha, Netns, NfsOutcome, nfs_cat, nfs_write, require};

/// The floating address lives on subnet 10.77.9.0/24: the server side is the VIP, .1.
const VIP_SUBNET: u8 = 9;

fn host(
    shared: &std::path::Path,
    bus: &Dbus,
    prefix: &str,
) -> (Netns, Ganesha, ExportAgent, Arc<GaneshaExporter>) {
    let ns = Netns::new(prefix);
    let conf_dir = shared.join("state/ganesha");
    std::fs::create_dir_all(&conf_dir).unwrap();
    let ganesha = Ganesha::start(
        &ns,
        bus,
        shared,
        &conf_dir.join(INCLUDE_FILE),
        &shared.join("state/recovery"),
        prefix,
    );
    let exporter = Arc::new(
        GaneshaExporter::new(GaneshaSettings {
            dbus_address: Some(bus.address()),
            name_prefix: Some(prefix.to_owned()),
            conf_dir,
            protocols: vec![4],
        })
        .unwrap(),
    );
    let agent = ExportAgent::new(
        Settings::default(),
        Table::open(&shared.join("state")).unwrap(),
        Arc::new(PlainFs::open(&shared.join("exports")).unwrap()),
        exporter.clone(),
    );
    (ns, ganesha, agent, exporter)
}

#[tokio::test]
async fn a_client_reads_through_the_new_host_what_it_wrote_through_the_old_one() {
    require(&[
        "ip",
        "ganesha.nfsd",
        "dbus-daemon",
        "dbus-send",
        "nfs-cat",
        "nfs-cp",
    ]);
    let dir = tempfile::tempdir().unwrap();
    let shared = dir.path().join("replicated");
    std::fs::create_dir_all(shared.join("exports")).unwrap();
    let bus = Dbus::start(dir.path());
    let node = Netns::new("node");

    // Host A holds the VIP.
    let (ns_a, mut ganesha_a, agent_a, _) = host(&shared, &bus, "hosta");
    let link = ns_a.link(&node, VIP_SUBNET);
    let created = agent_a
        .create_export(CreateRequest {
            name: "pvc-1".into(),
            required_bytes: 1 << 20,
            options: OptionsRequest {
                squash: Some(Squash::None),
                mode: Some(0o777),
                ..Default::default()
            },
            ..Default::default()
        })
        .await
        .unwrap();
    agent_a
        .grant_access(GrantRequest {
            name: "pvc-1".into(),
            client_id: "node".into(),
            addresses: vec![link.client.clone()],
            access: Some(Access::Rw),
        })
        .await
        .unwrap();
    assert_eq!(
        nfs_write(
            &node,
            &link.server,
            "/pvc-1/data",
            b"written via A",
            dir.path()
        ),
        NfsOutcome::Ok(vec![])
    );

    // Host A dies: its NFS server, its agent and its end of the VIP go away.
    let failed = Instant::now();
    ganesha_a.stop();
    drop(agent_a);
    drop(ns_a);

    // Host B takes over in the documented order: (DRBD primary + mount: the shared directory
    // is already there), agent start with reconcile, NFS server, VIP.
    let (ns_b, _ganesha_b, agent_b, exporter_b) = host(&shared, &bus, "hostb");
    let report = agent_b.reconcile().await.unwrap();
    let vip = ns_b.link(&node, VIP_SUBNET);
    assert_eq!(vip.server, link.server, "the same floating address");
    let mut outcome = nfs_cat(&node, &vip.server, "/pvc-1/data");
    for _ in 0..50 {
        if outcome == NfsOutcome::Ok(b"written via A".to_vec()) {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
        outcome = nfs_cat(&node, &vip.server, "/pvc-1/data");
    }
    let takeover = failed.elapsed();
    println!("takeover (host A killed -> client reads through host B): {takeover:?}");
    assert_eq!(outcome, NfsOutcome::Ok(b"written via A".to_vec()));
    assert_eq!(report.activated, ["pvc-1"]);

    // Same export id, same path, same clients: file handles can stay valid.
    let after = agent_b.get_export("pvc-1").await.unwrap();
    assert_eq!(
        (after.export_id, &after.path),
        (created.export_id, &created.path)
    );
    assert_eq!(
        after
            .clients
            .iter()
            .map(|c| c.client_id.as_str())
            .collect::<Vec<_>>(),
        ["node"]
    );
    assert!(
        exporter_b
            .active()
            .await
            .unwrap()
            .contains(&created.export_id)
    );
    // And the new host keeps working: writes through B land in the same export.
    assert_eq!(
        nfs_write(
            &node,
            &vip.server,
            "/pvc-1/after",
            b"written via B",
            dir.path()
        ),
        NfsOutcome::Ok(vec![])
    );
    assert_eq!(
        std::fs::read(shared.join("exports/volumes/pvc-1/after")).unwrap(),
        b"written via B"
    );
}
