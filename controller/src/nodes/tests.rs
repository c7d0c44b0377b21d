//! Node lookups against a mocked Kubernetes API. The resolver's watch (one LIST, then WATCH
//! after WATCH) and its lookups' GETs arrive on separate queues, and each scenario answers
//! exactly the calls it expects: a call that does not come fails the test, and so does one that
//! comes when it should not.

use std::time::Duration;

use http::{Request, Response, StatusCode};
use kube::client::Body;
use serde_json::json;
use tokio::sync::mpsc;
use tonic::Code;

use super::*;

type Handle = tower_test::mock::Handle<Request<Body>, Response<Body>>;
type Responder = tower_test::mock::SendResponse<Response<Body>>;

/// How long a scenario waits for a call it expects.
const CALL: Duration = Duration::from_secs(5);

/// One API call, to be answered.
struct Call {
    request: Request<Body>,
    send: Responder,
}

impl Call {
    fn answer(self, status: StatusCode, body: serde_json::Value) {
        self.answer_raw(status, serde_json::to_vec(&body).unwrap());
    }

    /// A watch's answer: one event a line, then the end of the stream, after which the
    /// watcher watches again from the last resource version.
    fn answer_events(self, events: &[serde_json::Value]) {
        let mut body = Vec::new();
        for event in events {
            body.extend(serde_json::to_vec(event).unwrap());
            body.push(b'\n');
        }
        self.answer_raw(StatusCode::OK, body);
    }

    fn answer_raw(self, status: StatusCode, body: Vec<u8>) {
        let response = Response::builder()
            .status(status)
            .body(Body::from(body))
            .unwrap();
        self.send.send_response(response);
    }
}

/// The mocked API server: the calls made so far, by kind, waiting for their answer.
struct Api {
    lists: mpsc::UnboundedReceiver<Call>,
    watches: mpsc::UnboundedReceiver<Call>,
    gets: mpsc::UnboundedReceiver<Call>,
}

impl Api {
    fn start(mut handle: Handle) -> Api {
        let (lists_tx, lists) = mpsc::unbounded_channel();
        let (watches_tx, watches) = mpsc::unbounded_channel();
        let (gets_tx, gets) = mpsc::unbounded_channel();
        tokio::spawn(async move {
            while let Some((request, send)) = handle.next_request().await {
                assert_eq!(request.method(), http::Method::GET, "{}", request.uri());
                let query = request.uri().query().unwrap_or_default();
                let queue = match request.uri().path() {
                    "/api/v1/nodes" if query.contains("watch=true") => &watches_tx,
                    "/api/v1/nodes" => &lists_tx,
                    path if path.starts_with("/api/v1/nodes/") => &gets_tx,
                    path => panic!("unexpected API call {path}?{query}"),
                };
                // A receiver gone means its scenario is over.
                let _ = queue.send(Call { request, send });
            }
        });
        Api {
            lists,
            watches,
            gets,
        }
    }

    async fn next(queue: &mut mpsc::UnboundedReceiver<Call>, what: &str) -> Call {
        tokio::time::timeout(CALL, queue.recv())
            .await
            .unwrap_or_else(|_| panic!("the resolver made no {what} within {CALL:?}"))
            .expect("the mocked API stopped")
    }

    async fn list(&mut self) -> Call {
        Api::next(&mut self.lists, "LIST of nodes").await
    }

    async fn watch(&mut self) -> Call {
        Api::next(&mut self.watches, "WATCH of nodes").await
    }

    /// The next GET, which must be of node `name`.
    async fn get(&mut self, name: &str) -> Call {
        let call = Api::next(&mut self.gets, &format!("GET of node {name}")).await;
        assert_eq!(call.request.uri().path(), format!("/api/v1/nodes/{name}"));
        call
    }

    /// Fails when a GET has been made.
    fn no_get(&mut self) {
        if let Ok(call) = self.gets.try_recv() {
            panic!("unexpected GET {}", call.request.uri());
        }
    }
}

