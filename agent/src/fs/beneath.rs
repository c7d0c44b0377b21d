//! File operations confined to a root directory.
//!
//! Every path is resolved by the kernel relative to an open descriptor of the root with
//! openat2(2) and `RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS`: a `..`, an
//! absolute path or a symlink anywhere along the way fails the call instead of leading
//! elsewhere. Operations on the last component (mkdir, rename, unlink, stat) act on the
//! parent's descriptor and never follow a symlink there either.

use std::{
    collections::BTreeSet,
    ffi::{OsStr, OsString},
    io,
    os::fd::{AsFd, OwnedFd},
    path::{Component, Path, PathBuf},
};

use nix::{
    errno::Errno,
    fcntl::{AtFlags, OFlag, OpenHow, ResolveFlag, openat2, renameat},
    sys::stat::{FileStat, Mode, fstatat, mkdirat},
    unistd::{UnlinkatFlags, unlinkat},
};

use super::FsError;

/// An open export root.
#[derive(Debug)]
pub struct Root {
    fd: OwnedFd,
    path: PathBuf,
}

fn resolve_flags() -> ResolveFlag {
    ResolveFlag::RESOLVE_BENEATH
        | ResolveFlag::RESOLVE_NO_SYMLINKS
        | ResolveFlag::RESOLVE_NO_MAGICLINKS
}

