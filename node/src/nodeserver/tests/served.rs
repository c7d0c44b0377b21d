//! The node service as the plugin serves it: through `into_server`, so through the RPC layer.

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
    let server = rwxnfs_server::Serving::start(router, &endpoint)
        .await
        .unwrap();
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
    server.stop().await.unwrap();
}
