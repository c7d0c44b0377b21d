//! Test hosts for rwxnfs, built from what this machine can run: network namespaces joined by
//! veth pairs (standing for NFS servers and Kubernetes nodes), a private D-Bus, NFS-Ganesha in
//! userspace, and NFS clients from libnfs (no kernel NFS needed).
//!
//! Everything is torn down when its guard drops, even when a test panics: processes are killed
//! by their PID, namespaces deleted. Nothing outside the namespaces a test creates is touched.
//!
//! ```no_run
//! let server = rwxnfs_testbed::Netns::new("srv");
//! let node_a = server.link(&rwxnfs_testbed::Netns::new("a"), 1); // 10.77.1.1 <-> 10.77.1.2
//! ```

mod client;
pub mod cluster;
mod dbus;
mod ganesha;
pub mod kube;
pub mod load;
mod loopfs;
mod netns;
mod pki;
mod server;
pub mod upstream;

pub use client::{NfsOutcome, nfs_cat, nfs_write};
pub use dbus::Dbus;
pub use ganesha::Ganesha;
pub use loopfs::{LoopFs, run as loopfs_run};
pub use netns::{Link, Netns};
pub use pki::{Pki, key_pair_pem, publish_secret};
/// The real-kernel tier's VMs (the `rwxnfs-vmlab` crate).
pub use rwxnfs_vmlab as vm;
pub use server::{GaneshaServer, free_port};

use std::{
    path::Path,
    process::{Child, Command},
    time::{Duration, Instant},
};

/// Fails the test loudly when a tool the testbed needs is missing.
pub fn require(tools: &[&str]) {
    let missing: Vec<&str> = tools.iter().copied().filter(|t| !on_path(t)).collect();
    assert!(
        missing.is_empty(),
        "the testbed needs {missing:?}; install them with scripts/install-test-deps (Debian packages \
         nfs-ganesha nfs-ganesha-vfs dbus libnfs-utils iproute2)"
    );
    assert!(
        nix_is_root(),
        "the testbed needs root (network namespaces, Ganesha)"
    );
}

fn on_path(tool: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|path| std::env::split_paths(&path).any(|dir| dir.join(tool).is_file()))
        || ["/usr/sbin", "/sbin"]
            .iter()
            .any(|d| Path::new(d).join(tool).is_file())
}

fn nix_is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .map(|s| {
            s.lines()
                .any(|l| l.starts_with("Uid:") && l.split_whitespace().nth(1) == Some("0"))
        })
        .unwrap_or(false)
}

/// A child process killed (by PID) and reaped when dropped.
pub struct Process {
    pub name: String,
    child: Child,
}

impl Process {
    pub fn spawn(name: &str, command: &mut Command) -> Self {
        let child = command
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {name}: {e}"));
        Self {
            name: name.to_owned(),
            child,
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// Kills (SIGKILL) and reaps.
    pub fn kill(&mut self) {
        if self.is_running() {
            let _ = self.child.kill();
        }
        let _ = self.child.wait();
    }

    /// SIGTERM, then SIGKILL after `grace`.
    pub fn terminate(&mut self, grace: Duration) {
        if self.is_running() {
            let _ = Command::new("kill")
                .args(["-TERM", &self.pid().to_string()])
                .status();
            let deadline = Instant::now() + grace;
            while self.is_running() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        self.kill();
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Polls `ready` until it is true or `limit` passes.
pub fn wait_for(what: &str, limit: Duration, mut ready: impl FnMut() -> bool) {
    let start = Instant::now();
    while !ready() {
        assert!(
            start.elapsed() < limit,
            "{what} was not ready within {limit:?}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Starts `command` (an `rwxnfs` binary, in whatever namespace it was built for) with JSON
/// logs and `args`, its standard error appended to `<dir>/<what>.log`, and waits until it
/// serves on `<dir>/<what>.sock`.
pub fn spawn_serving(
    dir: &Path,
    what: &str,
    mut command: std::process::Command,
    args: &[&str],
) -> Process {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join(format!("{what}.log")))
        .expect("open the process's log");
    command
        .args(["--log-format", "json"])
        .args(args)
        .stdout(std::process::Stdio::null())
        .stderr(log);
    let process = Process::spawn(what, &mut command);
    let socket = dir.join(format!("{what}.sock"));
    wait_for(&format!("{what} serving"), Duration::from_secs(30), || {
        std::os::unix::net::UnixStream::connect(&socket).is_ok()
    });
    process
}

/// Prints a log file (for failures).
pub fn dump(label: &str, path: &Path) {
    if let Ok(text) = std::fs::read_to_string(path) {
        let tail: Vec<&str> = text.lines().rev().take(60).collect();
        eprintln!("--- {label} ({}) ---", path.display());
        for line in tail.iter().rev() {
            eprintln!("{line}");
        }
    }
}

/// The names of the entries of `dir`, sorted (none when it does not exist).
pub fn names_in(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .map(|d| {
            d.filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

/// Ganesha's active exports (`ShowExports`) and export files against the agent's table (read
/// from `state`): Ganesha has exactly the exports with a client (granted, or
/// `allowedClients`), each from an export file of its own, and no other file is there.
pub fn assert_ganesha_serves_the_table(state: &Path, active: &[u32]) {
    let table = rwxnfs_agent::table::Table::open(state)
        .expect("the table opens")
        .exports()
        .expect("the table reads");
    let mut with_clients: Vec<u32> = table
        .iter()
        .filter(|r| !r.clients.is_empty() || !r.options.allowed_clients.is_empty())
        .map(|r| r.export_id)
        .collect();
    with_clients.sort_unstable();
    let mut active = active.to_vec();
    active.sort_unstable();
    assert_eq!(
        active, with_clients,
        "Ganesha exports exactly the table's exports that have clients"
    );
    let mut files: Vec<String> = names_in(&state.join("ganesha"))
        .into_iter()
        .filter(|n| n.starts_with("export-"))
        .collect();
    files.sort();
    let mut wanted: Vec<String> = active
        .iter()
        .map(|id| format!("export-{id}.conf"))
        .collect();
    wanted.sort();
    assert_eq!(files, wanted, "one export file per active export, no other");
}

/// What the agent must never leave behind: a temporary file of a table record or an export
/// file in its state directory, or anything in the export root's trash once its purger had
/// `limit` to empty it. Blocks (call it from `spawn_blocking` in async tests).
pub fn assert_nothing_left(state: &Path, root: &Path, limit: Duration) {
    for dir in ["exports", "snapshots", "ganesha"] {
        let temporaries: Vec<String> = names_in(&state.join(dir))
            .into_iter()
            .filter(|n| n.ends_with(".tmp"))
            .collect();
        assert!(
            temporaries.is_empty(),
            "{}: {temporaries:?} left behind",
            state.join(dir).display()
        );
    }
    let trash = root.join(".trash");
    wait_for("the trash emptied", limit, || names_in(&trash).is_empty());
}
