//! The Kubernetes manifests (manifests/) and the NFS hosts' HA configuration (manifests/ha/).
//!
//! The kustomizations are rendered with `kubectl kustomize` (offline) and every object is
//! parsed into its API type; then what must agree across objects is checked: service accounts
//! and their bindings, ConfigMaps and Secrets, socket paths, the driver name, resources and
//! probes, and the Istio settings against what `rwxnfs mesh annotations` derives.

#[path = "manifests/ha.rs"]
mod ha;
#[path = "manifests/objects.rs"]
mod objects;
#[path = "manifests/rbac.rs"]
mod rbac;

use std::{collections::BTreeMap, path::Path};

use k8s_openapi::{
    api::core::v1::{Container, Probe},
    apimachinery::pkg::util::intstr::IntOrString,
};
use objects::{Object, Pod, Rendering, driver_renderings, flag, manifests, name};
use rwxnfs_controller::ControllerConfig;
use rwxnfs_model::{
    DEFAULT_DRIVER_NAME, MountOptions, NfsVersion, Params,
    mesh::{self, NfsProtocol},
};
use rwxnfs_server::Endpoint;

const CONTROLLER: &str = "Deployment rwxnfs-controller";
const NODE: &str = "DaemonSet rwxnfs-node";

#[test]
fn every_kustomization_and_example_parses_into_api_types() {
    for rendering in driver_renderings() {
        let kinds: Vec<&str> = rendering
            .objects
            .iter()
            .map(|o| match o {
                Object::CsiDriver(_) => "CSIDriver",
                Object::Deployment(_) => "Deployment",
                Object::DaemonSet(_) => "DaemonSet",
                _ => "",
            })
            .collect();
        for kind in ["CSIDriver", "Deployment", "DaemonSet"] {
            assert!(
                kinds.contains(&kind),
                "{}: no {kind} rendered",
                rendering.origin
            );
        }
    }
    let examples = examples();
    assert!(examples.len() >= 5, "manifests/examples/ lost files");
}

