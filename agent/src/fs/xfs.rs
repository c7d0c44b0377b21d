//! An XFS export root with project quotas: each volume's directory gets the export id as its
//! project id (inherited by everything created inside it), and the project's hard block limit
//! is the volume's size. Clones and snapshots are reflink copies.
//!
//! The filesystem must be mounted with `prjquota` (or `pquota`). The kernel of this project's
//! build machines has no XFS quota support, so this layer is exercised for real in the VM tier;
//! here its decisions (device lookup, structure layouts, command numbers) are unit-tested.

use std::{
    ffi::CString,
    os::fd::{AsFd, AsRawFd, BorrowedFd},
    path::{Path, PathBuf},
};

use nix::errno::Errno;
use rwxnfs_model::mountinfo::{MountEntry, parse_mountinfo};

use super::{
    CloneMethod, FsError, Ownership, QuotaKind, RelPath, Space, VolumeFs, plain::PlainFs, round_up,
};

/// _IOR('X', 31, struct fsxattr)
const FS_IOC_FSGETXATTR: libc::c_ulong = 0x801C_581F;
/// _IOW('X', 32, struct fsxattr)
const FS_IOC_FSSETXATTR: libc::c_ulong = 0x401C_5820;
const FS_XFLAG_PROJINHERIT: u32 = 0x0000_0200;
/// QCMD(Q_XSETQLIM, PRJQUOTA): Q_XSETQLIM = XQM_CMD(4) = ('X' << 8) + 4; PRJQUOTA = 2.
const Q_XSETQLIM_PRJ: i32 = (0x5804 << 8) | 2;
/// QCMD(Q_XGETQUOTA, PRJQUOTA)
const Q_XGETQUOTA_PRJ: i32 = (0x5803 << 8) | 2;
const FS_DQUOT_VERSION: i8 = 1;
const FS_PROJ_QUOTA: i8 = 2;
const FS_DQ_BSOFT: u16 = 1 << 2;
const FS_DQ_BHARD: u16 = 1 << 3;
/// XFS quota limits are in 512-byte basic blocks; the allocation unit is a 4 KiB block.
const BASIC_BLOCK: u64 = 512;
const GRANULARITY: u64 = 4096;
const XFS_SUPER_MAGIC: i64 = 0x5846_5342;

#[repr(C)]
#[derive(Default)]
struct FsXattr {
    xflags: u32,
    extsize: u32,
    nextents: u32,
    projid: u32,
    cowextsize: u32,
    pad: [u8; 8],
}

#[repr(C)]
#[derive(Default)]
struct FsDiskQuota {
    version: i8,
    flags: i8,
    fieldmask: u16,
    id: u32,
    blk_hardlimit: u64,
    blk_softlimit: u64,
    ino_hardlimit: u64,
    ino_softlimit: u64,
    bcount: u64,
    icount: u64,
    itimer: i32,
    btimer: i32,
    iwarns: u16,
    bwarns: u16,
    itimer_hi: i8,
    btimer_hi: i8,
    rtbtimer_hi: i8,
    padding2: i8,
    rtb_hardlimit: u64,
    rtb_softlimit: u64,
    rtbcount: u64,
    rtbtimer: i32,
    rtbwarns: u16,
    padding3: i16,
    padding4: [u8; 8],
}

/// The XFS mount holding `root` and whether project quotas are on, from the mount table.
pub fn quota_mount(table: &[MountEntry], root: &Path) -> Option<(MountEntry, bool)> {
    table
        .iter()
        .filter(|m| m.fs_type == "xfs" && root.starts_with(&m.mount_point))
        .max_by_key(|m| m.mount_point.as_os_str().len())
        .map(|m| {
            let on = m
                .super_options
                .iter()
                .any(|o| matches!(o.as_str(), "prjquota" | "pquota" | "pqnoenforce"));
            (m.clone(), on)
        })
}

pub struct XfsFs {
    plain: PlainFs,
    device: CString,
}

fn ioctl<T>(fd: BorrowedFd<'_>, request: libc::c_ulong, arg: &mut T) -> Result<(), Errno> {
    // SAFETY: `arg` is a #[repr(C)] struct of the size the request number encodes.
    let rc = unsafe { libc::ioctl(fd.as_raw_fd(), request, arg as *mut T) };
    if rc < 0 { Err(Errno::last()) } else { Ok(()) }
}

