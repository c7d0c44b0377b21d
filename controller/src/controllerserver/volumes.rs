//! Volumes: what CreateVolume asks for and makes, GetVolume, ValidateVolumeCapabilities,
//! ListVolumes and GetCapacity, once the request is checked (and for a create, the volume held).

use std::{
    collections::{BTreeMap, HashMap},
    sync::Arc,
};

use rwxnfs_model::{Name, Params, VolumeId, params::OnDeleteParam, render_sub_dir};
use rwxnfs_proto::{
    agent as pb,
    csi::{self, volume_content_source},
};

use super::{ControllerService, missing, pager, require};
use crate::{
    ControllerError,
    backend::Backend,
    convert::{self, check_capabilities},
};

/// A CreateVolume checked and resolved: which backend, which export, how big, from what.
pub(super) struct CreatePlan<'a> {
    pub(super) id: VolumeId,
    backend: &'a Arc<dyn Backend>,
    params: Params,
    required: i64,
    limit: i64,
    source: Option<pb::ContentSource>,
}

impl ControllerService {
    /// Checks a CreateVolume in field order and resolves it, before anything is held.
    pub(super) fn plan_create(
        &self,
        req: &csi::CreateVolumeRequest,
    ) -> Result<CreatePlan<'_>, ControllerError> {
        require(&req.name, "Name")?;
        if req.volume_capabilities.is_empty() {
            return Err(missing("Volume capabilities"));
        }
        check_capabilities(&req.volume_capabilities)?;
        let parameters = req.parameters.clone().into_iter().collect();
        let params = Params::parse(&parameters)?;
        let (required, limit) = capacity(req.capacity_range.as_ref())?;
        let name = Name::parse(&req.name).map_err(ControllerError::BadName)?;
        let backend = self.backend_for(&params)?;
        if params.transport.is_tls() && backend.server_name().is_none() {
            return Err(ControllerError::NoServerName {
                backend: backend.name().clone(),
                transport: params.transport,
            });
        }
        let name = export_name(backend.as_ref(), &params, name, &parameters)?;
        let source = content_source(req.volume_content_source.as_ref(), backend.name())?;
        Ok(CreatePlan {
            id: VolumeId::new(backend.name().clone(), name),
            backend,
            params,
            required,
            limit,
            source,
        })
    }

    /// Makes (or finds again) the export a plan names.
    pub(super) async fn create(
        &self,
        plan: CreatePlan<'_>,
        req: &csi::CreateVolumeRequest,
    ) -> Result<csi::CreateVolumeResponse, ControllerError> {
        let export = plan
            .backend
            .create_export(pb::CreateExportRequest {
                name: plan.id.name.to_string(),
                required_bytes: plan.required,
                limit_bytes: plan.limit,
                options: Some(convert::export_options(&plan.params)),
                source: plan.source,
            })
            .await?;
        let context = context_for(plan.backend.as_ref(), &export, &plan.params).await?;
        let mut volume = convert::volume(&plan.id, &export, context);
        // Echoed, as the spec asks.
        volume.content_source = req.volume_content_source.clone();
        Ok(csi::CreateVolumeResponse {
            volume: Some(volume),
        })
    }

    /// One page of every backend's volumes, in configuration order.
    pub(super) async fn list(
        &self,
        req: &csi::ListVolumesRequest,
    ) -> Result<csi::ListVolumesResponse, ControllerError> {
        let (entries, next_token) = pager::page(
            &self.backends,
            None,
            &req.starting_token,
            req.max_entries,
            |backend, room, token| async move {
                let (exports, next) = backend.list_exports(room, &token).await?;
                let server = backend.server_address().await?.to_string();
                let entries = exports
                    .iter()
                    .filter_map(|export| list_entry(backend.name(), &server, export))
                    .collect();
                Ok((entries, next))
            },
        )
        .await?;
        Ok(csi::ListVolumesResponse {
            entries,
            next_token,
        })
    }
}

