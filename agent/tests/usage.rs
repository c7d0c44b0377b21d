//! Every export the agent answers with carries what its quota charges to it, where the
//! filesystem counts that; where it does not (no quotas) or cannot be read, `used_bytes` is 0,
//! which the proto defines as unknown, and the call still succeeds.
#![allow(clippy::unwrap_used)]

mod common;

use std::{path::PathBuf, sync::Arc};

use common::DirFs;
use rwxnfs_agent::{
    AgentService, ExportAgent, Settings, exporter::fake::FakeExporter, table::Table,
};
use rwxnfs_proto::agent::{
    self as pb, CreateExportRequest, GetExportRequest, ListExportsRequest, agent_server::Agent,
};
use tonic::Request;

const MIB: u64 = 1 << 20;

#[tokio::test]
async fn exports_are_answered_with_their_usage_and_0_where_it_is_unknown() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("exports");
    std::fs::create_dir_all(&root).unwrap();
    let fs = Arc::new(DirFs::new(&root));
    let agent = ExportAgent::new(
        Settings::default(),
        Table::open(&dir.path().join("state")).unwrap(),
        fs.clone(),
        Arc::new(FakeExporter::new()),
    );
    let service = AgentService::new(Arc::new(agent));
    let create = |name: &str| CreateExportRequest {
        name: name.into(),
        ..Default::default()
    };

    let usage = |name: &str| PathBuf::from("volumes").join(name);
    fs.usage
        .lock()
        .unwrap()
        .insert(usage("counted"), Ok(5 * MIB));
    fs.usage
        .lock()
        .unwrap()
        .insert(usage("unreadable"), Err("quota accounting is off".into()));
    let created = service
        .create_export(Request::new(create("counted")))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(created.export.unwrap().used_bytes, (5 * MIB) as i64);
    for name in ["unknown", "unreadable"] {
        service
            .create_export(Request::new(create(name)))
            .await
            .unwrap();
    }

    fs.usage
        .lock()
        .unwrap()
        .insert(usage("counted"), Ok(7 * MIB));
    let got = service
        .get_export(Request::new(GetExportRequest {
            name: "counted".into(),
        }))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(got.export.unwrap().used_bytes, (7 * MIB) as i64);

    let listed = service
        .list_exports(Request::new(ListExportsRequest::default()))
        .await
        .unwrap()
        .into_inner();
    let used: Vec<(String, i64)> = listed
        .exports
        .into_iter()
        .map(|e: pb::Export| (e.name, e.used_bytes))
        .collect();
    assert_eq!(
        used,
        [
            ("counted".to_owned(), (7 * MIB) as i64),
            ("unknown".to_owned(), 0),
            ("unreadable".to_owned(), 0),
        ]
    );
}
