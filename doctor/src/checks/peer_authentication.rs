//! RWX011: an NFS server in the mesh under STRICT mutual TLS for port 2049. Node plugins mount
//! from the host network, without a proxy, so STRICT refuses every mount.

use serde_json::json;

use crate::{
    context::Context,
    finding::{Finding, Fix, ObjectRef, Severity},
    istio::{self, ROOT_NAMESPACE},
    objects::PeerAuthentication,
    workload::Workload,
};

use super::nfs_server::{NFS_PORT, is_nfs_server};

pub fn check(ctx: &Context<'_>) -> Vec<Finding> {
    let Some(policies) = ctx.objects.peer_authentications.as_deref() else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for w in &ctx.workloads {
        let ns = ctx.objects.namespace(&w.namespace);
        let sidecar = istio::sidecar_injected(ns, w);
        if !is_nfs_server(ctx, w) || !(sidecar || istio::ambient(ns, w)) {
            continue;
        }
        let Some((policy, workload_level)) = strict_for_nfs(policies, w) else {
            continue;
        };
        let object = policy_ref(policy);
        let fix = if !sidecar {
            let patch =
                w.pod_patch(json!({"metadata": {"labels": {istio::DATAPLANE_MODE: "none"}}}));
            Fix::patch(&w.object, "strategic", patch)
        } else if workload_level {
            let patch =
                json!({"spec": {"portLevelMtls": {NFS_PORT.to_string(): {"mode": "PERMISSIVE"}}}});
            Fix::patch(&object, "merge", patch)
        } else {
            Fix::command(new_policy(w))
        };
        out.push(Finding {
            code: "RWX011",
            severity: Severity::Error,
            object,
            problem: format!(
                "STRICT mutual TLS applies to port {NFS_PORT} of NFS server {}: nodes mount from the host network without a proxy, so every mount is refused; allow plain TCP on {NFS_PORT} (port-level PERMISSIVE or DISABLE)",
                w.object
            ),
            fix,
        });
    }
    out
}

fn policy_ref(p: &PeerAuthentication) -> ObjectRef {
    ObjectRef::new(
        "PeerAuthentication",
        Some(p.metadata.namespace.as_deref().unwrap_or("default")),
        p.metadata.name.as_deref().unwrap_or(""),
    )
}

fn selector_labels(p: &PeerAuthentication) -> Option<&std::collections::BTreeMap<String, String>> {
    p.spec
        .selector
        .as_ref()
        .and_then(|s| s.match_labels.as_ref())
        .filter(|l| !l.is_empty())
}

/// The policy that makes 2049 STRICT for `w`, and whether it is a workload-level one. Istio
/// takes the workload policy over the namespace's over the mesh's; UNSET inherits.
fn strict_for_nfs<'p>(
    policies: &'p [PeerAuthentication],
    w: &Workload<'_>,
) -> Option<(&'p PeerAuthentication, bool)> {
    let in_ns = |p: &&PeerAuthentication| {
        p.metadata.namespace.as_deref().unwrap_or("default") == w.namespace
    };
    let workload = policies.iter().filter(in_ns).find(|p| {
        selector_labels(p).is_some_and(|sel| sel.iter().all(|(k, v)| w.labels().get(k) == Some(v)))
    });
    let namespace = policies
        .iter()
        .filter(in_ns)
        .find(|p| selector_labels(p).is_none());
    let mesh = policies.iter().find(|p| {
        p.metadata.namespace.as_deref() == Some(ROOT_NAMESPACE) && selector_labels(p).is_none()
    });
    let port_mode = workload.and_then(|p| {
        let port = p
            .spec
            .port_level_mtls
            .as_ref()?
            .get(&NFS_PORT.to_string())?;
        mode_of(port.mode.as_deref()).map(|m| (p, m, true))
    });
    let chain = [(workload, true), (namespace, false), (mesh, false)];
    let decided = port_mode.or_else(|| {
        chain.into_iter().find_map(|(p, level)| {
            let p = p?;
            let mode = mode_of(p.spec.mtls.as_ref().and_then(|m| m.mode.as_deref()))?;
            Some((p, mode, level))
        })
    })?;
    (decided.1 == "STRICT").then_some((decided.0, decided.2))
}

/// The mode, or `None` for UNSET (inherit).
fn mode_of(mode: Option<&str>) -> Option<&str> {
    mode.filter(|m| *m != "UNSET")
}

/// `kubectl apply` of a workload-level policy that keeps the rest STRICT and 2049 PERMISSIVE.
fn new_policy(w: &Workload<'_>) -> String {
    let labels: serde_json::Map<String, serde_json::Value> = w
        .labels()
        .iter()
        .filter(|(k, _)| k.as_str() != "pod-template-hash")
        .map(|(k, v)| (k.clone(), json!(v)))
        .collect();
    let policy = json!({
        "apiVersion": "security.istio.io/v1",
        "kind": "PeerAuthentication",
        "metadata": {"name": format!("{}-nfs", w.object.name), "namespace": w.namespace},
        "spec": {
            "selector": {"matchLabels": labels},
            "mtls": {"mode": "STRICT"},
            "portLevelMtls": {NFS_PORT.to_string(): {"mode": "PERMISSIVE"}}
        }
    });
    format!("kubectl apply -f - <<'EOF'\n{policy}\nEOF")
}
