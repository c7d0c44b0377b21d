//! The CSI Controller service. Each RPC reads validate → lock → delegate: the request's fields
//! are checked in order with fixed messages, the volume (or this node's part of it, or the
//! snapshot) is held, and the work is done in `controllerserver/`: [`volumes`], [`publish`],
//! [`snapshots`], with [`pager`] listing across backends.

use std::sync::Arc;

use rwxnfs_model::{Name, Params, SnapshotId, VolumeId, is_static_volume};
use rwxnfs_proto::csi::{
    self, ControllerServiceCapability,
    controller_server::{Controller, ControllerServer},
    controller_service_capability::{self, rpc::Type as Cap},
};
use rwxnfs_server::{inflight::InFlight, rpc};
use tonic::{Request, Response, Status};

use crate::{
    ControllerError,
    backend::Backend,
    convert::{self, check_capabilities},
    nodes::NodeResolver,
};

mod pager;
mod publish;
mod snapshots;
mod volumes;

type Rpc<T> = Result<Response<T>, Status>;
/// One operation on a volume (or a node's part of it) or a snapshot, until dropped.
type Held = rwxnfs_server::inflight::Held<String, String>;

/// The controller capabilities rwxnfs advertises. PUBLISH_READONLY: a read-only publish grants
/// the node read-only access on the server, and publishing it again with the other mode is
/// ALREADY_EXISTS (the agent keeps one access mode per node).
const CAPABILITIES: [Cap; 14] = [
    Cap::CreateDeleteVolume,
    Cap::PublishUnpublishVolume,
    Cap::PublishReadonly,
    Cap::ListVolumes,
    Cap::ListVolumesPublishedNodes,
    Cap::GetVolume,
    Cap::GetCapacity,
    Cap::CreateDeleteSnapshot,
    Cap::ListSnapshots,
    Cap::GetSnapshot,
    Cap::CloneVolume,
    Cap::ExpandVolume,
    Cap::VolumeCondition,
    Cap::SingleNodeMultiWriter,
];

pub struct ControllerService {
    /// In configuration order, which is the order of listings.
    backends: Vec<Arc<dyn Backend>>,
    nodes: Arc<dyn NodeResolver>,
    inflight: InFlight,
}

fn missing(field: &'static str) -> ControllerError {
    ControllerError::Missing { field }
}

/// A required string field: MISSING when empty.
fn require(value: &str, field: &'static str) -> Result<(), ControllerError> {
    if value.is_empty() {
        return Err(missing(field));
    }
    Ok(())
}

fn reply<T>(result: Result<T, ControllerError>) -> Rpc<T> {
    result.map(Response::new).map_err(Status::from)
}

/// Treats "already gone" as success on delete paths.
fn gone_is_ok(result: Result<(), ControllerError>) -> Result<(), ControllerError> {
    match result {
        Err(e) if e.is_not_found() => Ok(()),
        other => other,
    }
}

impl ControllerService {
    pub fn new(backends: Vec<Arc<dyn Backend>>, nodes: Arc<dyn NodeResolver>) -> Self {
        Self {
            backends,
            nodes,
            inflight: InFlight::default(),
        }
    }

    /// The service with the [`rpc`] layer, which times, counts and logs its calls.
    pub fn into_server(self) -> rpc::Rpc<ControllerServer<Self>> {
        rpc::wrap(ControllerServer::new(self))
    }

    fn backend_named(&self, name: &Name) -> Option<&Arc<dyn Backend>> {
        self.backends.iter().find(|b| b.name() == name)
    }

    /// The backend a StorageClass names, or the only one.
    fn backend_for(&self, params: &Params) -> Result<&Arc<dyn Backend>, ControllerError> {
        let configured = || {
            self.backends
                .iter()
                .map(|b| b.name().as_str())
                .collect::<Vec<_>>()
                .join(", ")
        };
        match (&params.backend, self.backends.as_slice()) {
            (Some(name), _) => {
                self.backend_named(name)
                    .ok_or_else(|| ControllerError::UnknownBackend {
                        name: name.clone(),
                        configured: configured(),
                    })
            }
            (None, [only]) => Ok(only),
            (None, _) => Err(ControllerError::BackendRequired {
                configured: configured(),
            }),
        }
    }

