//! Runs a tonic router on an endpoint until a shutdown signal, then drains within a bound.
//!
//! On shutdown the server stops accepting connections at once, tells connected clients to go
//! away (HTTP/2 GOAWAY), lets calls in flight finish for at most `grace`, and removes its unix
//! socket. A call that outlives `grace` is abandoned, and the process can exit: a hung
//! dependency must never keep a pod in Terminating.

use std::{future::Future, time::Duration};

use tokio::sync::oneshot;
use tokio_stream::{
    StreamExt,
    wrappers::{TcpListenerStream, UnixListenerStream},
};
use tonic::transport::server::Router;

use crate::endpoint::{Endpoint, EndpointError, Listener};

#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error(transparent)]
    Endpoint(#[from] EndpointError),
    #[error("the gRPC server on {endpoint} failed: {source}")]
    Transport {
        endpoint: String,
        source: tonic::transport::Error,
    },
    #[error("the gRPC server task on {endpoint} panicked")]
    Panicked { endpoint: String },
}

/// Resolves on SIGTERM or SIGINT. The handlers are installed when this is called, not when
/// the future is first polled, so a signal that arrives while the server is starting is not
/// lost.
pub fn termination_signal() -> impl Future<Output = ()> {
    use tokio::signal::unix::{SignalKind, signal};
    let handlers = signal(SignalKind::terminate())
        .and_then(|term| Ok((term, signal(SignalKind::interrupt())?)));
    async move {
        let Ok((mut term, mut int)) = handlers else {
            // Without handlers the default action (exit) still applies.
            tracing::warn!("cannot install signal handlers; SIGTERM will end the process abruptly");
            return std::future::pending().await;
        };
        let name = tokio::select! {
            _ = term.recv() => "SIGTERM",
            _ = int.recv() => "SIGINT",
        };
        tracing::info!(signal = name, "shutdown requested");
    }
}

/// Serves `router` on `endpoint` until `shutdown` resolves. `ready` is called once the
/// endpoint is listening (handy for printing it or for tests).
pub async fn serve(
    router: Router,
    endpoint: &Endpoint,
    shutdown: impl Future<Output = ()>,
    grace: Duration,
    ready: impl FnOnce(),
) -> Result<(), ServeError> {
    serve_inner(router, endpoint, shutdown, grace, ready, false, None).await
}

/// [`serve`] with mutual TLS on a TCP endpoint: each connection's handshake uses the
/// certificates of that moment ([`crate::tls`]), and every request carries the client's
/// [`crate::tls::Peer`] as an extension. A unix endpoint ignores `tls`.
pub async fn serve_tls(
    router: Router,
    endpoint: &Endpoint,
    tls: crate::tls::ServerTls,
    shutdown: impl Future<Output = ()>,
    grace: Duration,
    ready: impl FnOnce(),
) -> Result<(), ServeError> {
    serve_inner(router, endpoint, shutdown, grace, ready, false, Some(tls)).await
}

/// [`serve`], for clients that send a unix socket's path as the request's authority (the
/// kubelet's plugin watcher): on a unix socket every request's `:authority` becomes
/// `localhost` before tonic sees it ([`crate::authority`]).
pub async fn serve_rewriting_authority(
    router: Router,
    endpoint: &Endpoint,
    shutdown: impl Future<Output = ()>,
    grace: Duration,
    ready: impl FnOnce(),
) -> Result<(), ServeError> {
    serve_inner(router, endpoint, shutdown, grace, ready, true, None).await
}

async fn serve_inner(
    router: Router,
    endpoint: &Endpoint,
    shutdown: impl Future<Output = ()>,
    grace: Duration,
    ready: impl FnOnce(),
    rewrite_authority: bool,
    tls: Option<crate::tls::ServerTls>,
) -> Result<(), ServeError> {
    let listener = endpoint.listen().await?;
    // The TLS accept loop, ended with the server (it owns the listening socket).
    let mut acceptor = None;
    let (stop_tx, stop_rx) = oneshot::channel::<()>();
    let stopped = async {
        let _ = stop_rx.await;
    };
    let (mut task, socket) = match (listener, tls) {
        (Listener::Unix { listener, socket }, _) if rewrite_authority => {
            let incoming = UnixListenerStream::new(listener)
                .map(|accepted| accepted.map(crate::authority::normalize));
            (
                tokio::spawn(router.serve_with_incoming_shutdown(incoming, stopped)),
                Some(socket),
            )
        }
        (Listener::Unix { listener, socket }, _) => {
            let incoming = UnixListenerStream::new(listener);
            (
                tokio::spawn(router.serve_with_incoming_shutdown(incoming, stopped)),
                Some(socket),
            )
        }
        (Listener::Tcp(listener), Some(tls)) => {
            let (connections, task) = crate::tls::accept::accept(listener, tls);
            acceptor = Some(AbortOnDrop(task));
            let incoming = tokio_stream::wrappers::ReceiverStream::new(connections);
            (
                tokio::spawn(router.serve_with_incoming_shutdown(incoming, stopped)),
                None,
            )
        }
        (Listener::Tcp(listener), None) => {
            let incoming = TcpListenerStream::new(listener);
            (
                tokio::spawn(router.serve_with_incoming_shutdown(incoming, stopped)),
                None,
            )
        }
    };
    tracing::info!(%endpoint, "listening");
    ready();

    let result = tokio::select! {
        joined = &mut task => Some(joined),
        () = shutdown => None,
    };
    let result = match result {
        Some(joined) => joined,
        None => {
            tracing::info!(%endpoint, grace_ms = grace.as_millis() as u64, "draining calls in flight");
            let _ = stop_tx.send(());
            match tokio::time::timeout(grace, &mut task).await {
                Ok(joined) => joined,
                Err(_) => {
                    tracing::warn!(
                        %endpoint,
                        grace_ms = grace.as_millis() as u64,
                        "calls still in flight after the grace period were abandoned"
                    );
                    task.abort();
                    Ok(Ok(()))
                }
            }
        }
    };
    drop(acceptor);
    if let Some(socket) = &socket {
        socket.remove();
    }
    match result {
        Ok(Ok(())) => {
            tracing::info!(%endpoint, "stopped");
            Ok(())
        }
        Ok(Err(source)) => Err(ServeError::Transport {
            endpoint: endpoint.to_string(),
            source,
        }),
        Err(_) => Err(ServeError::Panicked {
            endpoint: endpoint.to_string(),
        }),
    }
}

struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// A shutdown trigger shared by several servers: every clone resolves when the signal comes.
#[derive(Clone)]
pub struct Shutdown(tokio::sync::watch::Receiver<bool>);

impl Shutdown {
    /// Resolves on SIGTERM or SIGINT.
    pub fn on_signal() -> Self {
        let signal = termination_signal();
        let (tx, rx) = tokio::sync::watch::channel(false);
        tokio::spawn(async move {
            signal.await;
            let _ = tx.send(true);
        });
        Self(rx)
    }

    /// A trigger fired by the returned sender (for tests and embedding).
    pub fn manual() -> (tokio::sync::watch::Sender<bool>, Self) {
        let (tx, rx) = tokio::sync::watch::channel(false);
        (tx, Self(rx))
    }

    pub async fn wait(mut self) {
        // An error means the sender is gone: treat that as shutdown too.
        let _ = self.0.wait_for(|stop| *stop).await;
    }
}

/// A server builder with what every endpoint wants: HTTP/2 keepalives so a vanished peer is
/// noticed.
///
/// The span, metrics and failure log of each call come from the [`crate::rpc`] layer, applied
/// by each service's `into_server`, not here: `layer` would change the builder's type, and
/// callers name the plain `Router` it builds.
pub fn builder() -> tonic::transport::Server {
    tonic::transport::Server::builder()
        .http2_keepalive_interval(Some(Duration::from_secs(30)))
        .http2_keepalive_timeout(Some(Duration::from_secs(10)))
}

/// gRPC reflection over both protocols, so `grpcurl` works on every endpoint.
pub fn reflection() -> Result<
    tonic_reflection::server::v1::ServerReflectionServer<
        impl tonic_reflection::server::v1::ServerReflection,
    >,
    tonic_reflection::server::Error,
> {
    tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(rwxnfs_proto::FILE_DESCRIPTOR_SET)
        .build_v1()
}

#[cfg(test)]
mod tests;

/// A server running in the background on its endpoint (for tests and embedders that start and
/// stop one themselves): [`Serving::start`] returns once it listens, [`Serving::stop`] shuts it
/// down and reports how it ended.
pub struct Serving {
    stop: oneshot::Sender<()>,
    task: tokio::task::JoinHandle<Result<(), ServeError>>,
}

impl Serving {
    /// Serves `router` on `endpoint` (5 s grace at stop) and waits until it listens.
    pub async fn start(router: Router, endpoint: &Endpoint) -> Result<Serving, ServeError> {
        let (stop, stop_rx) = oneshot::channel::<()>();
        let (ready_tx, ready_rx) = oneshot::channel::<()>();
        let ep = endpoint.clone();
        let task = tokio::spawn(async move {
            serve(
                router,
                &ep,
                async {
                    let _ = stop_rx.await;
                },
                Duration::from_secs(5),
                move || {
                    let _ = ready_tx.send(());
                },
            )
            .await
        });
        if ready_rx.await.is_err() {
            // The server ended before listening: its own error says why.
            return Err(match task.await {
                Ok(Err(e)) => e,
                _ => ServeError::Panicked {
                    endpoint: endpoint.to_string(),
                },
            });
        }
        Ok(Serving { stop, task })
    }

    /// Stops the server and waits for it.
    pub async fn stop(self) -> Result<(), ServeError> {
        let _ = self.stop.send(());
        self.task.await.unwrap_or_else(|_| {
            Err(ServeError::Panicked {
                endpoint: "(stopped server)".into(),
            })
        })
    }
}
