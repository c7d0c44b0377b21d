//! The driver's mesh settings proven with Istio's own code (istioctl and pilot-agent, built by
//! scripts/tools at the version tools/versions pins): the real injector on the `istio-sidecar`
//! overlay, the init container's capture rules installed by Istio's rule generator in a
//! network namespace standing for the controller's pod and tried with real connections, and
//! `istioctl analyze` on the rendered manifests and on the doctor's fixtures.
//!
//! The namespaces, iptables and SO_ORIGINAL_DST need root, as the test command runs.

#[path = "istio/ambient.rs"]
mod ambient;
#[path = "istio/analyze.rs"]
mod analyze;
#[path = "istio/capture.rs"]
mod capture;
#[path = "istio/istioctl.rs"]
mod istioctl;
#[path = "istio/live.rs"]
mod live;

use std::net::{Ipv4Addr, SocketAddrV4};

use capture::{OTHER_PORT, PodNetwork, Reached};
use istioctl::{Install, documents, find, kustomize, manifest_generate, pilot_agent, repo};
use rwxnfs_controller::ControllerConfig;
use rwxnfs_model::mesh::{NFS_PORT, NfsProtocol, Traffic};
use serde_json::Value;

const EXCLUDE_PORTS: &str = "traffic.sidecar.istio.io/excludeOutboundPorts";
const EXCLUDE_RANGES: &str = "traffic.sidecar.istio.io/excludeOutboundIPRanges";

/// The `istio-sidecar` overlay as `kubectl kustomize` renders it.
fn sidecar_overlay() -> String {
    kustomize(&repo().join("manifests/overlays/istio-sidecar"))
}

/// What `rwxnfs mesh annotations` derives from the controller configuration the overlay ships
/// (NFSv4.2, its default).
fn derived_traffic(objects: &[Value]) -> Traffic {
    let cm = objects
        .iter()
        .find(|o| {
            o["kind"] == "ConfigMap"
                && o["metadata"]["name"]
                    .as_str()
                    .is_some_and(|n| n.starts_with("rwxnfs-controller-config"))
        })
        .expect("the controller's ConfigMap");
    let text = cm["data"]["controller.yaml"]
        .as_str()
        .expect("controller.yaml");
    let config = ControllerConfig::parse(text, "controller.yaml".as_ref()).expect("it parses");
    let (traffic, unresolved) = rwxnfs_doctor::traffic::from_config(&config, NfsProtocol::V41Plus);
    assert!(unresolved.is_empty(), "{unresolved:?}");
    traffic
}

/// The pod template of the workload `kind`/`name`.
fn template<'a>(objects: &'a [Value], kind: &str, name: &str) -> &'a Value {
    &find(objects, kind, name)["spec"]["template"]
}

fn containers<'a>(template: &'a Value, field: &str) -> Vec<&'a Value> {
    template["spec"][field]
        .as_array()
        .map(|a| a.iter().collect())
        .unwrap_or_default()
}

fn names(containers: &[&Value]) -> Vec<String> {
    containers
        .iter()
        .map(|c| c["name"].as_str().unwrap_or("?").to_owned())
        .collect()
}

fn args(container: &Value) -> Vec<String> {
    container["args"]
        .as_array()
        .expect("args")
        .iter()
        .map(|a| a.as_str().expect("a string").to_owned())
        .collect()
}

/// The value after `flag` in `args` (`-o 2049,9820`).
fn after<'a>(args: &'a [String], flag: &str) -> Option<&'a str> {
    let i = args.iter().position(|a| a == flag)?;
    args.get(i + 1).map(String::as_str)
}

/// The controller's capture arguments, as the injector wrote them into its init container.
fn init_args(injected: &[Value], init: &str) -> Vec<String> {
    let pod = template(injected, "Deployment", "rwxnfs-controller");
    let inits = containers(pod, "initContainers");
    let container = inits
        .iter()
        .find(|c| c["name"] == init)
        .unwrap_or_else(|| panic!("no {init} among {:?}", names(&inits)));
    args(container)
}

/// `yaml` with `edit` applied to every object of `kind`.
fn edited(yaml: &str, kind: &str, edit: impl Fn(&mut Value)) -> String {
    documents(yaml)
        .into_iter()
        .map(|mut o| {
            if o["kind"] == kind {
                edit(&mut o);
            }
            serde_yaml_ng::to_string(&o).expect("YAML")
        })
        .collect::<Vec<_>>()
        .join("---\n")
}

/// The controller's pod template without the two exclusion annotations.
fn without_exclusions(yaml: &str) -> String {
    edited(yaml, "Deployment", |o| {
        let annotations = o["spec"]["template"]["metadata"]["annotations"]
            .as_object_mut()
            .expect("annotations");
        annotations.remove(EXCLUDE_PORTS).expect("ports excluded");
        annotations.remove(EXCLUDE_RANGES).expect("ranges excluded");
    })
}

