//! The bounded steps the RPCs are made of: the mount table, directories, bind mounts,
//! unmounts with their fallbacks, and statvfs. Each runs under the service's time bound.

use std::path::Path;

use super::NodeService;
use crate::{
    bounded::BoundedError,
    error::NodeError,
    mounter::{FsStats, MountEntry},
};
use nix::mount::MntFlags;

impl NodeService {
    /// The mount table. Reading it is kernel memory, not NFS, so it cannot hang on a dead
    /// server: concurrent RPCs read it side by side on the blocking pool, rather than sharing
    /// one busy slot of the time-bounded runner (where a second reader got a spurious ABORTED
    /// "a previous reading the mount table has not returned yet").
    pub(super) async fn mounts(&self) -> Result<Vec<MountEntry>, NodeError> {
        const WHAT: &str = "reading the mount table";
        let path = Path::new("/proc/self/mountinfo");
        let mounter = self.mounter.clone();
        let source = match tokio::task::spawn_blocking(move || mounter.mounts()).await {
            Ok(Ok(entries)) => return Ok(entries),
            Ok(Err(source)) => source,
            Err(e) => std::io::Error::other(format!("the reading thread failed: {e}")),
        };
        Err(BoundedError::Io {
            what: WHAT,
            path: path.to_owned(),
            source,
        }
        .into())
    }

    pub(super) async fn mounted_at(&self, path: &Path) -> Result<Option<MountEntry>, NodeError> {
        Ok(self
            .mounts()
            .await?
            .into_iter()
            .rev()
            .find(|m| m.mount_point == path))
    }

    pub(super) async fn mkdir(&self, path: &Path) -> Result<(), NodeError> {
        let p = path.to_owned();
        self.bounded
            .run("mkdir", path, move || std::fs::create_dir_all(&p))
            .await
            .map_err(NodeError::from)
    }

    /// Removes an (unmounted) directory; already gone is fine.
    pub(super) async fn rmdir(&self, path: &Path) -> Result<(), NodeError> {
        let p = path.to_owned();
        let result = self
            .bounded
            .run("rmdir", path, move || match std::fs::remove_dir(&p) {
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
                other => other,
            })
            .await;
        result.map_err(NodeError::from)
    }

    /// Unmounts everything at `path`: plainly, then forced, then lazily, each bounded.
    pub(super) async fn unmount_all(&self, path: &Path) -> Result<(), NodeError> {
        for _ in 0..8 {
            if self.mounted_at(path).await?.is_none() {
                return Ok(());
            }
            let mut last = None;
            for flags in [MntFlags::empty(), MntFlags::MNT_FORCE, MntFlags::MNT_DETACH] {
                let (mounter, p) = (self.mounter.clone(), path.to_owned());
                match self
                    .bounded
                    .run("unmount", path, move || mounter.unmount(&p, flags))
                    .await
                {
                    Ok(()) => {
                        last = None;
                        break;
                    }
                    Err(e) => {
                        tracing::warn!(path = %path.display(), ?flags, error = %e, "unmount failed; trying harder");
                        last = Some(e);
                    }
                }
            }
            if let Some(e) = last {
                return Err(e.into());
            }
        }
        Err(NodeError::StillMounted {
            path: path.to_owned(),
        })
    }

    pub(super) async fn bind(
        &self,
        staging: &Path,
        target: &Path,
        read_only: bool,
    ) -> Result<(), NodeError> {
        let (mounter, from, to) = (self.mounter.clone(), staging.to_owned(), target.to_owned());
        self.bounded
            .run("bind mount", target, move || mounter.bind(&from, &to))
            .await?;
        if read_only {
            let (mounter, to) = (self.mounter.clone(), target.to_owned());
            self.bounded
                .run("read-only remount", target, move || {
                    mounter.remount_read_only(&to)
                })
                .await?;
        }
        Ok(())
    }

    pub(super) async fn stat_fs(&self, path: &Path) -> Result<FsStats, BoundedError> {
        let (mounter, p) = (self.mounter.clone(), path.to_owned());
        self.bounded
            .run("statvfs", path, move || mounter.stat_fs(&p))
            .await
    }
}
