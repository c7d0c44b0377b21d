//! The agent's TCP endpoint: mutual TLS with a client certificate from the configured CA that
//! names an allowed client, certificates renewed without a restart, and the request limits.
#![allow(clippy::unwrap_used)]

mod common;

use std::{
    path::{Path, PathBuf},
    sync::Arc,
    time::{Duration, Instant},
};

use rwxnfs_agent::{
    config::AgentConfig,
    exporter::{ExportError, ExportSpec, Exporter, fake::FakeExporter},
    run::{self, RunError},
};
use rwxnfs_proto::agent::{CreateExportRequest, ProbeRequest, agent_client::AgentClient};
use rwxnfs_server::Shutdown;
use rwxnfs_testbed::{Pki, free_port, publish_secret as publish};
use tonic::{
    Code,
    transport::{Certificate, Channel, ClientTlsConfig, Identity},
};

/// The agent's files: its CA bundle, its certificate (for `localhost`) and key.
fn publish_agent(tls: &Path, version: u32, ca: &str, agent: &(String, String)) {
    publish(
        tls,
        version,
        &[("ca.crt", ca), ("tls.crt", &agent.0), ("tls.key", &agent.1)],
    );
}

struct Agent {
    port: u16,
    dir: tempfile::TempDir,
    stop: tokio::sync::watch::Sender<bool>,
    server: tokio::task::JoinHandle<Result<(), RunError>>,
}

impl Agent {
    fn tls(dir: &Path) -> PathBuf {
        dir.join("tls")
    }

    /// An agent on loopback in a new directory, its certificate (for `localhost`) and trust
    /// store from `pki`; `tls` and `extra` as for [`Agent::start`].
    async fn signed_by(pki: &Pki, tls: &str, extra: &str, exporter: Arc<dyn Exporter>) -> Self {
        let dir = tempfile::tempdir().unwrap();
        publish_agent(
            &Agent::tls(dir.path()),
            1,
            &pki.ca_pem,
            &pki.issue("localhost"),
        );
        Self::start(dir, tls, extra, exporter).await
    }

