//! Resolving a CSI node id to the addresses the NFS server will see for that node.

use std::{collections::BTreeMap, net::IpAddr};

use futures::StreamExt;
use k8s_openapi::api::core::v1::{Node, NodeStatus};
use kube::runtime::{WatchStreamExt, reflector, watcher};

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

/// Node addresses from the Kubernetes Node objects: the override annotation when set, else the
/// InternalIP addresses.
///
/// A background task watches every Node (one LIST, then one WATCH, the way an informer does) and
/// keeps what [`node_addresses`] reads in memory, so a burst of ControllerPublishVolume calls
/// (500 pods of a new Deployment) costs the API server nothing once the node is known. A node the
/// cache does not hold (the first list still running, or a Node created a moment ago that the
/// watch has not delivered) is looked up with one GET, as without the cache.
pub struct KubeNodes {
    nodes: kube::Api<Node>,
    cache: reflector::Store<Node>,
    /// Aborted when the resolver drops.
    watch: tokio::task::JoinHandle<()>,
}

impl KubeNodes {
    /// Starts the watch on a task of the current Tokio runtime (so it must be called inside
    /// one); lookups fall back to a GET until it has listed the Nodes.
    pub fn new(client: kube::Client) -> Self {
        let nodes = kube::Api::all(client);
        let (cache, writer) = reflector::store();
        let watch = tokio::spawn(watch(nodes.clone(), writer, cache.clone()));
        Self {
            nodes,
            cache,
            watch,
        }
    }

    /// In the cluster, from the pod's service account; outside, from the kubeconfig.
    pub async fn from_environment() -> Result<Self, kube::Error> {
        Ok(Self::new(kube::Client::try_default().await?))
    }

    /// Resolves once the cache holds the first complete list of Nodes.
    pub async fn synced(&self) {
        // The writer lives as long as the watch task, which lives as long as `self`.
        let _ = self.cache.wait_until_ready().await;
    }

    /// The one GET for a node the cache does not hold.
    async fn get(&self, node_id: &str) -> Result<Vec<IpAddr>, ControllerError> {
        match self.nodes.get_opt(node_id).await {
            Ok(Some(node)) => addresses_of(node_id, &node),
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

impl Drop for KubeNodes {
    fn drop(&mut self) {
        self.watch.abort();
    }
}

/// Keeps `writer`'s store in step with the API server's Nodes for as long as the task runs: a
/// failed list or watch is retried with exponential backoff (0.8 s, doubling to 30 s, with
/// jitter), and a watch whose resource version has expired lists again, swapping the new list
/// in whole so that Nodes deleted meanwhile leave the cache.
async fn watch(
    nodes: kube::Api<Node>,
    writer: reflector::store::Writer<Node>,
    cache: reflector::Store<Node>,
) {
    let events = watcher::watcher(nodes, watcher::Config::default())
        .default_backoff()
        .modify(keep_addresses_only)
        .reflect(writer);
    let mut events = std::pin::pin!(events);
    while let Some(event) = events.next().await {
        match event {
            Ok(watcher::Event::InitDone) => {
                tracing::info!(nodes = cache.state().len(), "node cache synced");
            }
            Ok(_) => {}
            Err(error) => tracing::warn!(
                %error,
                "watching Nodes failed; retrying with backoff, and looking up nodes the cache \
                 does not hold with a GET meanwhile"
            ),
        }
    }
    // The watcher's stream has no end; if it had one, lookups would still work through GETs.
    tracing::error!("the Node watch ended; nodes are looked up with a GET from now on");
}

/// Drops what [`node_addresses`] does not read: a Node's status carries its images and
/// conditions (kilobytes each), and the controller's memory limit is 128 MiB.
fn keep_addresses_only(node: &mut Node) {
    let meta = &mut node.metadata;
    meta.managed_fields = None;
    meta.labels = None;
    meta.owner_references = None;
    if let Some(annotations) = meta.annotations.as_mut() {
        annotations.retain(|key, _| key == ADDRESSES_ANNOTATION);
    }
    node.spec = None;
    if let Some(status) = node.status.as_mut() {
        *status = NodeStatus {
            addresses: status.addresses.take(),
            ..NodeStatus::default()
        };
    }
}

fn addresses_of(node_id: &str, node: &Node) -> Result<Vec<IpAddr>, ControllerError> {
    node_addresses(node).map_err(|reason| ControllerError::NodeAddresses {
        node: node_id.to_owned(),
        reason,
    })
}

/// The addresses a Node object gives for NFS, or why it gives none.
pub fn node_addresses(node: &Node) -> Result<Vec<IpAddr>, String> {
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
        if let Some(node) = self.cache.get(&reflector::ObjectRef::new(node_id)) {
            return addresses_of(node_id, &node);
        }
        tracing::debug!(node = node_id, "node not in the cache; looking it up");
        self.get(node_id).await
    }
}

#[cfg(test)]
mod tests;
