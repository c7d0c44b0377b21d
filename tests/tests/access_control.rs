//! Per-node access control, proven from the clients' side: a volume is reachable from a node
//! only while it is published to that node, read-only where published read-only, and from
//! nobody once deleted. Real NFS-Ganesha in a server namespace; each node is a namespace
//! with its own address and a libnfs client.
#![allow(clippy::unwrap_used)]

use std::{net::IpAddr, sync::Arc};

use rwxnfs_agent::fs::plain::PlainFs;
use rwxnfs_proto::csi::{self, controller_client::ControllerClient};
use rwxnfs_testbed::{GaneshaServer, Netns, NfsOutcome, nfs_cat, nfs_write};
use rwxnfs_tests::Stack;

fn writer() -> csi::VolumeCapability {
    csi::VolumeCapability {
        access_type: Some(csi::volume_capability::AccessType::Mount(Default::default())),
        access_mode: Some(csi::volume_capability::AccessMode {
            mode: csi::volume_capability::access_mode::Mode::MultiNodeMultiWriter as i32,
        }),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_reaches_a_volume_only_while_it_is_published_to_it() {
    let dir = tempfile::tempdir().unwrap();
    let server = GaneshaServer::start(dir.path(), "acl");
    let (node_a, node_b) = (Netns::new("acl-a"), Netns::new("acl-b"));
    let (link_a, link_b) = (server.netns.link(&node_a, 1), server.netns.link(&node_b, 2));
    let exporter = server.exporter.clone();
    let nodes: [(&str, IpAddr); 2] = [
        ("node-a", link_a.client.parse().unwrap()),
        ("node-b", link_b.client.parse().unwrap()),
    ];
    let stack = Stack::start_with_nodes(
        |root| Arc::new(PlainFs::open(&root).unwrap()),
        exporter,
        &nodes,
    )
    .await;
    let mut controller = ControllerClient::new(stack.controller.connect().await.unwrap());
    let scratch = dir.path();

    let volume = controller
        .create_volume(csi::CreateVolumeRequest {
            name: "pvc-acl".into(),
            volume_capabilities: vec![writer()],
            parameters: [
                ("squash".to_string(), "none".to_string()),
                ("mode".to_string(), "777".to_string()),
            ]
            .into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .volume
        .unwrap();
    let share = &volume.volume_context["share"];
    let file = format!("{share}/hello");
    std::fs::write(
        stack
            .dir
            .path()
            .join(format!("exports/volumes{share}/hello")),
        b"hi",
    )
    .unwrap();
    let publish = |node: &str, readonly: bool| csi::ControllerPublishVolumeRequest {
        volume_id: volume.volume_id.clone(),
        node_id: node.into(),
        volume_capability: Some(writer()),
        readonly,
        ..Default::default()
    };
    let unpublish = |node: &str| csi::ControllerUnpublishVolumeRequest {
        volume_id: volume.volume_id.clone(),
        node_id: node.into(),
        ..Default::default()
    };

    assert_eq!(
        nfs_cat(&node_a, &link_a.server, &file),
        NfsOutcome::Denied,
        "not published yet"
    );

    controller
        .controller_publish_volume(publish("node-a", false))
        .await
        .unwrap();
    assert_eq!(
        nfs_cat(&node_a, &link_a.server, &file),
        NfsOutcome::Ok(b"hi".to_vec())
    );
    assert_eq!(
        nfs_write(
            &node_a,
            &link_a.server,
            &format!("{share}/from-a"),
            b"a",
            scratch
        ),
        NfsOutcome::Ok(vec![])
    );
    assert_eq!(
        nfs_cat(&node_b, &link_b.server, &file),
        NfsOutcome::Denied,
        "B is independent of A"
    );

    controller
        .controller_publish_volume(publish("node-b", true))
        .await
        .unwrap();
    assert_eq!(
        nfs_cat(&node_b, &link_b.server, &format!("{share}/from-a")),
        NfsOutcome::Ok(b"a".to_vec())
    );
    let write = nfs_write(
        &node_b,
        &link_b.server,
        &format!("{share}/from-b"),
        b"b",
        scratch,
    );
    assert!(
        !matches!(write, NfsOutcome::Ok(_)),
        "a read-only publish let B write: {write:?}"
    );

    controller
        .controller_unpublish_volume(unpublish("node-a"))
        .await
        .unwrap();
    assert_eq!(
        nfs_cat(&node_a, &link_a.server, &file),
        NfsOutcome::Denied,
        "A was unpublished"
    );
    assert_eq!(
        nfs_cat(&node_b, &link_b.server, &file),
        NfsOutcome::Ok(b"hi".to_vec()),
        "B keeps its access"
    );

    controller
        .delete_volume(csi::DeleteVolumeRequest {
            volume_id: volume.volume_id.clone(),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(
        nfs_cat(&node_b, &link_b.server, &file),
        NfsOutcome::Denied,
        "deleted: nobody"
    );
    stack.stop().await;
}
