//! Node Service checks: argument validation everywhere, and the stage → publish → stats →
//! unpublish → unstage lifecycle (which needs a kernel that can mount the driver's volumes).

use std::path::Path;

use rwxnfs_proto::csi::{
    NodeGetVolumeStatsRequest, NodePublishVolumeRequest, NodeStageVolumeRequest,
    NodeUnpublishVolumeRequest, NodeUnstageVolumeRequest, Volume,
    volume_capability::access_mode::Mode,
};
use tonic::Code;

use crate::{
    context::Ctx,
    resources::{mount_capability, unique, writer},
    verdict::{SpecResult, Verdict, ensure, expect_code},
};

pub(super) async fn publish_no_volume_id(ctx: &Ctx) -> SpecResult {
    let req = NodePublishVolumeRequest {
        target_path: ctx.fresh_path(false, "t"),
        volume_capability: Some(writer()),
        ..Default::default()
    };
    expect_code(
        ctx.node().node_publish_volume(req).await,
        Code::InvalidArgument,
    )
}

pub(super) async fn publish_no_target(ctx: &Ctx) -> SpecResult {
    let req = NodePublishVolumeRequest {
        volume_id: "id".into(),
        volume_capability: Some(writer()),
        ..Default::default()
    };
    expect_code(
        ctx.node().node_publish_volume(req).await,
        Code::InvalidArgument,
    )
}

pub(super) async fn publish_no_capability(ctx: &Ctx) -> SpecResult {
    let req = NodePublishVolumeRequest {
        volume_id: "id".into(),
        target_path: ctx.fresh_path(false, "t"),
        ..Default::default()
    };
    expect_code(
        ctx.node().node_publish_volume(req).await,
        Code::InvalidArgument,
    )
}

pub(super) async fn unpublish_no_volume_id(ctx: &Ctx) -> SpecResult {
    let req = NodeUnpublishVolumeRequest {
        target_path: ctx.fresh_path(false, "t"),
        ..Default::default()
    };
    expect_code(
        ctx.node().node_unpublish_volume(req).await,
        Code::InvalidArgument,
    )
}

pub(super) async fn unpublish_no_target(ctx: &Ctx) -> SpecResult {
    let req = NodeUnpublishVolumeRequest {
        volume_id: "id".into(),
        ..Default::default()
    };
    expect_code(
        ctx.node().node_unpublish_volume(req).await,
        Code::InvalidArgument,
    )
}

pub(super) async fn stage_no_volume_id(ctx: &Ctx) -> SpecResult {
    let req = NodeStageVolumeRequest {
        staging_target_path: ctx.fresh_path(true, "s"),
        volume_capability: Some(writer()),
        ..Default::default()
    };
    expect_code(
        ctx.node().node_stage_volume(req).await,
        Code::InvalidArgument,
    )
}

pub(super) async fn stage_no_path(ctx: &Ctx) -> SpecResult {
    let req = NodeStageVolumeRequest {
        volume_id: "id".into(),
        volume_capability: Some(writer()),
        ..Default::default()
    };
    expect_code(
        ctx.node().node_stage_volume(req).await,
        Code::InvalidArgument,
    )
}

pub(super) async fn stage_no_capability(ctx: &Ctx) -> SpecResult {
    let req = NodeStageVolumeRequest {
        volume_id: "id".into(),
        staging_target_path: ctx.fresh_path(true, "s"),
        ..Default::default()
    };
    expect_code(
        ctx.node().node_stage_volume(req).await,
        Code::InvalidArgument,
    )
}

pub(super) async fn unstage_no_volume_id(ctx: &Ctx) -> SpecResult {
    let req = NodeUnstageVolumeRequest {
        staging_target_path: ctx.fresh_path(true, "s"),
        ..Default::default()
    };
    expect_code(
        ctx.node().node_unstage_volume(req).await,
        Code::InvalidArgument,
    )
}

pub(super) async fn unstage_no_path(ctx: &Ctx) -> SpecResult {
    let req = NodeUnstageVolumeRequest {
        volume_id: "id".into(),
        ..Default::default()
    };
    expect_code(
        ctx.node().node_unstage_volume(req).await,
        Code::InvalidArgument,
    )
}

pub(super) async fn stats_no_volume_id(ctx: &Ctx) -> SpecResult {
    let req = NodeGetVolumeStatsRequest {
        volume_path: ctx.fresh_path(false, "t"),
        ..Default::default()
    };
    expect_code(
        ctx.node().node_get_volume_stats(req).await,
        Code::InvalidArgument,
    )
}

pub(super) async fn stats_no_path(ctx: &Ctx) -> SpecResult {
    let req = NodeGetVolumeStatsRequest {
        volume_id: "id".into(),
        ..Default::default()
    };
    expect_code(
        ctx.node().node_get_volume_stats(req).await,
        Code::InvalidArgument,
    )
}

