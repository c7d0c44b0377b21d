//! The real-kernel tier's `ha-failover` scenario: three QEMU VMs on a private network.
//!
//! - `nfs-a` (10.99.0.1) and `nfs-b` (10.99.0.2) replicate a virtio disk with DRBD 8.4
//!   (protocol C). Whichever is Primary holds the XFS export root with `prjquota` at
//!   /drbd/exports, the agent's table on it, nfsdcld's client database on it, kernel nfsd, the
//!   agent (kernel exporter, mutual TLS on TCP 9820) and the floating address 10.99.0.100.
//! - `client` (10.99.0.3) runs `rwxnfs node` and `rwxnfs controller`, which reaches the agent
//!   over mutual TLS at the floating address, as it would from a cluster.
//!
//! A writer on the client appends a numbered line every 100 ms with fsync. `nfs-a` is killed
//! (QEMU ends at once: a host that loses power) and `nfs-b` runs the promoter script, which
//! stands for DRBD Reactor and runs the start list of `manifests/ha/drbd-reactor/rwxnfs.toml`
//! in its order: DRBD Primary, the filesystem, the nfsdcld database, the agent (which
//! reconciles), nfsd with the cluster's server scope, and last the address (the pair's boot
//! and that script: `recipes::ha_storage_boot` and `recipes::ha_promoter`). Then every
//! fsync'd line must be there, no call may have failed (no ESTALE), and the export id and
//! client list must be those from before. Before the kill, on 6.1, nfs-b's replication is
//! disconnected while nfs-a serves the writer, then reconnected and resynced, so the takeover
//! is by a secondary that was degraded (`degraded_replication`). It runs on both kernels users run, Debian
//! bookworm's 6.1 and trixie's 6.12 (the kernel's DRBD 8.4 with that release's drbd-utils),
//! one after the other; on 6.12 the claim is `transport: mtls` (NFS over TLS): both hosts run
//! `tlshd` with the certificate of the name the client mounts by (the backend's
//! `serverName`), the client its own, and after the takeover the client's connection is a new
//! handshake with nfs-b.
//!
//! Both hosts losing power (`RWXNFS_HA_DOUBLE_FAILURE=1`, a documented command, not in the
//! test command): after the failover, nfs-b is killed too, both are powered on with their disks
//! as they were, and the client's mount must resume (`double_failure`).
//!
//! At scale: `RWXNFS_HA_EXPORTS=10000 cargo test [--release] -p rwxnfs --test vm_ha --
//! --nocapture` first creates that many more volumes (32 at a time) and publishes each to
//! three nodes, so the takeover puts back that many exports with three clients each; the
//! promoter's steps (Primary, mounted, reconciled, nfsd, address) are printed with their
//! times. `--release` runs the build a cluster runs (README, Performance, has both).
#![allow(clippy::unwrap_used)]

use std::{
    path::Path,
    time::{Duration, Instant},
};

use rwxnfs_proto::csi;
use rwxnfs_testbed::vm::{Csi, MIB, mount_capability};
use rwxnfs_testbed::{
    Pki,
    vm::{Kernel, Lab, Vm, VmSpec, recipes},
};

/// One group of VMs at a time in this test binary (the machine runs one VM group at a time).
static ONE_LAB: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// The floating address, on the lab network.
const VIP: &str = "10.99.0.100";
const VIP_PREFIX: u8 = 24;