    /// The backend holding a volume; NOT_FOUND for a garbled id or an unknown backend.
    fn volume_backend(&self, raw: &str) -> Result<(VolumeId, &Arc<dyn Backend>), ControllerError> {
        let id = convert::volume_id(raw)?;
        let backend = self.backend_named(&id.backend).ok_or_else(|| {
            ControllerError::VolumeBackendNotConfigured {
                volume: raw.to_owned(),
                backend: id.backend.clone(),
            }
        })?;
        Ok((id, backend))
    }

    /// Holds the whole volume: create, delete, expand, unpublish from every node.
    fn hold_volume(&self, id: &VolumeId) -> Result<Held, ControllerError> {
        Ok(self.inflight.try_hold(format!("volume {id}"))?)
    }

    /// Holds one node's part of a volume: publish and unpublish for other nodes proceed;
    /// the same node, or a whole-volume operation (delete, expand), is ABORTED.
    fn hold_node(&self, id: &VolumeId, node_id: &str) -> Result<Held, ControllerError> {
        Ok(self
            .inflight
            .try_hold_part(format!("volume {id}"), format!("node {node_id}"))?)
    }

    fn hold_snapshot(&self, id: &SnapshotId) -> Result<Held, ControllerError> {
        Ok(self.inflight.try_hold(format!("snapshot {id}"))?)
    }
}

#[tonic::async_trait]
impl Controller for ControllerService {
    /// This operation MUST be idempotent: the same name and a compatible request return the
    /// same volume; the same name with an incompatible request is ALREADY_EXISTS.
    async fn create_volume(
        &self,
        request: Request<csi::CreateVolumeRequest>,
    ) -> Rpc<csi::CreateVolumeResponse> {
        let req = request.into_inner();
        rpc::volume_id(&req.name);
        reply(
            async {
                let plan = self.plan_create(&req)?;
                let _held = self.hold_volume(&plan.id)?;
                self.create(plan, &req).await
            }
            .await,
        )
    }

    /// Deleting a volume that does not exist (or an id that cannot be ours) succeeds. A
    /// delete while a publish or unpublish of the volume is in flight is ABORTED, not run
    /// beside it: the CO retries once the grant has settled.
    async fn delete_volume(
        &self,
        request: Request<csi::DeleteVolumeRequest>,
    ) -> Rpc<csi::DeleteVolumeResponse> {
        let req = request.into_inner();
        rpc::volume_id(&req.volume_id);
        reply(
            async {
                require(&req.volume_id, "Volume ID")?;
                let Ok((id, backend)) = self.volume_backend(&req.volume_id) else {
                    tracing::info!(volume_id = %req.volume_id, "DeleteVolume: not one of ours; nothing to do");
                    return Ok(csi::DeleteVolumeResponse {});
                };
                let _held = self.hold_volume(&id)?;
                gone_is_ok(backend.delete_export(id.name.as_str()).await)?;
                Ok(csi::DeleteVolumeResponse {})
            }
            .await,
        )
    }

    /// Grants the node's addresses access to the export (read-only when asked). A static
    /// volume (`static:<name>`) has nothing to grant: success once the request is valid.
    /// Publishes of one volume to different nodes run side by side (the agent applies the
    /// grants that meet at the export's lock together); the same volume and node twice is
    /// ABORTED.
    async fn controller_publish_volume(
        &self,
        request: Request<csi::ControllerPublishVolumeRequest>,
    ) -> Rpc<csi::ControllerPublishVolumeResponse> {
        let req = request.into_inner();
        rpc::volume_id(&req.volume_id);
        reply(
            async {
                require(&req.volume_id, "Volume ID")?;
                require(&req.node_id, "Node ID")?;
                let cap = req
                    .volume_capability
                    .as_ref()
                    .ok_or_else(|| missing("Volume capability"))?;
                check_capabilities(std::slice::from_ref(cap))?;
                if is_static_volume(&req.volume_id) {
                    return Ok(csi::ControllerPublishVolumeResponse::default());
                }
                let (id, backend) = self.volume_backend(&req.volume_id)?;
                let addresses = self.nodes.addresses(&req.node_id).await?;
                let _held = self.hold_node(&id, &req.node_id)?;
                publish::grant(backend.as_ref(), &id, &req, cap, &addresses).await
            }
            .await,
        )
    }

