//! The agent's operations against an in-memory NFS server and a directory-backed test
//! filesystem: validation, idempotency, error codes, crash recovery. (The real filesystems and
//! the real Ganesha have their own tests.)
#![allow(clippy::unwrap_used)]

mod common;

use std::{path::PathBuf, sync::Arc};

use common::DirFs;

use rwxnfs_agent::{
    AgentError, ExportAgent, Settings,
    access::GrantRequest,
    exporter::{Client, fake::FakeExporter},
    exports::{CreateRequest, OptionsRequest, SourceRequest},
    table::{Access, OnDelete, RecordState, Table},
};
use rwxnfs_model::Name;
use tonic::Code;

struct Harness {
    _dir: tempfile::TempDir,
    root: PathBuf,
    state: PathBuf,
    fs: Arc<DirFs>,
    exporter: FakeExporter,
    agent: ExportAgent,
}

fn harness_with(settings: Settings) -> Harness {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("exports");
    let state = dir.path().join("state");
    std::fs::create_dir_all(&root).unwrap();
    let fs = Arc::new(DirFs::new(&root));
    let exporter = FakeExporter::new();
    let agent = ExportAgent::new(
        settings,
        Table::open(&state).unwrap(),
        fs.clone(),
        Arc::new(exporter.clone()),
    );
    Harness {
        _dir: dir,
        root,
        state,
        fs,
        exporter,
        agent,
    }
}

fn harness() -> Harness {
    harness_with(Settings::default())
}

fn create(name: &str, bytes: i64) -> CreateRequest {
    CreateRequest {
        name: name.into(),
        required_bytes: bytes,
        ..Default::default()
    }
}

fn code(err: AgentError) -> Code {
    tonic::Status::from(err).code()
}

fn grant(name: &str, client: &str, addr: &str, access: Access) -> GrantRequest {
    GrantRequest {
        name: name.into(),
        client_id: client.into(),
        addresses: vec![addr.into()],
        access: Some(access),
    }
}

/// Export `name` created and granted to node-a (10.0.0.1) read-write; its export id.
async fn granted_to_node_a(h: &Harness, name: &str) -> u32 {
    let id = h
        .agent
        .create_export(create(name, 0))
        .await
        .unwrap()
        .export_id;
    h.agent
        .grant_access(grant(name, "node-a", "10.0.0.1", Access::Rw))
        .await
        .unwrap();
    id
}

#[tokio::test]
async fn create_makes_a_directory_a_record_and_an_export_that_admits_nobody() {
    let h = harness();
    let record = h
        .agent
        .create_export(create("pvc-1", 1_000_000))
        .await
        .unwrap();
    assert_eq!(record.capacity_bytes, 1_003_520, "rounded up to 4 KiB");
    assert_eq!(record.state, RecordState::Ready);
    assert!(h.root.join("volumes/pvc-1").is_dir());
    assert!(h.state.join("exports/pvc-1.json").is_file());
    let spec = h.exporter.get(record.export_id).expect("exported");
    assert!(
        spec.clients.is_empty(),
        "no published node, no allowedClients: nobody"
    );
    assert_eq!(spec.pseudo_path, "/pvc-1");
}

#[tokio::test]
async fn create_is_idempotent_and_different_sizes_conflict() {
    let h = harness();
    let a = h
        .agent
        .create_export(create("pvc-1", 1 << 20))
        .await
        .unwrap();
    let b = h
        .agent
        .create_export(create("pvc-1", 1 << 20))
        .await
        .unwrap();
    assert_eq!(a.export_id, b.export_id);
    let err = h
        .agent
        .create_export(create("pvc-1", 1 << 30))
        .await
        .unwrap_err();
    assert_eq!(code(err), Code::AlreadyExists);
}

#[tokio::test]
async fn export_ids_are_never_reused_after_delete() {
    let h = harness();
    let a = h.agent.create_export(create("a", 0)).await.unwrap();
    h.agent.delete_export("a", None).await.unwrap();
    let b = h.agent.create_export(create("a", 0)).await.unwrap();
    assert!(b.export_id > a.export_id);
}

