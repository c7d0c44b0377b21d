use std::{collections::HashMap, path::Path};

use rwxnfs_proto::csi::volume_capability::{
    AccessMode, BlockVolume, MountVolume, access_mode::Mode,
};
use tonic::Code;

use super::{stats::export_name_is, *};
use crate::mounter::{FakeMounter, Mounter};

fn service() -> (NodeService, Arc<FakeMounter>, tempfile::TempDir) {
    let mounter = Arc::new(FakeMounter::default());
    let svc = NodeService::with_mounter(
        NodeConfig {
            node_id: "n1".into(),
        },
        mounter.clone(),
        Bounded::new(Duration::from_secs(5)),
    );
    (svc, mounter, tempfile::tempdir().unwrap())
}

fn cap(mode: Mode, flags: &[&str]) -> VolumeCapability {
    VolumeCapability {
        access_type: Some(volume_capability::AccessType::Mount(MountVolume {
            mount_flags: flags.iter().map(|s| s.to_string()).collect(),
            ..Default::default()
        })),
        access_mode: Some(AccessMode { mode: mode as i32 }),
    }
}

fn context() -> HashMap<String, String> {
    HashMap::from([
        ("server".into(), "10.0.0.5".into()),
        ("share".into(), "/pvc-1".into()),
    ])
}

fn stage_req(dir: &Path, flags: &[&str]) -> NodeStageVolumeRequest {
    NodeStageVolumeRequest {
        volume_id: "vol1:ha:pvc-1".into(),
        staging_target_path: dir.join("staging").display().to_string(),
        volume_capability: Some(cap(Mode::MultiNodeMultiWriter, flags)),
        volume_context: context(),
        ..Default::default()
    }
}

fn publish_req(dir: &Path, target: &str, mode: Mode, readonly: bool) -> NodePublishVolumeRequest {
    NodePublishVolumeRequest {
        volume_id: "vol1:ha:pvc-1".into(),
        staging_target_path: dir.join("staging").display().to_string(),
        target_path: dir.join(target).display().to_string(),
        volume_capability: Some(cap(mode, &[])),
        readonly,
        volume_context: context(),
        ..Default::default()
    }
}

fn code<T: std::fmt::Debug>(r: Result<Response<T>, Status>) -> Code {
    r.map(|_| Code::Ok).unwrap_or_else(|s| s.code())
}

#[tokio::test]
async fn stage_checks_fields_in_request_order() {
    let (svc, _, dir) = service();
    let mut req = stage_req(dir.path(), &[]);
    req.volume_id.clear();
    let err = svc.node_stage_volume(Request::new(req)).await.unwrap_err();
    assert_eq!(
        (err.code(), err.message()),
        (Code::InvalidArgument, "Volume ID missing in request")
    );
    let mut req = stage_req(dir.path(), &[]);
    req.staging_target_path.clear();
    let err = svc.node_stage_volume(Request::new(req)).await.unwrap_err();
    assert_eq!(err.message(), "Staging target path missing in request");
    let mut req = stage_req(dir.path(), &[]);
    req.volume_capability = None;
    let err = svc.node_stage_volume(Request::new(req)).await.unwrap_err();
    assert_eq!(err.message(), "Volume capability missing in request");
    let mut req = stage_req(dir.path(), &[]);
    req.volume_capability = Some(VolumeCapability {
        access_type: Some(volume_capability::AccessType::Block(BlockVolume {})),
        access_mode: Some(AccessMode {
            mode: Mode::SingleNodeWriter as i32,
        }),
    });
    assert_eq!(
        code(svc.node_stage_volume(Request::new(req)).await),
        Code::InvalidArgument
    );
}

#[tokio::test]
async fn stage_mounts_nfs4_once_with_the_address_and_ha_defaults() {
    let (svc, mounter, dir) = service();
    svc.node_stage_volume(Request::new(stage_req(dir.path(), &["nconnect=4"])))
        .await
        .unwrap();
    svc.node_stage_volume(Request::new(stage_req(dir.path(), &["nconnect=4"])))
        .await
        .unwrap();
    let calls = mounter.calls.lock().unwrap().clone();
    let mounts: Vec<_> = calls.iter().filter(|c| c.starts_with("mount ")).collect();
    assert_eq!(mounts.len(), 1, "{calls:?}");
    assert!(
        mounts[0].starts_with("mount nfs4 10.0.0.5:/pvc-1 "),
        "{}",
        mounts[0]
    );
    assert!(
        mounts[0]
            .ends_with("vers=4.2,hard,timeo=600,retrans=2,noresvport,nconnect=4,addr=10.0.0.5"),
        "{}",
        mounts[0]
    );
}

