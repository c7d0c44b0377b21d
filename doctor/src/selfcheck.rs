//! The controller's start-up self-check: its own Pod and Namespace from the Kubernetes API,
//! the driver-pod mesh check on them, each finding logged with its fix, and an Event on the
//! Pod when it is misconfigured.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use k8s_openapi::{
    api::{
        core::v1::{Namespace, ObjectReference, Pod},
        events::v1::Event,
    },
    apimachinery::pkg::apis::meta::v1::MicroTime,
    jiff::Timestamp,
};
use kube::{
    Api, Client,
    api::{ObjectMeta, PostParams},
};
use rwxnfs_model::mesh::Traffic;

use crate::{
    checks::driver_mesh,
    context::Context,
    finding::{Finding, ObjectRef, Severity},
    objects::Objects,
    workload::pod_workload,
};

/// The Event reason the self-check records.
pub const REASON: &str = "MeshMisconfigured";
/// The `reportingController` of its Events.
pub const REPORTING_CONTROLLER: &str = "rwxnfs.csi.io/controller";
/// The Event note's limit in the API.
const NOTE_LIMIT: usize = 1024;
/// The longest object name the API takes (a DNS subdomain).
const EVENT_NAME_LIMIT: usize = 253;

#[derive(Debug, thiserror::Error)]
pub enum SelfCheckError {
    #[error("cannot read this pod ({namespace}/{name}) from the Kubernetes API: {source}")]
    Pod {
        namespace: String,
        name: String,
        source: kube::Error,
    },
    #[error("pod {namespace}/{name} has no spec")]
    NoSpec { namespace: String, name: String },
    #[error("cannot record the {REASON} Event on pod {namespace}/{name}: {source}")]
    Event {
        namespace: String,
        name: String,
        source: kube::Error,
    },
}

/// Who the controller is and what its traffic is.
#[derive(Clone, Debug)]
pub struct Identity {
    pub pod: String,
    pub namespace: String,
    /// The ports and addresses derived from the controller's own configuration.
    pub traffic: Traffic,
    /// Where that configuration came from, for the messages.
    pub config: String,
}

/// Runs the check and logs its findings; records an Event when one is a warning or an error.
/// Returns the findings.
pub async fn run(client: &Client, me: &Identity) -> Result<Vec<Finding>, SelfCheckError> {
    let pods: Api<Pod> = Api::namespaced(client.clone(), &me.namespace);
    let pod = pods
        .get(&me.pod)
        .await
        .map_err(|source| SelfCheckError::Pod {
            namespace: me.namespace.clone(),
            name: me.pod.clone(),
            source,
        })?;
    let namespaces: Api<Namespace> = Api::all(client.clone());
    let namespace = match namespaces.get_opt(&me.namespace).await {
        Ok(ns) => ns,
        Err(e) => {
            tracing::warn!(namespace = %me.namespace, error = %e, "self-check: cannot read this namespace's labels; checking the pod alone");
            None
        }
    };
    let findings = check(pod.clone(), namespace, me)?;
    for f in &findings {
        log(f);
    }
    if findings.iter().any(|f| f.severity >= Severity::Warning) {
        record_event(client, &pod, me, &findings).await?;
    } else {
        tracing::info!(pod = %me.pod, "self-check: this pod's service-mesh settings leave NFS and agent traffic alone");
    }
    Ok(findings)
}

fn check(
    pod: Pod,
    namespace: Option<Namespace>,
    me: &Identity,
) -> Result<Vec<Finding>, SelfCheckError> {
    let objects = Objects {
        pods: vec![pod],
        namespaces: namespace.into_iter().collect(),
        ..Objects::default()
    };
    let Some(w) = objects.pods.first().and_then(pod_workload) else {
        return Err(SelfCheckError::NoSpec {
            namespace: me.namespace.clone(),
            name: me.pod.clone(),
        });
    };
    let source = ObjectRef::new("ConfigMap", Some(&me.namespace), &me.config);
    let ctx = Context::with_traffic(&objects, me.traffic.clone(), source);
    Ok(driver_mesh::check_workload(&ctx, &w))
}

fn log(f: &Finding) {
    match f.severity {
        Severity::Error => {
            tracing::error!(code = f.code, object = %f.object, fix = %f.fix.command, "self-check: {}", f.problem)
        }
        Severity::Warning => {
            tracing::warn!(code = f.code, object = %f.object, fix = %f.fix.command, "self-check: {}", f.problem)
        }
        Severity::Info => {
            tracing::info!(code = f.code, object = %f.object, fix = %f.fix.command, "self-check: {}", f.problem)
        }
    }
}