    /// Revokes the node's access; without a node id, every node's. Already gone: success.
    /// One node's unpublish holds only that node's part of the volume, as a publish does;
    /// every node's holds the whole volume.
    async fn controller_unpublish_volume(
        &self,
        request: Request<csi::ControllerUnpublishVolumeRequest>,
    ) -> Rpc<csi::ControllerUnpublishVolumeResponse> {
        let req = request.into_inner();
        rpc::volume_id(&req.volume_id);
        reply(
            async {
                require(&req.volume_id, "Volume ID")?;
                let Ok((id, backend)) = self.volume_backend(&req.volume_id) else {
                    return Ok(csi::ControllerUnpublishVolumeResponse {});
                };
                let _held = if req.node_id.is_empty() {
                    self.hold_volume(&id)?
                } else {
                    self.hold_node(&id, &req.node_id)?
                };
                publish::revoke(backend.as_ref(), &id, &req.node_id).await
            }
            .await,
        )
    }

    async fn validate_volume_capabilities(
        &self,
        request: Request<csi::ValidateVolumeCapabilitiesRequest>,
    ) -> Rpc<csi::ValidateVolumeCapabilitiesResponse> {
        let req = request.into_inner();
        rpc::volume_id(&req.volume_id);
        reply(
            async {
                require(&req.volume_id, "Volume ID")?;
                if req.volume_capabilities.is_empty() {
                    return Err(missing("Volume capabilities"));
                }
                let (id, backend) = self.volume_backend(&req.volume_id)?;
                volumes::validate(backend.as_ref(), &id, &req).await
            }
            .await,
        )
    }

    /// Pages through every backend in configuration order; tokens stay valid while volumes
    /// come and go.
    async fn list_volumes(
        &self,
        request: Request<csi::ListVolumesRequest>,
    ) -> Rpc<csi::ListVolumesResponse> {
        let req = request.into_inner();
        reply(
            async {
                if req.max_entries < 0 {
                    return Err(ControllerError::NegativeMaxEntries);
                }
                self.list(&req).await
            }
            .await,
        )
    }

    async fn get_capacity(
        &self,
        request: Request<csi::GetCapacityRequest>,
    ) -> Rpc<csi::GetCapacityResponse> {
        let req = request.into_inner();
        reply(
            async {
                check_capabilities(&req.volume_capabilities)?;
                let params = Params::parse(&req.parameters.clone().into_iter().collect())?;
                let backends = match &params.backend {
                    Some(_) => vec![self.backend_for(&params)?.clone()],
                    None => self.backends.clone(),
                };
                volumes::available(&backends).await
            }
            .await,
        )
    }

