//! RWX040: NFSv3 without local locks. NFSv3 needs the portmapper (111), mountd and, unless
//! locks stay on the node (`nolock`, `local_lock=all`), lockd and statd on ports the
//! portmapper hands out, which no mesh or firewall exclusion can name in advance.

use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::api::storage::v1::StorageClass;
use rwxnfs_model::mesh::{DEFAULT_MOUNTD_PORT, NFS_PORT, PORTMAPPER_PORT};
use serde_json::json;

use crate::{
    context::Context,
    finding::{Finding, Fix, ObjectRef, Severity},
};

/// Our StorageClasses: those whose provisioner is one of our driver names.
pub fn our_storage_classes<'a>(
    objects: &'a crate::Objects,
    names: &'a BTreeSet<String>,
) -> impl Iterator<Item = &'a StorageClass> {
    objects
        .storage_classes
        .iter()
        .filter(move |sc| names.contains(&sc.provisioner))
}

fn options<'a>(
    parameters: &'a Option<BTreeMap<String, String>>,
    mount_options: &'a Option<Vec<String>>,
) -> Vec<&'a str> {
    let from_parameters = parameters
        .as_ref()
        .and_then(|p| p.get("mountOptions"))
        .map(|o| o.split(',').map(str::trim).collect::<Vec<_>>())
        .unwrap_or_default();
    mount_options
        .iter()
        .flatten()
        .flat_map(|o| o.split(','))
        .map(str::trim)
        .chain(from_parameters)
        .collect()
}

/// `Some(local_locks)` when the volume mounts with NFSv3.
pub fn nfs_v3(
    parameters: &Option<BTreeMap<String, String>>,
    mount_options: &Option<Vec<String>>,
) -> Option<bool> {
    let opts = options(parameters, mount_options);
    let version = parameters
        .as_ref()
        .and_then(|p| p.get("nfsVersion").or_else(|| p.get("vers")));
    let v3 = version.is_some_and(|v| v == "3")
        || opts
            .iter()
            .any(|o| matches!(*o, "vers=3" | "nfsvers=3" | "v3"));
    v3.then(|| {
        opts.iter()
            .any(|o| matches!(*o, "nolock" | "local_lock=all"))
    })
}

fn finding(object: ObjectRef, fix: Fix) -> Finding {
    Finding {
        code: "RWX040",
        severity: Severity::Warning,
        problem: format!(
            "mounts with NFSv3 and remote locking: besides {NFS_PORT} it needs the portmapper ({PORTMAPPER_PORT} TCP/UDP), mountd ({DEFAULT_MOUNTD_PORT} when pinned) and lockd/statd on ports the portmapper hands out, which exclusions and NetworkPolicies cannot name; mount with local_lock=all (or nolock), or use NFSv4.1+"
        ),
        object,
        fix,
    }
}

pub fn check(ctx: &Context<'_>) -> Vec<Finding> {
    let mut out = Vec::new();
    for sc in our_storage_classes(ctx.objects, &ctx.driver_names) {
        if nfs_v3(&sc.parameters, &sc.mount_options) != Some(false) {
            continue;
        }
        let name = sc.metadata.name.as_deref().unwrap_or("");
        let mut opts = sc.mount_options.clone().unwrap_or_default();
        opts.push("local_lock=all".into());
        let patch = json!({"mountOptions": opts});
        // StorageClasses are immutable: patch a copy and replace the object.
        let command = format!(
            "kubectl patch storageclass {name} --type merge -p '{patch}' --dry-run=client -o yaml | kubectl replace --force -f -"
        );
        let fix = Fix {
            patch_type: Some("merge"),
            patch: Some(patch),
            command,
        };
        out.push(finding(ObjectRef::new("StorageClass", None, name), fix));
    }
    for pv in &ctx.objects.persistent_volumes {
        let Some(spec) = &pv.spec else { continue };
        let Some(csi) = spec
            .csi
            .as_ref()
            .filter(|c| ctx.driver_names.contains(&c.driver))
        else {
            continue;
        };
        if nfs_v3(&csi.volume_attributes, &spec.mount_options) != Some(false) {
            continue;
        }
        let object = ObjectRef::new(
            "PersistentVolume",
            None,
            pv.metadata.name.as_deref().unwrap_or(""),
        );
        let mut opts = spec.mount_options.clone().unwrap_or_default();
        opts.push("local_lock=all".into());
        let fix = Fix::patch(&object, "merge", json!({"spec": {"mountOptions": opts}}));
        out.push(finding(object, fix));
    }
    out
}
