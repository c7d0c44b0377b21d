//! rwxnfs under a real Kubernetes control plane, driven the way users drive it: etcd,
//! kube-apiserver and kube-controller-manager on loopback (`rwxnfs_testbed::kube`), the real
//! CSI sidecars (csi-provisioner, -attacher, -resizer, -snapshotter and the snapshot
//! controller, built from the Go module proxy at the versions `manifests/` names) started with
//! exactly the arguments of the applied `rwxnfs-controller` Deployment, acting as its service
//! account under its RBAC, and `rwxnfs controller` resolving nodes through the API. Both of
//! the Deployment's replicas run, each in a UTS namespace named after its pod: the leader
//! serves every scenario, then its node is lost and the standby takes over. The backend
//! is `rwxnfs dev`'s agent on NFS-Ganesha; what the NFS server holds is read from the agent's
//! export table and Ganesha's export files.
//!
//! There is no kubelet: the test creates Node objects (InternalIP, and the override
//! annotation) and binds Pods with `nodeName`, which is all the attach-detach controller needs.
//! Each step is checked through `kubectl` and prints its time.
#![allow(clippy::unwrap_used)]

use std::{
    collections::BTreeSet,
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use rwxnfs_testbed::{Process, free_port, kube::ControlPlane, upstream, wait_for};
use serde_json::Value;

const GI: u64 = 1 << 30;
/// How long one step may take before the test fails.
const STEP: Duration = Duration::from_secs(90);

/// The nodes the test registers: name, InternalIP, and the override annotation's address.
const NODES: &[(&str, &str, Option<&str>)] = &[
    ("node-a", "10.0.0.11", None),
    ("node-b", "10.0.0.12", None),
    ("node-c", "10.0.0.13", None),
    ("node-d", "10.0.0.14", Some("10.0.1.14")),
];

/// The NFS server side: `rwxnfs dev` (a private D-Bus, NFS-Ganesha and the agent) under one
/// state directory, which survives a restart.
struct Backend {
    state: PathBuf,
    process: Option<Process>,
}

impl Backend {
    fn start(state: &Path) -> Backend {
        let mut backend = Backend {
            state: state.to_path_buf(),
            process: None,
        };
        backend.restart();
        backend
    }

    fn restart(&mut self) {
        let log = std::fs::File::create(self.state.with_extension("log")).unwrap();
        let process = Process::spawn(
            "rwxnfs dev",
            Command::new(env!("CARGO_BIN_EXE_rwxnfs"))
                .args(["--log-format", "text", "dev", "--node-id", "dev-node"])
                .arg("--state-dir")
                .arg(&self.state)
                .args(["--nfs-port", &free_port().to_string()])
                .stdin(Stdio::null())
                .stdout(log.try_clone().unwrap())
                .stderr(log),
        );
        self.process = Some(process);
        let log = self.state.with_extension("log");
        wait_for("rwxnfs dev", Duration::from_secs(60), || {
            std::fs::read_to_string(&log)
                .unwrap_or_default()
                .matches("rwxnfs dev is running")
                .count()
                > 0
        });
    }

    fn stop(&mut self) {
        if let Some(mut p) = self.process.take() {
            p.terminate(Duration::from_secs(15));
        }
        // The next start's wait reads a fresh log.
        let _ = std::fs::remove_file(self.state.with_extension("log"));
    }

    /// The agent's export records, by name.
    fn records(&self) -> Vec<Value> {
        let dir = self.state.join("agent/exports");
        let mut out = Vec::new();
        for entry in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.ends_with(".json") && !name.starts_with('.') {
                out.push(serde_json::from_slice(&std::fs::read(entry.path()).unwrap()).unwrap());
            }
        }
        out
    }

    fn record(&self, name: &str) -> Option<Value> {
        std::fs::read(self.state.join(format!("agent/exports/{name}.json")))
            .ok()
            .map(|b| serde_json::from_slice(&b).unwrap())
    }

    /// The client addresses the export admits, from the agent's record.
    fn clients(&self, name: &str) -> BTreeSet<String> {
        let record = self
            .record(name)
            .unwrap_or_else(|| panic!("no export {name}"));
        record["clients"]
            .as_array()
            .unwrap()
            .iter()
            .flat_map(|c| c["addresses"].as_array().unwrap().clone())
            .map(|a| a.as_str().unwrap().to_owned())
            .collect()
    }

    /// Ganesha's export file for `name`: what the NFS server itself was told.
    fn ganesha_export(&self, name: &str) -> String {
        let id = self.record(name).unwrap()["export_id"].as_u64().unwrap();
        std::fs::read_to_string(self.state.join(format!("agent/ganesha/export-{id}.conf")))
            .unwrap_or_default()
    }

    /// The volume's directory on the NFS server.
    fn volume_dir(&self, name: &str) -> PathBuf {
        let record = self.record(name).unwrap();
        self.state
            .join("exports")
            .join(record["path"].as_str().unwrap())
    }
}

