//! The Kubernetes objects the checks look at, whichever way they were read.

use std::collections::BTreeMap;

use k8s_openapi::api::{
    apps::v1::{DaemonSet, Deployment, StatefulSet},
    core::v1::{ConfigMap, Namespace, PersistentVolume, PersistentVolumeClaim, Pod, Service},
    networking::v1::NetworkPolicy,
    storage::v1::{CSIDriver, StorageClass},
};
use kube::api::ObjectMeta;
use serde::Deserialize;

use crate::finding::Finding;

/// Istio's `security.istio.io/v1` PeerAuthentication, the fields the checks read.
#[derive(Clone, Debug, Default, Deserialize)]
pub struct PeerAuthentication {
    #[serde(default)]
    pub metadata: ObjectMeta,
    #[serde(default)]
    pub spec: PeerAuthenticationSpec,
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PeerAuthenticationSpec {
    #[serde(default)]
    pub selector: Option<WorkloadSelector>,
    #[serde(default)]
    pub mtls: Option<MutualTls>,
    #[serde(default)]
    pub port_level_mtls: Option<BTreeMap<String, MutualTls>>,
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WorkloadSelector {
    #[serde(default)]
    pub match_labels: Option<BTreeMap<String, String>>,
}

#[derive(Clone, Debug, Default, Deserialize)]
pub struct MutualTls {
    #[serde(default)]
    pub mode: Option<String>,
}

#[derive(Clone, Debug, Default)]
pub struct Objects {
    pub namespaces: Vec<Namespace>,
    pub pods: Vec<Pod>,
    pub deployments: Vec<Deployment>,
    pub daemon_sets: Vec<DaemonSet>,
    pub stateful_sets: Vec<StatefulSet>,
    pub services: Vec<Service>,
    pub network_policies: Vec<NetworkPolicy>,
    /// `None` when the PeerAuthentication CRD is not installed (the check is skipped).
    pub peer_authentications: Option<Vec<PeerAuthentication>>,
    pub storage_classes: Vec<StorageClass>,
    pub csi_drivers: Vec<CSIDriver>,
    pub persistent_volumes: Vec<PersistentVolume>,
    pub persistent_volume_claims: Vec<PersistentVolumeClaim>,
    pub config_maps: Vec<ConfigMap>,
    /// Findings about the reading itself (a check that could not run).
    pub notes: Vec<Finding>,
}

#[derive(Debug, thiserror::Error)]
#[error("{kind} {name:?}: {source}")]
pub struct ObjectError {
    pub kind: String,
    pub name: String,
    pub source: serde_json::Error,
}

impl Objects {
    /// Offline input starts with an empty PeerAuthentication list: what is not in the files does
    /// not exist.
    pub fn offline() -> Self {
        Self {
            peer_authentications: Some(Vec::new()),
            ..Self::default()
        }
    }

    /// Adds one object by its kind; kinds no check reads are ignored. A `List` is flattened.
    pub fn add(&mut self, value: serde_json::Value) -> Result<(), ObjectError> {
        let kind = value.get("kind").and_then(|k| k.as_str()).unwrap_or("");
        let api_version = value
            .get("apiVersion")
            .and_then(|k| k.as_str())
            .unwrap_or("");
        if kind == "List" || (kind.ends_with("List") && value.get("items").is_some()) {
            let items = value.get("items").and_then(|i| i.as_array()).cloned();
            for item in items.unwrap_or_default() {
                self.add(item)?;
            }
            return Ok(());
        }
        let kind = kind.to_owned();
        let name = value
            .pointer("/metadata/name")
            .and_then(|n| n.as_str())
            .unwrap_or("")
            .to_owned();
        let err = |source| ObjectError {
            kind: kind.clone(),
            name: name.clone(),
            source,
        };
        match (kind.as_str(), api_version) {
            ("Namespace", _) => self.namespaces.push(parse(value).map_err(err)?),
            ("Pod", _) => self.pods.push(parse(value).map_err(err)?),
            ("Deployment", _) => self.deployments.push(parse(value).map_err(err)?),
            ("DaemonSet", _) => self.daemon_sets.push(parse(value).map_err(err)?),
            ("StatefulSet", _) => self.stateful_sets.push(parse(value).map_err(err)?),
            ("Service", _) => self.services.push(parse(value).map_err(err)?),
            ("NetworkPolicy", v) if v.starts_with("networking.k8s.io") => {
                self.network_policies.push(parse(value).map_err(err)?)
            }
            ("PeerAuthentication", v) if v.starts_with("security.istio.io") => {
                let pa = parse(value).map_err(err)?;
                self.peer_authentications
                    .get_or_insert_with(Vec::new)
                    .push(pa)
            }
            ("StorageClass", _) => self.storage_classes.push(parse(value).map_err(err)?),
            ("CSIDriver", _) => self.csi_drivers.push(parse(value).map_err(err)?),
            ("PersistentVolume", _) => self.persistent_volumes.push(parse(value).map_err(err)?),
            ("PersistentVolumeClaim", _) => self
                .persistent_volume_claims
                .push(parse(value).map_err(err)?),
            ("ConfigMap", _) => self.config_maps.push(parse(value).map_err(err)?),
            _ => {}
        }
        Ok(())
    }

    pub fn namespace(&self, name: &str) -> Option<&Namespace> {
        self.namespaces
            .iter()
            .find(|n| n.metadata.name.as_deref() == Some(name))
    }
}

fn parse<T: serde::de::DeserializeOwned>(value: serde_json::Value) -> Result<T, serde_json::Error> {
    serde_json::from_value(value)
}
