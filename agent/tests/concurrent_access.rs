//! Grants and revokes of one export arriving at once, as they do when the controller publishes
//! a ReadWriteMany volume to many nodes side by side: each is applied under the export's lock,
//! so none loses another's client.
#![allow(clippy::unwrap_used)]

mod common;

use std::sync::Arc;

use common::DirFs;

use rwxnfs_agent::{
    ExportAgent, Settings,
    access::GrantRequest,
    exporter::{Client, fake::FakeExporter},
    exports::CreateRequest,
    table::{Access, Table},
};

const NODES: u8 = 10;

fn grant(node: u8) -> GrantRequest {
    GrantRequest {
        name: "v".into(),
        client_id: format!("node-{node}"),
        addresses: vec![format!("10.0.0.{node}")],
        access: Some(Access::Rw),
    }
}

/// An agent over a fake server with one export, "v"; the directory, the agent, the server and
/// the export's id.
async fn agent_with_export_v() -> (tempfile::TempDir, Arc<ExportAgent>, FakeExporter, u32) {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("exports");
    std::fs::create_dir_all(&root).unwrap();
    let exporter = FakeExporter::new();
    let agent = Arc::new(ExportAgent::new(
        Settings::default(),
        Table::open(&dir.path().join("state")).unwrap(),
        Arc::new(DirFs::new(&root)),
        Arc::new(exporter.clone()),
    ));
    let id = agent
        .create_export(CreateRequest {
            name: "v".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .export_id;
    (dir, agent, exporter, id)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_grants_and_revokes_of_one_export_keep_every_other_client() {
    let (_dir, agent, exporter, id) = agent_with_export_v().await;

    let grants: Vec<_> = (1..=NODES)
        .map(|node| {
            let agent = agent.clone();
            tokio::spawn(async move { agent.grant_access(grant(node)).await })
        })
        .collect();
    for g in grants {
        g.await.unwrap().unwrap();
    }
    let record = agent.get_export("v").await.unwrap();
    assert_eq!(record.clients.len(), usize::from(NODES), "{record:?}");
    assert_eq!(exporter.get(id).unwrap().clients.len(), usize::from(NODES));

    // Revoke the even nodes at once, while the odd ones are granted again.
    let calls: Vec<_> = (1..=NODES)
        .map(|node| {
            let agent = agent.clone();
            tokio::spawn(async move {
                if node % 2 == 0 {
                    agent.revoke_access("v", &format!("node-{node}")).await
                } else {
                    agent.grant_access(grant(node)).await.map(|_| ())
                }
            })
        })
        .collect();
    for c in calls {
        c.await.unwrap().unwrap();
    }
    let odd: Vec<String> = (1..=NODES)
        .filter(|n| n % 2 == 1)
        .map(|n| format!("node-{n}"))
        .collect();
    let record = agent.get_export("v").await.unwrap();
    let mut kept: Vec<String> = record.clients.iter().map(|c| c.client_id.clone()).collect();
    kept.sort();
    assert_eq!(kept, odd);
    let mut served = exporter.get(id).unwrap().clients;
    served.sort_by_key(|(c, _)| c.to_string());
    let mut expected: Vec<(Client, Access)> = (1..=NODES)
        .filter(|n| n % 2 == 1)
        .map(|n| {
            (
                Client::Address(format!("10.0.0.{n}").parse().unwrap()),
                Access::Rw,
            )
        })
        .collect();
    expected.sort_by_key(|(c, _)| c.to_string());
    assert_eq!(
        served, expected,
        "the server has exactly the table's clients"
    );
}

/// 200 nodes publishing one claim at once (a Deployment's pods starting everywhere): the
/// grants that queue while one is applied are applied together, so the server sees a handful
/// of updates, not 200; a grant that conflicts (the same node asking read-only) is refused on
/// its own and the rest are granted.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn grants_of_one_export_arriving_together_share_one_update() {
    let (_dir, agent, exporter, id) = agent_with_export_v().await;
    agent.grant_access(grant(1)).await.unwrap();
    let before = exporter.calls().len();

    let wide = |n: u16| GrantRequest {
        name: "v".into(),
        client_id: format!("node-{n}"),
        addresses: vec![format!("10.0.{}.{}", n / 256, n % 256)],
        access: Some(Access::Rw),
    };
    let mut calls: Vec<_> = (2..=201u16)
        .map(|n| {
            let agent = agent.clone();
            tokio::spawn(async move { agent.grant_access(wide(n)).await })
        })
        .collect();
    let conflicting = {
        let agent = agent.clone();
        let mut read_only = grant(1);
        read_only.access = Some(Access::Ro);
        tokio::spawn(async move { agent.grant_access(read_only).await })
    };
    for c in calls.drain(..) {
        let record = c.await.unwrap().unwrap();
        assert!(record.clients.len() >= 2, "{record:?}");
    }
    let refused = conflicting.await.unwrap().unwrap_err();
    assert_eq!(
        tonic::Status::from(refused).code(),
        tonic::Code::AlreadyExists
    );

    let record = agent.get_export("v").await.unwrap();
    assert_eq!(record.clients.len(), 201);
    assert_eq!(exporter.get(id).unwrap().clients.len(), 201);
    let applies = exporter.calls().len() - before;
    assert!(
        applies <= 10,
        "{applies} server updates for 200 grants arriving together"
    );
}

/// The external-attacher publishing one claim to many nodes: ten workers, each sending its
/// next publish as soon as its last is answered. A grant applied in another caller's batch is
/// answered then, without its caller waiting for a turn at the export's lock: otherwise each
/// turn would come after one more update of the export, and the ten would go one update at a
/// time (50 updates for 50 grants here) with each caller waiting ten updates.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn grants_from_workers_that_send_the_next_when_answered_are_batched() {
    const WORKERS: u16 = 10;
    const EACH: u16 = 5;
    let (_dir, agent, exporter, id) = agent_with_export_v().await;
    exporter.apply_takes(std::time::Duration::from_millis(20));
    let before = exporter.calls().len();

    let workers: Vec<_> = (0..WORKERS)
        .map(|w| {
            let agent = agent.clone();
            tokio::spawn(async move {
                for i in 0..EACH {
                    let n = w * EACH + i + 1;
                    agent
                        .grant_access(GrantRequest {
                            name: "v".into(),
                            client_id: format!("node-{n}"),
                            addresses: vec![format!("10.0.1.{n}")],
                            access: Some(Access::Rw),
                        })
                        .await
                        .unwrap();
                }
            })
        })
        .collect();
    for w in workers {
        w.await.unwrap();
    }

    assert_eq!(
        exporter.get(id).unwrap().clients.len(),
        usize::from(WORKERS * EACH)
    );
    let updates = exporter.calls().len() - before;
    assert!(
        updates <= usize::from(EACH) * 3,
        "{updates} server updates for {} grants from {WORKERS} workers",
        WORKERS * EACH
    );
}
