//! The one place every served RPC is timed, counted and, when it fails, logged.
//!
//! [`RpcLayer`] wraps a generated gRPC server (`NodeServer`, `ControllerServer`, ...); the
//! service's `into_server` returns [`wrap`]`(XServer::new(self))`, so every router that adds
//! the service gets it with no change to the router code. For each call it:
//!
//! - names the RPC after the method in the request path (`/csi.v1.Node/NodeStageVolume` →
//!   `NodeStageVolume`) and opens a span `rpc{rpc, volume_id}` that the handler runs in;
//! - records the outcome in the metrics ([`crate::metrics::record_rpc`]), CANCELLED for a call
//!   dropped before it answered (its caller went away or gave up);
//! - logs a failure once, with its code, message and the volume the handler named with
//!   [`volume_id`]: errors for the codes that mean "our fault or the backend's", warnings for
//!   the ones that mean "the caller asked for something wrong or must retry"; a success is
//!   logged at debug only (so Probe and capability calls stay at debug).
//!
//! Handlers fill the volume (or snapshot) id with one call, [`volume_id`]. Apply the layer once
//! per service: wrapping a service and also layering its server would count every call twice.

use std::{
    collections::HashSet,
    future::Future,
    pin::Pin,
    sync::{Arc, LazyLock, Mutex},
    task::{Context, Poll},
    time::{Duration, Instant},
};

use tonic::{Code, Status, server::NamedService};
use tower::{Layer, Service};
use tracing::{Instrument, field};

/// The tower layer: see the module documentation.
#[derive(Clone, Copy, Debug, Default)]
pub struct RpcLayer;

impl<S> Layer<S> for RpcLayer {
    type Service = Rpc<S>;

    fn layer(&self, inner: S) -> Rpc<S> {
        Rpc { inner }
    }
}

/// A gRPC service with [`RpcLayer`] applied.
pub fn wrap<S>(service: S) -> Rpc<S> {
    RpcLayer.layer(service)
}

/// A service wrapped by [`RpcLayer`]; routed under the name of the service it wraps.
#[derive(Clone, Debug)]
pub struct Rpc<S> {
    inner: S,
}

impl<S: NamedService> NamedService for Rpc<S> {
    const NAME: &'static str = S::NAME;
}

tokio::task_local! {
    /// The volume id of the call in progress, as the handler named it.
    static VOLUME_ID: Arc<Mutex<String>>;
}

/// Names the volume (or snapshot) the current call concerns: recorded into the call's span and
/// logged with its failure. Outside a call of a wrapped service (a handler called directly in a
/// test) it only records into the current span.
pub fn volume_id(id: &str) {
    tracing::Span::current().record("volume_id", id);
    let _ = VOLUME_ID.try_with(|cell| {
        let mut cell = cell.lock().unwrap_or_else(|e| e.into_inner());
        id.clone_into(&mut cell);
    });
}

impl<S, B, ResBody> Service<http::Request<B>> for Rpc<S>
where
    S: Service<http::Request<B>, Response = http::Response<ResBody>>,
    S::Future: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<S::Response, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        let rpc = intern(method(request.uri().path()));
        let span = tracing::info_span!("rpc", rpc, volume_id = field::Empty);
        let volume = Arc::new(Mutex::new(String::new()));
        let mut call = Call {
            rpc,
            started: Instant::now(),
            volume: volume.clone(),
            answered: false,
        };
        let handler = VOLUME_ID.scope(volume, span.in_scope(|| self.inner.call(request)));
        Box::pin(
            async move {
                let result = handler.await;
                if let Ok(response) = &result {
                    call.answer(outcome(response.headers()));
                }
                result
            }
            .instrument(span),
        )
    }
}

/// One call in progress. Dropped unanswered, it was cancelled: the caller went away, or its
/// deadline passed, and the server dropped the handler mid-way. That is counted and logged too,
/// or a mount hanging on a dead server would never show in the metrics.
struct Call {
    rpc: &'static str,
    started: Instant,
    volume: Arc<Mutex<String>>,
    answered: bool,
}

impl Call {
    fn answer(&mut self, status: Status) {
        self.answered = true;
        let volume = self.volume.lock().unwrap_or_else(|e| e.into_inner());
        finish(self.rpc, self.started.elapsed(), &volume, &status);
    }
}

impl Drop for Call {
    fn drop(&mut self) {
        if !self.answered {
            self.answer(Status::cancelled(
                "the caller went away (cancelled, or past its deadline) before the call finished",
            ));
        }
    }
}

/// The method of a gRPC request path: `/csi.v1.Node/NodeStageVolume` → `NodeStageVolume`.
fn method(path: &str) -> &str {
    path.rsplit_once('/').map_or(path, |(_, method)| method)
}

/// Distinct method names kept as metric labels; past this, calls are counted as "unknown", so a
/// client sending made-up methods cannot grow the registry without bound.
const MAX_METHODS: usize = 128;

/// The method name as the `&'static str` the metrics registry keys on, leaked once per name.
fn intern(name: &str) -> &'static str {
    static NAMES: LazyLock<Mutex<Names>> = LazyLock::new(Default::default);
    NAMES
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .intern(name, MAX_METHODS)
}

#[derive(Default)]
struct Names(HashSet<&'static str>);

impl Names {
    fn intern(&mut self, name: &str, max: usize) -> &'static str {
        if let Some(known) = self.0.get(name) {
            return known;
        }
        if self.0.len() >= max {
            return "unknown";
        }
        let leaked: &'static str = Box::leak(name.to_owned().into_boxed_str());
        self.0.insert(leaked);
        leaked
    }
}

/// The outcome of a call from its response head. An error is a trailers-only response whose
/// headers carry `grpc-status` and the percent-encoded `grpc-message`. With no `grpc-status`
/// header the status comes in the trailers, after the body; every RPC we serve is unary and
/// tonic sends an error as trailers-only, so a response that gets as far as a body is OK.
fn outcome(headers: &http::HeaderMap) -> Status {
    // Only the two headers: `from_header_map` would panic on a malformed details header.
    let mut status_headers = http::HeaderMap::new();
    for name in ["grpc-status", "grpc-message"] {
        if let Some(value) = headers.get(name) {
            status_headers.insert(http::HeaderName::from_static(name), value.clone());
        }
    }
    Status::from_header_map(&status_headers).unwrap_or_else(|| Status::ok(""))
}

fn finish(rpc: &'static str, elapsed: Duration, volume_id: &str, status: &Status) {
    let code = status.code();
    crate::metrics::record_rpc(rpc, code, elapsed);
    let message = status.message();
    let elapsed_ms = elapsed.as_millis() as u64;
    match code {
        Code::Ok => tracing::debug!(rpc, volume_id, elapsed_ms, "rpc succeeded"),
        Code::Internal | Code::Unknown | Code::DataLoss | Code::Unavailable => {
            tracing::error!(rpc, volume_id, code = ?code, error = %message, "rpc failed");
        }
        _ => tracing::warn!(rpc, volume_id, code = ?code, error = %message, "rpc failed"),
    }
}

#[cfg(test)]
mod tests;
