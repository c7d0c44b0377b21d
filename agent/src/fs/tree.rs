//! Whole-tree operations on descriptors: copying a tree (reflinks where the filesystem has
//! them, bytes otherwise) with everything a restore needs, visiting every inode of a tree
//! (XFS gives a clone its project id so), and removing a tree.
//!
//! All walk iteratively (no recursion, so depth cannot overflow the stack), open every
//! directory relative to its parent's descriptor with O_NOFOLLOW, and never follow a symlink.
//! Removal does not cross into other filesystems mounted inside the tree.

use std::{
    collections::HashMap,
    ffi::{CStr, CString, OsStr},
    io,
    os::{
        fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd},
        unix::ffi::OsStrExt,
    },
    path::{Path, PathBuf},
};

use nix::{
    dir::Dir,
    errno::Errno,
    fcntl::{AtFlags, OFlag, openat, readlinkat},
    sys::{
        stat::{
            FileStat, Mode, SFlag, UtimensatFlags, fchmod, fstat, fstatat, mkdirat, mknodat,
            utimensat,
        },
        time::TimeSpec,
    },
    unistd::{Gid, Uid, UnlinkatFlags, fchown, fchownat, linkat, symlinkat, unlinkat},
};

use super::CloneMethod;

/// Linux FICLONE: `_IOW(0x94, 9, int)`.
const FICLONE: libc::c_ulong = 0x4004_9409;

/// Log copy progress this often.
const PROGRESS_FILES: u64 = 1000;
const PROGRESS_BYTES: u64 = 256 << 20;

fn io_err(path: &Path, e: Errno) -> (PathBuf, io::Error) {
    (path.to_owned(), io::Error::from(e))
}

type TreeResult<T> = Result<T, (PathBuf, io::Error)>;

