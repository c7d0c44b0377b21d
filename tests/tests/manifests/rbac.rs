//! Service accounts and what they may do: a small evaluator of the rendered RBAC objects.
//!
//! Both ways: every container of the controller pod holds each rule it needs, and the pod's
//! account holds nothing that none of its containers needs (what a sidecar's release asks for
//! only behind a flag or a driver capability rwxnfs does not use is not granted).

use k8s_openapi::api::{
    core::v1::Container,
    rbac::v1::{PolicyRule, RoleRef, Subject},
};

use crate::objects::{Object, Pod, Rendering, flag, name};
use crate::pods::args;

/// A rule a container needs: API group, resource, verbs; `namespaced` when it is needed in the
/// pod's namespace only (a Role grants it, and a ClusterRole would be too much), not
/// cluster-wide.
struct Need {
    group: &'static str,
    resource: &'static str,
    verbs: &'static [&'static str],
    namespaced: bool,
}

const fn cluster(
    group: &'static str,
    resource: &'static str,
    verbs: &'static [&'static str],
) -> Need {
    Need {
        group,
        resource,
        verbs,
        namespaced: false,
    }
}

const fn namespaced(
    group: &'static str,
    resource: &'static str,
    verbs: &'static [&'static str],
) -> Need {
    Need {
        group,
        resource,
        verbs,
        namespaced: true,
    }
}

const EVENTS: &[&str] = &["list", "watch", "create", "update", "patch"];
const READ: &[&str] = &["get", "list", "watch"];

// The sidecars' needs: the rules of each release's deploy/kubernetes/rbac.yaml, less the ones
// it marks optional and the flags in controller.yaml leave off.

/// external-provisioner v6.4 (external-provisioner-runner; no secrets, no referencegrants, no
/// capacity tracking: --enable-capacity is off, so none of external-provisioner-cfg but the
/// leases).
const PROVISIONER: &[Need] = &[
    cluster(
        "",
        "persistentvolumes",
        &["get", "list", "watch", "create", "patch", "delete"],
    ),
    cluster(
        "",
        "persistentvolumeclaims",
        &["get", "list", "watch", "update"],
    ),
    cluster("storage.k8s.io", "storageclasses", READ),
    cluster("", "events", EVENTS),
    cluster("storage.k8s.io", "csinodes", READ),
    cluster("", "nodes", READ),
    // The driver has PUBLISH_UNPUBLISH_VOLUME.
    cluster("storage.k8s.io", "volumeattachments", READ),
];

/// external-provisioner v6.4 where the cluster has snapshots: snapshot sources, the
/// source-protection finalizer (update) and, since v6.3, the informer of the sweep that
/// removes orphaned finalizers (list, watch).
const PROVISIONER_SNAPSHOTS: &[Need] = &[
    cluster(
        "snapshot.storage.k8s.io",
        "volumesnapshots",
        &["get", "list", "watch", "update"],
    ),
    cluster(
        "snapshot.storage.k8s.io",
        "volumesnapshotcontents",
        &["get", "list"],
    ),
];

/// external-attacher v4.13 (external-attacher-runner; no secrets).
const ATTACHER: &[Need] = &[
    cluster("", "persistentvolumes", &["get", "list", "watch", "patch"]),
    cluster("storage.k8s.io", "csinodes", READ),
    cluster(
        "storage.k8s.io",
        "volumeattachments",
        &["get", "list", "watch", "patch"],
    ),
    cluster("storage.k8s.io", "volumeattachments/status", &["patch"]),
];

/// external-resizer v2.3 (external-resizer-runner; no pods: --handle-volume-inuse-error=false;
/// no volumeattributesclasses: its modify controller runs only for a driver with
/// MODIFY_VOLUME, which rwxnfs does not announce).
const RESIZER: &[Need] = &[
    cluster("", "persistentvolumes", &["get", "list", "watch", "patch"]),
    cluster("", "persistentvolumeclaims", READ),
    cluster("", "persistentvolumeclaims/status", &["patch"]),
    cluster("", "events", EVENTS),
];

