//! A per-volume try-lock: a second call on a volume while one is in flight is told to retry
//! (ABORTED), as the CSI spec asks, instead of queueing behind it or racing it through a
//! check-then-act (csi-driver-nfs locks the same way).
//!
//! A hold is either on a whole key ([`InFlight::try_hold`]) or on one part of it
//! ([`InFlight::try_hold_part`]). Parts of one key do not exclude each other; the same part
//! twice does, and a whole-key hold excludes every part and is excluded by any.
//!
//! - The controller holds whole volumes and snapshots (create, delete, expand, unpublish from
//!   every node) and (volume, node) parts in publish and unpublish: a ReadWriteMany volume is
//!   granted to ten nodes at once, and a delete while a publish is in flight is ABORTED and
//!   retried, never run beside it.
//! - The node holds (volume, path) parts: the target path in publish and unpublish, the staging
//!   path in stage, unstage and re-staging. The targets of one volume are published together,
//!   while a target is never mounted twice or unmounted mid-publish.

use std::{
    collections::{HashMap, HashSet},
    fmt,
    hash::Hash,
    sync::{Arc, Mutex, MutexGuard},
};

/// The holds in flight, shared by clones.
pub struct InFlight<K = String, P = String>(Arc<Mutex<HashMap<K, Holders<P>>>>);

impl<K, P> Clone for InFlight<K, P> {
    fn clone(&self) -> Self {
        Self(self.0.clone())
    }
}

impl<K, P> Default for InFlight<K, P> {
    fn default() -> Self {
        Self(Arc::default())
    }
}

/// Who holds one key.
enum Holders<P> {
    Whole,
    Parts(HashSet<P>),
}

/// One operation on a key or a part of it; released when dropped.
#[must_use = "the operation is held only while this lives"]
pub struct Held<K: Eq + Hash, P: Eq + Hash> {
    set: InFlight<K, P>,
    key: K,
    part: Option<P>,
}

/// Another operation holds what was asked for: `key`, or the `parts` of it named (the part
/// asked for, or every part held when the whole key was asked for; none when the whole key is
/// held). Its message names them and says to retry; as a gRPC status it is ABORTED.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Busy<K, P> {
    pub key: K,
    pub parts: Vec<P>,
}

impl<K: fmt::Display, P: fmt::Display> Busy<K, P> {
    /// What is held: `volume v`, or with the parts named, `volume v (node a, node b)`.
    pub fn what(&self) -> String {
        let mut what = self.key.to_string();
        if !self.parts.is_empty() {
            let parts: Vec<String> = self.parts.iter().map(ToString::to_string).collect();
            what = format!("{what} ({})", parts.join(", "));
        }
        what
    }
}

impl<K: fmt::Display, P: fmt::Display> fmt::Display for Busy<K, P> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "an operation on {} is already in progress; retry later",
            self.what()
        )
    }
}

impl<K, P> std::error::Error for Busy<K, P>
where
    K: fmt::Display + fmt::Debug,
    P: fmt::Display + fmt::Debug,
{
}

impl<K: fmt::Display, P: fmt::Display> From<Busy<K, P>> for tonic::Status {
    fn from(busy: Busy<K, P>) -> Self {
        tonic::Status::aborted(busy.to_string())
    }
}

impl<K: Eq + Hash + Clone, P: Eq + Hash + Clone + Ord> InFlight<K, P> {
    /// Holds all of `key`: refused while anything holds `key` or a part of it.
    pub fn try_hold(&self, key: K) -> Result<Held<K, P>, Busy<K, P>> {
        let mut map = self.lock();
        match map.get(&key) {
            None => {
                map.insert(key.clone(), Holders::Whole);
            }
            Some(Holders::Whole) => return Err(Busy { key, parts: vec![] }),
            Some(Holders::Parts(parts)) => {
                let mut parts: Vec<P> = parts.iter().cloned().collect();
                parts.sort_unstable();
                return Err(Busy { key, parts });
            }
        }
        drop(map);
        Ok(Held {
            set: self.clone(),
            key,
            part: None,
        })
    }

    /// Holds `part` of `key`: refused while all of `key` or the same part is held; other
    /// parts proceed.
    pub fn try_hold_part(&self, key: K, part: P) -> Result<Held<K, P>, Busy<K, P>> {
        let mut map = self.lock();
        match map
            .entry(key.clone())
            .or_insert_with(|| Holders::Parts(HashSet::new()))
        {
            Holders::Whole => return Err(Busy { key, parts: vec![] }),
            Holders::Parts(parts) => {
                if !parts.insert(part.clone()) {
                    return Err(Busy {
                        key,
                        parts: vec![part],
                    });
                }
            }
        }
        drop(map);
        Ok(Held {
            set: self.clone(),
            key,
            part: Some(part),
        })
    }
}

