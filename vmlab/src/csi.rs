//! A CSI client for one controller and one node plugin reached through forwarded ports, with
//! the volume lifecycle steps the VM scenarios and the walkthrough repeat. Every call returns
//! the plugin's status, so a caller can report it or insist on success.

use std::{
    collections::HashMap,
    time::{Duration, Instant},
};

use rwxnfs_proto::csi::{
    self, controller_client::ControllerClient, identity_client::IdentityClient,
    node_client::NodeClient,
};
use rwxnfs_server::Endpoint;
use tonic::{Status, transport::Channel};

pub const MIB: i64 = 1 << 20;

/// Connects to a forwarded CSI endpoint once its Probe says ready.
pub async fn ready(port: u16, limit: Duration) -> Result<Channel, Status> {
    let endpoint = Endpoint::Tcp(format!("127.0.0.1:{port}"));
    let start = Instant::now();
    loop {
        if let Ok(channel) = endpoint.connect().await {
            let probe = IdentityClient::new(channel.clone())
                .probe(csi::ProbeRequest {})
                .await;
            if probe.is_ok_and(|r| r.into_inner().ready == Some(true)) {
                return Ok(channel);
            }
        }
        if start.elapsed() > limit {
            return Err(Status::unavailable(format!(
                "{endpoint} not ready within {limit:?}"
            )));
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

pub fn mount_capability(read_only: bool) -> csi::VolumeCapability {
    use csi::volume_capability::{AccessMode, AccessType, MountVolume, access_mode::Mode};
    let mode = if read_only {
        Mode::MultiNodeReaderOnly
    } else {
        Mode::MultiNodeMultiWriter
    };
    csi::VolumeCapability {
        access_mode: Some(AccessMode { mode: mode as i32 }),
        access_type: Some(AccessType::Mount(MountVolume::default())),
    }
}

/// A volume staged on a node at `staging` and published there at `target`.
pub struct Mounted {
    pub id: String,
    pub context: HashMap<String, String>,
    pub staging: String,
    pub target: String,
}

/// The controller and the node plugin of one node, and that node's id.
#[derive(Clone)]
pub struct Csi {
    pub controller: ControllerClient<Channel>,
    pub node: NodeClient<Channel>,
    pub identity: IdentityClient<Channel>,
    pub node_id: String,
}

impl Csi {
    pub async fn connect(
        controller_port: u16,
        node_port: u16,
        node_id: &str,
    ) -> Result<Csi, Status> {
        let limit = Duration::from_secs(90);
        let controller = ControllerClient::new(ready(controller_port, limit).await?);
        let node_channel = ready(node_port, limit).await?;
        Ok(Csi {
            controller,
            node: NodeClient::new(node_channel.clone()),
            identity: IdentityClient::new(node_channel),
            node_id: node_id.into(),
        })
    }

    /// The same controller with another node.
    pub async fn with_node(&self, node_port: u16, node_id: &str) -> Result<Csi, Status> {
        let node_channel = ready(node_port, Duration::from_secs(90)).await?;
        Ok(Csi {
            controller: self.controller.clone(),
            node: NodeClient::new(node_channel.clone()),
            identity: IdentityClient::new(node_channel),
            node_id: node_id.into(),
        })
    }

    pub async fn create(
        &mut self,
        name: &str,
        params: &[(&str, &str)],
        size: i64,
    ) -> Result<csi::Volume, Status> {
        let response = self
            .controller
            .create_volume(csi::CreateVolumeRequest {
                name: name.into(),
                capacity_range: Some(csi::CapacityRange {
                    required_bytes: size,
                    limit_bytes: 0,
                }),
                volume_capabilities: vec![mount_capability(false)],
                parameters: params
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect(),
                ..Default::default()
            })
            .await?;
        response
            .into_inner()
            .volume
            .ok_or_else(|| Status::internal("CreateVolume returned no volume"))
    }

    /// ControllerPublishVolume to this node.
    pub async fn attach(&mut self, volume_id: &str) -> Result<(), Status> {
        self.controller
            .controller_publish_volume(csi::ControllerPublishVolumeRequest {
                volume_id: volume_id.into(),
                node_id: self.node_id.clone(),
                volume_capability: Some(mount_capability(false)),
                ..Default::default()
            })
            .await?;
        Ok(())
    }

    /// NodeStageVolume at `staging`.
    pub async fn stage(&mut self, volume: &csi::Volume, staging: &str) -> Result<(), Status> {
        self.node
            .node_stage_volume(csi::NodeStageVolumeRequest {
                volume_id: volume.volume_id.clone(),
                staging_target_path: staging.into(),
                volume_capability: Some(mount_capability(false)),
                volume_context: volume.volume_context.clone(),
                ..Default::default()
            })
            .await?;
        Ok(())
    }

    /// ControllerPublishVolume to this node, then NodeStageVolume at `staging`.
    pub async fn publish_and_stage(
        &mut self,
        volume: &csi::Volume,
        staging: &str,
    ) -> Result<(), Status> {
        self.attach(&volume.volume_id).await?;
        self.stage(volume, staging).await
    }

    /// Publish to this node, stage at /tmp/stage/NAME, publish at /tmp/target/NAME.
    pub async fn mount(&mut self, volume: &csi::Volume, name: &str) -> Result<Mounted, Status> {
        let staging = format!("/tmp/stage/{name}");
        self.publish_and_stage(volume, &staging).await?;
        let m = Mounted {
            id: volume.volume_id.clone(),
            context: volume.volume_context.clone(),
            staging,
            target: format!("/tmp/target/{name}"),
        };
        self.publish(&m, &m.target, false).await?;
        Ok(m)
    }

    /// Create, then [`Csi::mount`] on this node.
    pub async fn create_and_mount(
        &mut self,
        name: &str,
        params: &[(&str, &str)],
        size: i64,
    ) -> Result<Mounted, Status> {
        let volume = self.create(name, params, size).await?;
        self.mount(&volume, name).await
    }

    pub async fn publish(
        &mut self,
        m: &Mounted,
        target: &str,
        readonly: bool,
    ) -> Result<(), Status> {
        self.node
            .node_publish_volume(csi::NodePublishVolumeRequest {
                volume_id: m.id.clone(),
                staging_target_path: m.staging.clone(),
                target_path: target.into(),
                volume_capability: Some(mount_capability(readonly)),
                readonly,
                volume_context: m.context.clone(),
                ..Default::default()
            })
            .await?;
        Ok(())
    }

    /// Unpublish `targets`, unstage, and ControllerUnpublishVolume from this node.
    pub async fn unmount(&mut self, m: &Mounted, targets: &[&str]) -> Result<(), Status> {
        for target in targets {
            self.node
                .node_unpublish_volume(csi::NodeUnpublishVolumeRequest {
                    volume_id: m.id.clone(),
                    target_path: target.to_string(),
                })
                .await?;
        }
        self.node
            .node_unstage_volume(csi::NodeUnstageVolumeRequest {
                volume_id: m.id.clone(),
                staging_target_path: m.staging.clone(),
            })
            .await?;
        self.controller
            .controller_unpublish_volume(csi::ControllerUnpublishVolumeRequest {
                volume_id: m.id.clone(),
                node_id: self.node_id.clone(),
                ..Default::default()
            })
            .await?;
        Ok(())
    }

    pub async fn delete(&mut self, volume_id: &str) -> Result<(), Status> {
        self.controller
            .delete_volume(csi::DeleteVolumeRequest {
                volume_id: volume_id.into(),
                ..Default::default()
            })
            .await?;
        Ok(())
    }

    /// [`Csi::unmount`], then DeleteVolume.
    pub async fn unmount_and_delete(
        &mut self,
        m: &Mounted,
        targets: &[&str],
    ) -> Result<(), Status> {
        self.unmount(m, targets).await?;
        self.delete(&m.id).await
    }

    pub async fn stats(
        &mut self,
        m: &Mounted,
        path: &str,
    ) -> Result<csi::NodeGetVolumeStatsResponse, Status> {
        let response = self
            .node
            .node_get_volume_stats(csi::NodeGetVolumeStatsRequest {
                volume_id: m.id.clone(),
                volume_path: path.into(),
                staging_target_path: m.staging.clone(),
            })
            .await?;
        Ok(response.into_inner())
    }
}
