//! The driver on a real Kubernetes cluster in the VM lab, installed and used as a user would:
//!
//! - three node VMs (containerd, runc, the CNI bridge, the kubelet and kube-proxy built from
//!   `tools/versions`) joined to a control plane running natively on the lab network
//!   (testbed::cluster), and an NFS server VM (kernel nfsd, XFS project quotas, the agent on
//!   mutual TLS) at the address the shipped configuration names, 192.168.222.25;
//! - the images built here (no registry is reachable) and imported into every node: rwxnfs's
//!   from this build's binary with `scripts/image-rootfs` (what the Containerfile ships), the
//!   sidecars from the pinned upstream binaries under the names `manifests/` uses;
//! - `kubectl apply -k manifests/` unchanged, after the one thing a cluster adds itself (the
//!   agent's TLS Secret); then `manifests/examples/` unchanged: the StorageClass, the snapshot
//!   class and the claim `nfs-app`;
//! - the walkthrough with kubectl: writers on two nodes appending to one file, fsGroup,
//!   quota and online expansion, a snapshot restored, a pod moving to the third node, and
//!   clean-up to nothing.
//!
//! Each step prints one line with its time; a failing step names itself, and the lab prints
//! every VM's logs and where they are kept.
#![allow(clippy::unwrap_used)]

use std::{
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use rwxnfs_testbed::{
    Pki,
    cluster::Cluster,
    kube::ControlPlane,
    upstream,
    vm::{Lab, Vm, VmSpec, oci, recipes},
};

const NODES: &[&str] = &["node-a", "node-b", "node-c"];
/// The agent's address in manifests/base/config/controller.yaml.
const VIP: &str = "192.168.222.25";
/// The bound of each wait. Generous: under emulation, on a busy 2-core machine, a node VM
/// starting five Go sidecars has taken minutes.
const STEP: Duration = Duration::from_secs(600);

struct Steps {
    started: Instant,
    last: Instant,
}

impl Steps {
    fn new() -> Steps {
        Steps {
            started: Instant::now(),
            last: Instant::now(),
        }
    }

    /// Ends a step: one line with its time and the time so far.
    fn done(&mut self, what: &str) {
        println!(
            "[{:>6.1} s] {what} ({:.1} s)",
            self.started.elapsed().as_secs_f64(),
            self.last.elapsed().as_secs_f64()
        );
        self.last = Instant::now();
    }
}

fn target_tmp() -> PathBuf {
    PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
}

/// The disk every node boots with, its containerd holding the images.
fn images() -> PathBuf {
    let dir = target_tmp().join("kube-images");
    std::fs::create_dir_all(&dir).unwrap();
    let mut wanted = vec![
        oci::rwxnfs_image(&stripped_rwxnfs(), &dir),
        oci::pause_image(&dir),
        oci::busybox_image(&dir),
    ];
    for sidecar in oci::SIDECARS {
        wanted.push(oci::sidecar_image(
            sidecar.image,
            &upstream::tool(sidecar.tool, sidecar.binary),
            &dir,
        ));
    }
    oci::containerd_disk(&wanted, 8192, &target_tmp().join("kube-disk")).unwrap()
}

/// This build's rwxnfs without its debug information, as the release profile builds it
/// (`strip = "debuginfo"`): the node plugin is a third of the size in every node's memory.
fn stripped_rwxnfs() -> PathBuf {
    let built = Path::new(env!("CARGO_BIN_EXE_rwxnfs"));
    let dir = target_tmp().join("kube-bin");
    std::fs::create_dir_all(&dir).unwrap();
    let stripped = dir.join("rwxnfs");
    let modified = |p: &Path| std::fs::metadata(p).and_then(|m| m.modified()).ok();
    if modified(&stripped) < modified(built) {
        let status = std::process::Command::new("objcopy")
            .arg("--strip-debug")
            .arg(built)
            .arg(dir.join("rwxnfs.tmp"))
            .status()
            .unwrap();
        assert!(status.success(), "objcopy --strip-debug (binutils) failed");
        std::fs::rename(dir.join("rwxnfs.tmp"), &stripped).unwrap();
    }
    stripped
}

/// The HA pair at the shipped address: nfs-a and nfs-b replicate one disk with DRBD
/// (protocol C); the Primary holds the export root, the agent and nfsd, and 192.168.222.25
/// (vmlab::recipes::ha_storage_boot, the same pair as the ha-failover tier).
fn storage_pair(lab: &mut Lab, pki: &Pki) -> (Vm, Vm) {
    let (cert, key) = pki.issue("rwxnfs-agent");
    let boot = recipes::ha_storage_boot(
        &pki.ca_pem,
        &cert,
        &key,
        VIP,
        32,
        &Cluster::pod_routes(NODES.len()),
    );
    let spec = |name: &str, n: u8| VmSpec {
        memory_mb: 512,
        lan: Some(n),
        disks_mb: vec![8192],
        boot: boot.clone(),
        ..VmSpec::new(name)
    };
    (lab.start(spec("nfs-a", 1)), lab.start(spec("nfs-b", 2)))
}

/// First start of the pair: connected, the initial sync skipped (both disks are empty),
/// nfs-a promoted with a fresh XFS.
fn first_promote(a: &mut Vm, b: &mut Vm) {
    a.wait_ready(STEP);
    b.wait_ready(STEP);
    let started = Instant::now();
    while !a.sh("cat /proc/drbd").contains("cs:Connected") {
        assert!(started.elapsed() < STEP, "DRBD did not connect");
        std::thread::sleep(Duration::from_millis(200));
    }
    a.sh("drbdadm -- --clear-bitmap new-current-uuid r0 && drbdadm primary r0 && mkfs.xfs -q /dev/drbd0");
    let promoted = a.run("sh /work/promote", STEP);
    assert_eq!(promoted.rc, 0, "promote on nfs-a:\n{}", promoted.out);
}

fn manifests() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../manifests")
}