#[test]
fn the_injector_carries_our_exclusions_into_the_init_container_and_skips_the_node_plugin() {
    let yaml = sidecar_overlay();
    let traffic = derived_traffic(&documents(&yaml));
    let install = Install::generate(&[]);
    let (injected, warned) = install.kube_inject(&yaml, &[]);

    let args = init_args(&injected, "istio-init");
    println!("istio-init args: {}", args.join(" "));
    assert_eq!(args[0], "istio-iptables", "{args:?}");
    assert_eq!(after(&args, "-o"), Some(traffic.excluded_ports().as_str()));
    assert_eq!(after(&args, "-x"), Some(traffic.excluded_ranges().as_str()));
    assert_eq!(after(&args, "-i"), Some("*"), "everything else is captured");
    assert_eq!(after(&args, "-p"), Some("15001"));

    // holdApplicationUntilProxyStarts: the proxy first, and the kubelet starts the next
    // container only once its postStart hook (`pilot-agent wait`) has returned.
    let pod = template(&injected, "Deployment", "rwxnfs-controller");
    let main = containers(pod, "containers");
    assert_eq!(names(&main)[0], "istio-proxy", "{:?}", names(&main));
    let hook = &main[0]["lifecycle"]["postStart"]["exec"]["command"];
    assert_eq!(hook, &serde_json::json!(["pilot-agent", "wait"]), "{hook}");

    // The node plugin: not injected, and kube-inject says why.
    let node = template(&injected, "DaemonSet", "rwxnfs-node");
    let all = [
        containers(node, "containers"),
        containers(node, "initContainers"),
    ]
    .concat();
    assert_eq!(names(&all), ["rwxnfs"], "the node plugin is left alone");
    assert!(
        warned.contains("Skipping injection") && warned.contains("rwxnfs-node"),
        "{warned}"
    );
    // Its label keeps it out on its own: off the host network it is skipped all the same.
    let off_host = edited(&yaml, "DaemonSet", |o| {
        o["spec"]["template"]["spec"]
            .as_object_mut()
            .expect("a pod spec")
            .remove("hostNetwork");
    });
    let (injected, warned) = install.kube_inject(&off_host, &[]);
    let node = template(&injected, "DaemonSet", "rwxnfs-node");
    assert_eq!(
        names(&containers(node, "containers")),
        ["rwxnfs"],
        "{warned}"
    );
    assert!(warned.contains("sidecar injection disabled"), "{warned}");
}

#[test]
fn with_native_sidecars_the_proxy_starts_before_the_controller_with_the_same_exclusions() {
    let yaml = sidecar_overlay();
    let install = Install::generate(&[]);
    let (classic, _) = install.kube_inject(&yaml, &[]);
    let (native, _) = install.kube_inject(&yaml, &[("ENABLE_NATIVE_SIDECARS", "true")]);
    let pod = template(&native, "Deployment", "rwxnfs-controller");
    let inits = containers(pod, "initContainers");
    assert_eq!(names(&inits), ["istio-init", "istio-proxy"]);
    // A native sidecar: the kubelet starts the pod's containers once its startup probe passes.
    assert_eq!(inits[1]["restartPolicy"], "Always");
    assert!(inits[1]["startupProbe"].is_object(), "{}", inits[1]);
    assert!(!names(&containers(pod, "containers")).contains(&"istio-proxy".to_owned()));
    assert_eq!(
        init_args(&native, "istio-init"),
        init_args(&classic, "istio-init")
    );
}

#[test]
fn with_istio_cni_the_exclusions_reach_the_plugin_through_the_injected_annotations() {
    let yaml = sidecar_overlay();
    let traffic = derived_traffic(&documents(&yaml));
    let install = Install::generate(&["components.cni.enabled=true"]);
    let (injected, _) = install.kube_inject(&yaml, &[]);
    let args = init_args(&injected, "istio-validation");
    println!("istio-validation args: {}", args.join(" "));
    assert!(args.contains(&"--skip-rule-apply".to_owned()), "{args:?}");
    assert_eq!(after(&args, "-o"), Some(traffic.excluded_ports().as_str()));
    assert_eq!(after(&args, "-x"), Some(traffic.excluded_ranges().as_str()));
    let annotations =
        &template(&injected, "Deployment", "rwxnfs-controller")["metadata"]["annotations"];
    assert_eq!(annotations[EXCLUDE_PORTS], traffic.excluded_ports());
    assert_eq!(annotations[EXCLUDE_RANGES], traffic.excluded_ranges());
}

