//! NodePublishVolume's work: a bind mount of the staged volume at the pod's target path.

use std::path::PathBuf;

use super::NodeService;
use crate::error::NodeError;
use rwxnfs_proto::csi::{
    NodePublishVolumeRequest, VolumeCapability, volume_capability::access_mode::Mode,
};

/// Whether the capability's access mode is one of `modes`.
fn mode_is(cap: &VolumeCapability, modes: &[Mode]) -> bool {
    cap.access_mode
        .as_ref()
        .and_then(|m| Mode::try_from(m.mode).ok())
        .is_some_and(|mode| modes.contains(&mode))
}

impl NodeService {
    pub(super) async fn publish(
        &self,
        req: &NodePublishVolumeRequest,
        cap: &VolumeCapability,
    ) -> Result<(), NodeError> {
        let staging = PathBuf::from(&req.staging_target_path);
        let target = PathBuf::from(&req.target_path);
        if self.mounted_at(&staging).await?.is_some() {
            self.restage_if_stale(req, cap).await?;
        }
        let mounts = self.mounts().await?;
        let staged = mounts
            .iter()
            .rev()
            .find(|m| m.mount_point == staging)
            .cloned()
            .ok_or_else(|| NodeError::NotStaged {
                volume_id: req.volume_id.clone(),
                staging: staging.clone(),
            })?;
        let read_only = req.readonly
            || mode_is(
                cap,
                &[Mode::SingleNodeReaderOnly, Mode::MultiNodeReaderOnly],
            );
        if let Some(existing) = mounts.iter().rev().find(|m| m.mount_point == target) {
            if existing.source == staged.source && existing.read_only() == read_only {
                return Ok(());
            }
            return Err(NodeError::TargetTaken {
                volume_id: req.volume_id.clone(),
                target,
                mounted: existing.source.clone(),
                read_only: existing.read_only(),
            });
        }
        if mode_is(cap, &[Mode::SingleNodeSingleWriter])
            && let Some(other) = mounts.iter().find(|m| {
                m.source == staged.source && m.mount_point != staging && m.mount_point != target
            })
        {
            return Err(NodeError::SingleWriter {
                volume_id: req.volume_id.clone(),
                other: other.mount_point.clone(),
            });
        }
        self.mkdir(&target).await?;
        self.bind(&staging, &target, read_only).await?;
        tracing::info!(volume_id = %req.volume_id, target = %target.display(), read_only, "published");
        Ok(())
    }
}
