//! The short scale benchmark over real NFS-Ganesha (1,000 volumes one at a time, 500 at 32 at
//! a time): fails on a broken ratio, never on an absolute time. The full run is the `bench`
//! example (README, Performance).

use rwxnfs_tests::bench::{self, BenchConfig, GaneshaStack};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn creates_stay_flat_with_the_table_size_and_concurrent_creates_are_faster() {
    let config = BenchConfig::short();
    let host = GaneshaStack::start("scale", &config).await;
    let report = bench::run(&host.stack, &config, || host.fresh_exporter()).await;
    println!("{}", report.table());
    if let Err(problems) = report.check() {
        panic!("{problems}\n{}", report.table());
    }
}
