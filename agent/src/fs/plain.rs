//! An export root without quotas: volumes are directories, snapshots and clones are reflink
//! copies (a byte copy where the filesystem has no reflinks), capacity is reported but not
//! enforced (Probe and GetCapacity say so).

use std::{
    os::fd::BorrowedFd,
    path::{Path, PathBuf},
    sync::atomic::{AtomicU64, Ordering},
};

use nix::{
    errno::Errno,
    sys::{stat::FileStat, statvfs::fstatvfs},
};

use super::{
    CloneMethod, FsError, Ownership, QuotaKind, RelPath, Space, VolumeFs, beneath::Root, round_up,
    tree,
};

/// Where deleted data waits for the background purge.
pub const TRASH: &str = ".trash";
/// Where volumes deleted with policy `archive` go.
pub const ARCHIVE: &str = "archive";
const GRANULARITY: u64 = 4096;

pub struct PlainFs {
    root: Root,
    /// Makes trash names unique within this process (the time makes them unique across runs).
    counter: AtomicU64,
}

impl PlainFs {
    pub fn open(root: &Path) -> Result<Self, FsError> {
        let root = Root::open(root)?;
        // Made now, while there is room, so that rolling back a create or a copy that found
        // the filesystem full (a rename into the trash) never needs a new directory.
        if let Err(e) = root.mkdir(Path::new(TRASH), 0o700) {
            tracing::debug!(error = %e, "no trash directory yet");
        }
        Ok(Self {
            root,
            counter: AtomicU64::new(0),
        })
    }

    pub fn beneath(&self) -> &Root {
        &self.root
    }

    /// Creates the parent directories a relative path needs (`volumes/`, `snapshots/`, ...).
    pub fn ensure_parent(&self, rel: &Path) -> Result<(), FsError> {
        match rel.parent() {
            Some(parent) if !parent.as_os_str().is_empty() => self.root.mkdir_all(parent, 0o711),
            _ => Ok(()),
        }
    }

    fn tree_error(&self, (path, source): (PathBuf, std::io::Error)) -> FsError {
        match source.raw_os_error() {
            Some(libc::ENOSPC | libc::EDQUOT) => FsError::NoSpace(format!(
                "{}: {source}",
                self.root.path().join(path).display()
            )),
            _ => FsError::Io {
                path: self.root.path().join(path),
                source,
            },
        }
    }

    /// A fresh name in the trash.
    fn trash_slot(&self, rel: &Path) -> PathBuf {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        let n = self.counter.fetch_add(1, Ordering::Relaxed);
        let base = rel
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        Path::new(TRASH).join(format!("{base}-{now}-{n}"))
    }

    /// Copies `src` into a new directory `dst`; shared by the plain and XFS layers.
    pub fn copy_tree(&self, src: &RelPath, dst: &RelPath) -> Result<CloneMethod, FsError> {
        let (src_path, dst_path) = (src.as_path(), dst.as_path());
        let from = self.root.open_dir(src_path)?;
        self.ensure_parent(dst_path)?;
        if !self.root.mkdir(dst_path, 0o700)? {
            return Err(FsError::Conflict {
                path: self.root.path().join(dst_path),
            });
        }
        let to = self.root.open_dir(dst_path)?;
        tree::clone_tree(from, to, dst_path).map_err(|e| self.tree_error(e))
    }

    /// Visits every directory and regular file of the directory `rel`, `rel` itself last
    /// ([`tree::visit_tree`]); used by the XFS layer.
    pub(super) fn visit_tree(
        &self,
        rel: &RelPath,
        visit: impl FnMut(BorrowedFd<'_>, &FileStat) -> Result<(), Errno>,
    ) -> Result<tree::Visited, FsError> {
        let dir = self.root.open_dir(rel.as_path())?;
        tree::visit_tree(dir, rel.as_path(), visit).map_err(|e| self.tree_error(e))
    }
}

impl VolumeFs for PlainFs {
    fn root(&self) -> &Path {
        self.root.path()
    }

    fn quota_kind(&self) -> QuotaKind {
        QuotaKind::None
    }

    fn granularity(&self) -> u64 {
        GRANULARITY
    }