    async fn controller_get_capabilities(
        &self,
        _request: Request<csi::ControllerGetCapabilitiesRequest>,
    ) -> Rpc<csi::ControllerGetCapabilitiesResponse> {
        let capabilities = CAPABILITIES
            .iter()
            .map(|cap| ControllerServiceCapability {
                r#type: Some(controller_service_capability::Type::Rpc(
                    controller_service_capability::Rpc {
                        r#type: *cap as i32,
                    },
                )),
            })
            .collect();
        Ok(Response::new(csi::ControllerGetCapabilitiesResponse {
            capabilities,
        }))
    }

    /// Idempotent by name: the same name and source return the same snapshot.
    async fn create_snapshot(
        &self,
        request: Request<csi::CreateSnapshotRequest>,
    ) -> Rpc<csi::CreateSnapshotResponse> {
        let req = request.into_inner();
        rpc::volume_id(&req.name);
        reply(
            async {
                require(&req.name, "Snapshot name")?;
                require(&req.source_volume_id, "Source volume ID")?;
                let name = Name::parse(&req.name).map_err(ControllerError::BadName)?;
                let (source, backend) = self.volume_backend(&req.source_volume_id)?;
                let id = SnapshotId::new(backend.name().clone(), name);
                let _held = self.hold_snapshot(&id)?;
                snapshots::create(backend.as_ref(), &id, &source).await
            }
            .await,
        )
    }

    /// Deleting a snapshot that does not exist (or an id that cannot be ours) succeeds.
    async fn delete_snapshot(
        &self,
        request: Request<csi::DeleteSnapshotRequest>,
    ) -> Rpc<csi::DeleteSnapshotResponse> {
        let req = request.into_inner();
        rpc::volume_id(&req.snapshot_id);
        reply(
            async {
                require(&req.snapshot_id, "Snapshot ID")?;
                let Ok(id) = req.snapshot_id.parse::<SnapshotId>() else {
                    return Ok(csi::DeleteSnapshotResponse {});
                };
                let Some(backend) = self.backend_named(&id.backend) else {
                    return Ok(csi::DeleteSnapshotResponse {});
                };
                let _held = self.hold_snapshot(&id)?;
                gone_is_ok(backend.delete_snapshot(id.name.as_str()).await)?;
                Ok(csi::DeleteSnapshotResponse {})
            }
            .await,
        )
    }

    async fn list_snapshots(
        &self,
        request: Request<csi::ListSnapshotsRequest>,
    ) -> Rpc<csi::ListSnapshotsResponse> {
        let req = request.into_inner();
        rpc::volume_id(&req.snapshot_id);
        reply(
            async {
                if req.max_entries < 0 {
                    return Err(ControllerError::NegativeMaxEntries);
                }
                self.list_snapshots_page(&req).await
            }
            .await,
        )
    }

    async fn get_snapshot(
        &self,
        request: Request<csi::GetSnapshotRequest>,
    ) -> Rpc<csi::GetSnapshotResponse> {
        let req = request.into_inner();
        rpc::volume_id(&req.snapshot_id);
        reply(
            async {
                require(&req.snapshot_id, "Snapshot ID")?;
                let id = convert::snapshot_id(&req.snapshot_id)?;
                let backend = self.backend_named(&id.backend).ok_or_else(|| {
                    ControllerError::SnapshotBackendNotConfigured {
                        snapshot: req.snapshot_id.clone(),
                        backend: id.backend.clone(),
                    }
                })?;
                snapshots::get(backend.as_ref(), &id, &req.snapshot_id).await
            }
            .await,
        )
    }

    /// Online expansion: the quota grows at once; no node-side step is needed.
    async fn controller_expand_volume(
        &self,
        request: Request<csi::ControllerExpandVolumeRequest>,
    ) -> Rpc<csi::ControllerExpandVolumeResponse> {
        let req = request.into_inner();
        rpc::volume_id(&req.volume_id);
        reply(
            async {
                require(&req.volume_id, "Volume ID")?;
                let range = req
                    .capacity_range
                    .as_ref()
                    .ok_or_else(|| missing("Capacity range"))?;
                if let Some(cap) = &req.volume_capability {
                    check_capabilities(std::slice::from_ref(cap))?;
                }
                let (required, limit) = volumes::capacity(Some(range))?;
                let (id, backend) = self.volume_backend(&req.volume_id)?;
                let _held = self.hold_volume(&id)?;
                let capacity_bytes = backend
                    .expand_export(id.name.as_str(), required, limit)
                    .await?;
                Ok(csi::ControllerExpandVolumeResponse {
                    capacity_bytes,
                    node_expansion_required: false,
                })
            }
            .await,
        )
    }

    async fn controller_get_volume(
        &self,
        request: Request<csi::ControllerGetVolumeRequest>,
    ) -> Rpc<csi::ControllerGetVolumeResponse> {
        let req = request.into_inner();
        rpc::volume_id(&req.volume_id);
        reply(
            async {
                require(&req.volume_id, "Volume ID")?;
                let (id, backend) = self.volume_backend(&req.volume_id)?;
                volumes::get(backend.as_ref(), &id).await
            }
            .await,
        )
    }

    /// Not advertised: rwxnfs has no mutable volume parameters.
    async fn controller_modify_volume(
        &self,
        request: Request<csi::ControllerModifyVolumeRequest>,
    ) -> Rpc<csi::ControllerModifyVolumeResponse> {
        rpc::volume_id(&request.into_inner().volume_id);
        reply(Err(ControllerError::ModifyUnsupported))
    }
}

#[cfg(test)]
mod tests;
