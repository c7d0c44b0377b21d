//! A Kubernetes cluster in the VM lab: the control plane runs natively (fast) inside the
//! network namespace of a [`LanPort`] at 10.99.0.200, and every node is a VM on the lab
//! network with containerd, the kubelet and kube-proxy ([`recipes::kube_node_boot`]).
//!
//! - Node `i` (from 0) is 10.99.0.(11 + i) with pods on 10.244.(i + 1).0/24; every node and
//!   the control plane's namespace route the other nodes' pod subnets through their node, so
//!   pods reach each other, the API server (through the `kubernetes` Service) and whatever
//!   else the lab runs on its network, which must route back the same way
//!   ([`Cluster::pod_routes`]).
//! - No registry is reachable: every node boots with a copy of one disk whose containerd
//!   already holds the images (`oci::containerd_disk`).
//! - Each kubelet has a client certificate of its own (`system:node:NAME` in `system:nodes`,
//!   so the Node authorizer applies), kube-proxy one as `system:kube-proxy`.
//!
//! Dropping the cluster stops the control plane, then the VMs, then the namespace.

use std::{
    path::Path,
    time::{Duration, Instant},
};

use rwxnfs_vmlab::{
    Lab, LanPort, Vm, VmSpec,
    recipes::{self, KubeNode},
};

use crate::{kube::ControlPlane, upstream};

/// The cluster's pod range; node `i` gets 10.244.(i + 1).0/24 of it.
pub const CLUSTER_CIDR: &str = "10.244.0.0/16";

/// The control plane's address on the lab network.
pub const CONTROL_PLANE: u8 = 200;

/// One node VM of a cluster.
pub struct Node {
    pub name: String,
    /// 10.99.0.`lan`.
    pub lan: u8,
    pub vm: Vm,
}

impl Node {
    pub fn address(&self) -> String {
        format!("10.99.0.{}", self.lan)
    }
}

pub struct Cluster {
    // Dropped in this order: the control plane's processes, the VMs, then the namespace.
    pub plane: ControlPlane,
    pub nodes: Vec<Node>,
    pub lan: LanPort,
    /// How long the cluster took to be Ready, from the first VM's start.
    pub ready_in: Duration,
}

/// The address, pod subnet and the node VM's size.
fn node_lan(i: usize) -> u8 {
    11 + i as u8
}

fn pod_cidr(i: usize) -> String {
    format!("10.244.{}.0/24", i + 1)
}

impl Cluster {
    /// Starts the control plane and one node VM per name (`memory_mb` each), each with a copy
    /// of `disk` (`oci::containerd_disk`: containerd's root with the images) and `on_lan` (addresses outside the lab
    /// network, such as a storage VIP) reached directly on it; waits until every Node is
    /// Ready.
    pub fn start(
        lab: &mut Lab,
        dir: &Path,
        names: &[&str],
        memory_mb: u32,
        disk: &Path,
        on_lan: &[&str],
    ) -> Cluster {
        let started = Instant::now();
        let lan = LanPort::open(lab, "kube", CONTROL_PLANE)
            .unwrap_or_else(|e| panic!("the control plane's port on the lab network: {e}"));
        for i in 0..names.len() {
            lan.add_route(
                &pod_cidr(i),
                format!("10.99.0.{}", node_lan(i))
                    .parse()
                    .expect("an address"),
            )
            .unwrap_or_else(|e| panic!("a route to node {i}'s pods: {e}"));
        }
        let plane = ControlPlane::start_on(dir, &lan);
        let kube_bin = upstream::tool("kubernetes", "kubelet")
            .parent()
            .expect("a directory")
            .to_path_buf();
        let (proxy_cert, proxy_key) = plane.issue("system:kube-proxy", None);
        let ca = std::fs::read_to_string(&plane.ca).expect("the cluster's CA");
        let mut nodes = Vec::new();
        for (i, name) in names.iter().enumerate() {
            let node = KubeNode {
                name: name.to_string(),
                lan: node_lan(i),
                pod_cidr: pod_cidr(i),
                routes: (0..names.len())
                    .filter(|&j| j != i)
                    .map(|j| (pod_cidr(j), format!("10.99.0.{}", node_lan(j))))
                    .collect(),
                cluster_cidr: CLUSTER_CIDR.into(),
                on_lan: on_lan.iter().map(|a| a.to_string()).collect(),
            };
            let (cert, key) = plane.issue(&format!("system:node:{name}"), Some("system:nodes"));
            let files = vec![
                ("pki/ca.pem".to_string(), ca.clone()),
                ("pki/node.pem".into(), cert),
                ("pki/node.key".into(), key),
                ("pki/proxy.pem".into(), proxy_cert.clone()),
                ("pki/proxy.key".into(), proxy_key.clone()),
                (
                    "kubelet.kubeconfig".into(),
                    plane.kubeconfig_text(
                        "/work/pki/ca.pem",
                        "/work/pki/node.pem",
                        "/work/pki/node.key",
                    ),
                ),
                (
                    "kube-proxy.kubeconfig".into(),
                    plane.kubeconfig_text(
                        "/work/pki/ca.pem",
                        "/work/pki/proxy.pem",
                        "/work/pki/proxy.key",
                    ),
                ),
            ];
            let vm = lab.start(VmSpec {
                memory_mb,
                lan: Some(node.lan),
                disk_images: vec![disk.to_path_buf()],
                boot: recipes::kube_node_boot(&node),
                kube: true,
                shares: vec![(kube_bin.clone(), "/opt/kube".into())],
                files,
                ..VmSpec::new(name)
            });
            nodes.push(Node {
                name: name.to_string(),
                lan: node.lan,
                vm,
            });
        }
        for node in &mut nodes {
            let booted = node.vm.wait_ready(Duration::from_secs(600));
            println!("{}: booted in {booted:?}", node.name);
        }
        for node in &nodes {
            plane.wait_jsonpath(
                &["get", "node", &node.name],
                "{.status.conditions[?(@.type==\"Ready\")].status}",
                Duration::from_secs(300),
                |v| v == "True",
            );
        }
        let ready_in = started.elapsed();
        println!("cluster: {} nodes Ready in {ready_in:?}", nodes.len());
        Cluster {
            plane,
            nodes,
            lan,
            ready_in,
        }
    }

    /// `(cidr, via)` for every node's pod subnet: what a machine on the lab network outside
    /// the cluster (a storage VM) needs to answer pods.
    pub fn pod_routes(count: usize) -> Vec<(String, String)> {
        (0..count)
            .map(|i| (pod_cidr(i), format!("10.99.0.{}", node_lan(i))))
            .collect()
    }

    pub fn node(&self, name: &str) -> &Node {
        self.nodes
            .iter()
            .find(|n| n.name == name)
            .unwrap_or_else(|| panic!("no node {name}"))
    }
}
