//! CreateSnapshot, GetSnapshot and ListSnapshots on the backend holding the source volume.

use rwxnfs_model::{Name, SnapshotId, VolumeId};
use rwxnfs_proto::csi;

use super::{ControllerService, pager};
use crate::{ControllerError, backend::Backend, convert};

/// Makes (or finds again) the snapshot `id` of `source`; the caller holds the snapshot.
pub(super) async fn create(
    backend: &dyn Backend,
    id: &SnapshotId,
    source: &VolumeId,
) -> Result<csi::CreateSnapshotResponse, ControllerError> {
    let snapshot = backend
        .create_snapshot(id.name.as_str(), source.name.as_str())
        .await?;
    Ok(csi::CreateSnapshotResponse {
        snapshot: Some(convert::snapshot(backend.name(), &snapshot)?),
    })
}

/// The snapshot `raw` names; NOT_FOUND when the backend has no such snapshot.
pub(super) async fn get(
    backend: &dyn Backend,
    id: &SnapshotId,
    raw: &str,
) -> Result<csi::GetSnapshotResponse, ControllerError> {
    let (found, _) = backend.list_snapshots(0, "", id.name.as_str(), "").await?;
    let snapshot = found
        .first()
        .ok_or_else(|| ControllerError::NoSuchSnapshot {
            snapshot: raw.to_owned(),
        })?;
    Ok(csi::GetSnapshotResponse {
        snapshot: Some(convert::snapshot(backend.name(), snapshot)?),
    })
}

/// A ListSnapshots request's filters: the agent's name and source filters, and the one
/// backend a snapshot id or a source volume id pins.
#[derive(Default)]
struct Filters {
    name: String,
    source: String,
    backend: Option<Name>,
}

/// The filters of a request, or None when they cannot match anything of ours (an id that is
/// not ours, or a snapshot and a source in different backends).
fn filters(req: &csi::ListSnapshotsRequest) -> Option<Filters> {
    let mut filters = Filters::default();
    if !req.snapshot_id.is_empty() {
        let id = req.snapshot_id.parse::<SnapshotId>().ok()?;
        filters.name = id.name.to_string();
        filters.backend = Some(id.backend);
    }
    if !req.source_volume_id.is_empty() {
        let id = req.source_volume_id.parse::<VolumeId>().ok()?;
        if filters.backend.as_ref().is_some_and(|b| *b != id.backend) {
            return None;
        }
        filters.source = id.name.to_string();
        filters.backend = Some(id.backend);
    }
    Some(filters)
}

impl ControllerService {
    /// One page of the snapshots that match the request, across backends.
    pub(super) async fn list_snapshots_page(
        &self,
        req: &csi::ListSnapshotsRequest,
    ) -> Result<csi::ListSnapshotsResponse, ControllerError> {
        let Some(filters) = filters(req) else {
            return Ok(csi::ListSnapshotsResponse::default());
        };
        let (name, source) = (filters.name.as_str(), filters.source.as_str());
        let (entries, next_token) = pager::page(
            &self.backends,
            filters.backend.as_ref(),
            &req.starting_token,
            req.max_entries,
            |backend, room, token| async move {
                let (snapshots, next) = backend.list_snapshots(room, &token, name, source).await?;
                let entries = snapshots
                    .iter()
                    .map(|s| {
                        Ok(csi::list_snapshots_response::Entry {
                            snapshot: Some(convert::snapshot(backend.name(), s)?),
                        })
                    })
                    .collect::<Result<_, ControllerError>>()?;
                Ok((entries, next))
            },
        )
        .await?;
        Ok(csi::ListSnapshotsResponse {
            entries,
            next_token,
        })
    }
}
