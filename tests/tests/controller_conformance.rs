//! The controller, over a real agent (its table, locks and gRPC service), passes every
//! controller-side spec of the conformance runner, on a real export root (directories, reflink
//! or byte copies, trash). The NFS server is an in-memory stand-in here; Ganesha has its own
//! tests.

use std::sync::Arc;

use csi_sanity::Outcome;
use rwxnfs_agent::exporter::fake::FakeExporter;
use rwxnfs_agent::fs::plain::PlainFs;
use rwxnfs_tests::Stack;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_controller_spec_passes() {
    let stack = Stack::start(
        |root| Arc::new(PlainFs::open(&root).expect("export root")),
        Arc::new(FakeExporter::new()),
    )
    .await;
    let mut config = stack.sanity_config();
    config.skip = vec!["Node Service".into()];
    let mut out = Vec::new();
    let report = csi_sanity::run(config, &mut out)
        .await
        .expect("conformance run");
    print!("{}", String::from_utf8_lossy(&out));
    stack.stop().await;

    let failed: Vec<_> = report
        .results
        .iter()
        .filter(|(_, o)| matches!(o, Outcome::Failed(_)))
        .collect();
    assert!(failed.is_empty(), "failed specs: {failed:#?}");
    let not_written: Vec<_> = report
        .results
        .iter()
        .filter(|(_, o)| matches!(o, Outcome::Skipped(why) if why.contains("not written")))
        .collect();
    assert!(
        not_written.is_empty(),
        "controller specs without a check: {not_written:#?}"
    );
    // Identity 3 + Controller 33 + snapshots 18 + expansion 3; the rest are not applicable
    // (ModifyVolume, volume attribute classes, group snapshots, the attach limit).
    assert_eq!(report.passed(), 57, "{}", report.summary());
}
