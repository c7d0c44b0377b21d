//! `rwxnfs doctor` through the real binary: exit codes, standard input, JSON, and the errors
//! when the input cannot be read.

use std::{
    io::Write,
    path::{Path, PathBuf},
    process::{Command, Output, Stdio},
};

fn fixture(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../doctor/tests/fixtures")
        .join(path)
}

fn doctor(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_rwxnfs"))
        .arg("doctor")
        .args(args)
        .env("KUBECONFIG", "/nonexistent")
        .output()
        .expect("rwxnfs runs")
}

fn path(p: &Path) -> &str {
    p.to_str().expect("fixture paths are UTF-8")
}

#[test]
fn clean_manifests_exit_0_warnings_1_errors_2() {
    let good = doctor(&["-f", path(&fixture("good"))]);
    assert_eq!(
        good.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&good.stdout)
    );
    assert!(String::from_utf8_lossy(&good.stdout).contains("0 error(s), 0 warning(s)"));

    let warning = doctor(&["-f", path(&fixture("bad/RWX020-service-port-not-tcp.yaml"))]);
    assert_eq!(warning.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&warning.stdout).contains("warning [RWX020] Service/storage/nfs")
    );

    let error = doctor(&[
        "-f",
        path(&fixture("bad/RWX020-service-port-not-tcp.yaml")),
        "-f",
        path(&fixture("bad/RWX050-node-plugin-off-host-network.yaml")),
    ]);
    assert_eq!(error.status.code(), Some(2));
    let text = String::from_utf8_lossy(&error.stdout);
    assert!(
        text.contains("error [RWX050]")
            && text.contains("fix: kubectl -n rwxnfs patch daemonset rwxnfs-node"),
        "{text}"
    );
}

#[test]
fn standard_input_and_json_output() {
    let yaml = std::fs::read(fixture("bad/RWX004-ambient-not-opted-out.yaml")).unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_rwxnfs"))
        .args(["doctor", "-f", "-", "--output", "json"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(&yaml).unwrap();
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).expect("stdout is JSON");
    assert_eq!(json["summary"]["exitCode"], 2);
    assert_eq!(json["findings"][0]["code"], "RWX004");
    assert_eq!(json["findings"][0]["object"]["kind"], "Deployment");
}

#[test]
fn unreadable_input_is_exit_2_with_the_reason() {
    let missing = doctor(&["-f", "/nonexistent/manifests.yaml"]);
    assert_eq!(missing.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&missing.stderr)
            .contains("cannot read /nonexistent/manifests.yaml")
    );

    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.yaml");
    std::fs::write(
        &bad,
        "apiVersion: v1\nkind: Service\nmetadata: {name: s}\nspec: {ports: 7}\n",
    )
    .unwrap();
    let malformed = doctor(&["-f", path(&bad)]);
    assert_eq!(malformed.status.code(), Some(2));
    let err = String::from_utf8_lossy(&malformed.stderr);
    assert!(
        err.contains("bad.yaml") && err.contains("Service \"s\""),
        "{err}"
    );
}

#[test]
fn an_unreachable_api_is_exit_2_naming_what_could_not_be_listed() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = dir.path().join("kubeconfig");
    std::fs::write(
        &kubeconfig,
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: down\n  cluster: {{server: \"http://127.0.0.1:{port}\"}}\nusers:\n- name: u\n  user: {{token: t}}\ncontexts:\n- name: c\n  context: {{cluster: down, user: u}}\ncurrent-context: c\n"
        ),
    )
    .unwrap();
    let out = doctor(&["--kubeconfig", path(&kubeconfig)]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("cannot list namespaces from the Kubernetes API"),
        "{err}"
    );
}

#[test]
fn help_documents_the_exit_codes() {
    let out = doctor(&["--help"]);
    let help = String::from_utf8_lossy(&out.stdout);
    assert!(
        help.contains("Exit status: 0 clean")
            && help.contains("1 warnings")
            && help.contains("2 errors"),
        "{help}"
    );
}

/// A one-connection-per-request HTTP server standing in for the Kubernetes API: answers GETs
/// from `answers` (404 otherwise) and POSTs with their own body, and sends each request's
/// method, path and body to the test.
fn fake_api(
    answers: Vec<(&'static str, serde_json::Value)>,
) -> (u16, std::sync::mpsc::Receiver<(String, String, String)>) {
    use std::io::{BufRead, BufReader, Read};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("the fake API works");
    let port = listener.local_addr().expect("the fake API works").port();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { return };
            let mut reader = BufReader::new(stream.try_clone().expect("the fake API works"));
            let mut line = String::new();
            reader.read_line(&mut line).expect("the fake API works");
            let mut parts = line.split_whitespace();
            let method = parts.next().unwrap_or("").to_owned();
            let path = parts
                .next()
                .unwrap_or("")
                .split('?')
                .next()
                .unwrap_or("")
                .to_owned();
            let mut length = 0;
            loop {
                let mut header = String::new();
                reader.read_line(&mut header).expect("the fake API works");
                if header.trim().is_empty() {
                    break;
                }
                if let Some(v) = header.to_ascii_lowercase().strip_prefix("content-length:") {
                    length = v.trim().parse().expect("the fake API works");
                }
            }
            let mut body = vec![0; length];
            reader.read_exact(&mut body).expect("the fake API works");
            let body = String::from_utf8_lossy(&body).to_string();
            let (status, answer) = match answers.iter().find(|(p, _)| *p == path) {
                Some((_, a)) if method == "GET" => ("200 OK", a.to_string()),
                _ if method == "POST" => ("201 Created", body.clone()),
                _ => ("404 Not Found", r#"{"kind":"Status","apiVersion":"v1","status":"Failure","reason":"NotFound","code":404}"#.to_owned()),
            };
            let _ = write!(
                stream,
                "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{answer}",
                answer.len()
            );
            let _ = tx.send((method, path, body));
        }
    });
    (port, rx)
}

