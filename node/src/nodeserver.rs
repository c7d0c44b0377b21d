//! The CSI Node service: one NFS mount per volume per node at the staging path, bind mounts
//! into pods, unmounts that never hang, and volume health.
//!
//! Static PVs (volumeAttributes `server`, `share`, optional `nfsVersion` and `mountOptions`)
//! go through the same stage-then-publish path: the kubelet stages every volume of a driver
//! that advertises STAGE_UNSTAGE_VOLUME, so a static PV needs nothing special.
//!
//! Permissions: the CSIDriver uses `fsGroupPolicy: File`, so the kubelet applies a pod's
//! `fsGroup` by changing group ownership and permissions of the files after NodePublishVolume.
//! That only works where the server lets the node's root change ownership: with the
//! StorageClass's `squash: root` (the default) root is mapped to the anonymous user, so set the
//! volume root's `uid`/`gid`/`mode` parameters to what the pods run as (e.g. `gid` = the pods'
//! fsGroup and `mode: "2775"`), or use `squash: none` to let fsGroup do the work.

use std::{
    net::IpAddr,
    path::{Path, PathBuf},
    sync::Arc,
    time::{Duration, Instant},
};

use nix::mount::{MntFlags, MsFlags};
use rwxnfs_model::{MountOptions, NfsVersion, VolumeId};
use rwxnfs_proto::csi::{
    NodeExpandVolumeRequest, NodeExpandVolumeResponse, NodeGetCapabilitiesRequest,
    NodeGetCapabilitiesResponse, NodeGetInfoRequest, NodeGetInfoResponse,
    NodeGetVolumeStatsRequest, NodeGetVolumeStatsResponse, NodePublishVolumeRequest,
    NodePublishVolumeResponse, NodeServiceCapability, NodeStageVolumeRequest,
    NodeStageVolumeResponse, NodeUnpublishVolumeRequest, NodeUnpublishVolumeResponse,
    NodeUnstageVolumeRequest, NodeUnstageVolumeResponse, VolumeCapability, VolumeCondition,
    VolumeUsage,
    node_server::{Node, NodeServer},
    node_service_capability::{self, rpc::Type as Rpc},
    volume_capability::{self, access_mode::Mode},
    volume_usage,
};
use rwxnfs_server::logging::finish_rpc;
use tonic::{Request, Response, Status};

use crate::{
    bounded::{Bounded, BoundedError},
    mounter::{MountEntry, Mounter, SystemMounter},
};

#[derive(Clone, Debug)]
pub struct NodeConfig {
    /// The Kubernetes node name; reported by NodeGetInfo and used by the controller to find
    /// the node's addresses.
    pub node_id: String,
}

/// Bound of one blocking step (a mount, an unmount attempt, a statvfs).
pub const STEP_LIMIT: Duration = Duration::from_secs(10);

pub struct NodeService {
    config: NodeConfig,
    mounter: Arc<dyn Mounter>,
    bounded: Bounded,
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

type Rpc_<T> = Result<Response<T>, Status>;

fn missing(what: &str) -> Status {
    Status::invalid_argument(format!("{what} missing in request"))
}

fn bounded_status(e: BoundedError) -> Status {
    match &e {
        BoundedError::TimedOut { .. } => Status::deadline_exceeded(e.to_string()),
        BoundedError::Busy { .. } => Status::aborted(e.to_string()),
        BoundedError::Io { source, .. } => match source.raw_os_error() {
            Some(libc::EACCES | libc::EPERM) => Status::permission_denied(format!(
                "{e} (the NFS server refused this node: is the volume published to it?)"
            )),
            Some(libc::ENOENT) => Status::not_found(e.to_string()),
            Some(libc::ENODEV) => {
                Status::failed_precondition(format!("{e} (this kernel has no NFS client)"))
            }
            _ => Status::internal(e.to_string()),
        },
    }
}

/// Checks a capability: present, and mount (not block).
fn check_capability(cap: Option<&VolumeCapability>) -> Result<&VolumeCapability, Status> {
    let cap = cap.ok_or_else(|| missing("Volume capability"))?;
    match &cap.access_type {
        Some(volume_capability::AccessType::Mount(_)) => Ok(cap),
        Some(volume_capability::AccessType::Block(_)) => Err(Status::invalid_argument(
            "block access is not supported: rwxnfs volumes are NFS filesystems",
        )),
        None => Err(Status::invalid_argument(
            "the volume capability has no access type",
        )),
    }
}

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

impl NodeService {
    pub fn new(config: NodeConfig) -> Self {
        Self::with_mounter(config, Arc::new(SystemMounter), Bounded::new(STEP_LIMIT))
    }

