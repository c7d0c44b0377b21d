//! RWX060: a driver name that differs between the CSIDriver, the driver's pods (flags and the
//! kubelet registration path, `rwxnfs node`'s or a registrar's) and the StorageClasses'
//! provisioner.

use std::collections::BTreeSet;

use k8s_openapi::api::core::v1::Container;
use rwxnfs_model::DEFAULT_DRIVER_NAME;
use serde_json::json;

use crate::{
    args,
    context::Context,
    finding::{Finding, Fix, ObjectRef, Severity},
    objects::Objects,
    registration::registrations,
    workload::{PART_OF_LABEL, PART_OF_VALUE, Role, Workload},
};

/// Where the kubelet looks for plugin sockets.
pub const KUBELET_PLUGINS: &str = "/var/lib/kubelet/plugins";

/// The driver name a driver container runs with.
pub fn container_driver_name(c: &Container) -> String {
    args::flag(c, "driver-name")
        .or_else(|| args::env(c, "CSI_DRIVER_NAME"))
        .unwrap_or_else(|| DEFAULT_DRIVER_NAME.to_owned())
}

/// The names that are rwxnfs's: the default, the driver pods', and those of CSIDrivers
/// labelled as part of rwxnfs.
pub fn our_names(objects: &Objects, workloads: &[Workload<'_>]) -> BTreeSet<String> {
    let mut names = BTreeSet::from([DEFAULT_DRIVER_NAME.to_owned()]);
    names.extend(deployed(workloads).into_iter().map(|(_, _, n)| n));
    for d in &objects.csi_drivers {
        let labelled = d
            .metadata
            .labels
            .as_ref()
            .and_then(|l| l.get(PART_OF_LABEL))
            .is_some_and(|v| v == PART_OF_VALUE);
        if let (true, Some(name)) = (labelled, &d.metadata.name) {
            names.insert(name.clone());
        }
    }
    names
}

/// Each driver pod, its role and its driver name.
fn deployed<'a, 'w>(workloads: &'w [Workload<'a>]) -> Vec<(&'w Workload<'a>, Role, String)> {
    workloads
        .iter()
        .filter_map(|w| {
            w.driver()
                .map(|(role, c)| (w, role, container_driver_name(c)))
        })
        .collect()
}

pub fn check(ctx: &Context<'_>) -> Vec<Finding> {
    let pods = deployed(&ctx.workloads);
    let node_names: BTreeSet<&str> = pods
        .iter()
        .filter(|(_, r, _)| *r == Role::Node)
        .map(|(_, _, n)| n.as_str())
        .collect();
    let Some(expected) = node_names.iter().next().copied() else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for (w, role, name) in &pods {
        if *role == Role::Controller && !node_names.contains(name.as_str()) {
            out.push(mismatch(
                &w.object,
                format!(
                    "the controller runs as driver {name:?} but the node plugin as {expected:?}"
                ),
                driver_flag_fix(w, expected),
            ));
        }
        if *role == Role::Node {
            out.extend(registration_paths(w, name));
        }
    }
    out.extend(csi_drivers(ctx, &node_names, expected));
    out.extend(storage_classes(ctx, &node_names, expected));
    out
}

fn mismatch(object: &ObjectRef, problem: String, fix: Fix) -> Finding {
    Finding {
        code: "RWX060",
        severity: Severity::Error,
        object: object.clone(),
        problem,
        fix,
    }
}

fn driver_flag_fix(w: &Workload<'_>, name: &str) -> Fix {
    match w.driver() {
        Some((_, c)) => {
            let container =
                json!({"name": c.name, "args": args::with_flag(c, "driver-name", name)});
            Fix::patch(
                &w.object,
                "strategic",
                w.pod_patch(json!({"spec": {"containers": [container]}})),
            )
        }
        None => Fix::command(format!("run {} with --driver-name={name}", w.object)),
    }
}

