//! `--health-address`, end to end on the binary: /readyz answers what the component's CSI
//! Probe reports (200 `ok`, or 503 with the reason), within `--health-timeout` even when a
//! dependency hangs; /healthz (liveness) only whether the process serves, whatever its
//! dependencies do; 404 off those paths, and it survives requests that are not HTTP.
#![allow(clippy::unwrap_used)]

use std::{
    io::{BufRead, BufReader, Read, Write},
    net::{SocketAddr, TcpStream},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::mpsc,
    time::{Duration, Instant},
};

use rwxnfs_proto::{
    agent::{self as pb, agent_server::Agent, agent_server::AgentServer},
    csi::{ProbeRequest, identity_client::IdentityClient},
};
use rwxnfs_server::{Endpoint, Serving};
use tonic::{Request, Response, Status};

/// A component under test, killed (by its PID) if the test ends first, with the address its
/// /healthz listens on as it logged it.
struct Running {
    child: Child,
    health: SocketAddr,
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

impl Running {
    /// Runs `rwxnfs --log-format json ARGS --health-address 127.0.0.1:0` and waits until it
    /// has logged where /healthz listens and `socket` accepts connections.
    fn start(args: &[&str], socket: &Path) -> Running {
        let mut child = Command::new(env!("CARGO_BIN_EXE_rwxnfs"))
            .args(["--log-format", "json"])
            .args(args)
            .args(["--health-address", "127.0.0.1:0"])
            .env("RUST_LOG", "info")
            .env_remove("POD_NAME")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stderr = child.stderr.take().unwrap();
        let (tx, rx) = mpsc::channel();
        // Reads the log to its end (so the process never blocks on a full pipe), passing it
        // on to the test's output.
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                eprintln!("{line}");
                let Ok(entry) = serde_json::from_str::<serde_json::Value>(&line) else {
                    continue;
                };
                if entry["message"] == "serving liveness on /healthz and readiness on /readyz" {
                    let addr = entry["addr"].as_str().unwrap_or_default().parse();
                    let _ = tx.send(addr);
                }
            }
        });
        let health = rx
            .recv_timeout(Duration::from_secs(10))
            .expect("no 'serving liveness' line within 10 s")
            .expect("the logged address parses");
        let running = Running { child, health };
        let started = Instant::now();
        while std::os::unix::net::UnixStream::connect(socket).is_err() {
            assert!(
                started.elapsed() < Duration::from_secs(10),
                "not serving after 10 s"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
        running
    }

    /// Sends `request` as it is and returns the status code and the body.
    fn send(&self, request: &[u8]) -> (u16, String) {
        let mut stream = TcpStream::connect(self.health).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        stream.write_all(request).unwrap();
        let mut response = String::new();
        stream.read_to_string(&mut response).unwrap();
        let status = response
            .split(' ')
            .nth(1)
            .and_then(|code| code.parse().ok())
            .unwrap_or_else(|| panic!("not an HTTP response: {response:?}"));
        let body = response
            .split_once("\r\n\r\n")
            .map(|(_, body)| body.to_owned())
            .unwrap_or_default();
        (status, body)
    }

    fn healthz(&self) -> (u16, String) {
        self.send(b"GET /healthz HTTP/1.1\r\nHost: kubelet\r\n\r\n")
    }

    fn readyz(&self) -> (u16, String) {
        self.send(b"GET /readyz HTTP/1.1\r\nHost: kubelet\r\n\r\n")
    }

    fn still_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }
}

/// What the CSI Probe on `socket` says.
async fn csi_probe(socket: &Path) -> bool {
    let channel = Endpoint::Unix(socket.to_owned()).connect().await.unwrap();
    let response = IdentityClient::new(channel)
        .probe(ProbeRequest {})
        .await
        .unwrap();
    response.into_inner().ready.unwrap()
}

/// An agent that answers Probe with `probe` and nothing else.
struct ProbeOnlyAgent {
    probe: pb::ProbeResponse,
}

fn unimplemented<T>() -> Result<Response<T>, Status> {
    Err(Status::unimplemented("a probe-only test agent"))
}

