//! `istioctl analyze` against a real API server (testbed's control plane: etcd, kube-apiserver
//! and kube-controller-manager on loopback, no kubelet) holding the objects: the way Istio
//! reads Namespaces, Services and Pods, which offline analysis leaves out. One Node object
//! stands for a node, so the node plugin's DaemonSet has a pod; the controller manager makes
//! the Deployments' pods, unscheduled.

use std::{
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use rwxnfs_testbed::kube::ControlPlane;

use crate::istioctl::{Analysis, analyze_live, documents, manifest_generate};

pub(crate) struct Cluster {
    pub plane: ControlPlane,
    _dir: tempfile::TempDir,
}

const NODE: &str = "apiVersion: v1\nkind: Node\nmetadata:\n  name: node-1\n  labels: {kubernetes.io/os: linux, kubernetes.io/hostname: node-1}\n";

impl Cluster {
    /// A control plane with Istio's CRDs (as `istioctl manifest generate` renders them), the
    /// VolumeSnapshot CRDs and one Node.
    pub(crate) fn start() -> Self {
        // A short path: the control plane's sockets live under it.
        let dir = tempfile::tempdir().expect("a temporary directory");
        let plane = ControlPlane::start(&dir.path().join("plane"));
        let crds: Vec<String> = manifest_generate(&[])
            .into_iter()
            .filter(|o| o["kind"] == "CustomResourceDefinition")
            .map(|o| serde_yaml_ng::to_string(&o).expect("YAML"))
            .collect();
        assert!(!crds.is_empty(), "manifest generate rendered no CRDs");
        plane.apply(&crds.join("---\n"));
        let snapshot_crds = rwxnfs_testbed::upstream::tool("csi-snapshotter", "csi-snapshotter")
            .parent()
            .and_then(Path::parent)
            .expect("the tool's directory")
            .join("crd");
        plane.kubectl_ok(&["apply", "-f", &snapshot_crds.display().to_string()]);
        plane.kubectl_ok(&[
            "wait",
            "--for=condition=established",
            "--timeout=60s",
            "crd/peerauthentications.security.istio.io",
            "crd/volumesnapshotclasses.snapshot.storage.k8s.io",
        ]);
        plane.apply(NODE);
        Cluster { plane, _dir: dir }
    }

    /// Applies `yaml` (server-side, so that a later rendering of the same objects replaces
    /// what this one set) and waits for the controller manager to make every workload's pods.
    pub(crate) fn apply(&self, yaml: &str) {
        if let Err(e) = self
            .plane
            .kubectl_stdin(&["apply", "--server-side", "--force-conflicts"], yaml)
        {
            panic!("kubectl apply: {e}");
        }
        self.wait_for_pods(yaml);
    }

    pub(crate) fn delete(&self, file: &Path) {
        self.plane.kubectl_ok(&[
            "delete",
            "--wait=true",
            "--ignore-not-found",
            "-f",
            &file.display().to_string(),
        ]);
    }

    fn wait_for_pods(&self, yaml: &str) {
        for o in documents(yaml) {
            let kind = o["kind"].as_str().unwrap_or_default();
            if !["Deployment", "DaemonSet", "StatefulSet"].contains(&kind) {
                continue;
            }
            let namespace = o["metadata"]["namespace"].as_str().unwrap_or("default");
            let name = o["metadata"]["name"].as_str().unwrap_or_default();
            let started = Instant::now();
            loop {
                let out = self
                    .plane
                    .kubectl(&["get", "pods", "-n", namespace, "-o", "name"]);
                let pods = String::from_utf8_lossy(&out.stdout);
                if pods.lines().any(|p| p.starts_with(&format!("pod/{name}-"))) {
                    break;
                }
                assert!(
                    started.elapsed() < Duration::from_secs(60),
                    "{kind} {namespace}/{name}: no pods after 60 s: {pods}{}",
                    String::from_utf8_lossy(&out.stderr)
                );
                std::thread::sleep(Duration::from_millis(200));
            }
        }
    }

    pub(crate) fn analyze(&self) -> Analysis {
        analyze_live(&self.plane.kubeconfig)
    }

    pub(crate) fn write(&self, name: &str, yaml: &str) -> PathBuf {
        let path = self.plane.dir().join(name);
        std::fs::write(&path, yaml).expect("write");
        path
    }
}