    pub fn with_mounter(config: NodeConfig, mounter: Arc<dyn Mounter>, bounded: Bounded) -> Self {
        Self {
            config,
            mounter,
            bounded,
        }
    }

    pub fn into_server(self) -> NodeServer<Self> {
        NodeServer::new(self)
    }

    /// The mount table, read under the time bound (reading it does not touch NFS, but be safe).
    async fn mounts(&self) -> Result<Vec<MountEntry>, Status> {
        let mounter = self.mounter.clone();
        self.bounded
            .run(
                "reading the mount table",
                Path::new("/proc/self/mountinfo"),
                move || mounter.mounts(),
            )
            .await
            .map_err(bounded_status)
    }

    async fn mounted_at(&self, path: &Path) -> Result<Option<MountEntry>, Status> {
        Ok(self
            .mounts()
            .await?
            .into_iter()
            .rev()
            .find(|m| m.mount_point == path))
    }

    async fn mkdir(&self, path: &Path) -> Result<(), Status> {
        let p = path.to_owned();
        self.bounded
            .run("mkdir", path, move || std::fs::create_dir_all(&p))
            .await
            .map_err(bounded_status)
    }

    /// Removes an (unmounted) directory; already gone is fine.
    async fn rmdir(&self, path: &Path) -> Result<(), Status> {
        let p = path.to_owned();
        let result = self
            .bounded
            .run("rmdir", path, move || match std::fs::remove_dir(&p) {
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
                other => other,
            })
            .await;
        result.map_err(bounded_status)
    }

    /// Unmounts everything at `path`: plainly, then forced, then lazily, each bounded.
    async fn unmount_all(&self, path: &Path) -> Result<(), Status> {
        for _ in 0..8 {
            if self.mounted_at(path).await?.is_none() {
                return Ok(());
            }
            let mut last = None;
            for flags in [MntFlags::empty(), MntFlags::MNT_FORCE, MntFlags::MNT_DETACH] {
                let (mounter, p) = (self.mounter.clone(), path.to_owned());
                match self
                    .bounded
                    .run("unmount", path, move || mounter.unmount(&p, flags))
                    .await
                {
                    Ok(()) => {
                        last = None;
                        break;
                    }
                    Err(e) => {
                        tracing::warn!(path = %path.display(), ?flags, error = %e, "unmount failed; trying harder");
                        last = Some(e);
                    }
                }
            }
            if let Some(e) = last {
                return Err(bounded_status(e));
            }
        }
        Err(Status::internal(format!(
            "{} is still mounted after repeated unmounts",
            path.display()
        )))
    }