/// A ListVolumes entry; none for an export whose name cannot be a volume's.
fn list_entry(
    backend: &Name,
    server: &str,
    export: &pb::Export,
) -> Option<csi::list_volumes_response::Entry> {
    let name = Name::parse(&export.name).ok()?;
    let id = VolumeId::new(backend.clone(), name);
    let context = convert::volume_context(server, None, export, &Params::default());
    Some(csi::list_volumes_response::Entry {
        volume: Some(convert::volume(&id, export, context)),
        status: Some(csi::list_volumes_response::VolumeStatus {
            published_node_ids: published_nodes(export),
            volume_condition: convert::healthy(),
        }),
    })
}

fn published_nodes(export: &pb::Export) -> Vec<String> {
    export.clients.iter().map(|c| c.client_id.clone()).collect()
}

pub(super) async fn get(
    backend: &dyn Backend,
    id: &VolumeId,
) -> Result<csi::ControllerGetVolumeResponse, ControllerError> {
    let export = backend.get_export(id.name.as_str()).await?;
    let context = context_for(backend, &export, &Params::default()).await?;
    Ok(csi::ControllerGetVolumeResponse {
        volume: Some(convert::volume(id, &export, context)),
        status: Some(csi::controller_get_volume_response::VolumeStatus {
            published_node_ids: published_nodes(&export),
            volume_condition: convert::healthy(),
        }),
    })
}

/// Confirms the capabilities of a volume that exists, or says which one is not supported.
pub(super) async fn validate(
    backend: &dyn Backend,
    id: &VolumeId,
    req: &csi::ValidateVolumeCapabilitiesRequest,
) -> Result<csi::ValidateVolumeCapabilitiesResponse, ControllerError> {
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

/// The space available on the backends, summed.
pub(super) async fn available(
    backends: &[Arc<dyn Backend>],
) -> Result<csi::GetCapacityResponse, ControllerError> {
    let mut available: i64 = 0;
    for backend in backends {
        available = available.saturating_add(backend.capacity().await?.available_bytes);
    }
    Ok(csi::GetCapacityResponse {
        available_capacity: available,
        maximum_volume_size: None,
        minimum_volume_size: None,
    })
}

async fn context_for(
    backend: &dyn Backend,
    export: &pb::Export,
    params: &Params,
) -> Result<HashMap<String, String>, ControllerError> {
    let server = backend.server_address().await?;
    Ok(convert::volume_context(
        &server.to_string(),
        backend.server_name(),
        export,
        params,
    ))
}

/// The content source of a CreateVolume, resolved to the agent's form.
fn content_source(
    source: Option<&csi::VolumeContentSource>,
    backend: &Name,
) -> Result<Option<pb::ContentSource>, ControllerError> {
    let Some(kind) = source.and_then(|s| s.r#type.as_ref()) else {
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

/// The export a CreateVolume makes: the request's name, or for a subdir backend the directory
/// its `subDir` template names.
fn export_name(
    backend: &dyn Backend,
    params: &Params,
    name: Name,
    parameters: &BTreeMap<String, String>,
) -> Result<Name, ControllerError> {
    if backend.has_sub_dirs() {
        // Nothing records a policy on a share: the directory goes with the claim.
        if params.on_delete.is_some_and(|p| p != OnDeleteParam::Delete) {
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

/// The (required, limit) bytes of a capacity range, checked.
pub(super) fn capacity(range: Option<&csi::CapacityRange>) -> Result<(i64, i64), ControllerError> {
    let (required, limit) = range.map_or((0, 0), |r| (r.required_bytes, r.limit_bytes));
    if required < 0 || limit < 0 {
        return Err(ControllerError::NegativeCapacity);
    }
    if limit > 0 && required > limit {
        return Err(ControllerError::RequiredAboveLimit { required, limit });
    }
    Ok((required, limit))
}
