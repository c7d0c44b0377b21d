//! One file per concern; each check reads the [`Context`] and returns its findings.

pub mod driver_mesh;
pub mod driver_names;
pub mod host_network;
pub mod network_policy;
pub mod nfs_server;
pub mod peer_authentication;
pub mod service_ports;
pub mod sockets;
pub mod storage_class;
pub mod transport;

use crate::{context::Context, finding::Finding};

pub type Check = fn(&Context<'_>) -> Vec<Finding>;

/// Every check `analyze` runs.
pub const ALL: &[Check] = &[
    driver_mesh::check,
    nfs_server::check,
    peer_authentication::check,
    service_ports::check,
    network_policy::check,
    storage_class::check,
    transport::check,
    host_network::check,
    driver_names::check,
    sockets::check,
];
