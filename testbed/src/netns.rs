//! Network namespaces and the veth links between them.

use std::{
    fs::File,
    os::fd::AsFd,
    process::Command,
    sync::atomic::{AtomicU32, Ordering},
    thread,
};

use nix::sched::{CloneFlags, setns};

static COUNTER: AtomicU32 = AtomicU32::new(0);

/// A network namespace, deleted on drop.
pub struct Netns {
    pub name: String,
}

fn ip(args: &[&str]) {
    let out = Command::new("ip")
        .args(args)
        .output()
        .expect("ip (iproute2) must be installed");
    assert!(
        out.status.success(),
        "ip {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
}

impl Netns {
    /// A new namespace with loopback up; `label` goes into its (unique) name.
    pub fn new(label: &str) -> Self {
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let name = format!("rwx-{}-{n}-{label}", std::process::id());
        ip(&["netns", "add", &name]);
        ip(&["-n", &name, "link", "set", "lo", "up"]);
        Self { name }
    }

    /// Joins this namespace (the server side) to `other` with a veth pair on subnet
    /// 10.77.`subnet`.0/24: this side is .1, the other .2.
    pub fn link(&self, other: &Netns, subnet: u8) -> Link {
        let (here, there) = (format!("vs{subnet}"), format!("vc{subnet}"));
        ip(&[
            "link",
            "add",
            &here,
            "netns",
            &self.name,
            "type",
            "veth",
            "peer",
            "name",
            &there,
            "netns",
            &other.name,
        ]);
        let server = format!("10.77.{subnet}.1");
        let client = format!("10.77.{subnet}.2");
        ip(&[
            "-n",
            &self.name,
            "addr",
            "add",
            &format!("{server}/24"),
            "dev",
            &here,
        ]);
        ip(&[
            "-n",
            &other.name,
            "addr",
            "add",
            &format!("{client}/24"),
            "dev",
            &there,
        ]);
        ip(&["-n", &self.name, "link", "set", &here, "up"]);
        ip(&["-n", &other.name, "link", "set", &there, "up"]);
        Link { server, client }
    }

    /// A command run inside this network namespace. It keeps this process's mount namespace
    /// (`nsenter --net`, not `ip netns exec`, which makes a private one), so filesystems the
    /// test mounts later are visible to it, as on a real NFS host.
    pub fn command(&self, program: &str) -> Command {
        let mut c = Command::new("nsenter");
        c.arg(format!("--net=/run/netns/{}", self.name))
            .arg(program);
        c
    }

    /// Runs `f` inside this namespace, on a thread of its own (setns moves only the calling
    /// thread). Sockets `f` opens stay in this namespace wherever they are used afterwards.
    pub fn within<T: Send>(&self, f: impl FnOnce() -> T + Send) -> T {
        let path = format!("/run/netns/{}", self.name);
        let ns = File::open(&path).unwrap_or_else(|e| panic!("open {path}: {e}"));
        thread::scope(|scope| {
            scope
                .spawn(move || {
                    setns(ns.as_fd(), CloneFlags::CLONE_NEWNET)
                        .unwrap_or_else(|e| panic!("setns into {path}: {e}"));
                    f()
                })
                .join()
                .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
        })
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .status();
    }
}

/// The two addresses of a link.
#[derive(Clone, Debug)]
pub struct Link {
    pub server: String,
    pub client: String,
}
