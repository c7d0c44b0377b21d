//! The controller's start-up self-check against mocked API scenarios: its own pod injected
//! without exclusions is reported and an Event is POSTed; a correctly annotated pod records
//! nothing; an API that cannot be reached is an error for the caller to log.

mod support;

use http::{Method, StatusCode};
use rwxnfs_doctor::selfcheck::{self, Identity};
use rwxnfs_model::mesh::Traffic;
use serde_json::json;
use support::{Answers, client, get, serve, status};

const POD: &str = "/api/v1/namespaces/rwxnfs/pods/rwxnfs-controller-5d8f7c9b4-x2x7k";
const NAMESPACE: &str = "/api/v1/namespaces/rwxnfs";
const EVENTS: &str = "/apis/events.k8s.io/v1/namespaces/rwxnfs/events";

/// The tests of this file run one at a time: one of them captures the check's log with a
/// thread-local subscriber, and the same log callsites hit at the same moment on another
/// test's thread (no subscriber there) left its capture empty, 9 runs in 60.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

fn me() -> Identity {
    let mut traffic = Traffic::default();
    traffic.tcp_ports.extend([2049, 9820]);
    traffic.ranges.insert("192.168.222.25/32".into());
    Identity {
        pod: "rwxnfs-controller-5d8f7c9b4-x2x7k".into(),
        namespace: "rwxnfs".into(),
        traffic,
        config: "/etc/rwxnfs/controller.yaml".into(),
    }
}

/// The controller's pod as the API returns it after injection.
fn pod(annotations: serde_json::Value) -> serde_json::Value {
    json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {
            "name": "rwxnfs-controller-5d8f7c9b4-x2x7k", "namespace": "rwxnfs", "uid": "0b9f-uid",
            "labels": {"app": "rwxnfs-controller", "pod-template-hash": "5d8f7c9b4"},
            "annotations": annotations,
            "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "rwxnfs-controller-5d8f7c9b4", "uid": "rs", "controller": true}]
        },
        "spec": {"containers": [
            {"name": "rwxnfs", "image": "ghcr.io/rwxnfs/rwxnfs:0.1.0", "args": ["controller"]},
            {"name": "istio-proxy", "image": "docker.io/istio/proxyv2:1.24.0"}
        ]}
    })
}

fn namespace() -> serde_json::Value {
    json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "rwxnfs", "labels": {"istio-injection": "enabled"}}})
}

#[tokio::test]
async fn an_injected_pod_without_exclusions_is_reported_and_an_event_recorded() {
    let _serial = SERIAL.lock().await;
    let (client, handle) = client();
    let api = serve(
        handle,
        Answers::from([
            (get(POD), (StatusCode::OK, pod(json!({})))),
            (get(NAMESPACE), (StatusCode::OK, namespace())),
        ]),
    );
    let findings = selfcheck::run(&client, &me())
        .await
        .expect("the check runs");
    drop(client);
    let seen = api.await.unwrap();
    let codes: Vec<&str> = findings.iter().map(|f| f.code).collect();
    assert_eq!(codes, ["RWX001", "RWX002", "RWX003"]);
    assert_eq!(
        findings[0].object.to_string(),
        "Deployment/rwxnfs/rwxnfs-controller",
        "the fix patches the Deployment"
    );
    let posts: Vec<_> = seen.iter().filter(|s| s.method == Method::POST).collect();
    assert_eq!(posts.len(), 1, "{seen:?}");
    let event = &posts[0];
    assert_eq!(event.path, EVENTS);
    // A full name as client-go's recorder makes one (`<pod>.<hex nanoseconds>`): a
    // generateName of `<pod>.` is refused by the API server (422).
    let name = event.body["metadata"]["name"].as_str().unwrap();
    let stamp = name
        .strip_prefix("rwxnfs-controller-5d8f7c9b4-x2x7k.")
        .unwrap_or_else(|| panic!("{name}"));
    assert!(
        !stamp.is_empty()
            && stamp
                .bytes()
                .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()),
        "{name}"
    );
    assert!(
        event.body["metadata"].get("generateName").is_none(),
        "{}",
        event.body
    );
    assert_eq!(event.body["reason"], selfcheck::REASON);
    assert_eq!(event.body["type"], "Warning");
    assert_eq!(
        event.body["reportingController"],
        selfcheck::REPORTING_CONTROLLER
    );
    assert_eq!(
        event.body["regarding"],
        json!({"apiVersion": "v1", "kind": "Pod", "name": "rwxnfs-controller-5d8f7c9b4-x2x7k", "namespace": "rwxnfs", "uid": "0b9f-uid"})
    );
    assert!(event.body["eventTime"].is_string(), "{}", event.body);
    let note = event.body["note"].as_str().unwrap();
    assert!(
        note.contains("RWX001 error: kubectl -n rwxnfs patch deployment rwxnfs-controller")
            && note.contains("2049,9820"),
        "{note}"
    );
    assert!(note.len() <= 1024);
}

