//! RWX010: an NFS server pod in the cluster behind an Istio sidecar.

use k8s_openapi::{api::core::v1::Service, apimachinery::pkg::util::intstr::IntOrString};
use serde_json::json;

use crate::{
    context::Context,
    finding::{Finding, Fix, Severity},
    istio::{self, joined, port_list},
    workload::{Workload, map_selects},
};

pub const NFS_PORT: i32 = 2049;
/// The ports an NFS server may serve, besides 2049: the portmapper and mountd.
pub const NFS_SIDE_PORTS: [i32; 2] = [111, 20048];

/// The NFS ports a pod serves: its container ports among 2049/111/20048, and the target ports
/// of Services that select it.
pub fn served_ports(ctx: &Context<'_>, w: &Workload<'_>) -> Vec<i32> {
    let mut ports: Vec<i32> = w
        .spec
        .containers
        .iter()
        .flat_map(|c| c.ports.iter().flatten())
        .map(|p| p.container_port)
        .filter(|p| *p == NFS_PORT || NFS_SIDE_PORTS.contains(p))
        .collect();
    for svc in services_of(ctx, w) {
        for p in svc.spec.iter().flat_map(|s| s.ports.iter().flatten()) {
            let target = match &p.target_port {
                Some(IntOrString::Int(t)) => *t,
                Some(IntOrString::String(_)) => continue,
                None => p.port,
            };
            if target == NFS_PORT || NFS_SIDE_PORTS.contains(&target) {
                ports.push(target);
            }
        }
    }
    ports.sort_unstable();
    ports.dedup();
    ports
}

/// A pod is an NFS server when it serves 2049.
pub fn is_nfs_server(ctx: &Context<'_>, w: &Workload<'_>) -> bool {
    w.driver().is_none() && served_ports(ctx, w).contains(&NFS_PORT)
}

fn services_of<'a>(ctx: &'a Context<'_>, w: &'a Workload<'_>) -> impl Iterator<Item = &'a Service> {
    ctx.objects.services.iter().filter(move |s| {
        s.metadata.namespace.as_deref().unwrap_or("default") == w.namespace
            && s.spec
                .as_ref()
                .and_then(|s| s.selector.as_ref())
                .is_some_and(|sel| map_selects(sel, w.labels()))
    })
}

pub fn check(ctx: &Context<'_>) -> Vec<Finding> {
    let mut out = Vec::new();
    for w in &ctx.workloads {
        if !is_nfs_server(ctx, w)
            || !istio::sidecar_injected(ctx.objects.namespace(&w.namespace), w)
        {
            continue;
        }
        let existing = w.annotation(istio::EXCLUDE_INBOUND_PORTS);
        let (have, all) = port_list(existing);
        let missing: Vec<i32> = served_ports(ctx, w)
            .into_iter()
            .filter(|p| u16::try_from(*p).is_ok_and(|p| !have.contains(&p)))
            .collect();
        // `*` on excludeInboundPorts would be odd but does exclude everything.
        if all || missing.is_empty() {
            continue;
        }
        let value = joined(existing, missing.iter().map(i32::to_string));
        let patch = w
            .pod_patch(json!({"metadata": {"annotations": {istio::EXCLUDE_INBOUND_PORTS: value}}}));
        out.push(Finding {
            code: "RWX010",
            severity: Severity::Error,
            object: w.object.clone(),
            problem: format!(
                "NFS server pod with an Istio sidecar: inbound port(s) {} are captured by the proxy, so NFS clients' connections end at the proxy and the server sees the proxy's address instead of the node's, which the export's access list then refuses (or grants to everyone behind it)",
                missing.iter().map(i32::to_string).collect::<Vec<_>>().join(",")
            ),
            fix: Fix::patch(&w.object, "strategic", patch),
        });
    }
    out
}
