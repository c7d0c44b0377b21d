//! The controller's own logic against a fake backend: each RPC checks its request in field
//! order with fixed messages, answers with the CSI code the spec asks for, and touches the
//! backend only for a valid request.
#![allow(clippy::unwrap_used)]

use std::{collections::BTreeMap, future::Future, pin::Pin, sync::Arc};

use rwxnfs_proto::csi::{self, controller_server::Controller};
use tokio::sync::Semaphore;
use tonic::{Code, Request, Status};

use super::ControllerService;
use crate::{StaticNodes, backend::fake::FakeBackend};

fn service() -> (Arc<ControllerService>, Arc<FakeBackend>) {
    let backend = Arc::new(FakeBackend::new("ha"));
    let nodes = StaticNodes(BTreeMap::from([
        ("node-a".to_string(), vec!["10.0.0.11".parse().unwrap()]),
        ("node-b".to_string(), vec!["10.0.0.12".parse().unwrap()]),
    ]));
    let service = ControllerService::new(vec![backend.clone()], Arc::new(nodes));
    (Arc::new(service), backend)
}

fn mount(mode: csi::volume_capability::access_mode::Mode) -> csi::VolumeCapability {
    csi::VolumeCapability {
        access_type: Some(csi::volume_capability::AccessType::Mount(Default::default())),
        access_mode: Some(csi::volume_capability::AccessMode { mode: mode as i32 }),
    }
}

fn rwx() -> csi::VolumeCapability {
    mount(csi::volume_capability::access_mode::Mode::MultiNodeMultiWriter)
}

fn block() -> csi::VolumeCapability {
    csi::VolumeCapability {
        access_type: Some(csi::volume_capability::AccessType::Block(Default::default())),
        ..rwx()
    }
}

fn create(name: &str) -> csi::CreateVolumeRequest {
    csi::CreateVolumeRequest {
        name: name.into(),
        volume_capabilities: vec![rwx()],
        ..Default::default()
    }
}

fn publish(volume_id: &str, node_id: &str) -> csi::ControllerPublishVolumeRequest {
    csi::ControllerPublishVolumeRequest {
        volume_id: volume_id.into(),
        node_id: node_id.into(),
        volume_capability: Some(rwx()),
        ..Default::default()
    }
}

type Call = Pin<Box<dyn Future<Output = Result<(), Status>> + Send>>;

/// One request the controller must refuse before it reaches the backend.
struct Refused {
    name: &'static str,
    code: Code,
    message: &'static str,
    call: Call,
}

fn refused(name: &'static str, code: Code, message: &'static str, call: Call) -> Refused {
    Refused {
        name,
        code,
        message,
        call,
    }
}

macro_rules! call {
    ($svc:expr, $method:ident, $req:expr) => {{
        let svc = $svc.clone();
        let req = $req;
        Box::pin(async move { svc.$method(Request::new(req)).await.map(|_| ()) }) as Call
    }};
}

