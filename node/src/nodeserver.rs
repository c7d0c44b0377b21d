//! The CSI Node service: one NFS mount per volume per node at the staging path, bind mounts
//! into pods, unmounts that never hang, and volume health.
//!
//! Static PVs (volumeAttributes `server`, `share`, optional `nfsVersion` and `mountOptions`)
//! go through the same stage-then-publish path: the kubelet stages every volume of a driver
//! that advertises STAGE_UNSTAGE_VOLUME, so a static PV needs nothing special.
//!
//! Permissions: the CSIDriver uses `fsGroupPolicy: File`, so the kubelet applies a pod's
//! `fsGroup` by changing group ownership and permissions of the files after NodePublishVolume.
//! That only works where the server lets the node's root change ownership: with the
//! StorageClass's `squash: root` (the default) root is mapped to the anonymous user, so set the
//! volume root's `uid`/`gid`/`mode` parameters to what the pods run as (e.g. `gid` = the pods'
//! fsGroup and `mode: "2775"`), or use `squash: none` to let fsGroup do the work.

use std::{
    path::{Path, PathBuf},
    sync::Arc,
    time::Duration,
};

use rwxnfs_proto::csi::{
    NodeExpandVolumeRequest, NodeExpandVolumeResponse, NodeGetCapabilitiesRequest,
    NodeGetCapabilitiesResponse, NodeGetInfoRequest, NodeGetInfoResponse,
    NodeGetVolumeStatsRequest, NodeGetVolumeStatsResponse, NodePublishVolumeRequest,
    NodePublishVolumeResponse, NodeServiceCapability, NodeStageVolumeRequest,
    NodeStageVolumeResponse, NodeUnpublishVolumeRequest, NodeUnpublishVolumeResponse,
    NodeUnstageVolumeRequest, NodeUnstageVolumeResponse, VolumeCapability,
    node_server::{Node, NodeServer},
    node_service_capability::{self, rpc::Type as Rpc},
    volume_capability,
};
use rwxnfs_server::rpc;
use tonic::{Request, Response, Status};

use rwxnfs_server::inflight::{Held, InFlight};

use crate::{
    bounded::Bounded,
    error::NodeError,
    mounter::{Mounter, SystemMounter},
    tls::{DEFAULT_TLSHD_CONFIG, Handshake, Tlshd},
};

mod mounts;
mod publish;
mod resolve;
mod restage;
mod stage;
mod stats;

#[derive(Clone, Debug)]
pub struct NodeConfig {
    /// The Kubernetes node name; reported by NodeGetInfo and used by the controller to find
    /// the node's addresses.
    pub node_id: String,
}

/// Bound of one blocking step (a mount, an unmount attempt, a statvfs).
pub const STEP_LIMIT: Duration = Duration::from_secs(10);

pub struct NodeService {
    config: NodeConfig,
    mounter: Arc<dyn Mounter>,
    bounded: Bounded,
    /// Whether a TLS claim's handshake can happen here, asked before its mount.
    handshake: Arc<dyn Handshake>,
    /// Held by (volume, target path) in publish and unpublish, (volume, staging path) in
    /// stage, unstage and re-staging.
    inflight: InFlight<String, PathBuf>,
}

/// The node capabilities rwxnfs advertises. VOLUME_MOUNT_GROUP is left out on purpose: NFS
/// has no mount-time group ownership, so fsGroup is applied by the kubelet (fsGroupPolicy
/// File) instead.
const CAPABILITIES: [Rpc; 4] = [
    Rpc::StageUnstageVolume,
    Rpc::GetVolumeStats,
    Rpc::VolumeCondition,
    Rpc::SingleNodeMultiWriter,
];

type Rpc_<T> = Result<Response<T>, Status>;

/// Checks a required field, in the order the request declares them.
fn require(value: &str, field: &'static str) -> Result<(), NodeError> {
    if value.is_empty() {
        return Err(NodeError::Missing { field });
    }
    Ok(())
}

/// Checks a capability: present, and mount (not block).
fn check_capability(cap: Option<&VolumeCapability>) -> Result<&VolumeCapability, NodeError> {
    let cap = cap.ok_or(NodeError::Missing {
        field: "Volume capability",
    })?;
    match &cap.access_type {
        Some(volume_capability::AccessType::Mount(_)) => Ok(cap),
        Some(volume_capability::AccessType::Block(_)) => Err(NodeError::BlockAccess),
        None => Err(NodeError::NoAccessType),
    }
}

/// One RPC's answer, its error turned into a gRPC status (the [`rpc`] layer logs and counts it).
fn reply<T>(result: Result<T, NodeError>) -> Rpc_<T> {
    result.map(Response::new).map_err(Status::from)
}

impl NodeService {
    pub fn new(config: NodeConfig) -> Self {
        Self::with_mounter(config, Arc::new(SystemMounter), Bounded::new(STEP_LIMIT))
    }

    pub fn with_mounter(config: NodeConfig, mounter: Arc<dyn Mounter>, bounded: Bounded) -> Self {
        Self {
            config,
            mounter,
            bounded,
            handshake: Arc::new(Tlshd::new(DEFAULT_TLSHD_CONFIG)),
            inflight: InFlight::default(),
        }
    }

    /// The same service with another check of the TLS handshake's prerequisites (the real
    /// one with another tlshd configuration, or a fake).
    pub fn with_handshake(mut self, handshake: Arc<dyn Handshake>) -> Self {
        self.handshake = handshake;
        self
    }