#[tokio::test]
async fn bad_mount_options_are_refused_by_name() {
    let (svc, mounter, dir) = service();
    let err = svc
        .node_stage_volume(Request::new(stage_req(dir.path(), &["hard", "soft"])))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert!(err.message().contains("soft"), "{}", err.message());
    let err = svc
        .node_stage_volume(Request::new(stage_req(dir.path(), &["frobnicate"])))
        .await
        .unwrap_err();
    assert!(err.message().contains("frobnicate"));
    assert!(
        mounter
            .calls
            .lock()
            .unwrap()
            .iter()
            .all(|c| !c.starts_with("mount"))
    );
}

#[tokio::test]
async fn something_else_mounted_at_the_staging_path_is_a_conflict() {
    let (svc, _, dir) = service();
    svc.node_stage_volume(Request::new(stage_req(dir.path(), &[])))
        .await
        .unwrap();
    let mut other = stage_req(dir.path(), &[]);
    other.volume_context.insert("share".into(), "/pvc-2".into());
    assert_eq!(
        code(svc.node_stage_volume(Request::new(other)).await),
        Code::AlreadyExists
    );
}

#[tokio::test]
async fn publish_binds_the_staged_mount_and_is_idempotent() {
    let (svc, mounter, dir) = service();
    assert_eq!(
        code(
            svc.node_publish_volume(Request::new(publish_req(
                dir.path(),
                "t1",
                Mode::MultiNodeMultiWriter,
                false
            )))
            .await
        ),
        Code::FailedPrecondition,
        "not staged yet"
    );
    svc.node_stage_volume(Request::new(stage_req(dir.path(), &[])))
        .await
        .unwrap();
    for _ in 0..2 {
        svc.node_publish_volume(Request::new(publish_req(
            dir.path(),
            "t1",
            Mode::MultiNodeMultiWriter,
            false,
        )))
        .await
        .unwrap();
    }
    svc.node_publish_volume(Request::new(publish_req(
        dir.path(),
        "t2",
        Mode::MultiNodeMultiWriter,
        true,
    )))
    .await
    .unwrap();
    let calls = mounter.calls.lock().unwrap().clone();
    assert_eq!(
        calls.iter().filter(|c| c.starts_with("bind")).count(),
        2,
        "{calls:?}"
    );
    assert_eq!(
        calls.iter().filter(|c| c.starts_with("remount-ro")).count(),
        1
    );
    // The same target read-only now: a conflict.
    assert_eq!(
        code(
            svc.node_publish_volume(Request::new(publish_req(
                dir.path(),
                "t1",
                Mode::MultiNodeMultiWriter,
                true
            )))
            .await
        ),
        Code::AlreadyExists
    );
}

#[tokio::test]
async fn a_single_writer_volume_cannot_be_published_twice() {
    let (svc, _, dir) = service();
    svc.node_stage_volume(Request::new(stage_req(dir.path(), &[])))
        .await
        .unwrap();
    svc.node_publish_volume(Request::new(publish_req(
        dir.path(),
        "t1",
        Mode::SingleNodeSingleWriter,
        false,
    )))
    .await
    .unwrap();
    assert_eq!(
        code(
            svc.node_publish_volume(Request::new(publish_req(
                dir.path(),
                "t2",
                Mode::SingleNodeSingleWriter,
                false
            )))
            .await
        ),
        Code::FailedPrecondition
    );
}

#[tokio::test]
async fn unpublish_and_unstage_undo_everything_and_repeat_cleanly() {
    let (svc, mounter, dir) = service();
    svc.node_stage_volume(Request::new(stage_req(dir.path(), &[])))
        .await
        .unwrap();
    svc.node_publish_volume(Request::new(publish_req(
        dir.path(),
        "t1",
        Mode::MultiNodeMultiWriter,
        false,
    )))
    .await
    .unwrap();
    let target = dir.path().join("t1").display().to_string();
    let staging = dir.path().join("staging").display().to_string();
    for _ in 0..2 {
        svc.node_unpublish_volume(Request::new(NodeUnpublishVolumeRequest {
            volume_id: "vol1:ha:pvc-1".into(),
            target_path: target.clone(),
        }))
        .await
        .unwrap();
        svc.node_unstage_volume(Request::new(NodeUnstageVolumeRequest {
            volume_id: "vol1:ha:pvc-1".into(),
            staging_target_path: staging.clone(),
        }))
        .await
        .unwrap();
    }
    assert!(mounter.mounts().unwrap().is_empty());
    assert!(!Path::new(&target).exists() && !Path::new(&staging).exists());
}

