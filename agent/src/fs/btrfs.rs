//! A btrfs export root with quotas: every volume is a subvolume, its size is the limit of the
//! subvolume's qgroup (writes past it fail with EDQUOT, over NFS too), snapshots and clones
//! are btrfs snapshots (constant time), and a deleted volume's subvolume is destroyed in the
//! background rather than walked file by file.
//!
//! Everything goes through ioctls on directory descriptors opened beneath the root, so no
//! path is ever resolved outside it. Quotas must be enabled on the filesystem
//! (`btrfs quota enable <root>`); the agent says so when they are not.

use std::{
    os::{
        fd::{AsFd, AsRawFd, BorrowedFd},
        unix::ffi::OsStrExt,
    },
    path::{Path, PathBuf},
};

use nix::{errno::Errno, sys::stat::fstat};

use rwxnfs_model::mountinfo::{MountEntry, parse_mountinfo};

use super::{
    CloneMethod, FsError, Ownership, QuotaKind, RelPath, Space, VolumeFs,
    beneath::Root,
    plain::{PlainFs, TRASH},
    round_up,
};

mod qgroup;
use qgroup::{BTRFS_IOC_TREE_SEARCH, qgroup_info_search, referenced_bytes};

const VOL_NAME_MAX: usize = 4088;
const VOL_V2_NAME_MAX: usize = 4040;
/// _IOW(0x94, 14, struct btrfs_ioctl_vol_args)
const BTRFS_IOC_SUBVOL_CREATE: libc::c_ulong = 0x5000_940E;
/// _IOW(0x94, 15, struct btrfs_ioctl_vol_args)
const BTRFS_IOC_SNAP_DESTROY: libc::c_ulong = 0x5000_940F;
/// _IOW(0x94, 23, struct btrfs_ioctl_vol_args_v2)
const BTRFS_IOC_SNAP_CREATE_V2: libc::c_ulong = 0x5000_9417;
/// _IOR(0x94, 43, struct btrfs_ioctl_qgroup_limit_args)
const BTRFS_IOC_QGROUP_LIMIT: libc::c_ulong = 0x8030_942B;
const BTRFS_QGROUP_LIMIT_MAX_RFER: u64 = 1 << 0;
/// Every subvolume's root directory has this inode number.
const SUBVOLUME_ROOT_INO: u64 = 256;
const GRANULARITY: u64 = 4096;
const BTRFS_SUPER_MAGIC: i64 = 0x9123_683E;

#[repr(C)]
struct VolArgs {
    fd: i64,
    name: [u8; VOL_NAME_MAX],
}

#[repr(C)]
struct VolArgsV2 {
    fd: i64,
    transid: u64,
    flags: u64,
    unused: [u64; 4],
    name: [u8; VOL_V2_NAME_MAX],
}

const INO_LOOKUP_PATH_MAX: usize = 4080;
/// _IOWR(0x94, 18, struct btrfs_ioctl_ino_lookup_args)
const BTRFS_IOC_INO_LOOKUP: libc::c_ulong = 0xD000_9412;

#[repr(C)]
struct InoLookupArgs {
    treeid: u64,
    objectid: u64,
    name: [u8; INO_LOOKUP_PATH_MAX],
}

#[repr(C)]
#[derive(Default)]
struct QgroupLimits {
    flags: u64,
    max_rfer: u64,
    max_excl: u64,
    rsv_rfer: u64,
    rsv_excl: u64,
}

#[repr(C)]
#[derive(Default)]
struct QgroupLimitArgs {
    qgroupid: u64,
    lim: QgroupLimits,
}

fn copy_name(dst: &mut [u8], name: &std::ffi::OsStr) -> Result<(), Errno> {
    let bytes = name.as_bytes();
    if bytes.len() >= dst.len() || bytes.contains(&0) {
        return Err(Errno::ENAMETOOLONG);
    }
    dst[..bytes.len()].copy_from_slice(bytes);
    Ok(())
}

