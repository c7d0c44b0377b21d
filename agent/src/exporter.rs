//! Making exports active on the NFS server.
//!
//! The agent's table is the truth; an [`Exporter`] only mirrors it onto a server. Every method
//! is idempotent, so a retry or a reconcile after a crash can call it again safely.

use std::{net::IpAddr, path::PathBuf};

use ipnet::IpNet;
use rwxnfs_model::Transport;

use crate::table::{Access, Squash};

#[cfg(any(test, feature = "test-support"))]
pub mod fake;
pub mod ganesha;
pub mod kernel;

/// Who may reach an export: a single address (a granted node) or a network (an
/// `allowedClients` CIDR from the StorageClass).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Client {
    Address(IpAddr),
    Network(IpNet),
}

impl std::fmt::Display for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Client::Address(a) => write!(f, "{a}"),
            Client::Network(n) => write!(f, "{n}"),
        }
    }
}

/// One export as the NFS server should have it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExportSpec {
    /// Ganesha's Export_Id and the kernel's fsid. Never reused; the same on every host.
    pub export_id: u32,
    /// Absolute path of the data on this host.
    pub path: PathBuf,
    /// The NFSv4 pseudo path clients mount (e.g. `/pvc-123`).
    pub pseudo_path: String,
    /// Clients and their access. An empty list admits nobody.
    pub clients: Vec<(Client, Access)>,
    pub squash: Squash,
    /// RPC-with-TLS the export requires (`xprtsec=` on kernel nfsd).
    pub transport: Transport,
}

#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    /// The NFS server (or its control channel) cannot be reached: retry later.
    #[error("the NFS server is unavailable: {0}")]
    Unavailable(String),
    /// The server refused the export; the message says why.
    #[error("the NFS server refused export {export_id}: {message}")]
    Refused { export_id: u32, message: String },
    #[error("export {export_id}: {source}")]
    Io {
        export_id: u32,
        source: std::io::Error,
    },
}

/// Mirrors the export table onto an NFS server.
#[tonic::async_trait]
pub trait Exporter: Send + Sync + 'static {
    /// "ganesha" or "kernel".
    fn kind(&self) -> &'static str;

    /// The path clients mount for an export named `name` whose directory is `absolute`.
    /// NFS-Ganesha serves each export at a pseudo path of its own (`/<name>`), so that is the
    /// default; kernel nfsd's NFSv4 namespace is the server's real directory tree.
    fn client_path(&self, name: &str, _absolute: &std::path::Path) -> String {
        format!("/{name}")
    }

    /// Whether this server can export with `transport`; `Err` says why not (a claim asking
    /// for it is refused with FAILED_PRECONDITION before anything is made). Plain RPC always.
    fn supports(&self, transport: Transport) -> Result<(), String> {
        if transport.is_tls() {
            Err(format!(
                "the {} exporter has no RPC-with-TLS (RFC 9289); transport {transport} needs \
                 the kernel exporter (kernel nfsd, Linux 6.5 or later, with tlshd)",
                self.kind()
            ))
        } else {
            Ok(())
        }
    }

    /// Makes `spec` active with exactly its client list. Already active with the same id:
    /// its clients are replaced (so this also serves as "update").
    async fn apply(&self, spec: &ExportSpec) -> Result<(), ExportError>;

    /// Makes every export in `specs` active, as one batch where the server allows it; one
    /// result per spec, in order. Reconcile calls it with every ready export of the table.
    async fn apply_all(&self, specs: &[ExportSpec]) -> Vec<Result<(), ExportError>> {
        let mut results = Vec::with_capacity(specs.len());
        for spec in specs {
            results.push(self.apply(spec).await);
        }
        results
    }

    /// Stops exporting `export_id`. Not active: success.
    async fn remove(&self, export_id: u32) -> Result<(), ExportError>;

    /// Ids of the exports the server has active now (excluding any it manages itself, such
    /// as Ganesha's pseudo root).
    async fn active(&self) -> Result<Vec<u32>, ExportError>;

    /// Whether the server is up and controllable; `Err` says why not.
    async fn probe(&self) -> Result<(), String>;
}
