//! The agent's errors and the one place they become gRPC codes.

use tonic::Status;

use crate::{exporter::ExportError, fs::FsError, table::TableError};

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
}

impl From<AgentError> for Status {
    fn from(err: AgentError) -> Status {
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
            AgentError::Table(_) | AgentError::Internal(_) => Status::internal(message),
            AgentError::Fs(fs) => match fs {
                FsError::NoSpace(_) => Status::resource_exhausted(message),
                FsError::NotFound { .. } => Status::not_found(message),
                FsError::Escape { .. } | FsError::Conflict { .. } => {
                    Status::failed_precondition(message)
                }
                FsError::Io { .. } | FsError::Quota { .. } => Status::internal(message),
            },
            AgentError::Export(export) => match export {
                ExportError::Unavailable(_) => Status::unavailable(message),
                ExportError::Refused { .. } | ExportError::Io { .. } => Status::internal(message),
            },
        }
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