impl Root {
    /// Opens the root itself (a trusted, configured path).
    pub fn open(path: &Path) -> Result<Self, FsError> {
        let fd = nix::fcntl::open(
            path,
            OFlag::O_DIRECTORY | OFlag::O_RDONLY | OFlag::O_CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| FsError::Io {
            path: path.to_owned(),
            source: e.into(),
        })?;
        Ok(Self {
            fd,
            path: path.to_owned(),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn fd(&self) -> std::os::fd::BorrowedFd<'_> {
        self.fd.as_fd()
    }

    /// Maps an errno from a confined operation on `rel` to our error.
    pub fn error(&self, rel: &Path, errno: Errno) -> FsError {
        let path = self.path.join(rel);
        match errno {
            // ELOOP: a symlink was met; EXDEV: the path tried to leave the root.
            Errno::ELOOP | Errno::EXDEV => FsError::Escape { path },
            Errno::ENOENT => FsError::NotFound { path },
            Errno::ENOSPC | Errno::EDQUOT => {
                FsError::NoSpace(format!("{}: {errno}", path.display()))
            }
            other => FsError::Io {
                path,
                source: io::Error::from(other),
            },
        }
    }

    /// Opens `rel` (relative, beneath the root) with `flags`; "" or "." is the root.
    pub fn open_beneath(&self, rel: &Path, flags: OFlag) -> Result<OwnedFd, FsError> {
        check_relative(rel, &self.path)?;
        let target: &Path = if rel.as_os_str().is_empty() {
            Path::new(".")
        } else {
            rel
        };
        let how = OpenHow::new()
            .flags(flags | OFlag::O_CLOEXEC | OFlag::O_NOFOLLOW)
            .resolve(resolve_flags());
        openat2(self.fd.as_fd(), target, how).map_err(|e| match e {
            // O_DIRECTORY on a symlink reports ENOTDIR before the resolve flags speak.
            Errno::ENOTDIR if self.is_symlink(rel) => FsError::Escape {
                path: self.path.join(rel),
            },
            other => self.error(rel, other),
        })
    }

    fn is_symlink(&self, rel: &Path) -> bool {
        matches!(self.stat(rel), Ok(Some(st)) if st.st_mode & libc::S_IFMT == libc::S_IFLNK)
    }

    /// Opens the directory `rel`.
    pub fn open_dir(&self, rel: &Path) -> Result<OwnedFd, FsError> {
        self.open_beneath(rel, OFlag::O_DIRECTORY | OFlag::O_RDONLY)
    }

    /// The parent directory of `rel`, opened, and `rel`'s last component.
    pub fn parent(&self, rel: &Path) -> Result<(OwnedFd, OsString), FsError> {
        check_relative(rel, &self.path)?;
        let name = match rel.components().next_back() {
            Some(Component::Normal(name)) => name.to_owned(),
            _ => {
                return Err(FsError::Escape {
                    path: self.path.join(rel),
                });
            }
        };
        let parent = rel.parent().unwrap_or(Path::new(""));
        Ok((self.open_dir(parent)?, name))
    }

    /// The names in the directory `rel` (without `.` and `..`); None when it does not exist.
    /// One listing, where a lookup of each name would open the directory each time.
    pub fn entry_names(&self, rel: &Path) -> Result<Option<BTreeSet<OsString>>, FsError> {
        use std::os::unix::ffi::OsStrExt;
        let dir = match self.open_dir(rel) {
            Ok(dir) => dir,
            Err(FsError::NotFound { .. }) => return Ok(None),
            Err(e) => return Err(e),
        };
        let mut listing = nix::dir::Dir::from_fd(dir).map_err(|e| self.error(rel, e))?;
        let mut names = BTreeSet::new();
        for entry in listing.iter() {
            let entry = entry.map_err(|e| self.error(rel, e))?;
            let name = entry.file_name().to_bytes();
            if name != b"." && name != b".." {
                names.insert(OsStr::from_bytes(name).to_owned());
            }
        }
        Ok(Some(names))
    }

    /// lstat of `rel`; None when it does not exist.
    pub fn stat(&self, rel: &Path) -> Result<Option<FileStat>, FsError> {
        let (dir, name) = match self.parent(rel) {
            Ok(found) => found,
            Err(FsError::NotFound { .. }) => return Ok(None),
            Err(e) => return Err(e),
        };
        match fstatat(dir.as_fd(), name.as_os_str(), AtFlags::AT_SYMLINK_NOFOLLOW) {
            Ok(st) => Ok(Some(st)),
            Err(Errno::ENOENT) => Ok(None),
            Err(e) => Err(self.error(rel, e)),
        }
    }

    /// Creates the directory `rel` (its parent must exist). Already a directory: Ok(false).
    pub fn mkdir(&self, rel: &Path, mode: u32) -> Result<bool, FsError> {
        let (dir, name) = self.parent(rel)?;
        match mkdirat(
            dir.as_fd(),
            name.as_os_str(),
            Mode::from_bits_truncate(mode),
        ) {
            Ok(()) => Ok(true),
            Err(Errno::EEXIST) => match self.stat(rel)? {
                Some(st) if is_dir(&st) => Ok(false),
                Some(st) if st.st_mode & libc::S_IFMT == libc::S_IFLNK => Err(FsError::Escape {
                    path: self.path.join(rel),
                }),
                _ => Err(FsError::Conflict {
                    path: self.path.join(rel),
                }),
            },
            Err(e) => Err(self.error(rel, e)),
        }
    }

    /// Creates `rel` and any missing parents, each a real directory beneath the root.
    pub fn mkdir_all(&self, rel: &Path, mode: u32) -> Result<(), FsError> {
        let mut sofar = PathBuf::new();
        for component in rel.components() {
            sofar.push(component);
            self.mkdir(&sofar, mode)?;
        }
        Ok(())
    }

    /// Gives the directory `rel` an owner, a group and permission bits.
    pub fn set_owner_mode(&self, rel: &Path, uid: u32, gid: u32, mode: u32) -> Result<(), FsError> {
        let dir = self.open_dir(rel)?;
        let err = |e| self.error(rel, e);
        nix::unistd::fchown(
            dir.as_fd(),
            Some(nix::unistd::Uid::from_raw(uid)),
            Some(nix::unistd::Gid::from_raw(gid)),
        )
        .map_err(err)?;
        nix::sys::stat::fchmod(dir.as_fd(), Mode::from_bits_truncate(mode)).map_err(err)
    }

    /// Renames `from` to `to`, both beneath the root. `to` must not exist.
    pub fn rename(&self, from: &Path, to: &Path) -> Result<(), FsError> {
        let (from_dir, from_name) = self.parent(from)?;
        let (to_dir, to_name) = self.parent(to)?;
        if self.stat(to)?.is_some() {
            return Err(FsError::Conflict {
                path: self.path.join(to),
            });
        }
        renameat(
            from_dir.as_fd(),
            from_name.as_os_str(),
            to_dir.as_fd(),
            to_name.as_os_str(),
        )
        .map_err(|e| self.error(from, e))
    }

    /// Removes the empty directory or the non-directory `rel`.
    pub fn remove_entry(&self, rel: &Path, directory: bool) -> Result<(), FsError> {
        let (dir, name) = self.parent(rel)?;
        let flag = if directory {
            UnlinkatFlags::RemoveDir
        } else {
            UnlinkatFlags::NoRemoveDir
        };
        match unlinkat(dir.as_fd(), name.as_os_str(), flag) {
            Ok(()) | Err(Errno::ENOENT) => Ok(()),
            Err(e) => Err(self.error(rel, e)),
        }
    }
}

pub fn is_dir(st: &FileStat) -> bool {
    st.st_mode & libc::S_IFMT == libc::S_IFDIR
}

/// Only plain relative components: no root, no `..`, no `.` in the middle.
fn check_relative(rel: &Path, root: &Path) -> Result<(), FsError> {
    let ok = rel
        .components()
        .all(|c| matches!(c, Component::Normal(n) if !n.is_empty() && n != OsStr::new(".")));
    if ok {
        Ok(())
    } else {
        Err(FsError::Escape {
            path: root.join(rel),
        })
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::symlink;

    use super::*;

    fn root() -> (tempfile::TempDir, Root) {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("root")).unwrap();
        let root = Root::open(&dir.path().join("root")).unwrap();
        (dir, root)
    }

    #[test]
    fn directories_are_made_beneath_the_root() {
        let (dir, root) = root();
        root.mkdir_all(Path::new("volumes/pvc-1"), 0o755).unwrap();
        assert!(dir.path().join("root/volumes/pvc-1").is_dir());
        assert!(
            !root.mkdir(Path::new("volumes/pvc-1"), 0o755).unwrap(),
            "second mkdir is a no-op"
        );
    }

    #[test]
    fn dot_dot_and_absolute_paths_are_refused() {
        let (_dir, root) = root();
        for bad in ["../x", "/etc", "a/../../x", "a/.."] {
            let err = root.mkdir_all(Path::new(bad), 0o755).unwrap_err();
            assert!(matches!(err, FsError::Escape { .. }), "{bad}: {err}");
        }
    }

    #[test]
    fn a_symlink_anywhere_on_the_path_is_refused_and_nothing_outside_changes() {
        let (dir, root) = root();
        let outside = dir.path().join("outside");
        std::fs::create_dir(&outside).unwrap();
        symlink(&outside, dir.path().join("root/volumes")).unwrap();
        let err = root
            .mkdir_all(Path::new("volumes/pvc-1"), 0o755)
            .unwrap_err();
        assert!(matches!(err, FsError::Escape { .. }), "{err}");
        assert_eq!(std::fs::read_dir(&outside).unwrap().count(), 0);

        std::fs::remove_file(dir.path().join("root/volumes")).unwrap();
        std::fs::create_dir(dir.path().join("root/volumes")).unwrap();
        symlink("/", dir.path().join("root/volumes/pvc-2")).unwrap();
        let err = root.open_dir(Path::new("volumes/pvc-2")).unwrap_err();
        assert!(matches!(err, FsError::Escape { .. }), "{err}");
        // Renaming the link itself is fine (it is an entry beneath the root); following it is not.
        root.mkdir(Path::new(".trash"), 0o700).unwrap();
        root.rename(Path::new("volumes/pvc-2"), Path::new(".trash/x"))
            .unwrap();
        assert!(Path::new("/").exists());
    }

    #[test]
    fn stat_reports_missing_entries_as_none() {
        let (_dir, root) = root();
        assert!(root.stat(Path::new("nope")).unwrap().is_none());
        assert!(root.stat(Path::new("nope/deeper")).unwrap().is_none());
    }
}