impl<K, P> InFlight<K, P> {
    fn lock(&self) -> MutexGuard<'_, HashMap<K, Holders<P>>> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl<K: Eq + Hash, P: Eq + Hash> Drop for Held<K, P> {
    fn drop(&mut self) {
        let mut map = self.set.lock();
        let now_free = match (map.get_mut(&self.key), &self.part) {
            (Some(Holders::Parts(parts)), Some(part)) => {
                parts.remove(part);
                parts.is_empty()
            }
            (Some(Holders::Whole), None) => true,
            // Not what this hold put there: leave it to its owner.
            _ => false,
        };
        if now_free {
            map.remove(&self.key);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::path::{Path, PathBuf};

    use tonic::{Code, Status};

    use super::*;

    fn aborted<K, P>(result: Result<Held<K, P>, Busy<K, P>>) -> Option<String>
    where
        K: Eq + Hash + fmt::Display,
        P: Eq + Hash + fmt::Display,
    {
        let status = Status::from(result.err()?);
        (status.code() == Code::Aborted).then(|| status.message().to_owned())
    }

    #[test]
    fn a_second_hold_is_aborted_until_the_first_is_released() {
        let inflight = InFlight::<String, String>::default();
        let held = inflight.try_hold("volume v".into()).unwrap();
        assert_eq!(
            aborted(inflight.try_hold("volume v".into())).as_deref(),
            Some("an operation on volume v is already in progress; retry later")
        );
        assert!(inflight.try_hold("volume w".into()).is_ok());
        drop(held);
        assert!(inflight.try_hold("volume v".into()).is_ok());
    }

    #[test]
    fn different_parts_of_a_key_are_held_together_and_the_same_part_is_aborted() {
        let inflight = InFlight::<String, String>::default();
        let a = inflight.try_hold_part("v".into(), "node a".into()).unwrap();
        let b = inflight.try_hold_part("v".into(), "node b".into()).unwrap();
        let message = aborted(inflight.try_hold_part("v".into(), "node a".into())).unwrap();
        assert_eq!(
            message,
            "an operation on v (node a) is already in progress; retry later"
        );
        drop(a);
        assert!(inflight.try_hold_part("v".into(), "node a".into()).is_ok());
        drop(b);
    }

    #[test]
    fn the_whole_key_and_its_parts_exclude_each_other() {
        let inflight = InFlight::<String, String>::default();
        let b = inflight.try_hold_part("v".into(), "node b".into()).unwrap();
        let a = inflight.try_hold_part("v".into(), "node a".into()).unwrap();
        assert_eq!(
            aborted(inflight.try_hold("v".into())).as_deref(),
            Some("an operation on v (node a, node b) is already in progress; retry later"),
            "the parts held are named in order"
        );
        let busy = inflight.try_hold("v".into()).err().unwrap();
        assert_eq!(busy.what(), "v (node a, node b)");
        drop(a);
        assert!(
            aborted(inflight.try_hold("v".into())).is_some(),
            "node b still holds"
        );
        drop(b);
        let whole = inflight.try_hold("v".into()).unwrap();
        assert_eq!(
            aborted(inflight.try_hold_part("v".into(), "node a".into())).as_deref(),
            Some("an operation on v is already in progress; retry later")
        );
        drop(whole);
        assert!(inflight.try_hold_part("v".into(), "node a".into()).is_ok());
        assert!(inflight.lock().is_empty(), "released keys go");
    }

    #[test]
    fn other_paths_of_a_volume_and_other_volumes_at_a_path_are_held_together() {
        let inflight = InFlight::<String, PathBuf>::default();
        let _t1 = inflight.try_hold_part("v".into(), "/t1".into()).unwrap();
        let _t2 = inflight.try_hold_part("v".into(), "/t2".into()).unwrap();
        let _w = inflight.try_hold_part("w".into(), "/t1".into()).unwrap();
        let busy = inflight
            .try_hold_part("v".into(), "/t1".into())
            .err()
            .unwrap();
        assert_eq!(
            busy,
            Busy {
                key: "v".to_owned(),
                parts: vec![PathBuf::from("/t1")]
            }
        );
        assert_eq!(inflight.lock().len(), 2);
    }

    #[test]
    fn released_holds_leave_nothing_behind() {
        let inflight = InFlight::<String, PathBuf>::default();
        drop(
            inflight
                .try_hold_part("v".into(), Path::new("/t1").into())
                .unwrap(),
        );
        drop(inflight.try_hold("w".into()).unwrap());
        assert!(inflight.lock().is_empty());
    }
}
