//! The CSI node plugin: mounts a volume's NFS export once per node at the staging path with
//! the mount system call, bind-mounts it into pods, and never hangs on a dead server.

pub mod bounded;
mod error;
pub mod mounter;
mod nodeserver;
mod probe;
pub mod registration;
pub mod tls;

pub use nodeserver::{NodeConfig, NodeService, STEP_LIMIT};
pub use probe::NfsClientCheck;
pub use registration::RegistrationService;
