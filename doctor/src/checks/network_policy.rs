//! RWX030, RWX031: NetworkPolicies that select an NFS server or a driver pod and leave no rule
//! for 2049 (or the agent port), or for ambient's HBONE port 15008.

use k8s_openapi::{
    api::networking::v1::{NetworkPolicy, NetworkPolicyPort},
    apimachinery::pkg::util::intstr::IntOrString,
};
use serde_json::json;

use crate::{
    context::Context,
    finding::{Finding, Fix, ObjectRef, Severity},
    istio::{self, HBONE_PORT},
    workload::{Workload, selects},
};

use super::nfs_server::{NFS_PORT, is_nfs_server};

#[derive(Clone, Copy, PartialEq, Eq)]
enum Direction {
    Ingress,
    Egress,
}

impl Direction {
    fn key(self) -> &'static str {
        match self {
            Direction::Ingress => "ingress",
            Direction::Egress => "egress",
        }
    }
}

pub fn check(ctx: &Context<'_>) -> Vec<Finding> {
    let mut out = Vec::new();
    for w in &ctx.workloads {
        if w.host_network() {
            continue;
        }
        if is_nfs_server(ctx, w) {
            out.extend(blocked(
                ctx,
                w,
                Direction::Ingress,
                NFS_PORT,
                "RWX030",
                "NFS clients reach this server on it",
            ));
        }
        if w.driver().is_some() {
            for port in &ctx.traffic.tcp_ports {
                out.extend(blocked(
                    ctx,
                    w,
                    Direction::Egress,
                    i32::from(*port),
                    "RWX030",
                    "the driver's NFS and agent traffic leaves on it",
                ));
            }
        }
        let meshed = is_nfs_server(ctx, w) || w.driver().is_some();
        if meshed && istio::ambient(ctx.objects.namespace(&w.namespace), w) {
            out.extend(blocked(
                ctx,
                w,
                Direction::Ingress,
                i32::from(HBONE_PORT),
                "RWX031",
                "ambient mode delivers mesh traffic to the pod over HBONE on it",
            ));
        }
    }
    out
}

/// A finding when policies select `w` in `direction` and none of them allows `port`.
fn blocked(
    ctx: &Context<'_>,
    w: &Workload<'_>,
    direction: Direction,
    port: i32,
    code: &'static str,
    why: &str,
) -> Option<Finding> {
    let selecting: Vec<&NetworkPolicy> = ctx
        .objects
        .network_policies
        .iter()
        .filter(|np| np.metadata.namespace.as_deref().unwrap_or("default") == w.namespace)
        .filter(|np| applies(np, direction) && selects_workload(np, w))
        .collect();
    let first = selecting.first()?;
    if selecting.iter().any(|np| allows(np, direction, port, w)) {
        return None;
    }
    let object = ObjectRef::new(
        "NetworkPolicy",
        Some(&w.namespace),
        first.metadata.name.as_deref().unwrap_or(""),
    );
    let rule = json!({"ports": [{"protocol": "TCP", "port": port}]});
    let has_rules = rules(first, direction).is_some();
    let patch = if has_rules {
        json!([{"op": "add", "path": format!("/spec/{}/-", direction.key()), "value": rule}])
    } else {
        json!([{"op": "add", "path": format!("/spec/{}", direction.key()), "value": [rule]}])
    };
    Some(Finding {
        code,
        severity: Severity::Error,
        object,
        problem: format!(
            "selects {} and allows no {} traffic on TCP port {port}; {why} (narrow the added rule's peers to your nodes or servers if you like)",
            w.object,
            direction.key()
        ),
        fix: Fix::patch(
            &ObjectRef::new(
                "NetworkPolicy",
                Some(&w.namespace),
                first.metadata.name.as_deref().unwrap_or(""),
            ),
            "json",
            patch,
        ),
    })
}

fn selects_workload(np: &NetworkPolicy, w: &Workload<'_>) -> bool {
    np.spec
        .as_ref()
        .is_some_and(|s| selects(&s.pod_selector.clone().unwrap_or_default(), w.labels()))
}

/// Whether a policy restricts `direction`: Ingress always unless policyTypes says otherwise,
/// Egress when listed or when egress rules exist without policyTypes.
fn applies(np: &NetworkPolicy, direction: Direction) -> bool {
    let Some(spec) = &np.spec else { return false };
    match &spec.policy_types {
        Some(types) => types
            .iter()
            .any(|t| t.eq_ignore_ascii_case(direction.key())),
        None => direction == Direction::Ingress || spec.egress.is_some(),
    }
}

/// The ports of each rule in `direction` (a rule without ports allows every port).
fn rules(np: &NetworkPolicy, direction: Direction) -> Option<Vec<Option<&Vec<NetworkPolicyPort>>>> {
    let spec = np.spec.as_ref()?;
    match direction {
        Direction::Ingress => spec
            .ingress
            .as_ref()
            .map(|r| r.iter().map(|r| r.ports.as_ref()).collect()),
        Direction::Egress => spec
            .egress
            .as_ref()
            .map(|r| r.iter().map(|r| r.ports.as_ref()).collect()),
    }
}

fn allows(np: &NetworkPolicy, direction: Direction, port: i32, w: &Workload<'_>) -> bool {
    let Some(rules) = rules(np, direction) else {
        return false;
    };
    rules.into_iter().any(|ports| match ports {
        None => true,
        Some(ports) if ports.is_empty() => true,
        Some(ports) => ports.iter().any(|p| port_matches(p, port, w)),
    })
}

fn port_matches(p: &NetworkPolicyPort, port: i32, w: &Workload<'_>) -> bool {
    if p.protocol.as_deref().is_some_and(|proto| proto != "TCP") {
        return false;
    }
    match &p.port {
        None => true,
        Some(IntOrString::Int(n)) => {
            *n == port || p.end_port.is_some_and(|end| *n <= port && port <= end)
        }
        Some(IntOrString::String(name)) => w
            .spec
            .containers
            .iter()
            .flat_map(|c| c.ports.iter().flatten())
            .any(|cp| cp.name.as_deref() == Some(name) && cp.container_port == port),
    }
}