#[tokio::test]
async fn stats_of_a_path_that_is_not_the_volumes_mount_is_not_found() {
    let (svc, _, dir) = service();
    let req = NodeGetVolumeStatsRequest {
        volume_id: "vol1:ha:pvc-1".into(),
        volume_path: dir.path().join("nothing").display().to_string(),
        ..Default::default()
    };
    assert_eq!(
        code(svc.node_get_volume_stats(Request::new(req)).await),
        Code::NotFound
    );
    let req = NodeGetVolumeStatsRequest {
        volume_path: "/x".into(),
        ..Default::default()
    };
    let err = svc
        .node_get_volume_stats(Request::new(req))
        .await
        .unwrap_err();
    assert_eq!(err.message(), "Volume ID missing in request");
}

#[tokio::test]
async fn node_info_reports_the_configured_node_id() {
    let (svc, _, _) = service();
    let info = svc
        .node_get_info(Request::new(NodeGetInfoRequest {}))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        (info.node_id.as_str(), info.max_volumes_per_node),
        ("n1", 0)
    );
}

#[tokio::test]
async fn a_stale_staged_mount_is_staged_again_on_the_next_publish_and_targets_are_rebound() {
    let (svc, mounter, dir) = service();
    svc.node_stage_volume(Request::new(stage_req(dir.path(), &[])))
        .await
        .unwrap();
    svc.node_publish_volume(Request::new(publish_req(
        dir.path(),
        "t1",
        Mode::MultiNodeMultiWriter,
        true,
    )))
    .await
    .unwrap();
    let staging = dir.path().join("staging");

    // The server came back with another fsid: stats report it, the next publish repairs it.
    mounter.stale.lock().unwrap().push(staging.clone());
    let stats = svc
        .node_get_volume_stats(Request::new(NodeGetVolumeStatsRequest {
            volume_id: "vol1:ha:pvc-1".into(),
            volume_path: staging.display().to_string(),
            ..Default::default()
        }))
        .await
        .unwrap()
        .into_inner();
    let condition = stats.volume_condition.unwrap();
    assert!(
        condition.abnormal && condition.message.contains("116"),
        "{}",
        condition.message
    );

    mounter.calls.lock().unwrap().clear();
    svc.node_publish_volume(Request::new(publish_req(
        dir.path(),
        "t2",
        Mode::MultiNodeMultiWriter,
        false,
    )))
    .await
    .unwrap();
    let calls = mounter.calls.lock().unwrap().clone();
    let order: Vec<&str> = calls.iter().map(|c| c.split(' ').next().unwrap()).collect();
    assert_eq!(
        order,
        ["umount", "umount", "mount", "bind", "remount-ro", "bind"],
        "{calls:#?}"
    );
    let table = mounter.mounts().unwrap();
    assert_eq!(table.len(), 3, "staging, t1 (read-only again) and t2");
    assert!(
        table
            .iter()
            .any(|m| m.mount_point == dir.path().join("t1") && m.read_only())
    );
}

#[test]
fn a_mount_names_its_export_by_the_last_component_of_its_path() {
    assert!(export_name_is("10.0.0.1:/pvc-7", "pvc-7"));
    assert!(export_name_is(
        "10.0.0.1:/drbd/exports/volumes/pvc-7",
        "pvc-7"
    ));
    assert!(export_name_is("[fd00::1]:/pvc-7", "pvc-7"));
    assert!(!export_name_is("10.0.0.1:/pvc-77", "pvc-7"));
    assert!(!export_name_is(
        "10.0.0.1:/drbd/exports/volumes/xpvc-7",
        "pvc-7"
    ));
    assert!(!export_name_is("tmpfs", "pvc-7"));
}

#[tokio::test]
async fn a_publish_before_stage_names_the_volume_and_the_staging_path() {
    let (svc, _, dir) = service();
    let err = svc
        .node_publish_volume(Request::new(publish_req(
            dir.path(),
            "t1",
            Mode::MultiNodeMultiWriter,
            false,
        )))
        .await
        .unwrap_err();
    assert_eq!(
        (err.code(), err.message().to_owned()),
        (
            Code::FailedPrecondition,
            format!(
                "volume vol1:ha:pvc-1 is not staged at {}",
                dir.path().join("staging").display()
            )
        )
    );
}

mod inflight;
mod served;
mod tls;