/// csi-snapshotter v8.7 (external-snapshotter-runner; no secrets, no groupsnapshot.storage.k8s.io:
/// --feature-gates=CSIVolumeGroupSnapshot=false).
const SNAPSHOTTER: &[Need] = &[
    cluster("", "events", EVENTS),
    cluster("snapshot.storage.k8s.io", "volumesnapshotclasses", READ),
    cluster(
        "snapshot.storage.k8s.io",
        "volumesnapshotcontents",
        &["get", "list", "watch", "update", "patch"],
    ),
    cluster(
        "snapshot.storage.k8s.io",
        "volumesnapshotcontents/status",
        &["update", "patch"],
    ),
];

/// Every sidecar's --leader-election (each release's -cfg or -leaderelection Role).
const LEADER_ELECTION: &[Need] = &[namespaced(
    "coordination.k8s.io",
    "leases",
    &["get", "watch", "list", "delete", "update", "create"],
)];

/// rwxnfs controller: node addresses, and its start-up mesh check (its own Pod and Namespace,
/// the Event about them).
const RWXNFS: &[Need] = &[
    cluster("", "nodes", READ),
    namespaced("", "pods", &["get"]),
    namespaced("", "namespaces", &["get"]),
    namespaced("events.k8s.io", "events", &["create"]),
];

/// What a container of the controller pod needs, with the flags it runs with.
fn needs_of(c: &Container, snapshots: bool, origin: &str) -> Vec<&'static Need> {
    let own: &[&[Need]] = match c.name.as_str() {
        "rwxnfs" => &[RWXNFS],
        "csi-provisioner" if snapshots => &[PROVISIONER, PROVISIONER_SNAPSHOTS],
        "csi-provisioner" => &[PROVISIONER],
        "csi-attacher" => &[ATTACHER],
        "csi-resizer" => &[RESIZER],
        "csi-snapshotter" => &[SNAPSHOTTER],
        other => panic!("{origin}: no RBAC expectations for container {other}"),
    };
    let leader: &[&[Need]] = if flag(args(c), "leader-election").is_some() {
        &[LEADER_ELECTION]
    } else {
        &[]
    };
    own.iter().chain(leader).flat_map(|n| n.iter()).collect()
}

/// The flags the needs above assume: each turns on API access none of the roles grant.
fn sidecar_flags_fit_the_needs(pod: &Pod<'_>, origin: &str) {
    for c in &pod.spec().containers {
        let a = args(c);
        let (wanted, why) = match c.name.as_str() {
            "csi-provisioner" => (
                flag(a, "enable-capacity").is_none_or(|v| v == "false"),
                "--enable-capacity needs CSIStorageCapacity, pod and ReplicaSet access",
            ),
            "csi-resizer" => (
                flag(a, "handle-volume-inuse-error") == Some("false"),
                "--handle-volume-inuse-error defaults to true, which watches every pod",
            ),
            "csi-snapshotter" => (
                feature_gate(a, "CSIVolumeGroupSnapshot") == Some(false),
                "CSIVolumeGroupSnapshot is on by default since v8.7 and lists the \
                 groupsnapshot.storage.k8s.io objects",
            ),
            _ => continue,
        };
        assert!(wanted, "{origin}: {}: {why}", c.name);
    }
}

/// The value of one gate in `--feature-gates=A=true,B=false`.
fn feature_gate(args: &[String], gate: &str) -> Option<bool> {
    flag(args, "feature-gates")?.split(',').find_map(|pair| {
        let (k, v) = pair.split_once('=')?;
        (k.trim() == gate).then(|| v.trim() == "true")
    })
}

