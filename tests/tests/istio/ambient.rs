//! Ambient mode. The in-pod redirection rules are written by Istio's CNI node agent
//! (`install-cni`'s daemon) into a pod's namespace once it has decided, from the pod's and its
//! namespace's labels, that the pod is enrolled; no Istio command generates them offline, and
//! the node agent needs a Kubernetes API, a ztunnel on its socket and the host's CNI
//! directories. What can be checked offline is that decision's input as Istio renders it: the
//! enablement selectors of the `istio-cni-config` ConfigMap (AMBIENT_ENABLEMENT_SELECTOR), here
//! applied to the driver's pods the way the node agent applies them (`Matches` in
//! cni/pkg/util: a host-network pod never; otherwise any selector whose pod and namespace
//! parts both match).

use std::collections::BTreeMap;

use serde::Deserialize;
use serde_json::Value;

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct EnablementSelector {
    #[serde(default)]
    pod_selector: LabelSelector,
    #[serde(default)]
    namespace_selector: LabelSelector,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct LabelSelector {
    #[serde(default)]
    match_labels: BTreeMap<String, String>,
    #[serde(default)]
    match_expressions: Vec<Requirement>,
}

#[derive(Debug, Deserialize)]
struct Requirement {
    key: String,
    operator: String,
    #[serde(default)]
    values: Vec<String>,
}

type Labels = BTreeMap<String, String>;

impl LabelSelector {
    /// Kubernetes' label-selector semantics (an empty selector matches everything).
    fn matches(&self, labels: &Labels) -> bool {
        self.match_labels
            .iter()
            .all(|(k, v)| labels.get(k) == Some(v))
            && self.match_expressions.iter().all(|r| {
                let value = labels.get(&r.key);
                match r.operator.as_str() {
                    "In" => value.is_some_and(|v| r.values.contains(v)),
                    "NotIn" => !value.is_some_and(|v| r.values.contains(v)),
                    "Exists" => value.is_some(),
                    "DoesNotExist" => value.is_none(),
                    other => panic!("unknown selector operator {other}"),
                }
            })
    }
}

/// The enablement selectors `istioctl manifest generate` rendered into `istio-cni-config`.
pub(crate) fn enablement_selectors(install: &[Value]) -> Vec<EnablementSelector> {
    let config = crate::istioctl::find(install, "ConfigMap", "istio-cni-config");
    let text = config["data"]["AMBIENT_ENABLEMENT_SELECTOR"]
        .as_str()
        .expect("istio-cni-config has AMBIENT_ENABLEMENT_SELECTOR");
    serde_yaml_ng::from_str(text).expect("the selectors are YAML")
}

/// Whether Istio's node agent would enrol a pod with `pod_labels` (on the host network or not)
/// in a namespace with `namespace_labels`.
pub(crate) fn enrolled(
    selectors: &[EnablementSelector],
    pod_labels: &Labels,
    host_network: bool,
    namespace_labels: &Labels,
) -> bool {
    !host_network
        && selectors.iter().any(|s| {
            s.pod_selector.matches(pod_labels) && s.namespace_selector.matches(namespace_labels)
        })
}

pub(crate) fn labels(value: &Value) -> Labels {
    serde_json::from_value(value.clone()).unwrap_or_default()
}