/// manifests/examples/ rendered as its kustomization, plus every file in it that the
/// kustomization leaves out (they need a share of the reader's own).
fn examples() -> Vec<Rendering> {
    let dir = manifests().join("examples");
    let mut out = vec![Rendering::of_kustomization(&dir)];
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .expect("manifests/examples exists")
        .map(|e| e.expect("readable").path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .filter(|p| p.file_name().is_some_and(|n| n != "kustomization.yaml"))
        .collect();
    files.sort();
    out.extend(files.iter().map(|f| Rendering::of_file(f)));
    out
}

#[test]
fn the_csidriver_is_the_one_the_plugins_announce() {
    for rendering in driver_renderings() {
        let drivers = rendering.csi_drivers();
        assert_eq!(drivers.len(), 1, "{}: one CSIDriver", rendering.origin);
        let driver = drivers[0];
        assert_eq!(name(&driver.metadata), DEFAULT_DRIVER_NAME);
        let spec = &driver.spec;
        assert_eq!(spec.attach_required, Some(true), "publish grants access");
        assert_eq!(spec.fs_group_policy.as_deref(), Some("File"));
        assert_eq!(spec.pod_info_on_mount, Some(false));
        assert_eq!(
            spec.volume_lifecycle_modes.as_deref(),
            Some(&["Persistent".to_string()][..])
        );
        for pod in rendering.pods() {
            let rwxnfs = pod.container("rwxnfs");
            let announced = flag(args(rwxnfs), "driver-name").unwrap_or(DEFAULT_DRIVER_NAME);
            assert_eq!(
                announced, DEFAULT_DRIVER_NAME,
                "{}: --driver-name",
                pod.workload
            );
        }
    }
    for rendering in examples() {
        for object in &rendering.objects {
            let (what, driver) = match object {
                Object::StorageClass(sc) => (name(&sc.metadata), sc.provisioner.as_str()),
                Object::VolumeSnapshotClass(c) => (name(&c.metadata), c.driver.as_str()),
                Object::PersistentVolume(pv) => (
                    name(&pv.metadata),
                    pv.spec
                        .as_ref()
                        .and_then(|s| s.csi.as_ref())
                        .map(|c| c.driver.as_str())
                        .unwrap_or_default(),
                ),
                _ => continue,
            };
            assert_eq!(driver, DEFAULT_DRIVER_NAME, "{}: {what}", rendering.origin);
        }
    }
}

fn args(c: &Container) -> &[String] {
    c.args.as_deref().unwrap_or_default()
}

fn unix_path(endpoint: &str, what: &str) -> String {
    match endpoint.parse::<Endpoint>() {
        Ok(Endpoint::Unix(path)) => path.display().to_string(),
        other => panic!("{what}: {endpoint:?} is not a unix:// endpoint ({other:?})"),
    }
}

/// The volume mounted at the directory that holds `path` in `container`, and the rest of the
/// path below it.
fn volume_holding<'a>(container: &'a Container, path: &str) -> (&'a str, String) {
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

#[test]
fn the_sidecars_talk_to_the_socket_the_plugins_serve() {
    for rendering in driver_renderings() {
        for pod in rendering.pods() {
            let rwxnfs = pod.container("rwxnfs");
            let endpoint = flag(args(rwxnfs), "endpoint")
                .unwrap_or_else(|| panic!("{}: rwxnfs has no --endpoint", pod.workload));
            let socket = unix_path(endpoint, &pod.workload);
            let (volume, rest) = volume_holding(rwxnfs, &socket);
            for sidecar in pod.spec().containers.iter().filter(|c| c.name != "rwxnfs") {
                let address = flag(args(sidecar), "csi-address").unwrap_or_else(|| {
                    panic!("{}: {} has no --csi-address", pod.workload, sidecar.name)
                });
                let (their_volume, their_rest) = volume_holding(sidecar, address);
                assert_eq!(
                    (their_volume, their_rest.as_str()),
                    (volume, rest.as_str()),
                    "{}: {} connects to {address}, which is not the socket rwxnfs serves at {socket}",
                    pod.workload,
                    sidecar.name
                );
            }
        }
        node_socket_is_registered_with_the_kubelet(&rendering);
    }
}

/// The registrar tells the kubelet where the socket is on the host; that must be where the
/// node plugin's socket volume puts it, in the directory named after the driver.
fn node_socket_is_registered_with_the_kubelet(rendering: &Rendering) {
    let pod = rendering.pod(NODE);
    let rwxnfs = pod.container("rwxnfs");
    let socket = unix_path(
        flag(args(rwxnfs), "endpoint").expect("--endpoint"),
        &pod.workload,
    );
    let (volume, rest) = volume_holding(rwxnfs, &socket);
    let host_dir = host_path(&pod, volume);
    let on_host = format!("{}{rest}", host_dir.trim_end_matches('/'));
    let registrar = pod.container("node-driver-registrar");
    assert_eq!(
        flag(args(registrar), "kubelet-registration-path"),
        Some(on_host.as_str()),
        "{}: the registrar announces another socket than the one rwxnfs node serves",
        rendering.origin
    );
    let driver = name(&rendering.csi_drivers()[0].metadata).to_owned();
    assert_eq!(
        on_host,
        format!("/var/lib/kubelet/plugins/{driver}/csi.sock"),
        "the plugin's directory is named after the CSIDriver"
    );
    let (registration, _) = volume_holding(registrar, "/registration/x");
    assert_eq!(
        host_path(&pod, registration),
        "/var/lib/kubelet/plugins_registry"
    );
}

fn host_path(pod: &Pod<'_>, volume: &str) -> String {
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

#[test]
fn the_node_plugin_runs_on_the_host_network_with_bidirectional_mounts() {
    for rendering in driver_renderings() {
        let pod = rendering.pod(NODE);
        let spec = pod.spec();
        assert_eq!(spec.host_network, Some(true), "{}", rendering.origin);
        assert_eq!(spec.dns_policy.as_deref(), Some("ClusterFirstWithHostNet"));
        let rwxnfs = pod.container("rwxnfs");
        let privileged = rwxnfs.security_context.as_ref().and_then(|s| s.privileged);
        assert_eq!(
            privileged,
            Some(true),
            "mount(2) needs a privileged container"
        );
        let kubelet = rwxnfs
            .volume_mounts
            .as_deref()
            .unwrap_or_default()
            .iter()
            .find(|m| m.mount_path == "/var/lib/kubelet")
            .expect("the kubelet's directory is mounted");
        assert_eq!(kubelet.mount_propagation.as_deref(), Some("Bidirectional"));
        assert_eq!(host_path(&pod, &kubelet.name), "/var/lib/kubelet");
        let node_name = rwxnfs
            .env
            .as_deref()
            .unwrap_or_default()
            .iter()
            .find(|e| e.name == "NODE_NAME")
            .and_then(|e| e.value_from.as_ref())
            .and_then(|v| v.field_ref.as_ref())
            .map(|f| f.field_path.as_str());
        assert_eq!(node_name, Some("spec.nodeName"));
        assert_eq!(flag(args(rwxnfs), "node-id"), Some("$(NODE_NAME)"));
        let namespace = pod.namespace.as_deref().expect("namespaced");
        let enforce = rendering.objects.iter().find_map(|o| match o {
            Object::Namespace(ns) if name(&ns.metadata) == namespace => ns
                .metadata
                .labels
                .as_ref()?
                .get("pod-security.kubernetes.io/enforce")
                .cloned(),
            _ => None,
        });
        assert_eq!(
            enforce.as_deref(),
            Some("privileged"),
            "{}: Pod Security admits a privileged node plugin only in a privileged namespace",
            rendering.origin
        );
    }
}

#[test]
fn the_controller_runs_two_replicas_with_leader_election() {
    for rendering in driver_renderings() {
        let replicas = rendering.objects.iter().find_map(|o| match o {
            Object::Deployment(d) if name(&d.metadata) == "rwxnfs-controller" => d.spec.replicas,
            _ => None,
        });
        assert_eq!(replicas, Some(2), "{}", rendering.origin);
        let pod = rendering.pod(CONTROLLER);
        for c in &pod.spec().containers {
            if c.name.starts_with("csi-") {
                assert!(
                    flag(args(c), "leader-election").is_some(),
                    "{}: {} runs without --leader-election beside another replica",
                    rendering.origin,
                    c.name
                );
            }
        }
        let provisioner = pod.container("csi-provisioner");
        assert!(flag(args(provisioner), "extra-create-metadata").is_some());
        let rwxnfs = pod.container("rwxnfs");
        assert_eq!(
            flag(args(rwxnfs), "config"),
            Some("/etc/rwxnfs/controller.yaml")
        );
        assert!(flag(args(rwxnfs), "metrics-address").is_some());
        for (var, path) in [
            ("POD_NAME", "metadata.name"),
            ("POD_NAMESPACE", "metadata.namespace"),
        ] {
            let from = rwxnfs
                .env
                .as_deref()
                .unwrap_or_default()
                .iter()
                .find(|e| e.name == var)
                .and_then(|e| e.value_from.as_ref()?.field_ref.as_ref())
                .map(|f| f.field_path.as_str());
            assert_eq!(from, Some(path), "{var} from the downward API");
        }
    }
}

#[test]
fn every_container_has_resources_and_a_liveness_probe_that_reaches_something() {
    let mut renderings = driver_renderings();
    renderings.extend(examples());
    for rendering in &renderings {
        for pod in rendering.pods() {
            for c in &pod.spec().containers {
                let what = format!(
                    "{}: {} container {}",
                    rendering.origin, pod.workload, c.name
                );
                let resources = c
                    .resources
                    .as_ref()
                    .unwrap_or_else(|| panic!("{what}: no resources"));
                for (kind, set) in [
                    ("requests", &resources.requests),
                    ("limits", &resources.limits),
                ] {
                    let set = set.clone().unwrap_or_default();
                    for r in ["cpu", "memory"] {
                        assert!(set.contains_key(r), "{what}: no {kind}.{r}");
                    }
                }
                let probe = c
                    .liveness_probe
                    .as_ref()
                    .unwrap_or_else(|| panic!("{what}: no livenessProbe"));
                probe_reaches_a_server(&pod, c, probe, &what);
            }
        }
    }
}

/// A probe's port is one a container of the same pod listens on: the one that serves the
/// path. The CSI plugins are probed through the livenessprobe sidecar (which calls the CSI
/// Probe on the socket), the sidecars through their own leader-election health endpoint, the
/// livenessprobe sidecar through its port.
fn probe_reaches_a_server(pod: &Pod<'_>, c: &Container, probe: &Probe, what: &str) {
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
    let server = pod
        .spec()
        .containers
        .iter()
        .find(|s| {
            flag(args(s), "http-endpoint")
                .and_then(|e| e.rsplit(':').next())
                .is_some_and(|p| p == number.to_string())
        })
        .unwrap_or_else(|| panic!("{what}: nothing in the pod serves port {number}"));
    let path = probe.http_get.as_ref().and_then(|g| g.path.as_deref());
    match (server.name.as_str(), path) {
        ("livenessprobe", Some("/healthz") | None) => {}
        ("node-driver-registrar", Some("/healthz")) => {}
        (sidecar, Some("/healthz/leader-election")) => {
            assert_eq!(
                sidecar, c.name,
                "{what}: probes another container's leader election"
            );
            assert!(
                flag(args(c), "leader-election").is_some(),
                "{what}: no leader election to probe"
            );
        }
        (server, path) => panic!("{what}: probes {path:?} on {server}, which serves no such check"),
    }
}

#[test]
fn service_accounts_exist_and_hold_only_what_their_pods_use() {
    for rendering in driver_renderings() {
        rbac::check(&rendering);
    }
}

#[test]
fn config_maps_exist_and_secrets_are_documented() {
    let readme = std::fs::read_to_string(objects::repo().join("README.md")).expect("README.md");
    let deploying = section(&readme, "## Deploying");
    for rendering in driver_renderings() {
        for pod in rendering.pods() {
            for volume in pod.spec().volumes.as_deref().unwrap_or_default() {
                if let Some(cm) = &volume.config_map {
                    let found = rendering
                        .config_maps()
                        .into_iter()
                        .any(|c| name(&c.metadata) == cm.name);
                    assert!(
                        found,
                        "{}: {}: ConfigMap {} is not rendered",
                        rendering.origin, pod.workload, cm.name
                    );
                }
                if let Some(secret) = &volume.secret {
                    let secret_name = secret.secret_name.as_deref().expect("secretName");
                    let rendered = rendering.objects.iter().any(
                        |o| matches!(o, Object::Secret(s) if name(&s.metadata) == secret_name),
                    );
                    assert!(
                        rendered
                            || deploying.contains(&format!("create secret generic {secret_name}")),
                        "{}: Secret {secret_name} is neither rendered nor created in the README's Deploying section",
                        pod.workload
                    );
                }
            }
        }
        controller_config_matches_its_mounts(&rendering, deploying);
    }
}

/// The text of a README section, up to the next one of the same level.
fn section<'a>(readme: &'a str, heading: &str) -> &'a str {
    let start = readme
        .find(&format!("\n{heading}\n"))
        .unwrap_or_else(|| panic!("README.md has no {heading} section"));
    let body = &readme[start + heading.len() + 2..];
    let end = body.find("\n## ").unwrap_or(body.len());
    &body[..end]
}

