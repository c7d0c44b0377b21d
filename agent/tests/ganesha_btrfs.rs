//! Enforced capacity through NFS: volumes are btrfs subvolumes with qgroup limits, exported by
//! a real NFS-Ganesha (which needs each subvolume mounted on its own; the agent does that). A
//! client writing past the claim's size gets a quota error; after an online expansion it can
//! write again.
#![allow(clippy::unwrap_used)]

use std::sync::Arc;

use rwxnfs_agent::{
    ExportAgent, Settings,
    access::GrantRequest,
    exports::{CreateRequest, OptionsRequest},
    fs::btrfs::BtrfsFs,
    table::{Access, Squash, Table},
};
use rwxnfs_testbed::{
    GaneshaServer, LoopFs, Netns, NfsOutcome, loopfs_run as run, nfs_cat, nfs_write, require,
};

#[tokio::test]
async fn a_client_cannot_write_past_the_claims_size_until_it_is_expanded() {
    require(&[
        "ip",
        "ganesha.nfsd",
        "dbus-daemon",
        "dbus-send",
        "nfs-cat",
        "nfs-cp",
        "mkfs.btrfs",
        "btrfs",
    ]);
    let btrfs = LoopFs::new("btrfs", 256, &["-q"]);
    run(
        "btrfs",
        &["quota", "enable", &btrfs.mount.to_string_lossy()],
    );
    let dir = tempfile::tempdir().unwrap();
    let server = GaneshaServer::start(dir.path(), "quota");
    let node = Netns::new("q-node");
    let link = server.netns.link(&node, 1);
    let state = dir.path().join("state");
    let exporter = server.exporter.clone();
    let fs = Arc::new(
        BtrfsFs::open(&btrfs.mount)
            .unwrap()
            .mounting_subvolumes(true),
    );
    let agent = ExportAgent::new(
        Settings::default(),
        Table::open(&state).unwrap(),
        fs,
        exporter,
    );

    agent
        .create_export(CreateRequest {
            name: "small".into(),
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
    let grant = GrantRequest {
        name: "small".into(),
        client_id: "node".into(),
        addresses: vec![link.client.clone()],
        access: Some(Access::Rw),
    };
    agent.grant_access(grant).await.unwrap();
    let volume = btrfs.mount.join("volumes/small");
    let mounted = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    assert!(
        mounted.contains(&format!(" {} ", volume.display())),
        "the subvolume is mounted for Ganesha"
    );

    // Most of the 1 MiB is used already; then small files through NFS (libnfs 4.0 cannot write
    // more than ~3.8 KB at once over NFSv4) until the quota says no.
    std::fs::write(volume.join("filler"), vec![0u8; 900 << 10]).unwrap();
    run("sync", &[]);
    let chunk = vec![b'q'; 3000];
    let mut refused = None;
    for i in 0..100 {
        match nfs_write(
            &node,
            &link.server,
            &format!("/small/f{i}"),
            &chunk,
            dir.path(),
        ) {
            NfsOutcome::Ok(_) => {}
            other => {
                refused = Some((i, other));
                break;
            }
        }
    }
    let (written, outcome) = refused.expect("the quota never stopped the client");
    println!("quota reached after {written} files: {outcome:?}");
    assert!(
        matches!(&outcome, NfsOutcome::Other(msg) if msg.contains("DQUOT")),
        "{outcome:?}"
    );
    assert!(
        written >= 1,
        "some room was left below the quota, yet nothing could be written"
    );

    agent.expand_export("small", 4 << 20, 0).await.unwrap();
    assert_eq!(
        nfs_write(
            &node,
            &link.server,
            "/small/after-expansion",
            &chunk,
            dir.path()
        ),
        NfsOutcome::Ok(vec![])
    );
    assert_eq!(
        nfs_cat(&node, &link.server, "/small/f0"),
        NfsOutcome::Ok(chunk.clone())
    );

    agent.delete_export("small", None).await.unwrap();
    let mounted = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    assert!(
        !mounted.contains(&format!(" {} ", volume.display())),
        "unmounted on delete"
    );
    assert!(!volume.exists());
}
