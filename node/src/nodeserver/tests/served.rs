//! The node service as the plugin serves it: through `into_server`, so through the RPC layer.

use std::time::Duration;

use rwxnfs_proto::csi::node_client::NodeClient;
use rwxnfs_server::Endpoint;
use tonic::Code;

use super::{publish_req, service, stage_req};
use rwxnfs_proto::csi::volume_capability::access_mode::Mode;

#[tokio::test]
async fn served_calls_are_counted_by_rpc_and_code() {
    let (svc, _mounter, dir) = service();
    let endpoint = Endpoint::Unix(dir.path().join("csi.sock"));
    let router = rwxnfs_server::builder().add_service(svc.into_server());
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let (ready_tx, ready_rx) = tokio::sync::oneshot::channel::<()>();
    let ep = endpoint.clone();
    let server = tokio::spawn(async move {
        rwxnfs_server::serve(
            router,
            &ep,
            async {
                let _ = stop_rx.await;
            },
            Duration::from_secs(5),
            move || {
                let _ = ready_tx.send(());
            },
        )
        .await
    });
    ready_rx.await.unwrap();
    let mut client = NodeClient::new(endpoint.connect().await.unwrap());

    let not_staged = client
        .node_publish_volume(publish_req(
            dir.path(),
            "t1",
            Mode::MultiNodeMultiWriter,
            false,
        ))
        .await
        .unwrap_err();
    assert_eq!(not_staged.code(), Code::FailedPrecondition);
    client
        .node_stage_volume(stage_req(dir.path(), &[]))
        .await
        .unwrap();

    let text = rwxnfs_server::metrics::render();
    for counted in [
        "rwxnfs_rpc_calls_total{rpc=\"NodePublishVolume\",code=\"FAILED_PRECONDITION\"} 1",
        "rwxnfs_rpc_calls_total{rpc=\"NodeStageVolume\",code=\"OK\"} 1",
    ] {
        assert!(text.contains(counted), "{counted} in {text}");
    }
    stop_tx.send(()).unwrap();
    server.await.unwrap().unwrap();
}
