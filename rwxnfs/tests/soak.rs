//! The soak: mixed concurrent CSI calls (create, publish, unpublish, expand, snapshot, delete)
//! through `rwxnfs controller` to `rwxnfs agent` over a real NFS-Ganesha, while both processes
//! are killed with SIGKILL at random moments and restarted. Calls that meet a killed process
//! are retried with the same request, as a CSI sidecar retries (the calls are idempotent by
//! name); any other failure fails the test.
//!
//! At the end: every volume whose create was acknowledged exists with its last acknowledged
//! size and clients, every acknowledged delete is gone, the snapshots are exactly those
//! acknowledged, Ganesha (ShowExports over D-Bus) exports what the table says, no temporary
//! file, trash or mount is left, and the last agent's resident memory is flat.
//!
//! `RWXNFS_SOAK_SECONDS` sets the length (120 s by default), `RWXNFS_SOAK_SEED` the seed
//! (printed; the operations each worker picks follow from it, the moments of the kills too,
//! though where a kill lands depends on timing):
//!
//! ```sh
//! RWXNFS_SOAK_SECONDS=600 cargo test -p rwxnfs --test soak -- --nocapture
//! ```
#![allow(clippy::unwrap_used)]

use std::{
    collections::{BTreeMap, BTreeSet},
    path::{Path, PathBuf},
    process::Command,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use rwxnfs_agent::exporter::{Exporter, ganesha::INCLUDE_FILE};
use rwxnfs_proto::{
    agent::{self as pb, agent_client::AgentClient},
    csi::{self, controller_client::ControllerClient},
};
use rwxnfs_server::Endpoint;
use rwxnfs_testbed::{
    GaneshaServer, Process, assert_nothing_left, names_in, spawn_serving, vm::mount_capability,
};
use tonic::{Code, Status, transport::Channel};

const MIB: i64 = 1 << 20;
/// Concurrent callers, and the names each works on (its own, so each name's calls have one
/// order and the expected end state is known).
const WORKERS: usize = 6;
const NAMES_PER_WORKER: usize = 4;
const NODES: [(&str, &str); 3] = [
    ("node-a", "10.0.0.1"),
    ("node-b", "10.0.0.2"),
    ("node-c", "10.0.0.3"),
];
/// One call's retries: like a sidecar's, bounded in count and time.
const ATTEMPTS: u32 = 400;
const CALL_BUDGET: Duration = Duration::from_secs(60);

/// xorshift64*: a seeded, reproducible sequence without a dependency.
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Self {
        Self(seed.max(1))
    }
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

/// The agent and the controller as processes of their own, over one Ganesha.
struct Stack {
    dir: PathBuf,
    agent: Process,
    agent_started: Instant,
    controller: Process,
    host: GaneshaServer,
}

impl Stack {
    fn path(&self, rel: &str) -> PathBuf {
        self.dir.join(rel)
    }

    fn spawn(dir: &Path, what: &str, args: &[&str]) -> Process {
        spawn_serving(dir, what, Command::new(env!("CARGO_BIN_EXE_rwxnfs")), args)
    }

    fn start_agent(dir: &Path) -> Process {
        let config = dir.join("agent.yaml").display().to_string();
        Self::spawn(dir, "agent", &["agent", "--config", &config])
    }

    fn start_controller(dir: &Path) -> Process {
        let config = dir.join("controller.yaml").display().to_string();
        let endpoint = format!("unix://{}", dir.join("controller.sock").display());
        Self::spawn(
            dir,
            "controller",
            &["controller", "--config", &config, "--endpoint", &endpoint],
        )
    }

    fn start(dir: &Path) -> Self {
        let state = dir.join("state");
        std::fs::create_dir_all(dir.join("exports")).unwrap();
        let host = GaneshaServer::with_conf_dir(dir, "soak", &state.join("ganesha"));
        assert!(state.join("ganesha").join(INCLUDE_FILE).exists());
        std::fs::write(
            dir.join("agent.yaml"),
            format!(
                "exportRoot: {}\nstateDir: {}\nquota: none\nnfsServer: {{kind: ganesha, dbusAddress: \"{}\", dbusNamePrefix: soak}}\nserverAddresses: [10.77.0.1]\nlisten: [\"unix://{}\"]\n",
                dir.join("exports").display(),
                state.display(),
                host.bus.address(),
                dir.join("agent.sock").display()
            ),
        )
        .unwrap();
        let nodes: String = NODES
            .iter()
            .map(|(node, address)| format!("  {node}: [{address}]\n"))
            .collect();
        std::fs::write(
            dir.join("controller.yaml"),
            format!(
                "backends:\n  - name: soak\n    agent: {{endpoint: \"unix://{}\", timeoutSeconds: 10}}\nnodes:\n{nodes}",
                dir.join("agent.sock").display()
            ),
        )
        .unwrap();
        Self {
            dir: dir.to_owned(),
            agent: Self::start_agent(dir),
            agent_started: Instant::now(),
            controller: Self::start_controller(dir),
            host,
        }
    }

    /// SIGKILL, reap, start again.
    fn kill_agent(&mut self) {
        self.agent.kill();
        self.agent = Self::start_agent(&self.dir);
        self.agent_started = Instant::now();
    }

    fn kill_controller(&mut self) {
        self.controller.kill();
        self.controller = Self::start_controller(&self.dir);
    }
}

/// Resident memory of `pid` in KiB.
fn rss_kib(pid: u32) -> Option<u64> {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()?
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// What the calls a worker saw acknowledged leave behind, per name.
#[derive(Clone, Debug, Default, PartialEq)]
struct Expected {
    volume_id: String,
    bytes: i64,
    nodes: BTreeSet<String>,
    snapshot: Option<String>,
}

#[derive(Default)]
struct Tally {
    ok: BTreeMap<&'static str, u64>,
    /// Failures met and retried, by call and code.
    retried: BTreeMap<String, u64>,
    /// Failures that are not a killed process's: the test fails on any.
    unexpected: Vec<String>,
}

/// Whether a failed call is what a killed agent or controller leaves: a sidecar retries it.
fn retriable(status: &Status) -> bool {
    match status.code() {
        Code::Unavailable | Code::Unknown | Code::Cancelled | Code::DeadlineExceeded => true,
        // The controller's per-volume lock, held by the same call before its process died.
        Code::Aborted => true,
        // A record a kill left half-made, until the restarted agent's reconcile finished it.
        Code::FailedPrecondition => status.message().contains("retry shortly"),
        _ => false,
    }
}

/// Calls `call` until it succeeds or fails in a way no kill explains (bounded in attempts and
/// time); every failure is counted.
async fn retry<T, F, Fut>(
    tally: &Mutex<Tally>,
    kind: &'static str,
    mut call: F,
) -> Result<T, Status>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, Status>>,
{
    let started = Instant::now();
    let mut last = None;
    for attempt in 0..ATTEMPTS {
        match call().await {
            Ok(value) => {
                *tally.lock().unwrap().ok.entry(kind).or_default() += 1;
                return Ok(value);
            }
            Err(status) => {
                {
                    let mut t = tally.lock().unwrap();
                    *t.retried
                        .entry(format!("{kind} {:?}", status.code()))
                        .or_default() += 1;
                    if !retriable(&status) {
                        t.unexpected.push(format!(
                            "{kind}: {:?} {}",
                            status.code(),
                            status.message()
                        ));
                        return Err(status);
                    }
                }
                if started.elapsed() > CALL_BUDGET {
                    last = Some(status);
                    break;
                }
                let pause = 20 * u64::from(attempt.min(10) + 1);
                tokio::time::sleep(Duration::from_millis(pause)).await;
            }
        }
    }
    let status = last.unwrap_or_else(|| Status::deadline_exceeded("out of attempts"));
    tally.lock().unwrap().unexpected.push(format!(
        "{kind}: still failing after {:?}: {:?} {}",
        started.elapsed(),
        status.code(),
        status.message()
    ));
    Err(status)
}

type Csi = ControllerClient<Channel>;

/// One CSI call, retried as [`retry`] does, with the same request each time.
async fn call<Req, Resp, F, Fut>(
    tally: &Mutex<Tally>,
    kind: &'static str,
    csi: &Csi,
    request: Req,
    rpc: F,
) -> Result<Resp, Status>
where
    Req: Clone,
    F: Fn(Csi, Req) -> Fut,
    Fut: std::future::Future<Output = Result<tonic::Response<Resp>, Status>>,
{
    retry(tally, kind, || rpc(csi.clone(), request.clone()))
        .await
        .map(tonic::Response::into_inner)
}

/// One call that fits what the worker knows of `name` (`now`); what it knows after.
async fn step(
    rng: &mut Rng,
    t: &Mutex<Tally>,
    csi: &Csi,
    name: &str,
    now: Option<Expected>,
    snapshots: &mut u32,
) -> Result<Option<Expected>, Status> {
    let Some(mut e) = now else {
        let bytes = (1 + rng.below(8) as i64) * MIB;
        let request = csi::CreateVolumeRequest {
            name: name.into(),
            capacity_range: Some(csi::CapacityRange {
                required_bytes: bytes,
                limit_bytes: 0,
            }),
            volume_capabilities: vec![mount_capability(false)],
            ..Default::default()
        };
        let created = call(t, "create", csi, request, |mut c, r| async move {
            c.create_volume(r).await
        });
        let volume = created.await?.volume.unwrap();
        assert_eq!(volume.capacity_bytes, bytes, "{name}");
        return Ok(Some(Expected {
            volume_id: volume.volume_id,
            bytes,
            ..Default::default()
        }));
    };
    let volume_id = e.volume_id.clone();
    match rng.below(10) {
        0..=2 => {
            let (node, _) = NODES[rng.below(NODES.len() as u64) as usize];
            let request = csi::ControllerPublishVolumeRequest {
                volume_id,
                node_id: node.into(),
                volume_capability: Some(mount_capability(false)),
                ..Default::default()
            };
            call(t, "publish", csi, request, |mut c, r| async move {
                c.controller_publish_volume(r).await
            })
            .await?;
            e.nodes.insert(node.into());
        }
        3..=4 => {
            if let Some(node) = e.nodes.pop_first() {
                let request = csi::ControllerUnpublishVolumeRequest {
                    volume_id,
                    node_id: node,
                    ..Default::default()
                };
                call(t, "unpublish", csi, request, |mut c, r| async move {
                    c.controller_unpublish_volume(r).await
                })
                .await?;
            }
        }
        5 => {
            let bytes = e.bytes + (1 + rng.below(4) as i64) * MIB;
            let request = csi::ControllerExpandVolumeRequest {
                volume_id,
                capacity_range: Some(csi::CapacityRange {
                    required_bytes: bytes,
                    limit_bytes: 0,
                }),
                volume_capability: Some(mount_capability(false)),
                ..Default::default()
            };
            let expanded = call(t, "expand", csi, request, |mut c, r| async move {
                c.controller_expand_volume(r).await
            });
            assert_eq!(expanded.await?.capacity_bytes, bytes, "{name}");
            e.bytes = bytes;
        }
        6..=7 if e.snapshot.is_none() => {
            *snapshots += 1;
            let request = csi::CreateSnapshotRequest {
                source_volume_id: volume_id,
                name: format!("{name}-s{snapshots}"),
                ..Default::default()
            };
            let made = call(t, "snapshot", csi, request, |mut c, r| async move {
                c.create_snapshot(r).await
            });
            e.snapshot = Some(made.await?.snapshot.unwrap().snapshot_id);
        }
        6..=7 => delete_snapshot(t, csi, e.snapshot.take()).await?,
        _ => {
            // The volume goes, then its snapshot (a copy of its own, so either order works).
            let request = csi::DeleteVolumeRequest {
                volume_id,
                ..Default::default()
            };
            call(t, "delete", csi, request, |mut c, r| async move {
                c.delete_volume(r).await
            })
            .await?;
            delete_snapshot(t, csi, e.snapshot.take()).await?;
            return Ok(None);
        }
    }
    Ok(Some(e))
}

async fn delete_snapshot(t: &Mutex<Tally>, csi: &Csi, id: Option<String>) -> Result<(), Status> {
    let Some(snapshot_id) = id else {
        return Ok(());
    };
    let request = csi::DeleteSnapshotRequest {
        snapshot_id,
        ..Default::default()
    };
    call(t, "delete snapshot", csi, request, |mut c, r| async move {
        c.delete_snapshot(r).await
    })
    .await
    .map(drop)
}

/// One worker: until `deadline`, picks a name of its own and a call that fits what it knows
/// of that name, and makes it (retried). Returns what it expects to exist at the end; stops at
/// the first call that fails for good (the test then fails on it).
async fn worker(
    index: usize,
    seed: u64,
    channel: Channel,
    deadline: Instant,
    tally: Arc<Mutex<Tally>>,
) -> BTreeMap<String, Option<Expected>> {
    let mut rng = Rng::new(seed ^ (index as u64 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15));
    let csi = ControllerClient::new(channel);
    let mut model: BTreeMap<String, Option<Expected>> = (0..NAMES_PER_WORKER)
        .map(|k| (format!("soak-{index}-{k}"), None))
        .collect();
    let names: Vec<String> = model.keys().cloned().collect();
    let mut snapshots = 0u32;
    // Bounded by time, and by count should the calls be quicker than ever expected.
    for _ in 0..1_000_000 {
        if Instant::now() >= deadline {
            break;
        }
        let name = &names[rng.below(names.len() as u64) as usize];
        let now = model[name].clone();
        match step(&mut rng, &tally, &csi, name, now, &mut snapshots).await {
            Ok(next) => model.insert(name.clone(), next),
            Err(_) => break,
        };
    }
    model
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mixed_calls_under_random_kills_lose_nothing_leave_nothing_and_keep_memory_flat() {
    let seconds: u64 = std::env::var("RWXNFS_SOAK_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(120);
    let seed: u64 = std::env::var("RWXNFS_SOAK_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos() as u64
        });
    println!("soak: {seconds} s, seed {seed} (RWXNFS_SOAK_SEED={seed} repeats the calls)");
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().to_owned();
    let stack = Arc::new(Mutex::new(Stack::start(&dir)));
    let channel = Endpoint::Unix(dir.join("controller.sock"))
        .connect()
        .await
        .unwrap();

    let started = Instant::now();
    let deadline = started + Duration::from_secs(seconds);
    let tally = Arc::new(Mutex::new(Tally::default()));
    let workers: Vec<_> = (0..WORKERS)
        .map(|i| tokio::spawn(worker(i, seed, channel.clone(), deadline, tally.clone())))
        .collect();

    // The killer: one SIGKILL every 2–8 s, of the controller or the agent. The agent is
    // killed only in the first half: the second half's agent is the one whose memory is
    // measured (see below). Each killed process is started again at once.
    let kills = {
        let stack = stack.clone();
        tokio::task::spawn_blocking(move || {
            let mut rng = Rng::new(seed.rotate_left(17));
            let agent_kills_until = started + Duration::from_secs(seconds / 2);
            let (mut agent, mut controller) = (0u32, 0u32);
            // RSS every 10 s: (time into the run, agent pid, KiB).
            let mut curve: Vec<(Duration, u32, u64)> = Vec::new();
            let mut next_sample = started;
            let mut next_kill = started + Duration::from_millis(2000 + rng.below(6000));
            while Instant::now() < deadline {
                let now = Instant::now();
                if now >= next_sample {
                    let pid = stack.lock().unwrap().agent.pid();
                    if let Some(kib) = rss_kib(pid) {
                        curve.push((now.duration_since(started), pid, kib));
                    }
                    next_sample += Duration::from_secs(10);
                }
                if now >= next_kill {
                    let mut s = stack.lock().unwrap();
                    if now < agent_kills_until && rng.below(2) == 0 {
                        s.kill_agent();
                        agent += 1;
                    } else {
                        s.kill_controller();
                        controller += 1;
                    }
                    next_kill = Instant::now() + Duration::from_millis(2000 + rng.below(6000));
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            (agent, controller, curve)
        })
    };

    let mut expected: BTreeMap<String, Option<Expected>> = BTreeMap::new();
    for w in workers {
        expected.extend(w.await.unwrap());
    }
    let (agent_kills, controller_kills, mut curve) = kills.await.unwrap();
    let ran = started.elapsed();
    let (agent_pid, agent_born, agent_age) = {
        let s = stack.lock().unwrap();
        let born = s.agent_started.duration_since(started);
        (s.agent.pid(), born, s.agent_started.elapsed())
    };
    if let Some(kib) = rss_kib(agent_pid) {
        curve.push((ran, agent_pid, kib));
    }

    let tally = std::mem::take(&mut *tally.lock().unwrap());
    println!("ran {ran:.0?}: {agent_kills} agent kills, {controller_kills} controller kills");
    println!("acknowledged calls: {:?}", tally.ok);
    println!("failures met and retried: {:?}", tally.retried);
    let seconds = |d: Duration| d.as_secs_f64().round() as u64;
    let printed: Vec<(u64, u32, u64)> = curve.iter().map(|&(t, p, k)| (seconds(t), p, k)).collect();
    println!("agent RSS (s, pid, KiB): {printed:?}");
    if !tally.unexpected.is_empty() {
        for log in ["agent.log", "controller.log"] {
            let text = std::fs::read_to_string(dir.join(log)).unwrap_or_default();
            let warnings: Vec<&str> = text
                .lines()
                .filter(|l| l.contains("\"WARN\"") || l.contains("\"ERROR\""))
                .collect();
            eprintln!("--- {log}: the last warnings and errors ---");
            for line in &warnings[warnings.len().saturating_sub(40)..] {
                eprintln!("{line}");
            }
        }
    }
    assert!(
        tally.unexpected.is_empty(),
        "calls failed in ways no kill explains: {:#?}",
        tally.unexpected
    );
    assert!(
        agent_kills > 0 && controller_kills > 0,
        "nothing was killed"
    );

    // Settle: one more reconcile, as after any restart, then compare with the table.
    let agent = Endpoint::Unix(dir.join("agent.sock"))
        .connect()
        .await
        .unwrap();
    let mut agent = AgentClient::new(agent);
    agent.reconcile(pb::ReconcileRequest {}).await.unwrap();
    let exports: BTreeMap<String, pb::Export> = agent
        .list_exports(pb::ListExportsRequest::default())
        .await
        .unwrap()
        .into_inner()
        .exports
        .into_iter()
        .map(|e| (e.name.clone(), e))
        .collect();
    let snapshots: BTreeSet<String> = agent
        .list_snapshots(pb::ListSnapshotsRequest::default())
        .await
        .unwrap()
        .into_inner()
        .snapshots
        .into_iter()
        .map(|s| s.name)
        .collect();
    let mut wanted_snapshots = BTreeSet::new();
    for (name, e) in &expected {
        match (e, exports.get(name)) {
            (None, None) => {}
            (None, Some(_)) => panic!("the acknowledged delete of {name} came back"),
            (Some(_), None) => panic!("the acknowledged create of {name} was lost"),
            (Some(e), Some(export)) => {
                assert_eq!(export.capacity_bytes, e.bytes, "{name}'s size");
                let nodes: BTreeSet<String> =
                    export.clients.iter().map(|c| c.client_id.clone()).collect();
                assert_eq!(nodes, e.nodes, "{name}'s clients");
                if let Some(id) = &e.snapshot {
                    // The snapshot id's last part is the agent's snapshot name.
                    wanted_snapshots.insert(id.rsplit(':').next().unwrap().to_owned());
                }
            }
        }
    }
    assert_eq!(
        exports.len(),
        expected.values().filter(|e| e.is_some()).count(),
        "exports nobody asked for: {:?}",
        exports.keys()
    );
    assert_eq!(snapshots, wanted_snapshots, "the snapshots acknowledged");

    // The killer has ended: the stack is this test's alone again.
    let s = Arc::into_inner(stack).unwrap().into_inner().unwrap();
    let active = s.host.exporter.active().await.unwrap();
    rwxnfs_testbed::assert_ganesha_serves_the_table(&s.path("state"), &active);
    leaves_nothing(&s.path("state"), &s.path("exports"), &exports, &snapshots).await;

    // Memory: the agent of the second half (never killed), warm (after the first minute of
    // its life, or 20 s when it lived under two minutes, as in the 2-minute run), against its
    // last sample. Earlier agents lived seconds each: too short to show a leak.
    let warm_after = if agent_age >= Duration::from_secs(120) {
        Duration::from_secs(60)
    } else {
        Duration::from_secs(20)
    };
    let warm = curve
        .iter()
        .find(|(t, pid, _)| *pid == agent_pid && *t >= agent_born + warm_after)
        .copied();
    let last = curve.last().copied().unwrap();
    println!(
        "the last agent lived {agent_age:.0?}; warm ({warm_after:?} into its life) {:?} KiB, at the end {} KiB",
        warm.map(|w| w.2),
        last.2
    );
    if let Some((_, _, warm_kib)) = warm {
        assert!(
            last.2 as f64 <= warm_kib as f64 * 1.2,
            "the agent's memory grew from {warm_kib} KiB to {} KiB",
            last.2
        );
    } else {
        panic!("the last agent lived {agent_age:?}, too short to measure its memory");
    }
}

/// Nothing left behind (see [`assert_nothing_left`]), no volume or snapshot directory
/// without its record, no mount beneath the working directory.
async fn leaves_nothing(
    state: &Path,
    root: &Path,
    exports: &BTreeMap<String, pb::Export>,
    snapshots: &BTreeSet<String>,
) {
    let (state_dir, root_dir) = (state.to_owned(), root.to_owned());
    tokio::task::spawn_blocking(move || {
        assert_nothing_left(&state_dir, &root_dir, Duration::from_secs(30))
    })
    .await
    .unwrap();
    let volumes: BTreeSet<String> = names_in(&root.join("volumes")).into_iter().collect();
    assert_eq!(
        volumes,
        exports.keys().cloned().collect(),
        "volume directories without a record"
    );
    let copies: BTreeSet<String> = names_in(&root.join("snapshots")).into_iter().collect();
    assert_eq!(&copies, snapshots, "snapshot directories without a record");
    let base = root.parent().unwrap().display().to_string();
    let mounts: Vec<String> = std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap()
        .lines()
        .filter(|l| l.contains(&base))
        .map(str::to_owned)
        .collect();
    assert!(mounts.is_empty(), "mounts left: {mounts:?}");
}
