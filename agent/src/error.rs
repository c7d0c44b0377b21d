//! The agent's errors and the one place they become gRPC codes.

use tonic::Status;

use crate::{
    exporter::ExportError,
    fs::FsError,
    table::{Failure, TableError},
};

#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    #[error("{0}")]
    InvalidArgument(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    AlreadyExists(String),
    #[error("{0}")]
    OutOfRange(String),
    #[error("{0}")]
    PermissionDenied(String),
    #[error("{0}")]
    FailedPrecondition(String),
    #[error("{0}")]
    ResourceExhausted(String),
    /// A paging token the agent did not issue.
    #[error("{0}")]
    Aborted(String),
    #[error(transparent)]
    Table(#[from] TableError),
    #[error(transparent)]
    Fs(#[from] FsError),
    #[error(transparent)]
    Export(#[from] ExportError),
    #[error("internal error: {0}")]
    Internal(String),
    /// One failure answered to several callers (grants to one export applied together).
    #[error(transparent)]
    Shared(std::sync::Arc<AgentError>),
}

impl From<AgentError> for Status {
    fn from(err: AgentError) -> Status {
        Status::from(&err)
    }
}

impl From<&AgentError> for Status {
    fn from(err: &AgentError) -> Status {
        let message = err.to_string();
        match err {
            AgentError::InvalidArgument(_) => Status::invalid_argument(message),
            AgentError::NotFound(_) => Status::not_found(message),
            AgentError::AlreadyExists(_) => Status::already_exists(message),
            AgentError::OutOfRange(_) => Status::out_of_range(message),
            AgentError::PermissionDenied(_) => Status::permission_denied(message),
            AgentError::FailedPrecondition(_) => Status::failed_precondition(message),
            AgentError::ResourceExhausted(_) => Status::resource_exhausted(message),
            AgentError::Aborted(_) => Status::aborted(message),
            AgentError::Internal(_) => Status::internal(message),
            AgentError::Shared(inner) => Status::from(&**inner),
            AgentError::Table(table) => match table {
                TableError::NoSpace { .. } | TableError::IdsExhausted { .. } => {
                    Status::resource_exhausted(message)
                }
                // A state directory that cannot be written (remounted read-only, an XFS
                // shutdown, a DRBD resource without quorum) is this host's condition, not the
                // request's: the HA manager fails the agent over, or the filesystem comes
                // back, and the same call then succeeds. That is UNAVAILABLE ("retry"), not
                // FAILED_PRECONDITION, which tells the caller to change something first.
                TableError::Unwritable { .. } => Status::unavailable(message),
                TableError::Io { .. } | TableError::Corrupt { .. } => Status::internal(message),
            },
            AgentError::Fs(fs) => match fs {
                FsError::NoSpace(_) => Status::resource_exhausted(message),
                FsError::NotFound { .. } => Status::not_found(message),
                FsError::Escape { .. } | FsError::Conflict { .. } => {
                    Status::failed_precondition(message)
                }
                FsError::Io { source, .. } => io_status(source, message),
                FsError::Quota { .. } => Status::internal(message),
            },
            AgentError::Export(export) => match export {
                ExportError::Unavailable(_) => Status::unavailable(message),
                ExportError::Io { source, .. } => io_status(source, message),
                ExportError::Refused { .. } => Status::internal(message),
            },
        }
    }
}

/// An I/O error on a file the agent writes (an NFS server's export file in the state
/// directory, a volume on the export root): the same codes as for the table's files.
fn io_status(source: &std::io::Error, message: String) -> Status {
    match Failure::of(source) {
        Failure::NoSpace => Status::resource_exhausted(message),
        Failure::Unwritable => Status::unavailable(message),
        Failure::Other => Status::internal(message),
    }
}

/// Runs blocking file-system or table work off the async threads.
pub async fn blocking<T, E>(
    f: impl FnOnce() -> Result<T, E> + Send + 'static,
) -> Result<T, AgentError>
where
    T: Send + 'static,
    E: Into<AgentError> + Send + 'static,
{
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| AgentError::Internal(format!("a blocking task failed: {e}")))?
        .map_err(Into::into)
}
