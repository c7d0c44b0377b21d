//! Blocking calls on paths that may sit on a dead NFS server, run on their own threads under a
//! time limit.
//!
//! A call that overruns its limit is abandoned, not waited for: the RPC answers at once. Its
//! thread stays blocked in the kernel until the call returns, and while it does, further calls
//! on the same path are refused instead of piling up more stuck threads. So the cost of a dead
//! server is bounded: one thread per path, whatever kubelet retries.

use std::{
    collections::HashSet,
    io,
    path::{Path, PathBuf},
    sync::{Arc, Mutex},
    time::Duration,
};

#[derive(Debug, thiserror::Error)]
pub enum GuardError {
    #[error("{what} on {path} did not finish within {limit:?}")]
    TimedOut {
        what: &'static str,
        path: PathBuf,
        limit: Duration,
    },
    #[error(
        "a previous {what} on {path} has not returned yet (the NFS server may be unreachable); retry later"
    )]
    Busy { what: &'static str, path: PathBuf },
    #[error("{what} on {path}: {source}")]
    Io {
        what: &'static str,
        path: PathBuf,
        source: io::Error,
    },
}

impl GuardError {
    pub fn raw_os_error(&self) -> Option<i32> {
        match self {
            GuardError::Io { source, .. } => source.raw_os_error(),
            _ => None,
        }
    }
}

#[derive(Clone)]
pub struct Guard {
    limit: Duration,
    busy: Arc<Mutex<HashSet<PathBuf>>>,
}

impl Guard {
    pub fn new(limit: Duration) -> Self {
        Self {
            limit,
            busy: Arc::default(),
        }
    }

    pub fn limit(&self) -> Duration {
        self.limit
    }

    /// Runs `f` (which touches `path`) on its own thread, for at most the guard's limit.
    pub async fn run<T: Send + 'static>(
        &self,
        what: &'static str,
        path: &Path,
        f: impl FnOnce() -> io::Result<T> + Send + 'static,
    ) -> Result<T, GuardError> {
        {
            let mut busy = self.busy.lock().unwrap_or_else(|e| e.into_inner());
            if !busy.insert(path.to_owned()) {
                return Err(GuardError::Busy {
                    what,
                    path: path.to_owned(),
                });
            }
        }
        let (tx, rx) = tokio::sync::oneshot::channel();
        let (busy, key) = (self.busy.clone(), path.to_owned());
        let spawned = std::thread::Builder::new()
            .name("rwxnfs-blocking".into())
            .spawn(move || {
                let result = f();
                busy.lock().unwrap_or_else(|e| e.into_inner()).remove(&key);
                let _ = tx.send(result);
            });
        if let Err(source) = spawned {
            self.busy
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .remove(path);
            return Err(GuardError::Io {
                what,
                path: path.to_owned(),
                source,
            });
        }
        match tokio::time::timeout(self.limit, rx).await {
            Ok(Ok(Ok(value))) => Ok(value),
            Ok(Ok(Err(source))) => Err(GuardError::Io {
                what,
                path: path.to_owned(),
                source,
            }),
            Ok(Err(_)) => Err(GuardError::Io {
                what,
                path: path.to_owned(),
                source: io::Error::other("the worker thread died"),
            }),
            Err(_) => Err(GuardError::TimedOut {
                what,
                path: path.to_owned(),
                limit: self.limit,
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_call_that_hangs_is_abandoned_and_its_path_refused_until_it_returns() {
        let guard = Guard::new(Duration::from_millis(100));
        let path = Path::new("/stuck");
        let (release_tx, release_rx) = std::sync::mpsc::channel::<()>();
        let started = std::time::Instant::now();
        let err = guard
            .run("stat", path, move || {
                let _ = release_rx.recv();
                Ok(())
            })
            .await
            .unwrap_err();
        assert!(matches!(err, GuardError::TimedOut { .. }), "{err}");
        assert!(started.elapsed() < Duration::from_secs(1));
        let err = guard.run("stat", path, || Ok(())).await.unwrap_err();
        assert!(matches!(err, GuardError::Busy { .. }), "{err}");
        // Other paths are not affected.
        guard
            .run("stat", Path::new("/fine"), || Ok(()))
            .await
            .unwrap();
        release_tx.send(()).unwrap();
        tokio::time::sleep(Duration::from_millis(50)).await;
        guard.run("stat", path, || Ok(())).await.unwrap();
    }
}
