//! Objects a spec creates, remembered so the runner removes them after the spec, whatever its
//! outcome: published volumes are unpublished, snapshots and volumes deleted (in that order).

use std::{
    collections::HashMap,
    sync::{
        Mutex,
        atomic::{AtomicU32, Ordering},
    },
};

use rwxnfs_proto::csi::{
    self, CapacityRange, ControllerPublishVolumeRequest, ControllerUnpublishVolumeRequest,
    CreateSnapshotRequest, CreateVolumeRequest, DeleteSnapshotRequest, DeleteVolumeRequest,
    NodeGetInfoRequest, NodePublishVolumeRequest, NodeStageVolumeRequest,
    NodeUnpublishVolumeRequest, NodeUnstageVolumeRequest, VolumeCapability, volume_capability,
    volume_capability::access_mode::Mode,
};
use tonic::Status;

use crate::context::Ctx;

#[derive(Debug, Clone)]
enum Created {
    Volume(String),
    Snapshot(String),
    Published { volume: String, node: String },
    Staged { volume: String, path: String },
    NodePublished { volume: String, target: String },
}

#[derive(Default)]
pub struct Resources(Mutex<Vec<Created>>);

impl Resources {
    fn push(&self, c: Created) {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).push(c);
    }

    fn take(&self) -> Vec<Created> {
        std::mem::take(&mut *self.0.lock().unwrap_or_else(|e| e.into_inner()))
    }
}

static COUNTER: AtomicU32 = AtomicU32::new(0);

/// A name no other spec or run uses: `sanity-<pid>-<n>-<label>`.
pub fn unique(label: &str) -> String {
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    format!("sanity-{}-{n}-{label}", std::process::id())
}

/// A mount capability with `mode`.
pub fn mount_capability(mode: Mode) -> VolumeCapability {
    VolumeCapability {
        access_type: Some(volume_capability::AccessType::Mount(
            volume_capability::MountVolume::default(),
        )),
        access_mode: Some(volume_capability::AccessMode { mode: mode as i32 }),
    }
}

/// The capability most specs use.
pub fn writer() -> VolumeCapability {
    mount_capability(Mode::SingleNodeWriter)
}

impl Ctx {
    /// A CreateVolume request with the run's parameters.
    pub fn volume_request(&self, name: &str, size: Option<i64>) -> CreateVolumeRequest {
        CreateVolumeRequest {
            name: name.to_owned(),
            capacity_range: size.map(|s| CapacityRange {
                required_bytes: s,
                limit_bytes: 0,
            }),
            volume_capabilities: vec![writer()],
            parameters: self
                .config
                .parameters
                .clone()
                .into_iter()
                .collect::<HashMap<_, _>>(),
            ..Default::default()
        }
    }

    /// Creates a volume and remembers it for clean-up.
    pub async fn create_volume(&self, req: CreateVolumeRequest) -> Result<csi::Volume, Status> {
        let volume = self
            .controller()
            .create_volume(req)
            .await?
            .into_inner()
            .volume
            .ok_or_else(|| Status::internal("CreateVolume returned no volume"))?;
        self.resources
            .push(Created::Volume(volume.volume_id.clone()));
        Ok(volume)
    }

    pub async fn create_snapshot(&self, name: &str, source: &str) -> Result<csi::Snapshot, Status> {
        let snapshot = self
            .controller()
            .create_snapshot(CreateSnapshotRequest {
                name: name.to_owned(),
                source_volume_id: source.to_owned(),
                ..Default::default()
            })
            .await?
            .into_inner()
            .snapshot
            .ok_or_else(|| Status::internal("CreateSnapshot returned no snapshot"))?;
        self.resources
            .push(Created::Snapshot(snapshot.snapshot_id.clone()));
        Ok(snapshot)
    }

    pub async fn publish(&self, volume: &str, node: &str, readonly: bool) -> Result<(), Status> {
        self.controller()
            .controller_publish_volume(ControllerPublishVolumeRequest {
                volume_id: volume.to_owned(),
                node_id: node.to_owned(),
                volume_capability: Some(writer()),
                readonly,
                ..Default::default()
            })
            .await?;
        self.resources.push(Created::Published {
            volume: volume.to_owned(),
            node: node.to_owned(),
        });
        Ok(())
    }

