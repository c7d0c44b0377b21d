//! Live mode against mocked API scenarios: what the API lists becomes findings; a missing
//! PeerAuthentication CRD skips one check with an info finding; an API that cannot be reached
//! is a clear error.

mod support;

use http::StatusCode;
use rwxnfs_doctor::{Severity, analyze, live};
use serde_json::json;
use support::{Answers, client, get, list, serve, status};

fn injected_namespace() -> serde_json::Value {
    json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "rwxnfs", "labels": {"istio-injection": "enabled"}}})
}

fn controller_deployment() -> serde_json::Value {
    json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "rwxnfs-controller", "namespace": "rwxnfs"},
        "spec": {
            "selector": {"matchLabels": {"app": "rwxnfs-controller"}},
            "template": {
                "metadata": {"labels": {"app": "rwxnfs-controller"}},
                "spec": {
                    "containers": [{"name": "rwxnfs", "image": "ghcr.io/rwxnfs/rwxnfs:0.1.0", "args": ["controller"],
                                    "volumeMounts": [{"name": "socket-dir", "mountPath": "/csi"}, {"name": "config", "mountPath": "/etc/rwxnfs"}]}],
                    "volumes": [{"name": "socket-dir", "emptyDir": {}}, {"name": "config", "configMap": {"name": "rwxnfs-controller"}}]
                }
            }
        }
    })
}

fn config_map() -> serde_json::Value {
    json!({
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": "rwxnfs-controller", "namespace": "rwxnfs"},
        "data": {"controller.yaml": "backends:\n  - name: ha1\n    agent: {endpoint: \"tcp://192.168.222.25:9820\", tls: {ca: /a, cert: /b, key: /c}}\n"}
    })
}

fn nfs_service() -> serde_json::Value {
    json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "nfs", "namespace": "storage"},
           "spec": {"ports": [{"name": "nfs", "port": 2049}]}})
}

/// The whole cluster as the scenario's API serves it; `peer` answers the PeerAuthentication list.
fn cluster(peer: (StatusCode, serde_json::Value)) -> Answers {
    Answers::from([
        (
            get("/api/v1/namespaces"),
            list("Namespace", vec![injected_namespace()]),
        ),
        (
            get("/apis/apps/v1/deployments"),
            list("Deployment", vec![controller_deployment()]),
        ),
        (get("/apis/apps/v1/daemonsets"), list("DaemonSet", vec![])),
        (
            get("/apis/apps/v1/statefulsets"),
            list("StatefulSet", vec![]),
        ),
        (get("/api/v1/pods"), list("Pod", vec![])),
        (
            get("/api/v1/services"),
            list("Service", vec![nfs_service()]),
        ),
        (
            get("/apis/networking.k8s.io/v1/networkpolicies"),
            list("NetworkPolicy", vec![]),
        ),
        (
            get("/apis/storage.k8s.io/v1/storageclasses"),
            list("StorageClass", vec![]),
        ),
        (
            get("/apis/storage.k8s.io/v1/csidrivers"),
            list("CSIDriver", vec![]),
        ),
        (
            get("/api/v1/persistentvolumes"),
            list("PersistentVolume", vec![]),
        ),
        (
            get("/api/v1/persistentvolumeclaims"),
            list("PersistentVolumeClaim", vec![]),
        ),
        (get("/apis/security.istio.io/v1/peerauthentications"), peer),
        (
            get("/api/v1/namespaces/rwxnfs/configmaps/rwxnfs-controller"),
            (StatusCode::OK, config_map()),
        ),
    ])
}

#[tokio::test]
async fn listed_objects_become_findings_with_the_configuration_the_controller_mounts() {
    let (client, handle) = client();
    let answers = cluster(list("PeerAuthentication", vec![]));
    let expected: Vec<String> = answers.keys().map(|(_, p)| p.clone()).collect();
    let api = serve(handle, answers);
    let objects = live::collect(&client).await.expect("every list answers");
    drop(client);
    let seen = api.await.unwrap();
    for path in expected {
        assert!(
            seen.iter().any(|s| s.path == path),
            "{path} was never asked for"
        );
    }
    let report = analyze(&objects);
    let codes: Vec<&str> = report.findings.iter().map(|f| f.code).collect();
    assert_eq!(
        codes,
        ["RWX001", "RWX002", "RWX003", "RWX020"],
        "{}",
        report.to_text()
    );
    let vips = &report.findings[1];
    assert!(
        vips.problem.contains("192.168.222.25/32"),
        "the VIP comes from the mounted ConfigMap: {}",
        vips.problem
    );
    assert_eq!(report.exit_code(), 2);
}

#[tokio::test]
async fn without_the_peer_authentication_crd_that_check_is_skipped_and_the_rest_run() {
    let (client, handle) = client();
    let missing = status(
        StatusCode::NOT_FOUND,
        "NotFound",
        "the server could not find the requested resource",
    );
    let api = serve(handle, cluster(missing));
    let objects = live::collect(&client)
        .await
        .expect("a missing CRD is not an error");
    drop(client);
    api.await.unwrap();
    assert!(objects.peer_authentications.is_none());
    let report = analyze(&objects);
    let info = report
        .findings
        .iter()
        .find(|f| f.code == "RWX090")
        .expect("RWX090");
    assert_eq!(info.severity, Severity::Info);
    assert!(
        report.findings.iter().any(|f| f.code == "RWX020"),
        "{}",
        report.to_text()
    );
    assert!(
        report.findings.iter().any(|f| f.code == "RWX001"),
        "{}",
        report.to_text()
    );
}

#[tokio::test]
async fn an_api_that_cannot_be_reached_is_an_error_naming_what_was_listed() {
    let (client, handle) = client();
    drop(handle);
    let err = live::collect(&client).await.unwrap_err().to_string();
    assert!(
        err.contains("cannot list namespaces from the Kubernetes API"),
        "{err}"
    );
}

#[tokio::test]
async fn an_api_error_on_another_list_is_an_error_too() {
    let (client, handle) = client();
    let mut answers = cluster(list("PeerAuthentication", vec![]));
    answers.insert(
        get("/api/v1/services"),
        status(StatusCode::FORBIDDEN, "Forbidden", "services is forbidden"),
    );
    let api = serve(handle, answers);
    let err = live::collect(&client).await.unwrap_err().to_string();
    drop(client);
    api.await.unwrap();
    assert!(
        err.contains("cannot list services") && err.contains("forbidden"),
        "{err}"
    );
}