#[tonic::async_trait]
impl Agent for ProbeOnlyAgent {
    async fn probe(
        &self,
        _: Request<pb::ProbeRequest>,
    ) -> Result<Response<pb::ProbeResponse>, Status> {
        Ok(Response::new(self.probe.clone()))
    }
    async fn get_capacity(
        &self,
        _: Request<pb::GetCapacityRequest>,
    ) -> Result<Response<pb::GetCapacityResponse>, Status> {
        unimplemented()
    }
    async fn create_export(
        &self,
        _: Request<pb::CreateExportRequest>,
    ) -> Result<Response<pb::CreateExportResponse>, Status> {
        unimplemented()
    }
    async fn delete_export(
        &self,
        _: Request<pb::DeleteExportRequest>,
    ) -> Result<Response<pb::DeleteExportResponse>, Status> {
        unimplemented()
    }
    async fn expand_export(
        &self,
        _: Request<pb::ExpandExportRequest>,
    ) -> Result<Response<pb::ExpandExportResponse>, Status> {
        unimplemented()
    }
    async fn grant_access(
        &self,
        _: Request<pb::GrantAccessRequest>,
    ) -> Result<Response<pb::GrantAccessResponse>, Status> {
        unimplemented()
    }
    async fn revoke_access(
        &self,
        _: Request<pb::RevokeAccessRequest>,
    ) -> Result<Response<pb::RevokeAccessResponse>, Status> {
        unimplemented()
    }
    async fn get_export(
        &self,
        _: Request<pb::GetExportRequest>,
    ) -> Result<Response<pb::GetExportResponse>, Status> {
        unimplemented()
    }
    async fn list_exports(
        &self,
        _: Request<pb::ListExportsRequest>,
    ) -> Result<Response<pb::ListExportsResponse>, Status> {
        unimplemented()
    }
    async fn create_snapshot(
        &self,
        _: Request<pb::CreateSnapshotRequest>,
    ) -> Result<Response<pb::CreateSnapshotResponse>, Status> {
        unimplemented()
    }
    async fn delete_snapshot(
        &self,
        _: Request<pb::DeleteSnapshotRequest>,
    ) -> Result<Response<pb::DeleteSnapshotResponse>, Status> {
        unimplemented()
    }
    async fn list_snapshots(
        &self,
        _: Request<pb::ListSnapshotsRequest>,
    ) -> Result<Response<pb::ListSnapshotsResponse>, Status> {
        unimplemented()
    }
    async fn reconcile(
        &self,
        _: Request<pb::ReconcileRequest>,
    ) -> Result<Response<pb::ReconcileResponse>, Status> {
        unimplemented()
    }
}

/// Serves a [`ProbeOnlyAgent`] on `socket`, on the test's runtime: tests that use one run on
/// the multi-thread runtime, since their HTTP client blocks its thread.
async fn agent(socket: &Path, ready: bool, reason: &str) -> Serving {
    let probe = pb::ProbeResponse {
        ready,
        reason: reason.to_owned(),
        nfs_server: "ganesha".into(),
        quota: "xfs".into(),
        quota_enforced: true,
        version: "test".into(),
        server_addresses: vec!["127.0.0.1".into()],
    };
    let router = rwxnfs_server::builder().add_service(AgentServer::new(ProbeOnlyAgent { probe }));
    Serving::start(router, &Endpoint::Unix(socket.to_owned()))
        .await
        .unwrap()
}

/// `rwxnfs controller` with one backend, ha1, whose agent is at `agent_socket`, serving CSI on
/// controller.sock in `dir`.
fn start_controller(dir: &Path, agent_socket: &Path, extra: &[&str]) -> (Running, PathBuf) {
    start_controller_of(dir, &[("ha1", agent_socket)], extra)
}