impl Drop for Backend {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The whole cluster side: the control plane, the sidecars, the controller.
struct Cluster {
    plane: ControlPlane,
    backend: Backend,
    /// The controller Deployment's replicas, the leader first.
    replicas: Vec<Replica>,
}

fn set_of(items: &[&str]) -> BTreeSet<String> {
    items.iter().map(|s| s.to_string()).collect()
}

#[test]
fn rwxnfs_under_a_real_control_plane_with_the_real_sidecars() {
    let started = Instant::now();
    let (dir, _short) = work_dir();
    let plane = ControlPlane::start(&dir.join("plane"));
    let backend = Backend::start(&dir.join("dev"));
    let mut cluster = Cluster {
        plane,
        backend,
        replicas: Vec::new(),
    };
    manifests_apply(&cluster);
    install(&mut cluster, &dir);
    println!("cluster up in {:?}", started.elapsed());

    let volume = immediate_claim(&cluster);
    attach_and_detach(&cluster, &volume);
    resize(&cluster, &volume);
    snapshot_restore_and_clone(&cluster, &volume);
    wait_for_first_consumer(&cluster);
    unknown_parameter(&cluster);
    agent_down_during_create(&mut cluster);
    attach_many(&cluster, 10);
    attach_many(&cluster, 30);
    self_check_event(&cluster);
    doctor_live(&cluster);
    leader_lost(&mut cluster);
    delete_everything(&cluster);
    println!("all scenarios passed in {:?}", started.elapsed());
}

/// Where the test keeps its files and logs: `target/tmp/kube` (kept for a look after a
/// failure), or a temporary directory when the checkout's path is so long that the unix
/// sockets under it (`dev/agent.sock`, `csi/csi.sock`, ...) would pass the kernel's 108-byte
/// limit on a socket path.
fn work_dir() -> (PathBuf, Option<tempfile::TempDir>) {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("kube");
    let (dir, short) = if dir.as_os_str().len() > 60 {
        let short = tempfile::tempdir().unwrap();
        (short.path().to_path_buf(), Some(short))
    } else {
        (dir, None)
    };
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    println!("the test's files and logs: {}", dir.display());
    (dir, short)
}

/// The manifests against the real API server: a server-side dry run of the base and every
/// overlay (after the Namespace, which namespaced objects' dry run needs), then the base for
/// real.
fn manifests_apply(cluster: &Cluster) {
    let plane = &cluster.plane;
    let crds = upstream::tool("csi-snapshotter", "csi-snapshotter")
        .parent()
        .unwrap()
        .parent()
        .unwrap()
        .join("crd");
    plane.kubectl_ok(&["apply", "-f", crds.to_str().unwrap()]);
    plane.kubectl_ok(&[
        "wait",
        "--for=condition=established",
        "--timeout=60s",
        "crd/volumesnapshots.snapshot.storage.k8s.io",
        "crd/volumesnapshotclasses.snapshot.storage.k8s.io",
        "crd/volumesnapshotcontents.snapshot.storage.k8s.io",
    ]);
    let manifests = Path::new(env!("CARGO_MANIFEST_DIR")).join("../manifests");
    let m = |p: &str| manifests.join(p).display().to_string();
    plane.kubectl_ok(&["apply", "-f", &m("base/namespace.yaml")]);
    for kustomization in [
        "",
        "overlays/istio-sidecar",
        "overlays/istio-ambient",
        "overlays/no-snapshots",
        "overlays/nfs-tls",
        "examples",
    ] {
        let out = plane.kubectl(&["apply", "--dry-run=server", "-k", &m(kustomization)]);
        assert!(
            out.status.success(),
            "server-side dry run of manifests/{kustomization}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        println!("manifests/{kustomization}: server-side dry run accepted");
    }
    plane.kubectl_ok(&["apply", "-k", &m("")]);
    println!("manifests/: applied");
}

/// The snapshot controller, the Deployment's two replicas of `rwxnfs controller` and the
/// sidecars as the applied Deployment starts them, and the Nodes. The first replica starts
/// alone and takes every sidecar's lease; the second is the standby.
fn install(cluster: &mut Cluster, dir: &Path) {
    let deployment: Value = serde_json::from_str(&cluster.plane.kubectl_ok(&[
        "get",
        "deployment",
        "rwxnfs-controller",
        "-n",
        "rwxnfs",
        "-o",
        "json",
    ]))
    .unwrap();
    assert_eq!(
        deployment["spec"]["replicas"], 2,
        "the shipped Deployment runs a leader and a standby"
    );
    let containers = deployment["spec"]["template"]["spec"]["containers"]
        .as_array()
        .unwrap()
        .clone();
    // The self-check reads "its" Pod: one the Deployment's ReplicaSet made (never scheduled),
    // in a namespace labelled for sidecar injection, where the pod template's exclusions
    // (the shipped VIP) do not cover this configuration's server (127.0.0.1): a finding the
    // check must record as an Event. The label goes again before `rwxnfs doctor` runs.
    let pods = wait_for_controller_pods(&cluster.plane);
    cluster.plane.kubectl_ok(&[
        "label",
        "namespace",
        "rwxnfs",
        "istio-injection=enabled",
        "--overwrite",
    ]);
    let leader = start_replica(cluster, dir, &containers, &pods[0], "");
    let started = Instant::now();
    wait_for("the first replica's sidecars to lead", STEP, || {
        lease_holders(&cluster.plane) == vec![pods[0].clone(); SIDECARS.len()]
    });
    println!(
        "{}: every sidecar leads ({} leases) after {:?}",
        pods[0],
        SIDECARS.len(),
        started.elapsed()
    );
    let standby = start_replica(cluster, dir, &containers, &pods[1], "-b");
    cluster.replicas = vec![leader, standby];

    // The snapshot controller is the cluster's, not the driver's: it runs as the admin.
    cluster.plane.spawn(
        "snapshot-controller",
        Command::new(upstream::tool("csi-snapshotter", "snapshot-controller")).args([
            format!("--kubeconfig={}", cluster.plane.kubeconfig.display()),
            "--leader-election=false".into(),
        ]),
    );
    for (name, ip, annotation) in NODES {
        create_node(&cluster.plane, name, ip, *annotation);
    }
}

/// The sidecars of the controller Deployment: the upstream tool and the container's name.
const SIDECARS: [(&str, &str); 4] = [
    ("csi-provisioner", "csi-provisioner"),
    ("csi-attacher", "csi-attacher"),
    ("csi-resizer", "csi-resizer"),
    ("csi-snapshotter", "csi-snapshotter"),
];

/// One replica of the controller Deployment: its containers' processes.
struct Replica {
    pod: String,
    processes: Vec<Process>,
}

impl Replica {
    /// SIGKILL to every container at once, as when the replica's node is lost: nothing is
    /// released, so the standby takes over only when the leases run out.
    fn kill(&mut self) {
        for process in &mut self.processes {
            process.kill();
        }
    }
}

/// Starts one replica of the Deployment, `pod`: `rwxnfs controller` and the sidecars with the
/// pod template's arguments (the paths and ports rewritten to this test's), acting as the
/// Deployment's service account, in a UTS namespace of their own whose host name is the
/// pod's name, as in the pod: the sidecars' leader-election identity is the host name.
/// Their logs are `<container><suffix>.log` beside the control plane's.
fn start_replica(
    cluster: &Cluster,
    dir: &Path,
    containers: &[Value],
    pod: &str,
    suffix: &str,
) -> Replica {
    let args = |name: &str| -> Vec<String> {
        containers
            .iter()
            .find(|c| c["name"] == name)
            .unwrap_or_else(|| panic!("the Deployment has no container {name}"))["args"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| a.as_str().unwrap().to_owned())
            .collect()
    };
    let in_pod = |program: &Path| {
        let mut command = Command::new("unshare");
        command
            .args([
                "--uts",
                "--",
                "sh",
                "-c",
                r#"hostname "$0" && exec "$@""#,
                pod,
            ])
            .arg(program);
        command
    };
    let csi = dir.join(format!("csi{suffix}"));
    std::fs::create_dir_all(&csi).unwrap();
    let socket = csi.join("csi.sock");
    let account = cluster
        .plane
        .service_account_kubeconfig("rwxnfs", "rwxnfs-controller");
    let mut processes = Vec::new();

    // The controller, as the pod's first container: its configuration names this test's
    // agent, and it has no node map, so it asks the API for each node's address.
    let config = dir.join("controller.yaml");
    std::fs::write(
        &config,
        format!(
            "backends:\n  - name: ha1\n    agent:\n      endpoint: unix://{}\n    server: 127.0.0.1\n",
            cluster.backend.state.join("agent.sock").display()
        ),
    )
    .unwrap();
    let mut controller_args = args("rwxnfs");
    for a in &mut controller_args {
        if a.starts_with("--config=") {
            *a = format!("--config={}", config.display());
        } else if a.starts_with("--endpoint=") {
            *a = format!("--endpoint=unix://{}", socket.display());
        } else if a.starts_with("--metrics-address=") {
            *a = format!("--metrics-address=127.0.0.1:{}", free_port());
        }
    }
    let health = liveness_address(containers, &mut controller_args);
    processes.push(
        cluster.plane.start_process(
            &format!("rwxnfs-controller{suffix}"),
            in_pod(Path::new(env!("CARGO_BIN_EXE_rwxnfs")))
                .args(["--log-format", "text"])
                .args(&controller_args)
                .env("KUBECONFIG", &account)
                .env("POD_NAME", pod)
                .env("POD_NAMESPACE", "rwxnfs")
                .env("RUST_LOG", "info"),
        ),
    );
    wait_for("the controller's socket", Duration::from_secs(30), || {
        socket.exists()
    });
    controller_is_live(health);

    for (tool, container) in SIDECARS {
        let mut sidecar = Vec::new();
        for a in args(container) {
            if a == "--csi-address=/csi/csi.sock" {
                sidecar.push(format!("--csi-address={}", socket.display()));
            } else if a.starts_with("--http-endpoint=") {
                sidecar.push(format!("--http-endpoint=127.0.0.1:{}", free_port()));
            } else {
                sidecar.push(a);
            }
        }
        assert!(
            sidecar.iter().any(|a| a.starts_with("--csi-address=/")),
            "{container}: no --csi-address=/csi/csi.sock in {sidecar:?}"
        );
        // In the pod, the service account's namespace file says where the leases go.
        if sidecar.iter().any(|a| a == "--leader-election") {
            sidecar.push("--leader-election-namespace=rwxnfs".into());
        }
        sidecar.push(format!("--kubeconfig={}", account.display()));
        println!(
            "{pod}: {container} {}: {}",
            upstream::version(tool),
            sidecar.join(" ")
        );
        processes.push(cluster.plane.start_process(
            &format!("{container}{suffix}"),
            in_pod(&upstream::tool(tool, container)).args(&sidecar),
        ));
    }
    Replica {
        pod: pod.to_owned(),
        processes,
    }
}

/// The holder of each sidecar's lease in the driver's namespace, in the leases' order.
fn lease_holders(plane: &ControlPlane) -> Vec<String> {
    plane
        .jsonpath(
            &["get", "leases", "-n", "rwxnfs"],
            "{range .items[*]}{.spec.holderIdentity}{\"\\n\"}{end}",
        )
        .lines()
        .map(str::to_owned)
        .collect()
}

/// Where the kubelet's liveness probe would reach the controller, in the test: the
/// `rwxnfs` container's `--health-address` rewritten to a free loopback port (the shipped
/// 0.0.0.0:9808 would take the host's), after checking that the probe's named port is the
/// one that flag listens on and its path is /healthz.
fn liveness_address(containers: &[Value], args: &mut [String]) -> std::net::SocketAddr {
    let rwxnfs = containers.iter().find(|c| c["name"] == "rwxnfs").unwrap();
    let probe = &rwxnfs["livenessProbe"]["httpGet"];
    assert_eq!(probe["path"], "/healthz", "the liveness probe's path");
    let port = rwxnfs["ports"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == probe["port"])
        .unwrap_or_else(|| {
            panic!(
                "the liveness probe's port {} is not declared",
                probe["port"]
            )
        })["containerPort"]
        .as_u64()
        .unwrap();
    let flag = args
        .iter_mut()
        .find(|a| a.starts_with("--health-address="))
        .expect("the controller's args have --health-address");
    assert!(
        flag.ends_with(&format!(":{port}")),
        "the liveness probe asks port {port}, the controller listens on {flag}"
    );
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], free_port()));
    *flag = format!("--health-address={addr}");
    addr
}