fn ioctl<T>(fd: BorrowedFd<'_>, request: libc::c_ulong, arg: &mut T) -> Result<(), Errno> {
    // SAFETY: `arg` is a #[repr(C)] struct of the size the request number encodes, valid for
    // the duration of the call.
    let rc = unsafe { libc::ioctl(fd.as_raw_fd(), request, arg as *mut T) };
    if rc < 0 { Err(Errno::last()) } else { Ok(()) }
}

pub struct BtrfsFs {
    plain: PlainFs,
    /// Mount every exported subvolume on its own path (NFS-Ganesha needs that).
    mount_subvolumes: bool,
}

impl BtrfsFs {
    /// Opens a btrfs root; fails when it is not btrfs.
    pub fn open(root: &Path) -> Result<Self, FsError> {
        let plain = PlainFs::open(root)?;
        if !is_btrfs(plain.beneath())? {
            return Err(FsError::Quota {
                path: root.to_owned(),
                message: "not a btrfs filesystem".into(),
            });
        }
        Ok(Self {
            plain,
            mount_subvolumes: false,
        })
    }

    /// Mount each volume's subvolume on its own path before it is exported.
    pub fn mounting_subvolumes(mut self, yes: bool) -> Self {
        self.mount_subvolumes = yes;
        self
    }

    fn root(&self) -> &Root {
        self.plain.beneath()
    }

    fn mounts(&self) -> Result<Vec<MountEntry>, FsError> {
        std::fs::read_to_string("/proc/self/mountinfo")
            .map(|t| parse_mountinfo(&t))
            .map_err(|source| FsError::Io {
                path: "/proc/self/mountinfo".into(),
                source,
            })
    }

    /// The block device the export root is on, from the mount table.
    fn device(&self) -> Result<String, FsError> {
        let root = self.root().path();
        self.mounts()?
            .into_iter()
            .filter(|m| m.fs_type == "btrfs" && root.starts_with(&m.mount_point))
            .max_by_key(|m| m.mount_point.as_os_str().len())
            .map(|m| m.source)
            .ok_or_else(|| FsError::Quota {
                path: root.to_owned(),
                message: "cannot find the btrfs device in the mount table".into(),
            })
    }

    /// Whether something is mounted at `rel`.
    fn is_mount_point(&self, rel: &Path) -> Result<bool, FsError> {
        let abs = self.root().path().join(rel);
        Ok(self.mounts()?.iter().any(|m| m.mount_point == abs))
    }

    /// The id of the subvolume whose root is the open directory `dir`.
    fn subvolume_id(&self, dir: BorrowedFd<'_>, rel: &Path) -> Result<u64, FsError> {
        let mut args = InoLookupArgs {
            treeid: 0,
            objectid: SUBVOLUME_ROOT_INO,
            name: [0; INO_LOOKUP_PATH_MAX],
        };
        ioctl(dir, BTRFS_IOC_INO_LOOKUP, &mut args).map_err(|e| self.root().error(rel, e))?;
        Ok(args.treeid)
    }

    fn quota_error(&self, rel: &Path, errno: Errno) -> FsError {
        let path = self.root().path().join(rel);
        match errno {
            Errno::ENOTCONN | Errno::ENOENT => FsError::Quota {
                path,
                message: format!(
                    "quotas are not enabled on this filesystem; run `btrfs quota enable {}`",
                    self.root().path().display()
                ),
            },
            other => FsError::Quota {
                path,
                message: other.to_string(),
            },
        }
    }

    /// Creates `dst` as a snapshot of the subvolume `src`.
    fn snapshot(&self, src: &RelPath, dst: &RelPath) -> Result<(), FsError> {
        let source = self.root().open_dir(src.as_path())?;
        self.plain.ensure_parent(dst.as_path())?;
        let (parent, name) = self.root().parent(dst.as_path())?;
        let mut args = VolArgsV2 {
            fd: i64::from(source.as_raw_fd()),
            transid: 0,
            flags: 0,
            unused: [0; 4],
            name: [0; VOL_V2_NAME_MAX],
        };
        copy_name(&mut args.name, &name).map_err(|e| self.root().error(dst.as_path(), e))?;
        ioctl(parent.as_fd(), BTRFS_IOC_SNAP_CREATE_V2, &mut args)
            .map_err(|e| self.root().error(dst.as_path(), e))
    }
}

