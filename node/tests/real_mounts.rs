//! The node plugin's mount path with the real mount(2) on this machine. Its kernel has no NFS
//! client, so a tmpfs stands in for the staged NFS mount; everything after staging (bind
//! mounts, read-only remounts, statvfs, the unmount fallbacks, target removal) is real.
#![allow(clippy::unwrap_used)]

use std::{collections::HashMap, path::Path, sync::Arc, time::Duration};

use nix::mount::MsFlags;
use rwxnfs_node::{
    NodeConfig, NodeService,
    bounded::Bounded,
    mounter::{Mounter, SystemMounter},
};
use rwxnfs_proto::csi::{
    NodeGetVolumeStatsRequest, NodePublishVolumeRequest, NodeUnpublishVolumeRequest,
    NodeUnstageVolumeRequest, VolumeCapability, node_server::Node, volume_capability,
    volume_capability::access_mode::Mode, volume_usage,
};
use tonic::Request;

/// Lazily unmounts whatever is left under the test directory, even after a panic.
struct Cleanup(std::path::PathBuf);

impl Drop for Cleanup {
    fn drop(&mut self) {
        for sub in ["t1/inner", "t1", "t2", "staging"] {
            let _ = nix::mount::umount2(&self.0.join(sub), nix::mount::MntFlags::MNT_DETACH);
        }
    }
}

fn cap() -> VolumeCapability {
    VolumeCapability {
        access_type: Some(volume_capability::AccessType::Mount(Default::default())),
        access_mode: Some(volume_capability::AccessMode {
            mode: Mode::MultiNodeMultiWriter as i32,
        }),
    }
}

fn publish(dir: &Path, target: &str, readonly: bool) -> NodePublishVolumeRequest {
    NodePublishVolumeRequest {
        volume_id: "static-volume".into(),
        staging_target_path: dir.join("staging").display().to_string(),
        target_path: dir.join(target).display().to_string(),
        volume_capability: Some(cap()),
        readonly,
        volume_context: HashMap::new(),
        ..Default::default()
    }
}

fn is_mounted(path: &Path) -> bool {
    SystemMounter
        .mounts()
        .unwrap()
        .iter()
        .any(|m| m.mount_point == path)
}

#[tokio::test]
async fn publish_bind_mounts_read_only_when_asked_and_unpublish_removes_everything() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().to_owned();
    let _cleanup = Cleanup(root.clone());
    let staging = root.join("staging");
    std::fs::create_dir(&staging).unwrap();
    SystemMounter
        .mount_nfs("tmpfs", &staging, "tmpfs", MsFlags::empty(), "size=4m")
        .unwrap();
    std::fs::write(staging.join("data"), b"shared").unwrap();

    let node = NodeService::with_mounter(
        NodeConfig {
            node_id: "n".into(),
        },
        Arc::new(SystemMounter),
        Bounded::new(Duration::from_secs(5)),
    );
    node.node_publish_volume(Request::new(publish(&root, "t1", false)))
        .await
        .unwrap();
    node.node_publish_volume(Request::new(publish(&root, "t1", false)))
        .await
        .unwrap();
    node.node_publish_volume(Request::new(publish(&root, "t2", true)))
        .await
        .unwrap();

    assert_eq!(std::fs::read(root.join("t1/data")).unwrap(), b"shared");
    std::fs::write(root.join("t1/from-pod"), b"x").unwrap();
    assert!(
        staging.join("from-pod").exists(),
        "a write through the target lands in the volume"
    );
    let err = std::fs::write(root.join("t2/nope"), b"x").unwrap_err();
    assert_eq!(
        err.raw_os_error(),
        Some(libc::EROFS),
        "a read-only publish refuses writes"
    );

    let stats = node
        .node_get_volume_stats(Request::new(NodeGetVolumeStatsRequest {
            volume_id: "static-volume".into(),
            volume_path: root.join("t1").display().to_string(),
            ..Default::default()
        }))
        .await
        .unwrap()
        .into_inner();
    let bytes = stats
        .usage
        .iter()
        .find(|u| u.unit == volume_usage::Unit::Bytes as i32)
        .unwrap();
    assert_eq!(bytes.total, 4 << 20);
    assert!(!stats.volume_condition.unwrap().abnormal);

    for target in ["t1", "t2"] {
        let req = NodeUnpublishVolumeRequest {
            volume_id: "static-volume".into(),
            target_path: root.join(target).display().to_string(),
        };
        node.node_unpublish_volume(Request::new(req.clone()))
            .await
            .unwrap();
        node.node_unpublish_volume(Request::new(req)).await.unwrap();
        assert!(!is_mounted(&root.join(target)) && !root.join(target).exists());
    }
    let req = NodeUnstageVolumeRequest {
        volume_id: "static-volume".into(),
        staging_target_path: staging.display().to_string(),
    };
    node.node_unstage_volume(Request::new(req)).await.unwrap();
    assert!(!is_mounted(&staging) && !staging.exists());
}

#[tokio::test]
async fn a_busy_target_is_still_unmounted_by_the_fallbacks() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().to_owned();
    let _cleanup = Cleanup(root.clone());
    let staging = root.join("staging");
    std::fs::create_dir(&staging).unwrap();
    SystemMounter
        .mount_nfs("tmpfs", &staging, "tmpfs", MsFlags::empty(), "size=1m")
        .unwrap();
    let node = NodeService::with_mounter(
        NodeConfig {
            node_id: "n".into(),
        },
        Arc::new(SystemMounter),
        Bounded::new(Duration::from_secs(5)),
    );
    node.node_publish_volume(Request::new(publish(&root, "t1", false)))
        .await
        .unwrap();
    // A mount stacked inside the target keeps it busy: a plain unmount fails with EBUSY.
    std::fs::create_dir(root.join("t1/inner")).unwrap();
    SystemMounter
        .mount_nfs(
            "tmpfs",
            &root.join("t1/inner"),
            "tmpfs",
            MsFlags::empty(),
            "size=1m",
        )
        .unwrap();
    let open = std::fs::File::create(root.join("t1/inner/held")).unwrap();

    let started = std::time::Instant::now();
    let req = NodeUnpublishVolumeRequest {
        volume_id: "static-volume".into(),
        target_path: root.join("t1").display().to_string(),
    };
    node.node_unpublish_volume(Request::new(req)).await.unwrap();
    println!("busy target unmounted (lazily) in {:?}", started.elapsed());
    assert!(!is_mounted(&root.join("t1")));
    assert!(!root.join("t1").exists());
    drop(open);
    let req = NodeUnstageVolumeRequest {
        volume_id: "static-volume".into(),
        staging_target_path: staging.display().to_string(),
    };
    node.node_unstage_volume(Request::new(req)).await.unwrap();
}