    /// An agent on loopback, its TLS files already published in `dir`/tls; `tls` is added to
    /// its `tls` section, `extra` to the file.
    async fn start(
        dir: tempfile::TempDir,
        tls: &str,
        extra: &str,
        exporter: Arc<dyn Exporter>,
    ) -> Self {
        std::fs::create_dir_all(dir.path().join("exports")).unwrap();
        let port = free_port();
        let text = format!(
            "exportRoot: {0}/exports\nstateDir: {0}/state\nlisten: [\"tcp://127.0.0.1:{port}\"]\n\
             tls: {{ca: {0}/tls/ca.crt, cert: {0}/tls/tls.crt, key: {0}/tls/tls.key{tls}}}\n{extra}",
            dir.path().display()
        );
        let config = AgentConfig::parse(&text, Path::new("test.yaml")).unwrap();
        let agent = run::start(
            &config,
            Arc::new(common::DirFs::new(&dir.path().join("exports"))),
            exporter,
        )
        .unwrap();
        let (stop, shutdown) = Shutdown::manual();
        let server = tokio::spawn(async move {
            run::serve(agent, &config, false, shutdown, Duration::from_secs(1)).await
        });
        let started = Instant::now();
        while tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_err()
        {
            assert!(
                started.elapsed() < Duration::from_secs(10),
                "the agent did not listen"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Self {
            port,
            dir,
            stop,
            server,
        }
    }

    /// A new connection trusting `ca`, presenting `client` if given.
    async fn connect(
        &self,
        ca: &str,
        client: Option<&(String, String)>,
    ) -> Result<AgentClient<Channel>, String> {
        let mut tls = ClientTlsConfig::new()
            .ca_certificate(Certificate::from_pem(ca))
            .domain_name("localhost");
        if let Some((cert, key)) = client {
            tls = tls.identity(Identity::from_pem(cert, key));
        }
        let channel = Channel::from_shared(format!("https://127.0.0.1:{}", self.port))
            .unwrap()
            .tls_config(tls)
            .unwrap()
            .connect_timeout(Duration::from_secs(5))
            .timeout(Duration::from_secs(5))
            .connect()
            .await
            .map_err(|e| chain(&e))?;
        Ok(AgentClient::new(channel))
    }

    /// Probe on a new connection: Ok, or the whole error (the code and every cause).
    async fn probe(&self, ca: &str, client: Option<&(String, String)>) -> Result<(), String> {
        let mut client = self.connect(ca, client).await?;
        probe(&mut client).await
    }

    async fn stop(self) {
        self.stop.send(true).unwrap();
        self.server.await.unwrap().unwrap();
        drop(self.dir);
    }
}

async fn probe(client: &mut AgentClient<Channel>) -> Result<(), String> {
    match client.probe(ProbeRequest {}).await {
        Ok(_) => Ok(()),
        Err(status) => Err(format!("{:?}: {}", status.code(), chain(&status))),
    }
}

/// An error and its causes, one after the other.
fn chain(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut cause = err.source();
    while let Some(inner) = cause {
        text.push_str(": ");
        text.push_str(&inner.to_string());
        cause = inner.source();
    }
    text
}

#[tokio::test]
async fn only_clients_with_a_certificate_from_the_ca_get_in() {
    let pki = Pki::new("rwxnfs test CA");
    let agent = Agent::signed_by(&pki, "", "", Arc::new(FakeExporter::new())).await;

    // The controller, with its certificate from the agent's CA.
    let controller = pki.issue("rwxnfs-controller");
    agent.probe(&pki.ca_pem, Some(&controller)).await.unwrap();
    // No certificate: the handshake or the first call fails.
    assert!(agent.probe(&pki.ca_pem, None).await.is_err());
    // A certificate from another CA.
    let other = Pki::new("someone else").issue("rwxnfs-controller");
    let err = agent.probe(&pki.ca_pem, Some(&other)).await.unwrap_err();
    assert!(err.contains("UnknownCA"), "{err}");
    agent.stop().await;
}

#[tokio::test]
async fn a_certificate_from_the_ca_for_another_name_is_permission_denied_naming_it() {
    let pki = Pki::new("rwxnfs test CA");
    let spiffe = "spiffe://cluster.local/ns/rwxnfs/sa/rwxnfs-controller";
    let by_uri = pki.issue_for("workload", None, &[spiffe]);
    let agent = Agent::signed_by(&pki, "", "", Arc::new(FakeExporter::new())).await;
    let err = agent
        .probe(&pki.ca_pem, Some(&pki.issue("some-other-app")))
        .await
        .unwrap_err();
    assert!(err.starts_with("PermissionDenied: "), "{err}");
    assert!(
        err.contains("presents DNS:some-other-app, CN=some-other-app")
            && err.contains("admits only rwxnfs-controller (tls.allowedClientNames"),
        "{err}"
    );
    let err = agent.probe(&pki.ca_pem, Some(&by_uri)).await.unwrap_err();
    assert!(err.contains(&format!("URI:{spiffe}")), "{err}");
    agent.stop().await;

    // Configured names: a URI subject alternative name matches, and so does a common name.
    let names = format!(", allowedClientNames: [\"{spiffe}\", cn-only]");
    let agent = Agent::signed_by(&pki, &names, "", Arc::new(FakeExporter::new())).await;
    agent.probe(&pki.ca_pem, Some(&by_uri)).await.unwrap();
    let cn_only = pki.issue_for("cn-only", None, &[]);
    agent.probe(&pki.ca_pem, Some(&cn_only)).await.unwrap();
    let err = agent
        .probe(&pki.ca_pem, Some(&pki.issue("rwxnfs-controller")))
        .await
        .unwrap_err();
    assert!(err.starts_with("PermissionDenied: "), "{err}");
    agent.stop().await;
}

#[tokio::test]
async fn an_expired_client_certificate_is_refused_saying_it_expired() {
    let pki = Pki::new("rwxnfs test CA");
    let agent = Agent::signed_by(&pki, "", "", Arc::new(FakeExporter::new())).await;
    let expired = pki.issue_expired("rwxnfs-controller");
    let err = agent.probe(&pki.ca_pem, Some(&expired)).await.unwrap_err();
    println!("an expired client certificate: {err}");
    assert!(err.to_lowercase().contains("expired"), "{err}");
    agent.stop().await;
}

/// As cert-manager renews them into the mounted Secret: first the agent's certificate from a
/// second CA, with both CAs in its bundle (both controllers' certificates admitted), then the
/// first CA dropped from the bundle (its certificates refused), all without a restart; a
/// connection made before goes on with what it was made with.
#[tokio::test]
async fn renewed_agent_certificates_and_ca_bundle_apply_to_new_connections_without_a_restart() {
    let (old, new) = (Pki::new("CA 2026"), Pki::new("CA 2027"));
    let (old_controller, new_controller) = (
        old.issue("rwxnfs-controller"),
        new.issue("rwxnfs-controller"),
    );
    let dir = tempfile::tempdir().unwrap();
    let tls = Agent::tls(dir.path());
    publish_agent(&tls, 1, &old.ca_pem, &old.issue("localhost"));
    let agent = Agent::start(dir, "", "", Arc::new(FakeExporter::new())).await;
    let mut before = agent
        .connect(&old.ca_pem, Some(&old_controller))
        .await
        .unwrap();
    probe(&mut before).await.unwrap();
    let err = agent
        .probe(&new.ca_pem, Some(&new_controller))
        .await
        .unwrap_err();
    assert!(
        err.contains("UnknownCA") || err.contains("UnknownIssuer"),
        "{err}"
    );

    // Step 1: a new agent certificate; both CAs trusted.
    let both = format!("{}{}", old.ca_pem, new.ca_pem);
    publish_agent(&tls, 2, &both, &new.issue("localhost"));
    agent
        .probe(&new.ca_pem, Some(&new_controller))
        .await
        .unwrap();
    agent
        .probe(&new.ca_pem, Some(&old_controller))
        .await
        .unwrap();
    // A client that trusts only the old CA no longer trusts the agent's new certificate.
    let err = agent
        .probe(&old.ca_pem, Some(&old_controller))
        .await
        .unwrap_err();
    assert!(err.contains("UnknownIssuer"), "{err}");

    // Step 2: the old CA removed from the bundle.
    publish_agent(&tls, 3, &new.ca_pem, &new.issue("localhost"));
    agent
        .probe(&new.ca_pem, Some(&new_controller))
        .await
        .unwrap();
    let err = agent
        .probe(&new.ca_pem, Some(&old_controller))
        .await
        .unwrap_err();
    assert!(err.contains("UnknownCA"), "{err}");
    // The connection made at the start still works.
    probe(&mut before).await.unwrap();

    // Files that do not make a configuration (a key of another certificate) are not used:
    // the last good ones go on serving.
    publish_agent(
        &tls,
        4,
        &new.ca_pem,
        &(new.issue("localhost").0, new.issue("localhost").1),
    );
    agent
        .probe(&new.ca_pem, Some(&new_controller))
        .await
        .unwrap();
    agent.stop().await;
}

/// An exporter whose `apply` waits until the test lets it go: calls stay in flight.
struct Gated {
    fake: FakeExporter,
    gate: Arc<tokio::sync::Semaphore>,
    entered: Arc<std::sync::atomic::AtomicUsize>,
}

#[tonic::async_trait]
impl Exporter for Gated {
    fn kind(&self) -> &'static str {
        "gated"
    }
    async fn apply(&self, spec: &ExportSpec) -> Result<(), ExportError> {
        self.entered
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let _pass = self.gate.acquire().await.unwrap();
        self.fake.apply(spec).await
    }
    async fn remove(&self, export_id: u32) -> Result<(), ExportError> {
        self.fake.remove(export_id).await
    }
    async fn active(&self) -> Result<Vec<u32>, ExportError> {
        self.fake.active().await
    }
    async fn probe(&self) -> Result<(), String> {
        self.fake.probe().await
    }
}

#[tokio::test]
async fn an_oversized_message_and_too_many_calls_in_flight_are_resource_exhausted() {
    let pki = Pki::new("rwxnfs test CA");
    let gate = Arc::new(tokio::sync::Semaphore::new(0));
    let entered = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let exporter = Arc::new(Gated {
        fake: FakeExporter::new(),
        gate: gate.clone(),
        entered: entered.clone(),
    });
    let limits = "limits: {maxMessageBytes: 1024, maxConcurrentCallsPerClient: 2}\n";
    let agent = Agent::signed_by(&pki, "", limits, exporter).await;
    let controller = pki.issue("rwxnfs-controller");
    let client = agent.connect(&pki.ca_pem, Some(&controller)).await.unwrap();

    let create = |name: String| {
        let mut client = client.clone();
        async move {
            client
                .create_export(CreateExportRequest {
                    name,
                    ..Default::default()
                })
                .await
        }
    };
    let err = create("x".repeat(2000)).await.unwrap_err();
    assert_eq!(err.code(), Code::ResourceExhausted, "{err:?}");
    assert!(
        err.message()
            .contains("limits.maxMessageBytes of 1024 bytes"),
        "{}",
        err.message()
    );

    // Two creates held in the exporter; the third is refused at once, naming the limit.
    let held: Vec<_> = ["a", "b"]
        .into_iter()
        .map(|n| tokio::spawn(create(n.into())))
        .collect();
    let started = Instant::now();
    while entered.load(std::sync::atomic::Ordering::SeqCst) < 2 {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "the two creates were not held"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let err = tokio::time::timeout(Duration::from_secs(5), create("c".into()))
        .await
        .expect("the third call is refused at once, not held")
        .unwrap_err();
    assert_eq!(err.code(), Code::ResourceExhausted, "{err:?}");
    assert!(
        err.message().contains("already has 2 calls in flight")
            && err.message().contains("limits.maxConcurrentCallsPerClient"),
        "{}",
        err.message()
    );
    // Once the held calls finish the client may call again.
    gate.add_permits(10);
    for call in held {
        call.await.unwrap().unwrap();
    }
    create("c".into()).await.unwrap();
    agent.stop().await;
}
