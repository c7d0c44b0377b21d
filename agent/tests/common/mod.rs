//! Shared by the agent's integration tests.
#![allow(clippy::unwrap_used, dead_code)]

use std::{
    path::{Path, PathBuf},
    sync::Mutex,
};

use rwxnfs_agent::fs::{
    CloneMethod, FsError, Ownership, QuotaKind, RelPath, Space, VolumeFs, round_up,
};

/// Directories under a tempdir; limits are remembered, not enforced.
pub(crate) struct DirFs {
    pub root: PathBuf,
    pub limits: Mutex<std::collections::HashMap<PathBuf, u64>>,
    pub fail_clone: Mutex<bool>,
    /// What `used_bytes` answers per volume path: a count, or `Err` to fail. Unset: unknown.
    pub usage: Mutex<std::collections::HashMap<PathBuf, Result<u64, String>>>,
}

fn io(path: &Path) -> impl Fn(std::io::Error) -> FsError + '_ {
    move |source| FsError::Io {
        path: path.to_owned(),
        source,
    }
}

fn copy_dir(src: &Path, dst: &Path) -> std::io::Result<()> {
    std::fs::create_dir(dst)?;
    for entry in std::fs::read_dir(src)? {
        let entry = entry?;
        let to = dst.join(entry.file_name());
        if entry.file_type()?.is_dir() {
            copy_dir(&entry.path(), &to)?;
        } else {
            std::fs::copy(entry.path(), to)?;
        }
    }
    Ok(())
}

impl VolumeFs for DirFs {
    fn root(&self) -> &Path {
        &self.root
    }
    fn quota_kind(&self) -> QuotaKind {
        QuotaKind::Btrfs // pretend to enforce, so capacities are "real"
    }
    fn granularity(&self) -> u64 {
        4096
    }
    fn space(&self) -> Result<Space, FsError> {
        Ok(Space {
            total: 1 << 40,
            available: 1 << 39,
        })
    }
    fn create_volume(&self, rel: &RelPath, _o: Ownership) -> Result<(), FsError> {
        let path = self.absolute(rel);
        std::fs::create_dir_all(&path).map_err(io(&path))
    }
    fn set_limit(&self, rel: &RelPath, _project: u32, bytes: u64) -> Result<u64, FsError> {
        let enforced = round_up(bytes, 4096);
        self.limits
            .lock()
            .unwrap()
            .insert(rel.as_path().to_owned(), enforced);
        Ok(enforced)
    }
    fn used_bytes(&self, rel: &RelPath, _project: u32) -> Result<Option<u64>, FsError> {
        match self.usage.lock().unwrap().get(rel.as_path()) {
            None => Ok(None),
            Some(Ok(bytes)) => Ok(Some(*bytes)),
            Some(Err(message)) => Err(FsError::Quota {
                path: self.absolute(rel),
                message: message.clone(),
            }),
        }
    }
    fn clone_tree(&self, src: &RelPath, dst: &RelPath) -> Result<CloneMethod, FsError> {
        if *self.fail_clone.lock().unwrap() {
            return Err(FsError::NoSpace("test says no".into()));
        }
        let (s, d) = (self.absolute(src), self.absolute(dst));
        std::fs::create_dir_all(d.parent().unwrap()).map_err(io(&d))?;
        copy_dir(&s, &d).map_err(io(&d))?;
        Ok(CloneMethod::Copy)
    }
    fn trash(&self, rel: &RelPath) -> Result<(), FsError> {
        let path = self.absolute(rel);
        match std::fs::remove_dir_all(&path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(io(&path)(e)),
            _ => Ok(()),
        }
    }
    fn archive(&self, rel: &RelPath) -> Result<Option<PathBuf>, FsError> {
        let from = self.absolute(rel);
        let to = self
            .root
            .join("archive")
            .join(rel.as_path().file_name().unwrap());
        std::fs::create_dir_all(to.parent().unwrap()).map_err(io(&to))?;
        std::fs::rename(&from, &to).map_err(io(&from))?;
        Ok(Some(to))
    }
    fn purge_trash(&self) -> Result<usize, FsError> {
        Ok(0)
    }
    fn exists(&self, rel: &RelPath) -> Result<bool, FsError> {
        Ok(self.absolute(rel).exists())
    }

    fn volume_names(&self) -> Result<std::collections::BTreeSet<std::ffi::OsString>, FsError> {
        let dir = self.root().join(RelPath::volumes_dir());
        Ok(std::fs::read_dir(dir)
            .map(|entries| entries.flatten().map(|e| e.file_name()).collect())
            .unwrap_or_default())
    }
}

impl DirFs {
    pub(crate) fn new(root: &Path) -> Self {
        Self {
            root: root.to_owned(),
            limits: Default::default(),
            fail_clone: Mutex::new(false),
            usage: Default::default(),
        }
    }
}
