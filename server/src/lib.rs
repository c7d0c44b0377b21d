//! What every rwxnfs gRPC endpoint shares.
//!
//! - [`endpoint`]: `unix://` and `tcp://` endpoints, for servers and for clients.
//! - [`serve`]: running a router until a termination signal, with a bounded drain.
//! - [`identity`]: the CSI Identity service, with a Probe that tells the truth.
//! - [`logging`]: tracing set-up (JSON off a terminal, human on one) and RPC error logging.

pub mod endpoint;
pub mod identity;
pub mod logging;
pub mod metrics;
pub mod serve;

pub use endpoint::{Endpoint, EndpointError};
pub use identity::{IdentityService, Readiness};
pub use serve::{ServeError, Shutdown, builder, reflection, serve, termination_signal};
