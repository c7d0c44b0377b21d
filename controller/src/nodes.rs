//! Resolving a CSI node id to the addresses the NFS server will see for that node.

use std::{collections::BTreeMap, net::IpAddr};

use tonic::Status;

#[tonic::async_trait]
pub trait NodeResolver: Send + Sync + 'static {
    /// The node's addresses; NOT_FOUND when the node does not exist, UNAVAILABLE when the
    /// source of truth cannot be asked.
    async fn addresses(&self, node_id: &str) -> Result<Vec<IpAddr>, Status>;
}

/// A fixed map from the configuration, for use outside a cluster.
pub struct StaticNodes(pub BTreeMap<String, Vec<IpAddr>>);

#[tonic::async_trait]
impl NodeResolver for StaticNodes {
    async fn addresses(&self, node_id: &str) -> Result<Vec<IpAddr>, Status> {
        match self.0.get(node_id) {
            Some(addrs) if !addrs.is_empty() => Ok(addrs.clone()),
            _ => Err(Status::not_found(format!(
                "node {node_id:?} is not in the controller configuration's `nodes` map"
            ))),
        }
    }
}