    fn space(&self) -> Result<Space, FsError> {
        let st = fstatvfs(self.root.fd()).map_err(|e| self.root.error(Path::new(""), e))?;
        let block = st.fragment_size() as u64;
        Ok(Space {
            total: (st.blocks() as u64).saturating_mul(block),
            available: (st.blocks_available() as u64).saturating_mul(block),
        })
    }

    fn create_volume(&self, rel: &RelPath, ownership: Ownership) -> Result<(), FsError> {
        self.ensure_parent(rel.as_path())?;
        if !self.root.mkdir(rel.as_path(), 0o700)? {
            return Ok(());
        }
        self.root
            .set_owner_mode(rel.as_path(), ownership.uid, ownership.gid, ownership.mode)
    }

    fn set_limit(&self, rel: &RelPath, _project_id: u32, bytes: u64) -> Result<u64, FsError> {
        if !self.exists(rel)? {
            return Err(FsError::NotFound {
                path: self.absolute(rel),
            });
        }
        Ok(round_up(bytes, GRANULARITY))
    }

    /// Unknown: without quotas nothing counts a directory's bytes, and walking the tree to sum
    /// them is too slow to do on request.
    fn used_bytes(&self, _rel: &RelPath, _project_id: u32) -> Result<Option<u64>, FsError> {
        Ok(None)
    }

    fn clone_tree(&self, src: &RelPath, dst: &RelPath) -> Result<CloneMethod, FsError> {
        self.copy_tree(src, dst)
    }

    fn trash(&self, rel: &RelPath) -> Result<(), FsError> {
        if self.root.stat(rel.as_path())?.is_none() {
            return Ok(());
        }
        self.root.mkdir(Path::new(TRASH), 0o700)?;
        self.root
            .rename(rel.as_path(), &self.trash_slot(rel.as_path()))
    }

    fn archive(&self, rel: &RelPath) -> Result<Option<PathBuf>, FsError> {
        if self.root.stat(rel.as_path())?.is_none() {
            return Ok(None);
        }
        self.root.mkdir(Path::new(ARCHIVE), 0o700)?;
        let secs = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        let name = rel
            .as_path()
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let to = Path::new(ARCHIVE).join(format!("{name}-{secs}"));
        self.root.rename(rel.as_path(), &to)?;
        Ok(Some(self.root.path().join(to)))
    }

    fn purge_trash(&self) -> Result<usize, FsError> {
        let trash = match self.root.open_dir(Path::new(TRASH)) {
            Ok(fd) => fd,
            Err(FsError::NotFound { .. }) => return Ok(0),
            Err(e) => return Err(e),
        };
        let removed =
            tree::remove_contents(trash, Path::new(TRASH)).map_err(|e| self.tree_error(e))?;
        Ok(removed as usize)
    }

    fn exists(&self, rel: &RelPath) -> Result<bool, FsError> {
        Ok(self.root.stat(rel.as_path())?.is_some())
    }

    fn volume_names(&self) -> Result<std::collections::BTreeSet<std::ffi::OsString>, FsError> {
        Ok(self
            .root
            .entry_names(RelPath::volumes_dir())?
            .unwrap_or_default())
    }
}

#[cfg(test)]
mod tests {
    use rwxnfs_model::Name;

    use super::*;

    fn fs() -> (tempfile::TempDir, PlainFs) {
        let dir = tempfile::tempdir().unwrap();
        let fs = PlainFs::open(dir.path()).unwrap();
        (dir, fs)
    }

    fn vol(name: &str) -> RelPath {
        RelPath::volume(&Name::parse(name).unwrap())
    }

    #[test]
    fn volumes_get_their_owner_and_mode() {
        let (dir, fs) = fs();
        fs.create_volume(
            &vol("v"),
            Ownership {
                uid: 1234,
                gid: 5678,
                mode: 0o2770,
            },
        )
        .unwrap();
        let meta = std::fs::metadata(dir.path().join("volumes/v")).unwrap();
        use std::os::unix::fs::MetadataExt;
        assert_eq!(
            (meta.uid(), meta.gid(), meta.mode() & 0o7777),
            (1234, 5678, 0o2770)
        );
        // Idempotent.
        fs.create_volume(
            &vol("v"),
            Ownership {
                uid: 0,
                gid: 0,
                mode: 0o755,
            },
        )
        .unwrap();
    }

