//! What the agent does on the export root's filesystem.
//!
//! Everything lives beneath one root (e.g. `/drbd/exports`):
//!
//! ```text
//! <root>/volumes/<name>     one per export (a btrfs subvolume where quotas need one)
//! <root>/snapshots/<name>   point-in-time copies
//! <root>/archive/<name>-<unix-seconds>   volumes deleted with policy `archive`
//! <root>/.trash/<anything>  moved here on delete, removed in the background
//! ```
//!
//! Paths are only ever built from validated [`Name`]s through [`RelPath`], and every
//! implementation resolves them beneath the root without following symlinks (openat2 with
//! RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS or equivalent), so a symlink planted anywhere in the
//! root cannot redirect a create, a copy or a delete outside it.

use std::path::{Path, PathBuf};

use rwxnfs_model::Name;

pub mod beneath;
// The three modules that talk to the kernel with raw ioctls and quotactl (each unsafe block
// with its SAFETY comment); no other module of the workspace may use unsafe.
#[allow(unsafe_code)]
pub mod btrfs;
pub mod plain;
#[allow(unsafe_code)]
mod tree;
#[allow(unsafe_code)]
pub mod xfs;

/// A path relative to the export root, made only from validated names.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct RelPath(PathBuf);

impl RelPath {
    pub fn volume(name: &Name) -> Self {
        Self(Self::volumes_dir().join(name.as_str()))
    }

    /// Where the volumes are, relative to the export root.
    pub fn volumes_dir() -> &'static Path {
        Path::new("volumes")
    }

    pub fn snapshot(name: &Name) -> Self {
        Self(Path::new("snapshots").join(name.as_str()))
    }

    pub fn as_path(&self) -> &Path {
        &self.0
    }
}

impl std::fmt::Display for RelPath {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.display().fmt(f)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum QuotaKind {
    Xfs,
    Btrfs,
    None,
}

impl QuotaKind {
    pub fn as_str(self) -> &'static str {
        match self {
            QuotaKind::Xfs => "xfs",
            QuotaKind::Btrfs => "btrfs",
            QuotaKind::None => "none",
        }
    }
}

/// How a snapshot or clone was made.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CloneMethod {
    /// A filesystem snapshot (btrfs): constant time.
    Snapshot,
    /// Reflinks (FICLONE): shares extents, constant time per file.
    Reflink,
    /// A byte copy: the fallback when neither is available.
    Copy,
}

/// Owner and permission bits for a new volume's root directory.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ownership {
    pub uid: u32,
    pub gid: u32,
    pub mode: u32,
}

#[derive(Debug, thiserror::Error)]
pub enum FsError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    /// A path resolved outside the export root or through a symlink.
    #[error("{path} escapes the export root or passes through a symlink; refused")]
    Escape { path: PathBuf },
    #[error("{path} already exists and is not a volume made by rwxnfs")]
    Conflict { path: PathBuf },
    #[error("{path} does not exist")]
    NotFound { path: PathBuf },
    /// ENOSPC or EDQUOT beneath the export root; the message names the path.
    #[error("no space left on the export root's filesystem: {0}; free space there")]
    NoSpace(String),
    #[error("quota on {path}: {message}")]
    Quota { path: PathBuf, message: String },
}

/// Total and available bytes of the export root's filesystem.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Space {
    pub total: u64,
    pub available: u64,
}

