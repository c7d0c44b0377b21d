//! Static PersistentVolumes: an existing export the driver did not create, named by a
//! `static:<name>` handle. The CSIDriver requires ControllerPublishVolume for every volume, so
//! the controller must let these through, while any other unknown id stays NOT_FOUND.
#![allow(clippy::unwrap_used)]

use std::sync::Arc;

use rwxnfs_agent::{exporter::fake::FakeExporter, fs::plain::PlainFs};
use rwxnfs_proto::csi::{self, controller_client::ControllerClient};
use rwxnfs_tests::{NODE_ID, Stack};
use tonic::Code;

fn capability() -> csi::VolumeCapability {
    csi::VolumeCapability {
        access_type: Some(csi::volume_capability::AccessType::Mount(Default::default())),
        access_mode: Some(csi::volume_capability::AccessMode {
            mode: csi::volume_capability::access_mode::Mode::MultiNodeMultiWriter as i32,
        }),
    }
}

fn publish(volume_id: &str, node_id: &str) -> csi::ControllerPublishVolumeRequest {
    csi::ControllerPublishVolumeRequest {
        volume_id: volume_id.into(),
        node_id: node_id.into(),
        volume_capability: Some(capability()),
        ..Default::default()
    }
}

#[tokio::test]
async fn a_static_volume_is_published_and_unpublished_without_a_backend() {
    let exporter = Arc::new(FakeExporter::new());
    let stack = Stack::start(|root| Arc::new(PlainFs::open(&root).unwrap()), exporter).await;
    let mut controller = ControllerClient::new(stack.controller.connect().await.unwrap());

    let published = controller
        .controller_publish_volume(publish("static:legacy-share", NODE_ID))
        .await
        .unwrap()
        .into_inner();
    assert!(published.publish_context.is_empty());
    controller
        .controller_unpublish_volume(csi::ControllerUnpublishVolumeRequest {
            volume_id: "static:legacy-share".into(),
            node_id: NODE_ID.into(),
            ..Default::default()
        })
        .await
        .unwrap();

    // The request is still checked like any other.
    let mut no_node = publish("static:legacy-share", "");
    no_node.node_id.clear();
    let err = controller
        .controller_publish_volume(no_node)
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    // Neither an empty static name nor an id of no known form is let through.
    for id in ["static:", "legacy-share", "vol1:nope:legacy-share"] {
        let err = controller
            .controller_publish_volume(publish(id, NODE_ID))
            .await
            .unwrap_err();
        assert_eq!(err.code(), Code::NotFound, "{id}: {err:?}");
    }
    stack.stop().await;
}
