//! Faults of the filesystems under the agent, on real loop-mounted XFS (the export root and the
//! state directory each on its own) and a real NFS-Ganesha whose export files live in the state
//! directory, as in production (`<state>/ganesha`):
//!
//! - a full export root or a full state directory: creates, snapshots and clones are refused
//!   with RESOURCE_EXHAUSTED naming the filesystem and what was being written, nothing
//!   half-made stays (record, temporary file, directory, export file, active export), the
//!   agent goes on granting, listing, probing and deleting, and once space is freed the same
//!   requests succeed;
//! - a state directory remounted read-only, or whose XFS shut down: writes are refused with
//!   UNAVAILABLE naming the cause, List and Get are answered from memory, Probe is not ready
//!   and says why, and the agent is whole again once the filesystem is.
//!
//! Each test checks at the end that Ganesha exports exactly what the table holds.
#![allow(clippy::unwrap_used)]

use std::{
    path::PathBuf,
    sync::Arc,
    time::{Duration, Instant},
};

use rwxnfs_agent::{
    AgentService, ExportAgent, Settings, exporter::Exporter, fs::plain::PlainFs, table::Table,
};
use rwxnfs_proto::agent::{self as pb, agent_server::Agent};
use rwxnfs_testbed::{GaneshaServer, LoopFs, assert_nothing_left};
use tonic::{Code, Request, Status};

struct Bed {
    service: AgentService,
    exports: LoopFs,
    state: LoopFs,
    host: GaneshaServer,
    _dir: tempfile::TempDir,
}

/// The agent over two 300 MiB XFS filesystems (XFS's smallest) and Ganesha.
fn bed(prefix: &str) -> Bed {
    let dir = tempfile::tempdir().unwrap();
    let exports = LoopFs::new("xfs", 300, &["-q", "-m", "reflink=1"]);
    let state = LoopFs::new("xfs", 300, &["-q"]);
    let host = GaneshaServer::with_conf_dir(dir.path(), prefix, &state.mount.join("ganesha"));
    let table = Table::open(&state.mount).unwrap();
    table.load().unwrap();
    let agent = ExportAgent::new(
        Settings::default(),
        table,
        Arc::new(PlainFs::open(&exports.mount).unwrap()),
        host.exporter.clone(),
    );
    agent.spawn_purger();
    Bed {
        service: AgentService::new(Arc::new(agent)),
        exports,
        state,
        host,
        _dir: dir,
    }
}

fn from(source: &str) -> Option<pb::ContentSource> {
    use pb::content_source::Source;
    let source = match source.split_once(':') {
        Some(("snapshot", name)) => Source::SnapshotName(name.into()),
        _ => Source::ExportName(source.into()),
    };
    Some(pb::ContentSource {
        source: Some(source),
    })
}

/// One RPC of the agent's service, whose answer the test does not need.
macro_rules! call {
    ($bed:expr, $rpc:ident, $request:expr) => {
        $bed.service.$rpc(Request::new($request)).await.map(drop)
    };
}

impl Bed {
    async fn create(&self, name: &str, source: Option<&str>) -> Result<(), Status> {
        call!(
            self,
            create_export,
            pb::CreateExportRequest {
                name: name.into(),
                required_bytes: 1 << 20,
                source: source.and_then(from),
                ..Default::default()
            }
        )
    }

    async fn snapshot(&self, name: &str, source: &str) -> Result<(), Status> {
        call!(
            self,
            create_snapshot,
            pb::CreateSnapshotRequest {
                name: name.into(),
                source_export: source.into(),
            }
        )
    }

    async fn grant(&self, name: &str, node: &str, address: &str) -> Result<(), Status> {
        call!(
            self,
            grant_access,
            pb::GrantAccessRequest {
                name: name.into(),
                client: Some(pb::ClientAccess {
                    client_id: node.into(),
                    addresses: vec![address.into()],
                    mode: pb::AccessMode::ReadWrite as i32,
                }),
            }
        )
    }

    async fn revoke(&self, name: &str, node: &str) -> Result<(), Status> {
        call!(
            self,
            revoke_access,
            pb::RevokeAccessRequest {
                name: name.into(),
                client_id: node.into(),
            }
        )
    }

    async fn delete(&self, name: &str) -> Result<(), Status> {
        call!(
            self,
            delete_export,
            pb::DeleteExportRequest {
                name: name.into(),
                policy: 0,
            }
        )
    }

    async fn listed(&self) -> Vec<String> {
        let list = self
            .service
            .list_exports(Request::new(pb::ListExportsRequest::default()))
            .await
            .expect("List is answered")
            .into_inner();
        list.exports.into_iter().map(|e| e.name).collect()
    }

