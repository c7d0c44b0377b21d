//! A mocked Kubernetes API: answers each request from a table of paths, records what was asked,
//! and fails the test on a request it has no answer for.

// Each test binary uses a part of this module.
#![allow(dead_code)]

use std::collections::BTreeMap;

use http::{Method, Request, Response, StatusCode};
use kube::client::Body;
use serde_json::{Value, json};

pub(crate) type Handle = tower_test::mock::Handle<Request<Body>, Response<Body>>;

/// `(method, path)` → `(status, body)`.
pub(crate) type Answers = BTreeMap<(Method, String), (StatusCode, Value)>;

/// A request as the mock saw it.
#[derive(Clone, Debug)]
pub(crate) struct Seen {
    pub method: Method,
    pub path: String,
    pub body: Value,
}

pub(crate) fn client() -> (kube::Client, Handle) {
    let (service, handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
    (kube::Client::new(service, "default"), handle)
}

/// Serves `answers` until the client is dropped; returns every request in order.
pub(crate) fn serve(mut handle: Handle, answers: Answers) -> tokio::task::JoinHandle<Vec<Seen>> {
    tokio::spawn(async move {
        let mut seen = Vec::new();
        while let Some((request, send)) = handle.next_request().await {
            let method = request.method().clone();
            let path = request.uri().path().to_owned();
            let bytes = request
                .into_body()
                .collect_bytes()
                .await
                .expect("the request body is readable");
            let body = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
            seen.push(Seen {
                method: method.clone(),
                path: path.clone(),
                body: body.clone(),
            });
            let (status, answer) = match answers.get(&(method.clone(), path.clone())) {
                Some(a) => a.clone(),
                None if method == Method::POST => (StatusCode::CREATED, body),
                None => panic!("unexpected request {method} {path}"),
            };
            let response = Response::builder()
                .status(status)
                .body(Body::from(serde_json::to_vec(&answer).expect("JSON")))
                .expect("a response");
            send.send_response(response);
        }
        seen
    })
}

pub(crate) fn list(kind: &str, items: Vec<Value>) -> (StatusCode, Value) {
    (
        StatusCode::OK,
        json!({"apiVersion": "v1", "kind": format!("{kind}List"), "metadata": {"resourceVersion": "1"}, "items": items}),
    )
}

pub(crate) fn status(code: StatusCode, reason: &str, message: &str) -> (StatusCode, Value) {
    (
        code,
        json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "message": message, "reason": reason, "code": code.as_u16()}),
    )
}

pub(crate) fn get(path: &str) -> (Method, String) {
    (Method::GET, path.to_owned())
}
