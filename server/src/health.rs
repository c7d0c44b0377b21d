//! The kubelet's probes, answered by the component itself instead of the livenessprobe
//! sidecar:
//!
//! - `GET /healthz`, for the liveness probe: whether the process still serves, that is, its
//!   CSI endpoint accepts a connection ([`Accepting`]). Nothing outside the process decides
//!   it, because a restart cures nothing outside the process: an agent that is down or slow
//!   (an NFS failover, an emulated lab) must not restart the controller, whose sidecars then
//!   lose their CSI socket and exit with it, again and again.
//! - `GET /readyz`, for the readiness probe: the same [`Readiness`] the CSI Probe reports
//!   (the controller's backends, the node's kernel NFS client), checked in process.
//!
//! Both answer `200 ok` while their check holds and `503` with its reason while it does not.
//! A check is bounded: one that has not finished within the limit is abandoned and answered
//! `503`, so a hung dependency fails the probe instead of holding the kubelet's connection.
//! (The bound is a timer on the runtime, so checks must not block their thread: see
//! [`Readiness`].)

use std::{sync::Arc, time::Duration};

use crate::{
    Endpoint, Readiness,
    http::{Answer, Status},
};

/// How long a client may take to send its request, beyond the check's own limit.
const REQUEST_LIMIT: Duration = Duration::from_secs(5);

/// Liveness: the CSI endpoint accepts a connection (so its listener and the runtime under it
/// still run).
pub struct Accepting(pub Endpoint);

#[tonic::async_trait]
impl Readiness for Accepting {
    async fn check(&self) -> Result<(), String> {
        let connected = match &self.0 {
            Endpoint::Unix(path) => tokio::net::UnixStream::connect(path).await.map(drop),
            Endpoint::Tcp(addr) => tokio::net::TcpStream::connect(addr).await.map(drop),
        };
        connected.map_err(|e| format!("the CSI endpoint {} does not accept: {e}", self.0))
    }
}

/// Serves `GET /healthz` from `live` and `GET /readyz` from `ready` on `listener` until
/// `shutdown`, each answer within `limit`.
pub async fn serve(
    listener: tokio::net::TcpListener,
    live: Arc<dyn Readiness>,
    ready: Arc<dyn Readiness>,
    limit: Duration,
    shutdown: impl std::future::Future<Output = ()>,
) {
    crate::http::serve(listener, shutdown, limit + REQUEST_LIMIT, move |get| {
        let (live, ready) = (live.clone(), ready.clone());
        async move {
            let (check_of, what) = match get.path.as_str() {
                "/healthz" => (live, "liveness"),
                "/readyz" => (ready, "readiness"),
                _ => return Answer::text(Status::NotFound, "try /healthz or /readyz\n"),
            };
            match check(check_of.as_ref(), limit).await {
                Ok(()) => {
                    tracing::debug!(probe = what, ok = true, "probe");
                    Answer::text(Status::Ok, "ok\n")
                }
                Err(reason) => {
                    tracing::warn!(probe = what, ok = false, %reason, "{what}: failing");
                    Answer::text(Status::ServiceUnavailable, format!("{reason}\n"))
                }
            }
        }
    })
    .await;
}

/// `readiness`'s verdict within `limit`; a check still running then is dropped (which cancels
/// its calls) and counts as not ready.
pub async fn check(readiness: &dyn Readiness, limit: Duration) -> Result<(), String> {
    match tokio::time::timeout(limit, readiness.check()).await {
        Ok(verdict) => verdict,
        Err(_) => Err(format!(
            "the readiness check did not finish within {limit:?}: a dependency is not \
             answering (a backend's agent, the kernel)"
        )),
    }
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;
    use crate::identity::AlwaysReady;

    struct Down;

    #[tonic::async_trait]
    impl Readiness for Down {
        async fn check(&self) -> Result<(), String> {
            Err("backend ha1: the agent is not running".into())
        }
    }

    struct Hangs;

    #[tonic::async_trait]
    impl Readiness for Hangs {
        async fn check(&self) -> Result<(), String> {
            std::future::pending().await
        }
    }

    async fn get(readiness: Arc<dyn Readiness>, request: &[u8]) -> String {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(serve(
            listener,
            Arc::new(AlwaysReady),
            readiness,
            Duration::from_millis(300),
            async {
                let _ = rx.await;
            },
        ));
        let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
        stream.write_all(request).await.unwrap();
        let mut response = String::new();
        stream.read_to_string(&mut response).await.unwrap();
        tx.send(()).unwrap();
        server.await.unwrap();
        response
    }

    const HEALTHZ: &[u8] = b"GET /readyz HTTP/1.1\r\nHost: x\r\n\r\n";

    #[tokio::test]
    async fn ready_is_200_ok() {
        let response = get(Arc::new(AlwaysReady), HEALTHZ).await;
        assert!(response.starts_with("HTTP/1.1 200 OK\r\n"), "{response}");
        assert!(response.ends_with("\r\n\r\nok\n"), "{response}");
    }

    #[tokio::test]
    async fn not_ready_is_503_with_the_reason() {
        let response = get(Arc::new(Down), HEALTHZ).await;
        assert!(
            response.starts_with("HTTP/1.1 503 Service Unavailable\r\n"),
            "{response}"
        );
        assert!(
            response.ends_with("backend ha1: the agent is not running\n"),
            "{response}"
        );
    }

    #[tokio::test]
    async fn a_hung_check_is_503_within_the_limit() {
        let started = Instant::now();
        let response = get(Arc::new(Hangs), HEALTHZ).await;
        assert!(response.starts_with("HTTP/1.1 503"), "{response}");
        assert!(
            response.contains("did not finish within 300ms"),
            "{response}"
        );
        assert!(started.elapsed() < Duration::from_secs(2));
    }

    #[tokio::test]
    async fn liveness_does_not_ask_what_readiness_asks() {
        let response = get(Arc::new(Down), b"GET /healthz HTTP/1.1\r\n\r\n").await;
        assert!(response.starts_with("HTTP/1.1 200 OK\r\n"), "{response}");
    }

    #[tokio::test]
    async fn liveness_is_the_csi_endpoint_accepting() {
        let dir = tempfile::tempdir().unwrap();
        let socket = dir.path().join("csi.sock");
        let accepting = Accepting(Endpoint::Unix(socket.clone()));
        let err = accepting.check().await.unwrap_err();
        assert!(err.contains("does not accept"), "{err}");
        let _listener = tokio::net::UnixListener::bind(&socket).unwrap();
        accepting.check().await.unwrap();
    }

    #[tokio::test]
    async fn other_paths_are_404_and_other_methods_405() {
        let response = get(Arc::new(AlwaysReady), b"GET /metrics HTTP/1.1\r\n\r\n").await;
        assert!(response.starts_with("HTTP/1.1 404"), "{response}");
        let response = get(Arc::new(AlwaysReady), b"DELETE /readyz HTTP/1.1\r\n\r\n").await;
        assert!(response.starts_with("HTTP/1.1 405"), "{response}");
        assert!(response.contains("\r\nAllow: GET\r\n"), "{response}");
    }
}
