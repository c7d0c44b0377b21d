//! Resolving a CSI node id to the addresses the NFS server will see for that node.

use std::{collections::BTreeMap, net::IpAddr};

use crate::ControllerError;

#[tonic::async_trait]
pub trait NodeResolver: Send + Sync + 'static {
    /// The node's addresses; NOT_FOUND when the node does not exist, UNAVAILABLE when the
    /// source of truth cannot be asked.
    async fn addresses(&self, node_id: &str) -> Result<Vec<IpAddr>, ControllerError>;
}

/// A fixed map from the configuration, for use outside a cluster.
pub struct StaticNodes(pub BTreeMap<String, Vec<IpAddr>>);

#[tonic::async_trait]
impl NodeResolver for StaticNodes {
    async fn addresses(&self, node_id: &str) -> Result<Vec<IpAddr>, ControllerError> {
        match self.0.get(node_id) {
            Some(addrs) if !addrs.is_empty() => Ok(addrs.clone()),
            _ => Err(ControllerError::NodeNotConfigured {
                node: node_id.to_owned(),
            }),
        }
    }
}

/// The annotation that overrides a node's addresses, e.g. when the NFS server sees the node
/// through a storage network rather than its InternalIP: comma-separated addresses.
pub const ADDRESSES_ANNOTATION: &str = "rwxnfs.csi.io/nfs-client-addresses";

/// Node addresses from the Kubernetes Node object: the override annotation when set, else the
/// InternalIP addresses.
pub struct KubeNodes {
    nodes: kube::Api<k8s_openapi::api::core::v1::Node>,
}

impl KubeNodes {
    pub fn new(client: kube::Client) -> Self {
        Self {
            nodes: kube::Api::all(client),
        }
    }

    /// In the cluster, from the pod's service account; outside, from the kubeconfig.
    pub async fn from_environment() -> Result<Self, kube::Error> {
        Ok(Self::new(kube::Client::try_default().await?))
    }
}

/// The addresses a Node object gives for NFS, or why it gives none.
pub fn node_addresses(node: &k8s_openapi::api::core::v1::Node) -> Result<Vec<IpAddr>, String> {
    let name = node.metadata.name.as_deref().unwrap_or("?");
    if let Some(raw) = node
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(ADDRESSES_ANNOTATION))
    {
        return raw
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(|s| s.parse::<IpAddr>().map_err(|_| format!("node {name}: annotation {ADDRESSES_ANNOTATION} has {s:?}, not an IP address")))
            .collect::<Result<Vec<_>, _>>()
            .and_then(|addrs| if addrs.is_empty() { Err(format!("node {name}: annotation {ADDRESSES_ANNOTATION} is empty")) } else { Ok(addrs) });
    }
    let addrs: Vec<IpAddr> = node
        .status
        .as_ref()
        .and_then(|s| s.addresses.as_ref())
        .map(|list| {
            list.iter()
                .filter(|a| a.type_ == "InternalIP")
                .filter_map(|a| a.address.parse().ok())
                .collect()
        })
        .unwrap_or_default();
    if addrs.is_empty() {
        return Err(format!(
            "node {name} has no InternalIP address; set the {ADDRESSES_ANNOTATION} annotation"
        ));
    }
    Ok(addrs)
}

#[tonic::async_trait]
impl NodeResolver for KubeNodes {
    async fn addresses(&self, node_id: &str) -> Result<Vec<IpAddr>, ControllerError> {
        match self.nodes.get_opt(node_id).await {
            Ok(Some(node)) => {
                node_addresses(&node).map_err(|reason| ControllerError::NodeAddresses {
                    node: node_id.to_owned(),
                    reason,
                })
            }
            Ok(None) => Err(ControllerError::NodeNotInCluster {
                node: node_id.to_owned(),
            }),
            Err(source) => Err(ControllerError::NodeLookup {
                node: node_id.to_owned(),
                source,
            }),
        }
    }
}

#[cfg(test)]
mod tests;
