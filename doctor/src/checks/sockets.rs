//! RWX061: a CSI socket path that differs between the driver container and its sidecars
//! (`--csi-address`), or between the node plugin's socket on the host and the registrar's
//! `--kubelet-registration-path`.

use k8s_openapi::api::core::v1::Container;
use serde_json::json;

use crate::{
    args,
    context::Context,
    finding::{Finding, Fix, Severity},
    workload::{Role, Workload},
};

use super::driver_names::registrar;

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
    let base = &volume.host_path.as_ref()?.path;
    Some(format!("{}/{}", base.trim_end_matches('/'), at.rest))
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
        out.extend(registration(w, &at));
    }
    out
}

fn registration(w: &Workload<'_>, at: &Located) -> Option<Finding> {
    let reg = registrar(w)?;
    let registered = args::flag(reg, "kubelet-registration-path")?;
    let host = host_path(w, at)?;
    if registered == host {
        return None;
    }
    Some(finding(
        w,
        format!(
            "the registrar tells the kubelet the socket is {registered}, but on the host the driver's socket is {host}"
        ),
        args_fix(w, reg, "kubelet-registration-path", &host),
    ))
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
