//! Tracing set-up. Each RPC's failure is logged once, by the [`crate::rpc`] layer.
//!
//! Logs go to stderr: JSON when stderr is not a terminal (in a pod), human-readable on a
//! terminal, overridable with `--log-format`; the level comes from `RUST_LOG` (default info).
//! Request bodies are never logged: CSI requests carry secrets.

use std::io::IsTerminal;

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
