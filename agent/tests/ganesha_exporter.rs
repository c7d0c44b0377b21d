//! The Ganesha exporter against a real NFS-Ganesha in a server namespace, with NFS clients in
//! their own namespaces: access is granted, denied, read-only and revoked as the export's
//! client list says, and a restarted Ganesha comes back with every export.
#![allow(clippy::unwrap_used)]

use std::{path::Path, time::Instant};

use rwxnfs_agent::exporter::{
    Access, Client, ExportSpec, Exporter, Squash,
    ganesha::{GaneshaExporter, GaneshaSettings, INCLUDE_FILE},
};
use rwxnfs_testbed::{Dbus, Ganesha, Netns, NfsOutcome, nfs_cat, nfs_write, require};

struct Bed {
    dir: tempfile::TempDir,
    bus: Dbus,
    server: Netns,
    ganesha: Ganesha,
    exporter: GaneshaExporter,
}

fn bed(prefix: &str) -> Bed {
    require(&[
        "ip",
        "ganesha.nfsd",
        "dbus-daemon",
        "dbus-send",
        "nfs-cat",
        "nfs-cp",
    ]);
    let dir = tempfile::tempdir().unwrap();
    let bus = Dbus::start(dir.path());
    let server = Netns::new("srv");
    let conf_dir = dir.path().join("state/ganesha");
    std::fs::create_dir_all(&conf_dir).unwrap();
    let ganesha = Ganesha::start(
        &server,
        &bus,
        dir.path(),
        &conf_dir.join(INCLUDE_FILE),
        &dir.path().join("state/recovery"),
        prefix,
    );
    let exporter = GaneshaExporter::new(GaneshaSettings {
        dbus_address: Some(bus.address()),
        name_prefix: Some(prefix.to_owned()),
        conf_dir,
        protocols: vec![4],
    })
    .unwrap();
    Bed {
        dir,
        bus,
        server,
        ganesha,
        exporter,
    }
}

fn volume(dir: &Path, name: &str) -> std::path::PathBuf {
    let path = dir.join("exports").join(name);
    std::fs::create_dir_all(&path).unwrap();
    path
}

fn spec(id: u32, path: &Path, pseudo: &str, clients: Vec<(Client, Access)>) -> ExportSpec {
    ExportSpec {
        export_id: id,
        path: path.to_owned(),
        pseudo_path: pseudo.into(),
        clients,
        squash: Squash::None,
    }
}

fn addr(a: &str) -> Client {
    Client::Address(a.parse().unwrap())
}

#[tokio::test]
async fn clients_get_exactly_the_access_the_export_grants() {
    let bed = bed("acl");
    let node_a = Netns::new("a");
    let node_b = Netns::new("b");
    let link_a = bed.server.link(&node_a, 1);
    let link_b = bed.server.link(&node_b, 2);
    let path = volume(bed.dir.path(), "v1");
    let scratch = bed.dir.path();

    {
        bed.exporter
            .apply(&spec(
                101,
                &path,
                "/v1",
                vec![(addr(&link_a.client), Access::Rw)],
            ))
            .await
            .unwrap();
        assert_eq!(
            nfs_write(&node_a, &link_a.server, "/v1/f", b"hello", scratch),
            NfsOutcome::Ok(vec![])
        );
        assert_eq!(
            std::fs::read(path.join("f")).unwrap(),
            b"hello",
            "the write reached the export"
        );
        assert_eq!(
            nfs_cat(&node_a, &link_a.server, "/v1/f"),
            NfsOutcome::Ok(b"hello".to_vec())
        );
        assert_eq!(
            nfs_cat(&node_b, &link_b.server, "/v1/f"),
            NfsOutcome::Denied,
            "B is not granted"
        );

        // Grant B read-only: it reads, its writes are refused.
        let both = vec![
            (addr(&link_a.client), Access::Rw),
            (addr(&link_b.client), Access::Ro),
        ];
        bed.exporter
            .apply(&spec(101, &path, "/v1", both))
            .await
            .unwrap();
        assert_eq!(
            nfs_cat(&node_b, &link_b.server, "/v1/f"),
            NfsOutcome::Ok(b"hello".to_vec())
        );
        let write = nfs_write(&node_b, &link_b.server, "/v1/g", b"nope", scratch);
        assert!(
            !matches!(write, NfsOutcome::Ok(_)),
            "a read-only client wrote: {write:?}"
        );
        assert!(!path.join("g").exists());

        // Revoke A.
        bed.exporter
            .apply(&spec(
                101,
                &path,
                "/v1",
                vec![(addr(&link_b.client), Access::Ro)],
            ))
            .await
            .unwrap();
        assert_eq!(
            nfs_cat(&node_a, &link_a.server, "/v1/f"),
            NfsOutcome::Denied,
            "A was revoked"
        );

        // Remove the export: gone for everyone.
        assert!(bed.exporter.active().await.unwrap().contains(&101));
        bed.exporter.remove(101).await.unwrap();
        bed.exporter.remove(101).await.unwrap();
        assert!(!bed.exporter.active().await.unwrap().contains(&101));
        assert_eq!(
            nfs_cat(&node_b, &link_b.server, "/v1/f"),
            NfsOutcome::Denied
        );
    }
}

#[tokio::test]
async fn a_restarted_ganesha_comes_back_with_every_export() {
    let mut bed = bed("restart");
    let node = Netns::new("n");
    let link = bed.server.link(&node, 1);
    let (p1, p2) = (volume(bed.dir.path(), "r1"), volume(bed.dir.path(), "r2"));
    std::fs::write(p2.join("data"), b"survives").unwrap();
    bed.exporter
        .apply(&spec(
            201,
            &p1,
            "/r1",
            vec![(addr(&link.client), Access::Rw)],
        ))
        .await
        .unwrap();
    bed.exporter
        .apply(&spec(
            202,
            &p2,
            "/r2",
            vec![(addr(&link.client), Access::Rw)],
        ))
        .await
        .unwrap();

    bed.ganesha.restart(&bed.server, &bed.bus);

    let active = bed.exporter.active().await.unwrap();
    assert!(
        active.contains(&201) && active.contains(&202),
        "after restart: {active:?}"
    );
    assert_eq!(
        nfs_cat(&node, &link.server, "/r2/data"),
        NfsOutcome::Ok(b"survives".to_vec())
    );
}

#[tokio::test]
async fn add_export_latency() {
    let bed = bed("latency");
    const N: u32 = 200;
    let mut apply = Vec::new();
    for i in 0..N {
        let path = volume(bed.dir.path(), &format!("l{i}"));
        let started = Instant::now();
        bed.exporter
            .apply(&spec(1000 + i, &path, &format!("/l{i}"), vec![]))
            .await
            .unwrap();
        apply.push(started.elapsed());
    }
    apply.sort();
    let p = |q: f64| apply[((apply.len() as f64 - 1.0) * q) as usize];
    println!(
        "Ganesha apply (file + include + AddExport over D-Bus), {N} exports: p50 {:?}, p99 {:?}, max {:?}",
        p(0.5),
        p(0.99),
        p(1.0)
    );
    assert_eq!(bed.exporter.active().await.unwrap().len(), N as usize);
}
