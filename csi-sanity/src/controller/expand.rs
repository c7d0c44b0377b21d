//! ControllerExpandVolume checks.

use rwxnfs_proto::csi::{CapacityRange, ControllerExpandVolumeRequest};
use tonic::Code;

use crate::{
    context::Ctx,
    resources::{unique, writer},
    verdict::{SpecResult, ensure, expect_code},
};

pub(super) async fn no_capacity_range(ctx: &Ctx) -> SpecResult {
    let req = ControllerExpandVolumeRequest {
        volume_id: "id".into(),
        ..Default::default()
    };
    expect_code(
        ctx.controller().controller_expand_volume(req).await,
        Code::InvalidArgument,
    )
}

pub(super) async fn no_volume_id(ctx: &Ctx) -> SpecResult {
    let req = ControllerExpandVolumeRequest {
        capacity_range: Some(CapacityRange {
            required_bytes: ctx.config.test_volume_expand_size,
            limit_bytes: 0,
        }),
        ..Default::default()
    };
    expect_code(
        ctx.controller().controller_expand_volume(req).await,
        Code::InvalidArgument,
    )
}

pub(super) async fn works(ctx: &Ctx) -> SpecResult {
    let size = ctx.config.test_volume_size;
    let grown = ctx.config.test_volume_expand_size;
    let v = ctx
        .create_volume(ctx.volume_request(&unique("expand"), Some(size)))
        .await?;
    let req = ControllerExpandVolumeRequest {
        volume_id: v.volume_id,
        capacity_range: Some(CapacityRange {
            required_bytes: grown,
            limit_bytes: 0,
        }),
        volume_capability: Some(writer()),
        ..Default::default()
    };
    let r = ctx
        .controller()
        .controller_expand_volume(req)
        .await?
        .into_inner();
    ensure(r.capacity_bytes >= grown, || {
        format!("asked for {grown} bytes, got {}", r.capacity_bytes)
    })
}