/// A resolver whose watch has not listed the nodes (its LIST is left unanswered), so every
/// lookup is a GET.
fn resolver() -> (KubeNodes, Api) {
    let (service, handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
    let api = Api::start(handle);
    (KubeNodes::new(kube::Client::new(service, "default")), api)
}

/// A resolver whose watch has listed `nodes` and is watching; the returned call is its first
/// WATCH, to be answered with events.
async fn synced_resolver(nodes: &[serde_json::Value]) -> (KubeNodes, Api, Call) {
    let (resolver, mut api) = resolver();
    api.list().await.answer(StatusCode::OK, node_list(nodes));
    tokio::time::timeout(CALL, resolver.synced())
        .await
        .expect("the cache synced");
    let watch = api.watch().await;
    (resolver, api, watch)
}

fn node_list(nodes: &[serde_json::Value]) -> serde_json::Value {
    json!({
        "apiVersion": "v1", "kind": "NodeList",
        "metadata": {"resourceVersion": "100"},
        "items": nodes
    })
}

fn node(
    name: &str,
    annotations: serde_json::Value,
    addresses: serde_json::Value,
) -> serde_json::Value {
    versioned_node(name, "1", annotations, addresses)
}

fn versioned_node(
    name: &str,
    resource_version: &str,
    annotations: serde_json::Value,
    addresses: serde_json::Value,
) -> serde_json::Value {
    json!({
        "apiVersion": "v1", "kind": "Node",
        "metadata": {"name": name, "resourceVersion": resource_version, "annotations": annotations},
        "status": {"addresses": addresses}
    })
}

fn internal_ip(ip: &str) -> serde_json::Value {
    json!([{"type": "InternalIP", "address": ip}])
}

fn not_found(name: &str) -> serde_json::Value {
    json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "message": format!("nodes \"{name}\" not found"), "reason": "NotFound", "code": 404})
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

/// A lookup that must not wait for the API.
async fn from_cache(nodes: &KubeNodes, name: &str) -> Result<Vec<IpAddr>, ControllerError> {
    tokio::time::timeout(CALL, nodes.addresses(name))
        .await
        .unwrap_or_else(|_| panic!("the lookup of {name} waited for the API"))
}

// Lookups through a GET (the cache does not hold the node).

#[tokio::test]
async fn a_nodes_internal_ip_is_its_nfs_address() {
    let (nodes, mut api) = resolver();
    let body = node(
        "n1",
        json!({}),
        json!([{"type": "Hostname", "address": "n1"}, {"type": "InternalIP", "address": "10.0.0.11"}, {"type": "ExternalIP", "address": "203.0.113.9"}]),
    );
    let (addrs, ()) = tokio::join!(nodes.addresses("n1"), async {
        api.get("n1").await.answer(StatusCode::OK, body);
    });
    assert_eq!(addrs.unwrap(), vec![ip("10.0.0.11")]);
}

#[tokio::test]
async fn the_annotation_overrides_the_internal_ip() {
    let (nodes, mut api) = resolver();
    let body = node(
        "n2",
        json!({ADDRESSES_ANNOTATION: "192.168.50.2, fd00::2"}),
        internal_ip("10.0.0.12"),
    );
    let (addrs, ()) = tokio::join!(nodes.addresses("n2"), async {
        api.get("n2").await.answer(StatusCode::OK, body);
    });
    assert_eq!(addrs.unwrap(), vec![ip("192.168.50.2"), ip("fd00::2")]);
}

#[tokio::test]
async fn a_missing_node_is_not_found() {
    let (nodes, mut api) = resolver();
    let (result, ()) = tokio::join!(nodes.addresses("gone"), async {
        api.get("gone")
            .await
            .answer(StatusCode::NOT_FOUND, not_found("gone"));
    });
    assert_eq!(result.unwrap_err().code(), Code::NotFound);
}

#[tokio::test]
async fn a_bad_annotation_or_no_address_is_a_failed_precondition_naming_the_fix() {
    let (nodes, mut api) = resolver();
    let body = node("n3", json!({ADDRESSES_ANNOTATION: "not-an-ip"}), json!([]));
    let (result, ()) = tokio::join!(nodes.addresses("n3"), async {
        api.get("n3").await.answer(StatusCode::OK, body);
    });
    let err = result.unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition);
    assert!(err.message().contains("not-an-ip"), "{}", err.message());

    let body = node("n4", json!({}), json!([]));
    let (result, ()) = tokio::join!(nodes.addresses("n4"), async {
        api.get("n4").await.answer(StatusCode::OK, body);
    });
    let err = result.unwrap_err();
    assert!(
        err.message().contains(ADDRESSES_ANNOTATION),
        "{}",
        err.message()
    );
}