    async fn stage(
        &self,
        req: &NodeStageVolumeRequest,
        cap: &VolumeCapability,
    ) -> Result<(), Status> {
        let ctx = &req.volume_context;
        let server = ctx.get("server").filter(|s| !s.is_empty()).ok_or_else(|| {
            Status::invalid_argument("volume context has no `server`: is this an rwxnfs volume? (static PVs set volumeAttributes server and share)")
        })?;
        let share = ctx
            .get("share")
            .filter(|s| s.starts_with('/'))
            .ok_or_else(|| {
                Status::invalid_argument(
                    "volume context has no absolute `share` (the export path, e.g. /pvc-123)",
                )
            })?;
        let version = match ctx.get("nfsVersion") {
            Some(v) => v
                .parse::<NfsVersion>()
                .map_err(|e| Status::invalid_argument(e.to_string()))?,
            None => NfsVersion::default(),
        };
        let user: Vec<String> = mount_flags(cap)
            .into_iter()
            .chain(ctx.get("mountOptions").cloned())
            .collect();
        let options = MountOptions::merge(version, user.iter().map(String::as_str))
            .map_err(|e| Status::invalid_argument(e.to_string()))?;
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
            return Err(Status::already_exists(format!(
                "{} already has {} from {} mounted; not mounting {source} over it",
                staging.display(),
                existing.fs_type,
                existing.source
            )));
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
            .await
            .map_err(bounded_status)?;
        tracing::info!(volume_id = %req.volume_id, %source, staging = %staging.display(), ms = started.elapsed().as_millis() as u64, "staged");
        Ok(())
    }

    async fn stat_fs(&self, path: &Path) -> Result<crate::mounter::FsStats, BoundedError> {
        let (mounter, p) = (self.mounter.clone(), path.to_owned());
        self.bounded
            .run("statvfs", path, move || mounter.stat_fs(&p))
            .await
    }