#[test]
fn rwxnfs_on_kubernetes_in_the_vm_lab() {
    let mut steps = Steps::new();
    let tmp = target_tmp();
    let disk = images();
    steps.done("images built (rwxnfs, sidecars, pause, busybox) and put in the nodes' disk");

    let mut lab = Lab::new("kubernetes", &tmp, Path::new(env!("CARGO_BIN_EXE_rwxnfs")));
    let pki = Pki::new("rwxnfs-lab-agent-ca");
    let (mut nfs_a, mut nfs_b) = storage_pair(&mut lab, &pki);
    let dir = lab.dir().join("control-plane");
    let mut cluster = Cluster::start(&mut lab, &dir, NODES, 2048, &disk, &[VIP]);
    first_promote(&mut nfs_a, &mut nfs_b);
    steps.done(&format!(
        "cluster Ready: {} nodes; the NFS pair up, nfs-a Primary at {VIP}",
        cluster.nodes.len()
    ));
    println!(
        "{}",
        cluster.plane.kubectl_ok(&["get", "nodes", "-o", "wide"])
    );

    install(&mut cluster, &pki);
    let plane = &cluster.plane;
    let _logs = DriverLogs(plane);
    steps.done("manifests/ applied: controller and node plugin Ready, CSINode on every node");

    let bound = examples(&cluster);
    steps.done(&format!(
        "manifests/examples/ applied: PVC nfs-app Bound in {bound:.1?}"
    ));
    let running = writers_running(&cluster);
    steps.done(&format!(
        "writers Running on {} nodes, {running:.1?} from the claim's binding",
        writer_nodes(plane).len()
    ));
    cpu(&cluster, "once the writers run");
    interleaved(&cluster);
    steps.done("kubectl exec … tail /data/test-file.txt: lines of pods on different nodes");
    fs_group(&cluster);
    steps.done(
        "the writers run as uid 1000 with fsGroup 2000 and own their file: fsGroupPolicy File",
    );

    let running = quota_pod(&cluster, "node-a");
    steps.done(&format!(
        "claim quota (16Mi) Bound, its pod scheduled→Running on node-a in {running:.1?}"
    ));
    quota_and_expansion(&cluster);
    steps.done("a write past 16Mi refused; kubectl patch to 64Mi: df in the running pod shows it, the write passes");
    snapshot_and_restore(&cluster);
    steps.done("VolumeSnapshot of nfs-app ready; a PVC restored from it, mounted by a new pod on node-c, holds the file");
    move_to_third_node(&cluster, &nfs_a);
    steps.done("the quota pod moved node-a → node-c: attached to node-c only, the export admits node-c and no longer node-a");
    let stall = failover(&cluster, &mut nfs_a, &nfs_b);
    steps.done(&format!(
        "nfs-a killed under a writer: nfs-b took over, the writes stalled {stall:.1?}, none lost or failed, no pod restarted"
    ));
    memory(&cluster);
    cpu(&cluster, "at the end");
    steps.done("memory of the node plugin and the controller (VmRSS, and the pods' cgroups)");
    clean_up(&cluster, &nfs_b);
    steps.done("everything deleted: no export on the server, no NFS mount on any node");
    println!(
        "cluster Ready in {:.1?}; whole run {:.1?}",
        cluster.ready_in,
        steps.started.elapsed()
    );
}

/// On a failing step, the logs of every driver container (the sidecars' included) and the
/// cluster's events, printed and kept beside the control plane's logs: the containers' own
/// logs live in the node VMs, which stop with the test.
struct DriverLogs<'a>(&'a ControlPlane);

impl Drop for DriverLogs<'_> {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            return;
        }
        let mut text = String::new();
        for args in [
            &[
                "logs",
                "-n",
                "rwxnfs",
                "-l",
                "app.kubernetes.io/name=rwxnfs",
                "--all-containers",
                "--prefix",
                "--tail=100",
                "--max-log-requests=20",
            ][..],
            &["get", "events", "-A", "--sort-by=.lastTimestamp"][..],
        ] {
            let out = self.0.kubectl(args);
            text.push_str(&format!(
                "--- kubectl {} ---\n{}{}\n",
                args.join(" "),
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ));
        }
        let path = self.0.dir().join("driver-containers.log");
        let _ = std::fs::write(&path, &text);
        eprintln!("{text}--- kept in {} ---", path.display());
    }
}

fn exec(plane: &ControlPlane, pod: &str, script: &str) -> std::process::Output {
    plane.kubectl(&["exec", "-n", "default", pod, "--", "sh", "-c", script])
}