impl XfsFs {
    /// Opens an XFS root mounted with project quotas; otherwise says what is missing.
    pub fn open(root: &Path) -> Result<Self, FsError> {
        let plain = PlainFs::open(root)?;
        let st = nix::sys::statfs::fstatfs(plain.beneath().fd())
            .map_err(|e| plain.beneath().error(Path::new(""), e))?;
        let quota_err = |message: String| FsError::Quota {
            path: root.to_owned(),
            message,
        };
        if st.filesystem_type().0 as i64 != XFS_SUPER_MAGIC {
            return Err(quota_err("not an XFS filesystem".into()));
        }
        let table =
            std::fs::read_to_string("/proc/self/mountinfo").map_err(|source| FsError::Io {
                path: "/proc/self/mountinfo".into(),
                source,
            })?;
        let (mount, on) = quota_mount(&parse_mountinfo(&table), root)
            .ok_or_else(|| quota_err("cannot find the XFS mount in the mount table".into()))?;
        if !on {
            return Err(quota_err(format!(
                "{} is not mounted with prjquota; add it to the mount options",
                mount.mount_point.display()
            )));
        }
        let device = CString::new(mount.source.as_bytes())
            .map_err(|_| quota_err("device name contains NUL".into()))?;
        Ok(Self { plain, device })
    }

    fn set_project(&self, rel: &RelPath, project_id: u32) -> Result<(), FsError> {
        let dir = self.plain.beneath().open_dir(rel.as_path())?;
        let err = |e| self.plain.beneath().error(rel.as_path(), e);
        let mut attr = FsXattr::default();
        ioctl(dir.as_fd(), FS_IOC_FSGETXATTR, &mut attr).map_err(err)?;
        attr.projid = project_id;
        attr.xflags |= FS_XFLAG_PROJINHERIT;
        ioctl(dir.as_fd(), FS_IOC_FSSETXATTR, &mut attr).map_err(err)
    }

    fn quotactl(&self, cmd: i32, id: u32, quota: &mut FsDiskQuota) -> Result<(), Errno> {
        // SAFETY: the device is a NUL-terminated string and `quota` a fs_disk_quota.
        let rc = unsafe {
            libc::quotactl(
                cmd,
                self.device.as_ptr(),
                id as i32,
                (quota as *mut FsDiskQuota).cast(),
            )
        };
        if rc < 0 { Err(Errno::last()) } else { Ok(()) }
    }
}

/// The hard and soft block limit for `bytes`, in basic blocks, rounded up to whole 4 KiB.
pub fn limit_blocks(bytes: u64) -> (u64, u64) {
    let rounded = round_up(bytes, GRANULARITY);
    (rounded, rounded / BASIC_BLOCK)
}

/// The fs_disk_quota that Q_XGETQUOTA fills for project `project_id`.
fn usage_query(project_id: u32) -> FsDiskQuota {
    FsDiskQuota {
        version: FS_DQUOT_VERSION,
        flags: FS_PROJ_QUOTA,
        id: project_id,
        ..Default::default()
    }
}

/// The bytes charged to a project: its block count is in basic blocks.
fn used_bytes(quota: &FsDiskQuota) -> u64 {
    quota.bcount.saturating_mul(BASIC_BLOCK)
}

impl VolumeFs for XfsFs {
    fn root(&self) -> &Path {
        self.plain.root()
    }
    fn quota_kind(&self) -> QuotaKind {
        QuotaKind::Xfs
    }
    fn granularity(&self) -> u64 {
        GRANULARITY
    }
    fn space(&self) -> Result<Space, FsError> {
        self.plain.space()
    }
    fn create_volume(&self, rel: &RelPath, ownership: Ownership) -> Result<(), FsError> {
        self.plain.create_volume(rel, ownership)
    }

    /// Tags the directory with the project id (the export id) and sets the hard limit.
    fn set_limit(&self, rel: &RelPath, project_id: u32, bytes: u64) -> Result<u64, FsError> {
        self.set_project(rel, project_id)?;
        let (enforced, blocks) = limit_blocks(bytes);
        let mut quota = FsDiskQuota {
            version: FS_DQUOT_VERSION,
            flags: FS_PROJ_QUOTA,
            fieldmask: FS_DQ_BHARD | FS_DQ_BSOFT,
            id: project_id,
            blk_hardlimit: blocks,
            blk_softlimit: blocks,
            ..Default::default()
        };
        self.quotactl(Q_XSETQLIM_PRJ, project_id, &mut quota)
            .map_err(|e| FsError::Quota {
                path: self.absolute(rel),
                message: format!("setting project {project_id}'s limit: {e}"),
            })?;
        Ok(enforced)
    }

