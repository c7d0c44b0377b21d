//! Bounded concurrent load for benchmarks and scale tests.

use std::{
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

/// Runs `f(i)` for every `i` in `0..total`, `width` at a time: each call's latency and result
/// in the order of `i`, and the wall time.
pub async fn at_once<F, Fut, T>(total: usize, width: usize, f: F) -> (Vec<(Duration, T)>, Duration)
where
    F: Fn(usize) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = T> + Send,
    T: Send + 'static,
{
    let f = Arc::new(f);
    let next = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..width.max(1) {
        let (f, next) = (f.clone(), next.clone());
        tasks.push(tokio::spawn(async move {
            let mut samples = Vec::new();
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= total {
                    return samples;
                }
                let t = Instant::now();
                let out = f(i).await;
                samples.push((i, t.elapsed(), out));
            }
        }));
    }
    let mut all = Vec::with_capacity(total);
    for t in tasks {
        all.extend(t.await.expect("bench worker"));
    }
    all.sort_by_key(|(i, _, _)| *i);
    (
        all.into_iter().map(|(_, d, out)| (d, out)).collect(),
        started.elapsed(),
    )
}