const CLIENT_BOOT: &str = r#"
modprobe nfsv4
mkdir -p /etc/rwxnfs/tls
mv /work/tls/* /etc/rwxnfs/tls/
cat > /etc/rwxnfs/controller.yaml <<'EOF'
backends:
  - name: ha
    agent:
      endpoint: tcp://10.99.0.100:9820
      tls: {ca: /etc/rwxnfs/tls/ca.pem, cert: /etc/rwxnfs/tls/controller.pem, key: /etc/rwxnfs/tls/controller.key, serverName: rwxnfs-agent}
      timeoutSeconds: 10
    server: 10.99.0.100
nodes:
  client: [10.99.0.3]
  # Nodes nobody runs, for the exports of a run at scale (RWXNFS_HA_EXPORTS).
  other-1: [10.99.0.41]
  other-2: [10.99.0.42]
EOF
setsid rwxnfs --log-format text node --endpoint tcp://0.0.0.0:7000 --node-id client > /work/node.log 2>&1 &
setsid rwxnfs --log-format text controller --endpoint tcp://0.0.0.0:7001 --config /etc/rwxnfs/controller.yaml > /work/controller.log 2>&1 &
"#;

/// `count` volumes created 32 at a time, each then published to three nodes (one real, two
/// that nobody runs), timed.
async fn many_exports(csi: &Csi, count: usize) {
    let controller = csi.controller.clone();
    let started = Instant::now();
    let (done, _) = rwxnfs_testbed::load::at_once(count, 32, move |i| {
        let mut controller = controller.clone();
        async move {
            let t = Instant::now();
            let volume = controller
                .create_volume(csi::CreateVolumeRequest {
                    name: format!("scale-{i}"),
                    volume_capabilities: vec![mount_capability(false)],
                    ..Default::default()
                })
                .await
                .unwrap()
                .into_inner()
                .volume
                .unwrap();
            let created = t.elapsed();
            for node in ["client", "other-1", "other-2"] {
                controller
                    .controller_publish_volume(csi::ControllerPublishVolumeRequest {
                        volume_id: volume.volume_id.clone(),
                        node_id: node.into(),
                        volume_capability: Some(mount_capability(false)),
                        volume_context: volume.volume_context.clone(),
                        ..Default::default()
                    })
                    .await
                    .unwrap();
            }
            created
        }
    })
    .await;
    let creates: Vec<(usize, Duration)> = done.into_iter().map(|(_, c)| c).enumerate().collect();
    let took = started.elapsed();
    println!(
        "{count} volumes created and published to 3 nodes in {took:.1?} ({:.1} volumes/s)",
        count as f64 / took.as_secs_f64()
    );
    // CreateVolume's latency (32 at a time, among the publishes) by tenth of the table.
    let tenth = (count / 10).max(1);
    for part in creates.chunks(tenth) {
        let mut d: Vec<Duration> = part.iter().map(|(_, d)| *d).collect();
        d.sort();
        let q = |f: f64| d[((d.len() as f64 - 1.0) * f).round() as usize];
        println!(
            "  creates {}-{}: p50 {:.0?}, p99 {:.0?}",
            part[0].0 + 1,
            part[part.len() - 1].0 + 1,
            q(0.5),
            q(0.99)
        );
    }
}

/// The writer: one numbered line every 100 ms, each fsync'd; what was acknowledged (and when,
/// by the guest's clock) goes to /work/acked.log. Bounded: 1500 lines or the stop file.
fn writer(target: &str) -> String {
    format!(
        r#"i=0
while [ $i -lt 1500 ] && [ ! -e /work/stop-writer ]; do
  if echo "line $i" >> {target}/log.txt 2>> /work/writer.err && sync {target}/log.txt 2>> /work/writer.err; then
    echo "$i $(cut -d' ' -f1 /proc/uptime)" >> /work/acked.log
  else
    echo "$i $(cut -d' ' -f1 /proc/uptime) FAILED" >> /work/acked.log
  fi
  i=$((i+1))
  usleep 100000
done
echo done >> /work/acked.log
"#
    )
}

/// Samples, every 200 ms while the writer runs (at most 10 minutes), the client's NFS
/// transport (`/proc/self/mountstats`: connections made, requests sent, replies received) and
/// the states of its TCP sockets to port 2049 (`/proc/net/tcp`), one line each:
/// `<uptime> <connects> <sends> <replies> <state>...`.
const CONNECTIONS: &str = r#"n=0
while [ $n -lt 3000 ] && [ ! -e /work/stop-writer ]; do
  t=$(cut -d' ' -f1 /proc/uptime)
  x=$(awk '$1 == "xprt:" { print $5, $8, $9; exit }' /proc/self/mountstats)
  c=$(awk '$3 ~ /:0801$/ { printf " %s", $4 }' /proc/net/tcp)
  echo "$t $x$c" >> /work/connections.log
  n=$((n+1))
  usleep 200000
done
"#;

/// What the client's transport did between `from` and `to` (guest uptime, the stall's two
/// lines), from [`CONNECTIONS`]' samples: each change of its connections or socket states,
/// and the first reply after each, as seconds after `from`.
fn connection_timeline(log: &str, from: f64, to: f64) -> String {
    fn state(hex: &str) -> &str {
        match hex {
            "01" => "ESTABLISHED",
            "02" => "SYN_SENT",
            "04" => "FIN_WAIT1",
            "05" => "FIN_WAIT2",
            "06" => "TIME_WAIT",
            "07" => "CLOSE",
            "08" => "CLOSE_WAIT",
            "09" => "LAST_ACK",
            "0B" => "CLOSING",
            other => other,
        }
    }
    let mut out = String::new();
    let mut last: Option<(String, String, u64)> = None;
    let mut awaiting_reply = false;
    for line in log.lines() {
        let f: Vec<&str> = line.split_whitespace().collect();
        let (Some(t), Some(connects), Some(replies)) = (
            f.first().and_then(|t| t.parse::<f64>().ok()),
            f.get(1),
            f.get(3).and_then(|r| r.parse::<u64>().ok()),
        ) else {
            continue;
        };
        if t < from - 0.2 || t > to + 0.2 {
            continue;
        }
        let sockets = f
            .get(4..)
            .unwrap_or_default()
            .iter()
            .map(|s| state(s))
            .collect::<Vec<_>>()
            .join(" ");
        let now = (connects.to_string(), sockets, replies);
        let changed = last.as_ref().is_none_or(|l| l.0 != now.0 || l.1 != now.1);
        let replied = awaiting_reply && last.as_ref().is_some_and(|l| now.2 > l.2);
        if changed || replied {
            out.push_str(&format!(
                "  +{:.1} s: {} connections made, {} replies, sockets [{}]{}\n",
                t - from,
                now.0,
                now.2,
                now.1,
                if replied && !changed {
                    " (a reply)"
                } else {
                    ""
                }
            ));
            awaiting_reply = changed;
        }
        last = Some(now);
    }
    out
}

/// (line, guest time, acknowledged) for each line the writer tried so far.
fn acked(client: &Vm) -> Vec<(u32, f64, bool)> {
    std::fs::read_to_string(client.work().join("acked.log"))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| {
            let mut f = l.split_whitespace();
            let i = f.next()?.parse().ok()?;
            let t = f.next()?.parse().ok()?;
            Some((i, t, f.next().is_none()))
        })
        .collect()
}

/// The agent's resident memory on `vm`, as the kernel counts it.
fn agent_rss(vm: &Vm) -> String {
    vm.sh("for p in $(pidof rwxnfs); do grep VmRSS /proc/$p/status; done")
        .trim()
        .to_string()
}

fn wait_until(what: &str, limit: Duration, mut done: impl FnMut() -> bool) {
    let start = Instant::now();
    while !done() {
        assert!(start.elapsed() < limit, "{what}: not within {limit:?}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Both NFS hosts lose power at once (`RWXNFS_HA_DOUBLE_FAILURE=1`): nfs-b, the Primary since
/// the failover, is killed while nfs-a is still down, then both are powered on again with the
/// disks as they were. DRBD reconnects the pair (nfs-b holds the newest data and resyncs nfs-a),
/// the promoter runs on nfs-b as DRBD Reactor would there, and the client, whose mount stayed
/// in place throughout, must resume: what it wrote before the power went is there, a new write
/// goes through, and the export is served again with the same id and clients.
fn double_failure(
    lab: &mut Lab,
    (a_spec, a): (VmSpec, &mut Vm),
    (b_spec, b): (VmSpec, &mut Vm),
    client: &Vm,
    m: &rwxnfs_testbed::vm::Mounted,
    before: &str,
) {
    let file = format!("{}/double.txt", m.target);
    client.sh(&format!("echo before-power-loss >> {file} && sync {file}"));
    b.kill();
    let lost = Instant::now();
    // Powered on again: the same boot, but the DRBD metadata is kept, not created anew.
    let again = |spec: VmSpec| VmSpec {
        boot: spec.boot.replace("drbdadm create-md --force r0\n", ""),
        ..spec
    };
    *a = lab.power_on(again(a_spec));
    *b = lab.power_on(again(b_spec));
    let limit = Duration::from_secs(240);
    let booted = (a.wait_ready(limit), b.wait_ready(limit));
    println!(
        "double failure: nfs-a booted in {:?}, nfs-b in {:?}",
        booted.0, booted.1
    );
    wait_until("DRBD reconnects the pair", Duration::from_secs(120), || {
        let state = b.sh("cat /proc/drbd");
        state.contains("ds:UpToDate/")
            && !state.contains("cs:WFConnection")
            && !state.contains("cs:StandAlone")
    });
    println!(
        "double failure: DRBD after power-on: {}",
        b.sh("cat /proc/drbd").trim()
    );
    let promoted = b.run("sh /work/promote", Duration::from_secs(600));
    assert_eq!(
        promoted.rc, 0,
        "promote on nfs-b after the power loss:\n{}",
        promoted.out
    );
    let resumed = Instant::now();
    let out = client.run(
        &format!("echo after-power-loss >> {file} && cat {file}"),
        Duration::from_secs(300),
    );
    assert_eq!(out.rc, 0, "the client after the power loss: {}", out.out);
    assert_eq!(out.out, "before-power-loss\nafter-power-loss\n");
    println!(
        "double failure: nfs-b promoted {:.1?} after the power went:\n{}\nthe client's first \
         write then took {:.1?}",
        lost.elapsed() - resumed.elapsed(),
        promoted.out.trim_end(),
        resumed.elapsed()
    );
    let after = exported(&b.sh("exportfs -v"), &m.context["share"]);
    assert_eq!(after, before, "the export after both hosts lost power");
}

/// Degraded replication: nfs-b's DRBD is disconnected while nfs-a serves the writer. nfs-a
/// goes on alone (the writer's lines keep being acknowledged) and counts what nfs-b misses;
/// once nfs-b reconnects, DRBD resyncs exactly that, and the failover that follows (to nfs-b)
/// must then lose nothing, which the caller checks line by line.
fn degraded_replication(a: &Vm, b: &Vm, client: &Vm) {
    b.sh("drbdadm disconnect r0");
    let alone = Instant::now();
    let written = acked(client).len();
    wait_until(
        "the writer carries on while nfs-b is disconnected",
        Duration::from_secs(60),
        || acked(client).len() >= written + 30,
    );
    let state = a.sh("cat /proc/drbd");
    assert!(
        state.contains("cs:WFConnection") && state.contains("ro:Primary/Unknown"),
        "nfs-a with nfs-b disconnected:\n{state}"
    );
    let missed = out_of_sync_kib(&state);
    assert!(missed > 0, "nfs-a counts nothing out of sync:\n{state}");
    println!(
        "degraded: nfs-a served {} lines alone in {:.1?}; {missed} KiB out of sync on nfs-b",
        acked(client).len() - written,
        alone.elapsed()
    );
    b.sh("drbdadm connect r0");
    let resync = Instant::now();
    loop {
        let state = a.sh("cat /proc/drbd");
        if state.contains("cs:Connected")
            && state.contains("ds:UpToDate/UpToDate")
            && out_of_sync_kib(&state) == 0
        {
            break;
        }
        assert!(
            resync.elapsed() < Duration::from_secs(120),
            "DRBD did not resync nfs-b within 120 s:\nnfs-a: {state}\n{}\nnfs-b: {}\n{}",
            a.sh("dmesg | grep -i drbd | tail -n 30"),
            b.sh("cat /proc/drbd"),
            b.sh("dmesg | grep -i drbd | tail -n 30")
        );
        std::thread::sleep(Duration::from_millis(500));
    }
    println!(
        "degraded: nfs-b reconnected and resynced in {:.1?}",
        resync.elapsed()
    );
}

/// DRBD 8.4's count of data the peer lacks (`oos:` in /proc/drbd), in KiB.
fn out_of_sync_kib(proc_drbd: &str) -> u64 {
    proc_drbd
        .split_whitespace()
        .find_map(|w| w.strip_prefix("oos:"))
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no oos: in /proc/drbd:\n{proc_drbd}"))
}

/// The fsid= and client of one export in `exportfs -v` output.
fn exported(listing: &str, path: &str) -> String {
    let flat = listing.replace(['\n', '\t'], " ");
    let at = flat
        .find(path)
        .unwrap_or_else(|| panic!("{path} not exported:\n{listing}"));
    let rest = flat[at + path.len()..].trim_start();
    let entry = rest.split_whitespace().next().unwrap();
    let fsid = entry
        .split([',', '(', ')'])
        .find(|o| o.starts_with("fsid="))
        .unwrap();
    let client = entry.split('(').next().unwrap();
    format!("{client} {fsid}")
}

/// The promoter here runs the units of the shipped DRBD Reactor configuration, in its order.
#[test]
fn the_promoter_runs_the_shipped_start_list_in_its_order() {
    let shipped = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../manifests/ha/drbd-reactor/rwxnfs.toml"),
    )
    .unwrap();
    let list = &shipped[shipped.find("start = [").unwrap()..];
    let list = &list[..list.find(']').unwrap()];
    let units: Vec<&str> = list
        .lines()
        .map(str::trim)
        .filter(|l| l.starts_with('"'))
        .map(|l| l.trim_matches(|c| c == '"' || c == ','))
        .map(|u| u.split_whitespace().next().unwrap())
        .collect();
    assert_eq!(units.len(), 6, "{units:?}");
    let promoter = recipes::ha_promoter(VIP, VIP_PREFIX);
    let mut at = 0;
    for unit in units {
        // The resource agent is named by its type in the promoter script.
        let name = unit.strip_prefix("ocf:heartbeat:").unwrap_or(unit);
        let found = promoter[at..]
            .find(name)
            .unwrap_or_else(|| panic!("{name} missing or out of order in the promoter"));
        at += found + name.len();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ha_failover_with_drbd_keeps_every_fsynced_write_and_every_handle() {
    failover(Kernel::Bookworm).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ha_failover_with_drbd_keeps_every_fsynced_write_and_every_handle_on_6_12() {
    failover(Kernel::Trixie).await;
}

/// The name in the NFS hosts' certificate, for the claim over mutual TLS on 6.12.
const SERVER_NAME: &str = "nfs.rwxnfs.test";

async fn failover(kernel: Kernel) {
    // NFS over TLS needs 6.5: bookworm's pair serves the claim in plaintext.
    let mtls = kernel == Kernel::Trixie;
    let _one = ONE_LAB.lock().await;
    let started = Instant::now();
    let pki = Pki::new("rwxnfs test CA");
    let name = match kernel {
        Kernel::Bookworm => "ha-failover".to_string(),
        Kernel::Trixie => format!("ha-failover-{}", kernel.version()),
    };
    let mut lab = Lab::with_kernel(
        &name,
        Path::new(env!("CARGO_TARGET_TMPDIR")),
        Path::new(env!("CARGO_BIN_EXE_rwxnfs")),
        kernel,
    );
    let (cert, key) = pki.issue("rwxnfs-agent");
    let mut boot = recipes::ha_storage_boot(&pki.ca_pem, &cert, &key, VIP, VIP_PREFIX, &[]);
    let mut storage_files = Vec::new();
    if mtls {
        boot = recipes::tlshd("server", true) + &boot;
        let server = pki.issue_for(SERVER_NAME, None, &[SERVER_NAME]);
        storage_files = recipes::tlshd_files(&pki.ca_pem, Some(server));
    }
    let storage = |name: &str, n: u8| VmSpec {
        memory_mb: 448,
        lan: Some(n),
        disks_mb: vec![512],
        boot: boot.clone(),
        files: storage_files.clone(),
        ..VmSpec::new(name)
    };
    let mut a = lab.start(storage("nfs-a", 1));
    let mut b = lab.start(storage("nfs-b", 2));
    let client_spec = if mtls {
        VmSpec {
            boot: format!(
                "modprobe netlink_diag\n{}{}",
                recipes::tlshd("client", true),
                CLIENT_BOOT.replace(
                    "    server: 10.99.0.100\n",
                    &format!("    server: 10.99.0.100\n    serverName: {SERVER_NAME}\n")
                )
            ),
            files: recipes::tlshd_files(&pki.ca_pem, Some(pki.issue("client"))),
            ..VmSpec::new("client")
        }
    } else {
        VmSpec {
            boot: CLIENT_BOOT.into(),
            ..VmSpec::new("client")
        }
    };
    let client_spec = VmSpec {
        lan: Some(3),
        forwards: vec![7000, 7001],
        ..client_spec
    };
    let tls = lab.dir().join("client/tls");
    std::fs::create_dir_all(&tls).unwrap();
    let (cert, key) = pki.issue("rwxnfs-controller");
    std::fs::write(tls.join("ca.pem"), &pki.ca_pem).unwrap();
    std::fs::write(tls.join("controller.pem"), cert).unwrap();
    std::fs::write(tls.join("controller.key"), key).unwrap();
    let mut client = lab.start(client_spec);
    let limit = Duration::from_secs(240);
    println!("nfs-a booted in {:?}", a.wait_ready(limit));
    println!("nfs-b booted in {:?}", b.wait_ready(limit));
    println!("client booted in {:?}", client.wait_ready(limit));
    for vm in [&a, &b, &client] {
        let release = vm.sh("uname -r");
        assert!(
            release.starts_with(&format!("{}.", kernel.version())),
            "{}: booted {release}, not {kernel}",
            vm.name
        );
    }
    println!(
        "{kernel}: {}, {}",
        a.sh("uname -r").trim(),
        a.sh("head -n1 /proc/drbd").trim()
    );

    // First start: the pair connects, skips the initial sync (both disks are empty), and
    // nfs-a is promoted and formats the replicated volume.
    wait_until("DRBD connected", Duration::from_secs(60), || {
        a.sh("cat /proc/drbd").contains("cs:Connected")
    });
    a.sh("drbdadm -- --clear-bitmap new-current-uuid r0 && drbdadm primary r0 && mkfs.xfs -q /dev/drbd0");
    let first = a.run("sh /work/promote", Duration::from_secs(120));
    assert_eq!(first.rc, 0, "promote on nfs-a:\n{}", first.out);

    let mut csi = Csi::connect(client.port(7001), client.port(7000), "client")
        .await
        .unwrap();
    let transport = if mtls { "mtls" } else { "none" };
    let m = csi
        .create_and_mount(
            "ha",
            &[("squash", "none"), ("transport", transport)],
            64 * MIB,
        )
        .await
        .unwrap();
    let mounted = client.sh(&format!("grep ' {} ' /proc/mounts", m.staging));
    println!("client: {}", mounted.trim());
    assert_eq!(mounted.contains("xprtsec=mtls"), mtls, "{mounted}");
    let before = exported(&a.sh("exportfs -v"), &m.context["share"]);
    println!("on nfs-a: {} {before}", m.context["share"]);
    let extra: usize = std::env::var("RWXNFS_HA_EXPORTS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(0);
    if extra > 0 {
        many_exports(&csi, extra).await;
        let listing = a.run("exportfs -v | grep -c fsid=", Duration::from_secs(120));
        println!(
            "nfs-a serves {} export lines (one per client) for {} volumes; agent {}",
            listing.out.trim(),
            extra + 1,
            agent_rss(&a)
        );
    }

    client.sh(&format!(
        "cat > /work/writer.sh <<'EOF'\n{}EOF\nsetsid sh /work/writer.sh > /dev/null 2>&1 &\n\
         cat > /work/connections.sh <<'EOF'\n{CONNECTIONS}EOF\nsetsid sh /work/connections.sh > /dev/null 2>&1 &",
        writer(&m.target)
    ));
    wait_until("20 lines written", Duration::from_secs(60), || {
        acked(&client).len() >= 20
    });

    if kernel == Kernel::Bookworm {
        degraded_replication(&a, &b, &client);
    }

    // Power off nfs-a; nfs-b takes over.
    let written_before = acked(&client).len();
    a.kill();
    let takeover = Instant::now();
    let promoted = b.run("sh /work/promote", Duration::from_secs(600));
    assert_eq!(promoted.rc, 0, "promote on nfs-b:\n{}", promoted.out);
    println!(
        "nfs-b promoted in {:?}:\n{}\nagent on nfs-b: {}",
        takeover.elapsed(),
        promoted.out.trim_end(),
        agent_rss(&b)
    );
    wait_until(
        "the writer carries on through nfs-b",
        Duration::from_secs(180),
        || acked(&client).len() >= written_before + 20,
    );
    std::fs::write(client.work().join("stop-writer"), "").unwrap();
    wait_until("the writer stops", Duration::from_secs(60), || {
        std::fs::read_to_string(client.work().join("acked.log")).is_ok_and(|l| l.contains("done"))
    });

    let lines = acked(&client);
    let failed: Vec<_> = lines.iter().filter(|(_, _, ok)| !ok).collect();
    let errors = std::fs::read_to_string(client.work().join("writer.err")).unwrap_or_default();
    assert!(
        failed.is_empty() && errors.is_empty(),
        "failed writes {failed:?}: {errors}"
    );
    let (stalled_at, stall) = lines
        .windows(2)
        .map(|w| (w[0].1, w[1].1 - w[0].1))
        .fold((0.0, 0.0), |max, gap| if gap.1 > max.1 { gap } else { max });
    println!(
        "client-visible stall ({transport}): {stall:.1} s (longest gap between two acknowledged \
         lines; 100 ms apart otherwise), {} lines; the client's connection to {VIP}:2049 \
         meanwhile, from the last line before it:\n{}",
        lines.len(),
        connection_timeline(
            &std::fs::read_to_string(client.work().join("connections.log")).unwrap_or_default(),
            stalled_at,
            stalled_at + stall,
        )
    );
    if mtls {
        // The connection to nfs-b is a new handshake: nfs-b's tlshd served it.
        let log = std::fs::read_to_string(b.work().join("tlshd.log")).unwrap_or_default();
        println!("nfs-b tlshd after the takeover:\n{log}");
        let mounted = client.sh(&format!("grep ' {} ' /proc/mounts", m.staging));
        assert!(mounted.contains("xprtsec=mtls"), "{mounted}");
    }

    // Every acknowledged line is there, in order, read back through the mount.
    let content = client.sh(&format!("cat {}/log.txt", m.target));
    let expected: String = lines
        .iter()
        .map(|(i, _, _)| format!("line {i}\n"))
        .collect();
    assert_eq!(content, expected, "the file after failover");
    let after = exported(&b.sh("exportfs -v"), &m.context["share"]);
    assert_eq!(after, before, "the export after failover");

    if std::env::var_os("RWXNFS_HA_DOUBLE_FAILURE").is_some() {
        let (a_spec, b_spec) = (storage("nfs-a", 1), storage("nfs-b", 2));
        double_failure(
            &mut lab,
            (a_spec, &mut a),
            (b_spec, &mut b),
            &client,
            &m,
            &before,
        );
    }

    // The controller reaches the new agent at the same address. A call that finds the old
    // connection broken is UNAVAILABLE, which the CSI sidecars retry; so does this test.
    let start = Instant::now();
    let mut tries = 0;
    let again = loop {
        tries += 1;
        let request = csi::CreateVolumeRequest {
            name: "after-failover".into(),
            volume_capabilities: vec![mount_capability(false)],
            ..Default::default()
        };
        match csi.controller.create_volume(request).await {
            Ok(r) => break r.into_inner().volume.unwrap(),
            Err(e) if e.code() == tonic::Code::Unavailable && tries < 10 => {
                println!("  CreateVolume after failover: {e:?}; retrying");
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
            Err(e) => panic!("CreateVolume after failover: {e:?}"),
        }
    };
    println!(
        "the controller reached the new agent in {:?} ({tries} tries)",
        start.elapsed()
    );
    csi.controller
        .delete_volume(csi::DeleteVolumeRequest {
            volume_id: again.volume_id,
            ..Default::default()
        })
        .await
        .unwrap();
    csi.unmount_and_delete(&m, &[&m.target]).await.unwrap();
    println!("{kernel}: ha-failover passed in {:?}", started.elapsed());
}
