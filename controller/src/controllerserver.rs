//! The CSI Controller service. Each RPC reads validate → lock → delegate to a backend.

use std::{collections::BTreeMap, sync::Arc};

use rwxnfs_model::{Name, Params, SnapshotId, VolumeId, is_static_volume, render_sub_dir};
use rwxnfs_proto::{
    agent as pb,
    csi::{
        self, ControllerServiceCapability,
        controller_server::{Controller, ControllerServer},
        controller_service_capability::{self, rpc::Type as Cap},
        volume_content_source,
    },
};
use rwxnfs_server::rpc;
use tonic::{Request, Response, Status};

use crate::{
    ControllerError,
    backend::Backend,
    convert::{self, check_capabilities},
    inflight::{Held, InFlight},
    nodes::NodeResolver,
};

type Rpc<T> = Result<Response<T>, Status>;

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
    backends: BTreeMap<Name, Arc<dyn Backend>>,
    order: Vec<Name>,
    nodes: Arc<dyn NodeResolver>,
    inflight: InFlight,
}

fn missing(field: &'static str) -> ControllerError {
    ControllerError::Missing { field }
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
        let order: Vec<Name> = backends.iter().map(|b| b.name().clone()).collect();
        Self {
            backends: backends
                .into_iter()
                .map(|b| (b.name().clone(), b))
                .collect(),
            order,
            nodes,
            inflight: InFlight::default(),
        }
    }

    /// The service with the [`rpc`] layer, which times, counts and logs its calls.
    pub fn into_server(self) -> rpc::Rpc<ControllerServer<Self>> {
        rpc::wrap(ControllerServer::new(self))
    }

    /// The backends, for readiness checks.
    pub fn backends(&self) -> Vec<Arc<dyn Backend>> {
        self.order
            .iter()
            .filter_map(|n| self.backends.get(n).cloned())
            .collect()
    }

    fn backend_named(&self, name: &Name) -> Option<&Arc<dyn Backend>> {
        self.backends.get(name)
    }

    /// The backend a StorageClass names, or the only one.
    fn backend_for(&self, params: &Params) -> Result<&Arc<dyn Backend>, ControllerError> {
        let configured = || {
            self.order
                .iter()
                .map(Name::as_str)
                .collect::<Vec<_>>()
                .join(", ")
        };
        match &params.backend {
            Some(name) => self
                .backend_named(name)
                .ok_or_else(|| ControllerError::UnknownBackend {
                    name: name.clone(),
                    configured: configured(),
                }),
            None if self.order.len() == 1 => Ok(&self.backends[&self.order[0]]),
            None => Err(ControllerError::BackendRequired {
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

    /// Holds one node's part of a volume: publish and unpublish for other nodes proceed;
    /// the same node, or a whole-volume operation (delete, expand), is ABORTED.
    fn hold_node(&self, id: &VolumeId, node_id: &str) -> Result<Held, ControllerError> {
        self.inflight
            .try_hold_part(format!("volume {id}"), format!("node {node_id}"))
    }

    async fn context_for(
        &self,
        backend: &Arc<dyn Backend>,
        export: &pb::Export,
        params: &Params,
    ) -> Result<std::collections::HashMap<String, String>, ControllerError> {
        let server = backend.server_address().await?;
        Ok(convert::volume_context(&server.to_string(), export, params))
    }

    /// The content source of a CreateVolume, resolved to the agent's form.
    fn content_source(
        &self,
        source: &Option<csi::VolumeContentSource>,
        backend: &Name,
    ) -> Result<Option<pb::ContentSource>, ControllerError> {
        let Some(kind) = source.as_ref().and_then(|s| s.r#type.as_ref()) else {
            return Ok(None);
        };
        let (agent_source, source_backend) = match kind {
            volume_content_source::Type::Snapshot(s) => {
                let id = convert::snapshot_id(&s.snapshot_id)?;
                (
                    pb::content_source::Source::SnapshotName(id.name.to_string()),
                    id.backend,
                )
            }
            volume_content_source::Type::Volume(v) => {
                let id = convert::volume_id(&v.volume_id)?;
                (
                    pb::content_source::Source::ExportName(id.name.to_string()),
                    id.backend,
                )
            }
        };
        if &source_backend != backend {
            return Err(ControllerError::SourceInOtherBackend {
                source_backend,
                backend: backend.clone(),
            });
        }
        Ok(Some(pb::ContentSource {
            source: Some(agent_source),
        }))
    }
}

/// The export a CreateVolume makes: the request's name, or for a subdir backend the directory
/// its `subDir` template names.
fn export_name(
    backend: &dyn Backend,
    params: &Params,
    name: Name,
    parameters: &std::collections::BTreeMap<String, String>,
) -> Result<Name, ControllerError> {
    if backend.has_sub_dirs() {
        // Nothing records a policy on a share: the directory goes with the claim.
        if params
            .on_delete
            .is_some_and(|p| p != rwxnfs_model::params::OnDeleteParam::Delete)
        {
            return Err(ControllerError::SubdirDeletes {
                backend: backend.name().clone(),
            });
        }
        Ok(render_sub_dir(
            params.sub_dir.as_deref(),
            name.as_str(),
            parameters,
        )?)
    } else if params.sub_dir.is_some() {
        Err(ControllerError::SubDirOnAgentBackend {
            backend: backend.name().clone(),
        })
    } else {
        Ok(name)
    }
}

fn capacity(range: &Option<csi::CapacityRange>) -> Result<(i64, i64), ControllerError> {
    let (required, limit) = range
        .as_ref()
        .map_or((0, 0), |r| (r.required_bytes, r.limit_bytes));
    if required < 0 || limit < 0 {
        return Err(ControllerError::NegativeCapacity);
    }
    if limit > 0 && required > limit {
        return Err(ControllerError::RequiredAboveLimit { required, limit });
    }
    Ok((required, limit))
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
        let result = async {
            if req.name.is_empty() {
                return Err(missing("Name"));
            }
            if req.volume_capabilities.is_empty() {
                return Err(missing("Volume capabilities"));
            }
            check_capabilities(&req.volume_capabilities)?;
            let parameters = req.parameters.clone().into_iter().collect();
            let params = Params::parse(&parameters)?;
            let (required, limit) = capacity(&req.capacity_range)?;
            let name = Name::parse(&req.name).map_err(ControllerError::BadName)?;
            let backend = self.backend_for(&params)?;
            let name = export_name(backend.as_ref(), &params, name, &parameters)?;
            let source = self.content_source(&req.volume_content_source, backend.name())?;

            let id = VolumeId::new(backend.name().clone(), name.clone());
            let _held = self.inflight.try_hold(format!("volume {id}"))?;
            let export = backend
                .create_export(pb::CreateExportRequest {
                    name: name.to_string(),
                    required_bytes: required,
                    limit_bytes: limit,
                    options: Some(convert::export_options(&params)),
                    source,
                })
                .await?;
            let context = self.context_for(backend, &export, &params).await?;
            let mut volume = convert::volume(&id, &export, context);
            volume.content_source = convert::content_source(&req.volume_content_source);
            Ok(csi::CreateVolumeResponse {
                volume: Some(volume),
            })
        }
        .await;
        reply(result)
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
        let result = async {
            if req.volume_id.is_empty() {
                return Err(missing("Volume ID"));
            }
            let Ok((id, backend)) = self.volume_backend(&req.volume_id) else {
                tracing::info!(volume_id = %req.volume_id, "DeleteVolume: not one of ours; nothing to do");
                return Ok(csi::DeleteVolumeResponse {});
            };
            let _held = self.inflight.try_hold(format!("volume {id}"))?;
            gone_is_ok(backend.delete_export(id.name.as_str()).await)?;
            Ok(csi::DeleteVolumeResponse {})
        }
        .await;
        reply(result)
    }

    /// Grants the node's addresses access to the export (read-only when asked). A static
    /// volume (`static:<name>`) has nothing to grant: success once the request is valid.
    /// Publishes of one volume to different nodes run side by side (the agent applies each
    /// grant under the export's lock); the same volume and node twice is ABORTED.
    async fn controller_publish_volume(
        &self,
        request: Request<csi::ControllerPublishVolumeRequest>,
    ) -> Rpc<csi::ControllerPublishVolumeResponse> {
        let req = request.into_inner();
        rpc::volume_id(&req.volume_id);
        let result = async {
            if req.volume_id.is_empty() {
                return Err(missing("Volume ID"));
            }
            if req.node_id.is_empty() {
                return Err(missing("Node ID"));
            }
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
            let read_only = req.readonly || convert::read_only_mode(cap);
            let _held = self.hold_node(&id, &req.node_id)?;
            let client = pb::ClientAccess {
                client_id: req.node_id.clone(),
                addresses: addresses.iter().map(|a| a.to_string()).collect(),
                mode: if read_only {
                    pb::AccessMode::ReadOnly
                } else {
                    pb::AccessMode::ReadWrite
                } as i32,
            };
            backend.grant(id.name.as_str(), client).await?;
            Ok(csi::ControllerPublishVolumeResponse {
                publish_context: Default::default(),
            })
        }
        .await;
        reply(result)
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
        let result = async {
            if req.volume_id.is_empty() {
                return Err(missing("Volume ID"));
            }
            let Ok((id, backend)) = self.volume_backend(&req.volume_id) else {
                return Ok(csi::ControllerUnpublishVolumeResponse {});
            };
            let _held = if req.node_id.is_empty() {
                self.inflight.try_hold(format!("volume {id}"))?
            } else {
                self.hold_node(&id, &req.node_id)?
            };
            let clients = if req.node_id.is_empty() {
                match backend.get_export(id.name.as_str()).await {
                    Ok(export) => export.clients.into_iter().map(|c| c.client_id).collect(),
                    Err(e) if e.is_not_found() => Vec::new(),
                    Err(s) => return Err(s),
                }
            } else {
                vec![req.node_id.clone()]
            };
            for client in clients {
                gone_is_ok(backend.revoke(id.name.as_str(), &client).await)?;
            }
            Ok(csi::ControllerUnpublishVolumeResponse {})
        }
        .await;
        reply(result)
    }

    async fn validate_volume_capabilities(
        &self,
        request: Request<csi::ValidateVolumeCapabilitiesRequest>,
    ) -> Rpc<csi::ValidateVolumeCapabilitiesResponse> {
        let req = request.into_inner();
        rpc::volume_id(&req.volume_id);
        let result = async {
            if req.volume_id.is_empty() {
                return Err(missing("Volume ID"));
            }
            if req.volume_capabilities.is_empty() {
                return Err(missing("Volume capabilities"));
            }
            let (id, backend) = self.volume_backend(&req.volume_id)?;
            backend.get_export(id.name.as_str()).await?;
            if let Some(why) = req
                .volume_capabilities
                .iter()
                .find_map(convert::unsupported)
            {
                return Ok(csi::ValidateVolumeCapabilitiesResponse {
                    confirmed: None,
                    message: why,
                });
            }
            Ok(csi::ValidateVolumeCapabilitiesResponse {
                confirmed: Some(csi::validate_volume_capabilities_response::Confirmed {
                    volume_context: req.volume_context.clone(),
                    volume_capabilities: req.volume_capabilities.clone(),
                    parameters: req.parameters.clone(),
                    mutable_parameters: req.mutable_parameters.clone(),
                }),
                message: String::new(),
            })
        }
        .await;
        reply(result)
    }

    /// Pages through every backend in configuration order; tokens stay valid while volumes
    /// come and go.
    async fn list_volumes(
        &self,
        request: Request<csi::ListVolumesRequest>,
    ) -> Rpc<csi::ListVolumesResponse> {
        let req = request.into_inner();
        let result = async {
            if req.max_entries < 0 {
                return Err(ControllerError::NegativeMaxEntries);
            }
            let (mut index, mut token) =
                convert::parse_page_token(&req.starting_token, self.order.len())?;
            let mut entries = Vec::new();
            let mut next_token = String::new();
            while index < self.order.len() {
                let backend = &self.backends[&self.order[index]];
                let room = if req.max_entries == 0 {
                    0
                } else {
                    req.max_entries - entries.len() as i32
                };
                let (exports, next) = backend.list_exports(room, &token).await?;
                let server = backend.server_address().await?.to_string();
                for export in &exports {
                    let Ok(name) = Name::parse(&export.name) else {
                        continue;
                    };
                    let id = VolumeId::new(backend.name().clone(), name);
                    let context = convert::volume_context(&server, export, &Params::default());
                    entries.push(csi::list_volumes_response::Entry {
                        volume: Some(convert::volume(&id, export, context)),
                        status: Some(csi::list_volumes_response::VolumeStatus {
                            published_node_ids: export
                                .clients
                                .iter()
                                .map(|c| c.client_id.clone())
                                .collect(),
                            volume_condition: convert::healthy(),
                        }),
                    });
                }
                if !next.is_empty() {
                    next_token = convert::page_token(index, &next);
                    break;
                }
                index += 1;
                token.clear();
                if req.max_entries > 0 && entries.len() as i32 >= req.max_entries {
                    if index < self.order.len() {
                        next_token = convert::page_token(index, "");
                    }
                    break;
                }
            }
            Ok(csi::ListVolumesResponse {
                entries,
                next_token,
            })
        }
        .await;
        reply(result)
    }

    async fn get_capacity(
        &self,
        request: Request<csi::GetCapacityRequest>,
    ) -> Rpc<csi::GetCapacityResponse> {
        let req = request.into_inner();
        let result = async {
            check_capabilities(&req.volume_capabilities)?;
            let params = Params::parse(&req.parameters.clone().into_iter().collect())?;
            let backends: Vec<&Arc<dyn Backend>> = match &params.backend {
                Some(_) => vec![self.backend_for(&params)?],
                None => self.backends.values().collect(),
            };
            let mut available: i64 = 0;
            for backend in backends {
                available = available.saturating_add(backend.capacity().await?.available_bytes);
            }
            Ok::<_, ControllerError>(csi::GetCapacityResponse {
                available_capacity: available,
                maximum_volume_size: None,
                minimum_volume_size: None,
            })
        }
        .await;
        reply(result)
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
        let result = async {
            if req.name.is_empty() {
                return Err(missing("Snapshot name"));
            }
            if req.source_volume_id.is_empty() {
                return Err(missing("Source volume ID"));
            }
            let name = Name::parse(&req.name).map_err(ControllerError::BadName)?;
            let (source, backend) = self.volume_backend(&req.source_volume_id)?;
            let id = SnapshotId::new(backend.name().clone(), name.clone());
            let _held = self.inflight.try_hold(format!("snapshot {id}"))?;
            let snapshot = backend
                .create_snapshot(name.as_str(), source.name.as_str())
                .await?;
            Ok(csi::CreateSnapshotResponse {
                snapshot: Some(convert::snapshot(backend.name(), &snapshot)?),
            })
        }
        .await;
        reply(result)
    }

    async fn delete_snapshot(
        &self,
        request: Request<csi::DeleteSnapshotRequest>,
    ) -> Rpc<csi::DeleteSnapshotResponse> {
        let req = request.into_inner();
        rpc::volume_id(&req.snapshot_id);
        let result = async {
            if req.snapshot_id.is_empty() {
                return Err(missing("Snapshot ID"));
            }
            let Ok(id) = req.snapshot_id.parse::<SnapshotId>() else {
                return Ok(csi::DeleteSnapshotResponse {});
            };
            let Some(backend) = self.backend_named(&id.backend) else {
                return Ok(csi::DeleteSnapshotResponse {});
            };
            let _held = self.inflight.try_hold(format!("snapshot {id}"))?;
            gone_is_ok(backend.delete_snapshot(id.name.as_str()).await)?;
            Ok(csi::DeleteSnapshotResponse {})
        }
        .await;
        reply(result)
    }

    async fn list_snapshots(
        &self,
        request: Request<csi::ListSnapshotsRequest>,
    ) -> Rpc<csi::ListSnapshotsResponse> {
        let req = request.into_inner();
        rpc::volume_id(&req.snapshot_id);
        let result = self.list_snapshots_inner(&req).await;
        reply(result)
    }

    async fn get_snapshot(
        &self,
        request: Request<csi::GetSnapshotRequest>,
    ) -> Rpc<csi::GetSnapshotResponse> {
        let req = request.into_inner();
        rpc::volume_id(&req.snapshot_id);
        let result = async {
            if req.snapshot_id.is_empty() {
                return Err(missing("Snapshot ID"));
            }
            let id = convert::snapshot_id(&req.snapshot_id)?;
            let backend = self.backend_named(&id.backend).ok_or_else(|| {
                ControllerError::SnapshotBackendNotConfigured {
                    snapshot: req.snapshot_id.clone(),
                    backend: id.backend.clone(),
                }
            })?;
            let (found, _) = backend.list_snapshots(0, "", id.name.as_str(), "").await?;
            let snapshot = found
                .first()
                .ok_or_else(|| ControllerError::NoSuchSnapshot {
                    snapshot: req.snapshot_id.clone(),
                })?;
            Ok(csi::GetSnapshotResponse {
                snapshot: Some(convert::snapshot(backend.name(), snapshot)?),
            })
        }
        .await;
        reply(result)
    }

    /// Online expansion: the quota grows at once; no node-side step is needed.
    async fn controller_expand_volume(
        &self,
        request: Request<csi::ControllerExpandVolumeRequest>,
    ) -> Rpc<csi::ControllerExpandVolumeResponse> {
        let req = request.into_inner();
        rpc::volume_id(&req.volume_id);
        let result = async {
            if req.volume_id.is_empty() {
                return Err(missing("Volume ID"));
            }
            let range = req
                .capacity_range
                .as_ref()
                .ok_or_else(|| missing("Capacity range"))?;
            if let Some(cap) = &req.volume_capability {
                check_capabilities(std::slice::from_ref(cap))?;
            }
            let (required, limit) = capacity(&Some(*range))?;
            let (id, backend) = self.volume_backend(&req.volume_id)?;
            let _held = self.inflight.try_hold(format!("volume {id}"))?;
            let capacity_bytes = backend
                .expand_export(id.name.as_str(), required, limit)
                .await?;
            Ok(csi::ControllerExpandVolumeResponse {
                capacity_bytes,
                node_expansion_required: false,
            })
        }
        .await;
        reply(result)
    }

    async fn controller_get_volume(
        &self,
        request: Request<csi::ControllerGetVolumeRequest>,
    ) -> Rpc<csi::ControllerGetVolumeResponse> {
        let req = request.into_inner();
        rpc::volume_id(&req.volume_id);
        let result = async {
            if req.volume_id.is_empty() {
                return Err(missing("Volume ID"));
            }
            let (id, backend) = self.volume_backend(&req.volume_id)?;
            let export = backend.get_export(id.name.as_str()).await?;
            let context = self
                .context_for(backend, &export, &Params::default())
                .await?;
            Ok(csi::ControllerGetVolumeResponse {
                volume: Some(convert::volume(&id, &export, context)),
                status: Some(csi::controller_get_volume_response::VolumeStatus {
                    published_node_ids: export
                        .clients
                        .iter()
                        .map(|c| c.client_id.clone())
                        .collect(),
                    volume_condition: convert::healthy(),
                }),
            })
        }
        .await;
        reply(result)
    }

    /// Not advertised: rwxnfs has no mutable volume parameters.
    async fn controller_modify_volume(
        &self,
        request: Request<csi::ControllerModifyVolumeRequest>,
    ) -> Rpc<csi::ControllerModifyVolumeResponse> {
        let req = request.into_inner();
        rpc::volume_id(&req.volume_id);
        Err(ControllerError::ModifyUnsupported.into())
    }
}

impl ControllerService {
    async fn list_snapshots_inner(
        &self,
        req: &csi::ListSnapshotsRequest,
    ) -> Result<csi::ListSnapshotsResponse, ControllerError> {
        if req.max_entries < 0 {
            return Err(ControllerError::NegativeMaxEntries);
        }
        let empty = || {
            Ok(csi::ListSnapshotsResponse {
                entries: Vec::new(),
                next_token: String::new(),
            })
        };
        // Filters: a snapshot id or a source volume id pins the backend; one that cannot be
        // ours matches nothing.
        let mut name_filter = String::new();
        let mut source_filter = String::new();
        let mut only_backend: Option<Name> = None;
        if !req.snapshot_id.is_empty() {
            let Ok(id) = req.snapshot_id.parse::<SnapshotId>() else {
                return empty();
            };
            name_filter = id.name.to_string();
            only_backend = Some(id.backend);
        }
        if !req.source_volume_id.is_empty() {
            let Ok(id) = req.source_volume_id.parse::<VolumeId>() else {
                return empty();
            };
            if only_backend.as_ref().is_some_and(|b| *b != id.backend) {
                return empty();
            }
            source_filter = id.name.to_string();
            only_backend = Some(id.backend);
        }
        let (mut index, mut token) =
            convert::parse_page_token(&req.starting_token, self.order.len())?;
        let mut entries = Vec::new();
        let mut next_token = String::new();
        while index < self.order.len() {
            let backend = &self.backends[&self.order[index]];
            if only_backend.as_ref().is_some_and(|b| b != backend.name()) {
                index += 1;
                token.clear();
                continue;
            }
            let room = if req.max_entries == 0 {
                0
            } else {
                req.max_entries - entries.len() as i32
            };
            let (snapshots, next) = backend
                .list_snapshots(room, &token, &name_filter, &source_filter)
                .await?;
            for s in &snapshots {
                entries.push(csi::list_snapshots_response::Entry {
                    snapshot: Some(convert::snapshot(backend.name(), s)?),
                });
            }
            if !next.is_empty() {
                next_token = convert::page_token(index, &next);
                break;
            }
            index += 1;
            token.clear();
            if req.max_entries > 0 && entries.len() as i32 >= req.max_entries {
                if index < self.order.len() && only_backend.is_none() {
                    next_token = convert::page_token(index, "");
                }
                break;
            }
        }
        Ok(csi::ListSnapshotsResponse {
            entries,
            next_token,
        })
    }
}

#[cfg(test)]
mod tests;
