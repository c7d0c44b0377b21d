//! What every rwxnfs gRPC endpoint shares.
//!
//! - [`authority`]: HTTP/2 requests from the kubelet's plugin watcher made acceptable to tonic.
//! - [`endpoint`]: `unix://` and `tcp://` endpoints, for servers and for clients.
//! - [`serve`]: running a router until a termination signal, with a bounded drain.
//! - [`identity`]: the CSI Identity service, with a Probe that tells the truth.
//! - [`inflight`]: the per-volume try-lock that answers ABORTED, for the controller and the node.
//! - [`logging`]: tracing set-up (JSON off a terminal, human on one).
//! - [`rpc`]: the layer that times, counts and logs every served RPC.
//! - [`metrics`]: the Prometheus registry and its `/metrics` endpoint.
//! - [`tls`]: mutual TLS whose certificates are re-read as they are renewed, with the client's
//!   certificate names on every request.
//! - [`health`]: the kubelet's probes: `/healthz` (liveness: the CSI socket accepts) and
//!   `/readyz` (the Probe's readiness), bounded in time.

pub mod authority;
pub mod endpoint;
pub mod health;
mod http;
pub mod identity;
pub mod inflight;
pub mod logging;
pub mod metrics;
pub mod rpc;
pub mod serve;
pub mod tls;

pub use endpoint::{Endpoint, EndpointError};
pub use identity::{IdentityService, Readiness};
pub use serve::{
    ServeError, Serving, Shutdown, builder, reflection, serve, serve_rewriting_authority,
    serve_tls, termination_signal,
};
