//! Latency and throughput of export creation, end to end over real NFS-Ganesha:
//!
//!     cargo run --release -p rwxnfs-tests --example bench
//!
//! Needs root and the test packages (scripts/install-test-deps). Prints numbers; asserts
//! nothing. Every loop is bounded.

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use rwxnfs_agent::{
    exporter::ganesha::{GaneshaExporter, GaneshaSettings, INCLUDE_FILE},
    fs::plain::PlainFs,
};
use rwxnfs_proto::{
    agent::{self as pb, agent_client::AgentClient},
    csi::{self, controller_client::ControllerClient},
};
use rwxnfs_testbed::{Dbus, Ganesha, Netns, require};
use rwxnfs_tests::{NODE_ID, Stack};

fn summary(label: &str, mut samples: Vec<Duration>, wall: Duration) {
    samples.sort();
    let p = |q: f64| samples[((samples.len() as f64 - 1.0) * q) as usize];
    println!(
        "{label}: n={} p50={:.2?} p99={:.2?} max={:.2?} wall={:.2?} rate={:.0}/s",
        samples.len(),
        p(0.5),
        p(0.99),
        p(1.0),
        wall,
        samples.len() as f64 / wall.as_secs_f64()
    );
}

fn writer() -> csi::VolumeCapability {
    csi::VolumeCapability {
        access_type: Some(csi::volume_capability::AccessType::Mount(Default::default())),
        access_mode: Some(csi::volume_capability::AccessMode {
            mode: csi::volume_capability::access_mode::Mode::MultiNodeMultiWriter as i32,
        }),
    }
}

async fn concurrent<F, Fut>(total: usize, width: usize, f: F) -> (Vec<Duration>, Duration)
where
    F: Fn(usize) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = ()> + Send,
{
    let f = Arc::new(f);
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..width {
        let (f, next) = (f.clone(), next.clone());
        tasks.push(tokio::spawn(async move {
            let mut samples = Vec::new();
            loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                if i >= total {
                    return samples;
                }
                let t = Instant::now();
                f(i).await;
                samples.push(t.elapsed());
            }
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.expect("worker"));
    }
    (all, started.elapsed())
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    require(&["ip", "ganesha.nfsd", "dbus-daemon", "dbus-send"]);
    let dir = tempfile::tempdir().expect("tempdir");
    let bus = Dbus::start(dir.path());
    let server = Netns::new("bench");
    let conf_dir = dir.path().join("ganesha-exports");
    std::fs::create_dir_all(&conf_dir).expect("conf dir");
    let _ganesha = Ganesha::start(
        &server,
        &bus,
        dir.path(),
        &conf_dir.join(INCLUDE_FILE),
        &dir.path().join("recovery"),
        "bench",
    );
    let exporter = Arc::new(
        GaneshaExporter::new(GaneshaSettings {
            dbus_address: Some(bus.address()),
            name_prefix: Some("bench".into()),
            conf_dir,
            protocols: vec![4],
        })
        .expect("exporter"),
    );
    let stack = Stack::start(
        |root| Arc::new(PlainFs::open(&root).expect("root")),
        exporter,
    )
    .await;
    let agent = AgentClient::new(stack.agent.connect().await.expect("agent"));
    let controller = ControllerClient::new(stack.controller.connect().await.expect("controller"));

    // 1. CreateExport, one at a time.
    let (samples, wall) = {
        let agent = agent.clone();
        concurrent(1000, 1, move |i| {
            let mut agent = agent.clone();
            async move {
                let req = pb::CreateExportRequest {
                    name: format!("seq-{i}"),
                    required_bytes: 1 << 30,
                    ..Default::default()
                };
                agent.create_export(req).await.expect("create");
            }
        })
        .await
    };
    println!(
        "1st create {:.2?}, 1000th create {:.2?}",
        samples[0], samples[999]
    );
    summary("agent CreateExport, sequential", samples, wall);

    // 2. CreateExport, 32 at a time.
    let (samples, wall) = {
        let agent = agent.clone();
        concurrent(1000, 32, move |i| {
            let mut agent = agent.clone();
            async move {
                let req = pb::CreateExportRequest {
                    name: format!("par-{i}"),
                    required_bytes: 1 << 30,
                    ..Default::default()
                };
                agent.create_export(req).await.expect("create");
            }
        })
        .await
    };
    summary("agent CreateExport, 32 concurrent", samples, wall);

    // 3. CreateVolume through the controller, at concurrency 1 and 32.
    for (label, width, total) in [
        ("controller CreateVolume, concurrency 1", 1, 200),
        ("controller CreateVolume, concurrency 32", 32, 500),
    ] {
        let controller = controller.clone();
        let prefix = format!("cv{width}");
        let (samples, wall) = concurrent(total, width, move |i| {
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
                controller.create_volume(req).await.expect("create volume");
            }
        })
        .await;
        summary(label, samples, wall);
    }

    // 4. ControllerPublishVolume of existing volumes to one node.
    let (samples, wall) = {
        let controller = controller.clone();
        concurrent(200, 1, move |i| {
            let mut controller = controller.clone();
            async move {
                let req = csi::ControllerPublishVolumeRequest {
                    volume_id: format!("vol1:local:cv1-{i}"),
                    node_id: NODE_ID.into(),
                    volume_capability: Some(writer()),
                    ..Default::default()
                };
                controller
                    .controller_publish_volume(req)
                    .await
                    .expect("publish");
            }
        })
        .await
    };
    summary("controller ControllerPublishVolume", samples, wall);
    stack.stop().await;
}
