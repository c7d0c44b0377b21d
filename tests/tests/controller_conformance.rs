//! The controller, over a real agent (its table, locks and gRPC service), and the node plugin
//! pass every spec that needs no kernel NFS mount of the conformance runner, on a real export root (directories, reflink
//! or byte copies, trash). The NFS server is an in-memory stand-in here; Ganesha has its own
//! tests.

use std::sync::Arc;

use csi_sanity::Outcome;
use rwxnfs_agent::exporter::fake::FakeExporter;
use rwxnfs_agent::fs::plain::PlainFs;
use rwxnfs_tests::Stack;

const NEEDS_NFS_MOUNTS: [&str; 5] = [
    "Node Service should work",
    "Node Service should be idempotent",
    "NodeUnpublishVolume should remove target path",
    "NodeGetVolumeStats should fail when volume does not exist on the specified path",
    "with single node multi writer capability",
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_spec_that_needs_no_nfs_mount_passes() {
    let stack = Stack::start(
        |root| Arc::new(PlainFs::open(&root).expect("export root")),
        Arc::new(FakeExporter::new()),
    )
    .await;
    let mut config = stack.sanity_config();
    // These stage a volume, which needs a kernel NFS client: they run in the VM tier.
    config.skip = NEEDS_NFS_MOUNTS.iter().map(|s| s.to_string()).collect();
    let mut out = Vec::new();
    let report = csi_sanity::run(config, &mut out)
        .await
        .expect("conformance run");
    print!("{}", String::from_utf8_lossy(&out));
    stack.stop().await;

    let failed = report.failures();
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
    // Identity 3 + Controller 33 + snapshots 18 + expansion 3 + node argument checks 15; the
    // rest are not applicable (ModifyVolume, volume attribute classes, group snapshots, the
    // attach limit, NodeExpandVolume).
    assert_eq!(report.passed(), 72, "{}", report.summary());
}
