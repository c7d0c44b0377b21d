//! Group commit: changes that arrive while a commit is running share the next one.
//!
//! An exporter whose every commit costs the same whatever it carries (rewrite one file, run
//! one `exportfs -r`) keeps its pending changes in memory, each numbered by a ticket taken
//! right after the change was made. A caller then waits for a commit that covers its ticket:
//! if one that started after its change already finished, it shares that commit's result;
//! otherwise the first caller to get the turn runs the next commit, which covers every ticket
//! issued before it read the pending state. With N callers arriving together that is two
//! commits, not N.
//!
//! A commit runs in a task of its own, so a caller that gives up (its RPC was cancelled) never
//! interrupts one half-way; the turn is held until the commit ends, so two commits never run
//! at once and a slower one can never overwrite a newer one.

use std::{future::Future, sync::Arc};

use tokio::sync::Mutex;

/// The last commit's result and the highest ticket it covered.
pub struct GroupCommit<T> {
    last: Arc<Mutex<Option<(u64, T)>>>,
}

impl<T> Default for GroupCommit<T> {
    fn default() -> Self {
        Self {
            last: Arc::new(Mutex::new(None)),
        }
    }
}

impl<T: Clone + Send + 'static> GroupCommit<T> {
    /// Waits for a commit covering `ticket`. When it is this caller's turn and no finished
    /// commit covers it, `commit()` runs: its future returns the highest ticket its snapshot of
    /// the pending state included, and the result every caller it covered receives.
    pub async fn wait<F, Fut>(&self, ticket: u64, commit: F) -> T
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = (u64, T)> + Send + 'static,
    {
        let mut turn = self.last.clone().lock_owned().await;
        if let Some((covered, result)) = turn.as_ref()
            && *covered >= ticket
        {
            return result.clone();
        }
        let running = commit();
        let task = tokio::spawn(async move {
            let (covered, result) = running.await;
            *turn = Some((covered, result.clone()));
            result
        });
        match task.await {
            Ok(result) => result,
            Err(e) => std::panic::resume_unwind(e.into_panic()),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::{
        sync::atomic::{AtomicU64, Ordering},
        time::Duration,
    };

    use super::*;

    /// Pending changes are numbers pushed to a list; a commit "applies" the whole list.
    #[derive(Default)]
    struct Pending {
        state: std::sync::Mutex<(Vec<u64>, u64)>,
        commits: AtomicU64,
        applied: std::sync::Mutex<Vec<u64>>,
    }

    async fn change(pending: Arc<Pending>, group: Arc<GroupCommit<usize>>, value: u64) -> usize {
        let ticket = {
            let mut state = pending.state.lock().unwrap();
            state.0.push(value);
            state.1 += 1;
            state.1
        };
        let committing = pending.clone();
        group
            .wait(ticket, move || async move {
                let (snapshot, covered) = {
                    let state = committing.state.lock().unwrap();
                    (state.0.clone(), state.1)
                };
                committing.commits.fetch_add(1, Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(20)).await;
                *committing.applied.lock().unwrap() = snapshot.clone();
                (covered, snapshot.len())
            })
            .await
    }

    #[tokio::test]
    async fn callers_arriving_together_share_commits_and_each_sees_its_change_applied() {
        let pending = Arc::new(Pending::default());
        let group = Arc::new(GroupCommit::default());
        let tasks: Vec<_> = (0..100)
            .map(|i| tokio::spawn(change(pending.clone(), group.clone(), i)))
            .collect();
        for task in tasks {
            let seen = task.await.unwrap();
            assert!(seen >= 1);
        }
        let commits = pending.commits.load(Ordering::SeqCst);
        assert!(commits <= 3, "{commits} commits for 100 callers");
        let mut applied = pending.applied.lock().unwrap().clone();
        applied.sort_unstable();
        assert_eq!(applied, (0..100).collect::<Vec<_>>());
    }

    #[tokio::test]
    async fn a_change_after_a_commit_started_gets_a_commit_of_its_own() {
        let pending = Arc::new(Pending::default());
        let group = Arc::new(GroupCommit::default());
        assert_eq!(change(pending.clone(), group.clone(), 1).await, 1);
        assert_eq!(change(pending.clone(), group.clone(), 2).await, 2);
        assert_eq!(pending.commits.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn a_caller_that_gives_up_does_not_interrupt_the_commit() {
        let pending = Arc::new(Pending::default());
        let group = Arc::new(GroupCommit::default());
        let cancelled = tokio::time::timeout(
            Duration::from_millis(5),
            change(pending.clone(), group.clone(), 7),
        )
        .await;
        assert!(cancelled.is_err());
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert_eq!(*pending.applied.lock().unwrap(), vec![7]);
        // The finished commit covers the change, so waiting again runs nothing new.
        let result = group.wait(1, || async { (1, 99) }).await;
        assert_eq!(result, 1, "a second commit ran");
    }
}
