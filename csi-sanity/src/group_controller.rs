//! GroupController Service specs.

use rwxnfs_proto::csi::{
    GroupControllerGetCapabilitiesRequest, group_controller_service_capability,
};

use crate::{
    context::{Ctx, GroupCap as G, Need},
    specs::{Check::NotWritten, Spec, check, spec},
    verdict::{SpecResult, ensure, fail},
};

const SERVICE: Need = Need::GroupControllerService;
const GROUP_SNAPSHOT: Need = Need::Group(G::CreateDeleteGetVolumeGroupSnapshot);

pub(crate) fn specs() -> Vec<Spec> {
    vec![
        spec(
            "GroupController Service [GroupController Server] GroupControllerGetCapabilities should return appropriate capabilities",
            &[SERVICE],
            check!(group_capabilities),
        ),
        spec(
            "GroupController Service [GroupController VolumeGroupSnapshots] CreateVolumeGroupSnapshot should fail when no name is provided",
            &[SERVICE, GROUP_SNAPSHOT],
            NotWritten,
        ),
        spec(
            "GroupController Service [GroupController VolumeGroupSnapshots] DeleteVolumeGroupSnapshot should fail when no volume id is provided",
            &[SERVICE, GROUP_SNAPSHOT],
            NotWritten,
        ),
        spec(
            "GroupController Service [GroupController VolumeGroupSnapshots] DeleteVolumeGroupSnapshot should succeed when an invalid volume id is used",
            &[SERVICE, GROUP_SNAPSHOT],
            NotWritten,
        ),
        spec(
            "GroupController Service [GroupController VolumeGroupSnapshots] GetVolumeGroupSnapshot should fail when an invalid volume id is used",
            &[SERVICE, GROUP_SNAPSHOT],
            NotWritten,
        ),
        spec(
            "GroupController Service [GroupController VolumeGroupSnapshots] GetVolumeGroupSnapshot should fail when no volume id is provided",
            &[SERVICE, GROUP_SNAPSHOT],
            NotWritten,
        ),
    ]
}

async fn group_capabilities(ctx: &Ctx) -> SpecResult {
    let caps = ctx
        .group_controller()
        .group_controller_get_capabilities(GroupControllerGetCapabilitiesRequest {})
        .await?
        .into_inner()
        .capabilities;
    for cap in caps {
        let Some(group_controller_service_capability::Type::Rpc(rpc)) = cap.r#type else {
            return fail("a group controller capability has no type");
        };
        ensure(
            G::try_from(rpc.r#type).is_ok_and(|t| t != G::Unknown),
            || format!("unknown group controller capability {}", rpc.r#type),
        )?;
    }
    Ok(())
}
