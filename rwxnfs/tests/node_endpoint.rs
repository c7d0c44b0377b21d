//! The `rwxnfs node` binary, end to end: it serves CSI on a private unix socket, passes the
//! conformance runner's Identity and node capability specs, and shuts down cleanly on SIGTERM.
#![allow(unsafe_code)] // signals sent to the processes under test (libc::kill)
#![allow(clippy::unwrap_used)]

use std::{
    path::{Path, PathBuf},
    process::{Child, Command, ExitStatus, Stdio},
    time::{Duration, Instant},
};

use csi_sanity::{Config, Outcome};
use rwxnfs_server::Endpoint;

/// A child process that is killed (by its PID) if the test ends before it does.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

impl Running {
    fn signal(&self, signal: i32) {
        // SAFETY: kill(2) on the PID of a child we spawned and have not reaped.
        let rc = unsafe { libc::kill(self.0.id() as libc::pid_t, signal) };
        assert_eq!(rc, 0, "kill failed");
    }

    fn wait_exit(&mut self, limit: Duration) -> ExitStatus {
        let started = Instant::now();
        loop {
            if let Some(status) = self.0.try_wait().unwrap() {
                return status;
            }
            assert!(
                started.elapsed() < limit,
                "the process did not exit within {limit:?}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

fn start_node(socket: &Path, extra: &[&str]) -> Running {
    let child = Command::new(env!("CARGO_BIN_EXE_rwxnfs"))
        .args(["--log-format", "json", "node", "--node-id", "n1"])
        .arg("--endpoint")
        .arg(format!("unix://{}", socket.display()))
        .args(extra)
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let running = Running(child);
    let started = Instant::now();
    // Connectable, not merely present: a stale socket file may already be there.
    while std::os::unix::net::UnixStream::connect(socket).is_err() {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "not serving after 10 s"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    running
}

async fn run_sanity(socket: &Path, focus: &str) -> csi_sanity::Report {
    let mut config = Config::new(Endpoint::Unix(socket.to_owned()));
    config.focus = vec![focus.to_owned()];
    // The socket's temporary directory holds the specs' paths too.
    let dir = socket.parent().expect("the socket has a directory");
    config.staging_dir = dir.join("staging");
    config.target_dir = dir.join("target");
    let mut out = Vec::new();
    let report = csi_sanity::run(config, &mut out).await.unwrap();
    print!("{}", String::from_utf8_lossy(&out));
    report
}

fn socket_in(dir: &tempfile::TempDir) -> PathBuf {
    dir.path().join("run/node.sock")
}

#[tokio::test]
async fn identity_specs_pass_against_the_node_plugin() {
    let dir = tempfile::tempdir().unwrap();
    let socket = socket_in(&dir);
    let _node = start_node(&socket, &[]);

    let report = run_sanity(&socket, "Identity Service").await;
    assert_eq!(
        (report.passed(), report.failed(), report.skipped()),
        (3, 0, 0)
    );

    for spec in [
        "Node Service NodeGetCapabilities should return appropriate capabilities",
        "Node Service NodeGetInfo should return appropriate values",
    ] {
        let report = run_sanity(&socket, spec).await;
        assert_eq!(report.outcome(spec), Some(&Outcome::Passed), "{spec}");
    }
}

#[tokio::test]
async fn the_socket_is_private() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let socket = socket_in(&dir);
    let _node = start_node(&socket, &[]);
    let mode = std::fs::metadata(&socket).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
}

#[tokio::test]
async fn sigterm_with_a_client_connected_exits_cleanly_and_removes_the_socket() {
    let dir = tempfile::tempdir().unwrap();
    let socket = socket_in(&dir);
    let mut node = start_node(&socket, &["--shutdown-grace", "2s"]);
    // A connected client, mid-session.
    let _report = run_sanity(&socket, "Identity Service Probe").await;
    let channel = Endpoint::Unix(socket.clone()).connect().await.unwrap();

    node.signal(libc::SIGTERM);
    let status = node.wait_exit(Duration::from_secs(5));
    assert!(status.success(), "exit status {status:?}");
    assert!(!socket.exists(), "the socket must be removed");
    drop(channel);
}

#[test]
fn a_stale_socket_from_a_crashed_node_plugin_is_replaced() {
    let dir = tempfile::tempdir().unwrap();
    let socket = socket_in(&dir);
    let mut first = start_node(&socket, &[]);
    first.signal(libc::SIGKILL);
    first.wait_exit(Duration::from_secs(5));
    assert!(socket.exists(), "SIGKILL leaves the socket behind");

    let mut second = start_node(&socket, &[]);
    second.signal(libc::SIGTERM);
    assert!(second.wait_exit(Duration::from_secs(5)).success());
}

#[test]
fn an_invalid_driver_name_is_refused_at_start() {
    let out = Command::new(env!("CARGO_BIN_EXE_rwxnfs"))
        .args([
            "node",
            "--node-id",
            "n1",
            "--endpoint",
            "unix:///tmp/rwxnfs-never.sock",
        ])
        .args(["--driver-name", "not a/valid name"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("driver name"), "{stderr}");
}

/// What the kubelet does with a new socket under plugins_registry/: GetInfo, then the
/// registration's outcome; the answer names our driver and the CSI socket the kubelet is
/// to use. SIGTERM removes both sockets.
#[tokio::test]
async fn the_node_plugin_registers_with_the_kubelet_itself() {
    use rwxnfs_proto::pluginregistration::{
        InfoRequest, RegistrationStatus, registration_client::RegistrationClient,
    };
    let dir = tempfile::tempdir().unwrap();
    let socket = socket_in(&dir);
    let registration = dir.path().join("plugins_registry/rwxnfs.csi.io-reg.sock");
    let mut node = start_node(
        &socket,
        &[
            "--registration-socket",
            registration.to_str().unwrap(),
            "--kubelet-registration-path",
            "/var/lib/kubelet/plugins/rwxnfs.csi.io/csi.sock",
        ],
    );
    let started = Instant::now();
    while std::os::unix::net::UnixStream::connect(&registration).is_err() {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "no registration socket"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    let channel = Endpoint::Unix(registration.clone())
        .connect()
        .await
        .unwrap();
    let mut kubelet = RegistrationClient::new(channel);
    let info = kubelet.get_info(InfoRequest {}).await.unwrap().into_inner();
    assert_eq!(info.r#type, "CSIPlugin");
    assert_eq!(info.name, "rwxnfs.csi.io");
    assert_eq!(
        info.endpoint,
        "/var/lib/kubelet/plugins/rwxnfs.csi.io/csi.sock"
    );
    assert_eq!(info.supported_versions, ["1.0.0"]);
    kubelet
        .notify_registration_status(RegistrationStatus {
            plugin_registered: true,
            error: String::new(),
        })
        .await
        .unwrap();
    drop(kubelet);

    node.signal(libc::SIGTERM);
    let status = node.wait_exit(Duration::from_secs(15));
    assert!(status.success(), "exit status {status:?}");
    assert!(
        !socket.exists() && !registration.exists(),
        "both sockets removed"
    );
}

#[test]
fn a_registration_socket_with_a_tcp_endpoint_needs_the_host_path() {
    let out = Command::new(env!("CARGO_BIN_EXE_rwxnfs"))
        .args(["node", "--node-id", "n1", "--endpoint", "tcp://127.0.0.1:0"])
        .args(["--registration-socket", "/nonexistent/reg.sock"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("--kubelet-registration-path"), "{stderr}");
}
