//! `rwxnfs node` killed with SIGKILL while its volumes are in use, and started again: the pods'
//! mounts outlive it, a pod's open file goes on working, the kubelet's repeated
//! NodePublishVolume after the restart succeeds without stacking a second mount, and the
//! restarted plugin reports the volume's stats and unpublishes and unstages it.
//!
//! This machine's kernel has no NFS client, so a tmpfs mounted by the test stands in for the
//! staged NFS mount (as in `node/tests/real_mounts.rs`); the bind mounts, the mount table the
//! plugin reads back after its restart and the unmounts are real. The volume is a static one
//! (an id without `vol1:`), whose mount the plugin takes as it finds it: a provisioned
//! volume's must be an NFS mount of its export.
#![allow(clippy::unwrap_used)]

use std::{
    io::{Read, Write},
    path::Path,
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use nix::mount::{MntFlags, MsFlags, umount2};
use rwxnfs_proto::csi::{self, node_client::NodeClient};
use rwxnfs_server::Endpoint;
use rwxnfs_testbed::{Process, vm::mount_capability, wait_for};

/// Lazily unmounts what the test mounted, even after a panic.
struct Cleanup(std::path::PathBuf);

impl Drop for Cleanup {
    fn drop(&mut self) {
        for sub in ["pod-a", "pod-b", "staging"] {
            let _ = umount2(&self.0.join(sub), MntFlags::MNT_DETACH);
        }
    }
}

fn start_node(dir: &Path) -> Process {
    let socket = dir.join("node.sock");
    let mut command = Command::new(env!("CARGO_BIN_EXE_rwxnfs"));
    command
        .args([
            "--log-format",
            "json",
            "node",
            "--node-id",
            "n1",
            "--endpoint",
        ])
        .arg(format!("unix://{}", socket.display()))
        .stdout(Stdio::null())
        .stderr(Stdio::inherit());
    let node = Process::spawn("node", &mut command);
    wait_for("the node plugin", Duration::from_secs(20), || {
        std::os::unix::net::UnixStream::connect(&socket).is_ok()
    });
    node
}

/// Mount table entries at `path`.
fn mounts_at(path: &Path) -> usize {
    let path = path.display().to_string();
    std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap()
        .lines()
        .filter(|l| l.split_whitespace().nth(4) == Some(path.as_str()))
        .count()
}

fn publish(dir: &Path, target: &str) -> csi::NodePublishVolumeRequest {
    csi::NodePublishVolumeRequest {
        volume_id: "static-volume".into(),
        staging_target_path: dir.join("staging").display().to_string(),
        target_path: dir.join(target).display().to_string(),
        volume_capability: Some(mount_capability(false)),
        ..Default::default()
    }
}

/// Publishes the volume to both pods (again, after a restart): one mount on each target.
async fn publish_pods(endpoint: &Endpoint, root: &Path) -> NodeClient<tonic::transport::Channel> {
    let mut client = NodeClient::new(endpoint.connect().await.unwrap());
    for pod in ["pod-a", "pod-b"] {
        client
            .node_publish_volume(publish(root, pod))
            .await
            .unwrap();
        assert_eq!(mounts_at(&root.join(pod)), 1, "not one mount on {pod}");
    }
    client
}

/// A pod's synced write of one line.
fn append(file: &mut std::fs::File, line: &str) {
    file.write_all(format!("{line}\n").as_bytes()).unwrap();
    file.sync_all().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_plugin_killed_with_volumes_in_use_comes_back_to_the_same_mounts() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().to_owned();
    let _cleanup = Cleanup(root.clone());
    let staging = root.join("staging");
    std::fs::create_dir(&staging).unwrap();
    nix::mount::mount(
        Some("tmpfs"),
        &staging,
        Some("tmpfs"),
        MsFlags::empty(),
        Some("size=4m"),
    )
    .unwrap();

    let mut node = start_node(&root);
    let endpoint = Endpoint::Unix(root.join("node.sock"));
    publish_pods(&endpoint, &root).await;
    // The pod: a file held open through its mount, written before the kill.
    let mut held = std::fs::OpenOptions::new()
        .create(true)
        .read(true)
        .write(true)
        .truncate(true)
        .open(root.join("pod-a/log"))
        .unwrap();
    append(&mut held, "before");

    node.kill();
    let killed = Instant::now();
    assert_eq!(
        mounts_at(&root.join("pod-a")),
        1,
        "the pod's mount outlives the plugin"
    );
    append(&mut held, "while down");

    let _node = start_node(&root);
    // The kubelet repeats NodePublishVolume for every pod after a plugin restart.
    let mut client = publish_pods(&endpoint, &root).await;
    let stats = client
        .node_get_volume_stats(csi::NodeGetVolumeStatsRequest {
            volume_id: "static-volume".into(),
            volume_path: root.join("pod-b").display().to_string(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert!(!stats.volume_condition.unwrap().abnormal);
    println!(
        "back and serving the same mounts {:?} after the kill",
        killed.elapsed()
    );
    append(&mut held, "after");
    let mut text = String::new();
    let mut through_b = std::fs::File::open(root.join("pod-b/log")).unwrap();
    through_b.read_to_string(&mut text).unwrap();
    assert_eq!(
        text, "before\nwhile down\nafter\n",
        "one volume, seen from both pods"
    );

    for pod in ["pod-a", "pod-b"] {
        client
            .node_unpublish_volume(csi::NodeUnpublishVolumeRequest {
                volume_id: "static-volume".into(),
                target_path: root.join(pod).display().to_string(),
            })
            .await
            .unwrap();
        assert_eq!(mounts_at(&root.join(pod)), 0);
        assert!(!root.join(pod).exists());
    }
    drop(held);
    client
        .node_unstage_volume(csi::NodeUnstageVolumeRequest {
            volume_id: "static-volume".into(),
            staging_target_path: staging.display().to_string(),
        })
        .await
        .unwrap();
    assert_eq!(mounts_at(&staging), 0);
}