/// The rules granted to a service account: (rules, cluster-wide?).
fn grants<'a>(r: &'a Rendering, namespace: &str, account: &str) -> Vec<(&'a PolicyRule, bool)> {
    let is_subject = |subjects: &Option<Vec<Subject>>| {
        subjects.as_deref().unwrap_or_default().iter().any(|s| {
            s.kind == "ServiceAccount"
                && s.name == account
                && s.namespace.as_deref() == Some(namespace)
        })
    };
    let mut out = Vec::new();
    for object in &r.objects {
        let (role_ref, cluster_wide) = match object {
            Object::ClusterRoleBinding(b) if is_subject(&b.subjects) => (&b.role_ref, true),
            Object::RoleBinding(b)
                if is_subject(&b.subjects)
                    && b.metadata.namespace.as_deref() == Some(namespace) =>
            {
                (&b.role_ref, false)
            }
            _ => continue,
        };
        for rule in rules_of(r, role_ref, namespace) {
            out.push((rule, cluster_wide && role_ref.kind == "ClusterRole"));
        }
    }
    out
}

fn rules_of<'a>(r: &'a Rendering, role_ref: &RoleRef, namespace: &str) -> &'a [PolicyRule] {
    let found = r.objects.iter().find_map(|o| match o {
        Object::ClusterRole(c)
            if role_ref.kind == "ClusterRole" && name(&c.metadata) == role_ref.name =>
        {
            Some(c.rules.as_deref().unwrap_or_default())
        }
        Object::Role(c)
            if role_ref.kind == "Role"
                && name(&c.metadata) == role_ref.name
                && c.metadata.namespace.as_deref() == Some(namespace) =>
        {
            Some(c.rules.as_deref().unwrap_or_default())
        }
        _ => None,
    });
    found.unwrap_or_else(|| {
        panic!(
            "{}: binding to {} {} that is not rendered",
            r.origin, role_ref.kind, role_ref.name
        )
    })
}

/// `pods`, `leases.coordination.k8s.io`: as kubectl names them.
fn qualified(resource: &str, group: &str) -> String {
    if group.is_empty() {
        resource.to_owned()
    } else {
        format!("{resource}.{group}")
    }
}

fn listed(list: &Option<Vec<String>>, item: &str) -> bool {
    list.as_deref()
        .unwrap_or_default()
        .iter()
        .any(|x| x == item)
}

fn allows(rule: &PolicyRule, group: &str, resource: &str, verb: &str) -> bool {
    listed(&rule.api_groups, group)
        && listed(&rule.resources, resource)
        && rule.verbs.iter().any(|v| v == verb)
}

