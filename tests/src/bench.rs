//! The scale benchmark's scenarios, run against a [`Stack`]: creates one at a time and 32 at
//! a time, publishes of many volumes at once, every other volume's first publish (where an
//! export reaches Ganesha), a reconcile of everything, an agent's start over the full table,
//! deletes, and the resident memory, printed as one table. The example `bench` runs it over
//! real NFS-Ganesha with 10,000 exports; a test runs 1,000 and checks the ratios
//! ([`Report::check`]). Every loop is bounded by its count.

use std::{
    fmt::Write as _,
    sync::Arc,
    time::{Duration, Instant},
};

use rwxnfs_proto::{
    agent::{self as pb, agent_client::AgentClient},
    csi::{self, controller_client::ControllerClient},
};

use rwxnfs_agent::{
    ExportAgent, Settings,
    exporter::Exporter,
    fs::{VolumeFs, plain::PlainFs},
    table::Table,
};
use rwxnfs_testbed::load::at_once;

use crate::{NODE_ID, Stack};

/// How much of each scenario to run.
#[derive(Clone, Debug)]
pub struct BenchConfig {
    /// Volumes created one at a time (the growth check compares the first and the last tenth).
    pub sequential: usize,
    /// Volumes created 32 at a time.
    pub concurrent: usize,
    /// Volumes published to one node at once.
    pub publishes: usize,
    /// Nodes one volume is published to at once (a Deployment's pods starting on every node).
    pub nodes: usize,
}

impl BenchConfig {
    pub fn full() -> Self {
        Self {
            sequential: 10_000,
            concurrent: 2_000,
            publishes: 500,
            nodes: 500,
        }
    }

    pub fn short() -> Self {
        Self {
            sequential: 1_000,
            concurrent: 500,
            publishes: 200,
            nodes: 200,
        }
    }
}

/// Latencies of one scenario and its wall time.
#[derive(Clone, Debug)]
pub struct Samples {
    pub label: String,
    pub latencies: Vec<Duration>,
    pub wall: Duration,
}

impl Samples {
    fn quantile(sorted: &[Duration], q: f64) -> Duration {
        if sorted.is_empty() {
            return Duration::ZERO;
        }
        sorted[((sorted.len() as f64 - 1.0) * q).round() as usize]
    }

    /// (p50, p99) of the samples `range` (in arrival order).
    pub fn p50_p99(&self, range: std::ops::Range<usize>) -> (Duration, Duration) {
        let mut part = self.latencies[range].to_vec();
        part.sort();
        (Self::quantile(&part, 0.5), Self::quantile(&part, 0.99))
    }

    pub fn rate(&self) -> f64 {
        self.latencies.len() as f64 / self.wall.as_secs_f64().max(1e-9)
    }
}

#[derive(Clone, Debug)]
pub struct Report {
    pub sequential: Samples,
    pub concurrent: Samples,
    pub publishes: Samples,
    /// One volume published to many nodes at once.
    pub fan_out: Samples,
    /// Another volume published to as many nodes, [`ATTACHER_WORKERS`] in flight at a time, as
    /// the external-attacher sends them.
    pub fan_out_attacher: Samples,
    /// Every other volume's first publish, to one node, [`ATTACHER_WORKERS`] at a time: on
    /// Ganesha, where an export goes to the server (an `AddExport`, whose cost grows with the
    /// exports Ganesha has).
    pub first_publishes: Samples,
    pub deletes: Samples,
    /// One Reconcile of every export, and how many it put back.
    pub reconcile: (Duration, usize),
    /// A second agent started over the same table and NFS server, as after a restart or on
    /// the standby after a failover: from opening the table to the end of its first reconcile
    /// (when `rwxnfs agent` says READY), and how many exports that reconcile made active.
    pub start: (Duration, usize),
    /// The same with the kernel exporter (`apply: etab`) writing nfs-utils' table into a
    /// scratch directory (no kernel nfsd serves from it here): the agent's part of a kernel
    /// nfsd takeover.
    pub kernel_start: (Duration, usize),
    /// VmRSS of this process (agent and controller run in it) with every export created.
    pub rss_bytes: u64,
}

