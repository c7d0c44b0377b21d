//! The CSI Node service.

use rwxnfs_proto::csi::{
    NodeExpandVolumeRequest, NodeExpandVolumeResponse, NodeGetCapabilitiesRequest,
    NodeGetCapabilitiesResponse, NodeGetInfoRequest, NodeGetInfoResponse,
    NodeGetVolumeStatsRequest, NodeGetVolumeStatsResponse, NodePublishVolumeRequest,
    NodePublishVolumeResponse, NodeServiceCapability, NodeStageVolumeRequest,
    NodeStageVolumeResponse, NodeUnpublishVolumeRequest, NodeUnpublishVolumeResponse,
    NodeUnstageVolumeRequest, NodeUnstageVolumeResponse,
    node_server::{Node, NodeServer},
    node_service_capability::{self, rpc::Type as Rpc},
};
use rwxnfs_server::logging::log_rpc_result;
use tonic::{Request, Response, Status};

#[derive(Clone, Debug)]
pub struct NodeConfig {
    /// The Kubernetes node name; reported by NodeGetInfo and used by the controller to find
    /// the node's addresses.
    pub node_id: String,
}

pub struct NodeService {
    config: NodeConfig,
}

impl NodeService {
    pub fn new(config: NodeConfig) -> Self {
        Self { config }
    }

    pub fn into_server(self) -> NodeServer<Self> {
        NodeServer::new(self)
    }
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

fn not_yet(rpc: &str) -> Status {
    Status::unimplemented(format!(
        "{rpc} is not implemented yet in this build of rwxnfs; the node plugin's mount path \
         arrives with its own change"
    ))
}

#[tonic::async_trait]
impl Node for NodeService {
    async fn node_stage_volume(
        &self,
        request: Request<NodeStageVolumeRequest>,
    ) -> Result<Response<NodeStageVolumeResponse>, Status> {
        let id = request.into_inner().volume_id;
        log_rpc_result("NodeStageVolume", &id, Err(not_yet("NodeStageVolume")))
    }

    async fn node_unstage_volume(
        &self,
        request: Request<NodeUnstageVolumeRequest>,
    ) -> Result<Response<NodeUnstageVolumeResponse>, Status> {
        let id = request.into_inner().volume_id;
        log_rpc_result("NodeUnstageVolume", &id, Err(not_yet("NodeUnstageVolume")))
    }

    async fn node_publish_volume(
        &self,
        request: Request<NodePublishVolumeRequest>,
    ) -> Result<Response<NodePublishVolumeResponse>, Status> {
        let id = request.into_inner().volume_id;
        log_rpc_result("NodePublishVolume", &id, Err(not_yet("NodePublishVolume")))
    }

    async fn node_unpublish_volume(
        &self,
        request: Request<NodeUnpublishVolumeRequest>,
    ) -> Result<Response<NodeUnpublishVolumeResponse>, Status> {
        let id = request.into_inner().volume_id;
        log_rpc_result(
            "NodeUnpublishVolume",
            &id,
            Err(not_yet("NodeUnpublishVolume")),
        )
    }

    async fn node_get_volume_stats(
        &self,
        request: Request<NodeGetVolumeStatsRequest>,
    ) -> Result<Response<NodeGetVolumeStatsResponse>, Status> {
        let id = request.into_inner().volume_id;
        log_rpc_result(
            "NodeGetVolumeStats",
            &id,
            Err(not_yet("NodeGetVolumeStats")),
        )
    }

    /// Not advertised: NFS volumes grow on the server, with no node-side step.
    async fn node_expand_volume(
        &self,
        request: Request<NodeExpandVolumeRequest>,
    ) -> Result<Response<NodeExpandVolumeResponse>, Status> {
        let id = request.into_inner().volume_id;
        log_rpc_result(
            "NodeExpandVolume",
            &id,
            Err(Status::unimplemented(
                "NodeExpandVolume is not supported: NFS volumes are expanded on the server and \
                 need no node-side step",
            )),
        )
    }

    async fn node_get_capabilities(
        &self,
        _request: Request<NodeGetCapabilitiesRequest>,
    ) -> Result<Response<NodeGetCapabilitiesResponse>, Status> {
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
    ) -> Result<Response<NodeGetInfoResponse>, Status> {
        tracing::debug!("NodeGetInfo");
        Ok(Response::new(NodeGetInfoResponse {
            node_id: self.config.node_id.clone(),
            max_volumes_per_node: 0,
            accessible_topology: None,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn service() -> NodeService {
        NodeService::new(NodeConfig {
            node_id: "n1".into(),
        })
    }

    #[tokio::test]
    async fn node_info_reports_the_configured_node_id() {
        let info = service()
            .node_get_info(Request::new(NodeGetInfoRequest {}))
            .await
            .unwrap()
            .into_inner();
        assert_eq!(info.node_id, "n1");
        assert_eq!(info.max_volumes_per_node, 0);
    }

    #[tokio::test]
    async fn node_capabilities_include_staging_and_stats() {
        let caps = service()
            .node_get_capabilities(Request::new(NodeGetCapabilitiesRequest {}))
            .await
            .unwrap()
            .into_inner()
            .capabilities;
        let types: Vec<i32> = caps
            .iter()
            .filter_map(|c| c.r#type.as_ref())
            .map(|node_service_capability::Type::Rpc(rpc)| rpc.r#type)
            .collect();
        assert!(types.contains(&(Rpc::StageUnstageVolume as i32)));
        assert!(types.contains(&(Rpc::GetVolumeStats as i32)));
        assert!(!types.contains(&(Rpc::ExpandVolume as i32)));
    }
}