/// Each container's needs granted, at the scope it needs them.
fn needs_are_granted(
    needs: &[(&str, Vec<&'static Need>)],
    granted: &[(&PolicyRule, bool)],
    account: &str,
    origin: &str,
) {
    for (container, needs) in needs {
        for need in needs {
            for verb in need.verbs {
                let ok = granted.iter().any(|(rule, cluster_wide)| {
                    allows(rule, need.group, need.resource, verb)
                        && (need.namespaced || *cluster_wide)
                });
                assert!(
                    ok,
                    "{origin}: {account} may not {verb} {}{}, which {container} needs",
                    qualified(need.resource, need.group),
                    if need.namespaced {
                        " in its namespace"
                    } else {
                        " cluster-wide"
                    }
                );
            }
        }
    }
}

/// Nothing granted that no container needs, and nothing cluster-wide that is needed in the
/// pod's namespace only.
fn nothing_more_is_granted(
    needs: &[(&str, Vec<&'static Need>)],
    granted: &[(&PolicyRule, bool)],
    account: &str,
    origin: &str,
) {
    for (rule, cluster_wide) in granted {
        let groups = rule.api_groups.as_deref().unwrap_or_default();
        let resources = rule.resources.as_deref().unwrap_or_default();
        for group in groups {
            for resource in resources {
                for verb in &rule.verbs {
                    let needed = needs.iter().flat_map(|(_, n)| n).any(|need| {
                        need.group == group
                            && need.resource == resource
                            && need.verbs.contains(&verb.as_str())
                            && !(*cluster_wide && need.namespaced)
                    });
                    assert!(
                        needed,
                        "{origin}: {account} may {verb} {}{}, which none of its pod's \
                         containers needs",
                        qualified(resource, group),
                        if *cluster_wide {
                            " cluster-wide"
                        } else {
                            " in its namespace"
                        }
                    );
                }
            }
        }
    }
}

pub(crate) fn check(r: &Rendering) {
    no_wildcards(r);
    bindings_name_existing_accounts(r);
    for pod in r.pods() {
        let spec = pod.spec();
        let namespace = pod.namespace.clone().expect("namespaced workload");
        let account = spec.service_account_name.clone().unwrap_or_else(|| {
            panic!(
                "{}: {} runs as the default service account",
                r.origin, pod.workload
            )
        });
        let exists = r.objects.iter().find_map(|o| match o {
            Object::ServiceAccount(sa)
                if name(&sa.metadata) == account
                    && sa.metadata.namespace.as_deref() == Some(namespace.as_str()) =>
            {
                Some(sa)
            }
            _ => None,
        });
        let sa = exists
            .unwrap_or_else(|| panic!("{}: ServiceAccount {account} is not rendered", r.origin));
        let granted = grants(r, &namespace, &account);
        match pod.workload.as_str() {
            "Deployment rwxnfs-controller" => {
                // The snapshotter is deployed where the cluster has the VolumeSnapshot API; the
                // no-snapshots overlay drops it, and with it the provisioner's snapshot rules.
                let snapshots = spec.containers.iter().any(|c| c.name == "csi-snapshotter");
                let needs: Vec<(&str, Vec<&'static Need>)> = spec
                    .containers
                    .iter()
                    .map(|c| (c.name.as_str(), needs_of(c, snapshots, &r.origin)))
                    .collect();
                sidecar_flags_fit_the_needs(&pod, &r.origin);
                needs_are_granted(&needs, &granted, &account, &r.origin);
                nothing_more_is_granted(&needs, &granted, &account, &r.origin);
            }
            "DaemonSet rwxnfs-node" => {
                // rwxnfs node calls no API: the kubelet's registration is on a socket.
                assert!(
                    granted.is_empty(),
                    "{}: the node plugin's account holds roles it never uses",
                    r.origin
                );
                let automount = spec
                    .automount_service_account_token
                    .or(sa.automount_service_account_token);
                assert_eq!(
                    automount,
                    Some(false),
                    "{}: the node plugin needs no API token",
                    r.origin
                );
            }
            other => panic!("{}: unexpected workload {other}", r.origin),
        }
    }
}

fn no_wildcards(r: &Rendering) {
    for object in &r.objects {
        let (what, rules) = match object {
            Object::ClusterRole(c) => (name(&c.metadata), c.rules.as_deref().unwrap_or_default()),
            Object::Role(c) => (name(&c.metadata), c.rules.as_deref().unwrap_or_default()),
            _ => continue,
        };
        for rule in rules {
            let lists = [
                rule.api_groups.as_deref().unwrap_or_default(),
                rule.resources.as_deref().unwrap_or_default(),
                &rule.verbs[..],
            ];
            assert!(
                lists
                    .iter()
                    .all(|l| !l.is_empty() && l.iter().all(|x| x != "*")),
                "{}: role {what} has an empty or wildcard rule: {rule:?}",
                r.origin
            );
        }
    }
}

fn bindings_name_existing_accounts(r: &Rendering) {
    for object in &r.objects {
        let subjects = match object {
            Object::ClusterRoleBinding(b) => b.subjects.as_deref().unwrap_or_default(),
            Object::RoleBinding(b) => b.subjects.as_deref().unwrap_or_default(),
            _ => continue,
        };
        for s in subjects {
            assert_eq!(s.kind, "ServiceAccount");
            let exists = r.objects.iter().any(|o| {
                matches!(o, Object::ServiceAccount(sa)
                    if name(&sa.metadata) == s.name && sa.metadata.namespace == s.namespace)
            });
            assert!(
                exists,
                "{}: a binding names ServiceAccount {:?}/{} that is not rendered",
                r.origin, s.namespace, s.name
            );
        }
    }
}
