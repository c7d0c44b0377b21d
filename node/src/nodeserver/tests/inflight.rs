//! Concurrent calls on one volume: the per-volume try-lock, driven with the fake mounter's
//! gate holding the first call in the middle of its work.

use std::{path::Path, sync::Arc, time::Duration};

use rwxnfs_proto::csi::{
    NodePublishVolumeRequest, NodeUnpublishVolumeRequest, node_server::Node,
    volume_capability::access_mode::Mode,
};
use tonic::{Code, Request};

use super::{publish_req, service, stage_req};
use crate::{
    mounter::{FakeMounter, Mounter},
    nodeserver::NodeService,
};

/// Waits (off the runtime's thread) until `calls` calls are held at the fake's gate.
async fn held_at_gate(mounter: &Arc<FakeMounter>, calls: usize) {
    let m = mounter.clone();
    let held = tokio::task::spawn_blocking(move || m.gate.wait_held(calls, Duration::from_secs(4)))
        .await
        .unwrap();
    assert!(held, "the first call never reached the gate");
}

fn in_progress(volume_id: &str, path: &Path) -> String {
    format!(
        "an operation on volume {volume_id} at {} is already in progress; retry later",
        path.display()
    )
}

fn mounted_at(mounter: &FakeMounter, path: &Path) -> usize {
    mounter
        .mounts()
        .unwrap()
        .iter()
        .filter(|m| m.mount_point == path)
        .count()
}

async fn staged(svc: &NodeService, dir: &Path) {
    svc.node_stage_volume(Request::new(stage_req(dir, &[])))
        .await
        .unwrap();
}

fn publish(dir: &Path, target: &str) -> Request<NodePublishVolumeRequest> {
    Request::new(publish_req(dir, target, Mode::MultiNodeMultiWriter, false))
}

#[tokio::test]
async fn a_second_publish_of_one_target_while_the_first_is_mounting_is_aborted_and_mounts_nothing()
{
    let (svc, mounter, dir) = service();
    staged(&svc, dir.path()).await;
    let target = dir.path().join("t1");
    mounter.gate.close(&target);
    let first = svc.node_publish_volume(publish(dir.path(), "t1"));
    let second = async {
        held_at_gate(&mounter, 1).await;
        let second = svc.node_publish_volume(publish(dir.path(), "t1")).await;
        mounter.gate.open();
        second
    };
    let (first, second) = tokio::join!(first, second);
    first.unwrap();
    let err = second.unwrap_err();
    assert_eq!(
        (err.code(), err.message()),
        (
            Code::Aborted,
            in_progress("vol1:ha:pvc-1", &target).as_str()
        )
    );
    assert_eq!(mounted_at(&mounter, &target), 1, "mounted exactly once");
    let calls = mounter.calls.lock().unwrap().clone();
    assert_eq!(
        calls.iter().filter(|c| c.starts_with("bind")).count(),
        1,
        "{calls:?}"
    );
    // Released: the retry is the idempotent success.
    svc.node_publish_volume(publish(dir.path(), "t1"))
        .await
        .unwrap();
    assert_eq!(mounted_at(&mounter, &target), 1);
}

#[tokio::test]
async fn two_targets_of_one_volume_are_published_at_the_same_time() {
    let (svc, mounter, dir) = service();
    staged(&svc, dir.path()).await;
    mounter.gate.close(&dir.path().join("t1"));
    let first = svc.node_publish_volume(publish(dir.path(), "t1"));
    let second = async {
        held_at_gate(&mounter, 1).await;
        let second = svc.node_publish_volume(publish(dir.path(), "t2")).await;
        assert!(
            mounter.gate.wait_held(1, Duration::ZERO),
            "t2 was published while t1 was still held in the middle of its publish"
        );
        mounter.gate.open();
        second
    };
    let (first, second) = tokio::join!(first, second);
    first.unwrap();
    second.unwrap();
    for target in ["staging", "t1", "t2"] {
        assert_eq!(
            mounted_at(&mounter, &dir.path().join(target)),
            1,
            "{target}"
        );
    }
}

#[tokio::test]
async fn an_unpublish_of_a_target_being_published_is_aborted() {
    let (svc, mounter, dir) = service();
    staged(&svc, dir.path()).await;
    let target = dir.path().join("t1");
    mounter.gate.close(&target);
    let first = svc.node_publish_volume(publish(dir.path(), "t1"));
    let second = async {
        held_at_gate(&mounter, 1).await;
        let second = svc
            .node_unpublish_volume(Request::new(NodeUnpublishVolumeRequest {
                volume_id: "vol1:ha:pvc-1".into(),
                target_path: target.display().to_string(),
            }))
            .await;
        mounter.gate.open();
        second
    };
    let (first, second) = tokio::join!(first, second);
    first.unwrap();
    let err = second.unwrap_err();
    assert_eq!(
        (err.code(), err.message()),
        (
            Code::Aborted,
            in_progress("vol1:ha:pvc-1", &target).as_str()
        )
    );
    assert_eq!(mounted_at(&mounter, &target), 1);
}