/// The VIP the shipped configuration names, and the agent's port.
fn vip_and_agent_port(traffic: &Traffic) -> (Ipv4Addr, u16) {
    let range = traffic.ranges.iter().next().expect("one range");
    let vip = range.trim_end_matches("/32").parse().expect("an IPv4 /32");
    let agent = *traffic
        .tcp_ports
        .iter()
        .find(|&&p| p != NFS_PORT)
        .expect("the agent's port");
    (vip, agent)
}

/// Installs the injected rules in a fresh pod and connects to NFS and the agent at the VIP
/// and to another service.
fn connect_through_injected_rules(yaml: &str, subnet: u8) -> [(SocketAddrV4, Reached); 3] {
    let traffic = derived_traffic(&documents(&sidecar_overlay()));
    let (vip, agent_port) = vip_and_agent_port(&traffic);
    let install = Install::generate(&[]);
    let (injected, _) = install.kube_inject(yaml, &[]);
    let args = init_args(&injected, "istio-init");
    let net = PodNetwork::new("istio", subnet, vip, &[NFS_PORT, agent_port]);
    let printed = net.install_rules(pilot_agent(), &args);
    // Which iptables Istio chose: in a new pod with no legacy rules it takes nft.
    let nft = net.nat_rules("iptables-nft-save");
    let legacy = net.nat_rules("iptables-legacy-save");
    assert!(nft.contains("-A ISTIO_OUTPUT"), "{printed}\n{nft}");
    assert!(!legacy.contains("ISTIO"), "{legacy}");
    println!(
        "pilot-agent {}\nnat table (iptables-nft):\n{nft}",
        args.join(" ")
    );
    let targets = [
        SocketAddrV4::new(vip, NFS_PORT),
        SocketAddrV4::new(vip, agent_port),
        SocketAddrV4::new(net.other, OTHER_PORT),
    ];
    let reached = targets.map(|t| (t, net.connect(t)));
    for (to, r) in &reached {
        println!("{to} -> {r:?}");
    }
    reached
}

#[test]
fn the_injected_rules_let_nfs_and_the_agent_reach_the_vip_and_capture_the_rest() {
    let [(nfs, to_nfs), (agent, to_agent), (other, to_other)] =
        connect_through_injected_rules(&sidecar_overlay(), 61);
    assert_eq!(to_nfs, Reached::Server(nfs.into()));
    assert_eq!(to_agent, Reached::Server(agent.into()));
    assert_eq!(
        to_other,
        Reached::Proxy {
            original: other.into()
        }
    );
}

#[test]
fn without_the_exclusions_the_proxy_captures_nfs_and_the_agent() {
    let yaml = without_exclusions(&sidecar_overlay());
    let [(nfs, to_nfs), (agent, to_agent), (other, to_other)] =
        connect_through_injected_rules(&yaml, 62);
    for (to, reached) in [(nfs, to_nfs), (agent, to_agent), (other, to_other)] {
        assert_eq!(
            reached,
            Reached::Proxy {
                original: to.into()
            },
            "{to}"
        );
    }
}

#[test]
fn istios_ambient_enablement_selectors_leave_the_driver_pods_out_of_an_ambient_namespace() {
    let objects = documents(&kustomize(&repo().join("manifests/overlays/istio-ambient")));
    let namespace = ambient::labels(&find(&objects, "Namespace", "rwxnfs")["metadata"]["labels"]);
    assert_eq!(namespace["istio.io/dataplane-mode"], "ambient");
    let selectors = ambient::enablement_selectors(&manifest_generate(&["profile=ambient"]));
    println!("AMBIENT_ENABLEMENT_SELECTOR: {selectors:?}");
    for (kind, name) in [
        ("Deployment", "rwxnfs-controller"),
        ("DaemonSet", "rwxnfs-node"),
    ] {
        let pod = template(&objects, kind, name);
        let mut labels = ambient::labels(&pod["metadata"]["labels"]);
        let host_network = pod["spec"]["hostNetwork"] == true;
        assert_eq!(labels["istio.io/dataplane-mode"], "none", "{name}");
        assert!(
            !ambient::enrolled(&selectors, &labels, host_network, &namespace),
            "{name} would be enrolled"
        );
        // The label is what keeps the controller out: without it the namespace enrols it.
        labels.remove("istio.io/dataplane-mode");
        assert_eq!(
            ambient::enrolled(&selectors, &labels, host_network, &namespace),
            !host_network,
            "{name} without istio.io/dataplane-mode: none"
        );
    }
}

#[test]
fn istioctl_analyze_finds_no_error_in_the_manifests() {
    analyze::manifests_are_clean();
}

#[test]
fn istioctl_analyze_beside_rwxnfs_doctor_on_the_doctors_fixtures() {
    analyze::beside_the_doctor();
}

#[test]
fn istioctl_analyze_against_an_api_server_beside_rwxnfs_doctor() {
    analyze::live_beside_the_doctor();
}
