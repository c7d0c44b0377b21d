//! The Ganesha exporter against a real NFS-Ganesha in a server namespace, with NFS clients in
//! their own namespaces: access is granted, denied, read-only and revoked as the export's
//! client list says, a restarted Ganesha comes back with every export, and Ganesha's log has
//! no refused call of the exporter's in it.
#![allow(clippy::unwrap_used)]

use std::{path::Path, time::Instant};

use rwxnfs_agent::{
    exporter::{
        Client, ExportSpec, Exporter,
        ganesha::{GaneshaExporter, GaneshaSettings},
    },
    table::{Access, Squash},
};
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
        transport: Default::default(),
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
async fn reconcile_calls_ganesha_only_for_exports_it_does_not_serve_as_the_table_says() {
    let mut bed = bed("reread");
    let node = Netns::new("m");
    let link = bed.host.netns.link(&node, 1);
    let (p1, p2) = (volume(bed.dir.path(), "u1"), volume(bed.dir.path(), "u2"));
    std::fs::write(p2.join("data"), b"new clients").unwrap();
    let nobody = vec![(addr("10.254.0.1"), Access::Rw)];
    let one = spec(301, &p1, "/u1", nobody.clone());
    let two = spec(302, &p2, "/u2", nobody);
    for r in bed
        .host
        .exporter
        .apply_all(&[one.clone(), two.clone()])
        .await
    {
        r.unwrap();
    }
    // An agent restart with the same table: Ganesha serves both as their files say.
    let restarted = exporter_on(&bed);
    for r in restarted.apply_all(&[one.clone(), two.clone()]).await {
        r.unwrap();
    }
    assert_eq!(restarted.activations(), 0, "nothing to tell Ganesha");

    // An agent killed while it granted 302 to the node: the new client list was written
    // (pending) and never reached Ganesha.
    let two_now = spec(302, &p2, "/u2", vec![(addr(&link.client), Access::Rw)]);
    let pending = bed.host.conf_dir.join(".export-302.conf.pending.tmp");
    std::fs::write(
        &pending,
        rwxnfs_agent::exporter::ganesha::render(&two_now, &[4]).unwrap(),
    )
    .unwrap();
    let restarted = exporter_on(&bed);
    assert!(
        !pending.exists(),
        "a killed agent's pending file is removed"
    );
    for r in restarted.apply_all(&[one.clone(), two_now.clone()]).await {
        r.unwrap();
    }
    assert_eq!(restarted.activations(), 1, "only 302 is told to Ganesha");
    assert_eq!(
        nfs_cat(&node, &link.server, "/u2/data"),
        NfsOutcome::Ok(b"new clients".to_vec()),
        "Ganesha serves 302 with the client list of the table"
    );

    // A takeover: Ganesha starts with every export from its files, and nothing is called.
    bed.host.ganesha.restart(&bed.host.netns, &bed.host.bus);
    let taken_over = exporter_on(&bed);
    for r in taken_over.apply_all(&[one, two_now]).await {
        r.unwrap();
    }
    assert_eq!(
        taken_over.activations(),
        0,
        "Ganesha read every file at its start"
    );
    assert_eq!(
        nfs_cat(&node, &link.server, "/u2/data"),
        NfsOutcome::Ok(b"new clients".to_vec())
    );
}

