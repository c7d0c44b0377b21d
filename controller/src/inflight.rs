//! A per-volume try-lock: a second call on a volume while one is in flight is told to retry
//! (ABORTED), as the CSI spec asks, instead of queueing behind it.
//!
//! A hold is either on the whole volume ([`InFlight::try_hold`]: create, delete, expand,
//! unpublish from every node) or on one part of it ([`InFlight::try_hold_part`]: publish and
//! unpublish for one node). Parts of one volume do not exclude each other, so a
//! ReadWriteMany volume is granted to ten nodes at once; the same part twice does, and a
//! whole-volume hold excludes every part and is excluded by any (a delete while a publish is
//! in flight is ABORTED and retried, never run beside it).

use std::{
    collections::{HashMap, HashSet},
    sync::{Arc, Mutex},
};

use crate::ControllerError;

#[derive(Clone, Default)]
pub struct InFlight(Arc<Mutex<HashMap<String, Holders>>>);

/// Who holds one key.
enum Holders {
    Whole,
    Parts(HashSet<String>),
}

pub struct Held {
    set: InFlight,
    key: String,
    part: Option<String>,
}

fn busy(what: &str) -> ControllerError {
    ControllerError::Busy {
        what: what.to_owned(),
    }
}

impl InFlight {
    /// Holds all of `key`: refused while anything holds `key` or a part of it.
    pub fn try_hold(&self, key: String) -> Result<Held, ControllerError> {
        let mut map = self.0.lock().unwrap_or_else(|e| e.into_inner());
        match map.get(&key) {
            None => {
                map.insert(key.clone(), Holders::Whole);
            }
            Some(Holders::Whole) => return Err(busy(&key)),
            Some(Holders::Parts(parts)) => {
                let mut parts: Vec<&str> = parts.iter().map(String::as_str).collect();
                parts.sort_unstable();
                return Err(busy(&format!("{key} ({})", parts.join(", "))));
            }
        }
        Ok(Held {
            set: self.clone(),
            key,
            part: None,
        })
    }

    /// Holds `part` of `key`: refused while all of `key` or the same part is held; other
    /// parts proceed.
    pub fn try_hold_part(&self, key: String, part: String) -> Result<Held, ControllerError> {
        let mut map = self.0.lock().unwrap_or_else(|e| e.into_inner());
        match map
            .entry(key.clone())
            .or_insert_with(|| Holders::Parts(HashSet::new()))
        {
            Holders::Whole => return Err(busy(&key)),
            Holders::Parts(parts) => {
                if !parts.insert(part.clone()) {
                    return Err(busy(&format!("{key} ({part})")));
                }
            }
        }
        Ok(Held {
            set: self.clone(),
            key,
            part: Some(part),
        })
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        let mut map = self.set.0.lock().unwrap_or_else(|e| e.into_inner());
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
    use super::*;

    fn aborted(result: Result<Held, ControllerError>) -> bool {
        result
            .err()
            .is_some_and(|s| s.code() == tonic::Code::Aborted)
    }

    #[test]
    fn a_second_hold_is_aborted_until_the_first_is_released() {
        let inflight = InFlight::default();
        let held = inflight.try_hold("v".into()).unwrap();
        assert_eq!(
            inflight.try_hold("v".into()).err().unwrap().code(),
            tonic::Code::Aborted
        );
        assert!(inflight.try_hold("w".into()).is_ok());
        drop(held);
        assert!(inflight.try_hold("v".into()).is_ok());
    }

    #[test]
    fn different_parts_of_a_key_are_held_together_and_the_same_part_is_aborted() {
        let inflight = InFlight::default();
        let a = inflight.try_hold_part("v".into(), "node a".into()).unwrap();
        let b = inflight.try_hold_part("v".into(), "node b".into()).unwrap();
        let again = inflight.try_hold_part("v".into(), "node a".into());
        let message = again.as_ref().err().unwrap().message().to_owned();
        assert!(aborted(again));
        assert!(message.contains("v (node a)"), "{message}");
        drop(a);
        assert!(inflight.try_hold_part("v".into(), "node a".into()).is_ok());
        drop(b);
    }

    #[test]
    fn the_whole_key_and_its_parts_exclude_each_other() {
        let inflight = InFlight::default();
        let a = inflight.try_hold_part("v".into(), "node a".into()).unwrap();
        let b = inflight.try_hold_part("v".into(), "node b".into()).unwrap();
        assert!(aborted(inflight.try_hold("v".into())));
        drop(a);
        assert!(aborted(inflight.try_hold("v".into())), "node b still holds");
        drop(b);
        let whole = inflight.try_hold("v".into()).unwrap();
        assert!(aborted(inflight.try_hold_part("v".into(), "node a".into())));
        drop(whole);
        assert!(inflight.try_hold_part("v".into(), "node a".into()).is_ok());
        assert!(inflight.0.lock().unwrap().is_empty(), "released keys go");
    }
}