/// The shipped controller configuration parses, is the file --config names, and its TLS
/// files are the keys of the Secret the README tells to create, where that Secret is mounted.
fn controller_config_matches_its_mounts(rendering: &Rendering, deploying: &str) {
    let (config, file) = shipped_controller_config(rendering);
    let pod = rendering.pod(CONTROLLER);
    let rwxnfs = pod.container("rwxnfs");
    let config_path = flag(args(rwxnfs), "config").expect("--config");
    let (volume, rest) = volume_holding(rwxnfs, config_path);
    let source = pod
        .spec()
        .volumes
        .as_deref()
        .unwrap_or_default()
        .iter()
        .find(|v| v.name == volume)
        .and_then(|v| v.config_map.as_ref())
        .expect("the configuration comes from a ConfigMap");
    assert!(source.name.starts_with("rwxnfs-controller-config"));
    assert_eq!(
        rest.trim_start_matches('/'),
        file,
        "--config names the ConfigMap's key"
    );
    for backend in &config.backends {
        let tls = backend
            .agent
            .tls
            .as_ref()
            .expect("the shipped backend uses TLS");
        for path in [&tls.ca, &tls.cert, &tls.key] {
            let path = path.to_str().expect("UTF-8");
            let (volume, key) = volume_holding(rwxnfs, path);
            let secret = pod
                .spec()
                .volumes
                .as_deref()
                .unwrap_or_default()
                .iter()
                .find(|v| v.name == volume)
                .and_then(|v| v.secret.as_ref())
                .unwrap_or_else(|| panic!("{path}: not on a Secret volume"));
            let key = key.trim_start_matches('/');
            assert!(
                deploying.contains(&format!("--from-file={key}=")),
                "the README's Deploying section does not put {key} in Secret {:?}",
                secret.secret_name
            );
        }
    }
}