#[tokio::test]
async fn add_export_latency() {
    let bed = bed("latency");
    const N: u32 = 200;
    let node = vec![(addr("10.0.0.1"), Access::Rw)];
    let mut apply = Vec::new();
    for i in 0..N {
        let path = volume(bed.dir.path(), &format!("l{i}"));
        let started = Instant::now();
        bed.host
            .exporter
            .apply(&spec(1000 + i, &path, &format!("/l{i}"), node.clone()))
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

/// 500 pods of a new Deployment are published at once: more calls than the bus lets one
/// connection await replies for (128). Every one is applied; none is refused by the bus.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_hundred_exports_applied_at_once_all_go_live() {
    let bed = bed("burst");
    const N: u32 = 500;
    let exporter = std::sync::Arc::clone(&bed.host.exporter);
    let mut tasks = Vec::new();
    for i in 0..N {
        let path = volume(bed.dir.path(), &format!("b{i}"));
        let exporter = exporter.clone();
        let node = vec![(addr("10.0.0.1"), Access::Rw)];
        tasks.push(tokio::spawn(async move {
            exporter
                .apply(&spec(2000 + i, &path, &format!("/b{i}"), node))
                .await
        }));
    }
    for (i, task) in tasks.into_iter().enumerate() {
        if let Err(e) = task.await.unwrap() {
            panic!("export {} of {N} applied at once: {e}", 2000 + i);
        }
    }
    assert_eq!(bed.host.exporter.active().await.unwrap().len(), N as usize);
}

/// Ganesha's complaints about the exporter's own D-Bus calls.
fn refused_calls(log: &Path) -> Vec<String> {
    std::fs::read_to_string(log)
        .unwrap()
        .lines()
        .filter(|l| l.contains("already active") || l.contains("DBUS :MAJ"))
        .map(str::to_owned)
        .collect()
}

#[tokio::test]
async fn a_create_a_grant_and_a_revoke_leave_no_error_in_ganeshas_log() {
    let bed = bed("quiet");
    let path = volume(bed.dir.path(), "q1");
    let exporter = &bed.host.exporter;
    let a = (addr("10.0.0.1"), Access::Rw);
    let b = (addr("10.0.0.2"), Access::Ro);
    exporter
        .apply(&spec(401, &path, "/q1", vec![]))
        .await
        .unwrap();
    exporter
        .apply(&spec(401, &path, "/q1", vec![a.clone(), b.clone()]))
        .await
        .unwrap();
    exporter
        .apply(&spec(401, &path, "/q1", vec![b.clone()]))
        .await
        .unwrap();
    // An agent that restarts learns what is active before its first call.
    let restarted = exporter_on(&bed);
    restarted
        .apply(&spec(401, &path, "/q1", vec![a, b]))
        .await
        .unwrap();
    restarted.remove(401).await.unwrap();
    assert!(!restarted.active().await.unwrap().contains(&401));
    let refused = refused_calls(&bed.host.ganesha.log);
    assert!(
        refused.is_empty(),
        "Ganesha logged:\n{}",
        refused.join("\n")
    );
}

#[tokio::test]
async fn an_exporter_whose_memory_of_active_exports_is_stale_still_applies() {
    let bed = bed("stale");
    let (p1, p2) = (volume(bed.dir.path(), "s1"), volume(bed.dir.path(), "s2"));
    let client = vec![(addr("10.0.0.1"), Access::Rw)];
    let mine = &bed.host.exporter;
    let other = exporter_on(&bed);
    let before = vec![(addr("10.0.0.9"), Access::Rw)];
    // Removed behind its back: `mine` still takes 501 for active.
    mine.apply(&spec(501, &p1, "/s1", before.clone()))
        .await
        .unwrap();
    other.remove(501).await.unwrap();
    mine.apply(&spec(501, &p1, "/s1", client.clone()))
        .await
        .unwrap();
    // Added behind its back: `mine` still takes 502 for inactive.
    other.apply(&spec(502, &p2, "/s2", before)).await.unwrap();
    mine.apply(&spec(502, &p2, "/s2", client)).await.unwrap();
    let active = mine.active().await.unwrap();
    assert!(active.contains(&501) && active.contains(&502), "{active:?}");
    assert!(
        std::fs::read_to_string(bed.host.exporter.export_file(502))
            .unwrap()
            .contains("Clients = 10.0.0.1;"),
        "the second apply's client list is what is exported"
    );
}

/// A claim created and not yet published has no client: Ganesha is given it with its first
/// client (an `AddExport` costs more the more exports Ganesha has) and it is taken back with
/// its last, also by a reconcile after an agent was killed before it took it back, and a
/// delete of one Ganesha does not have calls nothing.
#[tokio::test]
async fn ganesha_has_an_export_from_its_first_client_to_its_last() {
    let bed = bed("first");
    let node = Netns::new("f");
    let link = bed.host.netns.link(&node, 1);
    let (p1, p2) = (volume(bed.dir.path(), "f1"), volume(bed.dir.path(), "f2"));
    std::fs::write(p1.join("data"), b"first client").unwrap();
    let exporter = &bed.host.exporter;
    let nobody = [spec(601, &p1, "/f1", vec![]), spec(602, &p2, "/f2", vec![])];
    exporter.apply(&nobody[0]).await.unwrap();
    // A reconcile (a restarted agent) with a table of two such exports.
    let restarted = exporter_on(&bed);
    for r in restarted.apply_all(&nobody).await {
        r.unwrap();
    }
    assert_eq!(exporter.activations() + restarted.activations(), 0);
    assert!(exporter.active().await.unwrap().is_empty());
    for id in [601, 602] {
        assert!(!exporter.export_file(id).exists(), "export-{id}.conf");
    }

    let granted = vec![(addr(&link.client), Access::Rw)];
    exporter
        .apply(&spec(601, &p1, "/f1", granted.clone()))
        .await
        .unwrap();
    assert_eq!(exporter.active().await.unwrap(), vec![601]);
    assert_eq!(
        nfs_cat(&node, &link.server, "/f1/data"),
        NfsOutcome::Ok(b"first client".to_vec())
    );

    // Its last client goes: Ganesha no longer has it.
    exporter.apply(&nobody[0]).await.unwrap();
    assert!(exporter.active().await.unwrap().is_empty());
    assert!(!exporter.export_file(601).exists());
    assert_eq!(nfs_cat(&node, &link.server, "/f1/data"), NfsOutcome::Denied);

    // An agent killed after it recorded the last revoke and before it told Ganesha: the
    // reconcile of the restarted agent takes the export back.
    exporter
        .apply(&spec(602, &p2, "/f2", granted))
        .await
        .unwrap();
    let restarted = exporter_on(&bed);
    for r in restarted.apply_all(&nobody).await {
        r.unwrap();
    }
    assert!(restarted.active().await.unwrap().is_empty());
    assert!(!exporter.export_file(602).exists());

    restarted.remove(602).await.unwrap();
    exporter.remove(601).await.unwrap();
    let refused = refused_calls(&bed.host.ganesha.log);
    assert!(
        refused.is_empty(),
        "Ganesha logged:\n{}",
        refused.join("\n")
    );
}

/// A second exporter on the bed's Ganesha, as a restarted agent would have.
fn exporter_on(bed: &Bed) -> GaneshaExporter {
    GaneshaExporter::new(GaneshaSettings {
        dbus_address: Some(bed.host.bus.address()),
        name_prefix: Some(bed.host.ganesha.prefix.clone()),
        conf_dir: bed.host.conf_dir.clone(),
        protocols: vec![4],
    })
    .unwrap()
}
