//! The `subDir` parameter names a subdir backend's directories; an agent backend, which makes
//! an export per claim, refuses it by name instead of ignoring it.
#![allow(clippy::unwrap_used)]

use std::sync::Arc;

use rwxnfs_agent::{exporter::fake::FakeExporter, fs::plain::PlainFs};
use rwxnfs_proto::csi::{self, controller_client::ControllerClient};
use rwxnfs_tests::Stack;
use tonic::Code;

#[tokio::test]
async fn an_agent_backend_refuses_a_sub_dir_template() {
    let exporter = Arc::new(FakeExporter::new());
    let stack = Stack::start(|root| Arc::new(PlainFs::open(&root).unwrap()), exporter).await;
    let mut controller = ControllerClient::new(stack.controller.connect().await.unwrap());
    let err = controller
        .create_volume(csi::CreateVolumeRequest {
            name: "pvc-1".into(),
            volume_capabilities: vec![csi::VolumeCapability {
                access_type: Some(csi::volume_capability::AccessType::Mount(Default::default())),
                access_mode: Some(csi::volume_capability::AccessMode {
                    mode: csi::volume_capability::access_mode::Mode::MultiNodeMultiWriter as i32,
                }),
            }],
            parameters: [("subDir".to_string(), "${pvc.metadata.name}".to_string())].into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert!(
        err.message().contains("subDir is for subdir backends"),
        "{}",
        err.message()
    );
    stack.stop().await;
}