fn exec_ok(plane: &ControlPlane, pod: &str, script: &str) -> String {
    let out = exec(plane, pod, script);
    assert!(
        out.status.success(),
        "kubectl exec {pod} -- {script}: {}{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
        // Why the command died (an exit of 137 is a SIGKILL: the container restarted, or
        // the cgroup's OOM killer): the pod's last state and its events.
        String::from_utf8_lossy(
            &plane
                .kubectl(&["describe", "pod", "-n", "default", pod])
                .stdout
        )
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The kubelet applied the pods' fsGroup: they run as 1000 with 2000 among their groups and
/// the file they write belongs to them.
fn fs_group(cluster: &Cluster) {
    let plane = &cluster.plane;
    let (pod, _) = &writer_pods(plane)[0];
    let id = exec_ok(plane, pod, "id");
    assert!(id.contains("uid=1000") && id.contains("2000"), "id: {id}");
    let ls = exec_ok(
        plane,
        pod,
        "ls -ln /data/test-file.txt; stat -c '%u %g %a' /data",
    );
    let owner: Vec<&str> = ls.split_whitespace().collect();
    assert_eq!((owner[2], owner[3]), ("1000", "2000"), "ls -ln: {ls}");
    println!("{}", ls.trim());
}

const QUOTA_CLAIM: &str = r#"apiVersion: v1
kind: PersistentVolumeClaim
metadata: {name: quota, namespace: default}
spec:
  accessModes: [ReadWriteMany]
  storageClassName: rwxnfs
  resources: {requests: {storage: 16Mi}}
"#;

/// A pod on `node` with the `quota` claim at /data, as the examples' writers run.
fn quota_pod_yaml(node: &str) -> String {
    format!(
        r#"apiVersion: v1
kind: Pod
metadata: {{name: quota-writer, namespace: default}}
spec:
  nodeSelector: {{kubernetes.io/hostname: {node}}}
  terminationGracePeriodSeconds: 1
  securityContext: {{runAsUser: 1000, runAsGroup: 2000, fsGroup: 2000, fsGroupChangePolicy: OnRootMismatch}}
  containers:
    - name: writer
      image: {image}
      command: ["sleep", "3600"]
      volumeMounts: [{{name: data, mountPath: /data}}]
  volumes:
    - name: data
      persistentVolumeClaim: {{claimName: quota}}
"#,
        image = oci::busybox_name()
    )
}

/// Creates the claim (the first time) and the pod on `node`; returns the pod's time from creation to
/// Running (scheduling, attach, stage and publish included).
fn quota_pod(cluster: &Cluster, node: &str) -> Duration {
    let plane = &cluster.plane;
    // Once: applied again it would ask for less than it has after the expansion.
    if !plane
        .kubectl(&["get", "pvc", "quota", "-n", "default"])
        .status
        .success()
    {
        plane.apply(QUOTA_CLAIM);
    }
    plane.wait_jsonpath(
        &["get", "pvc", "quota", "-n", "default"],
        "{.status.phase}",
        STEP,
        |v| v == "Bound",
    );
    let started = Instant::now();
    plane.apply(&quota_pod_yaml(node));
    plane.wait_jsonpath(
        &["get", "pod", "quota-writer", "-n", "default"],
        "{.status.phase}",
        STEP,
        |v| v == "Running",
    );
    started.elapsed()
}

fn quota_and_expansion(cluster: &Cluster) {
    let plane = &cluster.plane;
    let pod = "quota-writer";
    let uid = plane.jsonpath(&["get", "pod", pod, "-n", "default"], "{.metadata.uid}");
    let refused = exec(
        plane,
        pod,
        "dd if=/dev/zero of=/data/big bs=1M count=24 conv=fsync 2>&1",
    );
    let said = String::from_utf8_lossy(&refused.stdout).into_owned();
    assert!(
        !refused.status.success(),
        "24M written into a 16Mi claim: {said}"
    );
    assert!(
        said.contains("quota") || said.contains("space"),
        "the refusal says why: {said}"
    );
    println!("24M into 16Mi: {}", said.lines().last().unwrap_or_default());
    exec_ok(plane, pod, "rm -f /data/big");
    plane.kubectl_ok(&[
        "patch",
        "pvc",
        "quota",
        "-n",
        "default",
        "-p",
        r#"{"spec":{"resources":{"requests":{"storage":"64Mi"}}}}"#,
    ]);
    let resized = plane.wait_jsonpath(
        &["get", "pvc", "quota", "-n", "default"],
        "{.status.capacity.storage}",
        STEP,
        |v| v == "64Mi",
    );
    let started = Instant::now();
    let df = loop {
        let df = exec_ok(plane, pod, "df -kP /data | tail -n 1");
        let total: u64 = df
            .split_whitespace()
            .nth(1)
            .and_then(|t| t.parse().ok())
            .unwrap_or(0);
        if total >= 60 * 1024 {
            break df;
        }
        assert!(started.elapsed() < STEP, "df in the pod still shows {df}");
        std::thread::sleep(Duration::from_secs(1));
    };
    println!(
        "PVC 64Mi in {resized:.1?}; df in the running pod: {}",
        df.trim()
    );
    exec_ok(
        plane,
        pod,
        "dd if=/dev/zero of=/data/big bs=1M count=24 conv=fsync 2>&1",
    );
    assert_eq!(
        plane.jsonpath(&["get", "pod", pod, "-n", "default"], "{.metadata.uid}"),
        uid,
        "the pod was replaced"
    );
    assert_eq!(
        plane.jsonpath(
            &["get", "pod", pod, "-n", "default"],
            "{.status.containerStatuses[0].restartCount}"
        ),
        "0"
    );
}

fn snapshot_and_restore(cluster: &Cluster) {
    let plane = &cluster.plane;
    plane.apply(
        r#"apiVersion: snapshot.storage.k8s.io/v1
kind: VolumeSnapshot
metadata: {name: nfs-app-snap, namespace: default}
spec:
  volumeSnapshotClassName: rwxnfs
  source: {persistentVolumeClaimName: nfs-app}
"#,
    );
    plane.wait_jsonpath(
        &["get", "volumesnapshot", "nfs-app-snap", "-n", "default"],
        "{.status.readyToUse}",
        STEP,
        |v| v == "true",
    );
    plane.apply(&format!(
        r#"apiVersion: v1
kind: PersistentVolumeClaim
metadata: {{name: nfs-app-restored, namespace: default}}
spec:
  accessModes: [ReadWriteMany]
  storageClassName: rwxnfs
  resources: {{requests: {{storage: 4Gi}}}}
  dataSource: {{apiGroup: snapshot.storage.k8s.io, kind: VolumeSnapshot, name: nfs-app-snap}}
---
apiVersion: v1
kind: Pod
metadata: {{name: restored-reader, namespace: default}}
spec:
  nodeSelector: {{kubernetes.io/hostname: node-c}}
  terminationGracePeriodSeconds: 1
  securityContext: {{runAsUser: 1000, runAsGroup: 2000, fsGroup: 2000, fsGroupChangePolicy: OnRootMismatch}}
  containers:
    - name: reader
      image: {image}
      command: ["sleep", "3600"]
      volumeMounts: [{{name: data, mountPath: /data}}]
  volumes:
    - name: data
      persistentVolumeClaim: {{claimName: nfs-app-restored}}
"#,
        image = oci::busybox_name()
    ));
    plane.wait_jsonpath(
        &["get", "pod", "restored-reader", "-n", "default"],
        "{.status.phase}",
        STEP,
        |v| v == "Running",
    );
    let lines = exec_ok(plane, "restored-reader", "grep -c . /data/test-file.txt");
    let lines: u64 = lines.trim().parse().unwrap_or(0);
    assert!(lines > 0, "the restored volume's file is empty");
    println!("the restored file has {lines} lines");
}

/// The PV of claim `claim`.
fn volume_of(plane: &ControlPlane, claim: &str) -> String {
    plane.jsonpath(
        &["get", "pvc", claim, "-n", "default"],
        "{.spec.volumeName}",
    )
}

/// The nodes a PV is attached to, by its VolumeAttachments.
fn attached_to(plane: &ControlPlane, pv: &str) -> std::collections::BTreeSet<String> {
    plane
        .jsonpath(
            &["get", "volumeattachments"],
            "{range .items[*]}{.spec.source.persistentVolumeName} {.spec.nodeName} {.status.attached}{\"\\n\"}{end}",
        )
        .lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (f.len() == 3 && f[0] == pv && f[2] == "true").then(|| f[1].to_string())
        })
        .collect()
}