/// The liveness probe's request against the running controller answers 200 `ok`: its one
/// backend, this test's agent, is ready. The listener may come up just after the CSI socket.
fn controller_is_live(addr: std::net::SocketAddr) {
    use std::io::{Read, Write};
    let started = Instant::now();
    let mut last = String::new();
    while started.elapsed() < STEP {
        if let Ok(mut stream) = std::net::TcpStream::connect(addr) {
            stream.set_read_timeout(Some(STEP)).unwrap();
            stream
                .write_all(b"GET /healthz HTTP/1.1\r\nHost: kubelet\r\n\r\n")
                .unwrap();
            last.clear();
            if stream.read_to_string(&mut last).is_ok()
                && last.starts_with("HTTP/1.1 200 ")
                && last.ends_with("\r\n\r\nok\n")
            {
                println!("controller /healthz on {addr}: 200 ok");
                return;
            }
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("controller /healthz on {addr} did not answer 200 ok within {STEP:?}; last: {last:?}");
}

/// The names of the Deployment's two pods, once its ReplicaSet has made them.
fn wait_for_controller_pods(plane: &ControlPlane) -> Vec<String> {
    let args = [
        "get",
        "pods",
        "-n",
        "rwxnfs",
        "-l",
        "app.kubernetes.io/component=controller",
    ];
    let names = "{.items[*].metadata.name}";
    plane.wait_jsonpath(&args, names, STEP, |v| v.split_whitespace().count() == 2);
    let mut pods: Vec<String> = plane
        .jsonpath(&args, names)
        .split_whitespace()
        .map(str::to_owned)
        .collect();
    pods.sort();
    pods
}

fn create_node(plane: &ControlPlane, name: &str, ip: &str, override_address: Option<&str>) {
    let annotation = override_address
        .map(|a| format!("    rwxnfs.csi.io/nfs-client-addresses: \"{a}\"\n"))
        .unwrap_or_default();
    let yaml = format!(
        "apiVersion: v1\nkind: Node\nmetadata:\n  name: {name}\n  labels:\n    kubernetes.io/hostname: {name}\n  annotations:\n    volumes.kubernetes.io/controller-managed-attach-detach: \"true\"\n{annotation}status:\n  addresses:\n  - {{type: InternalIP, address: {ip}}}\n  - {{type: Hostname, address: {name}}}\n"
    );
    plane
        .kubectl_stdin(&["create"], &yaml)
        .unwrap_or_else(|e| panic!("create node {name}: {e}"));
    let seen = plane.jsonpath(&["get", "node", name], "{.status.addresses[0].address}");
    assert_eq!(seen, ip, "node {name} kept its InternalIP");
    // What the kubelet writes once `rwxnfs node` has registered the driver on its
    // registration socket: both attachers read the node's CSI node id from it.
    let csinode = format!(
        "apiVersion: storage.k8s.io/v1\nkind: CSINode\nmetadata:\n  name: {name}\nspec:\n  drivers:\n  - name: rwxnfs.csi.io\n    nodeID: {name}\n"
    );
    plane
        .kubectl_stdin(&["create"], &csinode)
        .unwrap_or_else(|e| panic!("create CSINode {name}: {e}"));
}

fn claim(name: &str, class: &str, size: &str, source: &str) -> String {
    format!(
        "apiVersion: v1\nkind: PersistentVolumeClaim\nmetadata:\n  name: {name}\n  namespace: default\nspec:\n  accessModes: [ReadWriteMany]\n  storageClassName: {class}\n  resources:\n    requests:\n      storage: {size}\n{source}"
    )
}

/// Waits for a claim to be Bound; returns its PV's name and the time it took.
fn bound(plane: &ControlPlane, claim: &str) -> (String, Duration) {
    let took = plane.wait_jsonpath(
        &["get", "pvc", claim, "-n", "default"],
        "{.status.phase}",
        STEP,
        |v| v == "Bound",
    );
    let pv = plane.jsonpath(
        &["get", "pvc", claim, "-n", "default"],
        "{.spec.volumeName}",
    );
    (pv, took)
}

/// The StorageClass and claim of `manifests/examples/`: Bound, with the PV as documented.
fn immediate_claim(cluster: &Cluster) -> String {
    let plane = &cluster.plane;
    let examples = Path::new(env!("CARGO_MANIFEST_DIR")).join("../manifests/examples");
    for file in ["storageclass.yaml", "volumesnapshotclass.yaml", "pvc.yaml"] {
        plane.kubectl_ok(&["apply", "-f", examples.join(file).to_str().unwrap()]);
    }
    let (pv, took) = bound(plane, "nfs-app");
    println!("PVC nfs-app (4Gi, RWX, Immediate): Pending -> Bound in {took:?}");
    let get = |path: &str| plane.jsonpath(&["get", "pv", &pv], path);
    assert_eq!(get("{.spec.csi.volumeHandle}"), format!("vol1:ha1:{pv}"));
    assert_eq!(get("{.spec.capacity.storage}"), "4Gi");
    assert_eq!(get("{.spec.mountOptions}"), r#"["nconnect=4"]"#);
    assert_eq!(get("{.spec.accessModes}"), r#"["ReadWriteMany"]"#);
    let attributes: Value = serde_json::from_str(&get("{.spec.csi.volumeAttributes}")).unwrap();
    assert_eq!(attributes["server"], "127.0.0.1", "{attributes}");
    assert_eq!(attributes["nfsVersion"], "4.2", "{attributes}");
    assert!(attributes["share"].is_string(), "{attributes}");
    let record = cluster
        .backend
        .record(&pv)
        .expect("the export is on the server");
    assert_eq!(record["capacity_bytes"].as_u64(), Some(4 * GI));
    assert!(
        cluster.backend.clients(&pv).is_empty(),
        "a new export admits nobody"
    );
    println!("PV {pv}: handle, capacity, attributes and mount options as documented");
    pv
}

fn pod(name: &str, node: &str, claim: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: {name}\n  namespace: default\nspec:\n  nodeName: {node}\n  containers:\n  - name: app\n    image: busybox\n    volumeMounts:\n    - {{name: data, mountPath: /data}}\n  volumes:\n  - name: data\n    persistentVolumeClaim:\n      claimName: {claim}\n"
    )
}

/// The nodes whose VolumeAttachment for `pv` says attached.
fn attached(plane: &ControlPlane, pv: &str) -> BTreeSet<String> {
    let text = plane.jsonpath(
        &["get", "volumeattachments"],
        "{range .items[*]}{.spec.source.persistentVolumeName} {.spec.nodeName} {.status.attached}{\"\\n\"}{end}",
    );
    text.lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (f.len() == 3 && f[0] == pv && f[2] == "true").then(|| f[1].to_owned())
        })
        .collect()
}

fn delete_pod(plane: &ControlPlane, name: &str) {
    // No kubelet confirms the pod's end: remove it at once, as a node's loss would.
    plane.kubectl_ok(&[
        "delete",
        "pod",
        name,
        "-n",
        "default",
        "--grace-period=0",
        "--force",
    ]);
}

/// Two Pods on two Nodes: two VolumeAttachments attached, the export admits exactly those
/// nodes' addresses, a third node is not admitted, the override annotation is honoured, and
/// deleting a Pod detaches and revokes.
fn attach_and_detach(cluster: &Cluster, pv: &str) {
    let plane = &cluster.plane;
    let started = Instant::now();
    for (pod_name, node) in [("app-a", "node-a"), ("app-b", "node-b")] {
        plane.apply(&pod(pod_name, node, "nfs-app"));
    }
    let want = set_of(&["node-a", "node-b"]);
    wait_for("VolumeAttachments on node-a and node-b", STEP, || {
        attached(plane, pv) == want
    });
    println!(
        "two pods on node-a and node-b: both VolumeAttachments attached in {:?}",
        started.elapsed()
    );
    assert_eq!(
        cluster.backend.clients(pv),
        set_of(&["10.0.0.11", "10.0.0.12"])
    );
    let ganesha = cluster.backend.ganesha_export(pv);
    assert!(
        ganesha.contains("10.0.0.11") && ganesha.contains("10.0.0.12"),
        "{ganesha}"
    );
    assert!(
        !ganesha.contains("10.0.0.13"),
        "node-c is not admitted: {ganesha}"
    );
    println!("the export admits exactly 10.0.0.11 and 10.0.0.12 (agent table and Ganesha)");

    plane.apply(&pod("app-d", "node-d", "nfs-app"));
    wait_for("the VolumeAttachment on node-d", STEP, || {
        attached(plane, pv).contains("node-d")
    });
    let clients = cluster.backend.clients(pv);
    assert!(
        clients.contains("10.0.1.14") && !clients.contains("10.0.0.14"),
        "the override annotation's address, not the InternalIP: {clients:?}"
    );
    println!("node-d: admitted by its rwxnfs.csi.io/nfs-client-addresses annotation (10.0.1.14)");

    let started = Instant::now();
    delete_pod(plane, "app-b");
    delete_pod(plane, "app-d");
    wait_for("node-b and node-d detached and revoked", STEP, || {
        attached(plane, pv) == set_of(&["node-a"])
            && cluster.backend.clients(pv) == set_of(&["10.0.0.11"])
    });
    println!(
        "app-b and app-d deleted: detached and revoked in {:?}; the export admits 10.0.0.11 only",
        started.elapsed()
    );
}

/// A resize of the claim: the PV, the claim's status and the server's quota record follow.
fn resize(cluster: &Cluster, pv: &str) {
    let plane = &cluster.plane;
    let started = Instant::now();
    plane.kubectl_ok(&[
        "patch",
        "pvc",
        "nfs-app",
        "-n",
        "default",
        "--type=merge",
        "-p",
        r#"{"spec":{"resources":{"requests":{"storage":"6Gi"}}}}"#,
    ]);
    plane.wait_jsonpath(&["get", "pv", pv], "{.spec.capacity.storage}", STEP, |v| {
        v == "6Gi"
    });
    plane.wait_jsonpath(
        &["get", "pvc", "nfs-app", "-n", "default"],
        "{.status.capacity.storage}",
        STEP,
        |v| v == "6Gi",
    );
    let record = cluster.backend.record(pv).unwrap();
    assert_eq!(record["capacity_bytes"].as_u64(), Some(6 * GI));
    println!(
        "PVC resized to 6Gi: PV, claim status and the export's quota followed in {:?}",
        started.elapsed()
    );
}

/// A VolumeSnapshot becomes ready; a claim restored from it holds the data of snapshot time,
/// and a clone of the claim holds the data of clone time.
fn snapshot_restore_and_clone(cluster: &Cluster, pv: &str) {
    let plane = &cluster.plane;
    let data = cluster.backend.volume_dir(pv).join("data.txt");
    std::fs::write(&data, "before the snapshot\n").unwrap();
    let started = Instant::now();
    plane.apply(
        "apiVersion: snapshot.storage.k8s.io/v1\nkind: VolumeSnapshot\nmetadata:\n  name: snap-1\n  namespace: default\nspec:\n  volumeSnapshotClassName: rwxnfs\n  source:\n    persistentVolumeClaimName: nfs-app\n",
    );
    plane.wait_jsonpath(
        &["get", "volumesnapshot", "snap-1", "-n", "default"],
        "{.status.readyToUse}",
        STEP,
        |v| v == "true",
    );
    println!(
        "VolumeSnapshot snap-1: readyToUse in {:?}",
        started.elapsed()
    );
    std::fs::write(&data, "after the snapshot\n").unwrap();

    plane.apply(&claim(
        "restored",
        "rwxnfs",
        "6Gi",
        "  dataSource:\n    apiGroup: snapshot.storage.k8s.io\n    kind: VolumeSnapshot\n    name: snap-1\n",
    ));
    plane.apply(&claim(
        "clone",
        "rwxnfs",
        "6Gi",
        "  dataSource:\n    kind: PersistentVolumeClaim\n    name: nfs-app\n",
    ));
    let (restored, took) = bound(plane, "restored");
    println!("PVC restored (from snap-1): Bound in {took:?}");
    let (clone, took) = bound(plane, "clone");
    println!("PVC clone (of nfs-app): Bound in {took:?}");
    let read = |pv: &str| {
        std::fs::read_to_string(cluster.backend.volume_dir(pv).join("data.txt")).unwrap()
    };
    assert_eq!(read(&restored), "before the snapshot\n");
    assert_eq!(read(&clone), "after the snapshot\n");
    println!("restored holds the data of snapshot time, clone the data of clone time");
}

/// WaitForFirstConsumer: nothing is provisioned until a node is selected for the claim (the
/// scheduler's annotation, set here as the scheduler would), then it binds.
fn wait_for_first_consumer(cluster: &Cluster) {
    let plane = &cluster.plane;
    plane.apply(
        "apiVersion: storage.k8s.io/v1\nkind: StorageClass\nmetadata:\n  name: rwxnfs-wffc\nprovisioner: rwxnfs.csi.io\nparameters:\n  backend: ha1\nvolumeBindingMode: WaitForFirstConsumer\n",
    );
    plane.apply(&claim("wffc", "rwxnfs-wffc", "1Gi", ""));
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(
        plane.jsonpath(&["get", "pvc", "wffc", "-n", "default"], "{.status.phase}"),
        "Pending"
    );
    assert_eq!(
        plane.jsonpath(
            &["get", "pvc", "wffc", "-n", "default"],
            "{.spec.volumeName}"
        ),
        ""
    );
    plane.kubectl_ok(&[
        "annotate",
        "pvc",
        "wffc",
        "-n",
        "default",
        "volume.kubernetes.io/selected-node=node-c",
    ]);
    let (_, took) = bound(plane, "wffc");
    println!(
        "PVC wffc (WaitForFirstConsumer): Pending until node-c was selected, then Bound in {took:?}"
    );
}

/// The messages of the claim's Events with `reason`.
fn events(plane: &ControlPlane, claim: &str, reason: &str) -> String {
    plane.jsonpath(
        &[
            "get",
            "events",
            "-n",
            "default",
            &format!("--field-selector=involvedObject.name={claim},reason={reason}"),
        ],
        "{.items[*].message}",
    )
}

/// A StorageClass with a parameter the driver does not know: the claim stays Pending with
/// our message in a ProvisioningFailed Event.
fn unknown_parameter(cluster: &Cluster) {
    let plane = &cluster.plane;
    plane.apply(
        "apiVersion: storage.k8s.io/v1\nkind: StorageClass\nmetadata:\n  name: rwxnfs-typo\nprovisioner: rwxnfs.csi.io\nparameters:\n  backend: ha1\n  nfsVerison: \"4.2\"\n",
    );
    plane.apply(&claim("typo", "rwxnfs-typo", "1Gi", ""));
    let mut message = String::new();
    wait_for("a ProvisioningFailed Event for the typo", STEP, || {
        message = events(plane, "typo", "ProvisioningFailed");
        !message.is_empty()
    });
    assert!(
        message.contains("InvalidArgument") && message.contains("nfsVerison"),
        "{message}"
    );
    assert_eq!(
        plane.jsonpath(&["get", "pvc", "typo", "-n", "default"], "{.status.phase}"),
        "Pending"
    );
    println!("StorageClass with an unknown parameter: PVC Pending, ProvisioningFailed: {message}");
    plane.kubectl_ok(&["delete", "pvc", "typo", "-n", "default"]);
}

/// The agent is down when a claim is made: it stays Pending, binds once the agent is back,
/// and the server holds exactly one export for it.
fn agent_down_during_create(cluster: &mut Cluster) {
    let before = cluster.backend.records().len();
    cluster.backend.stop();
    let plane = &cluster.plane;
    plane.apply(&claim("outage", "rwxnfs", "1Gi", ""));
    wait_for(
        "a ProvisioningFailed Event while the agent is down",
        STEP,
        || !events(plane, "outage", "ProvisioningFailed").is_empty(),
    );
    assert_eq!(
        plane.jsonpath(
            &["get", "pvc", "outage", "-n", "default"],
            "{.status.phase}"
        ),
        "Pending"
    );
    println!(
        "agent down: PVC outage Pending, ProvisioningFailed: {}",
        events(plane, "outage", "ProvisioningFailed")
    );
    let started = Instant::now();
    cluster.backend.restart();
    let (pv, took) = bound(&cluster.plane, "outage");
    println!(
        "agent back after {:?}: PVC outage Bound {took:?} later",
        started.elapsed() - took
    );
    let records = cluster.backend.records();
    assert_eq!(records.len(), before + 1, "exactly one new export");
    assert_eq!(
        records.iter().filter(|r| r["name"] == pv.as_str()).count(),
        1
    );
}

/// A Deployment-like burst: one claim, one Pod on each of `n` new Nodes at once; the time
/// until every VolumeAttachment is attached.
fn attach_many(cluster: &Cluster, n: usize) {
    let plane = &cluster.plane;
    let name = format!("burst-{n}");
    plane.apply(&claim(&name, "rwxnfs", "1Gi", ""));
    let (pv, _) = bound(plane, &name);
    for i in 0..n {
        let node = format!("{name}-node-{i}");
        if plane
            .jsonpath(&["get", "node", &node], "{.metadata.name}")
            .is_empty()
        {
            create_node(plane, &node, &format!("10.1.{n}.{}", i + 1), None);
        }
    }
    let pods: String = (0..n)
        .map(|i| {
            format!(
                "---\n{}",
                pod(&format!("{name}-{i}"), &format!("{name}-node-{i}"), &name)
            )
        })
        .collect();
    let started = Instant::now();
    plane.apply(&pods);
    wait_for(&format!("{n} VolumeAttachments attached"), STEP, || {
        attached(plane, &pv).len() == n
    });
    let took = started.elapsed();
    assert_eq!(cluster.backend.clients(&pv).len(), n);
    let aborted = std::fs::read_to_string(plane.dir().join("csi-attacher.err.log"))
        .unwrap_or_default()
        .matches("Aborted")
        .count();
    println!(
        "{n} pods on {n} nodes, one RWX claim: all attached in {took:?} ({aborted} ABORTED answers in the attacher's log so far)"
    );
    for i in 0..n {
        delete_pod(plane, &format!("{name}-{i}"));
    }
    wait_for(&format!("{n} detached"), STEP, || {
        attached(plane, &pv).is_empty()
    });
    plane.kubectl_ok(&["delete", "pvc", &name, "-n", "default"]);
}

/// The controller's start-up mesh check ran against the real API and could record its Event.
fn self_check_event(cluster: &Cluster) {
    let plane = &cluster.plane;
    let log = plane.dir().join("rwxnfs-controller.err.log");
    let text = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(
        !text.contains("cannot record the"),
        "the self-check's Event was refused:\n{text}"
    );
    let events = plane.jsonpath(
        &[
            "get",
            "events.events.k8s.io",
            "-n",
            "rwxnfs",
            "--field-selector=reason=MeshMisconfigured",
        ],
        "{.items[*].note}",
    );
    println!(
        "controller self-check: {}",
        if events.is_empty() {
            "no finding, no Event".to_owned()
        } else {
            format!("Event MeshMisconfigured recorded: {events}")
        }
    );
    assert!(!events.is_empty(), "no MeshMisconfigured Event:\n{text}");
    plane.kubectl_ok(&["label", "namespace", "rwxnfs", "istio-injection-"]);
}

/// `rwxnfs doctor` live against the API server with the shipped manifests applied.
fn doctor_live(cluster: &Cluster) {
    let out = Command::new(env!("CARGO_BIN_EXE_rwxnfs"))
        .args(["doctor", "--kubeconfig"])
        .arg(&cluster.plane.kubeconfig)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    println!(
        "rwxnfs doctor (live, shipped manifests): exit {:?}\n{text}{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stderr)
    );
    // No Istio here: the PeerAuthentication check is skipped (RWX090, info) and nothing else
    // is wrong with the shipped manifests, so the exit status is 0.
    assert!(text.contains("RWX090"), "{text}");
    assert_eq!(out.status.code(), Some(0), "{text}");
}

/// How long the standby may take to provision after the leader's loss: the Deployment's
/// lease (`--leader-election-lease-duration=60s`) must run out, the standby retries every
/// 10 s (`--leader-election-retry-period`), then it provisions as the leader did.
const HANDOVER: Duration = Duration::from_secs(60 + 10 + 90);

/// The leader replica's node is lost: every one of its containers SIGKILLed at once, no lease
/// released. The standby's sidecars take every lease when it runs out, and then provision,
/// attach and detach (and, in the next step, delete everything). The time from the loss to a
/// new claim Bound is the longest a user waits for provisioning after a node's loss.
fn leader_lost(cluster: &mut Cluster) {
    let standby = cluster.replicas[1].pod.clone();
    cluster.replicas[0].kill();
    let lost = Instant::now();
    let plane = &cluster.plane;
    plane.apply(&claim("after-loss", "rwxnfs", "1Gi", ""));
    plane.wait_jsonpath(
        &["get", "pvc", "after-loss", "-n", "default"],
        "{.status.phase}",
        HANDOVER,
        |v| v == "Bound",
    );
    let bound = lost.elapsed();
    // Each sidecar's lease runs out 60 s after its own last renewal, and each candidate
    // retries on its own 10 s period: the four move over within about 10 s of each other.
    wait_for(
        "every sidecar lease to be the standby's",
        HANDOVER.saturating_sub(lost.elapsed()),
        || lease_holders(plane) == vec![standby.clone(); SIDECARS.len()],
    );
    println!(
        "{} lost (SIGKILL, no lease released): a new claim Bound by {standby} {bound:.1?} after \
         the loss, all four sidecar leases its own after {:.1?}",
        cluster.replicas[0].pod,
        lost.elapsed()
    );
    let pv = plane.jsonpath(
        &["get", "pvc", "after-loss", "-n", "default"],
        "{.spec.volumeName}",
    );
    let started = Instant::now();
    plane.apply(&pod("app-c", "node-c", "after-loss"));
    wait_for("the standby attaches to node-c", STEP, || {
        attached(plane, &pv) == set_of(&["node-c"])
            && cluster.backend.clients(&pv) == set_of(&["10.0.0.13"])
    });
    delete_pod(plane, "app-c");
    wait_for("the standby detaches from node-c", STEP, || {
        attached(plane, &pv).is_empty() && cluster.backend.clients(&pv).is_empty()
    });
    println!(
        "{standby}: attached to node-c and detached again in {:.1?}",
        started.elapsed()
    );
}

/// Every claim and snapshot deleted: no PV, no export record, no Ganesha export left.
fn delete_everything(cluster: &Cluster) {
    let plane = &cluster.plane;
    delete_pod(plane, "app-a");
    plane.kubectl_ok(&["delete", "volumesnapshot", "--all", "-n", "default"]);
    plane.kubectl_ok(&["delete", "pvc", "--all", "-n", "default", "--wait=false"]);
    let started = Instant::now();
    plane.wait_jsonpath(&["get", "pv"], "{.items[*].metadata.name}", STEP, |v| {
        v.is_empty()
    });
    plane.wait_jsonpath(
        &["get", "volumesnapshotcontents"],
        "{.items[*].metadata.name}",
        STEP,
        |v| v.is_empty(),
    );
    wait_for("every export gone from the server", STEP, || {
        cluster.backend.records().is_empty()
    });
    let files: Vec<String> = std::fs::read_dir(cluster.backend.state.join("agent/ganesha"))
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("export-"))
        .collect();
    assert!(files.is_empty(), "Ganesha export files left: {files:?}");
    // onDelete: delete (the example class): the data goes too, volumes and snapshots alike
    // (through the agent's trash, emptied in the background).
    for kind in ["volumes", "snapshots"] {
        let dir = cluster.backend.state.join("exports").join(kind);
        wait_for(&format!("no {kind} left on the server"), STEP, || {
            std::fs::read_dir(&dir).map_or(true, |mut d| d.next().is_none())
        });
    }
    println!(
        "everything deleted: no PV, no snapshot content, no export and no data left ({:?})",
        started.elapsed()
    );
    // The sidecars and the controller ran as the Deployment's service account all along:
    // whatever the shipped RBAC lacked would show here.
    let containers = ["rwxnfs-controller"]
        .into_iter()
        .chain(SIDECARS.iter().map(|(_, container)| *container));
    for log in containers.flat_map(|c| [c.to_owned(), format!("{c}-b")]) {
        let text =
            std::fs::read_to_string(plane.dir().join(format!("{log}.err.log"))).unwrap_or_default();
        let forbidden: Vec<&str> = text.lines().filter(|l| l.contains("forbidden")).collect();
        assert!(
            forbidden.is_empty(),
            "{log} was refused by RBAC:\n{}",
            forbidden.join("\n")
        );
    }
    println!("no request of the sidecars or the controller was forbidden by the shipped RBAC");
}