/// Whoever registers the driver tells the kubelet its socket is in the kubelet's plugin
/// directory named after the driver: `/var/lib/kubelet/plugins/<driver>/csi.sock`.
fn registration_paths(w: &Workload<'_>, name: &str) -> Vec<Finding> {
    let Some((_, driver)) = w.driver() else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for reg in registrations(w, driver) {
        let Some(path) = &reg.kubelet_path else {
            continue;
        };
        let Some(dir) = path
            .strip_prefix(&format!("{KUBELET_PLUGINS}/"))
            .and_then(|rest| rest.split('/').next())
        else {
            continue;
        };
        if dir == name {
            continue;
        }
        let fixed = path.replacen(
            &format!("{KUBELET_PLUGINS}/{dir}"),
            &format!("{KUBELET_PLUGINS}/{name}"),
            1,
        );
        let c = reg.container;
        let container = json!({"name": c.name, "args": args::with_flag(c, "kubelet-registration-path", &fixed)});
        out.push(mismatch(
            &w.object,
            format!(
                "{} registers {path} (driver {dir:?}) but the node plugin runs as driver {name:?}; the socket's host directory and the volume's hostPath must follow the name too",
                reg.who()
            ),
            Fix::patch(
                &w.object,
                "strategic",
                w.pod_patch(json!({"spec": {"containers": [container]}})),
            ),
        ));
    }
    out
}

fn csi_drivers(ctx: &Context<'_>, deployed: &BTreeSet<&str>, expected: &str) -> Vec<Finding> {
    let mut out = Vec::new();
    for d in &ctx.objects.csi_drivers {
        let name = d.metadata.name.as_deref().unwrap_or("");
        if deployed.contains(name) || !ctx.driver_names.contains(name) {
            continue;
        }
        let object = ObjectRef::new("CSIDriver", None, name);
        out.push(mismatch(
            &object,
            format!("CSIDriver {name:?} is rwxnfs's but the node plugin runs as driver {expected:?}; a CSIDriver's name cannot change"),
            Fix::command(format!(
                "kubectl delete csidriver {name} && kubectl create -f - <<'EOF'\n{}\nEOF",
                csi_driver_json(expected, Some(json!(d.spec)))
            )),
        ));
    }
    let named = |n: &str| {
        ctx.objects
            .csi_drivers
            .iter()
            .any(|d| d.metadata.name.as_deref() == Some(n))
    };
    if !ctx.objects.csi_drivers.is_empty() && !named(expected) && out.is_empty() {
        let object = ObjectRef::new("CSIDriver", None, expected);
        out.push(mismatch(
            &object,
            format!("the node plugin runs as driver {expected:?} but no CSIDriver has that name"),
            Fix::command(format!(
                "kubectl create -f - <<'EOF'\n{}\nEOF",
                csi_driver_json(expected, None)
            )),
        ));
    }
    out
}

fn storage_classes(ctx: &Context<'_>, deployed: &BTreeSet<&str>, expected: &str) -> Vec<Finding> {
    let mut out = Vec::new();
    for sc in &ctx.objects.storage_classes {
        let p = sc.provisioner.as_str();
        let ours = ctx.driver_names.contains(p) || p.contains("rwxnfs");
        if !ours || deployed.contains(p) {
            continue;
        }
        let name = sc.metadata.name.as_deref().unwrap_or("");
        let patch = json!({"provisioner": expected});
        out.push(mismatch(
            &ObjectRef::new("StorageClass", None, name),
            format!("provisioner {p:?} is not the driver the node plugin runs as ({expected:?}): claims of this class are never provisioned"),
            Fix {
                patch_type: Some("merge"),
                command: format!("kubectl patch storageclass {name} --type merge -p '{patch}' --dry-run=client -o yaml | kubectl replace --force -f -"),
                patch: Some(patch),
            },
        ));
    }
    out
}

/// A CSIDriver named `name` with `spec`, or rwxnfs's own spec.
fn csi_driver_json(name: &str, spec: Option<serde_json::Value>) -> serde_json::Value {
    let spec = spec.unwrap_or_else(|| {
        json!({"attachRequired": true, "fsGroupPolicy": "File", "volumeLifecycleModes": ["Persistent"]})
    });
    json!({
        "apiVersion": "storage.k8s.io/v1",
        "kind": "CSIDriver",
        "metadata": {"name": name, "labels": {PART_OF_LABEL: PART_OF_VALUE}},
        "spec": spec
    })
}
