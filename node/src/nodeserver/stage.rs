//! NodeStageVolume's work: the one NFS mount of a volume on this node, at the staging path.

use std::{path::PathBuf, time::Instant};

use super::{NodeService, resolve::resolve};
use crate::error::NodeError;
use nix::mount::MsFlags;
use rwxnfs_model::{MountOptions, NfsVersion};
use rwxnfs_proto::csi::{NodeStageVolumeRequest, VolumeCapability, volume_capability};

fn mount_flags(cap: &VolumeCapability) -> Vec<String> {
    match &cap.access_type {
        Some(volume_capability::AccessType::Mount(m)) => m.mount_flags.clone(),
        _ => Vec::new(),
    }
}

fn vfs_flags(options: &MountOptions) -> MsFlags {
    let mut flags = MsFlags::empty();
    for f in options.vfs_flags() {
        flags |= match f {
            "ro" => MsFlags::MS_RDONLY,
            "noatime" => MsFlags::MS_NOATIME,
            "nodiratime" => MsFlags::MS_NODIRATIME,
            "relatime" => MsFlags::MS_RELATIME,
            "strictatime" => MsFlags::MS_STRICTATIME,
            "noexec" => MsFlags::MS_NOEXEC,
            "nosuid" => MsFlags::MS_NOSUID,
            "nodev" => MsFlags::MS_NODEV,
            _ => MsFlags::empty(),
        };
    }
    flags
}

/// What a stage request asks to mount: the server, the export path on it, the options.
struct Wanted<'a> {
    server: &'a str,
    share: &'a str,
    options: MountOptions,
}

/// Reads the volume context and the capability's mount flags into what to mount.
fn wanted<'a>(
    req: &'a NodeStageVolumeRequest,
    cap: &VolumeCapability,
) -> Result<Wanted<'a>, NodeError> {
    let ctx = &req.volume_context;
    let server = ctx
        .get("server")
        .filter(|s| !s.is_empty())
        .ok_or(NodeError::NoServer)?;
    let share = ctx
        .get("share")
        .filter(|s| s.starts_with('/'))
        .ok_or(NodeError::NoShare)?;
    let version = match ctx.get("nfsVersion") {
        Some(v) => v.parse::<NfsVersion>()?,
        None => NfsVersion::default(),
    };
    let user: Vec<String> = mount_flags(cap)
        .into_iter()
        .chain(ctx.get("mountOptions").cloned())
        .collect();
    let options = MountOptions::merge(version, user.iter().map(String::as_str))?;
    Ok(Wanted {
        server,
        share,
        options,
    })
}

impl NodeService {
    pub(super) async fn stage(
        &self,
        req: &NodeStageVolumeRequest,
        cap: &VolumeCapability,
    ) -> Result<(), NodeError> {
        let Wanted {
            server,
            share,
            options,
        } = wanted(req, cap)?;
        let addr = resolve(server).await?;
        let host = if addr.is_ipv6() {
            format!("[{addr}]")
        } else {
            addr.to_string()
        };
        let source = format!("{host}:{share}");
        let staging = PathBuf::from(&req.staging_target_path);

        if let Some(existing) = self.mounted_at(&staging).await? {
            if existing.fs_type.starts_with("nfs") && existing.source == source {
                return Ok(());
            }
            return Err(NodeError::StagingTaken {
                staging,
                fs_type: existing.fs_type,
                mounted: existing.source,
                wanted: source,
            });
        }
        self.mkdir(&staging).await?;
        let fs_type = if options.is_v3() { "nfs" } else { "nfs4" };
        let data = options.data(addr);
        let (mounter, target, src, flags) = (
            self.mounter.clone(),
            staging.clone(),
            source.clone(),
            vfs_flags(&options),
        );
        let started = Instant::now();
        self.bounded
            .run("NFS mount", &staging, move || {
                mounter.mount_nfs(&src, &target, fs_type, flags, &data)
            })
            .await?;
        tracing::info!(volume_id = %req.volume_id, %source, staging = %staging.display(), ms = started.elapsed().as_millis() as u64, "staged");
        Ok(())
    }
}
