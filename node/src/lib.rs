//! The CSI node plugin: mounts a volume's NFS export on a node and bind-mounts it into pods.

mod nodeserver;
mod probe;

pub use nodeserver::{NodeConfig, NodeService};
pub use probe::NfsClientCheck;
