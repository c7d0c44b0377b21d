//! ControllerPublishVolume / ControllerUnpublishVolume checks and the volume lifecycle.

use rwxnfs_proto::csi::{
    ControllerPublishVolumeRequest, ControllerUnpublishVolumeRequest, DeleteVolumeRequest,
    NodeGetInfoRequest,
};
use tonic::Code;

use crate::{
    context::Ctx,
    resources::{unique, writer},
    verdict::{SpecResult, Verdict, expect_code},
};

/// How many times the idempotency spec repeats each call.
const REPEATS: usize = 3;

pub(super) async fn no_node_id(ctx: &Ctx) -> SpecResult {
    let req = ControllerPublishVolumeRequest {
        volume_id: "id".into(),
        volume_capability: Some(writer()),
        ..Default::default()
    };
    expect_code(
        ctx.controller().controller_publish_volume(req).await,
        Code::InvalidArgument,
    )
}

pub(super) async fn no_capability(ctx: &Ctx) -> SpecResult {
    let req = ControllerPublishVolumeRequest {
        volume_id: "id".into(),
        node_id: "fakenode".into(),
        ..Default::default()
    };
    expect_code(
        ctx.controller().controller_publish_volume(req).await,
        Code::InvalidArgument,
    )
}

pub(super) async fn no_volume_id(ctx: &Ctx) -> SpecResult {
    let req = ControllerPublishVolumeRequest {
        node_id: "fakenode".into(),
        volume_capability: Some(writer()),
        ..Default::default()
    };
    expect_code(
        ctx.controller().controller_publish_volume(req).await,
        Code::InvalidArgument,
    )
}

pub(super) async fn unpublish_no_volume_id(ctx: &Ctx) -> SpecResult {
    let req = ControllerUnpublishVolumeRequest {
        node_id: "fakenode".into(),
        ..Default::default()
    };
    expect_code(
        ctx.controller().controller_unpublish_volume(req).await,
        Code::InvalidArgument,
    )
}

pub(super) async fn max_attach_limit(ctx: &Ctx) -> SpecResult {
    let info = ctx
        .node()
        .node_get_info(NodeGetInfoRequest {})
        .await?
        .into_inner();
    if info.max_volumes_per_node <= 0 {
        return Err(Verdict::NotApplicable(
            "the node reports no attach limit (max_volumes_per_node 0)".into(),
        ));
    }
    let limit = info.max_volumes_per_node as usize;
    for _ in 0..limit {
        let v = ctx
            .create_volume(ctx.volume_request(&unique("attach-limit"), None))
            .await?;
        ctx.publish(&v.volume_id, &info.node_id, false).await?;
    }
    let extra = ctx
        .create_volume(ctx.volume_request(&unique("attach-limit-extra"), None))
        .await?;
    let req = ControllerPublishVolumeRequest {
        volume_id: extra.volume_id,
        node_id: info.node_id,
        volume_capability: Some(writer()),
        ..Default::default()
    };
    expect_code(
        ctx.controller().controller_publish_volume(req).await,
        Code::ResourceExhausted,
    )
}

pub(super) async fn node_does_not_exist(ctx: &Ctx) -> SpecResult {
    let v = ctx
        .create_volume(ctx.volume_request(&unique("no-such-node"), None))
        .await?;
    let req = ControllerPublishVolumeRequest {
        volume_id: v.volume_id,
        node_id: "some-fake-node-id".into(),
        volume_capability: Some(writer()),
        ..Default::default()
    };
    expect_code(
        ctx.controller().controller_publish_volume(req).await,
        Code::NotFound,
    )
}

pub(super) async fn volume_does_not_exist(ctx: &Ctx) -> SpecResult {
    let req = ControllerPublishVolumeRequest {
        volume_id: "some-vol-id".into(),
        node_id: ctx.node_id().await?,
        volume_capability: Some(writer()),
        ..Default::default()
    };
    expect_code(
        ctx.controller().controller_publish_volume(req).await,
        Code::NotFound,
    )
}

pub(super) async fn incompatible_republish(ctx: &Ctx) -> SpecResult {
    let v = ctx
        .create_volume(ctx.volume_request(&unique("incompatible"), None))
        .await?;
    let node = ctx.node_id().await?;
    ctx.publish(&v.volume_id, &node, false).await?;
    let req = ControllerPublishVolumeRequest {
        volume_id: v.volume_id,
        node_id: node,
        volume_capability: Some(writer()),
        readonly: true,
        ..Default::default()
    };
    expect_code(
        ctx.controller().controller_publish_volume(req).await,
        Code::AlreadyExists,
    )
}

async fn lifecycle(ctx: &Ctx, repeats: usize) -> SpecResult {
    let name = unique("lifecycle");
    let mut volume = None;
    for _ in 0..repeats {
        volume = Some(ctx.create_volume(ctx.volume_request(&name, None)).await?);
    }
    let Some(volume) = volume else { return Ok(()) };
    let node = ctx.node_id().await?;
    let publish = ControllerPublishVolumeRequest {
        volume_id: volume.volume_id.clone(),
        node_id: node.clone(),
        volume_capability: Some(writer()),
        ..Default::default()
    };
    for _ in 0..repeats {
        ctx.controller()
            .controller_publish_volume(publish.clone())
            .await?;
    }
    let unpublish = ControllerUnpublishVolumeRequest {
        volume_id: volume.volume_id.clone(),
        node_id: node,
        ..Default::default()
    };
    for _ in 0..repeats {
        ctx.controller()
            .controller_unpublish_volume(unpublish.clone())
            .await?;
    }
    let delete = DeleteVolumeRequest {
        volume_id: volume.volume_id,
        ..Default::default()
    };
    for _ in 0..repeats {
        ctx.controller().delete_volume(delete.clone()).await?;
    }
    Ok(())
}

pub(super) async fn lifecycle_works(ctx: &Ctx) -> SpecResult {
    lifecycle(ctx, 1).await
}

pub(super) async fn lifecycle_idempotent(ctx: &Ctx) -> SpecResult {
    lifecycle(ctx, REPEATS).await
}
