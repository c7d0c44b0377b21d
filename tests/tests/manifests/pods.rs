//! Reading pod templates: container arguments, volumes and where they are mounted, probes.

use k8s_openapi::{
    api::core::v1::{Container, Probe},
    apimachinery::pkg::util::intstr::IntOrString,
};
use rwxnfs_server::Endpoint;

use crate::objects::{Pod, flag};

pub(crate) fn args(c: &Container) -> &[String] {
    c.args.as_deref().unwrap_or_default()
}

pub(crate) fn unix_path(endpoint: &str, what: &str) -> String {
    match endpoint.parse::<Endpoint>() {
        Ok(Endpoint::Unix(path)) => path.display().to_string(),
        other => panic!("{what}: {endpoint:?} is not a unix:// endpoint ({other:?})"),
    }
}

/// The volume mounted at the directory that holds `path` in `container`, and the rest of the
/// path below it.
pub(crate) fn volume_holding<'a>(container: &'a Container, path: &str) -> (&'a str, String) {
    container
        .volume_mounts
        .as_deref()
        .unwrap_or_default()
        .iter()
        .filter_map(|m| {
            let rest = path.strip_prefix(m.mount_path.trim_end_matches('/'))?;
            rest.starts_with('/')
                .then(|| (m.name.as_str(), rest.to_string()))
        })
        .max_by_key(|(_, rest)| std::cmp::Reverse(rest.len()))
        .unwrap_or_else(|| panic!("container {}: nothing is mounted at {path}", container.name))
}

pub(crate) fn host_path(pod: &Pod<'_>, volume: &str) -> String {
    pod.spec()
        .volumes
        .as_deref()
        .unwrap_or_default()
        .iter()
        .find(|v| v.name == volume)
        .and_then(|v| v.host_path.as_ref())
        .map(|h| h.path.clone())
        .unwrap_or_else(|| panic!("{}: volume {volume} is not a hostPath", pod.workload))
}

/// A probe's port is one the probed container itself listens on, with the check it serves
/// there: the CSI plugins their own /healthz for liveness and /readyz for readiness
/// (`--health-address`: the CSI socket accepting, and their CSI Probe's readiness), the
/// sidecars their leader-election health endpoint (`--http-endpoint`). A probe on another
/// container's port would restart the wrong container; a liveness probe on /readyz would
/// restart the controller whenever an agent is slow.
pub(crate) fn probe_reaches_a_server(
    pod: &Pod<'_>,
    c: &Container,
    probe: &Probe,
    what: &str,
    plugin_path: &str,
) {
    let port = match (&probe.http_get, &probe.tcp_socket, &probe.exec) {
        (Some(get), _, _) => &get.port,
        (_, Some(tcp), _) => &tcp.port,
        (_, _, Some(_)) => return,
        _ => panic!("{what}: a liveness probe without an action"),
    };
    let number = match port {
        IntOrString::Int(n) => *n,
        IntOrString::String(named) => c
            .ports
            .as_deref()
            .unwrap_or_default()
            .iter()
            .find(|p| p.name.as_deref() == Some(named))
            .map(|p| p.container_port)
            .unwrap_or_else(|| panic!("{what}: probes port {named:?}, which it does not declare")),
    };
    let (server, listener) = pod
        .spec()
        .containers
        .iter()
        .find_map(|s| {
            ["health-address", "http-endpoint", "metrics-address"]
                .into_iter()
                .find(|listener| {
                    flag(args(s), listener)
                        .and_then(|e| e.rsplit(':').next())
                        .is_some_and(|p| p == number.to_string())
                })
                .map(|listener| (s, listener))
        })
        .unwrap_or_else(|| panic!("{what}: nothing in the pod serves port {number}"));
    assert_eq!(
        server.name, c.name,
        "{what}: probes port {number}, which container {} serves",
        server.name
    );
    let path = probe.http_get.as_ref().and_then(|g| g.path.as_deref());
    match (listener, path) {
        ("health-address", Some(path)) if path == plugin_path => {}
        ("http-endpoint", Some("/healthz/leader-election")) => assert!(
            flag(args(c), "leader-election").is_some(),
            "{what}: no leader election to probe"
        ),
        (listener, path) => {
            panic!("{what}: probes {path:?} on its --{listener}, which serves no such check")
        }
    }
}
