//! Pods and pod templates seen the same way: where they run, their labels and annotations,
//! their spec, and which object a fix patches.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Container, Pod, PodSpec, PodTemplateSpec};
use kube::api::ObjectMeta;

use crate::{finding::ObjectRef, objects::Objects};

/// The label that marks rwxnfs's own objects.
pub const PART_OF_LABEL: &str = "app.kubernetes.io/part-of";
pub const PART_OF_VALUE: &str = "rwxnfs";
/// Says which driver component a labelled pod is, when its arguments do not.
pub const COMPONENT_LABEL: &str = "app.kubernetes.io/component";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    Controller,
    Node,
}

/// A pod, or the pod template of a Deployment, DaemonSet or StatefulSet.
#[derive(Clone, Debug)]
pub struct Workload<'a> {
    /// The object a fix patches (the workload, or a bare pod).
    pub object: ObjectRef,
    /// `true` when `object` has a pod template (the patch goes under `spec.template`).
    pub templated: bool,
    pub namespace: String,
    pub meta: &'a ObjectMeta,
    pub spec: &'a PodSpec,
}

static EMPTY: BTreeMap<String, String> = BTreeMap::new();

impl<'a> Workload<'a> {
    pub fn labels(&self) -> &'a BTreeMap<String, String> {
        self.meta.labels.as_ref().unwrap_or(&EMPTY)
    }

    pub fn label(&self, key: &str) -> Option<&'a str> {
        self.labels().get(key).map(String::as_str)
    }

    pub fn annotation(&self, key: &str) -> Option<&'a str> {
        self.meta
            .annotations
            .as_ref()
            .and_then(|a| a.get(key))
            .map(String::as_str)
    }

    pub fn host_network(&self) -> bool {
        self.spec.host_network == Some(true)
    }

    /// Wraps a pod-level patch (`{"metadata": ...}` or `{"spec": ...}`) for the patched object.
    pub fn pod_patch(&self, pod: serde_json::Value) -> serde_json::Value {
        if self.templated {
            serde_json::json!({"spec": {"template": pod}})
        } else {
            pod
        }
    }

    /// The container running rwxnfs, and the component it runs.
    pub fn driver(&self) -> Option<(Role, &'a Container)> {
        for c in &self.spec.containers {
            if let Some(role) = container_role(c) {
                return Some((role, c));
            }
        }
        if self.label(PART_OF_LABEL) != Some(PART_OF_VALUE) {
            return None;
        }
        let role = match (self.label(COMPONENT_LABEL), self.object.kind.as_str()) {
            (Some(c), _) if c.contains("node") => Role::Node,
            (Some(c), _) if c.contains("controller") => Role::Controller,
            (_, "DaemonSet") => Role::Node,
            _ => Role::Controller,
        };
        let container = self
            .spec
            .containers
            .iter()
            .find(|c| c.image.as_deref().is_some_and(|i| i.contains("rwxnfs")))
            .or_else(|| self.spec.containers.first())?;
        Some((role, container))
    }
}

/// `controller` or `node` as the subcommand of a container running the rwxnfs image.
fn container_role(c: &Container) -> Option<Role> {
    let image = c.image.as_deref().unwrap_or("");
    let image_name = image.rsplit('/').next().unwrap_or(image);
    if !image_name.starts_with("rwxnfs") {
        return None;
    }
    let words = c.command.iter().flatten().chain(c.args.iter().flatten());
    for word in words {
        match word.as_str() {
            "controller" => return Some(Role::Controller),
            "node" => return Some(Role::Node),
            _ => {}
        }
    }
    None
}

