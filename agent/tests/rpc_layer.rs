//! The agent's RPCs go through the server's RPC layer: every call served on an endpoint is
//! counted once, under its method and its gRPC code, whether it succeeds or fails.
//!
//! One test in this binary, so the process-wide metrics hold exactly its calls.
#![allow(clippy::unwrap_used)]

mod common;

use std::{path::Path, sync::Arc, time::Duration};

use rwxnfs_agent::{config::AgentConfig, exporter::fake::FakeExporter, run};
use rwxnfs_proto::agent::{
    CreateExportRequest, GetExportRequest, ProbeRequest, agent_client::AgentClient,
};
use rwxnfs_server::{Endpoint, Shutdown};
use tonic::Code;

#[tokio::test]
async fn each_call_is_counted_once_under_its_method_and_code() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("exports");
    std::fs::create_dir_all(&root).unwrap();
    let socket = dir.path().join("agent.sock");
    let text = format!(
        "exportRoot: {}\nstateDir: {}/state\nlisten: [\"unix://{}\"]\n",
        root.display(),
        dir.path().display(),
        socket.display()
    );
    let config = AgentConfig::parse(&text, Path::new("test.yaml")).unwrap();
    let agent = run::start(
        &config,
        Arc::new(common::DirFs::new(&root)),
        Arc::new(FakeExporter::new()),
    )
    .unwrap();
    let (stop, shutdown) = Shutdown::manual();
    let server = tokio::spawn(async move {
        run::serve(agent, &config, false, shutdown, Duration::from_secs(1)).await
    });
    let endpoint = Endpoint::Unix(socket);
    let mut channel = None;
    for _ in 0..50 {
        match endpoint.connect().await {
            Ok(c) => {
                channel = Some(c);
                break;
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
    let mut client = AgentClient::new(channel.expect("the agent listens within 5 s"));

    client.probe(ProbeRequest {}).await.unwrap();
    let missing = client
        .get_export(GetExportRequest {
            name: "never-created".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(missing.code(), Code::NotFound, "{missing:?}");
    client
        .create_export(CreateExportRequest {
            name: "counted".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    client
        .get_export(GetExportRequest {
            name: "counted".into(),
        })
        .await
        .unwrap();

    let metrics = rwxnfs_server::metrics::render();
    for line in [
        r#"rwxnfs_rpc_calls_total{rpc="Probe",code="OK"} 1"#,
        r#"rwxnfs_rpc_calls_total{rpc="GetExport",code="NOT_FOUND"} 1"#,
        r#"rwxnfs_rpc_calls_total{rpc="GetExport",code="OK"} 1"#,
        r#"rwxnfs_rpc_calls_total{rpc="CreateExport",code="OK"} 1"#,
        r#"rwxnfs_rpc_duration_seconds_count{rpc="GetExport"} 2"#,
    ] {
        assert!(
            metrics.lines().any(|l| l == line),
            "missing {line:?} in\n{metrics}"
        );
    }

    stop.send(true).unwrap();
    server.await.unwrap().unwrap();
}
