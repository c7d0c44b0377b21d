//! CreateVolume, DeleteVolume, ValidateVolumeCapabilities and GetCapacity checks.

use rwxnfs_proto::csi::{
    CapacityRange, DeleteVolumeRequest, GetCapacityRequest, ValidateVolumeCapabilitiesRequest,
    VolumeContentSource, volume_content_source,
};
use tonic::Code;

use crate::{
    context::Ctx,
    resources::{unique, writer},
    verdict::{SpecResult, ensure, expect_code},
};

/// CSI's limit for names; the driver must accept a name this long.
const MAX_NAME_LEN: usize = 128;

pub(super) async fn no_name(ctx: &Ctx) -> SpecResult {
    let req = ctx.volume_request("", None);
    expect_code(
        ctx.controller().create_volume(req).await,
        Code::InvalidArgument,
    )
}

pub(super) async fn no_capabilities(ctx: &Ctx) -> SpecResult {
    let mut req = ctx.volume_request(&unique("no-caps"), None);
    req.volume_capabilities.clear();
    expect_code(
        ctx.controller().create_volume(req).await,
        Code::InvalidArgument,
    )
}

pub(super) async fn no_capacity(ctx: &Ctx) -> SpecResult {
    let volume = ctx
        .create_volume(ctx.volume_request(&unique("no-capacity"), None))
        .await?;
    ensure(!volume.volume_id.is_empty(), || {
        "the volume has no id".into()
    })
}

pub(super) async fn with_capacity(ctx: &Ctx) -> SpecResult {
    let size = ctx.config.test_volume_size;
    let volume = ctx
        .create_volume(ctx.volume_request(&unique("with-capacity"), Some(size)))
        .await?;
    ensure(
        volume.capacity_bytes == 0 || volume.capacity_bytes >= size,
        || format!("asked for {size} bytes, got {}", volume.capacity_bytes),
    )
}

pub(super) async fn maximum_length_name(ctx: &Ctx) -> SpecResult {
    let name = "a".repeat(MAX_NAME_LEN);
    ctx.create_volume(ctx.volume_request(&name, None)).await?;
    Ok(())
}

pub(super) async fn same_name_same_capacity(ctx: &Ctx) -> SpecResult {
    let name = unique("same-capacity");
    let size = ctx.config.test_volume_size;
    let first = ctx
        .create_volume(ctx.volume_request(&name, Some(size)))
        .await?;
    let second = ctx
        .create_volume(ctx.volume_request(&name, Some(size)))
        .await?;
    ensure(first.volume_id == second.volume_id, || {
        format!(
            "the same request returned two volumes: {} and {}",
            first.volume_id, second.volume_id
        )
    })?;
    ensure(
        second.capacity_bytes == 0 || second.capacity_bytes >= size,
        || format!("asked for {size} bytes, got {}", second.capacity_bytes),
    )
}

pub(super) async fn same_name_different_capacity(ctx: &Ctx) -> SpecResult {
    let name = unique("different-capacity");
    let size = ctx.config.test_volume_size;
    let mut req = ctx.volume_request(&name, None);
    req.capacity_range = Some(CapacityRange {
        required_bytes: size,
        limit_bytes: size,
    });
    ctx.create_volume(req.clone()).await?;
    req.capacity_range = Some(CapacityRange {
        required_bytes: size * 2,
        limit_bytes: size * 2,
    });
    // A driver that wrongly accepts this returns the same volume id, already registered.
    expect_code(
        ctx.controller().create_volume(req).await,
        Code::AlreadyExists,
    )
}

pub(super) async fn source_snapshot_not_found(ctx: &Ctx) -> SpecResult {
    let mut req = ctx.volume_request(&unique("from-missing-snapshot"), None);
    req.volume_content_source = Some(VolumeContentSource {
        r#type: Some(volume_content_source::Type::Snapshot(
            volume_content_source::SnapshotSource {
                snapshot_id: "non-existing-snapshot-id".into(),
            },
        )),
    });
    expect_code(ctx.controller().create_volume(req).await, Code::NotFound)
}

pub(super) async fn source_volume_not_found(ctx: &Ctx) -> SpecResult {
    let mut req = ctx.volume_request(&unique("from-missing-volume"), None);
    req.volume_content_source = Some(VolumeContentSource {
        r#type: Some(volume_content_source::Type::Volume(
            volume_content_source::VolumeSource {
                volume_id: "non-existing-volume-id".into(),
            },
        )),
    });
    expect_code(ctx.controller().create_volume(req).await, Code::NotFound)
}

