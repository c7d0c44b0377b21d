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

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_grants_and_revokes_of_one_export_keep_every_other_client() {
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