#[tokio::test]
async fn invalid_requests_are_refused_in_field_order_and_never_reach_the_backend() {
    let (svc, backend) = service();
    let vol = "vol1:ha:pvc-1";
    let cases = vec![
        refused(
            "[Error] CreateVolume without a name",
            Code::InvalidArgument,
            "Name missing in request",
            call!(
                svc,
                create_volume,
                csi::CreateVolumeRequest {
                    volume_capabilities: vec![block()],
                    ..create("")
                }
            ),
        ),
        refused(
            "[Error] CreateVolume without capabilities",
            Code::InvalidArgument,
            "Volume capabilities missing in request",
            call!(
                svc,
                create_volume,
                csi::CreateVolumeRequest {
                    volume_capabilities: vec![],
                    ..create("pvc-1")
                }
            ),
        ),
        refused(
            "[Error] CreateVolume for block access",
            Code::InvalidArgument,
            "block access is not supported",
            call!(
                svc,
                create_volume,
                csi::CreateVolumeRequest {
                    volume_capabilities: vec![block()],
                    ..create("pvc-1")
                }
            ),
        ),
        refused(
            "[Error] CreateVolume with an unknown parameter",
            Code::InvalidArgument,
            "\"colour\" is not known; valid keys are",
            call!(
                svc,
                create_volume,
                csi::CreateVolumeRequest {
                    parameters: [("colour".into(), "red".into())].into(),
                    ..create("pvc-1")
                }
            ),
        ),
        refused(
            "[Error] CreateVolume with required above limit",
            Code::OutOfRange,
            "exceeds limit_bytes",
            call!(
                svc,
                create_volume,
                csi::CreateVolumeRequest {
                    capacity_range: Some(csi::CapacityRange {
                        required_bytes: 2,
                        limit_bytes: 1
                    }),
                    ..create("pvc-1")
                }
            ),
        ),
        refused(
            "[Error] CreateVolume with a name that is a path",
            Code::InvalidArgument,
            "name:",
            call!(svc, create_volume, create("../etc")),
        ),
        refused(
            "[Error] CreateVolume on an unknown backend",
            Code::InvalidArgument,
            "parameter backend: other is not configured; configured backends: ha",
            call!(
                svc,
                create_volume,
                csi::CreateVolumeRequest {
                    parameters: [("backend".into(), "other".into())].into(),
                    ..create("pvc-1")
                }
            ),
        ),
        refused(
            "[Error] CreateVolume with subDir on an agent backend",
            Code::InvalidArgument,
            "subDir is for subdir backends",
            call!(
                svc,
                create_volume,
                csi::CreateVolumeRequest {
                    parameters: [("subDir".into(), "x".into())].into(),
                    ..create("pvc-1")
                }
            ),
        ),
        refused(
            "[Error] CreateVolume over TLS on a backend without serverName",
            Code::FailedPrecondition,
            "parameter transport: mtls checks the NFS server's certificate against the name \
             nodes mount by, and backend ha has none: set serverName",
            call!(
                svc,
                create_volume,
                csi::CreateVolumeRequest {
                    parameters: [("transport".into(), "mtls".into())].into(),
                    ..create("pvc-1")
                }
            ),
        ),
        refused(
            "[Error] DeleteVolume without an id",
            Code::InvalidArgument,
            "Volume ID missing in request",
            call!(svc, delete_volume, csi::DeleteVolumeRequest::default()),
        ),
        refused(
            "[Error] ControllerPublishVolume without a volume id",
            Code::InvalidArgument,
            "Volume ID missing in request",
            call!(svc, controller_publish_volume, publish("", "")),
        ),
        refused(
            "[Error] ControllerPublishVolume without a node id",
            Code::InvalidArgument,
            "Node ID missing in request",
            call!(svc, controller_publish_volume, publish(vol, "")),
        ),
        refused(
            "[Error] ControllerPublishVolume without a capability",
            Code::InvalidArgument,
            "Volume capability missing in request",
            call!(
                svc,
                controller_publish_volume,
                csi::ControllerPublishVolumeRequest {
                    volume_capability: None,
                    ..publish(vol, "node-a")
                }
            ),
        ),
        refused(
            "[Error] ControllerPublishVolume of a garbled id",
            Code::NotFound,
            "does not exist",
            call!(svc, controller_publish_volume, publish("pvc-1", "node-a")),
        ),
        refused(
            "[Error] ControllerPublishVolume on an unknown backend",
            Code::NotFound,
            "",
            call!(
                svc,
                controller_publish_volume,
                publish("vol1:other:pvc-1", "node-a")
            ),
        ),
        refused(
            "[Error] ControllerPublishVolume to an unknown node",
            Code::NotFound,
            "node-z",
            call!(svc, controller_publish_volume, publish(vol, "node-z")),
        ),
        refused(
            "[Error] ControllerUnpublishVolume without a volume id",
            Code::InvalidArgument,
            "Volume ID missing in request",
            call!(
                svc,
                controller_unpublish_volume,
                csi::ControllerUnpublishVolumeRequest::default()
            ),
        ),
        refused(
            "[Error] ControllerExpandVolume without an id",
            Code::InvalidArgument,
            "Volume ID missing in request",
            call!(
                svc,
                controller_expand_volume,
                csi::ControllerExpandVolumeRequest::default()
            ),
        ),
        refused(
            "[Error] ControllerExpandVolume without a range",
            Code::InvalidArgument,
            "Capacity range missing in request",
            call!(
                svc,
                controller_expand_volume,
                csi::ControllerExpandVolumeRequest {
                    volume_id: vol.into(),
                    ..Default::default()
                }
            ),
        ),
        refused(
            "[Error] CreateSnapshot without a name",
            Code::InvalidArgument,
            "Snapshot name missing in request",
            call!(
                svc,
                create_snapshot,
                csi::CreateSnapshotRequest {
                    source_volume_id: vol.into(),
                    ..Default::default()
                }
            ),
        ),
        refused(
            "[Error] CreateSnapshot without a source",
            Code::InvalidArgument,
            "Source volume ID missing in request",
            call!(
                svc,
                create_snapshot,
                csi::CreateSnapshotRequest {
                    name: "snap".into(),
                    ..Default::default()
                }
            ),
        ),
        refused(
            "[Error] CreateSnapshot of a garbled source",
            Code::NotFound,
            "does not exist",
            call!(
                svc,
                create_snapshot,
                csi::CreateSnapshotRequest {
                    name: "snap".into(),
                    source_volume_id: "nope".into(),
                    ..Default::default()
                }
            ),
        ),
        refused(
            "[Error] ValidateVolumeCapabilities without an id",
            Code::InvalidArgument,
            "Volume ID missing in request",
            call!(
                svc,
                validate_volume_capabilities,
                csi::ValidateVolumeCapabilitiesRequest::default()
            ),
        ),
    ];
    for case in cases {
        let err = case.call.await.expect_err(case.name);
        assert_eq!(err.code(), case.code, "{}: {err:?}", case.name);
        assert!(
            err.message().contains(case.message),
            "{}: {}",
            case.name,
            err.message()
        );
    }
    assert_eq!(
        backend.calls(),
        Vec::<String>::new(),
        "the backend was called"
    );
}

