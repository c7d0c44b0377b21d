//! The scale benchmark over real NFS-Ganesha on this host: 10,000 volumes created one at a
//! time through the controller, 2,000 more 32 at a time, 500 published to one node at once,
//! one published to 500 nodes at once, every other one published 10 at a time, a reconcile of
//! all of them, an agent started over the table with each exporter, every one deleted 32 at a
//! time, and the memory; one table.
//!
//!     cargo run --release -p rwxnfs-tests --example bench            # the full run
//!     cargo run --release -p rwxnfs-tests --example bench -- --short  # 1,000, as the test
//!
//! Needs root and the test packages (scripts/install-test-deps). Every loop is bounded by its
//! count; the ratios the test command checks are checked here too, and reported.

use rwxnfs_tests::bench::{self, BenchConfig, GaneshaStack};

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let config = if std::env::args().any(|a| a == "--short") {
        BenchConfig::short()
    } else {
        BenchConfig::full()
    };
    let host = GaneshaStack::start("bench", &config).await;
    let report = bench::run(&host.stack, &config, || host.fresh_exporter()).await;
    println!("{}", report.table());
    match report.check() {
        Ok(()) => println!("ratios: ok"),
        Err(problems) => println!("ratios: {problems}"),
    }
}
