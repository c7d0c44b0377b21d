//! Live input: the objects the checks read, listed through the Kubernetes API.

use k8s_openapi::api::{
    apps::v1::{DaemonSet, Deployment, StatefulSet},
    core::v1::{ConfigMap, Namespace, PersistentVolume, PersistentVolumeClaim, Pod, Service},
    networking::v1::NetworkPolicy,
    storage::v1::{CSIDriver, StorageClass},
};
use kube::{
    Api, Client,
    api::{ApiResource, DynamicObject, ListParams},
    core::GroupVersionKind,
};
use serde::de::DeserializeOwned;

use crate::{
    finding::{Finding, Fix, ObjectRef, Severity},
    objects::{Objects, PeerAuthentication},
    workload::Role,
};

#[derive(Debug, thiserror::Error)]
pub enum LiveError {
    #[error("cannot read the kubeconfig {path}: {source}")]
    Kubeconfig {
        path: std::path::PathBuf,
        source: kube::config::KubeconfigError,
    },
    #[error("no cluster to talk to (no in-cluster service account, no kubeconfig): {0}")]
    Config(kube::Error),
    #[error("cannot list {what} from the Kubernetes API: {source}")]
    List {
        what: &'static str,
        source: kube::Error,
    },
    #[error("{what} from the Kubernetes API: {source}")]
    Decode {
        what: &'static str,
        source: serde_json::Error,
    },
}

/// A client from `kubeconfig`, or from the environment (in-cluster, `KUBECONFIG`, ~/.kube).
pub async fn client(kubeconfig: Option<&std::path::Path>) -> Result<Client, LiveError> {
    let Some(path) = kubeconfig else {
        return Client::try_default().await.map_err(LiveError::Config);
    };
    let kc = kube::config::Kubeconfig::read_from(path).map_err(|source| LiveError::Kubeconfig {
        path: path.to_owned(),
        source,
    })?;
    let config = kube::Config::from_custom_kubeconfig(kc, &Default::default())
        .await
        .map_err(|source| LiveError::Kubeconfig {
            path: path.to_owned(),
            source,
        })?;
    Client::try_from(config).map_err(LiveError::Config)
}

async fn list<K>(client: &Client, what: &'static str) -> Result<Vec<K>, LiveError>
where
    K: kube::Resource<DynamicType = ()> + Clone + DeserializeOwned + std::fmt::Debug,
{
    let api: Api<K> = Api::all(client.clone());
    let list = api
        .list(&ListParams::default())
        .await
        .map_err(|source| LiveError::List { what, source })?;
    Ok(list.items)
}

/// Lists every kind the checks read. A missing PeerAuthentication CRD skips that check with an
/// info finding; any other failure is an error.
pub async fn collect(client: &Client) -> Result<Objects, LiveError> {
    let mut objects = Objects {
        namespaces: list::<Namespace>(client, "namespaces").await?,
        deployments: list::<Deployment>(client, "deployments").await?,
        daemon_sets: list::<DaemonSet>(client, "daemonsets").await?,
        stateful_sets: list::<StatefulSet>(client, "statefulsets").await?,
        pods: list::<Pod>(client, "pods").await?,
        services: list::<Service>(client, "services").await?,
        network_policies: list::<NetworkPolicy>(client, "networkpolicies").await?,
        storage_classes: list::<StorageClass>(client, "storageclasses").await?,
        csi_drivers: list::<CSIDriver>(client, "csidrivers").await?,
        persistent_volumes: list::<PersistentVolume>(client, "persistentvolumes").await?,
        persistent_volume_claims: list::<PersistentVolumeClaim>(client, "persistentvolumeclaims")
            .await?,
        ..Objects::default()
    };
    objects.peer_authentications = peer_authentications(client, &mut objects.notes).await?;
    objects.config_maps = controller_config_maps(client, &objects).await?;
    Ok(objects)
}

async fn peer_authentications(
    client: &Client,
    notes: &mut Vec<Finding>,
) -> Result<Option<Vec<PeerAuthentication>>, LiveError> {
    let gvk = GroupVersionKind::gvk("security.istio.io", "v1", "PeerAuthentication");
    let resource = ApiResource::from_gvk_with_plural(&gvk, "peerauthentications");
    let api: Api<DynamicObject> = Api::all_with(client.clone(), &resource);
    let list = match api.list(&ListParams::default()).await {
        Ok(list) => list,
        Err(kube::Error::Api(status)) if status.code == 404 => {
            notes.push(Finding {
                code: "RWX090",
                severity: Severity::Info,
                object: ObjectRef::new("CustomResourceDefinition", None, "peerauthentications.security.istio.io"),
                problem: "the PeerAuthentication API (security.istio.io/v1) is not served: Istio is not installed, or too old; the STRICT mutual TLS check was skipped".into(),
                fix: Fix::command("nothing to do without Istio; with Istio older than 1.22 check PeerAuthentications by hand: kubectl get peerauthentications.security.istio.io -A"),
            });
            return Ok(None);
        }
        Err(source) => {
            return Err(LiveError::List {
                what: "peerauthentications",
                source,
            });
        }
    };
    let items = list
        .items
        .into_iter()
        .map(|o| serde_json::to_value(o).and_then(serde_json::from_value))
        .collect::<Result<Vec<PeerAuthentication>, _>>()
        .map_err(|source| LiveError::Decode {
            what: "peerauthentications",
            source,
        })?;
    Ok(Some(items))
}

/// The ConfigMaps the controller pods mount, for their `controller.yaml`.
async fn controller_config_maps(
    client: &Client,
    objects: &Objects,
) -> Result<Vec<ConfigMap>, LiveError> {
    let mut wanted = Vec::new();
    for w in crate::workload::workloads(objects) {
        if !matches!(w.driver(), Some((Role::Controller, _))) {
            continue;
        }
        for v in w.spec.volumes.iter().flatten() {
            if let Some(cm) = &v.config_map {
                let key = (w.namespace.clone(), cm.name.clone());
                if !wanted.contains(&key) {
                    wanted.push(key);
                }
            }
        }
    }
    let mut out = Vec::new();
    for (ns, name) in wanted {
        let api: Api<ConfigMap> = Api::namespaced(client.clone(), &ns);
        let cm = api.get_opt(&name).await.map_err(|source| LiveError::List {
            what: "configmaps",
            source,
        })?;
        out.extend(cm);
    }
    Ok(out)
}
