//! RWX061: a CSI socket path that differs between the driver container and its sidecars
//! (`--csi-address`), or between the node plugin's socket on the host and the path the kubelet
//! is told at registration (`--kubelet-registration-path`, of `rwxnfs node` or of a
//! registrar); a registration socket the kubelet does not watch; a node plugin that nobody
//! registers.

use k8s_openapi::api::core::v1::Container;
use serde_json::json;

use crate::{
    args,
    context::Context,
    finding::{Finding, Fix, Severity},
    registration::{By, KUBELET_PLUGINS_REGISTRY, Registration, registrations},
    workload::{Role, Workload},
};

use super::driver_names::{KUBELET_PLUGINS, container_driver_name};

/// The driver container's default endpoint.
pub const DEFAULT_ENDPOINT: &str = "unix:///csi/csi.sock";

/// Where a path inside a container lives: the volume mounted there and the rest of the path.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Located {
    volume: String,
    rest: String,
}

fn locate(c: &Container, path: &str) -> Option<Located> {
    c.volume_mounts
        .iter()
        .flatten()
        .filter(|m| {
            let mount = m.mount_path.trim_end_matches('/');
            path == mount || path.starts_with(&format!("{mount}/"))
        })
        .max_by_key(|m| m.mount_path.len())
        .map(|m| {
            let rest = path[m.mount_path.trim_end_matches('/').len()..].trim_start_matches('/');
            let sub = m.sub_path.as_deref().unwrap_or("");
            Located {
                volume: m.name.clone(),
                rest: [sub, rest]
                    .iter()
                    .filter(|s| !s.is_empty())
                    .copied()
                    .collect::<Vec<_>>()
                    .join("/"),
            }
        })
}

/// The path of `at` inside container `c`, when `c` mounts its volume.
fn path_in(c: &Container, at: &Located) -> Option<String> {
    let m = c
        .volume_mounts
        .iter()
        .flatten()
        .find(|m| m.name == at.volume && m.sub_path.is_none())?;
    Some(format!(
        "{}/{}",
        m.mount_path.trim_end_matches('/'),
        at.rest
    ))
}

fn host_path(w: &Workload<'_>, at: &Located) -> Option<String> {
    let volume = w
        .spec
        .volumes
        .iter()
        .flatten()
        .find(|v| v.name == at.volume)?;
    let base = volume.host_path.as_ref()?.path.trim_end_matches('/');
    if at.rest.is_empty() {
        return Some(base.to_owned());
    }
    Some(format!("{base}/{}", at.rest))
}

pub fn check(ctx: &Context<'_>) -> Vec<Finding> {
    ctx.workloads.iter().flat_map(check_workload).collect()
}

fn check_workload(w: &Workload<'_>) -> Vec<Finding> {
    let Some((role, driver)) = w.driver() else {
        return Vec::new();
    };
    let endpoint = args::flag(driver, "endpoint")
        .or_else(|| args::env(driver, "CSI_ENDPOINT"))
        .unwrap_or_else(|| DEFAULT_ENDPOINT.to_owned());
    let Some(socket) = endpoint.strip_prefix("unix://") else {
        return Vec::new();
    };
    let Some(at) = locate(driver, socket) else {
        return vec![finding(
            w,
            format!(
                "the driver container's socket {socket} is on no volume, so no sidecar can reach it"
            ),
            Fix::command(format!(
                "mount an emptyDir (controller) or the kubelet plugin hostPath (node) at {} in container {}",
                parent(socket),
                driver.name
            )),
        )];
    };
    let mut out = Vec::new();
    for sidecar in w.spec.containers.iter().filter(|c| c.name != driver.name) {
        let Some(address) = args::flag(sidecar, "csi-address") else {
            continue;
        };
        let address = address
            .strip_prefix("unix://")
            .unwrap_or(&address)
            .to_owned();
        if locate(sidecar, &address).as_ref() == Some(&at) {
            continue;
        }
        let fix = match path_in(sidecar, &at) {
            Some(path) => args_fix(w, sidecar, "csi-address", &path),
            None => Fix::command(format!(
                "mount volume {} in container {} and point --csi-address at {}",
                at.volume, sidecar.name, at.rest
            )),
        };
        out.push(finding(w, format!("container {} dials {address}, which is not the driver's socket {socket} (volume {}, {})", sidecar.name, at.volume, at.rest), fix));
    }
    if role == Role::Node {
        out.extend(registration(w, driver, socket, &at));
    }
    out
}

