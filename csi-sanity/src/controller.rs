//! Controller Service, ExpandVolume and ModifyVolume specs.

use rwxnfs_proto::csi::{ControllerGetCapabilitiesRequest, controller_service_capability};

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

pub fn specs() -> Vec<Spec> {
    vec![
        spec(
            cs!("ControllerGetCapabilities should return appropriate capabilities"),
            &[SERVICE],
            check!(controller_capabilities),
        ),
        spec(
            cs!("ControllerPublishVolume should fail when no node id is provided"),
            &[SERVICE, PUBLISH],
            NotWritten,
        ),
        spec(
            cs!("ControllerPublishVolume should fail when no volume capability is provided"),
            &[SERVICE, PUBLISH],
            NotWritten,
        ),
        spec(
            cs!("ControllerPublishVolume should fail when no volume id is provided"),
            &[SERVICE, PUBLISH],
            NotWritten,
        ),
        spec(
            cs!(
                "ControllerPublishVolume should fail when publishing more volumes than the node max attach limit"
            ),
            &[SERVICE, CREATE, PUBLISH],
            NotWritten,
        ),
        spec(
            cs!("ControllerPublishVolume should fail when the node does not exist"),
            &[SERVICE, CREATE, PUBLISH],
            NotWritten,
        ),
        spec(
            cs!("ControllerPublishVolume should fail when the volume does not exist"),
            &[SERVICE, PUBLISH],
            NotWritten,
        ),
        spec(
            cs!(
                "ControllerPublishVolume should fail when the volume is already published but is incompatible"
            ),
            &[SERVICE, CREATE, PUBLISH],
            NotWritten,
        ),
        spec(
            cs!("ControllerUnpublishVolume should fail when no volume id is provided"),
            &[SERVICE, PUBLISH],
            NotWritten,
        ),
        spec(
            cs!("CreateVolume should create volume from an existing source snapshot"),
            &[SERVICE, CREATE, SNAPSHOT],
            NotWritten,
        ),
        spec(
            cs!("CreateVolume should create volume from an existing source volume"),
            &[SERVICE, CREATE, CLONE],
            NotWritten,
        ),
        spec(
            cs!("CreateVolume should create volume with a volume attribute class"),
            &[SERVICE, CREATE, MODIFY],
            NotWritten,
        ),
        spec(
            cs!("CreateVolume should fail when no name is provided"),
            &[SERVICE, CREATE],
            NotWritten,
        ),
        spec(
            cs!("CreateVolume should fail when no volume capabilities are provided"),
            &[SERVICE, CREATE],
            NotWritten,
        ),
        spec(
            cs!(
                "CreateVolume should fail when requesting to create a volume with already existing name and different capacity"
            ),
            &[SERVICE, CREATE],
            NotWritten,
        ),
        spec(
            cs!("CreateVolume should fail when the volume source snapshot is not found"),
            &[SERVICE, CREATE, SNAPSHOT],
            NotWritten,
        ),
        spec(
            cs!("CreateVolume should fail when the volume source volume is not found"),
            &[SERVICE, CREATE, CLONE],
            NotWritten,
        ),
        spec(
            cs!("CreateVolume should not create volume with an invalid volume attribute class"),
            &[SERVICE, CREATE, MODIFY],
            NotWritten,
        ),
        spec(
            cs!("CreateVolume should not fail when creating volume with maximum-length name"),
            &[SERVICE, CREATE],
            NotWritten,
        ),
        spec(
            cs!(
                "CreateVolume should not fail when requesting to create a volume with already existing name and same capacity"
            ),
            &[SERVICE, CREATE],
            NotWritten,
        ),
        spec(
            cs!("CreateVolume should return appropriate values SingleNodeWriter NoCapacity"),
            &[SERVICE, CREATE],
            NotWritten,
        ),
        spec(
            cs!("CreateVolume should return appropriate values SingleNodeWriter WithCapacity 1Gi"),
            &[SERVICE, CREATE],
            NotWritten,
        ),
        spec(
            cs!("DeleteVolume should fail when no volume id is provided"),
            &[SERVICE, CREATE],
            NotWritten,
        ),
        spec(
            cs!("DeleteVolume should return appropriate values (no optional values added)"),
            &[SERVICE, CREATE],
            NotWritten,
        ),
        spec(
            cs!("DeleteVolume should succeed when an invalid volume id is used"),
            &[SERVICE, CREATE],
            NotWritten,
        ),
        spec(
            cs!("GetCapacity should return capacity (no optional values added)"),
            &[SERVICE, CAPACITY],
            NotWritten,
        ),
        spec(
            cs!(
                "ListVolumes check the presence of new volumes and absence of deleted ones in the volume list"
            ),
            &[SERVICE, CREATE, LIST],
            NotWritten,
        ),
        spec(
            cs!(
                "ListVolumes pagination should detect volumes added between pages and accept tokens when the last volume from a page is deleted"
            ),
            &[SERVICE, CREATE, LIST],
            NotWritten,
        ),
        spec(
            cs!("ListVolumes should fail when an invalid starting_token is passed"),
            &[SERVICE, LIST],
            NotWritten,
        ),
        spec(
            cs!("ListVolumes should return appropriate values (no optional values added)"),
            &[SERVICE, LIST],
            NotWritten,
        ),
        spec(
            cs!("ValidateVolumeCapabilities should fail when no volume capabilities are provided"),
            &[SERVICE, CREATE],
            NotWritten,
        ),
        spec(
            cs!("ValidateVolumeCapabilities should fail when no volume id is provided"),
            &[SERVICE],
            NotWritten,
        ),
        spec(
            cs!("ValidateVolumeCapabilities should fail when the requested volume does not exist"),
            &[SERVICE],
            NotWritten,
        ),
        spec(
            cs!(
                "ValidateVolumeCapabilities should return appropriate values (no optional values added)"
            ),
            &[SERVICE, CREATE],
            NotWritten,
        ),
        spec(
            cs!("volume lifecycle should be idempotent"),
            &[SERVICE, CREATE],
            NotWritten,
        ),
        spec(
            cs!("volume lifecycle should work"),
            &[SERVICE, CREATE],
            NotWritten,
        ),
        spec(
            "ExpandVolume [Controller Server] should fail if no capacity range is given",
            &[SERVICE, EXPAND],
            NotWritten,
        ),
        spec(
            "ExpandVolume [Controller Server] should fail if no volume id is given",
            &[SERVICE, EXPAND],
            NotWritten,
        ),
        spec(
            "ExpandVolume [Controller Server] should work",
            &[SERVICE, CREATE, EXPAND],
            NotWritten,
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