#[tokio::test]
async fn bad_input_gets_invalid_argument_and_touches_nothing() {
    let h = harness();
    for name in [
        "",
        "..",
        "../etc",
        "a/b",
        "a\0b",
        &"x".repeat(4096),
        "ünï",
        ".hidden",
    ] {
        let err = h.agent.create_export(create(name, 0)).await.unwrap_err();
        assert_eq!(code(err), Code::InvalidArgument, "{name:?}");
    }
    let err = h.agent.create_export(create("ok", -1)).await.unwrap_err();
    assert_eq!(code(err), Code::InvalidArgument);
    let err = h
        .agent
        .create_export(CreateRequest {
            limit_bytes: 10,
            required_bytes: 20,
            ..create("ok", 0)
        })
        .await
        .unwrap_err();
    assert_eq!(code(err), Code::OutOfRange);
    let err = h
        .agent
        .create_export(create("ok", i64::MAX))
        .await
        .unwrap_err();
    assert_eq!(code(err), Code::OutOfRange);
    assert_eq!(
        std::fs::read_dir(&h.root).unwrap().count(),
        0,
        "nothing created"
    );
}

#[tokio::test]
async fn grant_and_revoke_change_the_client_list() {
    let h = harness();
    let id = granted_to_node_a(&h, "v").await;
    h.agent
        .grant_access(grant("v", "node-b", "10.0.0.2", Access::Ro))
        .await
        .unwrap();
    let clients = h.exporter.get(id).unwrap().clients;
    assert_eq!(clients.len(), 2);
    assert!(clients.contains(&(Client::Address("10.0.0.2".parse().unwrap()), Access::Ro)));

    // Same grant again: fine. Same node, other mode: conflict.
    h.agent
        .grant_access(grant("v", "node-a", "10.0.0.1", Access::Rw))
        .await
        .unwrap();
    let err = h
        .agent
        .grant_access(grant("v", "node-a", "10.0.0.1", Access::Ro))
        .await
        .unwrap_err();
    assert_eq!(code(err), Code::AlreadyExists);

    h.agent.revoke_access("v", "node-a").await.unwrap();
    h.agent.revoke_access("v", "node-a").await.unwrap();
    h.agent.revoke_access("gone", "node-a").await.unwrap();
    let clients = h.exporter.get(id).unwrap().clients;
    assert_eq!(
        clients,
        vec![(Client::Address("10.0.0.2".parse().unwrap()), Access::Ro)]
    );
}

#[tokio::test]
async fn grants_outside_the_allowed_networks_are_refused() {
    let h = harness_with(Settings {
        allowed_clients: vec!["10.0.0.0/8".parse().unwrap()],
        ..Settings::default()
    });
    h.agent.create_export(create("v", 0)).await.unwrap();
    let err = h
        .agent
        .grant_access(grant("v", "n", "192.168.1.1", Access::Rw))
        .await
        .unwrap_err();
    assert_eq!(code(err), Code::PermissionDenied);
    let err = h
        .agent
        .grant_access(grant("v", "n", "not-an-ip", Access::Rw))
        .await
        .unwrap_err();
    assert_eq!(code(err), Code::InvalidArgument);
    let err = h
        .agent
        .grant_access(grant("missing", "n", "10.1.1.1", Access::Rw))
        .await
        .unwrap_err();
    assert_eq!(code(err), Code::NotFound);
}

#[tokio::test]
async fn allowed_client_networks_are_exported_read_write() {
    let h = harness();
    let req = CreateRequest {
        options: OptionsRequest {
            allowed_clients: vec!["10.9.0.0/16".into(), "10.8.0.7".into()],
            ..Default::default()
        },
        ..create("v", 0)
    };
    let id = h.agent.create_export(req).await.unwrap().export_id;
    assert_eq!(h.exporter.get(id).unwrap().clients.len(), 2);
}

/// A claim's transport reaches the record and the export (xprtsec= on kernel nfsd).
#[tokio::test]
async fn a_transport_reaches_the_record_and_the_export() {
    let h = harness();
    let req = CreateRequest {
        options: OptionsRequest {
            transport: rwxnfs_model::Transport::Mtls,
            ..Default::default()
        },
        ..create("tls", 0)
    };
    let record = h.agent.create_export(req).await.unwrap();
    assert_eq!(record.options.transport, rwxnfs_model::Transport::Mtls);
    assert_eq!(
        h.exporter.get(record.export_id).unwrap().transport,
        rwxnfs_model::Transport::Mtls
    );
}