    /// A fresh path under the staging (or target) directory; the parent is created, the path
    /// itself is not (the plugin creates what it mounts on).
    pub fn fresh_path(&self, staging: bool, label: &str) -> String {
        let base = if staging {
            &self.config.staging_dir
        } else {
            &self.config.target_dir
        };
        if self.config.local_node {
            let _ = std::fs::create_dir_all(base);
        }
        base.join(unique(label)).display().to_string()
    }

    /// Stages a volume on the node and remembers it.
    pub async fn stage(
        &self,
        volume: &csi::Volume,
        path: &str,
        cap: VolumeCapability,
    ) -> Result<(), Status> {
        self.node()
            .node_stage_volume(NodeStageVolumeRequest {
                volume_id: volume.volume_id.clone(),
                staging_target_path: path.to_owned(),
                volume_capability: Some(cap),
                volume_context: volume.volume_context.clone(),
                ..Default::default()
            })
            .await?;
        self.resources.push(Created::Staged {
            volume: volume.volume_id.clone(),
            path: path.to_owned(),
        });
        Ok(())
    }

    /// Publishes a staged volume at `target` and remembers it.
    pub async fn node_publish(
        &self,
        volume: &csi::Volume,
        staging: &str,
        target: &str,
        cap: VolumeCapability,
        readonly: bool,
    ) -> Result<(), Status> {
        self.node()
            .node_publish_volume(NodePublishVolumeRequest {
                volume_id: volume.volume_id.clone(),
                staging_target_path: staging.to_owned(),
                target_path: target.to_owned(),
                volume_capability: Some(cap),
                readonly,
                volume_context: volume.volume_context.clone(),
                ..Default::default()
            })
            .await?;
        self.resources.push(Created::NodePublished {
            volume: volume.volume_id.clone(),
            target: target.to_owned(),
        });
        Ok(())
    }

    /// The node id the node plugin reports.
    pub async fn node_id(&self) -> Result<String, Status> {
        Ok(self
            .node()
            .node_get_info(NodeGetInfoRequest {})
            .await?
            .into_inner()
            .node_id)
    }

    /// Removes everything the last spec created. Errors are reported, not fatal.
    pub async fn clean_up(&self) -> Vec<String> {
        let mut problems = Vec::new();
        let mut created = self.resources.take();
        // Unpublish before deleting snapshots before deleting volumes.
        created.sort_by_key(|c| match c {
            Created::NodePublished { .. } => 0,
            Created::Staged { .. } => 1,
            Created::Published { .. } => 2,
            Created::Snapshot(_) => 3,
            Created::Volume(_) => 4,
        });
        for c in created {
            let result = match &c {
                Created::NodePublished { volume, target } => self
                    .node()
                    .node_unpublish_volume(NodeUnpublishVolumeRequest {
                        volume_id: volume.clone(),
                        target_path: target.clone(),
                    })
                    .await
                    .map(|_| ()),
                Created::Staged { volume, path } => self
                    .node()
                    .node_unstage_volume(NodeUnstageVolumeRequest {
                        volume_id: volume.clone(),
                        staging_target_path: path.clone(),
                    })
                    .await
                    .map(|_| ()),
                Created::Published { volume, node } => self
                    .controller()
                    .controller_unpublish_volume(ControllerUnpublishVolumeRequest {
                        volume_id: volume.clone(),
                        node_id: node.clone(),
                        ..Default::default()
                    })
                    .await
                    .map(|_| ()),
                Created::Snapshot(id) => self
                    .controller()
                    .delete_snapshot(DeleteSnapshotRequest {
                        snapshot_id: id.clone(),
                        ..Default::default()
                    })
                    .await
                    .map(|_| ()),
                Created::Volume(id) => self
                    .controller()
                    .delete_volume(DeleteVolumeRequest {
                        volume_id: id.clone(),
                        ..Default::default()
                    })
                    .await
                    .map(|_| ()),
            };
            if let Err(s) = result {
                problems.push(format!(
                    "clean-up of {c:?} failed: {:?} {}",
                    s.code(),
                    s.message()
                ));
            }
        }
        problems
    }
}
