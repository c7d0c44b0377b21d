//! RWX020: a Service fronting NFS whose port Istio does not read as plain TCP. Istio picks a
//! port's protocol from `appProtocol` or the name's prefix; anything else is sniffed, which
//! delays NFS's first bytes and can misread them.

use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use serde_json::json;

use crate::{
    context::Context,
    finding::{Finding, Fix, ObjectRef, Severity},
};

use super::nfs_server::{NFS_PORT, NFS_SIDE_PORTS};

fn is_nfs(port: i32) -> bool {
    port == NFS_PORT || NFS_SIDE_PORTS.contains(&port)
}

/// `tcp` or `tcp-…` as the name, or `appProtocol: tcp`.
fn declared_tcp(name: Option<&str>, app_protocol: Option<&str>) -> bool {
    let name = name.unwrap_or("").to_ascii_lowercase();
    app_protocol.is_some_and(|a| a.eq_ignore_ascii_case("tcp"))
        || name == "tcp"
        || name.starts_with("tcp-")
}

pub fn check(ctx: &Context<'_>) -> Vec<Finding> {
    let mut out = Vec::new();
    for svc in &ctx.objects.services {
        let object = ObjectRef::new(
            "Service",
            Some(svc.metadata.namespace.as_deref().unwrap_or("default")),
            svc.metadata.name.as_deref().unwrap_or(""),
        );
        let ports = svc.spec.iter().flat_map(|s| s.ports.iter().flatten());
        for (index, p) in ports.enumerate() {
            let target = match &p.target_port {
                Some(IntOrString::Int(t)) => Some(*t),
                _ => None,
            };
            let fronts_nfs = is_nfs(p.port) || target.is_some_and(is_nfs);
            if !fronts_nfs || declared_tcp(p.name.as_deref(), p.app_protocol.as_deref()) {
                continue;
            }
            let patch = json!([{"op": "add", "path": format!("/spec/ports/{index}/appProtocol"), "value": "tcp"}]);
            out.push(Finding {
                code: "RWX020",
                severity: Severity::Warning,
                object: object.clone(),
                problem: format!(
                    "port {} ({}) fronts NFS but is neither named tcp-… nor has appProtocol: tcp, so Istio sniffs its protocol",
                    p.port,
                    p.name.as_deref().map_or("unnamed".to_owned(), |n| format!("name {n:?}"))
                ),
                fix: Fix::patch(&object, "json", patch),
            });
        }
    }
    out
}
