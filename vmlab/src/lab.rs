//! The VMs of one test or walkthrough.
//!
//! A [`Lab`] owns everything one test starts: the VMs, the private network that joins them
//! (a [`Hub`] on loopback) and their logs, which stay under `target/tmp/vm/<test>/` and are
//! printed when the test fails. Every VM gets
//! - the project's binaries, read-only over 9p at `/opt/rwxnfs` (first on its `PATH`);
//! - its own work directory over 9p at `/work`: the boot script goes in, daemons' logs come
//!   out, and [`Vm::run`] drops commands there that the guest's init executes;
//! - `eth0`, QEMU's user network with `restrict=on`: nothing leaves the guest through it, it
//!   only carries the host's forwarded ports to the guest ([`Vm::port`]);
//! - `eth1` on the lab's network (10.99.0.0/24) when the VM has an address there.
//!
//! QEMU processes are killed by their PID when the VM (or the lab) drops, on every exit path.

use std::{
    collections::HashMap,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::atomic::{AtomicU32, Ordering},
    time::{Duration, Instant},
};

use crate::{Hub, Image, Kernel, free_port};

/// What one VM is made of.
#[derive(Clone, Debug)]
pub struct VmSpec {
    pub name: String,
    pub memory_mb: u32,
    /// Its address on the lab network (10.99.0.N/24), if it joins it.
    pub lan: Option<u8>,
    /// Guest TCP ports the host reaches through 127.0.0.1.
    pub forwards: Vec<u16>,
    /// `(port, host port)`: the guest's connections to 10.0.2.100:port reach the host's
    /// 127.0.0.1:host port (a server the test runs on the host); nothing else is reachable.
    pub host_services: Vec<(u16, u16)>,
    /// Filesystem images the VM gets a copy of (sparse), as its first virtio disks.
    pub disk_images: Vec<PathBuf>,
    /// Sizes of empty virtio disks (`/dev/vda`, `/dev/vdb`, ... after `disk_images`), in MiB.
    pub disks_mb: Vec<u64>,
    /// Shell run at boot, after the network is up; its output goes to `/work/boot.log`.
    pub boot: String,
    /// Boots the Kubernetes node initramfs on a tmpfs root (runc cannot pivot away from the
    /// initramfs' rootfs).
    pub kube: bool,
    /// `(host directory, guest path)`: more directories shared read-only over 9p, mounted
    /// before the boot script runs.
    pub shares: Vec<(PathBuf, String)>,
    /// `(name, contents)`: files written into the VM's work directory (`/work/name`) before
    /// it boots, such as its credentials.
    pub files: Vec<(String, String)>,
    /// Virtual CPUs; more than one uses more host threads (MTTCG).
    pub cpus: u8,
    /// Records every frame of its lab network interface, as QEMU passes it (a `filter-dump`
    /// on the netdev: no tool in the guest), to `lan.pcap` in its work directory
    /// ([`crate::pcap`] reads it).
    pub capture: bool,
}

impl VmSpec {
    pub fn new(name: &str) -> VmSpec {
        VmSpec {
            name: name.into(),
            memory_mb: 320,
            lan: None,
            forwards: Vec::new(),
            host_services: Vec::new(),
            disk_images: Vec::new(),
            disks_mb: Vec::new(),
            boot: String::new(),
            kube: false,
            shares: Vec::new(),
            files: Vec::new(),
            cpus: 1,
            capture: false,
        }
    }
}

/// One test's VMs, network and logs.
pub struct Lab {
    dir: PathBuf,
    image: Image,
    bin_dir: PathBuf,
    hub: Hub,
    names: Vec<(String, PathBuf)>,
}

impl Lab {
    /// `name` names the log directory; `bin` is a binary of this build whose directory the VMs
    /// share (e.g. `env!("CARGO_BIN_EXE_rwxnfs")`). The VMs boot the kernel
    /// [`Kernel::from_env`] names (`RWXNFS_VM_KERNEL`; Debian bookworm's 6.1 by default).
    pub fn new(name: &str, target_tmp: &Path, bin: &Path) -> Lab {
        Lab::with_kernel(name, target_tmp, bin, Kernel::from_env())
    }