#[tokio::test]
async fn an_api_failure_is_unavailable() {
    let (nodes, mut api) = resolver();
    let status = json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "message": "etcd timeout", "reason": "InternalError", "code": 500});
    let (result, ()) = tokio::join!(nodes.addresses("n5"), async {
        api.get("n5")
            .await
            .answer(StatusCode::INTERNAL_SERVER_ERROR, status);
    });
    assert_eq!(result.unwrap_err().code(), Code::Unavailable);
}

// Lookups from the watch's cache.

#[tokio::test]
async fn a_cached_node_is_answered_with_no_api_call() {
    let (nodes, mut api, _watch) = synced_resolver(&[
        node("n1", json!({}), internal_ip("10.0.0.11")),
        node(
            "n2",
            json!({ADDRESSES_ANNOTATION: "192.168.50.2"}),
            internal_ip("10.0.0.12"),
        ),
    ])
    .await;
    for _ in 0..3 {
        assert_eq!(
            from_cache(&nodes, "n1").await.unwrap(),
            vec![ip("10.0.0.11")]
        );
        assert_eq!(
            from_cache(&nodes, "n2").await.unwrap(),
            vec![ip("192.168.50.2")]
        );
    }
    api.no_get();
}

#[tokio::test]
async fn a_cached_node_without_an_address_is_a_failed_precondition_with_no_api_call() {
    let (nodes, mut api, _watch) = synced_resolver(&[node("n4", json!({}), json!([]))]).await;
    let err = from_cache(&nodes, "n4").await.unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition);
    assert!(
        err.message().contains(ADDRESSES_ANNOTATION),
        "{}",
        err.message()
    );
    api.no_get();
}

#[tokio::test]
async fn a_node_the_cache_does_not_hold_is_looked_up_with_a_get() {
    let (nodes, mut api, _watch) =
        synced_resolver(&[node("n1", json!({}), internal_ip("10.0.0.11"))]).await;
    // Created a moment ago: the watch has not delivered it yet.
    let (addrs, ()) = tokio::join!(nodes.addresses("new"), async {
        api.get("new").await.answer(
            StatusCode::OK,
            node("new", json!({}), internal_ip("10.0.0.20")),
        );
    });
    assert_eq!(addrs.unwrap(), vec![ip("10.0.0.20")]);
    // And one that does not exist is NOT_FOUND only on the API server's word.
    let (result, ()) = tokio::join!(nodes.addresses("gone"), async {
        api.get("gone")
            .await
            .answer(StatusCode::NOT_FOUND, not_found("gone"));
    });
    assert_eq!(result.unwrap_err().code(), Code::NotFound);
}

#[tokio::test]
async fn an_annotation_change_delivered_by_the_watch_is_seen() {
    let (nodes, mut api, watch) =
        synced_resolver(&[node("n1", json!({}), internal_ip("10.0.0.11"))]).await;
    assert_eq!(
        from_cache(&nodes, "n1").await.unwrap(),
        vec![ip("10.0.0.11")]
    );
    let annotated = versioned_node(
        "n1",
        "101",
        json!({ADDRESSES_ANNOTATION: "192.168.50.1"}),
        internal_ip("10.0.0.11"),
    );
    watch.answer_events(&[json!({"type": "MODIFIED", "object": annotated})]);
    // The next WATCH comes once the events before it are in the cache.
    let next = api.watch().await;
    assert!(
        next.request
            .uri()
            .query()
            .unwrap_or_default()
            .contains("resourceVersion=101"),
        "the watch resumes after the change: {}",
        next.request.uri()
    );
    assert_eq!(
        from_cache(&nodes, "n1").await.unwrap(),
        vec![ip("192.168.50.1")]
    );
    api.no_get();
}

#[tokio::test]
async fn a_node_added_by_the_watch_is_answered_from_the_cache() {
    let (nodes, mut api, watch) = synced_resolver(&[]).await;
    let added = versioned_node("n7", "101", json!({}), internal_ip("10.0.0.17"));
    watch.answer_events(&[json!({"type": "ADDED", "object": added})]);
    let _next = api.watch().await;
    assert_eq!(
        from_cache(&nodes, "n7").await.unwrap(),
        vec![ip("10.0.0.17")]
    );
    api.no_get();
}

