//! A per-volume try-lock for the node RPCs: a second call on the same volume and path while one
//! is in flight is told to retry (ABORTED), as the CSI spec asks, instead of racing it through
//! the check-then-mount (csi-driver-nfs locks the same way).
//!
//! Keys are (volume id, path): publish and unpublish hold the target path, stage and unstage
//! (and the re-staging of a stale mount) the staging path. So the targets of one volume are
//! published together, while a target is never mounted twice or unmounted mid-publish.

use std::{
    collections::HashSet,
    path::{Path, PathBuf},
    sync::{Arc, Mutex},
};

use crate::error::NodeError;

#[derive(Clone, Default)]
pub struct InFlight(Arc<Mutex<HashSet<(String, PathBuf)>>>);

/// One operation on (volume, path); released when dropped.
#[must_use = "the operation is held only while this lives"]
pub struct Held {
    set: InFlight,
    key: (String, PathBuf),
}

impl InFlight {
    /// Holds (volume, path), or says another operation on them is in progress.
    pub fn try_hold(&self, volume_id: &str, path: &Path) -> Result<Held, NodeError> {
        let key = (volume_id.to_owned(), path.to_owned());
        if !self.lock().insert(key.clone()) {
            return Err(NodeError::InProgress {
                volume_id: key.0,
                path: key.1,
            });
        }
        Ok(Held {
            set: self.clone(),
            key,
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashSet<(String, PathBuf)>> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        self.set.lock().remove(&self.key);
    }
}

#[cfg(test)]
mod tests {
    use tonic::{Code, Status};

    use super::*;

    #[test]
    fn a_second_hold_of_one_volume_and_path_is_aborted_until_the_first_is_released() {
        let inflight = InFlight::default();
        let held = inflight.try_hold("v", Path::new("/t1")).unwrap();
        let status = Status::from(inflight.try_hold("v", Path::new("/t1")).err().unwrap());
        assert_eq!(
            (status.code(), status.message()),
            (
                Code::Aborted,
                "an operation on volume v at /t1 is already in progress; retry later"
            )
        );
        drop(held);
        let _again = inflight.try_hold("v", Path::new("/t1")).unwrap();
    }

    #[test]
    fn other_paths_of_a_volume_and_other_volumes_at_a_path_are_held_together() {
        let inflight = InFlight::default();
        let _t1 = inflight.try_hold("v", Path::new("/t1")).unwrap();
        let _t2 = inflight.try_hold("v", Path::new("/t2")).unwrap();
        let _w = inflight.try_hold("w", Path::new("/t1")).unwrap();
        assert_eq!(inflight.lock().len(), 3);
    }

    #[test]
    fn released_holds_leave_nothing_behind() {
        let inflight = InFlight::default();
        drop(inflight.try_hold("v", Path::new("/t1")).unwrap());
        assert!(inflight.lock().is_empty());
    }
}