#[tokio::test]
async fn the_volume_lifecycle_maps_onto_the_backend() {
    let (svc, backend) = service();
    let created = svc
        .create_volume(Request::new(csi::CreateVolumeRequest {
            capacity_range: Some(csi::CapacityRange {
                required_bytes: 4 << 30,
                limit_bytes: 0,
            }),
            ..create("pvc-1")
        }))
        .await
        .unwrap()
        .into_inner()
        .volume
        .unwrap();
    assert_eq!(created.volume_id, "vol1:ha:pvc-1");
    assert_eq!(created.capacity_bytes, 4 << 30);
    assert_eq!(created.volume_context["server"], "192.0.2.1");
    assert_eq!(created.volume_context["share"], "/pvc-1");
    // [Success] the same request again is the same volume; a larger one is ALREADY_EXISTS.
    let again = svc
        .create_volume(Request::new(csi::CreateVolumeRequest {
            capacity_range: Some(csi::CapacityRange {
                required_bytes: 4 << 30,
                limit_bytes: 0,
            }),
            ..create("pvc-1")
        }))
        .await
        .unwrap()
        .into_inner()
        .volume
        .unwrap();
    assert_eq!(again.volume_id, created.volume_id);
    let bigger = svc
        .create_volume(Request::new(csi::CreateVolumeRequest {
            capacity_range: Some(csi::CapacityRange {
                required_bytes: 8 << 30,
                limit_bytes: 0,
            }),
            ..create("pvc-1")
        }))
        .await
        .unwrap_err();
    assert_eq!(bigger.code(), Code::AlreadyExists);

    svc.controller_publish_volume(Request::new(publish("vol1:ha:pvc-1", "node-a")))
        .await
        .unwrap();
    svc.controller_unpublish_volume(Request::new(csi::ControllerUnpublishVolumeRequest {
        volume_id: "vol1:ha:pvc-1".into(),
        node_id: "node-a".into(),
        ..Default::default()
    }))
    .await
    .unwrap();
    let expanded = svc
        .controller_expand_volume(Request::new(csi::ControllerExpandVolumeRequest {
            volume_id: "vol1:ha:pvc-1".into(),
            capacity_range: Some(csi::CapacityRange {
                required_bytes: 6 << 30,
                limit_bytes: 0,
            }),
            ..Default::default()
        }))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(expanded.capacity_bytes, 6 << 30);
    assert!(!expanded.node_expansion_required);
    svc.delete_volume(Request::new(csi::DeleteVolumeRequest {
        volume_id: "vol1:ha:pvc-1".into(),
        ..Default::default()
    }))
    .await
    .unwrap();
    // [Success] deleting a garbled or unknown id succeeds, without asking the backend.
    svc.delete_volume(Request::new(csi::DeleteVolumeRequest {
        volume_id: "garbled".into(),
        ..Default::default()
    }))
    .await
    .unwrap();
    assert_eq!(
        backend.calls(),
        [
            "CreateExport pvc-1",
            "CreateExport pvc-1",
            "CreateExport pvc-1",
            "GrantAccess pvc-1 node-a",
            "RevokeAccess pvc-1 node-a",
            "ExpandExport pvc-1",
            "DeleteExport pvc-1",
        ]
    );
}