/// `rwxnfs controller` with `backends` (name, agent socket), in that order.
fn start_controller_of(
    dir: &Path,
    backends: &[(&str, &Path)],
    extra: &[&str],
) -> (Running, PathBuf) {
    let config = dir.join("controller.yaml");
    let mut yaml = String::from("backends:\n");
    for (name, agent_socket) in backends {
        yaml += &format!(
            "  - name: {name}\n    agent:\n      endpoint: unix://{}\n      \
             timeoutSeconds: 20\n",
            agent_socket.display()
        );
    }
    yaml += "nodes:\n  n1: [127.0.0.1]\n";
    std::fs::write(&config, yaml).unwrap();
    let socket = dir.join("controller.sock");
    let endpoint = format!("unix://{}", socket.display());
    let mut args = vec![
        "controller",
        "--config",
        config.to_str().unwrap(),
        "--endpoint",
        &endpoint,
    ];
    args.extend_from_slice(extra);
    (Running::start(&args, &socket), socket)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_controller_whose_agent_is_ready_is_ready_and_live() {
    let dir = tempfile::tempdir().unwrap();
    let agent_socket = dir.path().join("agent.sock");
    let agent = agent(&agent_socket, true, "").await;
    let (controller, socket) = start_controller(dir.path(), &agent_socket, &[]);

    assert_eq!(controller.readyz(), (200, "ok\n".to_owned()));
    assert_eq!(controller.healthz(), (200, "ok\n".to_owned()));
    assert!(csi_probe(&socket).await, "the CSI Probe says ready too");
    agent.stop().await.unwrap();
}

/// An agent that is down or slow is a reason not to be ready, never to be restarted: a
/// restart cures nothing outside the process, and the sidecars exit with the CSI socket.
#[tokio::test]
async fn a_controller_whose_agent_is_unreachable_stays_live() {
    let dir = tempfile::tempdir().unwrap();
    let nowhere = dir.path().join("no-agent.sock");
    let (controller, _) = start_controller(dir.path(), &nowhere, &[]);
    assert_eq!(controller.readyz().0, 503);
    assert_eq!(controller.healthz(), (200, "ok\n".to_owned()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_controller_whose_agent_is_not_ready_answers_503_with_the_agents_reason() {
    let dir = tempfile::tempdir().unwrap();
    let agent_socket = dir.path().join("agent.sock");
    let agent = agent(&agent_socket, false, "ganesha is not running").await;
    let (controller, socket) = start_controller(dir.path(), &agent_socket, &[]);

    let (status, body) = controller.readyz();
    assert_eq!(status, 503, "{body}");
    assert_eq!(body, "backend ha1: ganesha is not running\n");
    assert!(
        !csi_probe(&socket).await,
        "the CSI Probe says not ready too"
    );
    agent.stop().await.unwrap();
}

#[tokio::test]
async fn a_controller_whose_agent_is_unreachable_answers_503_naming_the_backend() {
    let dir = tempfile::tempdir().unwrap();
    let nowhere = dir.path().join("no-agent.sock");
    let (controller, socket) = start_controller(dir.path(), &nowhere, &[]);

    let (status, body) = controller.readyz();
    assert_eq!(status, 503, "{body}");
    let wanted = format!(
        "backend ha1: the agent at unix://{} cannot be reached (",
        nowhere.display()
    );
    assert!(
        body.starts_with(&wanted),
        "names the backend once, and where it looked: {body}"
    );
    assert!(!csi_probe(&socket).await);
}

/// Several backends: ready while one is; while none is, the reason names each in the
/// configuration's order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_controller_none_of_whose_backends_is_ready_names_each_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let down = dir.path().join("down.sock");
    let nowhere = dir.path().join("no-agent.sock");
    let agent = agent(&down, false, "ganesha is not running").await;
    let (controller, socket) =
        start_controller_of(dir.path(), &[("ha1", &down), ("ha2", &nowhere)], &[]);

    let (status, body) = controller.readyz();
    assert_eq!(status, 503, "{body}");
    let wanted = format!(
        "backend ha1: ganesha is not running; backend ha2: the agent at unix://{} cannot be \
         reached (",
        nowhere.display()
    );
    assert!(body.starts_with(&wanted), "{body}");
    assert!(!csi_probe(&socket).await);
    agent.stop().await.unwrap();
}

/// Backends are asked at once and the first ready one decides: a hung agent listed first
/// neither holds the check to --health-timeout nor fails it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hung_backend_does_not_fail_the_check_while_another_is_ready() {
    let dir = tempfile::tempdir().unwrap();
    let hung = dir.path().join("hung.sock");
    let _silent = std::os::unix::net::UnixListener::bind(&hung).unwrap();
    let up = dir.path().join("up.sock");
    let agent = agent(&up, true, "").await;
    let (controller, socket) = start_controller_of(
        dir.path(),
        &[("ha1", &hung), ("ha2", &up)],
        &["--health-timeout", "5s"],
    );

    let started = Instant::now();
    assert_eq!(controller.readyz(), (200, "ok\n".to_owned()));
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "answered after {:?}",
        started.elapsed()
    );
    assert!(csi_probe(&socket).await, "the CSI Probe says ready too");
    agent.stop().await.unwrap();
}

/// An agent that accepts the connection and never answers: the check is abandoned at
/// --health-timeout, long before the agent call's own 20 s bound.
#[test]
fn a_hung_agent_fails_the_check_within_the_health_timeout() {
    let dir = tempfile::tempdir().unwrap();
    let agent_socket = dir.path().join("agent.sock");
    let _silent = std::os::unix::net::UnixListener::bind(&agent_socket).unwrap();
    let (controller, _) =
        start_controller(dir.path(), &agent_socket, &["--health-timeout", "500ms"]);

    let started = Instant::now();
    let (status, body) = controller.readyz();
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("did not finish within 500ms"), "{body}");
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "answered after {:?}",
        started.elapsed()
    );
}