    #[test]
    fn volume_names_list_the_volumes_directory_and_nothing_beyond_it() {
        let (dir, fs) = fs();
        assert!(fs.volume_names().unwrap().is_empty(), "no volumes yet");
        for name in ["a", "b"] {
            let ownership = Ownership {
                uid: 0,
                gid: 0,
                mode: 0o755,
            };
            fs.create_volume(&vol(name), ownership).unwrap();
        }
        std::fs::write(dir.path().join("volumes/stray-file"), b"x").unwrap();
        let names: Vec<_> = fs.volume_names().unwrap().into_iter().collect();
        assert_eq!(names, ["a", "b", "stray-file"]);
        assert!(
            names
                .iter()
                .all(|n| fs.exists(&vol(n.to_str().unwrap())).unwrap()),
            "listing and lookup agree"
        );
        // A volumes directory that is a symlink is not followed.
        std::fs::remove_dir_all(dir.path().join("volumes")).unwrap();
        let elsewhere = tempfile::tempdir().unwrap();
        std::fs::create_dir(elsewhere.path().join("outside")).unwrap();
        std::os::unix::fs::symlink(elsewhere.path(), dir.path().join("volumes")).unwrap();
        assert!(fs.volume_names().is_err());
    }

    #[test]
    fn limits_are_rounded_but_not_enforced() {
        let (_dir, fs) = fs();
        fs.create_volume(
            &vol("v"),
            Ownership {
                uid: 0,
                gid: 0,
                mode: 0o755,
            },
        )
        .unwrap();
        assert_eq!(fs.set_limit(&vol("v"), 1, 5000).unwrap(), 8192);
        assert!(!fs.quota_enforced());
        assert!(matches!(
            fs.set_limit(&vol("nope"), 1, 5000),
            Err(FsError::NotFound { .. })
        ));
    }

    #[test]
    fn trash_is_instant_and_purge_empties_it() {
        let (dir, fs) = fs();
        fs.create_volume(
            &vol("v"),
            Ownership {
                uid: 0,
                gid: 0,
                mode: 0o755,
            },
        )
        .unwrap();
        let deep = dir.path().join("volumes/v/a/b/c");
        std::fs::create_dir_all(&deep).unwrap();
        std::fs::write(deep.join("f"), b"x").unwrap();
        fs.trash(&vol("v")).unwrap();
        assert!(!dir.path().join("volumes/v").exists());
        fs.trash(&vol("v")).unwrap();
        assert!(fs.purge_trash().unwrap() >= 5);
        assert_eq!(
            std::fs::read_dir(dir.path().join(TRASH)).unwrap().count(),
            0
        );
        assert_eq!(fs.purge_trash().unwrap(), 0);
    }

    #[test]
    fn archive_moves_the_volume_aside() {
        let (dir, fs) = fs();
        fs.create_volume(
            &vol("v"),
            Ownership {
                uid: 0,
                gid: 0,
                mode: 0o755,
            },
        )
        .unwrap();
        let to = fs.archive(&vol("v")).unwrap().unwrap();
        assert!(to.starts_with(dir.path().join(ARCHIVE)) && to.is_dir());
        assert_eq!(fs.archive(&vol("v")).unwrap(), None);
    }

    #[test]
    fn a_symlinked_volumes_directory_is_refused() {
        let (dir, fs) = fs();
        let outside = tempfile::tempdir().unwrap();
        std::os::unix::fs::symlink(outside.path(), dir.path().join("volumes")).unwrap();
        let err = fs
            .create_volume(
                &vol("v"),
                Ownership {
                    uid: 0,
                    gid: 0,
                    mode: 0o755,
                },
            )
            .unwrap_err();
        assert!(matches!(err, FsError::Escape { .. }), "{err}");
        assert_eq!(std::fs::read_dir(outside.path()).unwrap().count(), 0);
    }
}
