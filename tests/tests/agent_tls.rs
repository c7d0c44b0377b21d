//! The controller's side of the agent's mutual TLS, against a real agent on loopback: its
//! renewed client certificate and CA bundle are used for new connections without a restart,
//! and an expired certificate, the agent's or its own, is refused with an error that says so.
#![allow(clippy::unwrap_used)]

use std::{
    path::Path,
    sync::Arc,
    time::{Duration, Instant},
};

use rwxnfs_agent::{
    config::AgentConfig,
    exporter::fake::FakeExporter,
    fs::{QuotaKind, open_root},
    run,
};
use rwxnfs_controller::{
    AgentBackend, Backend,
    config::{AgentBackendConfig, BackendConfig, ClientTls},
};
use rwxnfs_server::Shutdown;
use rwxnfs_testbed::{Pki, free_port, publish_secret as publish};

/// An agent on `port` with these files (CA bundle, certificate, key), until the sender fires.
async fn agent(
    dir: &Path,
    port: u16,
    files: (&str, &(String, String)),
) -> (
    tokio::sync::watch::Sender<bool>,
    tokio::task::JoinHandle<()>,
) {
    let tls = dir.join(format!("agent-{port}-{}", rand_suffix()));
    std::fs::create_dir_all(&tls).unwrap();
    std::fs::write(tls.join("ca.crt"), files.0).unwrap();
    std::fs::write(tls.join("tls.crt"), &files.1.0).unwrap();
    std::fs::write(tls.join("tls.key"), &files.1.1).unwrap();
    let root = dir.join("exports");
    std::fs::create_dir_all(&root).unwrap();
    let text = format!(
        "exportRoot: {root}\nstateDir: {state}\nlisten: [\"tcp://127.0.0.1:{port}\"]\n\
         tls: {{ca: {t}/ca.crt, cert: {t}/tls.crt, key: {t}/tls.key}}\n",
        root = root.display(),
        state = dir.join("state").display(),
        t = tls.display(),
    );
    let config = AgentConfig::parse(&text, Path::new("agent.yaml")).unwrap();
    let fs = open_root(&root, Some(QuotaKind::None), false).unwrap();
    let agent = run::start(&config, Arc::from(fs), Arc::new(FakeExporter::new())).unwrap();
    let (stop, shutdown) = Shutdown::manual();
    let server = tokio::spawn(async move {
        run::serve(agent, &config, false, shutdown, Duration::from_secs(1))
            .await
            .unwrap();
    });
    let started = Instant::now();
    while tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .is_err()
    {
        assert!(started.elapsed() < Duration::from_secs(10));
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    (stop, server)
}

fn rand_suffix() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos()
}

/// Probes until it succeeds (a channel reconnects on the call after a failure), for 10 s.
async fn probe_until_ok(backend: &AgentBackend) {
    let started = Instant::now();
    loop {
        match backend.probe().await {
            Ok(_) => return,
            Err(e) if started.elapsed() < Duration::from_secs(10) => {
                tokio::time::sleep(Duration::from_millis(100)).await;
                let _ = e;
            }
            Err(e) => panic!("the agent stayed unreachable: {e}"),
        }
    }
}

#[tokio::test]
async fn the_controllers_renewed_certificates_are_used_without_a_restart_and_expiry_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let (old, new) = (Pki::new("CA 2026"), Pki::new("CA 2027"));
    let secret = dir.path().join("secret");
    std::fs::create_dir_all(&secret).unwrap();
    let old_controller = old.issue("rwxnfs-controller");
    publish(
        &secret,
        1,
        &[
            ("ca.crt", &old.ca_pem),
            ("tls.crt", &old_controller.0),
            ("tls.key", &old_controller.1),
        ],
    );
    let port = free_port();
    let backend = AgentBackend::new(&BackendConfig {
        name: "ha1".into(),
        agent: Some(AgentBackendConfig {
            endpoint: format!("tcp://127.0.0.1:{port}"),
            tls: Some(ClientTls {
                ca: secret.join("ca.crt"),
                cert: secret.join("tls.crt"),
                key: secret.join("tls.key"),
                server_name: Some("rwxnfs-agent".into()),
            }),
            timeout_seconds: Some(5),
        }),
        subdir: None,
        server: Some([127, 0, 0, 1].into()),
        server_name: None,
    })
    .unwrap();

    let (stop, server) = agent(dir.path(), port, (&old.ca_pem, &old.issue("rwxnfs-agent"))).await;
    backend.probe().await.unwrap();
    stop.send(true).unwrap();
    server.await.unwrap();

    // The agent comes back with certificates of the new CA only (as after its own renewal and
    // a failover): the controller, still on the old ones, is refused.
    let (stop, server) = agent(dir.path(), port, (&new.ca_pem, &new.issue("rwxnfs-agent"))).await;
    let err = backend.probe().await.unwrap_err();
    assert_eq!(err.code(), tonic::Code::Unavailable, "{err}");
    assert!(err.message().contains("UnknownIssuer"), "{}", err.message());

    // cert-manager renews the controller's Secret: the next connection uses it.
    let new_controller = new.issue("rwxnfs-controller");
    publish(
        &secret,
        2,
        &[
            ("ca.crt", &new.ca_pem),
            ("tls.crt", &new_controller.0),
            ("tls.key", &new_controller.1),
        ],
    );
    probe_until_ok(&backend).await;
    stop.send(true).unwrap();
    server.await.unwrap();

    // An agent whose certificate has expired: the controller's error says so.
    let (stop, server) = agent(
        dir.path(),
        port,
        (&new.ca_pem, &new.issue_expired("rwxnfs-agent")),
    )
    .await;
    let err = backend.probe().await.unwrap_err();
    assert_eq!(err.code(), tonic::Code::Unavailable, "{err}");
    assert!(
        err.message().contains("certificate expired"),
        "{}",
        err.message()
    );
    println!("an agent with an expired certificate: {}", err.message());
    stop.send(true).unwrap();
    server.await.unwrap();

    // The controller's own certificate expired (its renewal failed): the agent's refusal,
    // as the controller reports it, says so too.
    let expired = new.issue_expired("rwxnfs-controller");
    publish(
        &secret,
        3,
        &[
            ("ca.crt", &new.ca_pem),
            ("tls.crt", &expired.0),
            ("tls.key", &expired.1),
        ],
    );
    let (stop, server) = agent(dir.path(), port, (&new.ca_pem, &new.issue("rwxnfs-agent"))).await;
    let err = backend.probe().await.unwrap_err();
    assert_eq!(err.code(), tonic::Code::Unavailable, "{err}");
    assert!(
        err.message().contains("CertificateExpired"),
        "{}",
        err.message()
    );
    println!(
        "the controller with an expired certificate: {}",
        err.message()
    );
    stop.send(true).unwrap();
    server.await.unwrap();
}
