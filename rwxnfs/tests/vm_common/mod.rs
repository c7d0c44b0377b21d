//! What the VM scenarios share: a CSI client for one controller and one node plugin reached
//! through forwarded ports, and the volume lifecycle steps they repeat.
#![allow(dead_code, clippy::unwrap_used)]

use std::{
    collections::HashMap,
    time::{Duration, Instant},
};

use rwxnfs_proto::csi::{
    self, controller_client::ControllerClient, identity_client::IdentityClient,
    node_client::NodeClient,
};
use rwxnfs_server::Endpoint;
use tonic::transport::Channel;

pub const MIB: i64 = 1 << 20;

/// Connects to a forwarded CSI endpoint once its Probe says ready.
pub async fn ready(port: u16, limit: Duration) -> Channel {
    let endpoint = Endpoint::Tcp(format!("127.0.0.1:{port}"));
    let start = Instant::now();
    loop {
        if let Ok(channel) = endpoint.connect().await {
            let probe = IdentityClient::new(channel.clone())
                .probe(csi::ProbeRequest {})
                .await;
            if probe.is_ok_and(|r| r.into_inner().ready == Some(true)) {
                return channel;
            }
        }
        assert!(
            start.elapsed() < limit,
            "{endpoint} not ready within {limit:?}"
        );
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

/// A volume created, published to the node, staged and published there.
pub struct Mounted {
    pub id: String,
    pub context: HashMap<String, String>,
    pub staging: String,
    pub target: String,
}

/// The controller and the node plugin of one scenario, and the node's id.
pub struct Csi {
    pub controller: ControllerClient<Channel>,
    pub node: NodeClient<Channel>,
    pub identity: IdentityClient<Channel>,
    pub node_id: String,
}

impl Csi {
    pub async fn connect(controller_port: u16, node_port: u16, node_id: &str) -> Csi {
        let limit = Duration::from_secs(90);
        let controller = ControllerClient::new(ready(controller_port, limit).await);
        let node_channel = ready(node_port, limit).await;
        Csi {
            controller,
            node: NodeClient::new(node_channel.clone()),
            identity: IdentityClient::new(node_channel),
            node_id: node_id.into(),
        }
    }

    pub async fn create(&mut self, name: &str, params: &[(&str, &str)], size: i64) -> csi::Volume {
        self.controller
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
            .await
            .unwrap()
            .into_inner()
            .volume
            .unwrap()
    }

    /// ControllerPublishVolume to the node, then NodeStageVolume at `staging`.
    pub async fn publish_and_stage(&mut self, volume: &csi::Volume, staging: &str) {
        self.controller
            .controller_publish_volume(csi::ControllerPublishVolumeRequest {
                volume_id: volume.volume_id.clone(),
                node_id: self.node_id.clone(),
                volume_capability: Some(mount_capability(false)),
                ..Default::default()
            })
            .await
            .unwrap();
        self.node
            .node_stage_volume(csi::NodeStageVolumeRequest {
                volume_id: volume.volume_id.clone(),
                staging_target_path: staging.into(),
                volume_capability: Some(mount_capability(false)),
                volume_context: volume.volume_context.clone(),
                ..Default::default()
            })
            .await
            .unwrap();
    }

    /// Create, publish to the node, stage at /tmp/stage/NAME, publish at /tmp/target/NAME.
    pub async fn create_and_mount(
        &mut self,
        name: &str,
        params: &[(&str, &str)],
        size: i64,
    ) -> Mounted {
        let volume = self.create(name, params, size).await;
        let staging = format!("/tmp/stage/{name}");
        self.publish_and_stage(&volume, &staging).await;
        let m = Mounted {
            id: volume.volume_id,
            context: volume.volume_context,
            staging,
            target: format!("/tmp/target/{name}"),
        };
        self.publish(&m, &m.target, false).await;
        m
    }

    pub async fn publish(&mut self, m: &Mounted, target: &str, readonly: bool) {
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
            .await
            .unwrap();
    }

    /// Unpublish `targets`, unstage, ControllerUnpublishVolume, DeleteVolume.
    pub async fn unmount_and_delete(&mut self, m: &Mounted, targets: &[&str]) {
        for target in targets {
            self.node
                .node_unpublish_volume(csi::NodeUnpublishVolumeRequest {
                    volume_id: m.id.clone(),
                    target_path: target.to_string(),
                })
                .await
                .unwrap();
        }
        self.node
            .node_unstage_volume(csi::NodeUnstageVolumeRequest {
                volume_id: m.id.clone(),
                staging_target_path: m.staging.clone(),
            })
            .await
            .unwrap();
        self.controller
            .controller_unpublish_volume(csi::ControllerUnpublishVolumeRequest {
                volume_id: m.id.clone(),
                node_id: self.node_id.clone(),
                ..Default::default()
            })
            .await
            .unwrap();
        self.controller
            .delete_volume(csi::DeleteVolumeRequest {
                volume_id: m.id.clone(),
                ..Default::default()
            })
            .await
            .unwrap();
    }

    pub async fn stats(&mut self, m: &Mounted, path: &str) -> csi::NodeGetVolumeStatsResponse {
        self.node
            .node_get_volume_stats(csi::NodeGetVolumeStatsRequest {
                volume_id: m.id.clone(),
                volume_path: path.into(),
                staging_target_path: m.staging.clone(),
            })
            .await
            .unwrap()
            .into_inner()
    }
}
