//! An XFS export root with project quotas: each volume's directory gets the export id as its
//! project id (inherited by everything created inside it), and the project's hard block limit
//! is the volume's size. Clones and snapshots are reflink copies; a clone's or a restore's
//! copied inodes get the new export's project id too, so its data is charged to its quota.
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

/// The project id of an open file or directory, and whether it has PROJINHERIT.
fn project(fd: BorrowedFd<'_>) -> Result<(u32, bool), Errno> {
    let mut attr = FsXattr::default();
    ioctl(fd, FS_IOC_FSGETXATTR, &mut attr)?;
    Ok((attr.projid, attr.xflags & FS_XFLAG_PROJINHERIT != 0))
}

/// Gives an open file or directory the project id (a directory PROJINHERIT too); one that
/// already has them is left untouched.
fn set_project_fd(fd: BorrowedFd<'_>, directory: bool, project_id: u32) -> Result<(), Errno> {
    let mut attr = FsXattr::default();
    ioctl(fd, FS_IOC_FSGETXATTR, &mut attr)?;
    let flag = if directory { FS_XFLAG_PROJINHERIT } else { 0 };
    if attr.projid == project_id && attr.xflags & flag == flag {
        return Ok(());
    }
    attr.projid = project_id;
    attr.xflags |= flag;
    ioctl(fd, FS_IOC_FSSETXATTR, &mut attr)
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

    /// Gives every directory and regular file of the volume the project id, and directories
    /// PROJINHERIT so that what is created in them later is charged to it too.
    ///
    /// A new volume is one directory, but a clone's or a restore's copy was made without the
    /// id (the copy does not know it), so each of its inodes is set here, through descriptors
    /// opened beneath the root without following symlinks. The volume's top directory comes
    /// last: once it carries the id with PROJINHERIT the tree is done, and a later call (an
    /// expansion, or a create resumed after a crash part-way) finds that and stops. Left as
    /// they are: symlinks (no descriptor of one takes the ioctl) and special files (opening a
    /// device node acts on the device, a FIFO can block). Neither holds data; a symlink
    /// whose target does not fit in its inode keeps one block outside the volume's project.
    fn set_project(&self, rel: &RelPath, project_id: u32) -> Result<(), FsError> {
        let beneath = self.plain.beneath();
        let top = beneath.open_dir(rel.as_path())?;
        let (id, inherit) = project(top.as_fd()).map_err(|e| beneath.error(rel.as_path(), e))?;
        if (id, inherit) == (project_id, true) {
            return Ok(());
        }
        drop(top);
        let done = self.plain.visit_tree(rel, |fd, st| {
            set_project_fd(fd, super::beneath::is_dir(st), project_id)
        })?;
        tracing::info!(volume = %rel, project_id, inodes = done.visited, not_set = done.skipped, "project id set");
        Ok(())
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

    /// Gives the volume's inodes the project id (the export id) and sets the hard limit.
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

    fn volume_names(&self) -> Result<std::collections::BTreeSet<std::ffi::OsString>, FsError> {
        self.plain.volume_names()
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

    /// The project of every inode in `dir` that can take one; symlinks and FIFOs counted apart.
    fn projects(dir: &Path) -> (Vec<(PathBuf, u32, bool)>, usize) {
        use std::os::unix::fs::FileTypeExt;
        let (mut found, mut skipped) = (Vec::new(), 0);
        let mut stack = vec![dir.to_owned()];
        while let Some(d) = stack.pop() {
            for entry in std::fs::read_dir(&d).unwrap() {
                let path = entry.unwrap().path();
                let kind = std::fs::symlink_metadata(&path).unwrap().file_type();
                if kind.is_symlink() || kind.is_fifo() {
                    skipped += 1;
                    continue;
                }
                let file = std::fs::File::open(&path).unwrap();
                let (id, inherit) = project(file.as_fd()).unwrap();
                found.push((path.clone(), id, inherit));
                if kind.is_dir() {
                    stack.push(path);
                }
            }
        }
        (found, skipped)
    }

    fn assert_project(dir: &Path, project_id: u32) {
        let (found, skipped) = projects(dir);
        assert!(found.len() >= 8 && skipped == 2, "{found:?}, {skipped}");
        for (path, id, inherit) in found {
            assert_eq!(
                (id, inherit),
                (project_id, path.is_dir()),
                "{}",
                path.display()
            );
        }
        let top = std::fs::File::open(dir).unwrap();
        assert_eq!(project(top.as_fd()).unwrap(), (project_id, true));
    }

    /// Nested directories, reflinkable data, a hard link, an xattr, a symlink and a FIFO.
    fn populate(dir: &Path) {
        std::fs::create_dir_all(dir.join("a/b/c")).unwrap();
        for (i, sub) in ["", "a", "a/b", "a/b/c"].iter().enumerate() {
            std::fs::write(dir.join(sub).join("data"), vec![i as u8; 1 << 20]).unwrap();
        }
        std::fs::hard_link(dir.join("a/data"), dir.join("a/b/hard")).unwrap();
        std::os::unix::fs::symlink("../../data", dir.join("a/b/soft")).unwrap();
        nix::unistd::mkfifo(
            &dir.join("a/fifo"),
            nix::sys::stat::Mode::from_bits_truncate(0o600),
        )
        .unwrap();
        std::fs::create_dir(dir.join("empty")).unwrap();
        let path = CString::new(dir.join("a/data").as_os_str().as_encoded_bytes()).unwrap();
        // SAFETY: valid C strings and a buffer of the given length.
        let rc = unsafe {
            libc::setxattr(
                path.as_ptr(),
                c"user.k".as_ptr(),
                c"v".as_ptr().cast(),
                1,
                0,
            )
        };
        assert_eq!(rc, 0, "{}", std::io::Error::last_os_error());
    }

    /// A loop-mounted XFS with reflinks but without quotas (this host's kernel has no XFS
    /// quota support): project ids can be set and read all the same.
    fn loop_xfs() -> (rwxnfs_testbed::LoopFs, XfsFs) {
        let xfs = rwxnfs_testbed::LoopFs::new("xfs", 300, &["-q", "-m", "reflink=1"]);
        let fs = XfsFs {
            plain: PlainFs::open(&xfs.mount).unwrap(),
            device: CString::default(),
        };
        (xfs, fs)
    }

    fn rel(kind: fn(&rwxnfs_model::Name) -> RelPath, name: &str) -> RelPath {
        kind(&rwxnfs_model::Name::parse(name).unwrap())
    }

    #[test]
    fn every_copied_inode_of_a_clone_carries_the_new_exports_project() {
        let (xfs, fs) = loop_xfs();
        let (src, dst) = (rel(RelPath::volume, "src"), rel(RelPath::volume, "clone"));
        std::fs::create_dir_all(xfs.mount.join("volumes/src")).unwrap();
        populate(&xfs.mount.join("volumes/src"));
        fs.set_project(&src, 7).unwrap();
        assert_project(&xfs.mount.join("volumes/src"), 7);

        assert_eq!(fs.clone_tree(&src, &dst).unwrap(), CloneMethod::Reflink);
        fs.set_project(&dst, 42).unwrap();
        assert_project(&xfs.mount.join("volumes/clone"), 42);
        assert_project(&xfs.mount.join("volumes/src"), 7);
        // What is written into the clone later inherits the project from its directory.
        std::fs::write(xfs.mount.join("volumes/clone/a/b/c/new"), b"x").unwrap();
        assert_project(&xfs.mount.join("volumes/clone"), 42);
    }

    #[test]
    fn a_restored_snapshot_carries_the_new_exports_project_and_the_snapshot_none() {
        let (xfs, fs) = loop_xfs();
        let src = rel(RelPath::volume, "src");
        let (snap, restored) = (
            rel(RelPath::snapshot, "s"),
            rel(RelPath::volume, "restored"),
        );
        std::fs::create_dir_all(xfs.mount.join("volumes/src")).unwrap();
        populate(&xfs.mount.join("volumes/src"));
        fs.set_project(&src, 7).unwrap();

        fs.clone_tree(&src, &snap).unwrap();
        // A snapshot is charged to no export: its copy is made outside any project.
        let (found, _) = projects(&xfs.mount.join("snapshots/s"));
        assert!(found.iter().all(|(_, id, _)| *id == 0), "{found:?}");

        fs.clone_tree(&snap, &restored).unwrap();
        fs.set_project(&restored, 43).unwrap();
        assert_project(&xfs.mount.join("volumes/restored"), 43);
    }

    #[test]
    fn a_volume_whose_top_carries_its_project_is_not_walked_again() {
        let (xfs, fs) = loop_xfs();
        let vol = rel(RelPath::volume, "v");
        std::fs::create_dir_all(xfs.mount.join("volumes/v")).unwrap();
        populate(&xfs.mount.join("volumes/v"));
        fs.set_project(&vol, 9).unwrap();
        let deep = std::fs::File::open(xfs.mount.join("volumes/v/a/b/c/data")).unwrap();
        set_project_fd(deep.as_fd(), false, 10).unwrap();
        // An expansion sets the limit again: one ioctl on the top directory, no walk.
        fs.set_project(&vol, 9).unwrap();
        assert_eq!(project(deep.as_fd()).unwrap(), (10, false));
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
