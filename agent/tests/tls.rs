//! The agent's TCP endpoint requires TLS with a client certificate from the configured CA.
#![allow(clippy::unwrap_used)]

mod common;

use std::{path::Path, sync::Arc, time::Duration};

use rwxnfs_agent::{
    config::AgentConfig,
    exporter::fake::FakeExporter,
    run::{self, RunError},
};
use rwxnfs_proto::agent::{ProbeRequest, agent_client::AgentClient};
use rwxnfs_server::Shutdown;
use rwxnfs_testbed::{Pki, free_port};
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Identity};

fn config(dir: &Path, port: u16, tls: bool) -> AgentConfig {
    let tls = if tls {
        format!(
            "tls: {{ca: {0}/ca.pem, cert: {0}/agent.pem, key: {0}/agent.key}}\n",
            dir.display()
        )
    } else {
        String::new()
    };
    let text = format!(
        "exportRoot: {0}/exports\nstateDir: {0}/state\nlisten: [\"tcp://127.0.0.1:{port}\"]\n{tls}",
        dir.display()
    );
    AgentConfig::parse(&text, Path::new("test.yaml")).unwrap()
}

async fn connect(
    port: u16,
    ca: &str,
    client: Option<(&str, &str)>,
) -> Result<Channel, tonic::transport::Error> {
    let mut tls = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(ca))
        .domain_name("localhost");
    if let Some((cert, key)) = client {
        tls = tls.identity(Identity::from_pem(cert, key));
    }
    Channel::from_shared(format!("https://127.0.0.1:{port}"))
        .unwrap()
        .tls_config(tls)?
        .connect_timeout(Duration::from_secs(5))
        .connect()
        .await
}

#[tokio::test]
async fn only_clients_with_a_certificate_from_the_ca_get_in() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("exports")).unwrap();
    let pki = Pki::new("rwxnfs test CA");
    let (cert, key) = pki.issue("localhost");
    std::fs::write(dir.path().join("ca.pem"), &pki.ca_pem).unwrap();
    std::fs::write(dir.path().join("agent.pem"), &cert).unwrap();
    std::fs::write(dir.path().join("agent.key"), &key).unwrap();

    let port = free_port();
    let config = config(dir.path(), port, true);
    let agent = run::start(
        &config,
        Arc::new(common::DirFs::new(&dir.path().join("exports"))),
        Arc::new(FakeExporter::new()),
    )
    .unwrap();
    let (stop, shutdown) = Shutdown::manual();
    let server = tokio::spawn(async move {
        run::serve(agent, &config, false, shutdown, Duration::from_secs(1)).await
    });
    tokio::time::sleep(Duration::from_millis(300)).await;

    // A controller with a certificate from the agent's CA.
    let (client_cert, client_key) = pki.issue("controller");
    let channel = connect(port, &pki.ca_pem, Some((&client_cert, &client_key)))
        .await
        .unwrap();
    let probe = AgentClient::new(channel)
        .probe(ProbeRequest {})
        .await
        .unwrap()
        .into_inner();
    assert!(probe.ready, "{}", probe.reason);

    // No certificate: the handshake or the first call fails.
    let refused = match connect(port, &pki.ca_pem, None).await {
        Err(_) => true,
        Ok(channel) => AgentClient::new(channel)
            .probe(ProbeRequest {})
            .await
            .is_err(),
    };
    assert!(refused, "a client without a certificate must be refused");

    // A certificate from another CA.
    let (other_cert, other_key) = Pki::new("someone else").issue("controller");
    let refused = match connect(port, &pki.ca_pem, Some((&other_cert, &other_key))).await {
        Err(_) => true,
        Ok(channel) => AgentClient::new(channel)
            .probe(ProbeRequest {})
            .await
            .is_err(),
    };
    assert!(refused, "a certificate from another CA must be refused");

    stop.send(true).unwrap();
    server.await.unwrap().unwrap();
}

#[tokio::test]
async fn tcp_without_tls_is_refused_unless_explicitly_insecure() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("exports")).unwrap();
    let config = config(dir.path(), free_port(), false);
    let agent = run::start(
        &config,
        Arc::new(common::DirFs::new(&dir.path().join("exports"))),
        Arc::new(FakeExporter::new()),
    )
    .unwrap();
    let (_stop, shutdown) = Shutdown::manual();
    let err = run::serve(agent, &config, false, shutdown, Duration::from_secs(1))
        .await
        .unwrap_err();
    assert!(matches!(err, RunError::TcpWithoutTls { .. }), "{err}");
    assert!(err.to_string().contains("--insecure-tcp"));
}
