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