fn kubeconfig(dir: &Path, port: u16) -> PathBuf {
    let path = dir.join("kubeconfig");
    std::fs::write(
        &path,
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: c\n  cluster: {{server: \"http://127.0.0.1:{port}\"}}\nusers:\n- name: u\n  user: {{token: t}}\ncontexts:\n- name: c\n  context: {{cluster: c, user: u, namespace: rwxnfs}}\ncurrent-context: c\n"
        ),
    )
    .expect("the fake API works");
    path
}

#[test]
fn the_controller_checks_its_own_pod_at_start_and_records_an_event() {
    let pod = serde_json::json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "rwxnfs-controller-0", "namespace": "rwxnfs", "uid": "u1"},
        "spec": {"containers": [
            {"name": "rwxnfs", "image": "ghcr.io/rwxnfs/rwxnfs:0.1.0", "args": ["controller"]},
            {"name": "istio-proxy", "image": "istio/proxyv2"}
        ]}
    });
    let namespace = serde_json::json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "rwxnfs"}});
    let (port, requests) = fake_api(vec![
        ("/api/v1/namespaces/rwxnfs/pods/rwxnfs-controller-0", pod),
        ("/api/v1/namespaces/rwxnfs", namespace),
    ]);
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("controller.yaml");
    std::fs::write(&config, "backends:\n  - name: ha1\n    agent: {endpoint: \"unix:///nonexistent/agent.sock\"}\n    server: 192.168.222.25\n").unwrap();
    let log = std::fs::File::create(dir.path().join("log")).unwrap();
    let mut controller = Command::new(env!("CARGO_BIN_EXE_rwxnfs"))
        .args([
            "--log-format",
            "json",
            "controller",
            "--config",
            path(&config),
        ])
        .arg("--endpoint")
        .arg(format!("unix://{}", dir.path().join("c.sock").display()))
        .env("KUBECONFIG", kubeconfig(dir.path(), port))
        .env("POD_NAME", "rwxnfs-controller-0")
        .env("POD_NAMESPACE", "rwxnfs")
        .env("RUST_LOG", "info")
        .stderr(log)
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    let mut event = None;
    while event.is_none() && std::time::Instant::now() < deadline {
        if let Ok((method, path, body)) =
            requests.recv_timeout(std::time::Duration::from_millis(200))
            && method == "POST"
        {
            event = Some((path, body));
        }
    }
    let still_serving = controller.try_wait().unwrap().is_none();
    controller.kill().unwrap();
    controller.wait().unwrap();
    let logs = std::fs::read_to_string(dir.path().join("log")).unwrap();
    let (path, body) =
        event.unwrap_or_else(|| panic!("no Event was posted; the controller logged:\n{logs}"));
    assert_eq!(path, "/apis/events.k8s.io/v1/namespaces/rwxnfs/events");
    let body: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(body["reason"], "MeshMisconfigured");
    assert_eq!(body["regarding"]["name"], "rwxnfs-controller-0");
    let rwx001 = logs
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .find(|l| l["code"] == "RWX001")
        .unwrap_or_else(|| panic!("RWX001 not logged:\n{logs}"));
    assert_eq!(rwx001["level"], "ERROR");
    assert!(
        rwx001["fix"]
            .as_str()
            .is_some_and(|f| f.starts_with("kubectl -n rwxnfs patch pod rwxnfs-controller-0")),
        "{rwx001}"
    );
    assert!(
        still_serving,
        "the self-check never stops the controller:\n{logs}"
    );
}

#[test]
fn the_controller_keeps_serving_when_the_api_cannot_be_reached() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("controller.yaml");
    std::fs::write(
        &config,
        "backends:\n  - name: ha1\n    agent: {endpoint: \"unix:///nonexistent/agent.sock\"}\n",
    )
    .unwrap();
    let socket = dir.path().join("c.sock");
    let log = std::fs::File::create(dir.path().join("log")).unwrap();
    let mut controller = Command::new(env!("CARGO_BIN_EXE_rwxnfs"))
        .args([
            "--log-format",
            "text",
            "controller",
            "--config",
            path(&config),
        ])
        .arg("--endpoint")
        .arg(format!("unix://{}", socket.display()))
        .env("KUBECONFIG", kubeconfig(dir.path(), port))
        .env("POD_NAME", "rwxnfs-controller-0")
        .env("POD_NAMESPACE", "rwxnfs")
        .stderr(log)
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    let mut logs = String::new();
    while std::time::Instant::now() < deadline && !logs.contains("self-check incomplete") {
        std::thread::sleep(std::time::Duration::from_millis(100));
        logs = std::fs::read_to_string(dir.path().join("log")).unwrap();
    }
    let still_serving = controller.try_wait().unwrap().is_none() && socket.exists();
    controller.kill().unwrap();
    controller.wait().unwrap();
    assert!(
        logs.contains("self-check incomplete") && logs.contains("cannot read this pod"),
        "{logs}"
    );
    assert!(still_serving, "{logs}");
}