    /// As [`Lab::new`], with the VMs on `kernel` whatever the environment says: for a test
    /// that runs a scenario on each kernel.
    pub fn with_kernel(name: &str, target_tmp: &Path, bin: &Path, kernel: Kernel) -> Lab {
        require_qemu();
        let image = Image::get_for(kernel, target_tmp);
        let dir = target_tmp.join("vm").join(name);
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("create the lab's directory");
        let bin_dir = bin
            .parent()
            .expect("the binary has a directory")
            .to_path_buf();
        Lab {
            dir,
            image,
            bin_dir,
            hub: Hub::start(),
            names: Vec::new(),
        }
    }

    /// The kernel (and Debian release) its VMs boot.
    pub fn kernel(&self) -> Kernel {
        self.image.release
    }

    /// Where this lab keeps its logs.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The loopback port of the lab network's hub, for more peers than its VMs (a
    /// [`LanPort`](crate::LanPort)).
    pub fn hub_port(&self) -> u16 {
        self.hub.port()
    }

    /// Boots a VM; [`Vm::wait_ready`] waits for its boot script to finish.
    pub fn start(&mut self, spec: VmSpec) -> Vm {
        self.boot(spec, false)
    }

    /// Powers a VM of this lab on again after [`Vm::kill`]: the same work directory and the
    /// same virtio disks, as they were when the power went (`disks_mb` creates none anew;
    /// `disk_images` are not copied again), and `spec`'s boot script, which must not format
    /// what the disks hold.
    pub fn power_on(&mut self, spec: VmSpec) -> Vm {
        let cmd = self.dir.join(&spec.name).join("cmd");
        // The commands of the VM's last life, whose numbers the new one would reuse.
        let _ = std::fs::remove_dir_all(&cmd);
        self.boot(spec, true)
    }

