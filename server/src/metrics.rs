//! Prometheus metrics: calls per RPC, errors by gRPC code, latency histograms, and the latency
//! of calls a component makes to others (the controller's agent calls).
//!
//! One process-wide registry; [`record_rpc`] is called by the [`crate::rpc`] layer, so every
//! call of a wrapped service is counted.
//! [`serve`] answers `GET /metrics` in the Prometheus text format on a TCP address.

use std::{
    collections::BTreeMap,
    fmt::Write as _,
    sync::{LazyLock, Mutex},
    time::Duration,
};

use tonic::Code;

use crate::http::{Answer, Status};

/// Upper bounds of the latency buckets, in seconds.
const BUCKETS: [f64; 12] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0, 30.0,
];

#[derive(Default, Clone)]
struct Histogram {
    counts: [u64; BUCKETS.len()],
    count: u64,
    sum: f64,
}

impl Histogram {
    fn observe(&mut self, seconds: f64) {
        for (i, bound) in BUCKETS.iter().enumerate() {
            if seconds <= *bound {
                self.counts[i] += 1;
            }
        }
        self.count += 1;
        self.sum += seconds;
    }

    fn render(&self, out: &mut String, name: &str, labels: &str) {
        for (i, bound) in BUCKETS.iter().enumerate() {
            let _ = writeln!(
                out,
                "{name}_bucket{{{labels},le=\"{bound}\"}} {}",
                self.counts[i]
            );
        }
        let _ = writeln!(out, "{name}_bucket{{{labels},le=\"+Inf\"}} {}", self.count);
        let _ = writeln!(out, "{name}_sum{{{labels}}} {}", self.sum);
        let _ = writeln!(out, "{name}_count{{{labels}}} {}", self.count);
    }
}

#[derive(Default)]
struct Registry {
    /// (rpc, code) -> calls
    calls: BTreeMap<(&'static str, &'static str), u64>,
    latency: BTreeMap<&'static str, Histogram>,
    /// (peer, method) -> latency of outgoing calls
    outgoing: BTreeMap<(&'static str, &'static str), Histogram>,
    outgoing_errors: BTreeMap<(&'static str, &'static str, &'static str), u64>,
}

static REGISTRY: LazyLock<Mutex<Registry>> = LazyLock::new(Default::default);

fn registry() -> std::sync::MutexGuard<'static, Registry> {
    REGISTRY.lock().unwrap_or_else(|e| e.into_inner())
}

/// gRPC code names as Prometheus label values ("OK", "NOT_FOUND", ...).
pub fn code_name(code: Code) -> &'static str {
    match code {
        Code::Ok => "OK",
        Code::Cancelled => "CANCELLED",
        Code::Unknown => "UNKNOWN",
        Code::InvalidArgument => "INVALID_ARGUMENT",
        Code::DeadlineExceeded => "DEADLINE_EXCEEDED",
        Code::NotFound => "NOT_FOUND",
        Code::AlreadyExists => "ALREADY_EXISTS",
        Code::PermissionDenied => "PERMISSION_DENIED",
        Code::ResourceExhausted => "RESOURCE_EXHAUSTED",
        Code::FailedPrecondition => "FAILED_PRECONDITION",
        Code::Aborted => "ABORTED",
        Code::OutOfRange => "OUT_OF_RANGE",
        Code::Unimplemented => "UNIMPLEMENTED",
        Code::Internal => "INTERNAL",
        Code::Unavailable => "UNAVAILABLE",
        Code::DataLoss => "DATA_LOSS",
        Code::Unauthenticated => "UNAUTHENTICATED",
    }
}

/// Counts one served RPC with its outcome and duration.
pub fn record_rpc(rpc: &'static str, code: Code, elapsed: Duration) {
    let mut r = registry();
    *r.calls.entry((rpc, code_name(code))).or_default() += 1;
    r.latency
        .entry(rpc)
        .or_default()
        .observe(elapsed.as_secs_f64());
}

/// Counts one call this process made to `peer` (e.g. "agent").
pub fn record_outgoing(peer: &'static str, method: &'static str, code: Code, elapsed: Duration) {
    let mut r = registry();
    r.outgoing
        .entry((peer, method))
        .or_default()
        .observe(elapsed.as_secs_f64());
    if code != Code::Ok {
        *r.outgoing_errors
            .entry((peer, method, code_name(code)))
            .or_default() += 1;
    }
}