#[tokio::test]
async fn backend_failures_keep_their_code_and_name_the_backend() {
    let (svc, backend) = service();
    for code in [
        Code::Unavailable,
        Code::ResourceExhausted,
        Code::AlreadyExists,
        Code::Internal,
    ] {
        *backend.fail_next.lock().unwrap() = Some(Status::new(code, "from the agent"));
        let err = svc
            .create_volume(Request::new(create("pvc-1")))
            .await
            .unwrap_err();
        assert_eq!(err.code(), code);
        assert_eq!(err.message(), "backend ha: from the agent");
    }
}

#[tokio::test]
async fn a_second_call_on_a_volume_in_flight_is_aborted() {
    let (svc, backend) = service();
    let gate = Arc::new(Semaphore::new(0));
    *backend.gate.lock().unwrap() = Some(gate.clone());
    let first = tokio::spawn({
        let svc = svc.clone();
        async move { svc.create_volume(Request::new(create("pvc-1"))).await }
    });
    while backend.calls().is_empty() {
        tokio::task::yield_now().await;
    }
    let second = svc
        .create_volume(Request::new(create("pvc-1")))
        .await
        .unwrap_err();
    assert_eq!(second.code(), Code::Aborted);
    assert!(
        second.message().contains("already in progress"),
        "{}",
        second.message()
    );
    // Another volume is not held up.
    *backend.gate.lock().unwrap() = None;
    svc.create_volume(Request::new(create("pvc-2")))
        .await
        .unwrap();
    gate.add_permits(1);
    first.await.unwrap().unwrap();
}

/// Creates pvc-1 and starts publishing it to node-a, held in the backend's GrantAccess until
/// the returned semaphore is given a permit.
async fn publish_in_flight(
    svc: &Arc<ControllerService>,
    backend: &FakeBackend,
) -> (Arc<Semaphore>, tokio::task::JoinHandle<Result<(), Status>>) {
    svc.create_volume(Request::new(create("pvc-1")))
        .await
        .unwrap();
    let gate = backend.hold("GrantAccess pvc-1 node-a");
    let first = tokio::spawn({
        let svc = svc.clone();
        async move {
            svc.controller_publish_volume(Request::new(publish("vol1:ha:pvc-1", "node-a")))
                .await
                .map(|_| ())
        }
    });
    while !backend
        .calls()
        .contains(&"GrantAccess pvc-1 node-a".to_string())
    {
        tokio::task::yield_now().await;
    }
    (gate, first)
}

fn unpublish(volume_id: &str, node_id: &str) -> csi::ControllerUnpublishVolumeRequest {
    csi::ControllerUnpublishVolumeRequest {
        volume_id: volume_id.into(),
        node_id: node_id.into(),
        ..Default::default()
    }
}

#[tokio::test]
async fn publishes_of_one_volume_to_different_nodes_proceed_side_by_side() {
    let (svc, backend) = service();
    let (gate, first) = publish_in_flight(&svc, &backend).await;
    // [Success] node-b is granted while node-a's grant is still in flight; so is its
    // unpublish.
    svc.controller_publish_volume(Request::new(publish("vol1:ha:pvc-1", "node-b")))
        .await
        .unwrap();
    svc.controller_unpublish_volume(Request::new(unpublish("vol1:ha:pvc-1", "node-b")))
        .await
        .unwrap();
    assert!(!first.is_finished(), "node-a's grant is still held");
    gate.add_permits(1);
    first.await.unwrap().unwrap();
    assert_eq!(
        backend.calls()[1..],
        [
            "GrantAccess pvc-1 node-a",
            "GrantAccess pvc-1 node-b",
            "RevokeAccess pvc-1 node-b",
        ]
    );
}