    /// Holds (volume, path) for one operation, or says another operation on them is in
    /// progress.
    fn hold(&self, volume_id: &str, path: &Path) -> Result<Held<String, PathBuf>, NodeError> {
        self.inflight
            .try_hold_part(volume_id.to_owned(), path.to_owned())
            .map_err(|_| NodeError::InProgress {
                volume_id: volume_id.to_owned(),
                path: path.to_owned(),
            })
    }

    /// The service with the [`rpc`] layer, which times, counts and logs its calls.
    pub fn into_server(self) -> rpc::Rpc<NodeServer<Self>> {
        rpc::wrap(NodeServer::new(self))
    }
}

#[tonic::async_trait]
impl Node for NodeService {
    /// This operation MUST be idempotent: staging a volume already staged at the same path
    /// with the same source succeeds.
    async fn node_stage_volume(
        &self,
        request: Request<NodeStageVolumeRequest>,
    ) -> Rpc_<NodeStageVolumeResponse> {
        let req = request.into_inner();
        rpc::volume_id(&req.volume_id);
        let result = async {
            require(&req.volume_id, "Volume ID")?;
            require(&req.staging_target_path, "Staging target path")?;
            let cap = check_capability(req.volume_capability.as_ref())?;
            let staging = PathBuf::from(&req.staging_target_path);
            let _held = self.hold(&req.volume_id, &staging)?;
            self.stage(&req, cap).await?;
            Ok(NodeStageVolumeResponse {})
        }
        .await;
        reply(result)
    }

    async fn node_unstage_volume(
        &self,
        request: Request<NodeUnstageVolumeRequest>,
    ) -> Rpc_<NodeUnstageVolumeResponse> {
        let req = request.into_inner();
        rpc::volume_id(&req.volume_id);
        let result = async {
            require(&req.volume_id, "Volume ID")?;
            require(&req.staging_target_path, "Staging target path")?;
            let staging = PathBuf::from(&req.staging_target_path);
            let _held = self.hold(&req.volume_id, &staging)?;
            self.unmount_all(&staging).await?;
            self.rmdir(&staging).await?;
            Ok(NodeUnstageVolumeResponse {})
        }
        .await;
        reply(result)
    }

    async fn node_publish_volume(
        &self,
        request: Request<NodePublishVolumeRequest>,
    ) -> Rpc_<NodePublishVolumeResponse> {
        let req = request.into_inner();
        rpc::volume_id(&req.volume_id);
        let result = async {
            require(&req.volume_id, "Volume ID")?;
            require(&req.target_path, "Target path")?;
            let cap = check_capability(req.volume_capability.as_ref())?;
            require(&req.staging_target_path, "Staging target path")?;
            let _held = self.hold(&req.volume_id, Path::new(&req.target_path))?;
            self.publish(&req, cap).await?;
            Ok(NodePublishVolumeResponse {})
        }
        .await;
        reply(result)
    }

    /// Unmounts the target (forced and lazily when the server is gone) and removes it.
    async fn node_unpublish_volume(
        &self,
        request: Request<NodeUnpublishVolumeRequest>,
    ) -> Rpc_<NodeUnpublishVolumeResponse> {
        let req = request.into_inner();
        rpc::volume_id(&req.volume_id);
        let result = async {
            require(&req.volume_id, "Volume ID")?;
            require(&req.target_path, "Target path")?;
            let target = PathBuf::from(&req.target_path);
            let _held = self.hold(&req.volume_id, &target)?;
            self.unmount_all(&target).await?;
            self.rmdir(&target).await?;
            Ok(NodeUnpublishVolumeResponse {})
        }
        .await;
        reply(result)
    }

    async fn node_get_volume_stats(
        &self,
        request: Request<NodeGetVolumeStatsRequest>,
    ) -> Rpc_<NodeGetVolumeStatsResponse> {
        let req = request.into_inner();
        rpc::volume_id(&req.volume_id);
        let result = async {
            require(&req.volume_id, "Volume ID")?;
            require(&req.volume_path, "Volume path")?;
            self.stats(&req).await
        }
        .await;
        reply(result)
    }

    /// Not advertised: NFS volumes grow on the server, with no node-side step.
    async fn node_expand_volume(
        &self,
        request: Request<NodeExpandVolumeRequest>,
    ) -> Rpc_<NodeExpandVolumeResponse> {
        rpc::volume_id(&request.into_inner().volume_id);
        reply(Err(NodeError::ExpandUnsupported))
    }

    async fn node_get_capabilities(
        &self,
        _request: Request<NodeGetCapabilitiesRequest>,
    ) -> Rpc_<NodeGetCapabilitiesResponse> {
        let capabilities = CAPABILITIES
            .iter()
            .map(|rpc| NodeServiceCapability {
                r#type: Some(node_service_capability::Type::Rpc(
                    node_service_capability::Rpc {
                        r#type: *rpc as i32,
                    },
                )),
            })
            .collect();
        Ok(Response::new(NodeGetCapabilitiesResponse { capabilities }))
    }

    /// No topology: an NFS export is reachable from every node the network allows, and
    /// max_volumes_per_node 0 means no limit.
    async fn node_get_info(
        &self,
        _request: Request<NodeGetInfoRequest>,
    ) -> Rpc_<NodeGetInfoResponse> {
        Ok(Response::new(NodeGetInfoResponse {
            node_id: self.config.node_id.clone(),
            max_volumes_per_node: 0,
            accessible_topology: None,
        }))
    }
}

#[cfg(test)]
mod tests;
