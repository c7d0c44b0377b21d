//! RWX050: the node plugin off the host network. Its mounts then come from the pod's network
//! (and its sidecar, if any), the NFS server sees pod addresses instead of the node's, and the
//! per-node export access lists refuse them.

use serde_json::json;

use crate::{
    context::Context,
    finding::{Finding, Fix, Severity},
    workload::Role,
};

pub fn check(ctx: &Context<'_>) -> Vec<Finding> {
    let mut out = Vec::new();
    for w in &ctx.workloads {
        if !matches!(w.driver(), Some((Role::Node, _))) || w.host_network() {
            continue;
        }
        let patch = w.pod_patch(json!({
            "spec": {"hostNetwork": true, "dnsPolicy": "ClusterFirstWithHostNet"}
        }));
        out.push(Finding {
            code: "RWX050",
            severity: Severity::Error,
            object: w.object.clone(),
            problem: "the node plugin does not run on the host network: its NFS mounts would leave from the pod's address (through a sidecar, if injected), which the exports' per-node access lists refuse".into(),
            fix: Fix::patch(&w.object, "strategic", patch),
        });
    }
    out
}