/// One line per finding (code and fix), cut to the API's limit.
fn note(findings: &[Finding]) -> String {
    let mut note = findings
        .iter()
        .filter(|f| f.severity >= Severity::Warning)
        .map(|f| format!("{} {}: {}", f.code, f.severity.as_str(), f.fix.command))
        .collect::<Vec<_>>()
        .join("\n");
    if note.len() > NOTE_LIMIT {
        let mut end = NOTE_LIMIT - 3;
        while !note.is_char_boundary(end) {
            end -= 1;
        }
        note.truncate(end);
        note.push_str("...");
    }
    note
}

fn micro_time(since: Duration) -> MicroTime {
    let seconds = i64::try_from(since.as_secs()).unwrap_or(0);
    let nanos = i32::try_from(since.subsec_micros() * 1000).unwrap_or(0);
    MicroTime(Timestamp::new(seconds, nanos).unwrap_or(Timestamp::UNIX_EPOCH))
}

/// The Event's name, as client-go's recorder makes it: `<pod>.<hex nanoseconds>`. An Event's
/// name must be a DNS subdomain (at most 253 characters, alphanumeric at both ends), so a
/// long pod name is cut and loses any '.' or '-' the cut leaves at its end. (A
/// `generateName` of `<pod>.` is refused with 422: only a trailing '-' is allowed there.)
fn event_name(pod: &str, since_epoch: Duration) -> String {
    let suffix = format!(".{:x}", since_epoch.as_nanos());
    let room = EVENT_NAME_LIMIT.saturating_sub(suffix.len());
    let mut end = pod.len().min(room);
    while !pod.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}{suffix}", pod[..end].trim_end_matches(['.', '-']))
}

async fn record_event(
    client: &Client,
    pod: &Pod,
    me: &Identity,
    findings: &[Finding],
) -> Result<(), SelfCheckError> {
    let since = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    let event = Event {
        metadata: ObjectMeta {
            name: Some(event_name(&me.pod, since)),
            namespace: Some(me.namespace.clone()),
            ..ObjectMeta::default()
        },
        event_time: Some(micro_time(since)),
        action: Some("SelfCheck".into()),
        reason: Some(REASON.into()),
        type_: Some("Warning".into()),
        note: Some(note(findings)),
        regarding: Some(ObjectReference {
            api_version: Some("v1".into()),
            kind: Some("Pod".into()),
            name: Some(me.pod.clone()),
            namespace: Some(me.namespace.clone()),
            uid: pod.metadata.uid.clone(),
            ..ObjectReference::default()
        }),
        reporting_controller: Some(REPORTING_CONTROLLER.into()),
        reporting_instance: Some(me.pod.clone()),
        ..Event::default()
    };
    let events: Api<Event> = Api::namespaced(client.clone(), &me.namespace);
    events
        .create(&PostParams::default(), &event)
        .await
        .map_err(|source| SelfCheckError::Event {
            namespace: me.namespace.clone(),
            name: me.pod.clone(),
            source,
        })?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The API's rule for an object name (apimachinery's IsDNS1123Subdomain): at most 253
    /// characters, dot-separated parts of lowercase alphanumerics and '-', alphanumeric at
    /// both ends.
    fn is_dns_subdomain(name: &str) -> bool {
        name.len() <= 253
            && name.split('.').all(|label| {
                !label.is_empty()
                    && label
                        .bytes()
                        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
                    && !label.starts_with('-')
                    && !label.ends_with('-')
            })
    }

    #[test]
    fn the_event_is_named_after_the_pod_and_the_time_as_client_go_names_it() {
        let at = Duration::new(1_767_225_600, 123_456_789);
        let name = event_name("rwxnfs-controller-5d8f7c9b4-x2x7k", at);
        assert_eq!(name, "rwxnfs-controller-5d8f7c9b4-x2x7k.18867251f555cd15");
        assert!(is_dns_subdomain(&name), "{name}");
    }

    #[test]
    fn the_event_name_is_a_dns_subdomain_for_the_longest_pod_names() {
        let at = Duration::new(1_767_225_600, 123_456_789);
        let longest = format!("{}-{}.{}", "a".repeat(100), "b".repeat(100), "c".repeat(51));
        assert_eq!(longest.len(), 253);
        assert!(is_dns_subdomain(&longest));
        for pod in [
            longest,
            // Cut just after a '.' or a '-'.
            format!("{}.{}", "a".repeat(235), "b".repeat(17)),
            format!("{}-{}", "a".repeat(235), "b".repeat(17)),
            format!("{}.{}", "a".repeat(236), "b".repeat(16)),
        ] {
            let name = event_name(&pod, at);
            assert!(is_dns_subdomain(&name), "{pod} -> {name}");
            assert!(name.ends_with(".18867251f555cd15"), "{name}");
            assert!(name.starts_with(&pod[..230]), "{name}");
        }
    }
}
