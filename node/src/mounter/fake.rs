//! A mounter for tests: records calls, keeps a pretend mount table, fails on demand, and can
//! hold a call in the middle of an RPC.

use std::{
    io,
    path::{Path, PathBuf},
    sync::{Condvar, Mutex},
    time::Duration,
};

use nix::mount::{MntFlags, MsFlags};

use super::{FsStats, MountEntry, Mounter};

/// Records calls and keeps a pretend mount table.
#[derive(Default)]
pub struct FakeMounter {
    pub table: Mutex<Vec<MountEntry>>,
    pub calls: Mutex<Vec<String>>,
    /// When set, every call fails with this errno.
    pub fail: Mutex<Option<i32>>,
    /// Paths whose statvfs fails with ESTALE (a server that came back with another fsid).
    pub stale: Mutex<Vec<PathBuf>>,
    /// Holds mounts, binds, remounts and unmounts of one path while closed, and reads of the
    /// mount table while closed on [`MOUNT_TABLE`].
    pub gate: Gate,
}

/// Holds the calls on one path until opened, so a test can make a second RPC while the first
/// is in the middle of its work.
#[derive(Default)]
pub struct Gate {
    state: Mutex<GateState>,
    changed: Condvar,
}

#[derive(Default)]
struct GateState {
    closed_on: Option<PathBuf>,
    held: usize,
}

/// The path a gate closed on holds reads of the mount table at.
pub const MOUNT_TABLE: &str = "/proc/self/mountinfo";

/// How long a held call waits for a test that forgot to open the gate.
const GATE_LIMIT: Duration = Duration::from_secs(30);

impl Gate {
    /// From now on, calls on `path` wait until [`Gate::open`].
    pub fn close(&self, path: &Path) {
        self.lock().closed_on = Some(path.to_owned());
    }

    /// Lets the held calls go on, and every later one through.
    pub fn open(&self) {
        self.lock().closed_on = None;
        self.changed.notify_all();
    }

    /// Waits at most `limit` until `calls` calls are held; whether they are.
    pub fn wait_held(&self, calls: usize, limit: Duration) -> bool {
        let (state, _) = self
            .changed
            .wait_timeout_while(self.lock(), limit, |s| s.held < calls)
            .unwrap_or_else(|e| e.into_inner());
        state.held >= calls
    }

    fn pass(&self, path: &Path) {
        let mut state = self.lock();
        if state.closed_on.as_deref() != Some(path) {
            return;
        }
        state.held += 1;
        self.changed.notify_all();
        let (mut state, _) = self
            .changed
            .wait_timeout_while(state, GATE_LIMIT, |s| s.closed_on.as_deref() == Some(path))
            .unwrap_or_else(|e| e.into_inner());
        state.held -= 1;
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, GateState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl FakeMounter {
    fn record(&self, call: String) -> io::Result<()> {
        self.calls
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(call);
        match *self.fail.lock().unwrap_or_else(|e| e.into_inner()) {
            Some(errno) => Err(io::Error::from_raw_os_error(errno)),
            None => Ok(()),
        }
    }

    fn add(&self, point: &Path, fs_type: &str, source: &str, root: &Path, ro: bool) {
        self.table
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(MountEntry {
                mount_point: point.to_owned(),
                root: root.to_owned(),
                fs_type: fs_type.to_owned(),
                source: source.to_owned(),
                options: vec![if ro { "ro" } else { "rw" }.to_owned()],
                super_options: Vec::new(),
                major_minor: "0:1".into(),
            });
    }
}

impl Mounter for FakeMounter {
    fn stat_fs(&self, path: &Path) -> io::Result<FsStats> {
        let stale = self.stale.lock().unwrap_or_else(|e| e.into_inner());
        if stale.iter().any(|p| p == path) {
            return Err(io::Error::from_raw_os_error(libc::ESTALE));
        }
        Ok(FsStats {
            fragment_size: 4096,
            blocks: 256,
            blocks_free: 128,
            blocks_available: 128,
            files: 100,
            files_free: 50,
            files_available: 50,
        })
    }

    fn mount_nfs(
        &self,
        source: &str,
        target: &Path,
        fs_type: &str,
        _flags: MsFlags,
        data: &str,
    ) -> io::Result<()> {
        self.gate.pass(target);
        self.record(format!(
            "mount {fs_type} {source} {} {data}",
            target.display()
        ))?;
        self.add(target, fs_type, source, Path::new("/"), false);
        Ok(())
    }

    fn bind(&self, source: &Path, target: &Path) -> io::Result<()> {
        self.gate.pass(target);
        self.record(format!("bind {} {}", source.display(), target.display()))?;
        let staged = self
            .mounts()?
            .into_iter()
            .rev()
            .find(|m| m.mount_point == source);
        let (fs_type, src) = staged
            .map(|m| (m.fs_type, m.source))
            .unwrap_or(("none".into(), "none".into()));
        self.add(target, &fs_type, &src, Path::new("/"), false);
        Ok(())
    }

    fn remount_read_only(&self, target: &Path) -> io::Result<()> {
        self.gate.pass(target);
        self.record(format!("remount-ro {}", target.display()))?;
        let mut table = self.table.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(m) = table.iter_mut().rev().find(|m| m.mount_point == target) {
            m.options = vec!["ro".into()];
        }
        Ok(())
    }

    fn unmount(&self, target: &Path, flags: MntFlags) -> io::Result<()> {
        self.gate.pass(target);
        self.record(format!("umount {} {:?}", target.display(), flags))?;
        let mut table = self.table.lock().unwrap_or_else(|e| e.into_inner());
        match table.iter().rposition(|m| m.mount_point == target) {
            Some(i) => {
                table.remove(i);
                Ok(())
            }
            None => Err(io::Error::from_raw_os_error(libc::EINVAL)),
        }
    }

    fn mounts(&self) -> io::Result<Vec<MountEntry>> {
        self.gate.pass(Path::new(MOUNT_TABLE));
        Ok(self.table.lock().unwrap_or_else(|e| e.into_inner()).clone())
    }
}