/// The clients the NFS server's export table admits for `pv`'s export.
fn export_clients(nfs: &Vm, pv: &str) -> String {
    nfs.sh(&format!("grep '{pv}' /var/lib/nfs/etab || true"))
}

fn move_to_third_node(cluster: &Cluster, nfs: &Vm) {
    let plane = &cluster.plane;
    let pv = volume_of(plane, "quota");
    assert!(export_clients(nfs, &pv).contains("10.99.0.11"));
    plane.kubectl_ok(&[
        "delete",
        "pod",
        "quota-writer",
        "-n",
        "default",
        "--wait=true",
    ]);
    let running = quota_pod(cluster, "node-c");
    let started = Instant::now();
    loop {
        let nodes = attached_to(plane, &pv);
        let clients = export_clients(nfs, &pv);
        let only_c = nodes.len() == 1 && nodes.contains("node-c");
        if only_c && clients.contains("10.99.0.13") && !clients.contains("10.99.0.11") {
            println!("on node-c in {running:.1?}; the export: {}", clients.trim());
            break;
        }
        assert!(
            started.elapsed() < STEP,
            "after the move: attached to {nodes:?}, the export admits {clients}"
        );
        std::thread::sleep(Duration::from_secs(1));
    }
    let mounts = cluster
        .node("node-a")
        .vm
        .sh(&format!("grep -c '{pv}' /proc/mounts || true"));
    assert_eq!(mounts.trim(), "0", "node-a still mounts {pv}");
    let denied = exec_ok(plane, "quota-writer", "ls /data");
    assert!(
        denied.contains("big"),
        "the data moved with the claim: {denied}"
    );
}

