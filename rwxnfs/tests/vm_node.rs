//! The node plugin in a real kernel: a QEMU VM (software emulation) boots Debian's kernel with
//! the NFS client, runs `rwxnfs node`, and our conformance runner drives it over TCP while
//! `rwxnfs dev` on this host provides the controller, the agent and NFS-Ganesha. Staging and
//! publishing are real NFSv4.2 mounts through the mount system call.
//!
//! The guest reaches nothing but two forwarded ports: its 10.0.2.100:2049 leads to the host's
//! Ganesha on loopback, and the host's loopback port leads to the node plugin.
#![allow(clippy::unwrap_used)]

use std::{
    io::Write,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use csi_sanity::{Config, Outcome};
use rwxnfs_server::Endpoint;
use rwxnfs_testbed::free_port;

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

/// One file of a newc cpio archive.
fn cpio_entry(out: &mut Vec<u8>, ino: u32, name: &str, mode: u32, data: &[u8]) {
    let header = format!(
        "070701{ino:08X}{mode:08X}{:08X}{:08X}{:08X}{:08X}{:08X}{:08X}{:08X}{:08X}{:08X}{:08X}{:08X}",
        0,
        0,
        1,
        0,
        data.len(),
        0,
        0,
        0,
        0,
        name.len() + 1,
        0
    );
    out.extend_from_slice(header.as_bytes());
    out.extend_from_slice(name.as_bytes());
    out.push(0);
    while !out.len().is_multiple_of(4) {
        out.push(0);
    }
    out.extend_from_slice(data);
    while !out.len().is_multiple_of(4) {
        out.push(0);
    }
}

/// The base image (built once from Debian packages and cached), plus this build's binary and
/// the scenario appended as a second archive.
fn initrd(dir: &Path, scenario: &str) -> (PathBuf, PathBuf) {
    let image = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("vm-image");
    let builder = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/vm/build-image");
    let status = Command::new(&builder).arg(&image).status().unwrap();
    assert!(
        status.success(),
        "tests/vm/build-image failed (needs qemu-system-x86, busybox-static: scripts/install-test-deps)"
    );
    let mut archive = Vec::new();
    cpio_entry(
        &mut archive,
        1,
        "bin/rwxnfs",
        0o100_755,
        &std::fs::read(env!("CARGO_BIN_EXE_rwxnfs")).unwrap(),
    );
    cpio_entry(&mut archive, 2, "scenario", 0o100_644, scenario.as_bytes());
    cpio_entry(&mut archive, 3, "TRAILER!!!", 0, &[]);
    let mut initrd = std::fs::read(image.join("base.cpio.gz")).unwrap();
    let mut gz = Command::new("gzip")
        .arg("-1")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = gz.stdin.take().unwrap();
    let writer = std::thread::spawn(move || stdin.write_all(&archive).unwrap());
    let compressed = gz.wait_with_output().unwrap().stdout;
    writer.join().unwrap();
    initrd.extend_from_slice(&compressed);
    let path = dir.join("initrd.gz");
    std::fs::write(&path, initrd).unwrap();
    (image.join("vmlinuz"), path)
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
    let (nfs_port, node_port) = (free_port(), free_port());
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
    let scenario = "ip addr add 10.0.2.15/24 dev eth0\nip link set eth0 up\nip route add default via 10.0.2.2\n\
                    exec /bin/rwxnfs --log-format text node --endpoint tcp://0.0.0.0:7000 --node-id vm-node\n";
    let (kernel, initrd) = initrd(dir.path(), scenario);
    let log = dir.path().join("serial.log");
    let started = Instant::now();
    let _vm = Guard(
        Command::new("qemu-system-x86_64")
            .args(["-accel", "tcg", "-m", "512", "-smp", "1", "-nographic", "-no-reboot", "-kernel"])
            .arg(&kernel)
            .arg("-initrd")
            .arg(&initrd)
            .args(["-append", "console=ttyS0 quiet panic=-1", "-device", "virtio-net-pci,netdev=n0", "-netdev"])
            .arg(format!(
                "user,id=n0,restrict=on,hostfwd=tcp:127.0.0.1:{node_port}-:7000,guestfwd=tcp:10.0.2.100:2049-tcp:127.0.0.1:{nfs_port}"
            ))
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(&log).unwrap())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let serial = || std::fs::read_to_string(&log).unwrap_or_default();
    wait_for(
        "the node plugin in the VM",
        Duration::from_secs(120),
        || serial().contains("listening"),
    );
    println!("VM booted and serving after {:?}", started.elapsed());
    wait_for("rwxnfs dev", Duration::from_secs(60), || {
        state.join("controller.sock").exists()
    });

    let mut config = Config::new(Endpoint::Tcp(format!("127.0.0.1:{node_port}")));
    config.controller_endpoint = Some(Endpoint::Unix(state.join("controller.sock")));
    config.focus = vec!["Node Service".into()];
    // It checks the target path on this host's filesystem, which the VM does not share.
    config.skip = vec!["should remove target path".into()];
    config.test_volume_size = 1 << 30;
    config.staging_dir = PathBuf::from("/tmp/csi-staging");
    config.target_dir = PathBuf::from("/tmp/csi-target");
    let mut out = Vec::new();
    let report = csi_sanity::run(config, &mut out).await.unwrap();
    print!("{}", String::from_utf8_lossy(&out));
    let failed: Vec<_> = report
        .results
        .iter()
        .filter(|(_, o)| matches!(o, Outcome::Failed(_)))
        .collect();
    if !failed.is_empty() {
        eprintln!("--- VM serial console ---\n{}", serial());
    }
    assert!(failed.is_empty(), "failed: {failed:#?}");
    assert_eq!(report.passed(), 19, "{}", report.summary());
    assert!(
        serial().contains("staged"),
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
