//! manifests/examples/: the walkthrough, the StorageClasses, the static PV, the snapshot class.

use std::collections::BTreeMap;

use rwxnfs_model::{MountOptions, NfsVersion, Params};

use crate::{
    config::shipped_controller_config,
    objects::{Object, Rendering, manifests, name},
    pods::{args, volume_holding},
};

/// manifests/examples/ rendered as its kustomization, plus every file in it that the
/// kustomization leaves out (they need a share of the reader's own).
pub(crate) fn examples() -> Vec<Rendering> {
    let dir = manifests().join("examples");
    let mut out = vec![Rendering::of_kustomization(&dir)];
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .expect("manifests/examples exists")
        .map(|e| e.expect("readable").path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .filter(|p| p.file_name().is_some_and(|n| n != "kustomization.yaml"))
        .collect();
    files.sort();
    out.extend(files.iter().map(|f| Rendering::of_file(f)));
    out
}

#[test]
fn the_walkthrough_claims_4gi_shared_and_appends_every_30s() {
    let walkthrough = Rendering::of_kustomization(&manifests().join("examples"));
    let claim = walkthrough
        .objects
        .iter()
        .find_map(|o| match o {
            Object::PersistentVolumeClaim(c) if name(&c.metadata) == "nfs-app" => c.spec.clone(),
            _ => None,
        })
        .expect("PVC nfs-app");
    assert_eq!(
        claim.access_modes.as_deref(),
        Some(&["ReadWriteMany".to_string()][..])
    );
    assert_eq!(claim.storage_class_name.as_deref(), Some("rwxnfs"));
    let size = claim
        .resources
        .and_then(|r| r.requests)
        .and_then(|r| r.get("storage").cloned());
    assert_eq!(size.map(|q| q.0), Some("4Gi".to_string()));
    let app = walkthrough
        .pods()
        .into_iter()
        .find(|p| p.workload == "Deployment nfs-app")
        .expect("the app");
    let spec = app.spec();
    let claim_volume = spec
        .volumes
        .as_deref()
        .unwrap_or_default()
        .iter()
        .find(|v| {
            v.persistent_volume_claim
                .as_ref()
                .is_some_and(|c| c.claim_name == "nfs-app")
        })
        .expect("a volume from the claim");
    let writer = &spec.containers[0];
    let (volume, _) = volume_holding(writer, "/data/test-file.txt");
    assert_eq!(volume, claim_volume.name);
    let script = args(writer).join(" ");
    for needed in ["hostname", "date", ">> /data/test-file.txt", "sleep 30"] {
        assert!(script.contains(needed), "the writer's loop: {script}");
    }
    let class = walkthrough
        .objects
        .iter()
        .any(|o| matches!(o, Object::StorageClass(sc) if name(&sc.metadata) == "rwxnfs"));
    assert!(
        class,
        "the walkthrough creates the StorageClass its claim names"
    );
}

#[test]
fn storage_classes_and_static_volumes_use_parameters_the_driver_accepts() {
    let (config, _) = shipped_controller_config(&Rendering::of_kustomization(&manifests()));
    for rendering in examples() {
        for object in &rendering.objects {
            match object {
                Object::StorageClass(sc) => {
                    let raw: BTreeMap<String, String> = sc.parameters.clone().unwrap_or_default();
                    let params = Params::parse(&raw).unwrap_or_else(|e| {
                        panic!(
                            "{}: StorageClass {}: {e}",
                            rendering.origin,
                            name(&sc.metadata)
                        )
                    });
                    let options = sc.mount_options.clone().unwrap_or_default();
                    MountOptions::merge(params.nfs_version, options.iter().map(String::as_str))
                        .unwrap_or_else(|e| panic!("{}: mountOptions: {e}", rendering.origin));
                    let backend = params.backend.map(|b| b.to_string()).unwrap_or_default();
                    let configured = config.backends.iter().any(|b| b.name == backend);
                    let not_yet = name(&sc.metadata).contains("subdir");
                    assert!(
                        configured || not_yet,
                        "{}: backend {backend:?} is not in the shipped controller configuration",
                        rendering.origin
                    );
                }
                Object::PersistentVolume(pv) => {
                    let csi = pv
                        .spec
                        .as_ref()
                        .and_then(|s| s.csi.clone())
                        .expect("a CSI volume");
                    let attrs = csi.volume_attributes.unwrap_or_default();
                    for key in attrs.keys() {
                        assert!(
                            ["server", "share", "nfsVersion", "mountOptions"]
                                .contains(&key.as_str()),
                            "{}: volumeAttributes {key} is not read by the node plugin",
                            rendering.origin
                        );
                    }
                    assert!(attrs.get("share").is_some_and(|s| s.starts_with('/')));
                    let version: NfsVersion = attrs
                        .get("nfsVersion")
                        .map(|v| v.parse().expect("nfsVersion"))
                        .unwrap_or_default();
                    MountOptions::merge(version, attrs.get("mountOptions").map(String::as_str))
                        .unwrap_or_else(|e| panic!("{}: mountOptions: {e}", rendering.origin));
                }
                Object::VolumeSnapshotClass(c) => {
                    assert!(["Delete", "Retain"].contains(&c.deletion_policy.as_str()));
                }
                _ => {}
            }
        }
    }
}
