//! ControllerPublishVolume and ControllerUnpublishVolume: a node's access to an export, granted
//! and revoked on the backend once the node's part of the volume is held.

use std::net::IpAddr;

use rwxnfs_model::VolumeId;
use rwxnfs_proto::{agent as pb, csi};

use super::gone_is_ok;
use crate::{ControllerError, backend::Backend, convert};

/// Grants the node's addresses access, read-only when the request or its mode says so.
pub(super) async fn grant(
    backend: &dyn Backend,
    id: &VolumeId,
    req: &csi::ControllerPublishVolumeRequest,
    cap: &csi::VolumeCapability,
    addresses: &[IpAddr],
) -> Result<csi::ControllerPublishVolumeResponse, ControllerError> {
    let read_only = req.readonly || convert::read_only_mode(cap);
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

/// Revokes one node's access, or with no node every node's; an export or a grant already
/// gone is success.
pub(super) async fn revoke(
    backend: &dyn Backend,
    id: &VolumeId,
    node_id: &str,
) -> Result<csi::ControllerUnpublishVolumeResponse, ControllerError> {
    let clients = if node_id.is_empty() {
        match backend.get_export(id.name.as_str()).await {
            Ok(export) => export.clients.into_iter().map(|c| c.client_id).collect(),
            Err(e) if e.is_not_found() => Vec::new(),
            Err(e) => return Err(e),
        }
    } else {
        vec![node_id.to_owned()]
    };
    for client in clients {
        gone_is_ok(backend.revoke(id.name.as_str(), &client).await)?;
    }
    Ok(csi::ControllerUnpublishVolumeResponse {})
}
