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
    path::PathBuf,
    sync::Arc,
    time::{Duration, Instant},
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
use rwxnfs_server::logging::finish_rpc;
use tonic::{Request, Response, Status};

use crate::{
    bounded::{Bounded, BoundedError},
    mounter::{Mounter, SystemMounter},
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

fn missing(what: &str) -> Status {
    Status::invalid_argument(format!("{what} missing in request"))
}

fn bounded_status(e: BoundedError) -> Status {
    match &e {
        BoundedError::TimedOut { .. } => Status::deadline_exceeded(e.to_string()),
        BoundedError::Busy { .. } => Status::aborted(e.to_string()),
        BoundedError::Io { source, .. } => match source.raw_os_error() {
            Some(libc::EACCES | libc::EPERM) => Status::permission_denied(format!(
                "{e} (the NFS server refused this node: is the volume published to it?)"
            )),
            Some(libc::ENOENT) => Status::not_found(e.to_string()),
            Some(libc::ENODEV) => {
                Status::failed_precondition(format!("{e} (this kernel has no NFS client)"))
            }
            _ => Status::internal(e.to_string()),
        },
    }
}

/// Checks a capability: present, and mount (not block).
fn check_capability(cap: Option<&VolumeCapability>) -> Result<&VolumeCapability, Status> {
    let cap = cap.ok_or_else(|| missing("Volume capability"))?;
    match &cap.access_type {
        Some(volume_capability::AccessType::Mount(_)) => Ok(cap),
        Some(volume_capability::AccessType::Block(_)) => Err(Status::invalid_argument(
            "block access is not supported: rwxnfs volumes are NFS filesystems",
        )),
        None => Err(Status::invalid_argument(
            "the volume capability has no access type",
        )),
    }
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
        }
    }

    pub fn into_server(self) -> NodeServer<Self> {
        NodeServer::new(self)
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
        let started = Instant::now();
        let req = request.into_inner();
        let result = async {
            if req.volume_id.is_empty() {
                return Err(missing("Volume ID"));
            }
            if req.staging_target_path.is_empty() {
                return Err(missing("Staging target path"));
            }
            let cap = check_capability(req.volume_capability.as_ref())?;
            self.stage(&req, cap).await?;
            Ok(NodeStageVolumeResponse {})
        }
        .await;
        finish_rpc("NodeStageVolume", started, &req.volume_id, result).map(Response::new)
    }

    async fn node_unstage_volume(
        &self,
        request: Request<NodeUnstageVolumeRequest>,
    ) -> Rpc_<NodeUnstageVolumeResponse> {
        let started = Instant::now();
        let req = request.into_inner();
        let result = async {
            if req.volume_id.is_empty() {
                return Err(missing("Volume ID"));
            }
            if req.staging_target_path.is_empty() {
                return Err(missing("Staging target path"));
            }
            let staging = PathBuf::from(&req.staging_target_path);
            self.unmount_all(&staging).await?;
            self.rmdir(&staging).await?;
            Ok(NodeUnstageVolumeResponse {})
        }
        .await;
        finish_rpc("NodeUnstageVolume", started, &req.volume_id, result).map(Response::new)
    }

    async fn node_publish_volume(
        &self,
        request: Request<NodePublishVolumeRequest>,
    ) -> Rpc_<NodePublishVolumeResponse> {
        let started = Instant::now();
        let req = request.into_inner();
        let result = async {
            if req.volume_id.is_empty() {
                return Err(missing("Volume ID"));
            }
            if req.target_path.is_empty() {
                return Err(missing("Target path"));
            }
            let cap = check_capability(req.volume_capability.as_ref())?;
            if req.staging_target_path.is_empty() {
                return Err(missing("Staging target path"));
            }
            self.publish(&req, cap).await?;
            Ok(NodePublishVolumeResponse {})
        }
        .await;
        finish_rpc("NodePublishVolume", started, &req.volume_id, result).map(Response::new)
    }

    /// Unmounts the target (forced and lazily when the server is gone) and removes it.
    async fn node_unpublish_volume(
        &self,
        request: Request<NodeUnpublishVolumeRequest>,
    ) -> Rpc_<NodeUnpublishVolumeResponse> {
        let started = Instant::now();
        let req = request.into_inner();
        let result = async {
            if req.volume_id.is_empty() {
                return Err(missing("Volume ID"));
            }
            if req.target_path.is_empty() {
                return Err(missing("Target path"));
            }
            let target = PathBuf::from(&req.target_path);
            self.unmount_all(&target).await?;
            self.rmdir(&target).await?;
            Ok(NodeUnpublishVolumeResponse {})
        }
        .await;
        finish_rpc("NodeUnpublishVolume", started, &req.volume_id, result).map(Response::new)
    }

    async fn node_get_volume_stats(
        &self,
        request: Request<NodeGetVolumeStatsRequest>,
    ) -> Rpc_<NodeGetVolumeStatsResponse> {
        let started = Instant::now();
        let req = request.into_inner();
        let result = async {
            if req.volume_id.is_empty() {
                return Err(missing("Volume ID"));
            }
            if req.volume_path.is_empty() {
                return Err(missing("Volume path"));
            }
            self.stats(&req).await
        }
        .await;
        finish_rpc("NodeGetVolumeStats", started, &req.volume_id, result).map(Response::new)
    }

    /// Not advertised: NFS volumes grow on the server, with no node-side step.
    async fn node_expand_volume(
        &self,
        request: Request<NodeExpandVolumeRequest>,
    ) -> Rpc_<NodeExpandVolumeResponse> {
        let started = Instant::now();
        let id = request.into_inner().volume_id;
        finish_rpc(
            "NodeExpandVolume",
            started,
            &id,
            Err(Status::unimplemented(
                "NodeExpandVolume is not supported: NFS volumes are expanded on the server and need no node-side step",
            )),
        )
    }

    async fn node_get_capabilities(
        &self,
        _request: Request<NodeGetCapabilitiesRequest>,
    ) -> Rpc_<NodeGetCapabilitiesResponse> {
        tracing::debug!("NodeGetCapabilities");
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
        tracing::debug!("NodeGetInfo");
        Ok(Response::new(NodeGetInfoResponse {
            node_id: self.config.node_id.clone(),
            max_volumes_per_node: 0,
            accessible_topology: None,
        }))
    }
}

#[cfg(test)]
mod tests;
