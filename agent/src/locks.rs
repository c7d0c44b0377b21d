//! Per-name serialisation: calls for the same export or snapshot run one after another;
//! calls for different names run in parallel.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
};

use tokio::sync::{Mutex as AsyncMutex, OwnedMutexGuard};

#[derive(Default)]
pub struct NameLocks {
    locks: Mutex<HashMap<String, Arc<AsyncMutex<()>>>>,
}

/// Held while an operation on one name runs. Dropping it releases the name, and forgets the
/// lock once nobody else waits for it, so the map does not grow with every name ever seen.
pub struct NameGuard<'a> {
    locks: &'a NameLocks,
    key: String,
    guard: Option<OwnedMutexGuard<()>>,
}

impl NameLocks {
    /// Waits until no other operation holds `key`, then holds it.
    /// A caller that stops waiting (a grant answered in another caller's batch) leaves
    /// nothing behind either.
    pub async fn lock(&self, key: String) -> NameGuard<'_> {
        let mutex = {
            let mut map = self.locks.lock().unwrap_or_else(|e| e.into_inner());
            map.entry(key.clone()).or_default().clone()
        };
        // Made before the wait, so dropped after it (and after the lock it waits for) when
        // the wait is cancelled: its drop then forgets the name as a release does.
        let mut held = NameGuard {
            locks: self,
            key,
            guard: None,
        };
        held.guard = Some(mutex.lock_owned().await);
        held
    }

    /// Forgets `key`'s lock if only the map still refers to it: nobody holds or waits for it.
    fn forget_if_unused(&self, key: &str) {
        let mut map = self.locks.lock().unwrap_or_else(|e| e.into_inner());
        if map.get(key).is_some_and(|m| Arc::strong_count(m) == 1) {
            map.remove(key);
        }
    }

    /// Locks several keys in a fixed (sorted) order, so two operations that need the same
    /// pair can never deadlock each other.
    pub async fn lock_all(&self, mut keys: Vec<String>) -> Vec<NameGuard<'_>> {
        keys.sort();
        keys.dedup();
        let mut guards = Vec::with_capacity(keys.len());
        for key in keys {
            guards.push(self.lock(key).await);
        }
        guards
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.locks.lock().unwrap_or_else(|e| e.into_inner()).len()
    }
}

impl Drop for NameGuard<'_> {
    fn drop(&mut self) {
        drop(self.guard.take());
        self.locks.forget_if_unused(&self.key);
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[tokio::test]
    async fn the_same_name_is_serialised() {
        let locks = Arc::new(NameLocks::default());
        let first = locks.lock("a".into()).await;
        let l2 = locks.clone();
        let second = tokio::spawn(async move {
            let _g = l2.lock("a".into()).await;
        });
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(!second.is_finished(), "the second caller must wait");
        drop(first);
        second.await.unwrap();
    }

    #[tokio::test]
    async fn different_names_do_not_wait_for_each_other() {
        let locks = NameLocks::default();
        let _a = locks.lock("a".into()).await;
        let b = tokio::time::timeout(Duration::from_secs(1), locks.lock("b".into())).await;
        assert!(b.is_ok());
    }

    /// A waiter cancelled while another holds the name (as a grant's caller stops waiting once
    /// another caller's batch answered it): once the holder is gone, the name is forgotten.
    #[tokio::test]
    async fn a_waiter_that_gives_up_leaves_nothing_behind() {
        let locks = NameLocks::default();
        let held = locks.lock("a".into()).await;
        let waited = tokio::time::timeout(Duration::from_millis(20), locks.lock("a".into())).await;
        assert!(waited.is_err(), "the name is held");
        drop(held);
        assert_eq!(locks.len(), 0);
        // And the other order: the holder gone first, then the waiter cancelled.
        let held = locks.lock("a".into()).await;
        let mut waiter = Box::pin(locks.lock("a".into()));
        let polled = tokio::time::timeout(Duration::ZERO, &mut waiter).await;
        assert!(polled.is_err(), "the name is held");
        drop(held);
        drop(waiter);
        assert_eq!(locks.len(), 0);
    }

    #[tokio::test]
    async fn released_names_are_forgotten() {
        let locks = NameLocks::default();
        drop(
            locks
                .lock_all(vec!["b".into(), "a".into(), "a".into()])
                .await,
        );
        assert_eq!(locks.len(), 0);
    }
}