fn is_btrfs(root: &Root) -> Result<bool, FsError> {
    let st = nix::sys::statfs::fstatfs(root.fd()).map_err(|e| root.error(Path::new(""), e))?;
    Ok(st.filesystem_type().0 as i64 == BTRFS_SUPER_MAGIC)
}

impl VolumeFs for BtrfsFs {
    fn root(&self) -> &Path {
        self.plain.root()
    }

    fn quota_kind(&self) -> QuotaKind {
        QuotaKind::Btrfs
    }

    fn granularity(&self) -> u64 {
        GRANULARITY
    }

    fn space(&self) -> Result<Space, FsError> {
        self.plain.space()
    }

    fn create_volume(&self, rel: &RelPath, ownership: Ownership) -> Result<(), FsError> {
        let path = rel.as_path();
        if let Some(st) = self.root().stat(path)? {
            return if st.st_ino == SUBVOLUME_ROOT_INO {
                Ok(())
            } else {
                Err(FsError::Conflict {
                    path: self.root().path().join(path),
                })
            };
        }
        self.plain.ensure_parent(path)?;
        let (parent, name) = self.root().parent(path)?;
        let mut args = VolArgs {
            fd: 0,
            name: [0; VOL_NAME_MAX],
        };
        copy_name(&mut args.name, &name).map_err(|e| self.root().error(path, e))?;
        ioctl(parent.as_fd(), BTRFS_IOC_SUBVOL_CREATE, &mut args)
            .map_err(|e| self.root().error(path, e))?;
        self.root()
            .set_owner_mode(path, ownership.uid, ownership.gid, ownership.mode)
    }

    fn set_limit(&self, rel: &RelPath, _project_id: u32, bytes: u64) -> Result<u64, FsError> {
        let limit = round_up(bytes, GRANULARITY);
        let dir = self.root().open_dir(rel.as_path())?;
        let mut args = QgroupLimitArgs {
            qgroupid: 0, // the subvolume the descriptor is in
            lim: QgroupLimits {
                flags: BTRFS_QGROUP_LIMIT_MAX_RFER,
                max_rfer: limit,
                ..Default::default()
            },
        };
        ioctl(dir.as_fd(), BTRFS_IOC_QGROUP_LIMIT, &mut args)
            .map_err(|e| self.quota_error(rel.as_path(), e))?;
        Ok(limit)
    }

    /// The referenced bytes of the subvolume's qgroup: what its limit is checked against.
    /// Btrfs updates them when a transaction commits (every 30 s by default), so a write shows
    /// there that long after it. A volume that is not a subvolume of its own (a plain
    /// directory from before) has no qgroup to ask: unknown.
    fn used_bytes(&self, rel: &RelPath, _project_id: u32) -> Result<Option<u64>, FsError> {
        let path = rel.as_path();
        let dir = self.root().open_dir(path)?;
        let st = fstat(dir.as_fd()).map_err(|e| self.root().error(path, e))?;
        if st.st_ino != SUBVOLUME_ROOT_INO {
            return Ok(None);
        }
        let subvolume = self.subvolume_id(dir.as_fd(), path)?;
        let mut args = qgroup_info_search(subvolume);
        ioctl(dir.as_fd(), BTRFS_IOC_TREE_SEARCH, &mut args)
            .map_err(|e| self.quota_error(path, e))?;
        referenced_bytes(&args)
            .map(Some)
            .ok_or_else(|| FsError::Quota {
                path: self.absolute(rel),
                message: format!("subvolume {subvolume} has no qgroup"),
            })
    }

    fn clone_tree(&self, src: &RelPath, dst: &RelPath) -> Result<CloneMethod, FsError> {
        let src_stat = self
            .root()
            .stat(src.as_path())?
            .ok_or_else(|| FsError::NotFound {
                path: self.absolute(src),
            })?;
        if src_stat.st_ino == SUBVOLUME_ROOT_INO {
            self.snapshot(src, dst)?;
            Ok(CloneMethod::Snapshot)
        } else {
            self.plain.copy_tree(src, dst)
        }
    }

