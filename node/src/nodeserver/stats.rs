//! NodeGetVolumeStats: usage from statvfs, and the volume's condition when it fails.

use std::path::PathBuf;

use super::NodeService;
use crate::{error::NodeError, mounter::FsStats};
use rwxnfs_model::VolumeId;
use rwxnfs_proto::csi::{
    NodeGetVolumeStatsRequest, NodeGetVolumeStatsResponse, VolumeCondition, VolumeUsage,
    volume_usage,
};

impl NodeService {
    pub(super) async fn stats(
        &self,
        req: &NodeGetVolumeStatsRequest,
    ) -> Result<NodeGetVolumeStatsResponse, NodeError> {
        let path = PathBuf::from(&req.volume_path);
        let mount = self
            .mounted_at(&path)
            .await?
            .ok_or_else(|| NodeError::NotMounted {
                volume_id: req.volume_id.clone(),
                path: path.clone(),
            })?;
        // An rwxnfs export's path ends in the export's name (`/<name>` on NFS-Ganesha,
        // `<root>/volumes/<name>` on kernel nfsd): a mount of anything else is not this volume.
        if let Ok(id) = req.volume_id.parse::<VolumeId>()
            && !export_name_is(&mount.source, id.name.as_ref())
        {
            return Err(NodeError::OtherMount {
                volume_id: req.volume_id.clone(),
                path,
                mounted: mount.source,
            });
        }
        let condition = match self.stat_fs(&path).await {
            Ok(st) => {
                return Ok(NodeGetVolumeStatsResponse {
                    usage: usage(&st),
                    volume_condition: Some(VolumeCondition {
                        abnormal: false,
                        message: String::new(),
                    }),
                });
            }
            Err(e) => VolumeCondition {
                abnormal: true,
                message: format!(
                    "{e}; the mount will be re-staged when the volume is published again"
                ),
            },
        };
        tracing::warn!(volume_id = %req.volume_id, path = %path.display(), message = %condition.message, "volume abnormal");
        Ok(NodeGetVolumeStatsResponse {
            usage: Vec::new(),
            volume_condition: Some(condition),
        })
    }
}

/// Bytes and inodes, as statvfs counts them.
fn usage(st: &FsStats) -> Vec<VolumeUsage> {
    let frag = st.fragment_size as i64;
    vec![
        VolumeUsage {
            available: st.blocks_available as i64 * frag,
            total: st.blocks as i64 * frag,
            used: (st.blocks as i64 - st.blocks_free as i64) * frag,
            unit: volume_usage::Unit::Bytes as i32,
        },
        VolumeUsage {
            available: st.files_available as i64,
            total: st.files as i64,
            used: st.files as i64 - st.files_free as i64,
            unit: volume_usage::Unit::Inodes as i32,
        },
    ]
}

/// Whether an NFS mount source (`server:/path`) names the export `name`: its path's last
/// component.
pub(super) fn export_name_is(source: &str, name: &str) -> bool {
    source
        .split_once(":/")
        .is_some_and(|(_, path)| path.rsplit('/').next() == Some(name))
}
