//! Tracing set-up, and the old per-RPC error logging that [`crate::rpc`] replaces.
//!
//! Logs go to stderr: JSON when stderr is not a terminal (in a pod), human-readable on a
//! terminal, overridable with `--log-format`; the level comes from `RUST_LOG` (default info).
//! Request bodies are never logged: CSI requests carry secrets.

use std::io::IsTerminal;

use tonic::{Code, Status};
use tracing_subscriber::{EnvFilter, fmt};

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum LogFormat {
    /// JSON off a terminal, text on one.
    #[default]
    Auto,
    Json,
    Text,
}

impl std::str::FromStr for LogFormat {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "auto" => Ok(Self::Auto),
            "json" => Ok(Self::Json),
            "text" => Ok(Self::Text),
            other => Err(format!(
                "log format {other:?} is not one of auto, json, text"
            )),
        }
    }
}

/// Installs the global subscriber. Calling it twice is harmless (the second call is ignored).
pub fn init(format: LogFormat) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let json = match format {
        LogFormat::Auto => !std::io::stderr().is_terminal(),
        LogFormat::Json => true,
        LogFormat::Text => false,
    };
    let builder = fmt().with_env_filter(filter).with_writer(std::io::stderr);
    let _ = if json {
        builder
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .try_init()
    } else {
        builder.try_init()
    };
}

/// The old way, called by hand in each RPC: [`crate::rpc`] logs every failed call of a wrapped
/// service. Goes with [`finish_rpc`] once the controller and the agent use the layer.
///
/// Logs a failed RPC with its gRPC code and the volume (or snapshot) it concerned, and passes
/// the result through. Codes that mean "our fault or the backend's" are errors; the ones that
/// mean "the caller asked for something wrong or must retry" are warnings.
pub fn log_rpc_result<T>(
    rpc: &'static str,
    object_id: &str,
    result: Result<T, Status>,
) -> Result<T, Status> {
    if let Err(status) = &result {
        let code = status.code();
        let message = status.message();
        match code {
            Code::Internal | Code::Unknown | Code::DataLoss | Code::Unavailable => {
                tracing::error!(rpc, volume_id = object_id, code = ?code, message, "rpc failed");
            }
            _ => tracing::warn!(rpc, volume_id = object_id, code = ?code, message, "rpc failed"),
        }
    }
    result
}

/// The old way, called by hand in each RPC: [`crate::rpc::RpcLayer`] does this for every call of
/// a wrapped service (the handler names its volume with [`crate::rpc::volume_id`]). Goes once
/// the controller and the agent use the layer; calling both counts and logs a call twice.
///
/// Ends an RPC: records it in the metrics (method, code, duration) and logs it if it failed.
pub fn finish_rpc<T>(
    rpc: &'static str,
    started: std::time::Instant,
    object_id: &str,
    result: Result<T, Status>,
) -> Result<T, Status> {
    let code = result.as_ref().map_or_else(Status::code, |_| Code::Ok);
    crate::metrics::record_rpc(rpc, code, started.elapsed());
    log_rpc_result(rpc, object_id, result)
}
