//! A per-volume try-lock: a second call on a volume while one is in flight is told to retry
//! (ABORTED), as the CSI spec asks, instead of queueing behind it.

use std::{
    collections::HashSet,
    sync::{Arc, Mutex},
};

use tonic::Status;

#[derive(Clone, Default)]
pub struct InFlight(Arc<Mutex<HashSet<String>>>);

pub struct Held {
    set: InFlight,
    key: String,
}

impl InFlight {
    pub fn try_hold(&self, key: String) -> Result<Held, Status> {
        let mut set = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if !set.insert(key.clone()) {
            return Err(Status::aborted(format!(
                "an operation on {key} is already in progress; retry later"
            )));
        }
        Ok(Held {
            set: self.clone(),
            key,
        })
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        let mut set = self.set.0.lock().unwrap_or_else(|e| e.into_inner());
        set.remove(&self.key);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
}
