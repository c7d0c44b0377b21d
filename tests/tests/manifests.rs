//! The Kubernetes manifests (manifests/) and the NFS hosts' HA configuration (manifests/ha/).
//!
//! The kustomizations are rendered with `kubectl kustomize` (offline) and every object is
//! parsed into its API type; then what must agree across objects is checked: service accounts
//! and their bindings, ConfigMaps and Secrets, socket paths, the driver name, resources and
//! probes, and the Istio settings against what `rwxnfs mesh annotations` derives.

#[path = "manifests/config.rs"]
mod config;
#[path = "manifests/examples.rs"]
mod examples;
#[path = "manifests/ganesha.rs"]
mod ganesha;
#[path = "manifests/ha.rs"]
mod ha;
#[path = "manifests/ha_tools.rs"]
mod ha_tools;
#[path = "manifests/mesh.rs"]
mod mesh_settings;
#[path = "manifests/objects.rs"]
mod objects;
#[path = "manifests/pods.rs"]
mod pods;
#[path = "manifests/rbac.rs"]
mod rbac;
#[path = "manifests/versions.rs"]
mod versions;

use std::path::Path;

use examples::examples;
use mesh_settings::{assert_carries, mesh_settings};
use objects::{Object, Rendering, driver_renderings, flag, name};
use pods::{args, host_path, probe_reaches_a_server, unix_path, volume_holding};
use rwxnfs_model::{
    DEFAULT_DRIVER_NAME,
    mesh::{self, NfsProtocol},
};

pub const CONTROLLER: &str = "Deployment rwxnfs-controller";
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

/// The node plugin registers itself with the kubelet (no node-driver-registrar): its
/// registration socket is in the directory the kubelet watches, named after the driver, and it
/// tells the kubelet the CSI socket is where the node plugin's socket volume puts it on the
/// host, in the directory named after the driver.
fn node_socket_is_registered_with_the_kubelet(rendering: &Rendering) {
    let pod = rendering.pod(NODE);
    let names: Vec<&str> = pod
        .spec()
        .containers
        .iter()
        .map(|c| c.name.as_str())
        .collect();
    assert_eq!(
        names,
        ["rwxnfs"],
        "{}: the node plugin registers and answers liveness itself, without sidecars",
        rendering.origin
    );
    let rwxnfs = pod.container("rwxnfs");
    let socket = unix_path(
        flag(args(rwxnfs), "endpoint").expect("--endpoint"),
        &pod.workload,
    );
    let (volume, rest) = volume_holding(rwxnfs, &socket);
    let host_dir = host_path(&pod, volume);
    let on_host = format!("{}{rest}", host_dir.trim_end_matches('/'));
    assert_eq!(
        flag(args(rwxnfs), "kubelet-registration-path"),
        Some(on_host.as_str()),
        "{}: rwxnfs node announces another socket than the one it serves",
        rendering.origin
    );
    let driver = name(&rendering.csi_drivers()[0].metadata).to_owned();
    assert_eq!(
        on_host,
        format!("/var/lib/kubelet/plugins/{driver}/csi.sock"),
        "the plugin's directory is named after the CSIDriver"
    );
    let registration = flag(args(rwxnfs), "registration-socket").unwrap_or_else(|| {
        panic!(
            "{}: rwxnfs node has no --registration-socket, and nothing else registers it",
            rendering.origin
        )
    });
    let (registry, rest) = volume_holding(rwxnfs, registration);
    assert_eq!(
        format!("{}{rest}", host_path(&pod, registry)),
        format!("/var/lib/kubelet/plugins_registry/{driver}-reg.sock"),
        "{}: the registration socket is in the directory the kubelet watches",
        rendering.origin
    );
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
                probe_reaches_a_server(&pod, c, probe, &what, "/healthz");
                if let Some(probe) = &c.readiness_probe {
                    probe_reaches_a_server(&pod, c, probe, &what, "/readyz");
                }
            }
            port_names_are_valid_and_unique(&pod, &rendering.origin);
        }
    }
}

/// The API server refuses a pod whose port names are longer than 15 characters, not
/// lowercase letters, digits and inner dashes with at least one letter, or used twice.
fn port_names_are_valid_and_unique(pod: &objects::Pod<'_>, origin: &str) {
    let mut seen = std::collections::BTreeSet::new();
    for c in &pod.spec().containers {
        for port in c.ports.as_deref().unwrap_or_default() {
            let Some(name) = port.name.as_deref() else {
                continue;
            };
            let valid = (1..=15).contains(&name.len())
                && name
                    .chars()
                    .all(|ch| ch.is_ascii_lowercase() || ch.is_ascii_digit() || ch == '-')
                && name.chars().any(|ch| ch.is_ascii_lowercase())
                && !name.starts_with('-')
                && !name.ends_with('-')
                && !name.contains("--");
            assert!(
                valid,
                "{origin}: {}: port name {name:?} is invalid",
                pod.workload
            );
            assert!(
                seen.insert(name.to_owned()),
                "{origin}: {}: port name {name} twice",
                pod.workload
            );
        }
    }
}

#[test]
fn service_accounts_exist_and_hold_only_what_their_pods_use() {
    for rendering in driver_renderings() {
        rbac::check(&rendering);
    }
}

#[test]
fn the_sidecars_run_the_versions_the_tests_build() {
    let renderings = driver_renderings();
    let (base, overlays) = renderings.split_first().expect("manifests/ renders");
    versions::check(base, overlays);
}

#[test]
fn the_istio_settings_are_what_rwxnfs_mesh_annotations_prints() {
    for rendering in driver_renderings() {
        let (config, _) = config::shipped_controller_config(&rendering);
        // The derivation `rwxnfs mesh annotations` prints (NFSv4.2, its default).
        let (traffic, unresolved) =
            rwxnfs_doctor::traffic::from_config(&config, NfsProtocol::V41Plus);
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
fn the_ha_files_parse_and_start_in_the_documented_order() {
    ha::check();
}

#[test]
fn the_nfs_hosts_start_tlshd_before_nfsd() {
    ha::tlshd_before_nfsd();
}

#[test]
fn drbdadm_accepts_the_shipped_drbd_resource() {
    ha_tools::drbd_resource_parses();
}

#[test]
fn systemd_accepts_the_shipped_units() {
    ha_tools::systemd_accepts_the_units();
}

#[test]
fn nfs_ganesha_accepts_the_shipped_ganesha_conf() {
    ganesha::accepts_its_configuration();
}

/// `rwxnfs doctor` (its library, as `rwxnfs doctor -f` runs it) has nothing to say about the
/// driver as shipped, each overlay with the examples beside it.
#[test]
fn rwxnfs_doctor_finds_nothing_to_fix() {
    let examples = examples();
    for rendering in driver_renderings() {
        let mut objects = rwxnfs_doctor::Objects::offline();
        for r in std::iter::once(&rendering).chain(&examples) {
            rwxnfs_doctor::load::add_text(&mut objects, &r.yaml, Path::new(&r.origin))
                .unwrap_or_else(|e| panic!("{}: the doctor cannot read it: {e}", r.origin));
        }
        let report = rwxnfs_doctor::analyze(&objects);
        assert_eq!(
            report.exit_code(),
            0,
            "{} with the examples:\n{}",
            rendering.origin,
            report.to_text()
        );
    }
}
