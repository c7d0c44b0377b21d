//! RWX001–RWX004, RWX091: the driver's pods in a mesh without the exclusions that keep its NFS
//! and agent traffic away from the proxy.

use serde_json::json;

use crate::{
    context::{Context, TrafficSource},
    finding::{Finding, Fix, Severity},
    istio::{self, joined, port_list, uncovered_ranges},
    workload::Workload,
};

pub fn check(ctx: &Context<'_>) -> Vec<Finding> {
    let mut out = Vec::new();
    let mut meshed = None;
    for w in &ctx.workloads {
        if w.driver().is_none() {
            continue;
        }
        let found = check_workload(ctx, w);
        let ns = ctx.objects.namespace(&w.namespace);
        if istio::sidecar_injected(ns, w) || istio::ambient(ns, w) {
            meshed.get_or_insert(w);
        }
        out.extend(found);
    }
    if let (Some(w), TrafficSource::Defaults) = (meshed, &ctx.traffic_source) {
        out.push(Finding {
            code: "RWX091",
            severity: Severity::Info,
            object: w.object.clone(),
            problem: format!(
                "no controller configuration (a ConfigMap with key {}) among the objects: the exclusions were checked for NFSv4.1 and agent port {}, and the VIPs were not checked",
                crate::context::CONFIG_KEY,
                crate::context::DEFAULT_AGENT_PORT
            ),
            fix: Fix::command("include the controller's ConfigMap in the input (e.g. rwxnfs doctor -f manifests/ -f controller-configmap.yaml)"),
        });
    }
    out
}

/// The findings for one driver pod (or template), against the context's traffic.
pub fn check_workload(ctx: &Context<'_>, w: &Workload<'_>) -> Vec<Finding> {
    let ns = ctx.objects.namespace(&w.namespace);
    let mut out = Vec::new();
    if istio::sidecar_injected(ns, w) {
        out.extend(outbound_ports(ctx, w));
        out.extend(outbound_ranges(ctx, w));
        out.extend(hold_application(w));
    }
    if istio::ambient(ns, w) {
        let patch = w.pod_patch(json!({"metadata": {"labels": {istio::DATAPLANE_MODE: "none"}}}));
        out.push(Finding {
            code: "RWX004",
            severity: Severity::Error,
            object: w.object.clone(),
            problem: format!(
                "driver pod in ambient mode (namespace {} or pod enrolled): ztunnel captures its connections to the agent and NFS servers; label the pod {}: none",
                w.namespace,
                istio::DATAPLANE_MODE
            ),
            fix: Fix::patch(&w.object, "strategic", patch),
        });
    }
    out
}

fn outbound_ports(ctx: &Context<'_>, w: &Workload<'_>) -> Option<Finding> {
    let existing = w.annotation(istio::EXCLUDE_OUTBOUND_PORTS);
    let (have, _) = port_list(existing);
    let missing: Vec<u16> = ctx.traffic.tcp_ports.difference(&have).copied().collect();
    if missing.is_empty() {
        return None;
    }
    let value = joined(existing, ctx.traffic.tcp_ports.iter().map(u16::to_string));
    Some(annotation_finding(
        w,
        "RWX001",
        Severity::Error,
        format!(
            "driver pod with an Istio sidecar: outbound TCP port(s) {} (NFS, agent) are not in {}, so the sidecar intercepts the controller's NFS and agent (mutual TLS) connections",
            list(&missing),
            istio::EXCLUDE_OUTBOUND_PORTS
        ),
        istio::EXCLUDE_OUTBOUND_PORTS,
        value,
    ))
}

fn outbound_ranges(ctx: &Context<'_>, w: &Workload<'_>) -> Option<Finding> {
    let existing = w.annotation(istio::EXCLUDE_OUTBOUND_RANGES);
    let missing = uncovered_ranges(existing, &ctx.traffic.ranges);
    if missing.is_empty() {
        return None;
    }
    let value = joined(existing, missing.iter().cloned());
    Some(annotation_finding(
        w,
        "RWX002",
        Severity::Error,
        format!(
            "driver pod with an Istio sidecar: the agent and NFS server address(es) {} are not in {}",
            missing.join(","),
            istio::EXCLUDE_OUTBOUND_RANGES
        ),
        istio::EXCLUDE_OUTBOUND_RANGES,
        value,
    ))
}

fn hold_application(w: &Workload<'_>) -> Option<Finding> {
    let existing = w.annotation(istio::PROXY_CONFIG);
    let mut config = existing
        .and_then(|raw| serde_yaml_ng::from_str::<serde_json::Value>(raw).ok())
        .filter(serde_json::Value::is_object)
        .unwrap_or_else(|| json!({}));
    if config.get("holdApplicationUntilProxyStarts") == Some(&json!(true)) {
        return None;
    }
    config["holdApplicationUntilProxyStarts"] = json!(true);
    Some(annotation_finding(
        w,
        "RWX003",
        Severity::Warning,
        format!(
            "driver pod with an Istio sidecar starts before its proxy: calls made in the first moments (Kubernetes API, agent) can fail; set holdApplicationUntilProxyStarts in {}",
            istio::PROXY_CONFIG
        ),
        istio::PROXY_CONFIG,
        config.to_string(),
    ))
}

fn annotation_finding(
    w: &Workload<'_>,
    code: &'static str,
    severity: Severity,
    problem: String,
    key: &str,
    value: String,
) -> Finding {
    let patch = w.pod_patch(json!({"metadata": {"annotations": {key: value}}}));
    Finding {
        code,
        severity,
        object: w.object.clone(),
        problem,
        fix: Fix::patch(&w.object, "strategic", patch),
    }
}

pub(crate) fn list(ports: &[u16]) -> String {
    ports
        .iter()
        .map(u16::to_string)
        .collect::<Vec<_>>()
        .join(",")
}