fn open_dir_at(dir: BorrowedFd<'_>, name: &OsStr) -> Result<OwnedFd, Errno> {
    openat(
        dir,
        name,
        OFlag::O_DIRECTORY | OFlag::O_RDONLY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
}

/// Entries of a directory, without "." and "..".
fn entries(dir: &OwnedFd) -> Result<Vec<CString>, Errno> {
    let dup = dir
        .try_clone()
        .map_err(|e| Errno::from_raw(e.raw_os_error().unwrap_or(libc::EIO)))?;
    let mut d = Dir::from_fd(dup)?;
    let mut names = Vec::new();
    for entry in d.iter() {
        let name = entry?.file_name().to_owned();
        if name.to_bytes() != b"." && name.to_bytes() != b".." {
            names.push(name);
        }
    }
    Ok(names)
}

fn kind(st: &FileStat) -> SFlag {
    SFlag::from_bits_truncate(st.st_mode & libc::S_IFMT)
}

fn times(st: &FileStat) -> (TimeSpec, TimeSpec) {
    (
        TimeSpec::new(st.st_atime, st.st_atime_nsec),
        TimeSpec::new(st.st_mtime, st.st_mtime_nsec),
    )
}

/// Copies every extended attribute it may (ACLs are xattrs too); attributes the kernel or our
/// privileges refuse are skipped with a debug log.
fn copy_xattrs(src: BorrowedFd<'_>, dst: BorrowedFd<'_>) {
    // SAFETY: flistxattr with a null buffer only returns the needed size.
    let size = unsafe { libc::flistxattr(src.as_raw_fd(), std::ptr::null_mut(), 0) };
    if size <= 0 {
        return;
    }
    let mut names = vec![0u8; size as usize];
    // SAFETY: the buffer is `names.len()` bytes long.
    let size = unsafe { libc::flistxattr(src.as_raw_fd(), names.as_mut_ptr().cast(), names.len()) };
    if size <= 0 {
        return;
    }
    for name in names[..size as usize]
        .split(|b| *b == 0)
        .filter(|n| !n.is_empty())
    {
        let Ok(cname) = CString::new(name) else {
            continue;
        };
        // SAFETY: a null buffer asks for the value's size.
        let len =
            unsafe { libc::fgetxattr(src.as_raw_fd(), cname.as_ptr(), std::ptr::null_mut(), 0) };
        if len < 0 {
            continue;
        }
        let mut value = vec![0u8; len as usize];
        // SAFETY: the buffer is `value.len()` bytes long.
        let len = unsafe {
            libc::fgetxattr(
                src.as_raw_fd(),
                cname.as_ptr(),
                value.as_mut_ptr().cast(),
                value.len(),
            )
        };
        if len < 0 {
            continue;
        }
        // SAFETY: name and value are valid for the given lengths.
        let rc = unsafe {
            libc::fsetxattr(
                dst.as_raw_fd(),
                cname.as_ptr(),
                value.as_ptr().cast(),
                len as usize,
                0,
            )
        };
        if rc != 0 {
            tracing::debug!(xattr = %String::from_utf8_lossy(name), error = %io::Error::last_os_error(), "xattr not copied");
        }
    }
}

/// Owner, mode (after owner: chown clears setuid bits) and xattrs of an open object.
fn copy_meta(src: BorrowedFd<'_>, dst: BorrowedFd<'_>, st: &FileStat) -> Result<(), Errno> {
    fchown(
        dst,
        Some(Uid::from_raw(st.st_uid)),
        Some(Gid::from_raw(st.st_gid)),
    )?;
    fchmod(dst, Mode::from_bits_truncate(st.st_mode & 0o7777))?;
    copy_xattrs(src, dst);
    Ok(())
}

fn set_times(dst: BorrowedFd<'_>, st: &FileStat) -> Result<(), Errno> {
    let (atime, mtime) = times(st);
    nix::sys::stat::futimens(dst, &atime, &mtime)
}

/// Tries a reflink; Ok(false) when the filesystem cannot (the caller copies bytes).
fn reflink(src: BorrowedFd<'_>, dst: BorrowedFd<'_>) -> Result<bool, Errno> {
    // SAFETY: FICLONE takes the source descriptor as its argument; both are open.
    let rc = unsafe { libc::ioctl(dst.as_raw_fd(), FICLONE, src.as_raw_fd()) };
    if rc == 0 {
        return Ok(true);
    }
    match Errno::last() {
        Errno::EOPNOTSUPP | Errno::EXDEV | Errno::EINVAL | Errno::ENOTTY | Errno::ENOSYS => {
            Ok(false)
        }
        other => Err(other),
    }
}

fn copy_bytes(src: BorrowedFd<'_>, dst: BorrowedFd<'_>) -> io::Result<u64> {
    let mut from = std::fs::File::from(src.try_clone_to_owned()?);
    let mut to = std::fs::File::from(dst.try_clone_to_owned()?);
    io::copy(&mut from, &mut to)
}

#[derive(Default)]
struct Progress {
    files: u64,
    bytes: u64,
    copied_files: u64,
    reflinked_files: u64,
}

impl Progress {
    fn file(&mut self, bytes: u64, reflinked: bool) {
        self.files += 1;
        if reflinked {
            self.reflinked_files += 1;
        } else {
            self.copied_files += 1;
            let before = self.bytes / PROGRESS_BYTES;
            self.bytes += bytes;
            if self.copied_files.is_multiple_of(PROGRESS_FILES)
                || self.bytes / PROGRESS_BYTES > before
            {
                tracing::info!(
                    files = self.files,
                    copied_bytes = self.bytes,
                    "copying (no reflink support)"
                );
            }
        }
    }
}

/// A directory still to copy, and the metadata to give it once its contents are in.
struct Pending {
    src: OwnedFd,
    dst: OwnedFd,
    path: PathBuf,
    st: FileStat,
}

/// Copies the tree at `src` (an open directory) into the new, empty directory `dst`.
pub(crate) fn clone_tree(src: OwnedFd, dst: OwnedFd, label: &Path) -> TreeResult<CloneMethod> {
    let st = fstat(src.as_fd()).map_err(|e| io_err(label, e))?;
    let mut stack = vec![Pending {
        src,
        dst,
        path: label.to_owned(),
        st,
    }];
    let mut finish: Vec<Pending> = Vec::new();
    let mut links: HashMap<(u64, u64), (OwnedFd, CString)> = HashMap::new();
    let mut progress = Progress::default();

    while let Some(dir) = stack.pop() {
        for name in entries(&dir.src).map_err(|e| io_err(&dir.path, e))? {
            let path = dir.path.join(OsStr::from_bytes(name.to_bytes()));
            copy_entry(&dir, &name, &path, &mut stack, &mut links, &mut progress)?;
        }
        finish.push(dir);
    }
    // Directory metadata last, deepest first, so creating children does not change it again.
    for dir in finish.iter().rev() {
        copy_meta(dir.src.as_fd(), dir.dst.as_fd(), &dir.st).map_err(|e| io_err(&dir.path, e))?;
        set_times(dir.dst.as_fd(), &dir.st).map_err(|e| io_err(&dir.path, e))?;
    }
    let method = if progress.copied_files > 0 {
        CloneMethod::Copy
    } else {
        CloneMethod::Reflink
    };
    if progress.copied_files > 0 {
        tracing::info!(
            files = progress.files,
            copied_bytes = progress.bytes,
            reflinked = progress.reflinked_files,
            "copy finished"
        );
    }
    Ok(method)
}

fn copy_entry(
    dir: &Pending,
    name: &CStr,
    path: &Path,
    stack: &mut Vec<Pending>,
    links: &mut HashMap<(u64, u64), (OwnedFd, CString)>,
    progress: &mut Progress,
) -> TreeResult<()> {
    let e = |err| io_err(path, err);
    let st = fstatat(dir.src.as_fd(), name, AtFlags::AT_SYMLINK_NOFOLLOW).map_err(e)?;
    match kind(&st) {
        SFlag::S_IFDIR => {
            mkdirat(dir.dst.as_fd(), name, Mode::from_bits_truncate(0o700)).map_err(e)?;
            let src =
                open_dir_at(dir.src.as_fd(), OsStr::from_bytes(name.to_bytes())).map_err(e)?;
            let dst =
                open_dir_at(dir.dst.as_fd(), OsStr::from_bytes(name.to_bytes())).map_err(e)?;
            stack.push(Pending {
                src,
                dst,
                path: path.to_owned(),
                st,
            });
        }
        SFlag::S_IFREG => {
            let key = (st.st_dev, st.st_ino);
            if st.st_nlink > 1
                && let Some((first_dir, first_name)) = links.get(&key)
            {
                linkat(
                    first_dir.as_fd(),
                    first_name.as_c_str(),
                    dir.dst.as_fd(),
                    name,
                    AtFlags::empty(),
                )
                .map_err(e)?;
                return Ok(());
            }
            let src = openat(
                dir.src.as_fd(),
                name,
                OFlag::O_RDONLY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
                Mode::empty(),
            )
            .map_err(e)?;
            let dst = openat(
                dir.dst.as_fd(),
                name,
                OFlag::O_WRONLY
                    | OFlag::O_CREAT
                    | OFlag::O_EXCL
                    | OFlag::O_NOFOLLOW
                    | OFlag::O_CLOEXEC,
                Mode::from_bits_truncate(0o600),
            )
            .map_err(e)?;
            let reflinked = reflink(src.as_fd(), dst.as_fd()).map_err(e)?;
            if !reflinked {
                copy_bytes(src.as_fd(), dst.as_fd()).map_err(|err| (path.to_owned(), err))?;
            }
            progress.file(st.st_size as u64, reflinked);
            copy_meta(src.as_fd(), dst.as_fd(), &st).map_err(e)?;
            set_times(dst.as_fd(), &st).map_err(e)?;
            if st.st_nlink > 1 {
                let dup = dir.dst.try_clone().map_err(|err| (path.to_owned(), err))?;
                links.insert(key, (dup, name.to_owned()));
            }
        }
        SFlag::S_IFLNK => {
            let target = readlinkat(dir.src.as_fd(), name).map_err(e)?;
            symlinkat(target.as_os_str(), dir.dst.as_fd(), name).map_err(e)?;
            copy_entry_meta(dir.dst.as_fd(), name, &st).map_err(e)?;
        }
        other => {
            // FIFOs, sockets and device nodes: recreated, not opened.
            mknodat(
                dir.dst.as_fd(),
                name,
                other,
                Mode::from_bits_truncate(st.st_mode & 0o7777),
                st.st_rdev,
            )
            .map_err(e)?;
            copy_entry_meta(dir.dst.as_fd(), name, &st).map_err(e)?;
        }
    }
    Ok(())
}

/// Owner and times of an entry that is not opened (a symlink or a special file), set on the
/// entry itself, never on what a symlink points to.
fn copy_entry_meta(dir: BorrowedFd<'_>, name: &CStr, st: &FileStat) -> Result<(), Errno> {
    fchownat(
        dir,
        name,
        Some(Uid::from_raw(st.st_uid)),
        Some(Gid::from_raw(st.st_gid)),
        AtFlags::AT_SYMLINK_NOFOLLOW,
    )?;
    let (atime, mtime) = times(st);
    utimensat(dir, name, &atime, &mtime, UtimensatFlags::NoFollowSymlink)
}

/// What [`visit_tree`] did: how many inodes it visited and how many it left unopened.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Visited {
    pub visited: u64,
    /// Symlinks (no descriptor of one takes an ioctl without following it), special files
    /// (opening a device node acts on the device, opening a FIFO can block) and directories
    /// of another filesystem mounted inside the tree.
    pub skipped: u64,
}