    async fn get(&self, name: &str) -> Result<pb::Export, Status> {
        self.service
            .get_export(Request::new(pb::GetExportRequest { name: name.into() }))
            .await
            .map(|r| r.into_inner().export.unwrap())
    }

    async fn probe(&self) -> pb::ProbeResponse {
        self.service
            .probe(Request::new(pb::ProbeRequest {}))
            .await
            .unwrap()
            .into_inner()
    }

    /// An export with a 64 KiB file in it, and a snapshot of it.
    async fn populated(&self, name: &str, snapshot: &str) {
        self.create(name, None).await.unwrap();
        std::fs::write(
            self.exports.mount.join("volumes").join(name).join("data"),
            vec![7u8; 64 << 10],
        )
        .unwrap();
        self.snapshot(snapshot, name).await.unwrap();
    }

    /// Frees the space `filler` took; the create, snapshot, clone and restore refused before
    /// then succeed.
    async fn freed_the_refused_succeed(&self, filler: PathBuf) {
        std::fs::remove_dir_all(filler).unwrap();
        rwxnfs_testbed::loopfs_run("sync", &[]);
        let recovering = Instant::now();
        self.create("new", None).await.unwrap();
        self.snapshot("snap", "kept").await.unwrap();
        self.create("clone", Some("kept")).await.unwrap();
        self.create("restored", Some("snapshot:before"))
            .await
            .unwrap();
        println!(
            "space freed: the four refused requests succeeded {:?} after",
            recovering.elapsed()
        );
        assert_eq!(self.listed().await, ["clone", "kept", "new", "restored"]);
    }

    /// Nothing of `names` (exports or snapshots never acknowledged) exists anywhere, no
    /// temporary file is left in the state directory, the trash is emptied, and Ganesha
    /// exports exactly the table's exports that have clients, each from an export file of
    /// its own.
    async fn nothing_half_made(&self, names: &[&str]) {
        let state = &self.state.mount;
        for name in names {
            for path in [
                state.join(format!("exports/{name}.json")),
                state.join(format!("snapshots/{name}.json")),
                self.exports.mount.join("volumes").join(name),
                self.exports.mount.join("snapshots").join(name),
            ] {
                assert!(!path.exists(), "{} was left behind", path.display());
            }
        }
        let (state_dir, root) = (state.clone(), self.exports.mount.clone());
        tokio::task::spawn_blocking(move || {
            assert_nothing_left(&state_dir, &root, Duration::from_secs(10))
        })
        .await
        .unwrap();
        let active = self.host.exporter.active().await.unwrap();
        rwxnfs_testbed::assert_ganesha_serves_the_table(state, &active);
    }
}

