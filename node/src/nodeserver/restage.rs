//! Stale re-staging: a staged mount that answers ESTALE or EIO for good is mounted again.

use std::path::PathBuf;

use super::NodeService;
use crate::{bounded::BoundedError, error::NodeError};
use rwxnfs_proto::csi::{NodePublishVolumeRequest, NodeStageVolumeRequest, VolumeCapability};

impl NodeService {
    /// A staged mount whose server came back with another fsid, or after a failover that did
    /// not keep the handles, answers ESTALE (or EIO) for good: unmount it and every bind of it,
    /// stage again from the request's volume context, and bind the targets again.
    pub(super) async fn restage_if_stale(
        &self,
        req: &NodePublishVolumeRequest,
        cap: &VolumeCapability,
    ) -> Result<(), NodeError> {
        let staging = PathBuf::from(&req.staging_target_path);
        let Err(e) = self.stat_fs(&staging).await else {
            return Ok(());
        };
        let stale = matches!(e.raw_os_error(), Some(libc::ESTALE | libc::EIO))
            || matches!(e, BoundedError::TimedOut { .. });
        if !stale {
            return Ok(());
        }
        // Re-staging is staging: a stage, an unstage or another publish's re-staging of this
        // path at the same time is told to retry.
        let _held = self.hold(&req.volume_id, &staging)?;
        tracing::warn!(volume_id = %req.volume_id, staging = %staging.display(), error = %e, "staged mount is stale; staging it again");
        let mounts = self.mounts().await?;
        let Some(staged) = mounts
            .iter()
            .rev()
            .find(|m| m.mount_point == staging)
            .cloned()
        else {
            return Ok(());
        };
        let binds: Vec<(PathBuf, bool)> = mounts
            .iter()
            .filter(|m| m.source == staged.source && m.mount_point != staging)
            .map(|m| (m.mount_point.clone(), m.read_only()))
            .collect();
        for (target, _) in &binds {
            self.unmount_all(target).await?;
        }
        self.unmount_all(&staging).await?;
        let stage = NodeStageVolumeRequest {
            volume_id: req.volume_id.clone(),
            staging_target_path: req.staging_target_path.clone(),
            volume_capability: Some(cap.clone()),
            volume_context: req.volume_context.clone(),
            ..Default::default()
        };
        self.stage(&stage, cap).await?;
        for (target, read_only) in binds {
            self.bind(&staging, &target, read_only).await?;
        }
        Ok(())
    }
}
