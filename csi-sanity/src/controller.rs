//! Controller Service, ExpandVolume and ModifyVolume specs.

use rwxnfs_proto::csi::{ControllerGetCapabilitiesRequest, controller_service_capability};

mod expand;
mod list;
mod publish;
mod volumes;

use crate::{
    context::{ControllerCap as C, Ctx, Need},
    specs::{Check::NotWritten, Spec, check, spec},
    verdict::{SpecResult, ensure},
};

const SERVICE: Need = Need::ControllerService;
const CREATE: Need = Need::Controller(C::CreateDeleteVolume);
const PUBLISH: Need = Need::Controller(C::PublishUnpublishVolume);
const LIST: Need = Need::Controller(C::ListVolumes);
const CAPACITY: Need = Need::Controller(C::GetCapacity);
const SNAPSHOT: Need = Need::Controller(C::CreateDeleteSnapshot);
const CLONE: Need = Need::Controller(C::CloneVolume);
const EXPAND: Need = Need::Controller(C::ExpandVolume);
const MODIFY: Need = Need::Controller(C::ModifyVolume);

/// A name in upstream's "Controller Service [Controller Server]" group.
macro_rules! cs {
    ($rest:literal) => {
        concat!("Controller Service [Controller Server] ", $rest)
    };
}