pub(super) async fn from_snapshot(ctx: &Ctx) -> SpecResult {
    let size = ctx.config.test_volume_size;
    let source = ctx
        .create_volume(ctx.volume_request(&unique("snap-source"), Some(size)))
        .await?;
    let snapshot = ctx
        .create_snapshot(&unique("snap"), &source.volume_id)
        .await?;
    let mut req = ctx.volume_request(&unique("from-snapshot"), Some(size));
    let content = VolumeContentSource {
        r#type: Some(volume_content_source::Type::Snapshot(
            volume_content_source::SnapshotSource {
                snapshot_id: snapshot.snapshot_id.clone(),
            },
        )),
    };
    req.volume_content_source = Some(content.clone());
    let volume = ctx.create_volume(req).await?;
    ensure(volume.content_source == Some(content), || {
        format!(
            "the new volume's content source is {:?}",
            volume.content_source
        )
    })
}

pub(super) async fn from_volume(ctx: &Ctx) -> SpecResult {
    let size = ctx.config.test_volume_size;
    let source = ctx
        .create_volume(ctx.volume_request(&unique("clone-source"), Some(size)))
        .await?;
    let mut req = ctx.volume_request(&unique("clone"), Some(size));
    let content = VolumeContentSource {
        r#type: Some(volume_content_source::Type::Volume(
            volume_content_source::VolumeSource {
                volume_id: source.volume_id.clone(),
            },
        )),
    };
    req.volume_content_source = Some(content.clone());
    let volume = ctx.create_volume(req).await?;
    ensure(volume.content_source == Some(content), || {
        format!("the clone's content source is {:?}", volume.content_source)
    })
}

pub(super) async fn delete_no_id(ctx: &Ctx) -> SpecResult {
    let req = DeleteVolumeRequest::default();
    expect_code(
        ctx.controller().delete_volume(req).await,
        Code::InvalidArgument,
    )
}

pub(super) async fn delete_invalid_id(ctx: &Ctx) -> SpecResult {
    let req = DeleteVolumeRequest {
        volume_id: "reallyfakevolumeid".into(),
        ..Default::default()
    };
    ctx.controller().delete_volume(req).await?;
    Ok(())
}

pub(super) async fn delete_works(ctx: &Ctx) -> SpecResult {
    let volume = ctx
        .create_volume(ctx.volume_request(&unique("delete"), None))
        .await?;
    let req = DeleteVolumeRequest {
        volume_id: volume.volume_id.clone(),
        ..Default::default()
    };
    ctx.controller().delete_volume(req.clone()).await?;
    // Deleting again is fine too.
    ctx.controller().delete_volume(req).await?;
    Ok(())
}

pub(super) async fn validate_no_capabilities(ctx: &Ctx) -> SpecResult {
    let volume = ctx
        .create_volume(ctx.volume_request(&unique("validate-no-caps"), None))
        .await?;
    let req = ValidateVolumeCapabilitiesRequest {
        volume_id: volume.volume_id,
        ..Default::default()
    };
    expect_code(
        ctx.controller().validate_volume_capabilities(req).await,
        Code::InvalidArgument,
    )
}

pub(super) async fn validate_no_id(ctx: &Ctx) -> SpecResult {
    let req = ValidateVolumeCapabilitiesRequest {
        volume_capabilities: vec![writer()],
        ..Default::default()
    };
    expect_code(
        ctx.controller().validate_volume_capabilities(req).await,
        Code::InvalidArgument,
    )
}

pub(super) async fn validate_missing_volume(ctx: &Ctx) -> SpecResult {
    let req = ValidateVolumeCapabilitiesRequest {
        volume_id: "some-vol-id".into(),
        volume_capabilities: vec![writer()],
        ..Default::default()
    };
    expect_code(
        ctx.controller().validate_volume_capabilities(req).await,
        Code::NotFound,
    )
}

pub(super) async fn validate_works(ctx: &Ctx) -> SpecResult {
    let volume = ctx
        .create_volume(ctx.volume_request(&unique("validate"), None))
        .await?;
    let req = ValidateVolumeCapabilitiesRequest {
        volume_id: volume.volume_id,
        volume_capabilities: vec![writer()],
        ..Default::default()
    };
    let r = ctx
        .controller()
        .validate_volume_capabilities(req)
        .await?
        .into_inner();
    ensure(r.confirmed.is_some(), || {
        format!("a mount capability was not confirmed: {}", r.message)
    })
}

pub(super) async fn capacity(ctx: &Ctx) -> SpecResult {
    let req = GetCapacityRequest {
        parameters: ctx.config.parameters.clone().into_iter().collect(),
        ..Default::default()
    };
    let r = ctx.controller().get_capacity(req).await?.into_inner();
    ensure(r.available_capacity >= 0, || {
        format!("negative capacity {}", r.available_capacity)
    })
}
