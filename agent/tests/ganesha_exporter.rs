//! The Ganesha exporter against a real NFS-Ganesha in a server namespace, with NFS clients in
//! their own namespaces: access is granted, denied, read-only and revoked as the export's
//! client list says, and a restarted Ganesha comes back with every export.
#![allow(clippy::unwrap_used)]

use std::{path::Path, time::Instant};

use rwxnfs_agent::exporter::{Access, Client, ExportSpec, Exporter, Squash};
use rwxnfs_testbed::{GaneshaServer, Netns, NfsOutcome, nfs_cat, nfs_write};

struct Bed {
    dir: tempfile::TempDir,
    host: GaneshaServer,
}

fn bed(prefix: &str) -> Bed {
    let dir = tempfile::tempdir().unwrap();
    let host = GaneshaServer::start(dir.path(), prefix);
    Bed { dir, host }
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
    let link_a = bed.host.netns.link(&node_a, 1);
    let link_b = bed.host.netns.link(&node_b, 2);
    let path = volume(bed.dir.path(), "v1");
    let scratch = bed.dir.path();

    {
        bed.host
            .exporter
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
        bed.host
            .exporter
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
        bed.host
            .exporter
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
        assert!(bed.host.exporter.active().await.unwrap().contains(&101));
        bed.host.exporter.remove(101).await.unwrap();
        bed.host.exporter.remove(101).await.unwrap();
        assert!(!bed.host.exporter.active().await.unwrap().contains(&101));
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
    let link = bed.host.netns.link(&node, 1);
    let (p1, p2) = (volume(bed.dir.path(), "r1"), volume(bed.dir.path(), "r2"));
    std::fs::write(p2.join("data"), b"survives").unwrap();
    bed.host
        .exporter
        .apply(&spec(
            201,
            &p1,
            "/r1",
            vec![(addr(&link.client), Access::Rw)],
        ))
        .await
        .unwrap();
    bed.host
        .exporter
        .apply(&spec(
            202,
            &p2,
            "/r2",
            vec![(addr(&link.client), Access::Rw)],
        ))
        .await
        .unwrap();

    bed.host.ganesha.restart(&bed.host.netns, &bed.host.bus);

    let active = bed.host.exporter.active().await.unwrap();
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
        bed.host
            .exporter
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
    assert_eq!(bed.host.exporter.active().await.unwrap().len(), N as usize);
}