/// A writer pod appending a numbered line every 200 ms, each synced, and printing what was
/// acknowledged (with the node's uptime); it idles when /data/stop-ha appears.
const HA_WRITER: &str = r#"i=0
while [ $i -lt 3000 ] && [ ! -e /data/stop-ha ]; do
  if echo "line $i" >> /data/ha.txt && sync /data/ha.txt; then
    echo "ack $i $(cut -d' ' -f1 /proc/uptime)"
  else
    echo "FAIL $i $(cut -d' ' -f1 /proc/uptime)"
  fi
  i=$((i+1))
  usleep 200000
done
echo done
sleep 3600
"#;

/// (line, uptime, acknowledged) from the writer's log.
fn ha_acks(plane: &ControlPlane) -> (Vec<(u32, f64, bool)>, bool) {
    let log = plane
        .kubectl(&["logs", "-n", "default", "ha-writer"])
        .stdout;
    let log = String::from_utf8_lossy(&log);
    let lines = log
        .lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (f.len() == 3).then(|| Some((f[1].parse().ok()?, f[2].parse().ok()?, f[0] == "ack")))?
        })
        .collect();
    (lines, log.lines().any(|l| l == "done"))
}

/// Kills the Primary while a pod writes synced lines and the examples' writers append;
/// nfs-b runs the promoter. Returns the longest gap between acknowledged writes.
fn failover(cluster: &Cluster, a: &mut Vm, b: &Vm) -> Duration {
    let plane = &cluster.plane;
    let restarts = |plane: &ControlPlane| {
        plane.jsonpath(
            &["get", "pods", "-n", "default"],
            "{range .items[*]}{.metadata.name}={.status.containerStatuses[0].restartCount} {end}",
        )
    };
    plane.apply(&format!(
        r#"apiVersion: v1
kind: Pod
metadata: {{name: ha-writer, namespace: default}}
spec:
  nodeSelector: {{kubernetes.io/hostname: node-b}}
  terminationGracePeriodSeconds: 1
  securityContext: {{runAsUser: 1000, runAsGroup: 2000, fsGroup: 2000, fsGroupChangePolicy: OnRootMismatch}}
  containers:
    - name: writer
      image: {image}
      command: ["sh", "-c", {script:?}]
      volumeMounts: [{{name: data, mountPath: /data}}]
  volumes:
    - name: data
      persistentVolumeClaim: {{claimName: nfs-app}}
"#,
        image = oci::busybox_name(),
        script = HA_WRITER,
    ));
    let wait = |what: &str, limit: Duration, done: &dyn Fn() -> bool| {
        let started = Instant::now();
        while !done() {
            assert!(started.elapsed() < limit, "{what}: not within {limit:?}");
            std::thread::sleep(Duration::from_millis(500));
        }
    };
    wait("20 synced lines", STEP, &|| ha_acks(plane).0.len() >= 20);
    let before = restarts(plane);
    let acked_before = ha_acks(plane).0.len();
    a.kill();
    let takeover = Instant::now();
    let promoted = b.run("sh /work/promote", STEP);
    assert_eq!(promoted.rc, 0, "promote on nfs-b:\n{}", promoted.out);
    println!("nfs-b promoted in {:.1?}", takeover.elapsed());
    wait("the writer carries on through nfs-b", STEP, &|| {
        ha_acks(plane).0.len() >= acked_before + 20
    });
    println!(
        "20 more lines acknowledged {:.1?} after the kill",
        takeover.elapsed()
    );
    exec_ok(plane, "ha-writer", "touch /data/stop-ha");
    wait("the writer stops", Duration::from_secs(60), &|| {
        ha_acks(plane).1
    });
    let (lines, _) = ha_acks(plane);
    let failed: Vec<_> = lines.iter().filter(|(_, _, ok)| !ok).collect();
    assert!(
        failed.is_empty(),
        "writes failed through the failover: {failed:?}"
    );
    let file = exec_ok(plane, "ha-writer", "cat /data/ha.txt");
    let kept: std::collections::BTreeSet<u32> = file
        .lines()
        .filter_map(|l| l.strip_prefix("line ")?.parse().ok())
        .collect();
    let lost: Vec<u32> = lines
        .iter()
        .map(|(i, _, _)| *i)
        .filter(|i| !kept.contains(i))
        .collect();
    assert!(lost.is_empty(), "acknowledged lines lost: {lost:?}");
    let stall = lines
        .windows(2)
        .map(|w| w[1].1 - w[0].1)
        .fold(0.0_f64, f64::max);
    let logs = plane.kubectl_ok(&["logs", "-n", "default", "-l", "app=nfs-app", "--tail=50"]);
    assert!(
        !logs.to_lowercase().contains("stale") && !logs.contains("rror"),
        "the examples' writers reported: {logs}"
    );
    assert_eq!(
        restarts(plane).replace("ha-writer=0 ", ""),
        before.replace("ha-writer=0 ", "")
    );
    println!(
        "{} lines acknowledged, all kept; longest gap {stall:.1} s; restarts: {}",
        lines.len(),
        restarts(plane)
    );
    Duration::from_secs_f64(stall)
}