    /// A staged mount whose server came back with another fsid, or after a failover that did
    /// not keep the handles, answers ESTALE (or EIO) for good: unmount it and every bind of it,
    /// stage again from the request's volume context, and bind the targets again.
    async fn restage_if_stale(
        &self,
        req: &NodePublishVolumeRequest,
        cap: &VolumeCapability,
    ) -> Result<(), Status> {
        let staging = PathBuf::from(&req.staging_target_path);
        let Err(e) = self.stat_fs(&staging).await else {
            return Ok(());
        };
        let stale = matches!(e.raw_os_error(), Some(libc::ESTALE | libc::EIO))
            || matches!(e, BoundedError::TimedOut { .. });
        if !stale {
            return Ok(());
        }
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

    async fn bind(&self, staging: &Path, target: &Path, read_only: bool) -> Result<(), Status> {
        let (mounter, from, to) = (self.mounter.clone(), staging.to_owned(), target.to_owned());
        self.bounded
            .run("bind mount", target, move || mounter.bind(&from, &to))
            .await
            .map_err(bounded_status)?;
        if read_only {
            let (mounter, to) = (self.mounter.clone(), target.to_owned());
            self.bounded
                .run("read-only remount", target, move || {
                    mounter.remount_read_only(&to)
                })
                .await
                .map_err(bounded_status)?;
        }
        Ok(())
    }

    async fn publish(
        &self,
        req: &NodePublishVolumeRequest,
        cap: &VolumeCapability,
    ) -> Result<(), Status> {
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
            .ok_or_else(|| {
                Status::failed_precondition(format!(
                    "volume {} is not staged at {}",
                    req.volume_id,
                    staging.display()
                ))
            })?;
        let read_only = req.readonly
            || matches!(
                cap.access_mode.as_ref().map(|m| Mode::try_from(m.mode)),
                Some(Ok(Mode::SingleNodeReaderOnly | Mode::MultiNodeReaderOnly))
            );
        if let Some(existing) = mounts.iter().rev().find(|m| m.mount_point == target) {
            if existing.source == staged.source && existing.read_only() == read_only {
                return Ok(());
            }
            return Err(Status::already_exists(format!(
                "{} is already mounted from {} ({}); not publishing {} there",
                target.display(),
                existing.source,
                if existing.read_only() {
                    "read-only"
                } else {
                    "read-write"
                },
                req.volume_id
            )));
        }
        let single_writer = matches!(
            cap.access_mode.as_ref().map(|m| Mode::try_from(m.mode)),
            Some(Ok(Mode::SingleNodeSingleWriter))
        );
        if single_writer
            && let Some(other) = mounts.iter().find(|m| {
                m.source == staged.source && m.mount_point != staging && m.mount_point != target
            })
        {
            return Err(Status::failed_precondition(format!(
                "volume {} is SINGLE_NODE_SINGLE_WRITER and already published at {}",
                req.volume_id,
                other.mount_point.display()
            )));
        }
        self.mkdir(&target).await?;
        self.bind(&staging, &target, read_only).await?;
        tracing::info!(volume_id = %req.volume_id, target = %target.display(), read_only, "published");
        Ok(())
    }

    async fn stats(
        &self,
        req: &NodeGetVolumeStatsRequest,
    ) -> Result<NodeGetVolumeStatsResponse, Status> {
        let path = PathBuf::from(&req.volume_path);
        let mount = self.mounted_at(&path).await?.ok_or_else(|| {
            Status::not_found(format!(
                "{} is not a mount of volume {}",
                path.display(),
                req.volume_id
            ))
        })?;
        // An rwxnfs export's path ends in the export's name (`/<name>` on NFS-Ganesha,
        // `<root>/volumes/<name>` on kernel nfsd): a mount of anything else is not this volume.
        if let Ok(id) = req.volume_id.parse::<VolumeId>()
            && !export_name_is(&mount.source, id.name.as_ref())
        {
            return Err(Status::not_found(format!(
                "{} is a mount of {}, not of volume {}",
                path.display(),
                mount.source,
                req.volume_id
            )));
        }
        let condition = match self.stat_fs(&path).await {
            Ok(st) => {
                let frag = st.fragment_size as i64;
                let usage = vec![
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
                ];
                return Ok(NodeGetVolumeStatsResponse {
                    usage,
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

/// The mount system call takes an address: names are resolved here, bounded in time.
async fn resolve(server: &str) -> Result<IpAddr, Status> {
    if let Ok(addr) = server.trim_matches(['[', ']']).parse::<IpAddr>() {
        return Ok(addr);
    }
    let lookup = tokio::net::lookup_host((server, 2049));
    match tokio::time::timeout(STEP_LIMIT, lookup).await {
        Ok(Ok(mut addrs)) => addrs
            .next()
            .map(|a| a.ip())
            .ok_or_else(|| Status::unavailable(format!("NFS server {server:?} has no address"))),
        Ok(Err(e)) => Err(Status::unavailable(format!(
            "cannot resolve NFS server {server:?}: {e}"
        ))),
        Err(_) => Err(Status::unavailable(format!(
            "resolving NFS server {server:?} timed out"
        ))),
    }
}

#[tonic::async_trait]
impl Node for NodeService {
    /// This operation MUST be idempotent: staging a volume already staged at the same path
    /// with the same source succeeds.
    async fn node_stage_volume(
        &self,
        request: Request<NodeStageVolumeRequest>,
    ) -> Rpc_<NodeStageVolumeResponse> {
        let started = Instant::now();
        let req = request.into_inner();
        let result = async {
            if req.volume_id.is_empty() {
                return Err(missing("Volume ID"));
            }
            if req.staging_target_path.is_empty() {
                return Err(missing("Staging target path"));
            }
            let cap = check_capability(req.volume_capability.as_ref())?;
            self.stage(&req, cap).await?;
            Ok(NodeStageVolumeResponse {})
        }
        .await;
        finish_rpc("NodeStageVolume", started, &req.volume_id, result).map(Response::new)
    }

    async fn node_unstage_volume(
        &self,
        request: Request<NodeUnstageVolumeRequest>,
    ) -> Rpc_<NodeUnstageVolumeResponse> {
        let started = Instant::now();
        let req = request.into_inner();
        let result = async {
            if req.volume_id.is_empty() {
                return Err(missing("Volume ID"));
            }
            if req.staging_target_path.is_empty() {
                return Err(missing("Staging target path"));
            }
            let staging = PathBuf::from(&req.staging_target_path);
            self.unmount_all(&staging).await?;
            self.rmdir(&staging).await?;
            Ok(NodeUnstageVolumeResponse {})
        }
        .await;
        finish_rpc("NodeUnstageVolume", started, &req.volume_id, result).map(Response::new)
    }

    async fn node_publish_volume(
        &self,
        request: Request<NodePublishVolumeRequest>,
    ) -> Rpc_<NodePublishVolumeResponse> {
        let started = Instant::now();
        let req = request.into_inner();
        let result = async {
            if req.volume_id.is_empty() {
                return Err(missing("Volume ID"));
            }
            if req.target_path.is_empty() {
                return Err(missing("Target path"));
            }
            let cap = check_capability(req.volume_capability.as_ref())?;
            if req.staging_target_path.is_empty() {
                return Err(missing("Staging target path"));
            }
            self.publish(&req, cap).await?;
            Ok(NodePublishVolumeResponse {})
        }
        .await;
        finish_rpc("NodePublishVolume", started, &req.volume_id, result).map(Response::new)
    }

    /// Unmounts the target (forced and lazily when the server is gone) and removes it.
    async fn node_unpublish_volume(
        &self,
        request: Request<NodeUnpublishVolumeRequest>,
    ) -> Rpc_<NodeUnpublishVolumeResponse> {
        let started = Instant::now();
        let req = request.into_inner();
        let result = async {
            if req.volume_id.is_empty() {
                return Err(missing("Volume ID"));
            }
            if req.target_path.is_empty() {
                return Err(missing("Target path"));
            }
            let target = PathBuf::from(&req.target_path);
            self.unmount_all(&target).await?;
            self.rmdir(&target).await?;
            Ok(NodeUnpublishVolumeResponse {})
        }
        .await;
        finish_rpc("NodeUnpublishVolume", started, &req.volume_id, result).map(Response::new)
    }

    async fn node_get_volume_stats(
        &self,
        request: Request<NodeGetVolumeStatsRequest>,
    ) -> Rpc_<NodeGetVolumeStatsResponse> {
        let started = Instant::now();
        let req = request.into_inner();
        let result = async {
            if req.volume_id.is_empty() {
                return Err(missing("Volume ID"));
            }
            if req.volume_path.is_empty() {
                return Err(missing("Volume path"));
            }
            self.stats(&req).await
        }
        .await;
        finish_rpc("NodeGetVolumeStats", started, &req.volume_id, result).map(Response::new)
    }

    /// Not advertised: NFS volumes grow on the server, with no node-side step.
    async fn node_expand_volume(
        &self,
        request: Request<NodeExpandVolumeRequest>,
    ) -> Rpc_<NodeExpandVolumeResponse> {
        let started = Instant::now();
        let id = request.into_inner().volume_id;
        finish_rpc(
            "NodeExpandVolume",
            started,
            &id,
            Err(Status::unimplemented(
                "NodeExpandVolume is not supported: NFS volumes are expanded on the server and need no node-side step",
            )),
        )
    }

    async fn node_get_capabilities(
        &self,
        _request: Request<NodeGetCapabilitiesRequest>,
    ) -> Rpc_<NodeGetCapabilitiesResponse> {
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
    ) -> Rpc_<NodeGetInfoResponse> {
        tracing::debug!("NodeGetInfo");
        Ok(Response::new(NodeGetInfoResponse {
            node_id: self.config.node_id.clone(),
            max_volumes_per_node: 0,
            accessible_topology: None,
        }))
    }
}

/// Whether an NFS mount source (`server:/path`) names the export `name`: its path's last
/// component.
fn export_name_is(source: &str, name: &str) -> bool {
    source
        .split_once(":/")
        .is_some_and(|(_, path)| path.rsplit('/').next() == Some(name))
}

#[cfg(test)]
mod tests;