/// The call failed with `code` and a message naming `words` (each somewhere in it).
fn refused(result: Result<(), Status>, code: Code, words: &[&str]) -> String {
    let status = result.expect_err("the call was refused");
    assert_eq!(status.code(), code, "{status:?}");
    for word in words {
        assert!(
            status.message().contains(word),
            "{:?} does not name {word:?}",
            status.message()
        );
    }
    status.message().to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_export_root_refuses_creates_snapshots_and_clones_and_leaves_nothing_half_made() {
    let bed = bed("fullx");
    bed.populated("kept", "before").await;
    let filler = bed.exports.fill();
    let root = bed.exports.mount.display().to_string();

    let refusals = [
        ("create", bed.create("new", None).await),
        ("snapshot", bed.snapshot("snap", "kept").await),
        ("clone", bed.create("clone", Some("kept")).await),
        (
            "restore",
            bed.create("restored", Some("snapshot:before")).await,
        ),
    ];
    for (what, result) in refusals {
        let message = refused(result, Code::ResourceExhausted, &["export root", &root]);
        println!("{what} on a full export root: {message}");
    }
    bed.nothing_half_made(&["new", "snap", "clone", "restored"])
        .await;

    // Everything else is served: a publish, a revoke, List, Get, Probe, a delete.
    bed.grant("kept", "node-a", "10.0.0.1").await.unwrap();
    bed.revoke("kept", "node-a").await.unwrap();
    bed.grant("kept", "node-a", "10.0.0.1").await.unwrap();
    assert_eq!(bed.listed().await, ["kept"]);
    assert_eq!(bed.get("kept").await.unwrap().clients.len(), 1);
    let probe = bed.probe().await;
    assert!(probe.ready, "{}", probe.reason);

    bed.freed_the_refused_succeed(filler).await;
    for name in ["clone", "restored"] {
        assert_eq!(
            std::fs::read(bed.exports.mount.join("volumes").join(name).join("data")).unwrap(),
            vec![7u8; 64 << 10]
        );
    }
    bed.nothing_half_made(&[]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_state_directory_refuses_new_records_and_still_grants_revokes_and_deletes() {
    let bed = bed("fulls");
    bed.populated("kept", "before").await;
    bed.create("doomed", None).await.unwrap();
    let filler = bed.state.fill();
    let state = bed.state.mount.display().to_string();

    let refusals = [
        ("create", bed.create("new", None).await, "new.json"),
        ("snapshot", bed.snapshot("snap", "kept").await, "snap.json"),
        (
            "clone",
            bed.create("clone", Some("kept")).await,
            "clone.json",
        ),
        (
            "restore",
            bed.create("restored", Some("snapshot:before")).await,
            "restored.json",
        ),
    ];
    for (what, result, file) in refusals {
        let message = refused(
            result,
            Code::ResourceExhausted,
            &["state directory is full", &state, file],
        );
        println!("{what} with a full state directory: {message}");
    }
    bed.nothing_half_made(&["new", "snap", "clone", "restored"])
        .await;

    // Changes to existing exports use the table's reserve: the ways out of a full disk work.
    bed.grant("kept", "node-a", "10.0.0.1").await.unwrap();
    bed.revoke("kept", "node-a").await.unwrap();
    bed.grant("kept", "node-b", "10.0.0.2").await.unwrap();
    bed.delete("doomed").await.unwrap();
    assert_eq!(bed.listed().await, ["kept"]);
    assert_eq!(
        bed.get("kept").await.unwrap().clients[0].client_id,
        "node-b"
    );
    let probe = bed.probe().await;
    assert!(probe.ready, "{}", probe.reason);
    bed.nothing_half_made(&["doomed"]).await;

    bed.freed_the_refused_succeed(filler).await;
    assert_eq!(
        std::fs::metadata(bed.state.mount.join(".reserve"))
            .unwrap()
            .len(),
        1 << 20,
        "the reserve is held again"
    );
    bed.nothing_half_made(&[]).await;
}

/// What a state filesystem that stopped taking writes must look like from outside, and how
/// long the agent takes to be whole once `repair` made it writable again.
async fn unwritable_state(bed: &Bed, cause: &str, repair: impl FnOnce()) {
    let probe = bed.probe().await;
    assert!(
        !probe.ready,
        "Probe says ready on an unwritable state directory"
    );
    assert!(
        probe.reason.contains("state directory") && probe.reason.contains(cause),
        "{}",
        probe.reason
    );
    println!("Probe: {}", probe.reason);
    let state = bed.state.mount.display().to_string();
    let words = ["state directory cannot be written", &state, cause];
    refused(bed.create("new", None).await, Code::Unavailable, &words);
    refused(
        bed.snapshot("snap", "kept").await,
        Code::Unavailable,
        &words,
    );
    refused(
        bed.grant("kept", "node-a", "10.0.0.1").await,
        Code::Unavailable,
        &words,
    );
    let message = refused(bed.delete("kept").await, Code::Unavailable, &words);
    println!("delete: {message}");
    // Reads are answered from memory.
    assert_eq!(bed.listed().await, ["kept"]);
    assert!(bed.get("kept").await.unwrap().clients.is_empty());
    assert!(
        !bed.exports.mount.join("volumes/new").exists(),
        "a refused create made its directory"
    );

    let recovering = Instant::now();
    repair();
    while !bed.probe().await.ready {
        assert!(
            recovering.elapsed() < Duration::from_secs(10),
            "Probe stays not ready"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    bed.create("new", None).await.unwrap();
    bed.grant("kept", "node-a", "10.0.0.1").await.unwrap();
    println!(
        "repaired: Probe ready and a create and a grant done {:?} after the repair began",
        recovering.elapsed()
    );
    assert_eq!(bed.listed().await, ["kept", "new"]);
    bed.nothing_half_made(&["snap"]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_only_state_directory_refuses_writes_as_unavailable_and_serves_reads() {
    let bed = bed("rofs");
    bed.create("kept", None).await.unwrap();
    bed.state.remount("ro");
    unwritable_state(&bed, "Read-only file system", || bed.state.remount("rw")).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shut_down_state_filesystem_refuses_writes_as_unavailable_and_serves_reads() {
    let bed = bed("shut");
    bed.create("kept", None).await.unwrap();
    rwxnfs_testbed::loopfs_run(
        "xfs_io",
        &["-x", "-c", "shutdown", &bed.state.mount.to_string_lossy()],
    );
    unwritable_state(&bed, "Input/output error", || bed.state.cycle()).await;
}