/// Collects what the self-check logs.
#[derive(Clone, Default)]
struct Logs(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

impl std::io::Write for Logs {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().expect("not poisoned").extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test(flavor = "current_thread")]
async fn each_finding_is_logged_at_its_severity_with_its_fix() {
    let _serial = SERIAL.lock().await;
    let logs = Logs::default();
    let writer = logs.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);
    let (client, handle) = client();
    let api = serve(
        handle,
        Answers::from([
            (get(POD), (StatusCode::OK, pod(json!({})))),
            (get(NAMESPACE), (StatusCode::OK, namespace())),
        ]),
    );
    selfcheck::run(&client, &me())
        .await
        .expect("the check runs");
    drop(client);
    api.await.unwrap();
    let text = String::from_utf8(logs.0.lock().unwrap().clone()).unwrap();
    let line = |code: &str| {
        text.lines()
            .find(|l| l.contains(code))
            .unwrap_or_else(|| panic!("{code} not logged:\n{text}"))
            .to_owned()
    };
    assert!(
        line("RWX001").contains("ERROR")
            && line("RWX001").contains("fix=kubectl -n rwxnfs patch deployment rwxnfs-controller"),
        "{text}"
    );
    assert!(line("RWX003").contains("WARN"), "{text}");
}

#[tokio::test]
async fn a_correctly_annotated_pod_records_no_event() {
    let _serial = SERIAL.lock().await;
    let (client, handle) = client();
    let annotations = json!({
        "traffic.sidecar.istio.io/excludeOutboundPorts": "2049,9820",
        "traffic.sidecar.istio.io/excludeOutboundIPRanges": "192.168.222.0/24",
        "proxy.istio.io/config": "{\"holdApplicationUntilProxyStarts\": true}"
    });
    let api = serve(
        handle,
        Answers::from([
            (get(POD), (StatusCode::OK, pod(annotations))),
            (get(NAMESPACE), (StatusCode::OK, namespace())),
        ]),
    );
    let findings = selfcheck::run(&client, &me())
        .await
        .expect("the check runs");
    drop(client);
    let seen = api.await.unwrap();
    assert!(findings.is_empty(), "{findings:?}");
    assert_eq!(
        seen.iter().map(|s| s.path.as_str()).collect::<Vec<_>>(),
        [POD, NAMESPACE]
    );
}

#[tokio::test]
async fn an_unreadable_namespace_still_checks_the_pod_itself() {
    let _serial = SERIAL.lock().await;
    let (client, handle) = client();
    let forbidden = status(
        StatusCode::FORBIDDEN,
        "Forbidden",
        "namespaces \"rwxnfs\" is forbidden",
    );
    let api = serve(
        handle,
        Answers::from([
            (get(POD), (StatusCode::OK, pod(json!({})))),
            (get(NAMESPACE), forbidden),
        ]),
    );
    let findings = selfcheck::run(&client, &me())
        .await
        .expect("the check runs");
    drop(client);
    let seen = api.await.unwrap();
    assert!(
        findings.iter().any(|f| f.code == "RWX001"),
        "the istio-proxy container shows the injection"
    );
    assert!(
        seen.iter()
            .any(|s| s.method == Method::POST && s.path == EVENTS)
    );
}

#[tokio::test]
async fn an_api_that_cannot_be_reached_is_an_error_not_a_panic() {
    let _serial = SERIAL.lock().await;
    let (client, handle) = client();
    drop(handle);
    let err = selfcheck::run(&client, &me())
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("cannot read this pod (rwxnfs/rwxnfs-controller-5d8f7c9b4-x2x7k)"),
        "{err}"
    );
}