/// The node plugin's registrations: each must make its socket where the kubelet watches and
/// tell it where the driver's socket is on the host; without one the kubelet never uses the
/// driver.
fn registration(w: &Workload<'_>, driver: &Container, socket: &str, at: &Located) -> Vec<Finding> {
    let host = host_path(w, at);
    let regs = registrations(w, driver);
    if regs.is_empty() {
        return vec![unregistered(w, driver, host)];
    }
    let mut out = Vec::new();
    for reg in &regs {
        out.extend(watched(w, reg));
        let Some(host) = &host else {
            continue;
        };
        let registered = match (&reg.kubelet_path, reg.by) {
            (Some(path), _) => path.as_str(),
            (None, By::NodePlugin) => socket,
            (None, By::Registrar) => continue,
        };
        if registered != host {
            out.push(finding(
                w,
                format!(
                    "{} tells the kubelet the socket is {registered}, but on the host the driver's socket is {host}",
                    reg.who()
                ),
                args_fix(w, reg.container, "kubelet-registration-path", host),
            ));
        }
    }
    out
}

/// A registration socket outside the kubelet's plugins_registry/ on the host is never found.
fn watched(w: &Workload<'_>, reg: &Registration<'_>) -> Option<Finding> {
    let dir = &reg.socket_dir;
    let host = locate(reg.container, dir).and_then(|at| host_path(w, &at));
    let on_host = match &host {
        Some(h)
            if h == KUBELET_PLUGINS_REGISTRY
                || h.starts_with(&format!("{KUBELET_PLUGINS_REGISTRY}/")) =>
        {
            return None;
        }
        Some(h) => format!("is {h} on the host"),
        None => "is on no hostPath volume".to_owned(),
    };
    Some(finding(
        w,
        format!(
            "{} makes its registration socket in {dir}, which {on_host}: the kubelet only looks in {KUBELET_PLUGINS_REGISTRY}, so it never registers the driver",
            reg.who()
        ),
        Fix::command(format!(
            "mount a hostPath volume of {KUBELET_PLUGINS_REGISTRY} at {dir} in container {}",
            reg.container.name
        )),
    ))
}

/// Neither `--registration-socket` nor a registrar: the fix is the shipped manifests' shape.
fn unregistered(w: &Workload<'_>, driver: &Container, host: Option<String>) -> Finding {
    let name = container_driver_name(driver);
    let host = host.unwrap_or_else(|| format!("{KUBELET_PLUGINS}/{name}/csi.sock"));
    let mut c = driver.clone();
    c.args = Some(args::with_flag(
        &c,
        "registration-socket",
        &format!("/registration/{name}-reg.sock"),
    ));
    let args = args::with_flag(&c, "kubelet-registration-path", &host);
    let patch = json!({"spec": {
        "containers": [{
            "name": driver.name,
            "args": args,
            "volumeMounts": [{"name": "registration-dir", "mountPath": "/registration"}],
        }],
        "volumes": [{
            "name": "registration-dir",
            "hostPath": {"path": KUBELET_PLUGINS_REGISTRY, "type": "Directory"},
        }],
    }});
    finding(
        w,
        format!(
            "nothing registers the driver with the kubelet (no --registration-socket on container {}, no node-driver-registrar), so the kubelet never uses this node plugin",
            driver.name
        ),
        Fix::patch(&w.object, "strategic", w.pod_patch(patch)),
    )
}

fn args_fix(w: &Workload<'_>, c: &Container, flag: &str, value: &str) -> Fix {
    let container = json!({"name": c.name, "args": args::with_flag(c, flag, value)});
    Fix::patch(
        &w.object,
        "strategic",
        w.pod_patch(json!({"spec": {"containers": [container]}})),
    )
}

fn parent(path: &str) -> &str {
    path.rsplit_once('/').map_or("/", |(p, _)| p)
}

fn finding(w: &Workload<'_>, problem: String, fix: Fix) -> Finding {
    Finding {
        code: "RWX061",
        severity: Severity::Error,
        object: w.object.clone(),
        problem,
        fix,
    }
}