    fn boot(&mut self, spec: VmSpec, again: bool) -> Vm {
        let index = self.names.len() as u8 + 1;
        let work = self.dir.join(&spec.name);
        std::fs::create_dir_all(work.join("cmd")).expect("create the VM's work directory");
        std::fs::write(work.join("boot"), boot_script(&spec)).expect("write the boot script");
        for (name, contents) in &spec.files {
            let path = work.join(name);
            if let Some(parent) = path.parent() {
                std::fs::create_dir_all(parent).expect("create a directory for a VM's file");
            }
            std::fs::write(&path, contents).expect("write a VM's file");
        }
        let forwards: HashMap<u16, u16> = spec.forwards.iter().map(|&p| (p, free_port())).collect();
        let mut disks = Vec::new();
        for (i, image) in spec.disk_images.iter().enumerate() {
            let path = work.join(format!("image{i}.img"));
            if again && path.exists() {
                disks.push(path);
                continue;
            }
            let status = Command::new("cp")
                .arg("--sparse=always")
                .arg(image)
                .arg(&path)
                .status()
                .expect("run cp");
            assert!(status.success(), "cannot copy {}", image.display());
            disks.push(path);
        }
        for (i, size) in spec.disks_mb.iter().enumerate() {
            let path = work.join(format!("disk{i}.img"));
            if again && path.exists() {
                disks.push(path);
                continue;
            }
            let file = std::fs::File::create(&path).expect("create a disk image");
            file.set_len(size << 20).expect("size the disk image");
            disks.push(path);
        }
        let serial = work.join("serial.log");
        let mut cmd = Command::new("qemu-system-x86_64");
        let (initrd, root) = if spec.kube {
            (&self.image.kube_initrd, " rwxnfs.tmpfsroot")
        } else {
            (&self.image.initrd, "")
        };
        cmd.args(["-accel", "tcg", "-nographic", "-no-reboot"])
            .arg("-smp")
            .arg(spec.cpus.max(1).to_string())
            .arg("-m")
            .arg(spec.memory_mb.to_string())
            .arg("-kernel")
            .arg(&self.image.kernel)
            .arg("-initrd")
            .arg(initrd)
            .arg("-append")
            // no_timer_check: the kernel's check that the timer interrupt reaches the IO-APIC
            // times itself in loops; on an emulated CPU that a busy host starves, it fails and
            // panics the boot ("IO-APIC + timer doesn't work!"), seen on this machine at a
            // load of 9. The timer works; the check is what virtual machines skip.
            .arg(format!(
                "console=ttyS0 quiet panic=-1 no_timer_check rwxnfs.hostname={}{root}",
                spec.name
            ))
            .arg("-virtfs")
            .arg(format!(
                "local,path={},mount_tag=rwxnfs-bin,security_model=none,readonly=on",
                self.bin_dir.display()
            ))
            .arg("-virtfs")
            .arg(format!(
                "local,path={},mount_tag=rwxnfs-work,security_model=none",
                work.display()
            ));
        for (i, (dir, _)) in spec.shares.iter().enumerate() {
            cmd.arg("-virtfs").arg(format!(
                "local,path={},mount_tag=rwxnfs-share{i},security_model=none,readonly=on",
                dir.display()
            ));
        }
        let hostfwd: String = forwards
            .iter()
            .map(|(guest, host)| format!(",hostfwd=tcp:127.0.0.1:{host}-:{guest}"))
            .chain(spec.host_services.iter().map(|(port, host)| {
                format!(",guestfwd=tcp:10.0.2.100:{port}-tcp:127.0.0.1:{host}")
            }))
            .collect();
        cmd.args(["-device", "virtio-net-pci,netdev=user0,romfile="])
            .arg("-netdev")
            .arg(format!("user,id=user0,restrict=on{hostfwd}"));
        if spec.lan.is_some() {
            cmd.arg("-device")
                .arg(format!(
                    "virtio-net-pci,netdev=lan0,romfile=,mac=52:54:00:99:00:{index:02x}"
                ))
                .arg("-netdev")
                .arg(format!(
                    "socket,id=lan0,connect=127.0.0.1:{}",
                    self.hub.port()
                ));
            if spec.capture {
                cmd.arg("-object").arg(format!(
                    "filter-dump,id=lancap,netdev=lan0,file={}",
                    work.join("lan.pcap").display()
                ));
            }
        }
        for disk in &disks {
            cmd.arg("-drive")
                .arg(format!("file={},if=virtio,format=raw", disk.display()));
        }
        let child = cmd
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(&serial).expect("create the serial log"))
            .stderr(Stdio::null())
            .spawn()
            .expect("start qemu-system-x86_64");
        if !self.names.iter().any(|(name, _)| *name == spec.name) {
            self.names.push((spec.name.clone(), work.clone()));
        }
        Vm {
            name: spec.name,
            child: Some(child),
            work,
            forwards,
            started: Instant::now(),
            seq: AtomicU32::new(0),
        }
    }
}

impl Drop for Lab {
    /// A failing test shows what every VM printed and logged.
    fn drop(&mut self) {
        if !std::thread::panicking() {
            return;
        }
        for (name, work) in &self.names {
            let Ok(entries) = std::fs::read_dir(work) else {
                continue;
            };
            for entry in entries.flatten() {
                let path = entry.path();
                if path.extension().is_some_and(|e| e == "log") {
                    let text = std::fs::read_to_string(&path).unwrap_or_default();
                    let tail: Vec<&str> = text.lines().rev().take(60).collect();
                    eprintln!("--- {name}: {} (last 60 lines) ---", path.display());
                    for line in tail.iter().rev() {
                        eprintln!("{line}");
                    }
                }
            }
        }
        eprintln!("--- the logs are kept under {} ---", self.dir.display());
    }
}

/// Fails loudly, with the fix, where QEMU is missing.
fn require_qemu() {
    let found = std::env::var_os("PATH").is_some_and(|path| {
        std::env::split_paths(&path).any(|dir| dir.join("qemu-system-x86_64").is_file())
    });
    assert!(
        found,
        "qemu-system-x86_64 is not installed: scripts/install-test-deps installs it (Debian \
         package qemu-system-x86)"
    );
}

