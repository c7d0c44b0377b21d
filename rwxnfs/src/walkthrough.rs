//! `rwxnfs walkthrough`: what rwxnfs is for, end to end, with real NFS, on this machine.
//!
//! This machine's kernel may have no NFS, so four small VMs (Debian's kernel under QEMU, the
//! image built from Debian packages by `tests/vm/build-image`) stand for an NFS server and
//! three Kubernetes nodes on a private network. The server runs kernel nfsd on XFS with
//! project quotas, `rwxnfs agent` and `rwxnfs controller`; each node runs `rwxnfs node`. This
//! process plays the kubelet and the CSI sidecars: it makes the CSI calls a cluster would for
//! a 4 GiB ReadWriteMany claim `nfs-app` used by pods on node-a and node-b.
//!
//! Every step prints one line with its time, and what it shows; a failed step prints why and
//! where the logs are, and the command exits 1. Everything it starts is stopped at the end,
//! whatever happens: the VMs are killed by PID when the lab drops.

use std::{
    path::PathBuf,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use anyhow::{Context, bail};
use rwxnfs_proto::csi;
use rwxnfs_vmlab::{Csi, Lab, Mounted, Vm, VmSpec, recipes};

use crate::cli::WalkthroughArgs;

const GIB: i64 = 1 << 30;
const NODES: [(&str, &str); 3] = [
    ("node-a", "10.99.0.11"),
    ("node-b", "10.99.0.12"),
    ("node-c", "10.99.0.13"),
];
const STEPS: usize = 11;

/// The steps so far: their names and times, and the one running now (read when a step panics).
#[derive(Default)]
struct Progress {
    done: Vec<(String, Duration)>,
    current: String,
}

struct Walk {
    progress: Arc<Mutex<Progress>>,
    started: Instant,
}

impl Walk {
    fn begin(&self, name: &str) -> Instant {
        let mut p = self.progress.lock().expect("progress");
        p.current = name.to_owned();
        println!("[{:>2}/{STEPS}] {name}", p.done.len() + 1);
        Instant::now()
    }

    fn end(&self, started: Instant) {
        let mut p = self.progress.lock().expect("progress");
        let name = std::mem::take(&mut p.current);
        let took = started.elapsed();
        println!("        ok, {:.1} s", took.as_secs_f64());
        p.done.push((name, took));
    }
}

fn show(line: impl AsRef<str>) {
    for l in line.as_ref().lines() {
        println!("        | {l}");
    }
}

/// A command in a VM that must succeed.
fn sh(vm: &Vm, script: &str) -> anyhow::Result<String> {
    let out = vm.run(script, Duration::from_secs(120));
    if out.rc != 0 {
        bail!(
            "{}: `{script}` exited {}: {}",
            vm.name,
            out.rc,
            out.out.trim()
        );
    }
    Ok(out.out)
}

pub(crate) async fn run(args: WalkthroughArgs) -> anyhow::Result<()> {
    let exe = std::env::current_exe().context("where is this binary")?;
    let state = match args.state_dir {
        Some(dir) => dir,
        None => default_state_dir(&exe),
    };
    let progress = Arc::new(Mutex::new(Progress::default()));
    let walk = Walk {
        progress: progress.clone(),
        started: Instant::now(),
    };
    let logs = state.join("vm").join("walkthrough");
    println!(
        "rwxnfs walkthrough: a 4 GiB ReadWriteMany claim on a per-claim NFS export, used from two nodes"
    );
    println!(
        "        (VMs under QEMU stand for the NFS server and three Kubernetes nodes; logs: {})",
        logs.display()
    );
    // The lab's harness reports a broken VM by panicking; the task turns that into this
    // step's failure, after the lab has dropped (and so killed every VM) on the way out.
    let task = tokio::spawn(async move { steps(walk, state, exe, args.tail_seconds).await });
    let outcome = match task.await {
        Ok(result) => result,
        Err(e) if e.is_panic() => {
            let payload = e.into_panic();
            let why = payload
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| payload.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_else(|| "a panic".into());
            Err(anyhow::anyhow!(why))
        }
        Err(e) => Err(e.into()),
    };
    let p = progress.lock().expect("progress");
    match outcome {
        Ok(total) => {
            println!("\nsummary");
            let width = p.done.iter().map(|(n, _)| n.len()).max().unwrap_or(5);
            for (name, took) in &p.done {
                println!("  {name:<width$}  {:>6.1} s", took.as_secs_f64());
            }
            println!("  {:<width$}  {:>6.1} s", "total", total.as_secs_f64());
            Ok(())
        }
        Err(e) => {
            let step = if p.current.is_empty() {
                "after the last step"
            } else {
                &p.current
            };
            bail!(
                "step {} ({step}) failed: {e:#}\n        logs of every VM: {}",
                p.done.len() + 1,
                logs.display()
            )
        }
    }
}

/// `target/tmp` beside a binary built in this checkout (the tests' VM image is reused), or
/// /var/tmp/rwxnfs.
fn default_state_dir(exe: &std::path::Path) -> PathBuf {
    exe.parent()
        .and_then(|profile| profile.parent())
        .filter(|target| target.file_name().is_some_and(|n| n == "target"))
        .map_or_else(|| PathBuf::from("/var/tmp/rwxnfs"), |t| t.join("tmp"))
}

async fn steps(walk: Walk, state: PathBuf, exe: PathBuf, tail: u64) -> anyhow::Result<Duration> {
    let t = walk.begin("Build the VM image from Debian packages (cached after the first run)");
    let mut lab = Lab::new("walkthrough", &state, &exe);
    walk.end(t);

    let t = walk
        .begin("Boot the NFS server (kernel nfsd, XFS quotas, agent, controller) and three nodes");
    let mut server = lab.start(VmSpec {
        memory_mb: 448,
        lan: Some(1),
        forwards: vec![7001],
        disks_mb: vec![16 << 10],
        boot: recipes::nfs_server_boot(&NODES),
        ..VmSpec::new("nfs-server")
    });
    let mut nodes: Vec<Vm> = NODES
        .iter()
        .map(|(name, address)| {
            let address: std::net::Ipv4Addr = address.parse().expect("NODES holds IPv4 addresses");
            lab.start(VmSpec {
                lan: Some(address.octets()[3]),
                forwards: vec![7000],
                boot: recipes::node_boot(name),
                ..VmSpec::new(name)
            })
        })
        .collect();
    let limit = Duration::from_secs(240);
    server.wait_ready(limit);
    for node in &mut nodes {
        node.wait_ready(limit);
    }
    let mut csi = vec![Csi::connect(server.port(7001), nodes[0].port(7000), NODES[0].0).await?];
    for (node, (name, _)) in nodes.iter().zip(NODES).skip(1) {
        csi.push(csi[0].with_node(node.port(7000), name).await?);
    }
    show(format!(
        "nfs-server 10.99.0.1; {}",
        NODES
            .iter()
            .map(|(n, a)| format!("{n} {a}"))
            .collect::<Vec<_>>()
            .join(", ")
    ));
    walk.end(t);

    let t = walk
        .begin("CreateVolume nfs-app: 4 GiB, ReadWriteMany (a per-claim export with its quota)");
    let volume = csi[0]
        .create("nfs-app", &[("squash", "none")], 4 * GIB)
        .await?;
    let share = volume
        .volume_context
        .get("share")
        .cloned()
        .unwrap_or_default();
    show(format!(
        "volume {}  capacity {} GiB",
        volume.volume_id,
        volume.capacity_bytes / GIB
    ));
    show(format!("export 10.99.0.1:{share}"));
    let quota = sh(&server, "xfs_quota -x -c 'report -p -h -N' /srv/exports")?;
    // `#<project> <used> <soft> <hard> ...`: the project is the export id.
    if let Some(line) = quota
        .lines()
        .find(|l| l.starts_with('#') && !l.starts_with("#0 "))
    {
        let f: Vec<&str> = line.split_whitespace().collect();
        if let [project, used, _soft, hard, ..] = f[..] {
            show(format!(
                "XFS project quota {project}: {used} used of a hard limit of {hard}"
            ));
        }
    }
    walk.end(t);

    let t = walk
        .begin("ControllerPublishVolume to node-a and node-b: the export admits exactly those two");
    csi[0].attach(&volume.volume_id).await?;
    csi[1].attach(&volume.volume_id).await?;
    let clients = sh(
        &server,
        &format!(
            "exportfs -v | tr -d '\\n' | tr '\\t' ' ' | tr -s ' ' | sed 's#/srv/#\\n/srv/#g' | grep '^{share} '"
        ),
    )?;
    show(clients.trim());
    for (_, address) in &NODES[..2] {
        if !clients.contains(address) {
            bail!("the export does not admit {address}: {clients}");
        }
    }
    if clients.contains(NODES[2].1) {
        bail!("the export admits node-c, which it was not published to: {clients}");
    }
    walk.end(t);

    let t =
        walk.begin("NodeStageVolume + NodePublishVolume on node-a and node-b (kernel NFS mounts)");
    let mut mounted = Vec::new();
    for i in 0..2 {
        let staging = "/var/lib/kubelet/plugins/rwxnfs.csi.io/nfs-app/globalmount".to_string();
        csi[i].stage(&volume, &staging).await?;
        let m = Mounted {
            id: volume.volume_id.clone(),
            context: volume.volume_context.clone(),
            staging,
            target: "/var/lib/kubelet/pods/app/volumes/nfs-app".into(),
        };
        csi[i].publish(&m, &m.target, false).await?;
        show(format!(
            "{}: {}",
            NODES[i].0,
            sh(&nodes[i], &format!("grep ' {} ' /proc/mounts", m.staging))?.trim()
        ));
        show(format!(
            "{}: {}",
            NODES[i].0,
            sh(&nodes[i], &format!("df -h {} | tail -n 1", m.target))?.trim()
        ));
        mounted.push(m);
    }
    walk.end(t);

    let t = walk.begin("A writer on each node appends its hostname and the date to test-file.txt");
    for (i, node) in nodes.iter().take(2).enumerate() {
        let file = format!("{}/test-file.txt", mounted[i].target);
        // Bounded: at most 120 lines, or until the stop file appears.
        sh(
            node,
            &format!(
                "cat > /work/writer.sh <<'END'\ni=0\nwhile [ $i -lt 120 ] && [ ! -e /work/stop ]; do\n  echo \"$(hostname) $(date -u '+%F %T')\" >> {file}\n  i=$((i+1))\n  sleep 2\ndone\nEND\nsetsid sh /work/writer.sh > /work/writer.log 2>&1 &"
            ),
        )?;
    }
    let file = format!("{}/test-file.txt", mounted[0].target);
    let mut seen = 0;
    let until = Instant::now() + Duration::from_secs(tail);
    show(format!(
        "tail -f test-file.txt (read on node-a, for {tail} s):"
    ));
    while Instant::now() < until {
        let text = nodes[0]
            .run(&format!("cat {file} 2>/dev/null"), Duration::from_secs(30))
            .out;
        for line in text.lines().skip(seen) {
            show(format!("  {line}"));
            seen += 1;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    // Under emulation an append can take seconds (the second writer's open recalls the first
    // one's delegation): wait a bounded while for a line from each node before calling it a
    // failure.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let text = sh(&nodes[0], &format!("cat {file}"))?;
        let missing = NODES[..2]
            .iter()
            .find(|(name, _)| !text.lines().any(|l| l.starts_with(name)));
        match missing {
            None => break,
            Some((name, _)) if Instant::now() >= deadline => {
                bail!("no line from {name} in test-file.txt after 30 s more:\n{text}");
            }
            Some(_) => tokio::time::sleep(Duration::from_secs(1)).await,
        }
    }
    walk.end(t);

    let t = walk.begin("node-c, to which nfs-app is not published, is refused");
    match csi[2]
        .stage(
            &volume,
            "/var/lib/kubelet/plugins/rwxnfs.csi.io/nfs-app/globalmount",
        )
        .await
    {
        Ok(()) => bail!("node-c mounted nfs-app without being published to"),
        Err(status) => show(format!(
            "NodeStageVolume on node-c: {:?}: {}",
            status.code(),
            status.message()
        )),
    }
    walk.end(t);

    let t = walk.begin("ControllerExpandVolume nfs-app to 8 GiB, online (no node step)");
    let expanded = csi[0]
        .controller
        .controller_expand_volume(csi::ControllerExpandVolumeRequest {
            volume_id: volume.volume_id.clone(),
            capacity_range: Some(csi::CapacityRange {
                required_bytes: 8 * GIB,
                limit_bytes: 0,
            }),
            ..Default::default()
        })
        .await?
        .into_inner();
    show(format!(
        "capacity {} GiB, node expansion required: {}",
        expanded.capacity_bytes / GIB,
        expanded.node_expansion_required
    ));
    show(format!(
        "node-a: {}",
        sh(
            &nodes[0],
            &format!("df -h {} | tail -n 1", mounted[0].target)
        )?
        .trim()
    ));
    walk.end(t);

    let t = walk.begin("CreateSnapshot of nfs-app (a reflink copy on XFS)");
    let snapshot = csi[0]
        .controller
        .create_snapshot(csi::CreateSnapshotRequest {
            source_volume_id: volume.volume_id.clone(),
            name: "nfs-app-snap".into(),
            ..Default::default()
        })
        .await?
        .into_inner()
        .snapshot
        .context("CreateSnapshot returned no snapshot")?;
    show(format!(
        "snapshot {}  ready: {}",
        snapshot.snapshot_id, snapshot.ready_to_use
    ));
    walk.end(t);

    let t =
        walk.begin("Clean up: stop the writers, delete the snapshot, unpublish, unstage, delete");
    for node in nodes.iter().take(2) {
        sh(node, "touch /work/stop")?;
    }
    tokio::time::sleep(Duration::from_secs(3)).await;
    let text = sh(&nodes[0], &format!("cat {file}"))?;
    show(format!(
        "test-file.txt: {} lines ({} from node-a, {} from node-b)",
        text.lines().count(),
        text.lines().filter(|l| l.starts_with("node-a")).count(),
        text.lines().filter(|l| l.starts_with("node-b")).count()
    ));
    csi[0]
        .controller
        .delete_snapshot(csi::DeleteSnapshotRequest {
            snapshot_id: snapshot.snapshot_id,
            ..Default::default()
        })
        .await?;
    for (i, m) in mounted.iter().enumerate() {
        csi[i].unmount(m, &[&m.target]).await?;
    }
    csi[0].delete(&volume.volume_id).await?;
    for node in nodes.iter().take(2) {
        let left = sh(node, "grep -c ' nfs' /proc/mounts || true")?;
        if left.trim() != "0" {
            bail!("{}: NFS mounts left behind", node.name);
        }
    }
    let exports = sh(&server, "exportfs -v")?;
    if exports.contains(&share) {
        bail!("the export is still there: {exports}");
    }
    show("no NFS mount on any node, no export on the server");
    walk.end(t);

    let t = walk.begin("Shut down the VMs");
    let dir = lab.dir().to_path_buf();
    drop(nodes);
    drop(server);
    drop(lab);
    let left = std::process::Command::new("pgrep")
        .arg("-f")
        .arg(dir.display().to_string())
        .output()?;
    if !left.stdout.is_empty() {
        bail!(
            "processes left behind: {}",
            String::from_utf8_lossy(&left.stdout)
        );
    }
    walk.end(t);
    Ok(walk.started.elapsed())
}
