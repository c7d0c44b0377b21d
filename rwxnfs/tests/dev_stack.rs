//! `rwxnfs dev` end to end: the binary starts a private D-Bus, NFS-Ganesha, the agent, the
//! controller and the node plugin; every conformance spec that needs no kernel NFS mount passes against it
//! (the volumes are real Ganesha exports); SIGTERM stops everything it started.
#![allow(unsafe_code)] // signals sent to the processes under test (libc::kill)
#![allow(clippy::unwrap_used)]

use std::{
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use csi_sanity::Config;
use rwxnfs_server::Endpoint;
use rwxnfs_testbed::free_port;

fn pids_of(name: &str) -> Vec<String> {
    let out = Command::new("pgrep").args(["-x", name]).output().unwrap();
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_owned)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dev_stack_passes_the_controller_specs_over_real_ganesha() {
    for tool in ["ganesha.nfsd", "dbus-daemon"] {
        assert!(
            Command::new("which")
                .arg(tool)
                .output()
                .unwrap()
                .status
                .success(),
            "{tool} is missing: run scripts/install-test-deps"
        );
    }
    let state = tempfile::tempdir().unwrap();
    let ganesha_before = pids_of("ganesha.nfsd");
    let mut dev = Command::new(env!("CARGO_BIN_EXE_rwxnfs"))
        .args([
            "--log-format",
            "json",
            "dev",
            "--node-id",
            "dev-node",
            "--nfs-port",
        ])
        .arg(free_port().to_string())
        .arg("--state-dir")
        .arg(state.path())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let controller = state.path().join("controller.sock");
    let started = Instant::now();
    while std::os::unix::net::UnixStream::connect(&controller).is_err() {
        if let Some(status) = dev.try_wait().unwrap() {
            panic!("rwxnfs dev exited early: {status}");
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "rwxnfs dev did not start"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    println!("rwxnfs dev serving after {:?}", started.elapsed());

    let mut config = Config::new(Endpoint::Unix(state.path().join("node.sock")));
    config.controller_endpoint = Some(Endpoint::Unix(controller));
    config.staging_dir = state.path().join("csi-staging");
    config.target_dir = state.path().join("csi-target");
    // These stage a volume, which needs a kernel NFS client: they run in the VM tier.
    config.skip = [
        "Node Service should work",
        "Node Service should be idempotent",
        "NodeUnpublishVolume should remove target path",
        "NodeGetVolumeStats should fail when volume does not exist on the specified path",
        "with single node multi writer capability",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    config.test_volume_size = 1 << 30;
    config.test_volume_expand_size = 2 << 30;
    let mut out = Vec::new();
    let report = csi_sanity::run(config, &mut out).await;

    // Stop it before asserting, so a failure leaves nothing running.
    // SAFETY: kill(2) on the PID of a child we spawned and have not reaped.
    unsafe { libc::kill(dev.id() as libc::pid_t, libc::SIGTERM) };
    let stopping = Instant::now();
    let status = loop {
        if let Some(status) = dev.try_wait().unwrap() {
            break Some(status);
        }
        if stopping.elapsed() > Duration::from_secs(15) {
            let _ = dev.kill();
            let _ = dev.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(20));
    };

    let report = report.unwrap();
    print!("{}", String::from_utf8_lossy(&out));
    let failed = report.failures();
    assert!(failed.is_empty(), "failed: {failed:#?}");
    assert_eq!(report.passed(), 72, "{}", report.summary());
    assert!(
        status.is_some_and(|s| s.success()),
        "rwxnfs dev did not exit cleanly on SIGTERM: {status:?}"
    );
    assert_eq!(
        pids_of("ganesha.nfsd"),
        ganesha_before,
        "rwxnfs dev left Ganesha running"
    );
    let leftover: Vec<_> = std::fs::read_dir(state.path().join("agent/ganesha"))
        .unwrap()
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("export-"))
        .collect();
    assert!(leftover.is_empty(), "exports left behind: {leftover:?}");
}