impl Report {
    /// The table the README and the issue notes show.
    pub fn table(&self) -> String {
        let mut out = String::new();
        let ms = |d: Duration| format!("{:.1} ms", d.as_secs_f64() * 1000.0);
        let _ = writeln!(out, "| scenario | n | p50 | p99 | rate |");
        let _ = writeln!(out, "|---|---|---|---|---|");
        for s in [
            &self.sequential,
            &self.concurrent,
            &self.publishes,
            &self.fan_out,
            &self.fan_out_attacher,
            &self.first_publishes,
            &self.deletes,
        ] {
            let (p50, p99) = s.p50_p99(0..s.latencies.len());
            let _ = writeln!(
                out,
                "| {} | {} | {} | {} | {:.0}/s |",
                s.label,
                s.latencies.len(),
                ms(p50),
                ms(p99),
                s.rate()
            );
        }
        for (samples, what) in [
            (&self.sequential, ("creates", "one at a time")),
            (&self.concurrent, ("creates", "32 at a time")),
            (
                &self.first_publishes,
                ("first publishes", &*format!("{ATTACHER_WORKERS} at a time")),
            ),
        ] {
            let n = samples.latencies.len();
            let step = (n / 10).max(1);
            for start in (0..n).step_by(step) {
                let end = (start + step).min(n);
                let (p50, p99) = samples.p50_p99(start..end);
                let _ = writeln!(
                    out,
                    "| {}, {}–{} ({}) | {} | {} | {} | |",
                    what.0,
                    start + 1,
                    end,
                    what.1,
                    end - start,
                    ms(p50),
                    ms(p99)
                );
            }
        }
        let _ = writeln!(
            out,
            "| Reconcile of every export | {} | {} | | |",
            self.reconcile.1,
            ms(self.reconcile.0)
        );
        let _ = writeln!(
            out,
            "| agent start to READY (open the table, reconcile) | {} | {} | | |",
            self.start.1,
            ms(self.start.0)
        );
        let _ = writeln!(
            out,
            "| agent start to READY, kernel exporter (etab to a scratch directory) | {} | {} | | |",
            self.kernel_start.1,
            ms(self.kernel_start.0)
        );
        let _ = writeln!(
            out,
            "| resident memory, agent and controller in one process | {} exports | {:.1} MiB | | |",
            self.reconcile.1,
            self.rss_bytes as f64 / 1048576.0
        );
        out
    }

    /// The ratios the test command holds the stack to: creating the last tenth costs at most
    /// 1.5× the first tenth at the median (with 2 ms of slack), and 32 creates at a time are
    /// faster than one at a time. The median, because the p99 of a tenth of a short run is
    /// one sample, which a busy build machine moves by 100 ms; a cost that grows with the
    /// table moves the median. The full run reports the p99 per thousand.
    pub fn check(&self) -> Result<(), String> {
        let n = self.sequential.latencies.len();
        let tenth = (n / 10).max(1);
        let (first, _) = self.sequential.p50_p99(0..tenth);
        let (last, _) = self.sequential.p50_p99(n - tenth..n);
        let mut problems = Vec::new();
        if last > first.mul_f64(1.5) + Duration::from_millis(2) {
            problems.push(format!(
                "creates slow down with the table's size: the median of the last {tenth} is \
                 {last:.2?}, of the first {tenth} {first:.2?} (more than 1.5×)"
            ));
        }
        if self.concurrent.rate() <= self.sequential.rate() {
            problems.push(format!(
                "32 creates at a time ({:.0}/s) are no faster than one at a time ({:.0}/s)",
                self.concurrent.rate(),
                self.sequential.rate()
            ));
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(problems.join("; "))
        }
    }
}

fn writer() -> csi::VolumeCapability {
    csi::VolumeCapability {
        access_type: Some(csi::volume_capability::AccessType::Mount(Default::default())),
        access_mode: Some(csi::volume_capability::AccessMode {
            mode: csi::volume_capability::access_mode::Mode::MultiNodeMultiWriter as i32,
        }),
    }
}

async fn creates(
    controller: &ControllerClient<tonic::transport::Channel>,
    prefix: &str,
    total: usize,
    width: usize,
) -> (Samples, Vec<String>) {
    let controller = controller.clone();
    let prefix = prefix.to_owned();
    let label = format!(
        "CreateVolume, {}",
        if width == 1 {
            "one at a time".to_string()
        } else {
            format!("{width} at a time")
        }
    );
    let (samples, wall) = at_once(total, width, move |i| {
        let mut controller = controller.clone();
        let name = format!("{prefix}-{i}");
        async move {
            let req = csi::CreateVolumeRequest {
                name,
                capacity_range: Some(csi::CapacityRange {
                    required_bytes: 1 << 30,
                    limit_bytes: 0,
                }),
                volume_capabilities: vec![writer()],
                ..Default::default()
            };
            let volume = controller
                .create_volume(req)
                .await
                .expect("CreateVolume")
                .into_inner()
                .volume
                .expect("a volume");
            volume.volume_id
        }
    })
    .await;
    let ids = samples.iter().map(|(_, id)| id.clone()).collect();
    (
        Samples {
            label,
            latencies: samples.into_iter().map(|(d, _)| d).collect(),
            wall,
        },
        ids,
    )
}