/// The registry in the Prometheus text exposition format.
pub fn render() -> String {
    let r = registry();
    let mut out = String::new();
    out.push_str("# HELP rwxnfs_rpc_calls_total RPCs served, by method and gRPC code.\n");
    out.push_str("# TYPE rwxnfs_rpc_calls_total counter\n");
    for ((rpc, code), n) in &r.calls {
        let _ = writeln!(
            out,
            "rwxnfs_rpc_calls_total{{rpc=\"{rpc}\",code=\"{code}\"}} {n}"
        );
    }
    out.push_str("# HELP rwxnfs_rpc_duration_seconds Time to serve an RPC.\n");
    out.push_str("# TYPE rwxnfs_rpc_duration_seconds histogram\n");
    for (rpc, h) in &r.latency {
        h.render(
            &mut out,
            "rwxnfs_rpc_duration_seconds",
            &format!("rpc=\"{rpc}\""),
        );
    }
    out.push_str("# HELP rwxnfs_outgoing_duration_seconds Time of calls to other components.\n");
    out.push_str("# TYPE rwxnfs_outgoing_duration_seconds histogram\n");
    for ((peer, method), h) in &r.outgoing {
        h.render(
            &mut out,
            "rwxnfs_outgoing_duration_seconds",
            &format!("peer=\"{peer}\",method=\"{method}\""),
        );
    }
    out.push_str("# HELP rwxnfs_outgoing_errors_total Failed calls to other components.\n");
    out.push_str("# TYPE rwxnfs_outgoing_errors_total counter\n");
    for ((peer, method, code), n) in &r.outgoing_errors {
        let _ = writeln!(
            out,
            "rwxnfs_outgoing_errors_total{{peer=\"{peer}\",method=\"{method}\",code=\"{code}\"}} {n}"
        );
    }
    out
}

/// Serves `GET /metrics` on `listener` until `shutdown`. Every connection is bounded in time
/// and in the size of what it may send.
pub async fn serve(
    listener: tokio::net::TcpListener,
    shutdown: impl std::future::Future<Output = ()>,
) {
    crate::http::serve(
        listener,
        shutdown,
        Duration::from_secs(5),
        |get| async move {
            match get.path.as_str() {
                "/metrics" => Answer {
                    status: Status::Ok,
                    content_type: "text/plain; version=0.0.4",
                    body: render(),
                },
                _ => Answer::text(Status::NotFound, "try /metrics\n"),
            }
        },
    )
    .await;
}

#[cfg(test)]
mod tests {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;

    #[test]
    fn calls_and_latencies_are_rendered() {
        record_rpc("TestRpcA", Code::Ok, Duration::from_millis(3));
        record_rpc("TestRpcA", Code::NotFound, Duration::from_millis(30));
        record_outgoing(
            "agent",
            "TestCall",
            Code::Unavailable,
            Duration::from_millis(2),
        );
        let text = render();
        assert!(
            text.contains("rwxnfs_rpc_calls_total{rpc=\"TestRpcA\",code=\"OK\"} 1"),
            "{text}"
        );
        assert!(text.contains("rwxnfs_rpc_calls_total{rpc=\"TestRpcA\",code=\"NOT_FOUND\"} 1"));
        assert!(
            text.contains("rwxnfs_rpc_duration_seconds_bucket{rpc=\"TestRpcA\",le=\"0.005\"} 1")
        );
        assert!(text.contains("rwxnfs_rpc_duration_seconds_count{rpc=\"TestRpcA\"} 2"));
        assert!(text.contains("rwxnfs_outgoing_errors_total{peer=\"agent\",method=\"TestCall\",code=\"UNAVAILABLE\"} 1"));
    }

    #[tokio::test]
    async fn the_endpoint_answers_get_metrics() {
        record_rpc("TestRpcB", Code::Ok, Duration::from_millis(1));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(serve(listener, async {
            let _ = rx.await;
        }));
        let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
        stream
            .write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .unwrap();
        let mut response = String::new();
        stream.read_to_string(&mut response).await.unwrap();
        assert!(response.starts_with("HTTP/1.1 200 OK"), "{response}");
        assert!(response.contains("rwxnfs_rpc_calls_total{rpc=\"TestRpcB\",code=\"OK\"}"));
        tx.send(()).unwrap();
        server.await.unwrap();
    }
}