/// The resident memory of every rwxnfs process on the nodes, as /proc counts it, and each
/// driver pod's memory as its cgroup counts it (what the kubelet reports: the containers'
/// anonymous memory and page cache, the sidecars included in the controller's pod).
/// Where the nodes' CPU went so far: each node's uptime and idle time, and its processes by CPU
/// time (user + system), summed by name. The nodes are emulated; this is what says whether a
/// slow step waited on the driver, on the kubelet and containerd, or on the machine.
fn cpu(cluster: &Cluster, when: &str) {
    println!("CPU time {when}:");
    // The host: the VMs (one QEMU each) beside the control plane's processes.
    if let Ok(ps) = std::process::Command::new("ps")
        .args(["-e", "-o", "cputime=,comm=", "--sort=-cputime"])
        .output()
    {
        let top: Vec<String> = String::from_utf8_lossy(&ps.stdout)
            .lines()
            .take(10)
            .map(|l| l.trim().to_string())
            .collect();
        println!("  host: {}", top.join("\n    "));
    }
    for node in &cluster.nodes {
        let out = node.vm.run(
            r#"hz=$(getconf CLK_TCK 2>/dev/null || echo 100)
read -r up idle < /proc/uptime
echo "up ${up%.*} s, idle ${idle%.*} s"
for f in /proc/[0-9]*/stat; do
  read -r line < "$f" 2>/dev/null || continue
  comm=${line#*(}; comm=${comm%%)*}
  set -- ${line##*) }
  echo "$(( ${12} + ${13} )) $comm"
done | awk -v hz="$hz" '{ t[$2] += $1 } END { for (c in t) printf "%7.1f s %s\n", t[c] / hz, c }' | sort -rn | head -8"#,
            Duration::from_secs(60),
        );
        println!(
            "  {}: {}",
            node.name,
            out.out.trim().replace('\n', "\n    ")
        );
    }
    kubelet_profile(cluster);
}

/// A 20 s CPU profile of the first node's kubelet (its pprof handler, through the API server's
/// node proxy), its top functions printed with `go tool pprof`: the kubelet is the nodes'
/// largest consumer of CPU under emulation.
fn kubelet_profile(cluster: &Cluster) {
    let node = &cluster.nodes[0].name;
    let out = cluster.plane.kubectl(&[
        "get",
        "--raw",
        &format!("/api/v1/nodes/{node}/proxy/debug/pprof/profile?seconds=20"),
    ]);
    if !out.status.success() || out.stdout.is_empty() {
        println!(
            "  {node}'s kubelet profile: none ({})",
            String::from_utf8_lossy(&out.stderr).trim()
        );
        return;
    }
    let file = cluster.plane.dir().join(format!("kubelet-{node}.pprof"));
    std::fs::write(&file, &out.stdout).unwrap();
    let go = ["go", "/usr/local/go/bin/go"].into_iter().find(|go| {
        std::process::Command::new(go)
            .arg("version")
            .output()
            .is_ok()
    });
    let top = go.and_then(|go| {
        std::process::Command::new(go)
            .args(["tool", "pprof", "-top", "-nodecount=25"])
            .arg(upstream::tool("kubernetes", "kubelet"))
            .arg(&file)
            .output()
            .ok()
    });
    match top {
        Some(top) if top.status.success() => println!(
            "  {node}'s kubelet, 20 s profile (kept in {}):\n{}",
            file.display(),
            String::from_utf8_lossy(&top.stdout)
        ),
        _ => println!("  {node}'s kubelet profile kept in {}", file.display()),
    }
}

fn memory(cluster: &Cluster) {
    for node in &cluster.nodes {
        let out = node.vm.sh(r#"for p in $(pidof rwxnfs); do
  echo "$(tr '\0' ' ' < /proc/$p/cmdline | cut -d' ' -f2) $(grep VmRSS /proc/$p/status | tr -s ' ')"
done"#);
        for line in out.lines() {
            println!("{}: {line}", node.name);
        }
    }
    let pods = cluster.plane.jsonpath(
        &["get", "pods", "-n", "rwxnfs"],
        "{range .items[*]}{.metadata.name} {.spec.nodeName} {.metadata.uid}{\"\\n\"}{end}",
    );
    for line in pods.lines() {
        let f: Vec<&str> = line.split_whitespace().collect();
        let [pod, node, uid] = f[..] else { continue };
        let Some(node) = cluster.nodes.iter().find(|n| n.name == node) else {
            continue;
        };
        let cgroup = node.vm.run(
            &format!(
                "cat /sys/fs/cgroup/kubepods/pod{uid}/memory.current \
                 /sys/fs/cgroup/kubepods/*/pod{uid}/memory.current 2>/dev/null"
            ),
            Duration::from_secs(30),
        );
        let bytes: u64 = cgroup.out.trim().parse().unwrap_or(0);
        println!(
            "{pod} on {}: cgroup memory.current {:.1} MiB",
            node.name,
            bytes as f64 / 1048576.0
        );
    }
}

fn clean_up(cluster: &Cluster, nfs: &Vm) {
    let plane = &cluster.plane;
    // As a user would, a group at a time: the workloads, then the snapshot, then the claims
    // (which wait, protected, until no pod uses them). Together, so that the pods' grace
    // periods run at once rather than one after another.
    for group in [
        &[
            "deployment/nfs-app",
            "pod/ha-writer",
            "pod/quota-writer",
            "pod/restored-reader",
        ][..],
        &["volumesnapshot/nfs-app-snap"][..],
        &["pvc/nfs-app-restored", "pvc/quota", "pvc/nfs-app"][..],
    ] {
        let mut args = vec!["delete", "-n", "default", "--wait=true", "--timeout=300s"];
        args.extend_from_slice(group);
        plane.kubectl_ok(&args);
    }
    plane.wait_jsonpath(
        &["get", "pv"],
        "{.items[*].metadata.name}",
        STEP,
        str::is_empty,
    );
    plane.wait_jsonpath(
        &["get", "volumesnapshotcontents"],
        "{.items[*].metadata.name}",
        STEP,
        str::is_empty,
    );
    let started = Instant::now();
    loop {
        let etab = nfs.sh("grep -c volumes/ /var/lib/nfs/etab || true");
        if etab.trim() == "0" {
            break;
        }
        assert!(
            started.elapsed() < STEP,
            "exports left on the server: {etab}"
        );
        std::thread::sleep(Duration::from_secs(1));
    }
    for node in &cluster.nodes {
        let mounts = node.vm.sh("grep -c ' nfs' /proc/mounts || true");
        assert_eq!(mounts.trim(), "0", "{} still has NFS mounts", node.name);
    }
}

/// The examples as users apply them, but for the writers' image (busybox, built here: no
/// registry) and their interval (5 s, not 30 s, so the test need not wait).
fn examples(cluster: &Cluster) -> Duration {
    let plane = &cluster.plane;
    let examples = manifests().join("examples");
    let kustomization = std::fs::read_to_string(examples.join("kustomization.yaml")).unwrap();
    let mut yaml = String::new();
    for line in kustomization.lines() {
        if let Some(file) = line.trim().strip_prefix("- ") {
            yaml.push_str("---\n");
            yaml.push_str(&std::fs::read_to_string(examples.join(file)).unwrap());
        }
    }
    assert!(yaml.contains("docker.io/library/alpine:3.20") && yaml.contains("sleep 30;"));
    let yaml = yaml
        .replace("docker.io/library/alpine:3.20", &oci::busybox_name())
        // A line every 5 s rather than 30 s, so the interleaving shows sooner; not every
        // second, which forks three processes a second on each emulated node.
        .replace("sleep 30;", "sleep 5;");
    let started = Instant::now();
    plane.apply(&yaml);
    plane.wait_jsonpath(
        &["get", "pvc", "nfs-app", "-n", "default"],
        "{.status.phase}",
        STEP,
        |v| v == "Bound",
    );
    started.elapsed()
}

fn writer_pods(plane: &ControlPlane) -> Vec<(String, String)> {
    let out = plane.jsonpath(
        &["get", "pods", "-n", "default", "-l", "app=nfs-app"],
        "{range .items[*]}{.metadata.name} {.spec.nodeName}{\"\\n\"}{end}",
    );
    out.lines()
        .filter_map(|l| l.split_once(' '))
        .map(|(pod, node)| (pod.to_string(), node.to_string()))
        .collect()
}

fn writer_nodes(plane: &ControlPlane) -> std::collections::BTreeSet<String> {
    writer_pods(plane)
        .into_iter()
        .map(|(_, node)| node)
        .collect()
}

/// Waits for the three writers to be available; returns how long it took.
fn writers_running(cluster: &Cluster) -> Duration {
    let plane = &cluster.plane;
    let started = Instant::now();
    let out = plane.kubectl(&[
        "rollout",
        "status",
        "-n",
        "default",
        "deployment/nfs-app",
        "--timeout=600s",
    ]);
    println!(
        "{}",
        plane.kubectl_ok(&["get", "pods", "-n", "default", "-o", "wide"])
    );
    assert!(
        out.status.success(),
        "the writers did not become available: {}\n{}",
        String::from_utf8_lossy(&out.stderr),
        plane.kubectl_ok(&["describe", "pods", "-n", "default", "-l", "app=nfs-app"])
    );
    assert!(
        writer_nodes(plane).len() >= 2,
        "the writers are not spread: {:?}",
        writer_pods(plane)
    );
    // Where the time went, pod by pod: scheduling, the attach (the attacher and
    // ControllerPublishVolume), the mount (stage and publish), the container's start.
    println!(
        "{}",
        plane.kubectl_ok(&[
            "get",
            "events",
            "-n",
            "default",
            "--sort-by=.firstTimestamp",
            "-o",
            "custom-columns=FIRST:.firstTimestamp,LAST:.lastTimestamp,COUNT:.count,REASON:.reason,OBJECT:.involvedObject.name,MESSAGE:.message",
        ])
    );
    started.elapsed()
}

/// `kubectl exec` into one writer: the file holds lines of writers on different nodes.
fn interleaved(cluster: &Cluster) {
    let plane = &cluster.plane;
    let pods = writer_pods(plane);
    let started = Instant::now();
    loop {
        let tail = plane.kubectl_ok(&[
            "exec",
            "-n",
            "default",
            &pods[0].0,
            "--",
            "tail",
            "-n",
            "12",
            "/data/test-file.txt",
        ]);
        let writers: std::collections::BTreeSet<&str> = tail
            .lines()
            .filter_map(|l| l.split_whitespace().next())
            .collect();
        let nodes: std::collections::BTreeSet<&str> = pods
            .iter()
            .filter(|(pod, _)| writers.contains(pod.as_str()))
            .map(|(_, node)| node.as_str())
            .collect();
        if nodes.len() >= 2 {
            println!("tail /data/test-file.txt:\n{tail}");
            return;
        }
        assert!(
            started.elapsed() < STEP,
            "the file does not show writers of two nodes:\n{tail}"
        );
        std::thread::sleep(Duration::from_secs(2));
    }
}

/// `kubectl apply -k manifests/` after the Secret the README tells users to create, and
/// waits for the driver's pods and its registration on every node.
fn install(cluster: &mut Cluster, pki: &Pki) {
    let plane = &cluster.plane;
    let m = |p: &str| manifests().join(p).display().to_string();
    // The cluster's snapshot support, which a cluster brings (not the driver): the CRDs and
    // the snapshot controller of the snapshotter's release.
    let crds = upstream::tool("csi-snapshotter", "csi-snapshotter")
        .parent()
        .unwrap()
        .parent()
        .unwrap()
        .join("crd");
    plane.kubectl_ok(&["apply", "-f", crds.to_str().unwrap()]);
    plane.kubectl_ok(&["apply", "-f", &m("base/namespace.yaml")]);
    let (cert, key) = pki.issue("rwxnfs-controller");
    let tls = plane.dir().join("agent-tls");
    std::fs::create_dir_all(&tls).unwrap();
    for (name, text) in [
        ("ca.crt", &pki.ca_pem),
        ("tls.crt", &cert),
        ("tls.key", &key),
    ] {
        std::fs::write(tls.join(name), text).unwrap();
    }
    let file = |n: &str| format!("--from-file={n}={}", tls.join(n).display());
    plane.kubectl_ok(&[
        "create",
        "secret",
        "generic",
        "rwxnfs-agent-tls",
        "-n",
        "rwxnfs",
        &file("ca.crt"),
        &file("tls.crt"),
        &file("tls.key"),
    ]);
    plane.kubectl_ok(&[
        "wait",
        "--for=condition=established",
        "--timeout=60s",
        "crd/volumesnapshotclasses.snapshot.storage.k8s.io",
        "crd/volumesnapshots.snapshot.storage.k8s.io",
        "crd/volumesnapshotcontents.snapshot.storage.k8s.io",
    ]);
    let mut controller = plane.command(upstream::tool("csi-snapshotter", "snapshot-controller"));
    controller.args([
        format!("--kubeconfig={}", plane.kubeconfig.display()),
        "--leader-election=false".into(),
    ]);
    cluster.plane.spawn("snapshot-controller", &mut controller);
    let plane = &cluster.plane;
    // manifests/ as `kubectl apply -k` would apply it, with one change: one controller replica,
    // not two. The nodes are emulated (five VMs on the host's two cores); the second replica's
    // five containers starting beside the first on another node starved both nodes until the
    // sidecars' connections to the CSI socket timed out ("dial unix /csi/csi.sock: i/o
    // timeout") and they exited in a loop, and the rollout did not finish in 10 minutes.
    let rendered = plane.kubectl_ok(&["kustomize", &m("")]);
    assert_eq!(
        rendered.matches("replicas: 2").count(),
        1,
        "manifests/: one Deployment of two replicas"
    );
    plane.apply(&rendered.replace("replicas: 2", "replicas: 1"));
    let started = Instant::now();
    let waited = plane.kubectl(&[
        "rollout",
        "status",
        "-n",
        "rwxnfs",
        "daemonset/rwxnfs-node",
        "--timeout=600s",
    ]);
    println!(
        "node plugin: {} in {:?}",
        String::from_utf8_lossy(&waited.stdout).trim(),
        started.elapsed()
    );
    let waited = plane.kubectl(&[
        "rollout",
        "status",
        "-n",
        "rwxnfs",
        "deployment/rwxnfs-controller",
        "--timeout=600s",
    ]);
    println!(
        "controller: {} in {:?}",
        String::from_utf8_lossy(&waited.stdout).trim(),
        started.elapsed()
    );
    println!(
        "{}",
        plane.kubectl_ok(&["get", "pods", "-n", "rwxnfs", "-o", "wide"])
    );
    if !waited.status.success() {
        cpu(cluster, "when the driver did not become Ready");
    }
    assert!(waited.status.success(), "the driver did not become Ready");
    for node in NODES {
        plane.wait_jsonpath(
            &["get", "csinode", node],
            "{.spec.drivers[*].name}",
            STEP,
            |v| v.split_whitespace().any(|d| d == "rwxnfs.csi.io"),
        );
    }
    // The controller's start-up mesh self-check read its own Pod and Namespace from the API
    // server and found nothing to complain about (no mesh in this cluster).
    let logs = plane.kubectl_ok(&[
        "logs",
        "-n",
        "rwxnfs",
        "deployment/rwxnfs-controller",
        "-c",
        "rwxnfs",
    ]);
    let verdict = logs
        .lines()
        .find(|l| l.contains("self-check:"))
        .unwrap_or_else(|| panic!("the controller logged no self-check:\n{logs}"));
    assert!(
        verdict.contains("leave NFS and agent traffic alone"),
        "the self-check: {verdict}"
    );
    println!("controller self-check: {verdict}");
}
