//! The CSI controller plugin: turns CSI Controller calls into export-agent calls. It holds no
//! state of its own; the agent's export table is the truth.

pub mod backend;
pub mod config;
pub mod controllerserver;
pub mod convert;
pub mod error;
pub mod nodes;

pub use backend::{AgentBackend, Backend};
pub use config::ControllerConfig;
pub use controllerserver::ControllerService;
pub use error::ControllerError;
pub use nodes::{NodeResolver, StaticNodes};