    fn trash(&self, rel: &RelPath) -> Result<(), FsError> {
        self.unmount_subvolume(rel)?;
        self.plain.trash(rel)
    }

    fn archive(&self, rel: &RelPath) -> Result<Option<PathBuf>, FsError> {
        self.unmount_subvolume(rel)?;
        self.plain.archive(rel)
    }

    /// Destroys trashed subvolumes with one ioctl each; anything else is removed file by file.
    fn purge_trash(&self) -> Result<usize, FsError> {
        let trash = match self.root().open_dir(Path::new(TRASH)) {
            Ok(fd) => fd,
            Err(FsError::NotFound { .. }) => return Ok(0),
            Err(e) => return Err(e),
        };
        let dev = fstat(trash.as_fd())
            .map_err(|e| self.root().error(Path::new(TRASH), e))?
            .st_dev;
        let mut destroyed = 0;
        for entry in
            std::fs::read_dir(self.root().path().join(TRASH)).map_err(|source| FsError::Io {
                path: self.root().path().join(TRASH),
                source,
            })?
        {
            let Ok(entry) = entry else { continue };
            let rel = Path::new(TRASH).join(entry.file_name());
            let Some(st) = self.root().stat(&rel)? else {
                continue;
            };
            if st.st_ino == SUBVOLUME_ROOT_INO && st.st_dev != dev {
                let mut args = VolArgs {
                    fd: 0,
                    name: [0; VOL_NAME_MAX],
                };
                copy_name(&mut args.name, &entry.file_name())
                    .map_err(|e| self.root().error(&rel, e))?;
                ioctl(trash.as_fd(), BTRFS_IOC_SNAP_DESTROY, &mut args)
                    .map_err(|e| self.root().error(&rel, e))?;
                destroyed += 1;
            }
        }
        Ok(destroyed + self.plain.purge_trash()?)
    }

    fn exists(&self, rel: &RelPath) -> Result<bool, FsError> {
        self.plain.exists(rel)
    }

    fn volume_names(&self) -> Result<std::collections::BTreeSet<std::ffi::OsString>, FsError> {
        self.plain.volume_names()
    }

    /// Mounts the subvolume on its own path (through the descriptor opened beneath the root,
    /// so the mount lands exactly there), when the NFS server needs it.
    fn prepare_export(&self, rel: &RelPath) -> Result<(), FsError> {
        let path = rel.as_path();
        if !self.mount_subvolumes || self.is_mount_point(path)? {
            return Ok(());
        }
        let dir = self.root().open_dir(path)?;
        let id = self.subvolume_id(dir.as_fd(), path)?;
        let device = self.device()?;
        let target = format!("/proc/self/fd/{}", dir.as_raw_fd());
        nix::mount::mount(
            Some(device.as_str()),
            target.as_str(),
            Some("btrfs"),
            nix::mount::MsFlags::empty(),
            Some(format!("subvolid={id}").as_str()),
        )
        .map_err(|e| self.root().error(path, e))?;
        tracing::info!(volume = %rel, subvolume = id, "subvolume mounted for export");
        Ok(())
    }
}

impl BtrfsFs {
    /// Undoes [`VolumeFs::prepare_export`] (lazily: an NFS server may still hold it briefly).
    fn unmount_subvolume(&self, rel: &RelPath) -> Result<(), FsError> {
        if !self.mount_subvolumes
            || self.root().stat(rel.as_path())?.is_none()
            || !self.is_mount_point(rel.as_path())?
        {
            return Ok(());
        }
        let abs = self.root().path().join(rel.as_path());
        nix::mount::umount2(
            &abs,
            nix::mount::MntFlags::MNT_DETACH | nix::mount::MntFlags::UMOUNT_NOFOLLOW,
        )
        .map_err(|e| self.root().error(rel.as_path(), e))
    }
}