pub(super) async fn stats_volume_not_found(ctx: &Ctx) -> SpecResult {
    let req = NodeGetVolumeStatsRequest {
        volume_id: "some-vol-id".into(),
        volume_path: ctx.fresh_path(false, "t"),
        ..Default::default()
    };
    expect_code(ctx.node().node_get_volume_stats(req).await, Code::NotFound)
}

/// A volume created, published to this node, staged and published at a target.
async fn mounted(ctx: &Ctx, cap_mode: Mode) -> Result<(Volume, String, String), Verdict> {
    let volume = ctx
        .create_volume(ctx.volume_request(&unique("node"), None))
        .await?;
    ctx.publish(&volume.volume_id, &ctx.node_id().await?, false)
        .await?;
    let staging = ctx.fresh_path(true, "staging");
    let target = ctx.fresh_path(false, "target");
    ctx.stage(&volume, &staging, mount_capability(cap_mode))
        .await?;
    ctx.node_publish(
        &volume,
        &staging,
        &target,
        mount_capability(cap_mode),
        false,
    )
    .await?;
    Ok((volume, staging, target))
}

pub(super) async fn stats_wrong_path(ctx: &Ctx) -> SpecResult {
    let (volume, _, _) = mounted(ctx, Mode::SingleNodeWriter).await?;
    let req = NodeGetVolumeStatsRequest {
        volume_id: volume.volume_id,
        volume_path: "/path/does/not/exist".into(),
        ..Default::default()
    };
    expect_code(ctx.node().node_get_volume_stats(req).await, Code::NotFound)
}

pub(super) async fn unpublish_removes_target(ctx: &Ctx) -> SpecResult {
    let (volume, _, target) = mounted(ctx, Mode::SingleNodeWriter).await?;
    let req = NodeUnpublishVolumeRequest {
        volume_id: volume.volume_id,
        target_path: target.clone(),
    };
    ctx.node().node_unpublish_volume(req).await?;
    ensure(!Path::new(&target).exists(), || {
        format!("{target} still exists after NodeUnpublishVolume")
    })
}

pub(super) async fn single_writer_second_target(ctx: &Ctx) -> SpecResult {
    let (volume, staging, _) = mounted(ctx, Mode::SingleNodeSingleWriter).await?;
    let other = ctx.fresh_path(false, "target2");
    let req = NodePublishVolumeRequest {
        volume_id: volume.volume_id,
        staging_target_path: staging,
        target_path: other,
        volume_capability: Some(mount_capability(Mode::SingleNodeSingleWriter)),
        volume_context: volume.volume_context,
        ..Default::default()
    };
    expect_code(
        ctx.node().node_publish_volume(req).await,
        Code::FailedPrecondition,
    )
}

async fn node_lifecycle(ctx: &Ctx, repeats: usize) -> SpecResult {
    let volume = ctx
        .create_volume(ctx.volume_request(&unique("node-life"), None))
        .await?;
    let node_id = ctx.node_id().await?;
    ctx.publish(&volume.volume_id, &node_id, false).await?;
    let staging = ctx.fresh_path(true, "staging");
    let target = ctx.fresh_path(false, "target");
    for _ in 0..repeats {
        ctx.stage(&volume, &staging, writer()).await?;
    }
    for _ in 0..repeats {
        ctx.node_publish(&volume, &staging, &target, writer(), false)
            .await?;
    }
    let stats = ctx
        .node()
        .node_get_volume_stats(NodeGetVolumeStatsRequest {
            volume_id: volume.volume_id.clone(),
            volume_path: target.clone(),
            staging_target_path: staging.clone(),
        })
        .await?
        .into_inner();
    ensure(!stats.usage.is_empty(), || {
        "NodeGetVolumeStats reported no usage".into()
    })?;
    if let Some(condition) = &stats.volume_condition {
        ensure(!condition.abnormal, || {
            format!("a fresh volume is abnormal: {}", condition.message)
        })?;
    }
    for _ in 0..repeats {
        let req = NodeUnpublishVolumeRequest {
            volume_id: volume.volume_id.clone(),
            target_path: target.clone(),
        };
        ctx.node().node_unpublish_volume(req).await?;
    }
    for _ in 0..repeats {
        let req = NodeUnstageVolumeRequest {
            volume_id: volume.volume_id.clone(),
            staging_target_path: staging.clone(),
        };
        ctx.node().node_unstage_volume(req).await?;
    }
    Ok(())
}

pub(super) async fn works(ctx: &Ctx) -> SpecResult {
    node_lifecycle(ctx, 1).await
}

pub(super) async fn idempotent(ctx: &Ctx) -> SpecResult {
    node_lifecycle(ctx, 2).await
}