/// The controller configuration in the rendered ConfigMap, and its key.
fn shipped_controller_config(rendering: &Rendering) -> (ControllerConfig, String) {
    let cm = rendering
        .config_maps()
        .into_iter()
        .find(|c| name(&c.metadata).starts_with("rwxnfs-controller-config"))
        .unwrap_or_else(|| panic!("{}: no controller ConfigMap", rendering.origin));
    let data = cm.data.clone().unwrap_or_default();
    assert_eq!(data.len(), 1, "one file in the controller's ConfigMap");
    let (file, text) = data.into_iter().next().expect("one entry");
    let config = ControllerConfig::parse(&text, Path::new(&file))
        .unwrap_or_else(|e| panic!("the shipped controller configuration: {e}"));
    (config, file)
}

#[derive(serde::Deserialize)]
struct MeshSettings {
    metadata: MeshMetadata,
}

#[derive(serde::Deserialize)]
struct MeshMetadata {
    #[serde(default)]
    labels: BTreeMap<String, String>,
    #[serde(default)]
    annotations: BTreeMap<String, String>,
}

fn mesh_settings(yaml: &str) -> MeshMetadata {
    serde_yaml_ng::from_str::<MeshSettings>(yaml)
        .expect("rwxnfs mesh annotations prints YAML")
        .metadata
}