#[tokio::test]
async fn a_second_publish_of_a_volume_to_the_same_node_in_flight_is_aborted() {
    let (svc, backend) = service();
    let (gate, first) = publish_in_flight(&svc, &backend).await;
    // [Error] the same volume and node again, published or unpublished: retry later.
    let again = svc
        .controller_publish_volume(Request::new(publish("vol1:ha:pvc-1", "node-a")))
        .await
        .unwrap_err();
    assert_eq!(again.code(), Code::Aborted);
    assert!(
        again
            .message()
            .contains("volume vol1:ha:pvc-1 (node node-a) is already in progress"),
        "{}",
        again.message()
    );
    let unpublish = svc
        .controller_unpublish_volume(Request::new(unpublish("vol1:ha:pvc-1", "node-a")))
        .await
        .unwrap_err();
    assert_eq!(unpublish.code(), Code::Aborted);
    gate.add_permits(1);
    first.await.unwrap().unwrap();
    // Once the first has answered, the same publish goes through (idempotently).
    gate.add_permits(1);
    svc.controller_publish_volume(Request::new(publish("vol1:ha:pvc-1", "node-a")))
        .await
        .unwrap();
    assert_eq!(
        backend.calls()[1..],
        ["GrantAccess pvc-1 node-a", "GrantAccess pvc-1 node-a"]
    );
}

/// A delete (or an expand, or an unpublish from every node) holds the whole volume, so it
/// and a publish in flight exclude each other: ABORTED, as before publishes held only their
/// node, and the CO retries once the grant has settled.
#[tokio::test]
async fn a_delete_while_a_publish_is_in_flight_is_aborted_and_the_other_way_round() {
    let (svc, backend) = service();
    let (gate, first) = publish_in_flight(&svc, &backend).await;
    // [Error] the whole volume is refused while one node's grant is in flight.
    let delete = svc
        .delete_volume(Request::new(csi::DeleteVolumeRequest {
            volume_id: "vol1:ha:pvc-1".into(),
            ..Default::default()
        }))
        .await
        .unwrap_err();
    assert_eq!(delete.code(), Code::Aborted);
    assert!(
        delete
            .message()
            .contains("volume vol1:ha:pvc-1 (node node-a) is already in progress"),
        "{}",
        delete.message()
    );
    let everyone = svc
        .controller_unpublish_volume(Request::new(unpublish("vol1:ha:pvc-1", "")))
        .await
        .unwrap_err();
    assert_eq!(everyone.code(), Code::Aborted);
    gate.add_permits(1);
    first.await.unwrap().unwrap();
    // [Error] and a publish while the delete is in flight.
    let gate = backend.hold("DeleteExport pvc-1");
    let delete = tokio::spawn({
        let svc = svc.clone();
        async move {
            svc.delete_volume(Request::new(csi::DeleteVolumeRequest {
                volume_id: "vol1:ha:pvc-1".into(),
                ..Default::default()
            }))
            .await
        }
    });
    while !backend.calls().contains(&"DeleteExport pvc-1".to_string()) {
        tokio::task::yield_now().await;
    }
    let publish = svc
        .controller_publish_volume(Request::new(publish("vol1:ha:pvc-1", "node-b")))
        .await
        .unwrap_err();
    assert_eq!(publish.code(), Code::Aborted);
    gate.add_permits(1);
    delete.await.unwrap().unwrap();
    assert_eq!(
        backend.calls()[1..],
        ["GrantAccess pvc-1 node-a", "DeleteExport pvc-1"],
        "nothing refused reached the backend"
    );
}

mod server_address;

/// A TLS claim's context names the server as its certificate does, beside the address; a
/// claim without TLS carries no name.
#[tokio::test]
async fn a_tls_claim_carries_the_backends_server_name() {
    let backend = Arc::new(FakeBackend::new("ha").with_server_name("nfs.example.com"));
    let svc = ControllerService::new(vec![backend], Arc::new(StaticNodes(BTreeMap::new())));
    for (name, transport, server_name) in [
        ("pvc-1", "mtls", Some("nfs.example.com")),
        ("pvc-2", "none", None),
    ] {
        let created = svc
            .create_volume(Request::new(csi::CreateVolumeRequest {
                parameters: [("transport".into(), transport.into())].into(),
                ..create(name)
            }))
            .await
            .unwrap()
            .into_inner()
            .volume
            .unwrap();
        let context = &created.volume_context;
        assert_eq!(context["server"], "192.0.2.1");
        assert_eq!(context.get("serverName").map(String::as_str), server_name);
    }
}
