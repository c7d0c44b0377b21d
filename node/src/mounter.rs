//! Mount side effects, behind one trait: the real one uses mount(2) and umount2(2); a fake
//! records calls for unit tests, built only for tests and the `test-support` feature. The
//! mount table is read from /proc/self/mountinfo.
//!
//! Every call that may block on an NFS server runs on its own thread under a time limit (see
//! [`crate::bounded`]); the methods here are the blocking system calls themselves.

use std::{io, path::Path};

pub use rwxnfs_model::mountinfo::{MountEntry, parse_mountinfo, unescape};

use nix::mount::{MntFlags, MsFlags};

#[cfg(any(test, feature = "test-support"))]
mod fake;
#[cfg(any(test, feature = "test-support"))]
pub use fake::{FakeMounter, Gate, MOUNT_TABLE};

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