fn rss_bytes() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        })
        .map_or(0, |kb| kb * 1024)
}

/// ControllerPublishVolume calls the external-attacher has in flight at most: its
/// `--worker-threads`, 10 unless set (the manifests leave it).
pub const ATTACHER_WORKERS: usize = 10;

/// Publishes every (volume, node) pair, `width` at a time.
async fn publish_at_once(
    controller: &ControllerClient<tonic::transport::Channel>,
    label: &str,
    pairs: Vec<(String, String)>,
    width: usize,
) -> Samples {
    let controller = controller.clone();
    let pairs = Arc::new(pairs);
    let total = pairs.len();
    let (published, wall) = at_once(total, width.min(total).max(1), move |i| {
        let mut controller = controller.clone();
        let (volume_id, node_id) = pairs[i].clone();
        async move {
            let req = csi::ControllerPublishVolumeRequest {
                volume_id,
                node_id,
                volume_capability: Some(writer()),
                ..Default::default()
            };
            controller
                .controller_publish_volume(req)
                .await
                .expect("ControllerPublishVolume");
        }
    })
    .await;
    Samples {
        label: label.to_owned(),
        latencies: published.into_iter().map(|(d, ())| d).collect(),
        wall,
    }
}

/// The id of the `i`th node of the fan-out scenario ([`node_map`]).
fn node_id(i: usize) -> String {
    format!("fan-{i:04}")
}

/// The controller's node map for the benchmark: [`NODE_ID`] on 127.0.0.1 and `nodes` more,
/// each on an address of its own.
pub fn node_map(nodes: usize) -> Vec<(String, std::net::IpAddr)> {
    let mut map = vec![(NODE_ID.to_owned(), std::net::IpAddr::from([127, 0, 0, 1]))];
    map.extend((0..nodes).map(|i| {
        let addr = std::net::IpAddr::from([10, 200, (i / 250) as u8, (i % 250 + 1) as u8]);
        (node_id(i), addr)
    }));
    map
}

/// The exports in the agent's table, a page of 1,000 at a time.
async fn count_exports(agent: &mut AgentClient<tonic::transport::Channel>) -> usize {
    let (mut count, mut token) = (0, String::new());
    loop {
        let page = agent
            .list_exports(pb::ListExportsRequest {
                max_entries: 1000,
                starting_token: token,
            })
            .await
            .expect("ListExports")
            .into_inner();
        count += page.exports.len();
        if page.next_token.is_empty() {
            return count;
        }
        token = page.next_token;
    }
}

/// The stack over real NFS-Ganesha (in a network namespace, on a private D-Bus:
/// [`rwxnfs_testbed::GaneshaServer`]), with the agent's table and exports in a temporary
/// directory. Needs root and the test packages.
pub struct GaneshaStack {
    pub stack: Stack,
    server: rwxnfs_testbed::GaneshaServer,
    _dir: tempfile::TempDir,
}

impl GaneshaStack {
    pub async fn start(name: &str, config: &BenchConfig) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let server = rwxnfs_testbed::GaneshaServer::start(dir.path(), name);
        let nodes = node_map(config.nodes);
        let nodes: Vec<(&str, std::net::IpAddr)> = nodes
            .iter()
            .map(|(id, addr)| (id.as_str(), *addr))
            .collect();
        let stack = Stack::start_with_nodes(
            |root| Arc::new(rwxnfs_agent::fs::plain::PlainFs::open(&root).expect("export root")),
            server.exporter.clone(),
            &nodes,
        )
        .await;
        Self {
            stack,
            server,
            _dir: dir,
        }
    }

    /// A new exporter for the same Ganesha, as a restarted agent makes.
    pub fn fresh_exporter(&self) -> Arc<dyn Exporter> {
        self.server.fresh_exporter()
    }
}

/// A second agent over `stack`'s table and export root, with a new exporter from
/// `exporter` (the same NFS server), timed from opening the table to the end of its first
/// reconcile: what `rwxnfs agent` does before it says READY.
async fn start_agent(stack: &Stack, exporter: Arc<dyn Exporter>) -> (Duration, usize) {
    let started = Instant::now();
    let state = stack.dir.path().join("state");
    let root = stack.dir.path().join("exports");
    let table =
        tokio::task::block_in_place(move || Table::open(&state)).expect("the table opens again");
    let fs: Arc<dyn VolumeFs> = Arc::new(PlainFs::open(&root).expect("export root"));
    let agent = ExportAgent::new(Settings::default(), table, fs, exporter);
    let report = agent.reconcile().await.expect("the new agent reconciles");
    (started.elapsed(), report.activated.len())
}

