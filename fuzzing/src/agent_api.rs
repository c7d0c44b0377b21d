//! The agent's API: requests decoded from arbitrary bytes, as the gRPC server would decode
//! them, then handled by the real [`AgentService`] over a scratch export root (a plain
//! directory, the in-crate exporter below standing in for the NFS server).
//!
//! Invariants: no handler panics or answers `INTERNAL`/`UNKNOWN` for what a client sent;
//! every path the agent exports or answers lies beneath the export root; nothing appears
//! beside the export root or the state directory; no symlink appears beneath the root.

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
    sync::{Arc, Mutex, OnceLock},
};

use prost::Message;
use rwxnfs_agent::{
    AgentService, ExportAgent, Settings,
    exporter::{ExportError, ExportSpec, Exporter},
    fs::{QuotaKind, open_root},
    table::Table,
};
use rwxnfs_proto::agent::{self as pb, agent_server::Agent};
use tonic::{Code, Request, Status};

use crate::beneath;

/// Most calls one input makes, so an input's run time stays bounded.
const MAX_CALLS: usize = 16;

/// Stands in for the NFS server: asserts every spec it is given, keeps what is active.
struct CheckingExporter {
    root: PathBuf,
    active: Mutex<BTreeMap<u32, ExportSpec>>,
}

impl CheckingExporter {
    fn active(&self) -> std::sync::MutexGuard<'_, BTreeMap<u32, ExportSpec>> {
        self.active.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[tonic::async_trait]
impl Exporter for CheckingExporter {
    fn kind(&self) -> &'static str {
        "fuzz"
    }

    async fn apply(&self, spec: &ExportSpec) -> Result<(), ExportError> {
        assert!(
            beneath(&self.root, &spec.path) && spec.path != self.root,
            "export {} of {} is not beneath the export root {}",
            spec.export_id,
            spec.path.display(),
            self.root.display()
        );
        assert!(
            spec.pseudo_path.starts_with('/')
                && beneath(Path::new("/"), Path::new(&spec.pseudo_path)),
            "pseudo path {:?}",
            spec.pseudo_path
        );
        self.active().insert(spec.export_id, spec.clone());
        Ok(())
    }

    async fn remove(&self, export_id: u32) -> Result<(), ExportError> {
        self.active().remove(&export_id);
        Ok(())
    }

    async fn active(&self) -> Result<Vec<u32>, ExportError> {
        Ok(self.active().keys().copied().collect())
    }

    async fn probe(&self) -> Result<(), String> {
        Ok(())
    }
}

fn runtime() -> &'static tokio::runtime::Runtime {
    static RUNTIME: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RUNTIME.get_or_init(|| {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a tokio runtime")
    })
}

/// Input: up to [`MAX_CALLS`] calls, each a byte choosing the RPC, a little-endian u16
/// length, and that many bytes of the request's protobuf encoding.
pub fn agent_api(data: &[u8]) {
    // On tmpfs where there is one: every input makes a table, whose writes are fsynced.
    let shm = Path::new("/dev/shm");
    let scratch = if shm.is_dir() {
        tempfile::tempdir_in(shm)
    } else {
        tempfile::tempdir()
    }
    .expect("a scratch directory");
    // The root sits one level down, so that anything written beside it is seen.
    let outside = scratch.path().join("outside");
    let root = outside.join("exports");
    let state = scratch.path().join("state");
    std::fs::create_dir_all(&root).expect("the export root");
    let fs = open_root(&root, Some(QuotaKind::None), false).expect("a plain export root");
    let exporter = Arc::new(CheckingExporter {
        root: root.clone(),
        active: Mutex::default(),
    });
    let agent = ExportAgent::new(
        Settings::default(),
        Table::open(&state).expect("the export table"),
        Arc::from(fs),
        exporter.clone(),
    );
    let service = AgentService::new(Arc::new(agent));
    runtime().block_on(async {
        let mut rest = data;
        for _ in 0..MAX_CALLS {
            let Some((&rpc, tail)) = rest.split_first() else {
                break;
            };
            let (len, tail) = match tail {
                [a, b, tail @ ..] => (usize::from(u16::from_le_bytes([*a, *b])), tail),
                _ => (tail.len(), &[][..]),
            };
            let (body, tail) = tail.split_at(len.min(tail.len()));
            rest = tail;
            call(&service, &root, rpc, body).await;
        }
    });
    check_tree(scratch.path(), &outside, &root);
}

/// Decodes `body` as the request of the RPC `rpc` picks and makes the call; a body that does
/// not decode is what the server answers `INVALID_ARGUMENT` for without calling anything.
async fn call(service: &AgentService, root: &Path, rpc: u8, body: &[u8]) {
    macro_rules! call {
        ($method:ident, $request:ty) => {
            call!($method, $request, |_response| ())
        };
        ($method:ident, $request:ty, |$response:ident| $check:expr) => {{
            let Ok(request) = <$request>::decode(body) else {
                return;
            };
            match service.$method(Request::new(request)).await {
                Ok(response) => {
                    let $response = response.into_inner();
                    $check
                }
                Err(status) => check_status(&status),
            }
        }};
    }
    let exports = |exports: &[pb::Export]| {
        for e in exports {
            check_export(root, e);
        }
    };
    match rpc % 13 {
        0 => call!(probe, pb::ProbeRequest),
        1 => call!(get_capacity, pb::GetCapacityRequest),
        2 => call!(create_export, pb::CreateExportRequest, |r| exports(
            r.export.as_slice()
        )),
        3 => call!(delete_export, pb::DeleteExportRequest),
        4 => call!(expand_export, pb::ExpandExportRequest, |r| assert!(
            r.capacity_bytes >= 0
        )),
        5 => call!(grant_access, pb::GrantAccessRequest, |r| exports(
            r.export.as_slice()
        )),
        6 => call!(revoke_access, pb::RevokeAccessRequest),
        7 => call!(get_export, pb::GetExportRequest, |r| exports(
            r.export.as_slice()
        )),
        8 => call!(list_exports, pb::ListExportsRequest, |r| exports(
            &r.exports
        )),
        9 => call!(create_snapshot, pb::CreateSnapshotRequest),
        10 => call!(delete_snapshot, pb::DeleteSnapshotRequest),
        11 => call!(list_snapshots, pb::ListSnapshotsRequest),
        _ => call!(reconcile, pb::ReconcileRequest),
    }
}

/// A client's request is refused with a code that says whose fault it is, never as our bug.
fn check_status(status: &Status) {
    assert!(
        !matches!(status.code(), Code::Internal | Code::Unknown),
        "{:?}: {}",
        status.code(),
        status.message()
    );
}

fn check_export(root: &Path, export: &pb::Export) {
    let path = Path::new(&export.path);
    assert!(
        beneath(root, path) && path != root,
        "export {:?} answered with path {:?}, not beneath {}",
        export.name,
        export.path,
        root.display()
    );
}

/// Nothing beside the export root and the state directory; no symlink beneath the root.
fn check_tree(scratch: &Path, outside: &Path, root: &Path) {
    let names = |dir: &Path| -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(dir)
            .map(|entries| {
                entries
                    .filter_map(Result::ok)
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default();
        names.sort();
        names
    };
    assert_eq!(
        names(scratch),
        ["outside", "state"],
        "beside the state directory"
    );
    assert_eq!(names(outside), ["exports"], "beside the export root");
    let mut dirs = vec![root.to_owned()];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
            let kind = entry.file_type().expect("a file type");
            assert!(!kind.is_symlink(), "symlink {}", entry.path().display());
            if kind.is_dir() {
                dirs.push(entry.path());
            }
        }
    }
}