/// The export root's filesystem. Methods block (they do file I/O): call them from
/// `tokio::task::spawn_blocking`.
pub trait VolumeFs: Send + Sync + 'static {
    fn root(&self) -> &Path;

    fn quota_kind(&self) -> QuotaKind;

    /// Whether limits set by [`VolumeFs::set_limit`] are enforced.
    fn quota_enforced(&self) -> bool {
        self.quota_kind() != QuotaKind::None
    }

    /// Limits are rounded up to a multiple of this many bytes.
    fn granularity(&self) -> u64;

    fn space(&self) -> Result<Space, FsError>;

    /// Creates an empty volume directory (a subvolume on btrfs), owned and moded as asked.
    /// If it already exists as a volume, succeeds without changing it.
    fn create_volume(&self, rel: &RelPath, ownership: Ownership) -> Result<(), FsError>;

    /// Sets the hard limit of the volume at `rel` to at least `bytes` and returns what is
    /// enforced (rounded up to [`VolumeFs::granularity`]). `project_id` is the export id, used
    /// as the XFS project id. Without quotas, returns the rounded size and enforces nothing.
    fn set_limit(&self, rel: &RelPath, project_id: u32, bytes: u64) -> Result<u64, FsError>;

    /// Bytes the quota charges to the volume at `rel` (`project_id` as for
    /// [`VolumeFs::set_limit`]), or None where the filesystem does not keep that count and
    /// only a walk of the whole tree could tell (too slow to do on request).
    fn used_bytes(&self, rel: &RelPath, project_id: u32) -> Result<Option<u64>, FsError>;

    /// Makes `dst` a point-in-time copy of `src` (both beneath the root), preserving modes,
    /// owners, timestamps, xattrs, symlinks and hard links. `dst` must not exist.
    fn clone_tree(&self, src: &RelPath, dst: &RelPath) -> Result<CloneMethod, FsError>;

    /// Moves `rel` into the trash area at once (a rename); [`VolumeFs::purge_trash`] removes it
    /// later. Already gone: success.
    fn trash(&self, rel: &RelPath) -> Result<(), FsError>;

    /// Moves `rel` into the archive area; returns where it went. Already gone: Ok(None).
    fn archive(&self, rel: &RelPath) -> Result<Option<PathBuf>, FsError>;

    /// Removes everything in the trash area; returns how many entries were removed. Safe to
    /// run again after a crash part-way.
    fn purge_trash(&self) -> Result<usize, FsError>;

    /// Whether `rel` exists.
    fn exists(&self, rel: &RelPath) -> Result<bool, FsError>;

    /// The names of the volumes present, in one listing of the volumes' directory, for a
    /// reconcile that checks every volume at once (a lookup each costs seconds for 10,000
    /// volumes on a filesystem mounted a moment before, as after a takeover).
    fn volume_names(&self) -> Result<std::collections::BTreeSet<std::ffi::OsString>, FsError>;

    /// Makes the volume at `rel` exportable, where the NFS server needs more than the
    /// directory (NFS-Ganesha exports a btrfs subvolume only when it is mounted on its own).
    /// Called after a volume is created and for every volume at reconcile. Idempotent.
    fn prepare_export(&self, _rel: &RelPath) -> Result<(), FsError> {
        Ok(())
    }

    /// The absolute path of `rel` on this host, for the NFS server.
    fn absolute(&self, rel: &RelPath) -> PathBuf {
        self.root().join(rel.as_path())
    }
}

/// Opens the export root with the quota kind asked for, or the best one it supports.
///
/// `auto` picks btrfs (subvolumes and qgroups) on btrfs, XFS project quotas on an XFS root
/// mounted with `prjquota`, and otherwise a root whose capacity is reported but not enforced
/// (Probe and GetCapacity say so). Asking for a kind the root cannot do is an error, never a
/// silent downgrade.
///
/// `mount_subvolumes`: the NFS server needs each btrfs subvolume mounted on its own (Ganesha).
pub fn open_root(
    root: &Path,
    requested: Option<QuotaKind>,
    mount_subvolumes: bool,
) -> Result<Box<dyn VolumeFs>, FsError> {
    let btrfs = || btrfs::BtrfsFs::open(root).map(|fs| fs.mounting_subvolumes(mount_subvolumes));
    match requested {
        Some(QuotaKind::None) => Ok(Box::new(plain::PlainFs::open(root)?)),
        Some(QuotaKind::Btrfs) => Ok(Box::new(btrfs()?)),
        Some(QuotaKind::Xfs) => Ok(Box::new(xfs::XfsFs::open(root)?)),
        None => match btrfs() {
            Ok(fs) => Ok(Box::new(fs)),
            Err(FsError::Quota { .. }) => match xfs::XfsFs::open(root) {
                Ok(fs) => Ok(Box::new(fs)),
                Err(FsError::Quota { .. }) => Ok(Box::new(plain::PlainFs::open(root)?)),
                Err(e) => Err(e),
            },
            Err(e) => Err(e),
        },
    }
}

/// Rounds `bytes` up to a multiple of `granularity` (saturating).
pub fn round_up(bytes: u64, granularity: u64) -> u64 {
    if granularity <= 1 {
        return bytes;
    }
    bytes.div_ceil(granularity).saturating_mul(granularity)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_round_up_to_the_granularity() {
        assert_eq!(round_up(1, 4096), 4096);
        assert_eq!(round_up(4096, 4096), 4096);
        assert_eq!(round_up(4097, 4096), 8192);
        assert_eq!(round_up(0, 4096), 0);
        assert_eq!(round_up(u64::MAX, 4096), u64::MAX);
    }

    #[test]
    fn relative_paths_come_only_from_names() {
        let name = Name::parse("pvc-1").unwrap();
        assert_eq!(RelPath::volume(&name).as_path(), Path::new("volumes/pvc-1"));
        assert_eq!(
            RelPath::snapshot(&name).as_path(),
            Path::new("snapshots/pvc-1")
        );
    }
}