#[tokio::test]
async fn a_node_deleted_through_the_watch_is_asked_for_again_and_is_not_found() {
    let (nodes, mut api, watch) =
        synced_resolver(&[node("n1", json!({}), internal_ip("10.0.0.11"))]).await;
    let deleted = versioned_node("n1", "102", json!({}), internal_ip("10.0.0.11"));
    watch.answer_events(&[json!({"type": "DELETED", "object": deleted})]);
    let _next = api.watch().await;
    let (result, ()) = tokio::join!(nodes.addresses("n1"), async {
        api.get("n1")
            .await
            .answer(StatusCode::NOT_FOUND, not_found("n1"));
    });
    assert_eq!(result.unwrap_err().code(), Code::NotFound);
}

#[tokio::test]
async fn an_expired_watch_lists_again_and_drops_nodes_deleted_meanwhile() {
    let (nodes, mut api, watch) = synced_resolver(&[
        node("n1", json!({}), internal_ip("10.0.0.11")),
        node("n2", json!({}), internal_ip("10.0.0.12")),
    ])
    .await;
    let gone = json!({"type": "ERROR", "object": {"kind": "Status", "apiVersion": "v1", "status": "Failure", "message": "too old resource version", "reason": "Expired", "code": 410}});
    watch.answer_events(&[gone]);
    // n2 was deleted while the watch was away.
    api.list().await.answer(
        StatusCode::OK,
        node_list(&[node("n1", json!({}), internal_ip("10.0.0.11"))]),
    );
    let _next = api.watch().await;
    assert_eq!(
        from_cache(&nodes, "n1").await.unwrap(),
        vec![ip("10.0.0.11")]
    );
    api.no_get();
    let (result, ()) = tokio::join!(nodes.addresses("n2"), async {
        api.get("n2")
            .await
            .answer(StatusCode::NOT_FOUND, not_found("n2"));
    });
    assert_eq!(result.unwrap_err().code(), Code::NotFound);
}

#[tokio::test]
async fn a_failed_list_is_retried_after_a_backoff_and_the_cache_then_fills() {
    let (nodes, mut api) = resolver();
    let status = json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "message": "etcd timeout", "reason": "InternalError", "code": 500});
    api.list()
        .await
        .answer(StatusCode::INTERNAL_SERVER_ERROR, status);
    let failed = std::time::Instant::now();
    api.list().await.answer(
        StatusCode::OK,
        node_list(&[node("n1", json!({}), internal_ip("10.0.0.11"))]),
    );
    assert!(
        failed.elapsed() >= Duration::from_millis(100),
        "the list was retried at once"
    );
    tokio::time::timeout(CALL, nodes.synced())
        .await
        .expect("the cache synced");
    assert_eq!(
        from_cache(&nodes, "n1").await.unwrap(),
        vec![ip("10.0.0.11")]
    );
    api.no_get();
}

#[tokio::test]
async fn the_watch_stops_when_the_resolver_drops() {
    let (nodes, mut api, _watch) = synced_resolver(&[]).await;
    let task = nodes.watch.abort_handle();
    drop(nodes);
    tokio::time::timeout(CALL, async {
        while !task.is_finished() {
            tokio::task::yield_now().await;
        }
    })
    .await
    .expect("the watch task ended");
    api.no_get();
}

#[test]
fn the_cache_keeps_a_nodes_addresses_and_its_annotation_and_nothing_else() {
    let mut full: Node = serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Node",
        "metadata": {
            "name": "n1", "resourceVersion": "7",
            "labels": {"kubernetes.io/hostname": "n1"},
            "annotations": {ADDRESSES_ANNOTATION: "192.168.50.1", "node.alpha.kubernetes.io/ttl": "0"},
            "managedFields": [{"manager": "kubelet", "operation": "Update"}]
        },
        "spec": {"podCIDR": "10.244.1.0/24"},
        "status": {
            "addresses": [{"type": "InternalIP", "address": "10.0.0.11"}],
            "images": [{"names": ["registry.example/app:1"], "sizeBytes": 1000}],
            "conditions": [{"type": "Ready", "status": "True"}]
        }
    }))
    .unwrap();
    let before = node_addresses(&full);
    keep_addresses_only(&mut full);
    assert_eq!(node_addresses(&full), before);
    assert_eq!(
        serde_json::to_value(&full).unwrap(),
        json!({
            "apiVersion": "v1", "kind": "Node",
            "metadata": {"name": "n1", "resourceVersion": "7", "annotations": {ADDRESSES_ANNOTATION: "192.168.50.1"}},
            "status": {"addresses": [{"type": "InternalIP", "address": "10.0.0.11"}]}
        })
    );
}
