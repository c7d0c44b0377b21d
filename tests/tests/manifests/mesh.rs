//! The Istio settings `rwxnfs mesh annotations` prints, read back and looked for on a pod.

use std::collections::BTreeMap;

use crate::objects::Pod;

#[derive(serde::Deserialize)]
pub(crate) struct MeshSettings {
    pub metadata: MeshMetadata,
}

#[derive(serde::Deserialize)]
pub(crate) struct MeshMetadata {
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    #[serde(default)]
    pub annotations: BTreeMap<String, String>,
}

pub(crate) fn mesh_settings(yaml: &str) -> MeshMetadata {
    serde_yaml_ng::from_str::<MeshSettings>(yaml)
        .expect("rwxnfs mesh annotations prints YAML")
        .metadata
}

pub(crate) fn assert_carries(pod: &Pod<'_>, wanted: &MeshMetadata, origin: &str) {
    let (labels, annotations) = (pod.labels(), pod.annotations());
    for (key, value) in &wanted.labels {
        assert_eq!(
            labels.get(key),
            Some(value),
            "{origin}: {} label {key}",
            pod.workload
        );
    }
    for (key, value) in &wanted.annotations {
        assert_eq!(
            annotations.get(key),
            Some(value),
            "{origin}: {} annotation {key}: run `rwxnfs mesh annotations --config manifests/base/config/controller.yaml` and copy what it prints",
            pod.workload
        );
    }
}
