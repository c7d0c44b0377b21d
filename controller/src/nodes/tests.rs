//! Node lookups against a mocked Kubernetes API: each scenario answers exactly the calls it
//! expects, and a missing call fails the test.

use http::{Request, Response, StatusCode};
use kube::client::Body;
use serde_json::json;
use tonic::Code;

use super::*;

type Handle = tower_test::mock::Handle<Request<Body>, Response<Body>>;

fn resolver() -> (KubeNodes, Handle) {
    let (service, handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
    (
        KubeNodes::new(kube::Client::new(service, "default")),
        handle,
    )
}

/// Answers one GET of `path` with `status` and `body`.
async fn answer(mut handle: Handle, path: &str, status: StatusCode, body: serde_json::Value) {
    let (request, send) = handle
        .next_request()
        .await
        .expect("the resolver made no API call");
    assert_eq!(request.method(), http::Method::GET);
    assert_eq!(request.uri().path(), path);
    let response = Response::builder()
        .status(status)
        .body(Body::from(serde_json::to_vec(&body).unwrap()))
        .unwrap();
    send.send_response(response);
}

fn node(
    name: &str,
    annotations: serde_json::Value,
    addresses: serde_json::Value,
) -> serde_json::Value {
    json!({
        "apiVersion": "v1", "kind": "Node",
        "metadata": {"name": name, "annotations": annotations},
        "status": {"addresses": addresses}
    })
}

#[tokio::test]
async fn a_nodes_internal_ip_is_its_nfs_address() {
    let (nodes, handle) = resolver();
    let body = node(
        "n1",
        json!({}),
        json!([{"type": "Hostname", "address": "n1"}, {"type": "InternalIP", "address": "10.0.0.11"}, {"type": "ExternalIP", "address": "203.0.113.9"}]),
    );
    let api = tokio::spawn(answer(handle, "/api/v1/nodes/n1", StatusCode::OK, body));
    assert_eq!(
        nodes.addresses("n1").await.unwrap(),
        vec!["10.0.0.11".parse::<IpAddr>().unwrap()]
    );
    api.await.unwrap();
}

#[tokio::test]
async fn the_annotation_overrides_the_internal_ip() {
    let (nodes, handle) = resolver();
    let body = node(
        "n2",
        json!({ADDRESSES_ANNOTATION: "192.168.50.2, fd00::2"}),
        json!([{"type": "InternalIP", "address": "10.0.0.12"}]),
    );
    let api = tokio::spawn(answer(handle, "/api/v1/nodes/n2", StatusCode::OK, body));
    let addrs = nodes.addresses("n2").await.unwrap();
    assert_eq!(
        addrs,
        vec![
            "192.168.50.2".parse::<IpAddr>().unwrap(),
            "fd00::2".parse().unwrap()
        ]
    );
    api.await.unwrap();
}

#[tokio::test]
async fn a_missing_node_is_not_found() {
    let (nodes, handle) = resolver();
    let status = json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "message": "nodes \"gone\" not found", "reason": "NotFound", "code": 404});
    let api = tokio::spawn(answer(
        handle,
        "/api/v1/nodes/gone",
        StatusCode::NOT_FOUND,
        status,
    ));
    assert_eq!(
        nodes.addresses("gone").await.unwrap_err().code(),
        Code::NotFound
    );
    api.await.unwrap();
}

#[tokio::test]
async fn a_bad_annotation_or_no_address_is_a_failed_precondition_naming_the_fix() {
    let (nodes, handle) = resolver();
    let body = node("n3", json!({ADDRESSES_ANNOTATION: "not-an-ip"}), json!([]));
    let api = tokio::spawn(answer(handle, "/api/v1/nodes/n3", StatusCode::OK, body));
    let err = nodes.addresses("n3").await.unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition);
    assert!(err.message().contains("not-an-ip"), "{}", err.message());
    api.await.unwrap();

    let (nodes, handle) = resolver();
    let api = tokio::spawn(answer(
        handle,
        "/api/v1/nodes/n4",
        StatusCode::OK,
        node("n4", json!({}), json!([])),
    ));
    let err = nodes.addresses("n4").await.unwrap_err();
    assert!(
        err.message().contains(ADDRESSES_ANNOTATION),
        "{}",
        err.message()
    );
    api.await.unwrap();
}

#[tokio::test]
async fn an_api_failure_is_unavailable() {
    let (nodes, handle) = resolver();
    let status = json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "message": "etcd timeout", "reason": "InternalError", "code": 500});
    let api = tokio::spawn(answer(
        handle,
        "/api/v1/nodes/n5",
        StatusCode::INTERNAL_SERVER_ERROR,
        status,
    ));
    assert_eq!(
        nodes.addresses("n5").await.unwrap_err().code(),
        Code::Unavailable
    );
    api.await.unwrap();
}