#[tokio::test]
async fn expand_grows_and_never_shrinks() {
    let h = harness();
    h.agent.create_export(create("v", 1 << 20)).await.unwrap();
    assert_eq!(
        h.agent.expand_export("v", 2 << 20, 0).await.unwrap(),
        2 << 20
    );
    assert_eq!(
        h.agent.expand_export("v", 1 << 20, 0).await.unwrap(),
        2 << 20
    );
    assert_eq!(
        h.agent.get_export("v").await.unwrap().capacity_bytes,
        2 << 20
    );
    let err = h.agent.expand_export("nope", 1 << 20, 0).await.unwrap_err();
    assert_eq!(code(err), Code::NotFound);
    let err = h.agent.expand_export("v", 0, 0).await.unwrap_err();
    assert_eq!(code(err), Code::InvalidArgument);
}

#[tokio::test]
async fn delete_unexports_and_is_idempotent_per_policy() {
    let h = harness();
    let id = h
        .agent
        .create_export(create("d", 0))
        .await
        .unwrap()
        .export_id;
    h.agent.delete_export("d", None).await.unwrap();
    assert!(h.exporter.get(id).is_none());
    assert!(!h.root.join("volumes/d").exists());
    h.agent.delete_export("d", None).await.unwrap();

    h.agent.create_export(create("r", 0)).await.unwrap();
    h.agent
        .delete_export("r", Some(OnDelete::Retain))
        .await
        .unwrap();
    assert!(h.root.join("volumes/r").is_dir(), "retained in place");
    let err = h.agent.create_export(create("r", 0)).await.unwrap_err();
    assert_eq!(
        code(err),
        Code::FailedPrecondition,
        "retained data is never reused silently"
    );

    h.agent.create_export(create("a", 0)).await.unwrap();
    h.agent
        .delete_export("a", Some(OnDelete::Archive))
        .await
        .unwrap();
    assert!(h.root.join("archive/a").is_dir());
}

#[tokio::test]
async fn snapshots_and_clones_copy_content() {
    let h = harness();
    h.agent.create_export(create("src", 1 << 20)).await.unwrap();
    std::fs::write(h.root.join("volumes/src/data"), b"hello").unwrap();
    let snap = h.agent.create_snapshot("s1", "src").await.unwrap();
    assert_eq!(snap.size_bytes, 1 << 20);
    assert_eq!(h.agent.create_snapshot("s1", "src").await.unwrap(), snap);
    h.agent.create_export(create("other", 0)).await.unwrap();
    let err = h.agent.create_snapshot("s1", "other").await.unwrap_err();
    assert_eq!(code(err), Code::AlreadyExists);
    let err = h.agent.create_snapshot("s2", "missing").await.unwrap_err();
    assert_eq!(code(err), Code::NotFound);

    let from_snap = CreateRequest {
        source: Some(SourceRequest::Snapshot("s1".into())),
        ..create("restored", 0)
    };
    let restored = h.agent.create_export(from_snap).await.unwrap();
    assert!(
        restored.capacity_bytes >= 1 << 20,
        "at least the snapshot's size"
    );
    assert_eq!(
        std::fs::read(h.root.join("volumes/restored/data")).unwrap(),
        b"hello"
    );

    let clone = CreateRequest {
        source: Some(SourceRequest::Export("src".into())),
        ..create("clone", 0)
    };
    h.agent.create_export(clone).await.unwrap();
    assert_eq!(
        std::fs::read(h.root.join("volumes/clone/data")).unwrap(),
        b"hello"
    );

    let too_small = CreateRequest {
        source: Some(SourceRequest::Snapshot("s1".into())),
        ..create("small", 4096)
    };
    assert_eq!(
        code(h.agent.create_export(too_small).await.unwrap_err()),
        Code::OutOfRange
    );
    let missing = CreateRequest {
        source: Some(SourceRequest::Snapshot("nope".into())),
        ..create("x", 0)
    };
    assert_eq!(
        code(h.agent.create_export(missing).await.unwrap_err()),
        Code::NotFound
    );

    h.agent.delete_snapshot("s1").await.unwrap();
    h.agent.delete_snapshot("s1").await.unwrap();
    assert!(!h.root.join("snapshots/s1").exists());
}

#[tokio::test]
async fn a_failed_copy_rolls_the_create_back() {
    let h = harness();
    h.agent.create_export(create("src", 0)).await.unwrap();
    *h.fs.fail_clone.lock().unwrap() = true;
    let req = CreateRequest {
        source: Some(SourceRequest::Export("src".into())),
        ..create("c", 0)
    };
    let err = h.agent.create_export(req).await.unwrap_err();
    assert_eq!(code(err), Code::ResourceExhausted);
    assert!(!h.state.join("exports/c.json").exists());
    assert!(!h.root.join("volumes/c").exists());
}