/// The node plugin's /readyz is its Probe: the kernel's NFS client, whichever way this
/// machine has it; it is live either way. It is served with a registration socket no kubelet
/// ever uses: neither waits for the registration.
#[tokio::test]
async fn the_node_plugin_is_ready_exactly_when_its_csi_probe_says_ready() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("node.sock");
    let registration = dir.path().join("rwxnfs.csi.io-reg.sock");
    let endpoint = format!("unix://{}", socket.display());
    let node = Running::start(
        &[
            "node",
            "--node-id",
            "n1",
            "--endpoint",
            &endpoint,
            "--registration-socket",
            registration.to_str().unwrap(),
        ],
        &socket,
    );

    let ready = csi_probe(&socket).await;
    assert_eq!(node.healthz(), (200, "ok\n".to_owned()));
    let (status, body) = node.readyz();
    if ready {
        assert_eq!((status, body.as_str()), (200, "ok\n"));
    } else {
        assert_eq!(status, 503, "{body}");
        assert!(body.contains("this kernel has no NFS client"), "{body}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn other_paths_are_404_and_what_is_not_a_get_gets_an_answer_not_a_crash() {
    let dir = tempfile::tempdir().unwrap();
    let agent_socket = dir.path().join("agent.sock");
    let agent = agent(&agent_socket, true, "").await;
    let (mut controller, _) = start_controller(dir.path(), &agent_socket, &[]);

    let huge = format!(
        "GET /healthz HTTP/1.1\r\nX-Padding: {}\r\n\r\n",
        "x".repeat(64 * 1024)
    );
    for (request, wanted) in [
        (&b"GET /metrics HTTP/1.1\r\n\r\n"[..], 404),
        (b"GET / HTTP/1.1\r\n\r\n", 404),
        (b"GET /healthz/extra HTTP/1.1\r\n\r\n", 404),
        (b"GET /healthz?verbose HTTP/1.1\r\n\r\n", 200),
        (b"GET /readyz HTTP/1.1\r\n\r\n", 200),
        (b"POST /healthz HTTP/1.1\r\nContent-Length: 0\r\n\r\n", 405),
        (b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\r\n\r\n", 400), // a TLS hello
        (b"GET\r\n\r\n", 400),
    ] {
        let (status, body) = controller.send(request);
        assert_eq!(
            status,
            wanted,
            "{:?}: {body}",
            String::from_utf8_lossy(request)
        );
    }
    // A head past the 8 KiB read: whatever the client sees of the answer (the connection is
    // closed with its rest unread, which may reset it), the server carries on.
    let mut stream = TcpStream::connect(controller.health).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let _ = stream.write_all(huge.as_bytes());
    let _ = stream.read_to_end(&mut Vec::new());
    // A client that connects and goes away without a word.
    drop(TcpStream::connect(controller.health).unwrap());

    assert_eq!(controller.healthz(), (200, "ok\n".to_owned()));
    assert!(controller.still_running());
    agent.stop().await.unwrap();
}