/// Every pod and pod template among the objects. Pods created by a controller are left out
/// when their owner's template is there to be checked (and patched) instead.
pub fn workloads(objects: &Objects) -> Vec<Workload<'_>> {
    let mut out = Vec::new();
    for d in &objects.deployments {
        out.extend(templated_workload(
            "Deployment",
            &d.metadata,
            Some(&d.spec.template),
        ));
    }
    for d in &objects.daemon_sets {
        out.extend(templated_workload(
            "DaemonSet",
            &d.metadata,
            Some(&d.spec.template),
        ));
    }
    for s in &objects.stateful_sets {
        out.extend(templated_workload(
            "StatefulSet",
            &s.metadata,
            Some(&s.spec.template),
        ));
    }
    for pod in &objects.pods {
        let owned = pod
            .metadata
            .owner_references
            .as_ref()
            .is_some_and(|o| !o.is_empty());
        if !owned {
            out.extend(pod_workload(pod));
        }
    }
    out
}

static EMPTY_META: std::sync::LazyLock<ObjectMeta> = std::sync::LazyLock::new(ObjectMeta::default);

fn templated_workload<'a>(
    kind: &str,
    meta: &'a ObjectMeta,
    template: Option<&'a PodTemplateSpec>,
) -> Option<Workload<'a>> {
    let template = template?;
    Some(Workload {
        object: object_ref(kind, meta),
        templated: true,
        namespace: meta.namespace.clone().unwrap_or_else(|| "default".into()),
        meta: template.metadata.as_ref().unwrap_or(&*EMPTY_META),
        spec: template.spec.as_ref()?,
    })
}

fn object_ref(kind: &str, meta: &ObjectMeta) -> ObjectRef {
    ObjectRef::new(
        kind,
        Some(meta.namespace.as_deref().unwrap_or("default")),
        meta.name.as_deref().unwrap_or(""),
    )
}

/// A pod as a workload. A pod of a Deployment's ReplicaSet is patched through the Deployment
/// (its name is the ReplicaSet's without the pod-template-hash).
pub fn pod_workload(pod: &Pod) -> Option<Workload<'_>> {
    let spec = pod.spec.as_ref()?;
    let meta = &pod.metadata;
    let namespace = meta.namespace.clone().unwrap_or_else(|| "default".into());
    let owner = meta
        .owner_references
        .iter()
        .flatten()
        .find(|o| o.controller == Some(true) || o.kind == "ReplicaSet");
    let hash = meta
        .labels
        .as_ref()
        .and_then(|l| l.get("pod-template-hash"));
    let (object, templated) = match (owner, hash) {
        (Some(o), Some(hash)) if o.kind == "ReplicaSet" => {
            let name = o.name.strip_suffix(&format!("-{hash}")).unwrap_or(&o.name);
            (ObjectRef::new("Deployment", Some(&namespace), name), true)
        }
        (Some(o), _) if o.kind == "DaemonSet" || o.kind == "StatefulSet" => {
            (ObjectRef::new(&o.kind, Some(&namespace), &o.name), true)
        }
        _ => (object_ref("Pod", meta), false),
    };
    Some(Workload {
        object,
        templated,
        namespace,
        meta,
        spec,
    })
}

/// Whether a label selector's `matchLabels` and `matchExpressions` select `labels`.
pub fn selects(
    selector: &k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector,
    labels: &BTreeMap<String, String>,
) -> bool {
    let labels_match = selector
        .match_labels
        .iter()
        .flatten()
        .all(|(k, v)| labels.get(k) == Some(v));
    let expressions_match = selector.match_expressions.iter().flatten().all(|e| {
        let value = labels.get(&e.key);
        let values = e.values.as_deref().unwrap_or(&[]);
        match e.operator.as_str() {
            "In" => value.is_some_and(|v| values.contains(v)),
            "NotIn" => value.is_none_or(|v| !values.contains(v)),
            "Exists" => value.is_some(),
            "DoesNotExist" => value.is_none(),
            _ => false,
        }
    });
    labels_match && expressions_match
}

/// Whether a Service-style map selector (`spec.selector`) selects `labels`.
pub fn map_selects(selector: &BTreeMap<String, String>, labels: &BTreeMap<String, String>) -> bool {
    !selector.is_empty() && selector.iter().all(|(k, v)| labels.get(k) == Some(v))
}
