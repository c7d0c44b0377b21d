//! Service accounts and what they may do: a small evaluator of the rendered RBAC objects.

use k8s_openapi::api::rbac::v1::{PolicyRule, RoleRef, Subject};

use crate::objects::{Object, Rendering, name};

/// One permission: API group, resource, verb; `namespaced` when it is needed in the pod's
/// namespace only (a Role is enough), not cluster-wide.
struct Need(&'static str, &'static str, &'static str, bool);

/// What the controller pod's containers call, from the sidecars' releases and our code.
const CONTROLLER_NEEDS: &[Need] = &[
    // external-provisioner
    Need("", "persistentvolumes", "create", false),
    Need("", "persistentvolumes", "delete", false),
    Need("", "persistentvolumeclaims", "update", false),
    Need("storage.k8s.io", "storageclasses", "watch", false),
    Need("storage.k8s.io", "csinodes", "get", false),
    Need("storage.k8s.io", "volumeattachments", "list", false),
    Need("snapshot.storage.k8s.io", "volumesnapshots", "get", false),
    // external-attacher
    Need("storage.k8s.io", "volumeattachments", "patch", false),
    Need("storage.k8s.io", "volumeattachments/status", "patch", false),
    // external-resizer
    Need("", "persistentvolumeclaims/status", "patch", false),
    Need("", "persistentvolumes", "patch", false),
    // every sidecar's leader election
    Need("coordination.k8s.io", "leases", "get", true),
    Need("coordination.k8s.io", "leases", "create", true),
    Need("coordination.k8s.io", "leases", "update", true),
    // rwxnfs controller: node addresses, its own Pod, the Event about it
    Need("", "nodes", "get", false),
    Need("", "pods", "get", true),
    Need("", "namespaces", "get", true),
    Need("events.k8s.io", "events", "create", true),
];

const SNAPSHOTTER_NEEDS: &[Need] = &[
    Need(
        "snapshot.storage.k8s.io",
        "volumesnapshotclasses",
        "get",
        false,
    ),
    Need(
        "snapshot.storage.k8s.io",
        "volumesnapshotcontents",
        "update",
        false,
    ),
    Need(
        "snapshot.storage.k8s.io",
        "volumesnapshotcontents/status",
        "update",
        false,
    ),
];

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

fn allows(rule: &PolicyRule, need: &Need) -> bool {
    let has = |list: &Option<Vec<String>>, item: &str| {
        list.as_deref()
            .unwrap_or_default()
            .iter()
            .any(|x| x == item)
    };
    has(&rule.api_groups, need.0)
        && has(&rule.resources, need.1)
        && rule.verbs.iter().any(|v| v == need.2)
}

pub fn check(r: &Rendering) {
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
        let has_snapshotter = spec.containers.iter().any(|c| c.name == "csi-snapshotter");
        match pod.workload.as_str() {
            "Deployment rwxnfs-controller" => {
                let needs = CONTROLLER_NEEDS.iter().chain(if has_snapshotter {
                    SNAPSHOTTER_NEEDS
                } else {
                    &[]
                });
                for need in needs {
                    let ok = granted.iter().any(|(rule, cluster_wide)| {
                        allows(rule, need) && (need.3 || *cluster_wide)
                    });
                    assert!(
                        ok,
                        "{}: {account} may not {} {}.{}{}",
                        r.origin,
                        need.2,
                        need.1,
                        need.0,
                        if need.3 {
                            " in its namespace"
                        } else {
                            " cluster-wide"
                        }
                    );
                }
                if !has_snapshotter {
                    let snapshots = granted
                        .iter()
                        .any(|(rule, _)| allows(rule, &SNAPSHOTTER_NEEDS[1]));
                    assert!(
                        !snapshots,
                        "{}: snapshot rights without the snapshotter",
                        r.origin
                    );
                }
            }
            "DaemonSet rwxnfs-node" => {
                // Neither rwxnfs node nor node-driver-registrar calls the API.
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