#[tokio::test]
async fn an_unavailable_nfs_server_is_unavailable_and_a_retry_heals() {
    let h = harness();
    h.exporter.fail(Some("dbus is down"));
    let err = h.agent.create_export(create("v", 0)).await.unwrap_err();
    assert_eq!(code(err), Code::Unavailable);
    h.exporter.fail(None);
    let record = h.agent.create_export(create("v", 0)).await.unwrap();
    assert!(h.exporter.get(record.export_id).is_some());
}

/// A revoke whose record was written and whose NFS server change failed is retried (the
/// attacher retries ControllerUnpublish): the retry puts the server right, though the record
/// already lacks the client.
#[tokio::test]
async fn a_retried_revoke_takes_the_client_off_the_server_after_a_failed_one() {
    let h = harness();
    let id = granted_to_node_a(&h, "v").await;
    h.exporter.fail(Some("dbus is down"));
    let err = h.agent.revoke_access("v", "node-a").await.unwrap_err();
    assert_eq!(code(err), Code::Unavailable);
    assert_eq!(
        h.exporter.get(id).unwrap().clients.len(),
        1,
        "the server still admits node-a"
    );
    h.exporter.fail(None);
    h.agent.revoke_access("v", "node-a").await.unwrap();
    assert!(h.exporter.get(id).unwrap().clients.is_empty());
}

#[tokio::test]
async fn listing_pages_by_name_and_tokens_survive_deletes() {
    let h = harness();
    for n in ["a", "b", "c", "d", "e"] {
        h.agent.create_export(create(n, 0)).await.unwrap();
    }
    let (page1, token) = h.agent.list_exports(2, "").await.unwrap();
    assert_eq!(
        page1.iter().map(|r| r.name.as_str()).collect::<Vec<_>>(),
        ["a", "b"]
    );
    h.agent.delete_export("b", None).await.unwrap();
    h.agent.create_export(create("bb", 0)).await.unwrap();
    let (page2, token2) = h.agent.list_exports(2, &token).await.unwrap();
    assert_eq!(
        page2.iter().map(|r| r.name.as_str()).collect::<Vec<_>>(),
        ["bb", "c"]
    );
    let (page3, token3) = h.agent.list_exports(2, &token2).await.unwrap();
    assert_eq!(
        page3.iter().map(|r| r.name.as_str()).collect::<Vec<_>>(),
        ["d", "e"]
    );
    assert_eq!(token3, "");
    let err = h.agent.list_exports(2, "garbage").await.unwrap_err();
    assert_eq!(code(err), Code::Aborted);
    let err = h.agent.list_exports(-1, "").await.unwrap_err();
    assert_eq!(code(err), Code::InvalidArgument);
}

#[tokio::test]
async fn reconcile_rolls_back_creates_finishes_deletes_and_reactivates() {
    let h = harness();
    let ready = h.agent.create_export(create("ready", 0)).await.unwrap();
    let doomed = h.agent.create_export(create("doomed", 0)).await.unwrap();
    h.agent.create_export(create("half", 0)).await.unwrap();
    let lost = h.agent.create_export(create("lost", 0)).await.unwrap();
    // A volume whose directory went (removed by hand): reported, its record kept, not exported.
    std::fs::remove_dir(h.root.join("volumes/lost")).unwrap();
    // Simulate crashes: a create that never finished, a delete that never finished.
    let table = Table::open(&h.state).unwrap();
    let mut half = table
        .export(&Name::parse("half").unwrap())
        .unwrap()
        .unwrap();
    half.state = RecordState::Creating;
    table.put_export(&half).unwrap();
    let mut d = table
        .export(&Name::parse("doomed").unwrap())
        .unwrap()
        .unwrap();
    d.state = RecordState::Deleting;
    table.put_export(&d).unwrap();
    // A fresh NFS server (as after a failover) knows nothing.
    let exporter = FakeExporter::new();
    exporter
        .apply(&rwxnfs_agent::exporter::ExportSpec {
            export_id: 9999,
            path: "/elsewhere".into(),
            pseudo_path: "/x".into(),
            clients: vec![],
            squash: Default::default(),
            transport: Default::default(),
        })
        .await
        .unwrap();
    let agent = ExportAgent::new(
        Settings::default(),
        table,
        h.fs.clone(),
        Arc::new(exporter.clone()),
    );

    let report = agent.reconcile().await.unwrap();
    assert_eq!(report.activated, ["ready"]);
    assert_eq!(report.missing, ["lost"]);
    assert!(exporter.get(lost.export_id).is_none());
    assert!(h.state.join("exports/lost.json").exists());
    assert_eq!(report.unknown, ["9999"]);
    assert_eq!(report.repaired.len(), 2, "{:?}", report.repaired);
    assert!(exporter.get(ready.export_id).is_some());
    assert!(exporter.get(doomed.export_id).is_none());
    assert!(!h.state.join("exports/half.json").exists());
    assert!(!h.state.join("exports/doomed.json").exists());
    assert!(
        exporter.get(9999).is_some(),
        "unknown exports are reported, not removed"
    );
}