pub(crate) fn specs() -> Vec<Spec> {
    vec![
        spec(
            cs!("ControllerGetCapabilities should return appropriate capabilities"),
            &[SERVICE],
            check!(controller_capabilities),
        ),
        spec(
            cs!("ControllerPublishVolume should fail when no node id is provided"),
            &[SERVICE, PUBLISH],
            check!(publish::no_node_id),
        ),
        spec(
            cs!("ControllerPublishVolume should fail when no volume capability is provided"),
            &[SERVICE, PUBLISH],
            check!(publish::no_capability),
        ),
        spec(
            cs!("ControllerPublishVolume should fail when no volume id is provided"),
            &[SERVICE, PUBLISH],
            check!(publish::no_volume_id),
        ),
        spec(
            cs!(
                "ControllerPublishVolume should fail when publishing more volumes than the node max attach limit"
            ),
            &[SERVICE, CREATE, PUBLISH],
            check!(publish::max_attach_limit),
        ),
        spec(
            cs!("ControllerPublishVolume should fail when the node does not exist"),
            &[SERVICE, CREATE, PUBLISH],
            check!(publish::node_does_not_exist),
        ),
        spec(
            cs!("ControllerPublishVolume should fail when the volume does not exist"),
            &[SERVICE, PUBLISH],
            check!(publish::volume_does_not_exist),
        ),
        spec(
            cs!(
                "ControllerPublishVolume should fail when the volume is already published but is incompatible"
            ),
            &[SERVICE, CREATE, PUBLISH],
            check!(publish::incompatible_republish),
        ),
        spec(
            cs!("ControllerUnpublishVolume should fail when no volume id is provided"),
            &[SERVICE, PUBLISH],
            check!(publish::unpublish_no_volume_id),
        ),
        spec(
            cs!("CreateVolume should create volume from an existing source snapshot"),
            &[SERVICE, CREATE, SNAPSHOT],
            check!(volumes::from_snapshot),
        ),
        spec(
            cs!("CreateVolume should create volume from an existing source volume"),
            &[SERVICE, CREATE, CLONE],
            check!(volumes::from_volume),
        ),
        spec(
            cs!("CreateVolume should create volume with a volume attribute class"),
            &[SERVICE, CREATE, MODIFY],
            NotWritten,
        ),
        spec(
            cs!("CreateVolume should fail when no name is provided"),
            &[SERVICE, CREATE],
            check!(volumes::no_name),
        ),
        spec(
            cs!("CreateVolume should fail when no volume capabilities are provided"),
            &[SERVICE, CREATE],
            check!(volumes::no_capabilities),
        ),
        spec(
            cs!(
                "CreateVolume should fail when requesting to create a volume with already existing name and different capacity"
            ),
            &[SERVICE, CREATE],
            check!(volumes::same_name_different_capacity),
        ),
        spec(
            cs!("CreateVolume should fail when the volume source snapshot is not found"),
            &[SERVICE, CREATE, SNAPSHOT],
            check!(volumes::source_snapshot_not_found),
        ),
        spec(
            cs!("CreateVolume should fail when the volume source volume is not found"),
            &[SERVICE, CREATE, CLONE],
            check!(volumes::source_volume_not_found),
        ),
        spec(
            cs!("CreateVolume should not create volume with an invalid volume attribute class"),
            &[SERVICE, CREATE, MODIFY],
            NotWritten,
        ),
        spec(
            cs!("CreateVolume should not fail when creating volume with maximum-length name"),
            &[SERVICE, CREATE],
            check!(volumes::maximum_length_name),
        ),
        spec(
            cs!(
                "CreateVolume should not fail when requesting to create a volume with already existing name and same capacity"
            ),
            &[SERVICE, CREATE],
            check!(volumes::same_name_same_capacity),
        ),
        spec(
            cs!("CreateVolume should return appropriate values SingleNodeWriter NoCapacity"),
            &[SERVICE, CREATE],
            check!(volumes::no_capacity),
        ),
        spec(
            cs!("CreateVolume should return appropriate values SingleNodeWriter WithCapacity 1Gi"),
            &[SERVICE, CREATE],
            check!(volumes::with_capacity),
        ),
        spec(
            cs!("DeleteVolume should fail when no volume id is provided"),
            &[SERVICE, CREATE],
            check!(volumes::delete_no_id),
        ),
        spec(
            cs!("DeleteVolume should return appropriate values (no optional values added)"),
            &[SERVICE, CREATE],
            check!(volumes::delete_works),
        ),
        spec(
            cs!("DeleteVolume should succeed when an invalid volume id is used"),
            &[SERVICE, CREATE],
            check!(volumes::delete_invalid_id),
        ),
        spec(
            cs!("GetCapacity should return capacity (no optional values added)"),
            &[SERVICE, CAPACITY],
            check!(volumes::capacity),
        ),
        spec(
            cs!(
                "ListVolumes check the presence of new volumes and absence of deleted ones in the volume list"
            ),
            &[SERVICE, CREATE, LIST],
            check!(list::presence_and_absence),
        ),
        spec(
            cs!(
                "ListVolumes pagination should detect volumes added between pages and accept tokens when the last volume from a page is deleted"
            ),
            &[SERVICE, CREATE, LIST],
            check!(list::pagination),
        ),
        spec(
            cs!("ListVolumes should fail when an invalid starting_token is passed"),
            &[SERVICE, LIST],
            check!(list::invalid_token),
        ),
        spec(
            cs!("ListVolumes should return appropriate values (no optional values added)"),
            &[SERVICE, LIST],
            check!(list::appropriate_values),
        ),
        spec(
            cs!("ValidateVolumeCapabilities should fail when no volume capabilities are provided"),
            &[SERVICE, CREATE],
            check!(volumes::validate_no_capabilities),
        ),
        spec(
            cs!("ValidateVolumeCapabilities should fail when no volume id is provided"),
            &[SERVICE],
            check!(volumes::validate_no_id),
        ),
        spec(
            cs!("ValidateVolumeCapabilities should fail when the requested volume does not exist"),
            &[SERVICE],
            check!(volumes::validate_missing_volume),
        ),
        spec(
            cs!(
                "ValidateVolumeCapabilities should return appropriate values (no optional values added)"
            ),
            &[SERVICE, CREATE],
            check!(volumes::validate_works),
        ),
        spec(
            cs!("volume lifecycle should be idempotent"),
            &[SERVICE, CREATE],
            check!(publish::lifecycle_idempotent),
        ),
        spec(
            cs!("volume lifecycle should work"),
            &[SERVICE, CREATE],
            check!(publish::lifecycle_works),
        ),
        spec(
            "ExpandVolume [Controller Server] should fail if no capacity range is given",
            &[SERVICE, EXPAND],
            check!(expand::no_capacity_range),
        ),
        spec(
            "ExpandVolume [Controller Server] should fail if no volume id is given",
            &[SERVICE, EXPAND],
            check!(expand::no_volume_id),
        ),
        spec(
            "ExpandVolume [Controller Server] should work",
            &[SERVICE, CREATE, EXPAND],
            check!(expand::works),
        ),
        spec(
            "ModifyVolume [Controller Server] should fail if no volume id is given",
            &[SERVICE, MODIFY],
            NotWritten,
        ),
        spec(
            "ModifyVolume [Controller Server] should fail if specified mutable parameters are not supported by the volume",
            &[SERVICE, CREATE, MODIFY],
            NotWritten,
        ),
        spec(
            "ModifyVolume [Controller Server] should fail if volume does not exist",
            &[SERVICE, MODIFY],
            NotWritten,
        ),
        spec(
            "ModifyVolume [Controller Server] should fail to modify a volume created with a volume attribute class if new mutable parameters are not supported by volume",
            &[SERVICE, CREATE, MODIFY],
            NotWritten,
        ),
        spec(
            "ModifyVolume [Controller Server] should modify a volume created with a volume attribute class",
            &[SERVICE, CREATE, MODIFY],
            NotWritten,
        ),
        spec(
            "ModifyVolume [Controller Server] should modify a volume created without a volume attribute class",
            &[SERVICE, CREATE, MODIFY],
            NotWritten,
        ),
    ]
}

/// Every advertised capability is a known RPC type.
async fn controller_capabilities(ctx: &Ctx) -> SpecResult {
    let caps = ctx
        .controller()
        .controller_get_capabilities(ControllerGetCapabilitiesRequest {})
        .await?
        .into_inner()
        .capabilities;
    for cap in caps {
        let Some(controller_service_capability::Type::Rpc(rpc)) = cap.r#type else {
            return crate::verdict::fail("a controller capability has no type");
        };
        ensure(
            C::try_from(rpc.r#type).is_ok_and(|t| t != C::Unknown),
            || format!("unknown controller capability {}", rpc.r#type),
        )?;
    }
    Ok(())
}