/// Runs every scenario against `stack` and checks that every acknowledged create is in the
/// agent's table and every acknowledged delete gone. `exporter` makes a new exporter for the
/// same NFS server, for the agent start scenario.
pub async fn run(
    stack: &Stack,
    config: &BenchConfig,
    exporter: impl Fn() -> Arc<dyn Exporter>,
) -> Report {
    let mut agent = AgentClient::new(stack.agent.connect().await.expect("agent"));
    let controller = ControllerClient::new(stack.controller.connect().await.expect("controller"));

    let (sequential, mut ids) = creates(&controller, "seq", config.sequential, 1).await;
    let (concurrent, more) = creates(&controller, "par", config.concurrent, 32).await;
    ids.extend(more);
    let listed = count_exports(&mut agent).await;
    assert_eq!(
        listed,
        ids.len(),
        "an acknowledged create is not in the table"
    );
    let rss_bytes = rss_bytes();

    let to_the_node = |ids: &[String]| -> Vec<(String, String)> {
        ids.iter()
            .map(|id| (id.clone(), NODE_ID.to_owned()))
            .collect()
    };
    let (first, rest) = ids.split_at(config.publishes.min(ids.len()));
    let to_one_node = to_the_node(first);
    let publishes = publish_at_once(
        &controller,
        "ControllerPublishVolume, all at once",
        to_one_node,
        usize::MAX,
    )
    .await;
    let to_every_node = (0..config.nodes)
        .map(|i| (ids[0].clone(), node_id(i)))
        .collect();
    let fan_out = publish_at_once(
        &controller,
        "ControllerPublishVolume, one volume to every node at once",
        to_every_node,
        usize::MAX,
    )
    .await;
    let to_every_node = (0..config.nodes)
        .map(|i| (ids[1].clone(), node_id(i)))
        .collect();
    let fan_out_attacher = publish_at_once(
        &controller,
        &format!(
            "ControllerPublishVolume, another volume to every node, {ATTACHER_WORKERS} at a time (the external-attacher's workers)"
        ),
        to_every_node,
        ATTACHER_WORKERS,
    )
    .await;
    let first_publishes = publish_at_once(
        &controller,
        &format!(
            "ControllerPublishVolume, every other volume's first, {ATTACHER_WORKERS} at a time"
        ),
        to_the_node(rest),
        ATTACHER_WORKERS,
    )
    .await;
    for (i, id) in ids.iter().take(2).enumerate() {
        let granted = agent
            .get_export(pb::GetExportRequest {
                name: id.rsplit(':').next().unwrap_or_default().to_owned(),
            })
            .await
            .expect("GetExport")
            .into_inner()
            .export
            .expect("an export")
            .clients
            .len();
        assert_eq!(
            granted,
            config.nodes + usize::from(config.publishes > i),
            "an acknowledged publish is not among the export's clients"
        );
    }

    let started = Instant::now();
    let reconciled = agent
        .reconcile(pb::ReconcileRequest {})
        .await
        .expect("Reconcile")
        .into_inner()
        .activated
        .len();
    let reconcile = (started.elapsed(), reconciled);
    let start = start_agent(stack, exporter()).await;
    let scratch = stack.dir.path().join("kernel");
    let kernel = rwxnfs_agent::exporter::kernel::KernelExporter::direct(
        scratch.join("var/lib/nfs/etab"),
        stack.dir.path().join("exports"),
        scratch.join("proc/net/rpc"),
    );
    let kernel_start = start_agent(stack, Arc::new(kernel)).await;

    let (deleted, wall) = {
        let controller = controller.clone();
        let ids = Arc::new(ids);
        at_once(ids.len(), 32, move |i| {
            let mut controller = controller.clone();
            let volume_id = ids[i].clone();
            async move {
                controller
                    .delete_volume(csi::DeleteVolumeRequest {
                        volume_id,
                        ..Default::default()
                    })
                    .await
                    .expect("DeleteVolume");
            }
        })
        .await
    };
    let deletes = Samples {
        label: "DeleteVolume, 32 at a time".into(),
        latencies: deleted.into_iter().map(|(d, ())| d).collect(),
        wall,
    };
    let left = count_exports(&mut agent).await;
    assert_eq!(
        left, 0,
        "an acknowledged delete left its export in the table"
    );
    Report {
        sequential,
        concurrent,
        publishes,
        fan_out,
        fan_out_attacher,
        first_publishes,
        deletes,
        reconcile,
        start,
        kernel_start,
        rss_bytes,
    }
}