use rwxnfs_agent::exporter::Exporter as _;

#[tokio::test]
async fn a_retried_create_or_snapshot_after_a_crash_redoes_what_the_crash_interrupted() {
    let h = harness();
    h.agent.create_export(create("src", 0)).await.unwrap();
    let made = h.agent.create_export(create("half", 0)).await.unwrap();
    h.agent.create_snapshot("snap", "src").await.unwrap();
    // What a kill between the first and the last write of each leaves.
    let table = Table::open(&h.state).unwrap();
    let mut half = made.clone();
    half.state = RecordState::Creating;
    table.put_export(&half).unwrap();
    let mut snap = table
        .snapshot(&Name::parse("snap").unwrap())
        .unwrap()
        .unwrap();
    snap.state = RecordState::Creating;
    table.put_snapshot(&snap).unwrap();
    let agent = ExportAgent::new(
        Settings::default(),
        table,
        h.fs.clone(),
        Arc::new(h.exporter.clone()),
    );

    // The callers' retries, before any reconcile: both succeed, the export with a new id.
    let again = agent.create_export(create("half", 0)).await.unwrap();
    assert_eq!(again.state, RecordState::Ready);
    assert_ne!(again.export_id, made.export_id, "ids are never reused");
    assert!(h.exporter.get(again.export_id).is_some());
    let snap = agent.create_snapshot("snap", "src").await.unwrap();
    assert_eq!(snap.state, RecordState::Ready);
    let (snapshots, _) = agent.list_snapshots(0, "", "", "").await.unwrap();
    assert_eq!(snapshots.len(), 1);
}

/// The fake NFS server, 200 ms slow to take an export.
struct Slow(FakeExporter);

#[tonic::async_trait]
impl rwxnfs_agent::exporter::Exporter for Slow {
    fn kind(&self) -> &'static str {
        "slow"
    }
    async fn apply(
        &self,
        spec: &rwxnfs_agent::exporter::ExportSpec,
    ) -> Result<(), rwxnfs_agent::exporter::ExportError> {
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        self.0.apply(spec).await
    }
    async fn remove(&self, id: u32) -> Result<(), rwxnfs_agent::exporter::ExportError> {
        self.0.remove(id).await
    }
    async fn active(&self) -> Result<Vec<u32>, rwxnfs_agent::exporter::ExportError> {
        self.0.active().await
    }
    async fn probe(&self) -> Result<(), String> {
        Ok(())
    }
}

#[tokio::test]
async fn a_create_whose_caller_went_away_is_finished_all_the_same() {
    use rwxnfs_agent::exporter::Exporter as _;
    use rwxnfs_proto::agent::{CreateExportRequest, agent_server::Agent};
    let h = harness();
    let exporter = FakeExporter::new();
    let agent = ExportAgent::new(
        Settings::default(),
        Table::open(&h.state).unwrap(),
        h.fs.clone(),
        Arc::new(Slow(exporter.clone())),
    );
    let service = rwxnfs_agent::AgentService::new(Arc::new(agent));
    let call = service.create_export(tonic::Request::new(CreateExportRequest {
        name: "v".into(),
        ..Default::default()
    }));
    // The caller gives up while the NFS server is taking the export.
    let gave_up = tokio::time::timeout(std::time::Duration::from_millis(50), call).await;
    assert!(gave_up.is_err());
    tokio::time::sleep(std::time::Duration::from_millis(400)).await;
    assert_eq!(
        exporter.active().await.unwrap().len(),
        1,
        "the export was made"
    );
    let record = Table::open(&h.state)
        .unwrap()
        .export(&Name::parse("v").unwrap())
        .unwrap()
        .unwrap();
    assert_eq!(record.state, RecordState::Ready);
}
