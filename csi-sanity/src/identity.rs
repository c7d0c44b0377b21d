//! Identity Service specs.

use rwxnfs_proto::csi::{
    GetPluginCapabilitiesRequest, GetPluginInfoRequest, ProbeRequest, plugin_capability,
};

use crate::{
    context::{Ctx, PluginService},
    specs::{Spec, check, spec},
    verdict::{SpecResult, ensure, fail},
};

pub(crate) fn specs() -> Vec<Spec> {
    vec![
        spec(
            "Identity Service GetPluginCapabilities should return appropriate capabilities",
            &[],
            check!(plugin_capabilities),
        ),
        spec(
            "Identity Service GetPluginInfo should return appropriate information",
            &[],
            check!(plugin_info),
        ),
        spec(
            "Identity Service Probe should return appropriate information",
            &[],
            check!(probe),
        ),
    ]
}

/// Every capability is a known service or expansion kind.
async fn plugin_capabilities(ctx: &Ctx) -> SpecResult {
    let caps = ctx
        .identity()
        .get_plugin_capabilities(GetPluginCapabilitiesRequest {})
        .await?
        .into_inner()
        .capabilities;
    for cap in caps {
        match cap.r#type {
            Some(plugin_capability::Type::Service(s)) => ensure(
                PluginService::try_from(s.r#type).is_ok_and(|t| t != PluginService::Unknown),
                || format!("unknown plugin service capability {}", s.r#type),
            )?,
            Some(plugin_capability::Type::VolumeExpansion(e)) => ensure(
                matches!(
                    plugin_capability::volume_expansion::Type::try_from(e.r#type),
                    Ok(plugin_capability::volume_expansion::Type::Online
                        | plugin_capability::volume_expansion::Type::Offline)
                ),
                || format!("unknown volume expansion capability {}", e.r#type),
            )?,
            None => return fail("a plugin capability has no type"),
        }
    }
    Ok(())
}

/// The name is in domain-name notation and at most 63 characters; a vendor version is given.
async fn plugin_info(ctx: &Ctx) -> SpecResult {
    let info = ctx
        .identity()
        .get_plugin_info(GetPluginInfoRequest {})
        .await?
        .into_inner();
    let name = &info.name;
    ensure(!name.is_empty(), || "the plugin name is empty".into())?;
    ensure(name.len() <= 63, || {
        format!("the plugin name {name:?} is longer than 63")
    })?;
    let edge_ok = |c: Option<char>| c.is_some_and(|c| c.is_ascii_alphanumeric());
    ensure(
        edge_ok(name.chars().next())
            && edge_ok(name.chars().last())
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c)),
        || format!("the plugin name {name:?} is not in domain name notation"),
    )?;
    ensure(!info.vendor_version.is_empty(), || {
        "the vendor version is empty".into()
    })
}

/// Probe answers without an error; `ready` may be true or false (a driver waiting for a
/// dependency reports false).
async fn probe(ctx: &Ctx) -> SpecResult {
    ctx.identity().probe(ProbeRequest {}).await?;
    Ok(())
}
