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
pub enum BoundedError {
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

impl BoundedError {
    pub fn raw_os_error(&self) -> Option<i32> {
        match self {
            BoundedError::Io { source, .. } => source.raw_os_error(),
            BoundedError::TimedOut { .. } | BoundedError::Busy { .. } => None,
        }
    }
}

/// A time-bounded runner of blocking calls, shared by every RPC of the node service.
#[derive(Clone)]
pub struct Bounded {
    limit: Duration,
    busy: Arc<Mutex<HashSet<PathBuf>>>,
}

impl Bounded {
    pub fn new(limit: Duration) -> Self {
        Self {
            limit,
            busy: Arc::default(),
        }
    }

    /// Runs `f` (which touches `path`) on its own thread, for at most the runner's limit.
    pub async fn run<T: Send + 'static>(
        &self,
        what: &'static str,
        path: &Path,
        f: impl FnOnce() -> io::Result<T> + Send + 'static,
    ) -> Result<T, BoundedError> {
        {
            let mut busy = self.busy.lock().unwrap_or_else(|e| e.into_inner());
            if !busy.insert(path.to_owned()) {
                return Err(BoundedError::Busy {
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
            return Err(BoundedError::Io {
                what,
                path: path.to_owned(),
                source,
            });
        }
        match tokio::time::timeout(self.limit, rx).await {
            Ok(Ok(Ok(value))) => Ok(value),
            Ok(Ok(Err(source))) => Err(BoundedError::Io {
                what,
                path: path.to_owned(),
                source,
            }),
            Ok(Err(_)) => Err(BoundedError::Io {
                what,
                path: path.to_owned(),
                source: io::Error::other("the worker thread died"),
            }),
            Err(_) => Err(BoundedError::TimedOut {
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
        let bounded = Bounded::new(Duration::from_millis(100));
        let path = Path::new("/stuck");
        let (release_tx, release_rx) = std::sync::mpsc::channel::<()>();
        let started = std::time::Instant::now();
        let err = bounded
            .run("stat", path, move || {
                let _ = release_rx.recv();
                Ok(())
            })
            .await
            .unwrap_err();
        assert!(matches!(err, BoundedError::TimedOut { .. }), "{err}");
        assert!(started.elapsed() < Duration::from_secs(1));
        let err = bounded.run("stat", path, || Ok(())).await.unwrap_err();
        assert!(matches!(err, BoundedError::Busy { .. }), "{err}");
        // Other paths are not affected.
        bounded
            .run("stat", Path::new("/fine"), || Ok(()))
            .await
            .unwrap();
        release_tx.send(()).unwrap();
        tokio::time::sleep(Duration::from_millis(50)).await;
        bounded.run("stat", path, || Ok(())).await.unwrap();
    }
}
