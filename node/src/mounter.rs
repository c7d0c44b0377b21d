//! Mount side effects, behind one trait: the real one uses mount(2) and umount2(2); a fake
//! records calls for unit tests. The mount table is read from /proc/self/mountinfo.
//!
//! Every call that may block on an NFS server runs on its own thread under a time limit (see
//! [`crate::bounded`]); the methods here are the blocking system calls themselves.

use std::{io, path::Path, sync::Mutex};

pub use rwxnfs_model::mountinfo::{MountEntry, parse_mountinfo, unescape};

use nix::mount::{MntFlags, MsFlags};

/// What statvfs says about a mounted filesystem.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FsStats {
    pub fragment_size: u64,
    pub blocks: u64,
    pub blocks_free: u64,
    pub blocks_available: u64,
    pub files: u64,
    pub files_free: u64,
    pub files_available: u64,
}

/// What the node plugin does to mounts.
pub trait Mounter: Send + Sync + 'static {
    /// statvfs(2) of a mounted path; on a stale NFS mount this fails with ESTALE.
    fn stat_fs(&self, path: &Path) -> io::Result<FsStats>;
    /// Mounts an NFS export: `fs_type` is "nfs4" or "nfs", `data` carries `addr=`.
    fn mount_nfs(
        &self,
        source: &str,
        target: &Path,
        fs_type: &str,
        flags: MsFlags,
        data: &str,
    ) -> io::Result<()>;
    /// Bind-mounts `source` onto `target`.
    fn bind(&self, source: &Path, target: &Path) -> io::Result<()>;
    /// Makes a bind mount read-only.
    fn remount_read_only(&self, target: &Path) -> io::Result<()>;
    fn unmount(&self, target: &Path, flags: MntFlags) -> io::Result<()>;
    fn mounts(&self) -> io::Result<Vec<MountEntry>>;
}

pub struct SystemMounter;

impl Mounter for SystemMounter {
    fn stat_fs(&self, path: &Path) -> io::Result<FsStats> {
        let st = nix::sys::statvfs::statvfs(path).map_err(io::Error::from)?;
        Ok(FsStats {
            fragment_size: st.fragment_size() as u64,
            blocks: st.blocks() as u64,
            blocks_free: st.blocks_free() as u64,
            blocks_available: st.blocks_available() as u64,
            files: st.files() as u64,
            files_free: st.files_free() as u64,
            files_available: st.files_available() as u64,
        })
    }

    fn mount_nfs(
        &self,
        source: &str,
        target: &Path,
        fs_type: &str,
        flags: MsFlags,
        data: &str,
    ) -> io::Result<()> {
        nix::mount::mount(Some(source), target, Some(fs_type), flags, Some(data))
            .map_err(io::Error::from)
    }

    fn bind(&self, source: &Path, target: &Path) -> io::Result<()> {
        nix::mount::mount(
            Some(source),
            target,
            None::<&str>,
            MsFlags::MS_BIND,
            None::<&str>,
        )
        .map_err(io::Error::from)
    }

    fn remount_read_only(&self, target: &Path) -> io::Result<()> {
        let flags = MsFlags::MS_BIND | MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY;
        nix::mount::mount(None::<&str>, target, None::<&str>, flags, None::<&str>)
            .map_err(io::Error::from)
    }

    fn unmount(&self, target: &Path, flags: MntFlags) -> io::Result<()> {
        nix::mount::umount2(target, flags).map_err(io::Error::from)
    }

    fn mounts(&self) -> io::Result<Vec<MountEntry>> {
        Ok(parse_mountinfo(&std::fs::read_to_string(
            "/proc/self/mountinfo",
        )?))
    }
}

/// Records calls and keeps a pretend mount table.
#[derive(Default)]
pub struct FakeMounter {
    pub table: Mutex<Vec<MountEntry>>,
    pub calls: Mutex<Vec<String>>,
    /// When set, every call fails with this errno.
    pub fail: Mutex<Option<i32>>,
    /// Paths whose statvfs fails with ESTALE (a server that came back with another fsid).
    pub stale: Mutex<Vec<std::path::PathBuf>>,
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
        self.record(format!(
            "mount {fs_type} {source} {} {data}",
            target.display()
        ))?;
        self.add(target, fs_type, source, Path::new("/"), false);
        Ok(())
    }

    fn bind(&self, source: &Path, target: &Path) -> io::Result<()> {
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
        self.record(format!("remount-ro {}", target.display()))?;
        let mut table = self.table.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(m) = table.iter_mut().rev().find(|m| m.mount_point == target) {
            m.options = vec!["ro".into()];
        }
        Ok(())
    }

    fn unmount(&self, target: &Path, flags: MntFlags) -> io::Result<()> {
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
        Ok(self.table.lock().unwrap_or_else(|e| e.into_inner()).clone())
    }
}