fn boot_script(spec: &VmSpec) -> String {
    let mut s = String::from("set -ex\nip addr add 10.0.2.15/24 dev eth0\nip link set eth0 up\n");
    if let Some(n) = spec.lan {
        s.push_str(&format!(
            "ip addr add 10.99.0.{n}/24 dev eth1\nip link set eth1 up\n"
        ));
    }
    for (i, (_, guest)) in spec.shares.iter().enumerate() {
        s.push_str(&format!(
            "mkdir -p {guest}\nmount -t 9p -o trans=virtio,version=9p2000.L,cache=loose,ro rwxnfs-share{i} {guest}\n"
        ));
    }
    s.push_str(&spec.boot);
    s
}

/// A running VM. Dropping it kills QEMU.
pub struct Vm {
    pub name: String,
    child: Option<Child>,
    work: PathBuf,
    forwards: HashMap<u16, u16>,
    started: Instant,
    seq: AtomicU32,
}

/// What a command in the guest printed and how it ended.
#[derive(Debug)]
pub struct Output {
    pub rc: i32,
    pub out: String,
}

impl Vm {
    /// The host port (on 127.0.0.1) that leads to the guest's TCP `port`.
    pub fn port(&self, guest: u16) -> u16 {
        *self
            .forwards
            .get(&guest)
            .unwrap_or_else(|| panic!("{}: port {guest} is not forwarded", self.name))
    }

    /// The VM's work directory on the host (`/work` in the guest).
    pub fn work(&self) -> &Path {
        &self.work
    }

    /// Waits until init has run the boot script; returns the time since QEMU started.
    pub fn wait_ready(&mut self, limit: Duration) -> Duration {
        let serial = self.work.join("serial.log");
        loop {
            let text = std::fs::read_to_string(&serial).unwrap_or_default();
            if text.contains("VM-READY") {
                break;
            }
            if let Some(status) = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                panic!("{}: QEMU exited during boot ({status})", self.name);
            }
            assert!(
                self.started.elapsed() < limit,
                "{}: not ready within {limit:?}",
                self.name
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        let rc = std::fs::read_to_string(self.work.join("boot.rc")).unwrap_or_default();
        let boot = std::fs::read_to_string(self.work.join("boot.log")).unwrap_or_default();
        assert_eq!(
            rc.trim(),
            "0",
            "{}: the boot script failed:\n{boot}",
            self.name
        );
        self.started.elapsed()
    }

    /// Runs `script` with the guest's `sh`; fails the test when it does not end within `limit`.
    pub fn run(&self, script: &str, limit: Duration) -> Output {
        let n = self.seq.fetch_add(1, Ordering::SeqCst);
        let cmd = self.work.join("cmd");
        let tmp = cmd.join(format!("{n}.tmp"));
        std::fs::write(&tmp, script).expect("write a command");
        std::fs::rename(&tmp, cmd.join(format!("{n}.sh"))).expect("hand the command over");
        let rc_file = cmd.join(format!("{n}.rc"));
        let start = Instant::now();
        while !rc_file.exists() {
            assert!(
                start.elapsed() < limit,
                "{}: `{script}` did not finish within {limit:?}",
                self.name
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        let rc = std::fs::read_to_string(&rc_file)
            .unwrap_or_default()
            .trim()
            .parse()
            .unwrap_or(-1);
        let out = std::fs::read_to_string(cmd.join(format!("{n}.out"))).unwrap_or_default();
        Output { rc, out }
    }

    /// Runs `script` and returns its output; fails the test when it exits non-zero.
    pub fn sh(&self, script: &str) -> String {
        let output = self.run(script, Duration::from_secs(60));
        assert_eq!(
            output.rc, 0,
            "{}: `{script}` exited {}:\n{}",
            self.name, output.rc, output.out
        );
        output.out
    }

    /// Pulls the plug: QEMU is killed at once, as a host that loses power.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Vm {
    fn drop(&mut self) {
        self.kill();
    }
}
