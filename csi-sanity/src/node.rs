//! Node Service specs.

use rwxnfs_proto::csi::{NodeGetCapabilitiesRequest, NodeGetInfoRequest, node_service_capability};

mod checks;

use crate::{
    context::{Ctx, Need, NodeCap as N},
    specs::{Check::NotWritten, Spec, check, spec},
    verdict::{SpecResult, ensure, fail},
};

const EXPAND: Need = Need::Node(N::ExpandVolume);
const STATS: Need = Need::Node(N::GetVolumeStats);
const MULTI_WRITER: Need = Need::Node(N::SingleNodeMultiWriter);

pub(crate) fn specs() -> Vec<Spec> {
    vec![
        spec(
            "Node Service NodeExpandVolume should fail when no volume id is provided",
            &[EXPAND],
            NotWritten,
        ),
        spec(
            "Node Service NodeExpandVolume should fail when no volume path is provided",
            &[EXPAND],
            NotWritten,
        ),
        spec(
            "Node Service NodeExpandVolume should fail when volume is not found",
            &[EXPAND],
            NotWritten,
        ),
        spec(
            "Node Service NodeExpandVolume should work if node-expand is called after node-publish",
            &[EXPAND],
            NotWritten,
        ),
        spec(
            "Node Service NodeGetCapabilities should return appropriate capabilities",
            &[],
            check!(node_capabilities),
        ),
        spec(
            "Node Service NodeGetInfo should return appropriate values",
            &[],
            check!(node_info),
        ),
        spec(
            "Node Service NodeGetVolumeStats should fail when no volume id is provided",
            &[STATS],
            check!(checks::stats_no_volume_id),
        ),
        spec(
            "Node Service NodeGetVolumeStats should fail when no volume path is provided",
            &[STATS],
            check!(checks::stats_no_path),
        ),
        spec(
            "Node Service NodeGetVolumeStats should fail when volume does not exist on the specified path",
            &[STATS],
            check!(checks::stats_wrong_path),
        ),
        spec(
            "Node Service NodeGetVolumeStats should fail when volume is not found",
            &[STATS],
            check!(checks::stats_volume_not_found),
        ),
        spec(
            "Node Service NodePublishVolume should fail when no target path is provided",
            &[],
            check!(checks::publish_no_target),
        ),
        spec(
            "Node Service NodePublishVolume should fail when no volume capability is provided",
            &[],
            check!(checks::publish_no_capability),
        ),
        spec(
            "Node Service NodePublishVolume should fail when no volume id is provided",
            &[],
            check!(checks::publish_no_volume_id),
        ),
        spec(
            "Node Service NodePublishVolume with single node multi writer capability should fail when volume with single node single writer access mode is already mounted at a different target path",
            &[MULTI_WRITER],
            check!(checks::single_writer_second_target),
        ),
        spec(
            "Node Service NodeStageVolume should fail when no staging target path is provided",
            &[Need::Node(N::StageUnstageVolume)],
            check!(checks::stage_no_path),
        ),
        spec(
            "Node Service NodeStageVolume should fail when no volume capability is provided",
            &[Need::Node(N::StageUnstageVolume)],
            check!(checks::stage_no_capability),
        ),
        spec(
            "Node Service NodeStageVolume should fail when no volume id is provided",
            &[Need::Node(N::StageUnstageVolume)],
            check!(checks::stage_no_volume_id),
        ),
        spec(
            "Node Service NodeUnpublishVolume should fail when no target path is provided",
            &[],
            check!(checks::unpublish_no_target),
        ),
        spec(
            "Node Service NodeUnpublishVolume should fail when no volume id is provided",
            &[],
            check!(checks::unpublish_no_volume_id),
        ),
        spec(
            "Node Service NodeUnpublishVolume should remove target path",
            &[],
            check!(checks::unpublish_removes_target),
        ),
        spec(
            "Node Service NodeUnstageVolume should fail when no staging target path is provided",
            &[Need::Node(N::StageUnstageVolume)],
            check!(checks::unstage_no_path),
        ),
        spec(
            "Node Service NodeUnstageVolume should fail when no volume id is provided",
            &[Need::Node(N::StageUnstageVolume)],
            check!(checks::unstage_no_volume_id),
        ),
        spec(
            "Node Service should be idempotent",
            &[],
            check!(checks::idempotent),
        ),
        spec("Node Service should work", &[], check!(checks::works)),
    ]
}

/// Every advertised capability is a known RPC type.
async fn node_capabilities(ctx: &Ctx) -> SpecResult {
    let caps = ctx
        .node()
        .node_get_capabilities(NodeGetCapabilitiesRequest {})
        .await?
        .into_inner()
        .capabilities;
    for cap in caps {
        let Some(node_service_capability::Type::Rpc(rpc)) = cap.r#type else {
            return fail("a node capability has no type");
        };
        ensure(
            N::try_from(rpc.r#type).is_ok_and(|t| t != N::Unknown),
            || format!("unknown node capability {}", rpc.r#type),
        )?;
    }
    Ok(())
}

/// A node id is given; max_volumes_per_node is not negative.
async fn node_info(ctx: &Ctx) -> SpecResult {
    let info = ctx
        .node()
        .node_get_info(NodeGetInfoRequest {})
        .await?
        .into_inner();
    ensure(!info.node_id.is_empty(), || "the node id is empty".into())?;
    ensure(info.max_volumes_per_node >= 0, || {
        format!(
            "max_volumes_per_node is negative: {}",
            info.max_volumes_per_node
        )
    })
}
