//! The node plugin in a real kernel: a QEMU VM (software emulation) boots Debian's kernel with
//! the NFS client, runs `rwxnfs node`, and our conformance runner drives it over TCP while
//! `rwxnfs dev` on this host provides the controller, the agent and NFS-Ganesha. Staging and
//! publishing are real NFSv4.2 mounts through the mount system call.
//!
//! The guest reaches nothing but two forwarded ports: its 10.0.2.100:2049 leads to the host's
//! Ganesha on loopback, and the host's loopback port leads to the node plugin.
#![allow(unsafe_code)] // signals sent to the processes under test (libc::kill)
#![allow(clippy::unwrap_used)]

use std::{
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use csi_sanity::Config;
use rwxnfs_server::Endpoint;
use rwxnfs_testbed::{
    free_port,
    vm::{Lab, VmSpec},
};

/// A process killed (by PID) and reaped when dropped.
struct Guard(Child);

impl Drop for Guard {
    /// SIGTERM first, so `rwxnfs dev` stops its Ganesha and bus; SIGKILL if it lingers.
    fn drop(&mut self) {
        // SAFETY: kill(2) on the PID of a child we spawned and have not reaped.
        unsafe { libc::kill(self.0.id() as libc::pid_t, libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_secs(15);
        while matches!(self.0.try_wait(), Ok(None)) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn wait_for(what: &str, limit: Duration, mut ready: impl FnMut() -> bool) {
    let start = Instant::now();
    while !ready() {
        assert!(start.elapsed() < limit, "{what} not ready within {limit:?}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_specs_pass_with_real_nfs_mounts_in_a_vm() {
    let dir = tempfile::tempdir().unwrap();
    let nfs_port = free_port();
    let state = dir.path().join("dev");
    let dev = Guard(
        Command::new(env!("CARGO_BIN_EXE_rwxnfs"))
            .args([
                "--log-format",
                "json",
                "dev",
                "--node-id",
                "vm-node",
                "--server-address",
                "10.0.2.100",
            ])
            .arg("--nfs-port")
            .arg(nfs_port.to_string())
            .arg("--state-dir")
            .arg(&state)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let mut lab = Lab::new(
        "node-ganesha",
        Path::new(env!("CARGO_TARGET_TMPDIR")),
        Path::new(env!("CARGO_BIN_EXE_rwxnfs")),
    );
    let mut vm = lab.start(VmSpec {
        forwards: vec![7000],
        host_services: vec![(2049, nfs_port)],
        boot: "modprobe nfsv4\nsetsid rwxnfs --log-format text node --endpoint tcp://0.0.0.0:7000 \
               --node-id vm-node > /work/node.log 2>&1 &\n"
            .into(),
        ..VmSpec::new("vm-node")
    });
    println!("VM booted in {:?}", vm.wait_ready(Duration::from_secs(180)));
    let node_port = vm.port(7000);
    let node_log = vm.work().join("node.log");
    wait_for("the node plugin in the VM", Duration::from_secs(60), || {
        std::fs::read_to_string(&node_log).is_ok_and(|l| l.contains("listening"))
    });
    wait_for("rwxnfs dev", Duration::from_secs(60), || {
        state.join("controller.sock").exists()
    });

    let mut config = Config::new(Endpoint::Tcp(format!("127.0.0.1:{node_port}")));
    config.controller_endpoint = Some(Endpoint::Unix(state.join("controller.sock")));
    config.focus = vec!["Node Service".into()];
    // It checks the target path on this host's filesystem, which the VM does not share.
    config.skip = vec!["should remove target path".into()];
    config.test_volume_size = 1 << 30;
    // Paths in the VM: nothing is created on this host.
    config.local_node = false;
    config.staging_dir = PathBuf::from("/tmp/csi-staging");
    config.target_dir = PathBuf::from("/tmp/csi-target");
    let mut out = Vec::new();
    let report = csi_sanity::run(config, &mut out).await.unwrap();
    print!("{}", String::from_utf8_lossy(&out));
    let failed = report.failures();
    assert!(failed.is_empty(), "failed: {failed:#?}");
    assert_eq!(report.passed(), 19, "{}", report.summary());
    assert!(
        std::fs::read_to_string(&node_log).is_ok_and(|l| l.contains("staged")),
        "the node plugin logged no NFS mount"
    );
    drop(dev);
    let left = Command::new("pgrep")
        .arg("-f")
        .arg(state.display().to_string())
        .output()
        .unwrap();
    assert!(
        left.stdout.is_empty(),
        "rwxnfs dev left processes behind: {}",
        String::from_utf8_lossy(&left.stdout)
    );
}
