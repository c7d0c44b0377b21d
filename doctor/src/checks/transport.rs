//! NFS over TLS (the StorageClass parameter `transport`).
//!
//! - RWX041: a StorageClass of ours whose `transport` is not `none`, `tls` or `mtls`: every
//!   claim of it fails to provision.
//! - RWX012: claims in a namespace under Istio STRICT mutual TLS (a namespace-wide
//!   PeerAuthentication, or the mesh-wide one in the root namespace that the namespace does not
//!   override) on a StorageClass without TLS. Kernel NFS from the node plugin on the host
//!   network never passes a proxy, so STRICT does not cover it: the claims' data crosses the
//!   network in plaintext, whatever the namespace's policy promises. `transport: mtls` gives it
//!   the same guarantee: encrypted, and only nodes with a trusted certificate.

use std::{collections::BTreeMap, str::FromStr};

use k8s_openapi::api::{core::v1::PersistentVolumeClaim, storage::v1::StorageClass};
use rwxnfs_model::Transport;
use serde_json::json;

use crate::{
    context::Context,
    finding::{Finding, Fix, ObjectRef, Severity},
    istio::ROOT_NAMESPACE,
    objects::PeerAuthentication,
};

use super::storage_class::our_storage_classes;

const DEFAULT_CLASS: &str = "storageclass.kubernetes.io/is-default-class";

pub fn check(ctx: &Context<'_>) -> Vec<Finding> {
    let mut out = Vec::new();
    let ours: Vec<&StorageClass> = our_storage_classes(ctx.objects, &ctx.driver_names).collect();
    for sc in &ours {
        if let Some(Err(value)) = transport(sc) {
            out.push(bad_value(sc, value));
        }
    }
    let Some(policies) = ctx.objects.peer_authentications.as_deref() else {
        return out;
    };
    // StorageClass name -> the STRICT namespaces' claims on it, and the policy that applies.
    let mut plaintext: BTreeMap<&str, Vec<(String, &PeerAuthentication)>> = BTreeMap::new();
    for pvc in &ctx.objects.persistent_volume_claims {
        if !read_write_many(pvc) {
            continue;
        }
        let Some(sc) = class_of(pvc, &ours) else {
            continue;
        };
        if !matches!(transport(sc), None | Some(Ok(Transport::None))) {
            continue;
        }
        let namespace = pvc.metadata.namespace.as_deref().unwrap_or("default");
        let Some(policy) = strict_for_namespace(policies, namespace) else {
            continue;
        };
        let claim = format!("{namespace}/{}", pvc.metadata.name.as_deref().unwrap_or(""));
        plaintext
            .entry(sc.metadata.name.as_deref().unwrap_or(""))
            .or_default()
            .push((claim, policy));
    }
    for (name, claims) in plaintext {
        out.push(plaintext_under_strict(name, &claims));
    }
    out
}

/// The class's `transport`: `None` when absent, else its value parsed.
fn transport(sc: &StorageClass) -> Option<Result<Transport, &str>> {
    let value = sc.parameters.as_ref()?.get("transport")?;
    Some(Transport::from_str(value).map_err(|_| value.as_str()))
}

fn read_write_many(pvc: &PersistentVolumeClaim) -> bool {
    pvc.spec
        .as_ref()
        .and_then(|s| s.access_modes.as_ref())
        .is_some_and(|modes| modes.iter().any(|m| m == "ReadWriteMany"))
}

/// The claim's StorageClass among ours: the one it names, or the default class when it names
/// none (`""` asks for no class at all).
fn class_of<'a>(
    pvc: &PersistentVolumeClaim,
    ours: &[&'a StorageClass],
) -> Option<&'a StorageClass> {
    let named = pvc
        .spec
        .as_ref()
        .and_then(|s| s.storage_class_name.as_deref());
    match named {
        Some("") => None,
        Some(name) => ours
            .iter()
            .find(|sc| sc.metadata.name.as_deref() == Some(name))
            .copied(),
        None => ours
            .iter()
            .find(|sc| {
                sc.metadata
                    .annotations
                    .as_ref()
                    .and_then(|a| a.get(DEFAULT_CLASS))
                    .is_some_and(|v| v == "true")
            })
            .copied(),
    }
}

/// The policy that makes `namespace` STRICT: its own namespace-wide one, else the mesh-wide
/// one in the root namespace (`UNSET` inherits, as Istio does).
fn strict_for_namespace<'p>(
    policies: &'p [PeerAuthentication],
    namespace: &str,
) -> Option<&'p PeerAuthentication> {
    let namespace_wide = |ns: &str| {
        policies.iter().find(move |p| {
            p.metadata.namespace.as_deref().unwrap_or("default") == ns
                && p.spec
                    .selector
                    .as_ref()
                    .and_then(|s| s.match_labels.as_ref())
                    .is_none_or(|l| l.is_empty())
        })
    };
    let mode = |p: &PeerAuthentication| {
        p.spec
            .mtls
            .as_ref()
            .and_then(|m| m.mode.clone())
            .filter(|m| m != "UNSET")
    };
    let decided = [namespace_wide(namespace), namespace_wide(ROOT_NAMESPACE)]
        .into_iter()
        .flatten()
        .find_map(|p| mode(p).map(|m| (p, m)))?;
    (decided.1 == "STRICT").then_some(decided.0)
}

/// StorageClasses are immutable: the fix patches a copy and replaces it.
fn replace_with(name: &str, transport: &str) -> Fix {
    let patch = json!({"parameters": {"transport": transport}});
    let command = format!(
        "kubectl patch storageclass {name} --type merge -p '{patch}' --dry-run=client -o yaml | kubectl replace --force -f -"
    );
    Fix {
        patch_type: Some("merge"),
        patch: Some(patch),
        command,
    }
}

fn bad_value(sc: &StorageClass, value: &str) -> Finding {
    let name = sc.metadata.name.as_deref().unwrap_or("");
    let lower = value.to_ascii_lowercase();
    let fixed = Transport::from_str(&lower).map_or("none", Transport::as_str);
    Finding {
        code: "RWX041",
        severity: Severity::Error,
        object: ObjectRef::new("StorageClass", None, name),
        problem: format!(
            "parameter transport is {value:?}, which is not none, tls or mtls: every claim of this class fails to provision (CreateVolume answers INVALID_ARGUMENT)"
        ),
        fix: replace_with(name, fixed),
    }
}

fn plaintext_under_strict(name: &str, claims: &[(String, &PeerAuthentication)]) -> Finding {
    let listed: Vec<String> = claims
        .iter()
        .map(|(claim, policy)| {
            format!(
                "{claim} (PeerAuthentication {}/{})",
                policy.metadata.namespace.as_deref().unwrap_or("default"),
                policy.metadata.name.as_deref().unwrap_or("")
            )
        })
        .collect();
    Finding {
        code: "RWX012",
        severity: Severity::Warning,
        object: ObjectRef::new("StorageClass", None, name),
        problem: format!(
            "claims in namespaces under STRICT mutual TLS use this class, whose transport is none: {}; NFS from the node plugin on the host network never passes a proxy, so STRICT does not cover it and these claims' data crosses the network in plaintext; set transport: mtls (NFS over TLS with a certificate per node: new claims are encrypted, existing volumes keep the transport they were created with)",
            listed.join(", ")
        ),
        fix: replace_with(name, "mtls"),
    }
}