#[tokio::test]
async fn a_second_stage_of_one_staging_path_while_the_first_is_mounting_is_aborted() {
    let (svc, mounter, dir) = service();
    let staging = dir.path().join("staging");
    mounter.gate.close(&staging);
    let first = svc.node_stage_volume(Request::new(stage_req(dir.path(), &[])));
    let second = async {
        held_at_gate(&mounter, 1).await;
        let second = svc
            .node_stage_volume(Request::new(stage_req(dir.path(), &[])))
            .await;
        mounter.gate.open();
        second
    };
    let (first, second) = tokio::join!(first, second);
    first.unwrap();
    let err = second.unwrap_err();
    assert_eq!(
        (err.code(), err.message()),
        (
            Code::Aborted,
            in_progress("vol1:ha:pvc-1", &staging).as_str()
        )
    );
    assert_eq!(mounted_at(&mounter, &staging), 1, "mounted exactly once");
}

#[tokio::test]
async fn a_publish_that_finds_the_staged_mount_stale_while_another_restages_it_is_aborted() {
    let (svc, mounter, dir) = service();
    staged(&svc, dir.path()).await;
    svc.node_publish_volume(publish(dir.path(), "t1"))
        .await
        .unwrap();
    let staging = dir.path().join("staging");
    mounter.stale.lock().unwrap().push(staging.clone());
    mounter.calls.lock().unwrap().clear();
    // The first publish re-stages: it is held while unmounting the old bind at t1.
    mounter.gate.close(&dir.path().join("t1"));
    let first = svc.node_publish_volume(publish(dir.path(), "t2"));
    let second = async {
        held_at_gate(&mounter, 1).await;
        let second = svc.node_publish_volume(publish(dir.path(), "t3")).await;
        mounter.gate.open();
        second
    };
    let (first, second) = tokio::join!(first, second);
    first.unwrap();
    let err = second.unwrap_err();
    assert_eq!(
        (err.code(), err.message()),
        (
            Code::Aborted,
            in_progress("vol1:ha:pvc-1", &staging).as_str()
        )
    );
    let calls = mounter.calls.lock().unwrap().clone();
    assert_eq!(
        calls.iter().filter(|c| c.starts_with("mount ")).count(),
        1,
        "staged again once: {calls:#?}"
    );
    for target in ["staging", "t1", "t2"] {
        assert_eq!(
            mounted_at(&mounter, &dir.path().join(target)),
            1,
            "{target}"
        );
    }
    assert_eq!(mounted_at(&mounter, &dir.path().join("t3")), 0);
}

#[tokio::test]
async fn publishes_of_two_targets_read_the_mount_table_at_the_same_time() {
    let (svc, mounter, dir) = service();
    staged(&svc, dir.path()).await;
    let svc = Arc::new(svc);
    mounter.gate.close(Path::new(crate::mounter::MOUNT_TABLE));
    let (a, b) = (svc.clone(), svc.clone());
    let (da, db) = (dir.path().to_owned(), dir.path().to_owned());
    let first = tokio::spawn(async move { a.node_publish_volume(publish(&da, "t1")).await });
    let second = tokio::spawn(async move { b.node_publish_volume(publish(&db, "t2")).await });
    // Both are in the middle of reading the table: neither was told another read is running.
    held_at_gate(&mounter, 2).await;
    mounter.gate.open();
    first.await.unwrap().expect("the first publish");
    second.await.unwrap().expect("the second publish");
    assert_eq!(mounted_at(&mounter, &dir.path().join("t1")), 1);
    assert_eq!(mounted_at(&mounter, &dir.path().join("t2")), 1);
}

#[tokio::test]
async fn a_second_hold_of_one_volume_and_path_is_aborted_until_the_first_is_released() {
    let (svc, _mounter, _dir) = service();
    let held = svc.hold("v", Path::new("/t1")).unwrap();
    let _other_path = svc.hold("v", Path::new("/t2")).unwrap();
    let _other_volume = svc.hold("w", Path::new("/t1")).unwrap();
    let status = tonic::Status::from(svc.hold("v", Path::new("/t1")).err().unwrap());
    assert_eq!(
        (status.code(), status.message()),
        (
            Code::Aborted,
            "an operation on volume v at /t1 is already in progress; retry later"
        )
    );
    drop(held);
    let _again = svc.hold("v", Path::new("/t1")).unwrap();
}