/// Calls `visit` with a descriptor of every directory and regular file in the open directory
/// `dir`, each opened relative to its parent with O_NOFOLLOW, and with `dir` itself last, so
/// that what the visit does to `dir` can mark the whole tree as done. A directory is visited
/// before its contents; an entry that changed type since it was listed is skipped.
pub(crate) fn visit_tree(
    dir: OwnedFd,
    label: &Path,
    mut visit: impl FnMut(BorrowedFd<'_>, &FileStat) -> Result<(), Errno>,
) -> TreeResult<Visited> {
    let top = fstat(dir.as_fd()).map_err(|e| io_err(label, e))?;
    let first = dir.try_clone().map_err(|e| (label.to_owned(), e))?;
    let mut stack = vec![(first, label.to_owned())];
    let mut done = Visited::default();
    while let Some((fd, path)) = stack.pop() {
        for name in entries(&fd).map_err(|e| io_err(&path, e))? {
            let child = path.join(OsStr::from_bytes(name.to_bytes()));
            let e = |err| io_err(&child, err);
            let Some((child_fd, st)) = open_entry(fd.as_fd(), &name, top.st_dev).map_err(e)? else {
                done.skipped += 1;
                continue;
            };
            visit(child_fd.as_fd(), &st).map_err(e)?;
            done.visited += 1;
            if kind(&st) == SFlag::S_IFDIR {
                stack.push((child_fd, child));
            }
        }
    }
    visit(dir.as_fd(), &top).map_err(|e| io_err(label, e))?;
    done.visited += 1;
    Ok(done)
}

/// Opens a directory (on filesystem `dev`) or a regular file of `dir` for [`visit_tree`];
/// None for anything else, or for an entry gone or changed since it was listed.
fn open_entry(
    dir: BorrowedFd<'_>,
    name: &CStr,
    dev: u64,
) -> Result<Option<(OwnedFd, FileStat)>, Errno> {
    let listed = match fstatat(dir, name, AtFlags::AT_SYMLINK_NOFOLLOW) {
        Ok(st) => st,
        Err(Errno::ENOENT) => return Ok(None),
        Err(e) => return Err(e),
    };
    let flags = match kind(&listed) {
        SFlag::S_IFDIR if listed.st_dev == dev => OFlag::O_DIRECTORY | OFlag::O_RDONLY,
        // Non-blocking and no controlling terminal: harmless should it have become a FIFO or
        // a device since it was listed.
        SFlag::S_IFREG => OFlag::O_RDONLY | OFlag::O_NONBLOCK | OFlag::O_NOCTTY,
        _ => return Ok(None),
    };
    let fd = match openat(
        dir,
        name,
        flags | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
        Mode::empty(),
    ) {
        Ok(fd) => fd,
        // Gone, a symlink now, or no longer a directory.
        Err(Errno::ENOENT | Errno::ELOOP | Errno::ENOTDIR) => return Ok(None),
        Err(e) => return Err(e),
    };
    let st = fstat(fd.as_fd())?;
    let same = (st.st_dev, st.st_ino, kind(&st)) == (listed.st_dev, listed.st_ino, kind(&listed));
    Ok(same.then_some((fd, st)))
}

/// Removes everything inside the open directory `dir` (not `dir` itself). Directories on
/// another filesystem (a mount inside the tree) are left alone. Returns how many entries went.
pub(crate) fn remove_contents(dir: OwnedFd, label: &Path) -> TreeResult<u64> {
    let dev = fstat(dir.as_fd()).map_err(|e| io_err(label, e))?.st_dev;
    let mut removed = 0;
    // Directories already emptied once: if one is still not empty (something in it could not
    // be removed), it is left rather than retried forever.
    let mut descended = std::collections::HashSet::new();
    // Each frame: a directory and the names in it still to remove.
    let mut stack: Vec<(OwnedFd, PathBuf, Vec<CString>)> = Vec::new();
    let names = entries(&dir).map_err(|e| io_err(label, e))?;
    stack.push((dir, label.to_owned(), names));
    while let Some((fd, path, mut names)) = stack.pop() {
        let Some(name) = names.pop() else {
            // This directory is empty now; its parent removes it when it sees it again.
            continue;
        };
        let child = path.join(OsStr::from_bytes(name.to_bytes()));
        let st = match fstatat(fd.as_fd(), name.as_c_str(), AtFlags::AT_SYMLINK_NOFOLLOW) {
            Ok(st) => st,
            Err(Errno::ENOENT) => {
                stack.push((fd, path, names));
                continue;
            }
            Err(e) => return Err(io_err(&child, e)),
        };
        if kind(&st) == SFlag::S_IFDIR {
            if st.st_dev != dev {
                tracing::warn!(path = %child.display(), "not removing a directory on another filesystem");
                stack.push((fd, path, names));
                continue;
            }
            match unlinkat(fd.as_fd(), name.as_c_str(), UnlinkatFlags::RemoveDir) {
                Ok(()) | Err(Errno::ENOENT) => {
                    removed += 1;
                    stack.push((fd, path, names));
                }
                Err(Errno::ENOTEMPTY | Errno::EEXIST)
                    if !descended.insert((st.st_dev, st.st_ino)) =>
                {
                    tracing::warn!(path = %child.display(), "directory could not be emptied; left in place");
                    stack.push((fd, path, names));
                }
                Err(Errno::ENOTEMPTY | Errno::EEXIST) => {
                    let sub = open_dir_at(fd.as_fd(), OsStr::from_bytes(name.to_bytes()))
                        .map_err(|e| io_err(&child, e))?;
                    let sub_names = entries(&sub).map_err(|e| io_err(&child, e))?;
                    // Come back to this name once its contents are gone.
                    names.push(name);
                    stack.push((fd, path, names));
                    stack.push((sub, child, sub_names));
                }
                Err(e) => return Err(io_err(&child, e)),
            }
        } else {
            match unlinkat(fd.as_fd(), name.as_c_str(), UnlinkatFlags::NoRemoveDir) {
                Ok(()) | Err(Errno::ENOENT) => removed += 1,
                Err(e) => return Err(io_err(&child, e)),
            }
            stack.push((fd, path, names));
        }
    }
    Ok(removed)
}

#[cfg(test)]
mod tests;
