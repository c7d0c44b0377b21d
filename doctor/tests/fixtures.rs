//! The fixture set: every bad manifest is named after the finding it must produce and lists,
//! on its first line (`# expect: RWX…`), every warning and error it may produce; the good
//! manifests produce nothing above info.

use std::{
    collections::BTreeSet,
    path::{Path, PathBuf},
};

use rwxnfs_doctor::{Report, Severity, analyze, load::load};

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

fn run(paths: &[PathBuf]) -> Report {
    analyze(&load(paths).expect("the fixture loads"))
}

fn serious(report: &Report) -> BTreeSet<&'static str> {
    report
        .findings
        .iter()
        .filter(|f| f.severity >= Severity::Warning)
        .map(|f| f.code)
        .collect()
}

fn expected(path: &Path) -> BTreeSet<String> {
    let text = std::fs::read_to_string(path).expect("the fixture is readable");
    let line = text.lines().next().unwrap_or("");
    let codes = line.strip_prefix("# expect:").unwrap_or_else(|| {
        panic!(
            "{}: first line must be `# expect: CODE[, CODE]`",
            path.display()
        )
    });
    codes.split(',').map(|c| c.trim().to_owned()).collect()
}

#[test]
fn every_bad_fixture_produces_its_finding_and_nothing_else_serious() {
    let mut dir: Vec<PathBuf> = std::fs::read_dir(fixtures().join("bad"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    dir.sort();
    assert!(dir.len() >= 15, "fixtures missing: {dir:?}");
    let mut failures = Vec::new();
    for path in &dir {
        let name = path.file_name().unwrap().to_string_lossy().to_string();
        let code = name.split('-').next().unwrap().to_owned();
        let want = expected(path);
        assert!(
            want.contains(&code),
            "{name}: its own code is not in `# expect:`"
        );
        let report = run(std::slice::from_ref(path));
        let got: BTreeSet<String> = serious(&report).into_iter().map(str::to_owned).collect();
        if got != want {
            failures.push(format!(
                "{name}: expected {want:?}, got {got:?}\n{}",
                report.to_text()
            ));
        }
        for f in &report.findings {
            assert!(
                !f.problem.is_empty() && !f.fix.command.is_empty(),
                "{name}: {f:?}"
            );
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn the_good_manifests_are_clean_and_every_kind_was_read() {
    let objects = load(&[fixtures().join("good")]).unwrap();
    assert_eq!(objects.namespaces.len(), 3);
    assert_eq!(objects.persistent_volumes.len(), 1, "the List is flattened");
    assert_eq!(objects.persistent_volume_claims.len(), 1);
    assert_eq!(objects.peer_authentications.as_ref().map(Vec::len), Some(2));
    let report = analyze(&objects);
    assert_eq!(report.exit_code(), 0, "{}", report.to_text());
    assert!(serious(&report).is_empty(), "{}", report.to_text());
}

/// The good set's node plugin registers itself (`--registration-socket`, as shipped); one
/// with a node-driver-registrar sidecar instead is as clean.
#[test]
fn a_node_plugin_registered_by_a_registrar_sidecar_is_clean_too() {
    let report = run(&[fixtures().join("good-registrar")]);
    assert!(serious(&report).is_empty(), "{}", report.to_text());
}

fn finding<'r>(report: &'r Report, code: &str, about: &str) -> &'r rwxnfs_doctor::Finding {
    report
        .findings
        .iter()
        .find(|f| f.code == code && f.problem.contains(about))
        .unwrap_or_else(|| panic!("no {code} about {about:?}:\n{}", report.to_text()))
}

#[test]
fn registration_findings_name_who_registers_and_the_exact_fix() {
    const SOCKET: &str = "/var/lib/kubelet/plugins/rwxnfs.csi.io/csi.sock";
    let wanted_flag = format!("--kubelet-registration-path={SOCKET}");

    let report = run(&[fixtures().join("bad/RWX060-node-plugin-registration-path.yaml")]);
    let f = finding(
        &report,
        "RWX060",
        "rwxnfs node (container rwxnfs) registers",
    );
    assert!(
        f.problem.contains("(driver \"nfs.csi.k8s.io\")"),
        "{}",
        f.problem
    );
    let f = finding(
        &report,
        "RWX061",
        "rwxnfs node (container rwxnfs) tells the kubelet",
    );
    let patch = f.fix.patch.as_ref().unwrap();
    let container = &patch["spec"]["template"]["spec"]["containers"][0];
    assert_eq!(container["name"], "rwxnfs");
    assert!(
        container["args"]
            .as_array()
            .unwrap()
            .contains(&wanted_flag.as_str().into()),
        "{patch}"
    );

    let report = run(&[fixtures().join("bad/RWX060-registration-path.yaml")]);
    finding(
        &report,
        "RWX060",
        "the registrar (container node-driver-registrar) registers",
    );

    let report = run(&[fixtures().join("bad/RWX061-kubelet-registration-path-unset.yaml")]);
    let f = finding(
        &report,
        "RWX061",
        "tells the kubelet the socket is /csi/csi.sock,",
    );
    assert!(
        f.problem
            .ends_with(&format!("the driver's socket is {SOCKET}")),
        "{}",
        f.problem
    );
    assert!(f.fix.command.contains(&wanted_flag), "{}", f.fix.command);

    let report = run(&[fixtures().join("bad/RWX061-registration-socket-not-watched.yaml")]);
    let f = finding(&report, "RWX061", "registration socket in /csi,");
    assert!(
        f.problem
            .contains("which is /var/lib/kubelet/plugins/rwxnfs.csi.io on the host"),
        "{}",
        f.problem
    );
    assert!(
        f.fix.command.starts_with(
            "mount a hostPath volume of /var/lib/kubelet/plugins_registry at /csi in container rwxnfs"
        ),
        "{}",
        f.fix.command
    );

    let report = run(&[fixtures().join("bad/RWX061-not-registered.yaml")]);
    let f = finding(&report, "RWX061", "nothing registers the driver");
    let spec = &f.fix.patch.as_ref().unwrap()["spec"]["template"]["spec"];
    assert_eq!(
        spec["containers"][0]["args"],
        serde_json::json!([
            "node",
            "--endpoint=unix:///csi/csi.sock",
            "--registration-socket=/registration/rwxnfs.csi.io-reg.sock",
            wanted_flag,
        ])
    );
    assert_eq!(
        spec["containers"][0]["volumeMounts"],
        serde_json::json!([{"name": "registration-dir", "mountPath": "/registration"}])
    );
    assert_eq!(
        spec["volumes"][0]["hostPath"]["path"],
        "/var/lib/kubelet/plugins_registry"
    );
}

#[test]
fn without_the_controller_configuration_the_defaults_are_checked_and_said_so() {
    let report = run(&[fixtures().join("bad/RWX001-sidecar-ports-not-excluded.yaml")]);
    let info = report
        .findings
        .iter()
        .find(|f| f.code == "RWX091")
        .expect("RWX091");
    assert_eq!(info.severity, Severity::Info);
    let f = report.findings.iter().find(|f| f.code == "RWX001").unwrap();
    // The fix keeps what was excluded and adds NFS and the default agent port.
    let patch = f.fix.patch.as_ref().unwrap().to_string();
    assert!(patch.contains("53,2049,9820"), "{patch}");
    assert!(
        f.fix.command.starts_with(
            "kubectl -n rwxnfs patch deployment rwxnfs-controller --type strategic -p '"
        ),
        "{}",
        f.fix.command
    );
}

#[test]
fn the_fixes_name_exactly_what_is_missing() {
    let report = run(&[fixtures().join("bad/RWX002-vips-not-excluded.yaml")]);
    let f = report.findings.iter().find(|f| f.code == "RWX002").unwrap();
    assert!(
        f.problem.contains("192.168.222.25/32,192.168.222.26/32"),
        "{}",
        f.problem
    );
    let report = run(&[fixtures().join("bad/RWX010-nfs-server-behind-sidecar.yaml")]);
    let f = report.findings.iter().find(|f| f.code == "RWX010").unwrap();
    assert!(
        f.fix
            .command
            .contains(r#""traffic.sidecar.istio.io/excludeInboundPorts":"2049,20048""#),
        "{}",
        f.fix.command
    );
    let report = run(&[fixtures().join("bad/RWX011-strict-mtls-on-nfs.yaml")]);
    let f = report.findings.iter().find(|f| f.code == "RWX011").unwrap();
    assert_eq!(
        f.object.to_string(),
        "PeerAuthentication/istio-system/default"
    );
    assert!(
        f.fix.command.starts_with("kubectl apply -f - <<'EOF'")
            && f.fix.command.contains(r#""2049":{"mode":"PERMISSIVE"}"#),
        "{}",
        f.fix.command
    );
    let report = run(&[fixtures().join("bad/RWX011-strict-mtls-ambient.yaml")]);
    let f = report.findings.iter().find(|f| f.code == "RWX011").unwrap();
    assert!(
        f.fix
            .command
            .contains(r#""istio.io/dataplane-mode":"none""#),
        "in ambient the server is opted out: {}",
        f.fix.command
    );
    let report = run(&[fixtures().join("bad/RWX060-registration-path.yaml")]);
    let f = report.findings.iter().find(|f| f.code == "RWX061").unwrap();
    assert!(
        f.fix.command.contains(
            "--kubelet-registration-path=/var/lib/kubelet/plugins/rwxnfs.csi.io/csi.sock"
        ),
        "{}",
        f.fix.command
    );
}

#[test]
fn json_output_has_a_stable_shape() {
    let report = run(&[fixtures().join("bad/RWX020-service-port-not-tcp.yaml")]);
    let json: serde_json::Value = serde_json::from_str(&report.to_json()).unwrap();
    assert_eq!(
        json["summary"],
        serde_json::json!({"errors": 0, "warnings": 1, "info": 0, "exitCode": 1})
    );
    let f = &json["findings"][0];
    assert_eq!(f["code"], "RWX020");
    assert_eq!(f["severity"], "warning");
    assert_eq!(
        f["object"],
        serde_json::json!({"kind": "Service", "namespace": "storage", "name": "nfs"})
    );
    assert!(f["problem"].as_str().unwrap().contains("2049"));
    assert_eq!(f["fix"]["patchType"], "json");
    assert_eq!(
        f["fix"]["patch"],
        serde_json::json!([{"op": "add", "path": "/spec/ports/0/appProtocol", "value": "tcp"}])
    );
    assert!(
        f["fix"]["command"]
            .as_str()
            .unwrap()
            .starts_with("kubectl -n storage patch service nfs --type json")
    );
}

#[test]
fn exit_codes_follow_the_worst_severity() {
    assert_eq!(Report::default().exit_code(), 0);
    assert_eq!(
        run(&[fixtures().join("bad/RWX020-service-port-not-tcp.yaml")]).exit_code(),
        1
    );
    assert_eq!(
        run(&[fixtures().join("bad/RWX050-node-plugin-off-host-network.yaml")]).exit_code(),
        2
    );
}

#[test]
fn plaintext_claims_under_strict_mtls_are_named_with_their_policy_and_the_fix_is_mtls() {
    let report = run(&[fixtures().join("bad/RWX012-plaintext-claims-under-strict-mtls.yaml")]);
    let found: Vec<_> = report
        .findings
        .iter()
        .filter(|f| f.code == "RWX012")
        .collect();
    assert_eq!(found.len(), 1, "{}", report.to_text());
    let f = found[0];
    assert_eq!(f.object.to_string(), "StorageClass/rwxnfs");
    assert!(
        f.problem.contains(
            "shop/carts (PeerAuthentication istio-system/default), shop/uploads \
             (PeerAuthentication istio-system/default);"
        ),
        "{}",
        f.problem
    );
    for not_listed in ["sealed", "scratch", "legacy/old"] {
        assert!(!f.problem.contains(not_listed), "{}", f.problem);
    }
    assert_eq!(
        f.fix.patch,
        Some(serde_json::json!({"parameters": {"transport": "mtls"}}))
    );
    assert!(
        f.fix
            .command
            .ends_with("--dry-run=client -o yaml | kubectl replace --force -f -"),
        "{}",
        f.fix.command
    );
}

#[test]
fn a_transport_the_driver_does_not_know_is_an_error_with_the_value_it_meant() {
    let report = run(&[fixtures().join("bad/RWX041-transport-value.yaml")]);
    let f = finding(&report, "RWX041", "transport is \"TLS\"");
    assert_eq!(f.severity, Severity::Error);
    assert_eq!(
        f.fix.patch,
        Some(serde_json::json!({"parameters": {"transport": "tls"}}))
    );
}