fn assert_carries(pod: &Pod<'_>, wanted: &MeshMetadata, origin: &str) {
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

#[test]
fn the_istio_settings_are_what_rwxnfs_mesh_annotations_prints() {
    for rendering in driver_renderings() {
        let (config, _) = shipped_controller_config(&rendering);
        // The derivation `rwxnfs mesh annotations` prints (NFSv4.2, its default).
        let (traffic, unresolved) = rwxnfs_controller::mesh::traffic(&config, NfsProtocol::V41Plus);
        assert!(
            unresolved.is_empty(),
            "the shipped agent endpoint is an address: {unresolved:?}"
        );
        let printed = mesh::controller_pod_annotations(&traffic);
        assert!(
            !printed.contains("# note"),
            "the shipped configuration needs no manual exclusions: {printed}"
        );
        let wanted = mesh_settings(&printed);
        assert!(!wanted.annotations.is_empty());
        assert_carries(&rendering.pod(CONTROLLER), &wanted, &rendering.origin);
        assert_carries(
            &rendering.pod(NODE),
            &mesh_settings(mesh::NODE_POD_LABELS),
            &rendering.origin,
        );
        for pod in rendering.pods() {
            assert_ne!(
                pod.labels()
                    .get("istio.io/dataplane-mode")
                    .map(String::as_str),
                Some("ambient"),
                "{}: driver pods stay out of ambient mode",
                pod.workload
            );
        }
    }
}

#[test]
fn the_walkthrough_claims_4gi_shared_and_appends_every_30s() {
    let walkthrough = Rendering::of_kustomization(&manifests().join("examples"));
    let claim = walkthrough
        .objects
        .iter()
        .find_map(|o| match o {
            Object::PersistentVolumeClaim(c) if name(&c.metadata) == "nfs-app" => c.spec.clone(),
            _ => None,
        })
        .expect("PVC nfs-app");
    assert_eq!(
        claim.access_modes.as_deref(),
        Some(&["ReadWriteMany".to_string()][..])
    );
    assert_eq!(claim.storage_class_name.as_deref(), Some("rwxnfs"));
    let size = claim
        .resources
        .and_then(|r| r.requests)
        .and_then(|r| r.get("storage").cloned());
    assert_eq!(size.map(|q| q.0), Some("4Gi".to_string()));
    let app = walkthrough
        .pods()
        .into_iter()
        .find(|p| p.workload == "Deployment nfs-app")
        .expect("the app");
    let spec = app.spec();
    let claim_volume = spec
        .volumes
        .as_deref()
        .unwrap_or_default()
        .iter()
        .find(|v| {
            v.persistent_volume_claim
                .as_ref()
                .is_some_and(|c| c.claim_name == "nfs-app")
        })
        .expect("a volume from the claim");
    let writer = &spec.containers[0];
    let (volume, _) = volume_holding(writer, "/data/test-file.txt");
    assert_eq!(volume, claim_volume.name);
    let script = args(writer).join(" ");
    for needed in ["hostname", "date", ">> /data/test-file.txt", "sleep 30"] {
        assert!(script.contains(needed), "the writer's loop: {script}");
    }
    let class = walkthrough
        .objects
        .iter()
        .any(|o| matches!(o, Object::StorageClass(sc) if name(&sc.metadata) == "rwxnfs"));
    assert!(
        class,
        "the walkthrough creates the StorageClass its claim names"
    );
}

#[test]
fn storage_classes_and_static_volumes_use_parameters_the_driver_accepts() {
    let (config, _) = shipped_controller_config(&Rendering::of_kustomization(&manifests()));
    for rendering in examples() {
        for object in &rendering.objects {
            match object {
                Object::StorageClass(sc) => {
                    let raw: BTreeMap<String, String> = sc.parameters.clone().unwrap_or_default();
                    let params = Params::parse(&raw).unwrap_or_else(|e| {
                        panic!(
                            "{}: StorageClass {}: {e}",
                            rendering.origin,
                            name(&sc.metadata)
                        )
                    });
                    let options = sc.mount_options.clone().unwrap_or_default();
                    MountOptions::merge(params.nfs_version, options.iter().map(String::as_str))
                        .unwrap_or_else(|e| panic!("{}: mountOptions: {e}", rendering.origin));
                    let backend = params.backend.map(|b| b.to_string()).unwrap_or_default();
                    let configured = config.backends.iter().any(|b| b.name == backend);
                    let not_yet = name(&sc.metadata).contains("subdir");
                    assert!(
                        configured || not_yet,
                        "{}: backend {backend:?} is not in the shipped controller configuration",
                        rendering.origin
                    );
                }
                Object::PersistentVolume(pv) => {
                    let csi = pv
                        .spec
                        .as_ref()
                        .and_then(|s| s.csi.clone())
                        .expect("a CSI volume");
                    let attrs = csi.volume_attributes.unwrap_or_default();
                    for key in attrs.keys() {
                        assert!(
                            ["server", "share", "nfsVersion", "mountOptions"]
                                .contains(&key.as_str()),
                            "{}: volumeAttributes {key} is not read by the node plugin",
                            rendering.origin
                        );
                    }
                    assert!(attrs.get("share").is_some_and(|s| s.starts_with('/')));
                    let version: NfsVersion = attrs
                        .get("nfsVersion")
                        .map(|v| v.parse().expect("nfsVersion"))
                        .unwrap_or_default();
                    MountOptions::merge(version, attrs.get("mountOptions").map(String::as_str))
                        .unwrap_or_else(|e| panic!("{}: mountOptions: {e}", rendering.origin));
                }
                Object::VolumeSnapshotClass(c) => {
                    assert!(["Delete", "Retain"].contains(&c.deletion_policy.as_str()));
                }
                _ => {}
            }
        }
    }
}

#[test]
fn the_ha_files_parse_and_start_in_the_documented_order() {
    ha::check();
}

#[test]
fn nfs_ganesha_accepts_the_shipped_ganesha_conf() {
    ha::ganesha_accepts_its_configuration();
}
