//! How a node pod registers the driver with the kubelet: `rwxnfs node --registration-socket`
//! itself (the shipped manifests), or a node-driver-registrar sidecar (clusters that still run
//! one). Either way the kubelet finds a socket under its `plugins_registry/` and is told where
//! the CSI socket is on the host, by the same flag, `--kubelet-registration-path`.

use k8s_openapi::api::core::v1::Container;

use crate::{args, workload::Workload};

/// Where the kubelet looks for registration sockets.
pub const KUBELET_PLUGINS_REGISTRY: &str = "/var/lib/kubelet/plugins_registry";
/// node-driver-registrar's `--plugin-registration-path` when it is not given.
const REGISTRAR_DIR: &str = "/registration";

/// Who serves the kubelet's registration API.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum By {
    /// `rwxnfs node --registration-socket`.
    NodePlugin,
    /// A node-driver-registrar sidecar.
    Registrar,
}

/// One way a pod registers the driver.
#[derive(Clone, Debug)]
pub struct Registration<'a> {
    pub by: By,
    /// The container whose flags say it (the driver container itself, or the sidecar), and
    /// the one a fix patches.
    pub container: &'a Container,
    /// `--kubelet-registration-path`: the CSI socket's path on the host, as the kubelet is
    /// told it. Unset, `rwxnfs node` tells the kubelet its `--endpoint` path (and a registrar
    /// does not start).
    pub kubelet_path: Option<String>,
    /// The directory, inside `container`, the registration socket is made in.
    pub socket_dir: String,
}

impl Registration<'_> {
    /// Who registers, as a finding names it.
    pub fn who(&self) -> String {
        match self.by {
            By::NodePlugin => format!("rwxnfs node (container {})", self.container.name),
            By::Registrar => format!("the registrar (container {})", self.container.name),
        }
    }
}

/// Every way the node pod `w`, whose driver container is `driver`, registers the driver: none
/// means the kubelet never learns of it.
pub fn registrations<'a>(w: &Workload<'a>, driver: &'a Container) -> Vec<Registration<'a>> {
    let mut out = Vec::new();
    if let Some(socket) = args::flag(driver, "registration-socket") {
        out.push(Registration {
            by: By::NodePlugin,
            container: driver,
            kubelet_path: args::flag(driver, "kubelet-registration-path"),
            socket_dir: parent(&socket).to_owned(),
        });
    }
    for c in w.spec.containers.iter().filter(|c| c.name != driver.name) {
        if is_registrar(c) {
            out.push(Registration {
                by: By::Registrar,
                container: c,
                kubelet_path: args::flag(c, "kubelet-registration-path"),
                socket_dir: args::flag(c, "plugin-registration-path")
                    .unwrap_or_else(|| REGISTRAR_DIR.to_owned()),
            });
        }
    }
    out
}

/// A node-driver-registrar sidecar: by its name or image, or by the flag only it takes.
fn is_registrar(c: &Container) -> bool {
    c.name.contains("registrar")
        || c.image
            .as_deref()
            .is_some_and(|i| i.contains("node-driver-registrar"))
        || args::flag(c, "kubelet-registration-path").is_some()
}

fn parent(path: &str) -> &str {
    match path.rsplit_once('/') {
        Some(("", _)) | None => "/",
        Some((dir, _)) => dir,
    }
}

#[cfg(test)]
mod tests {
    use k8s_openapi::api::core::v1::PodSpec;
    use kube::api::ObjectMeta;

    use super::*;
    use crate::finding::ObjectRef;

    fn container(name: &str, image: &str, args: &[&str]) -> Container {
        Container {
            name: name.into(),
            image: Some(image.into()),
            args: Some(args.iter().map(|s| s.to_string()).collect()),
            ..Default::default()
        }
    }

    fn found(containers: Vec<Container>) -> Vec<(By, String, Option<String>, String)> {
        let spec = PodSpec {
            containers,
            ..Default::default()
        };
        let meta = ObjectMeta::default();
        let w = Workload {
            object: ObjectRef::new("DaemonSet", Some("rwxnfs"), "rwxnfs-node"),
            templated: true,
            namespace: "rwxnfs".into(),
            meta: &meta,
            spec: &spec,
        };
        let (_, driver) = w.driver().expect("a driver container");
        registrations(&w, driver)
            .into_iter()
            .map(|r| (r.by, r.container.name.clone(), r.kubelet_path, r.socket_dir))
            .collect()
    }

    const SOCKET: &str = "/var/lib/kubelet/plugins/rwxnfs.csi.io/csi.sock";

    #[test]
    fn the_node_plugin_registers_itself_with_its_own_flags() {
        let node = container(
            "rwxnfs",
            "rwxnfs",
            &[
                "node",
                "--registration-socket=/registration/rwxnfs.csi.io-reg.sock",
                &format!("--kubelet-registration-path={SOCKET}"),
            ],
        );
        assert_eq!(
            found(vec![node]),
            [(
                By::NodePlugin,
                "rwxnfs".into(),
                Some(SOCKET.into()),
                "/registration".into()
            )]
        );
    }

    #[test]
    fn a_registrar_sidecar_is_found_by_name_image_or_flag() {
        let node = container("rwxnfs", "rwxnfs", &["node"]);
        let by_image = container(
            "reg",
            "registry.k8s.io/sig-storage/csi-node-driver-registrar:v2.13.0",
            &["--plugin-registration-path=/plugins_registry"],
        );
        assert_eq!(
            found(vec![node.clone(), by_image]),
            [(
                By::Registrar,
                "reg".into(),
                None,
                "/plugins_registry".into()
            )]
        );
        let by_flag = container(
            "register",
            "mirror.example/registrar",
            &[&format!("--kubelet-registration-path={SOCKET}")],
        );
        assert_eq!(
            found(vec![node, by_flag]),
            [(
                By::Registrar,
                "register".into(),
                Some(SOCKET.into()),
                "/registration".into()
            )]
        );
    }

    #[test]
    fn a_pod_that_does_both_registers_twice_and_one_that_does_neither_never() {
        let node = container(
            "rwxnfs",
            "rwxnfs",
            &["node", "--registration-socket", "/reg.sock"],
        );
        let registrar = container("node-driver-registrar", "registrar", &[]);
        let both: Vec<By> = found(vec![node, registrar])
            .into_iter()
            .map(|(by, ..)| by)
            .collect();
        assert_eq!(both, [By::NodePlugin, By::Registrar]);
        assert_eq!(found(vec![container("rwxnfs", "rwxnfs", &["node"])]), []);
    }
}