    /// The project's block count: what the hard limit is checked against.
    fn used_bytes(&self, rel: &RelPath, project_id: u32) -> Result<Option<u64>, FsError> {
        let mut quota = usage_query(project_id);
        match self.quotactl(Q_XGETQUOTA_PRJ, project_id, &mut quota) {
            Ok(()) => Ok(Some(used_bytes(&quota))),
            // XFS answers ENOENT for a project with no limits and nothing charged to it.
            Err(Errno::ENOENT) => Ok(Some(0)),
            Err(e) => Err(FsError::Quota {
                path: self.absolute(rel),
                message: format!("reading project {project_id}'s usage: {e}"),
            }),
        }
    }
    fn clone_tree(&self, src: &RelPath, dst: &RelPath) -> Result<CloneMethod, FsError> {
        self.plain.copy_tree(src, dst)
    }
    fn trash(&self, rel: &RelPath) -> Result<(), FsError> {
        self.plain.trash(rel)
    }
    fn archive(&self, rel: &RelPath) -> Result<Option<PathBuf>, FsError> {
        self.plain.archive(rel)
    }
    fn purge_trash(&self) -> Result<usize, FsError> {
        self.plain.purge_trash()
    }
    fn exists(&self, rel: &RelPath) -> Result<bool, FsError> {
        self.plain.exists(rel)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kernel_structures_have_the_kernels_sizes() {
        assert_eq!(std::mem::size_of::<FsXattr>(), 28);
        assert_eq!(std::mem::size_of::<FsDiskQuota>(), 112);
        // The ioctl numbers encode those sizes.
        assert_eq!((FS_IOC_FSGETXATTR >> 16) & 0x3fff, 28);
        assert_eq!((FS_IOC_FSSETXATTR >> 16) & 0x3fff, 28);
    }

    #[test]
    fn usage_is_asked_of_the_project_by_its_id_and_read_in_basic_blocks() {
        // QCMD(Q_XGETQUOTA, PRJQUOTA): Q_XGETQUOTA is XQM_CMD(3) = ('X' << 8) + 3, shifted past
        // the 8-bit type field that holds PRJQUOTA (2).
        assert_eq!(Q_XGETQUOTA_PRJ, ((((b'X' as i32) << 8) + 3) << 8) | 2);
        assert_eq!(Q_XGETQUOTA_PRJ, 0x0058_0302);
        // d_bcount and d_id where the kernel's struct fs_disk_quota has them.
        assert_eq!(std::mem::offset_of!(FsDiskQuota, id), 4);
        assert_eq!(std::mem::offset_of!(FsDiskQuota, bcount), 40);
        assert_eq!(std::mem::offset_of!(FsDiskQuota, rtb_hardlimit), 72);

        let query = usage_query(4242);
        assert_eq!(
            (query.version, query.flags, query.fieldmask, query.id),
            (FS_DQUOT_VERSION, FS_PROJ_QUOTA, 0, 4242)
        );
        let answered = FsDiskQuota {
            bcount: 2048 * 10, // 10 MiB in 512-byte basic blocks
            ..usage_query(4242)
        };
        assert_eq!(used_bytes(&answered), 10 << 20);
    }

    #[test]
    fn limits_are_whole_blocks_in_basic_block_units() {
        assert_eq!(limit_blocks(1), (4096, 8));
        assert_eq!(limit_blocks(1 << 30), (1 << 30, (1 << 30) / 512));
    }

    #[test]
    fn the_quota_device_is_the_innermost_xfs_mount_and_prjquota_is_required() {
        let table = parse_mountinfo(
            "20 1 8:1 / / rw - ext4 /dev/sda1 rw\n\
             30 20 147:0 / /drbd/exports rw,noatime - xfs /dev/drbd0 rw,attr2,inode64,prjquota\n\
             31 20 7:0 / /other rw - xfs /dev/loop0 rw,attr2\n",
        );
        let (mount, on) = quota_mount(&table, Path::new("/drbd/exports")).unwrap();
        assert_eq!((mount.source.as_str(), on), ("/dev/drbd0", true));
        let (_, on) = quota_mount(&table, Path::new("/other/x")).unwrap();
        assert!(!on);
        assert!(quota_mount(&table, Path::new("/srv")).is_none());
    }
}
