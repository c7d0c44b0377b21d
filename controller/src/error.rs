//! The controller's errors and the one place they become gRPC codes (per the CSI spec:
//! a missing or invalid field is INVALID_ARGUMENT, an unknown volume NOT_FOUND, an operation
//! already running on it ABORTED, a backend that cannot be reached UNAVAILABLE).

use nfs3_client::nfs3_types::nfs3::nfsstat3;
use rwxnfs_model::{IdError, Name, NameError, ParamError};
use rwxnfs_server::inflight::Busy;
use tonic::{Code, Status};

use crate::backend::SubdirError;

#[derive(Debug, thiserror::Error)]
pub enum ControllerError {
    /// A required request field is empty.
    #[error("{field} missing in request")]
    Missing { field: &'static str },
    /// A volume capability rwxnfs cannot serve; the message says why.
    #[error("{0}")]
    UnsupportedCapability(String),
    /// StorageClass parameters, or the directory a `subDir` template renders.
    #[error(transparent)]
    Params(#[from] ParamError),
    /// The request's name cannot be an export's or a snapshot's name.
    #[error("name: {0}")]
    BadName(NameError),
    #[error("capacity_range: bytes must not be negative")]
    NegativeCapacity,
    #[error("capacity_range: required_bytes {required} exceeds limit_bytes {limit}")]
    RequiredAboveLimit { required: i64, limit: i64 },
    #[error("max_entries must not be negative")]
    NegativeMaxEntries,
    #[error("starting_token {token:?} was not issued by this controller")]
    ForeignPageToken { token: String },
    #[error("parameter backend: {name} is not configured; configured backends: {configured}")]
    UnknownBackend { name: Name, configured: String },
    #[error("parameter backend is required when several backends are configured ({configured})")]
    BackendRequired { configured: String },
    #[error(
        "parameter onDelete: backend {backend} (subdir) removes a claim's directory when the \
         volume is deleted; to keep the data, give the StorageClass reclaimPolicy: Retain"
    )]
    SubdirDeletes { backend: Name },
    #[error(
        "parameter subDir: backend {backend} makes an export per claim; subDir is for subdir \
         backends"
    )]
    SubDirOnAgentBackend { backend: Name },
    #[error(
        "parameter transport: {transport} checks the NFS server's certificate against the name \
         nodes mount by, and backend {backend} has none: set serverName (the name in the NFS \
         hosts' certificate) in its entry of the controller's configuration"
    )]
    NoServerName {
        backend: Name,
        transport: rwxnfs_model::Transport,
    },
    #[error(
        "the content source is in backend {source_backend}, but the volume is asked for in \
         backend {backend}; snapshots and clones stay within one backend"
    )]
    SourceInOtherBackend { source_backend: Name, backend: Name },
    /// A volume id that cannot be ours names no volume.
    #[error("volume {raw:?} does not exist: {source}")]
    NoSuchVolume { raw: String, source: IdError },
    #[error("snapshot {raw:?} does not exist: {source}")]
    NoSuchSnapshotId { raw: String, source: IdError },
    #[error("volume {volume}: backend {backend} is not configured")]
    VolumeBackendNotConfigured { volume: String, backend: Name },
    #[error("snapshot {snapshot}: backend {backend} is not configured")]
    SnapshotBackendNotConfigured { snapshot: String, backend: Name },
    #[error("snapshot {snapshot} does not exist")]
    NoSuchSnapshot { snapshot: String },
    #[error("node {node:?} is not in the controller configuration's `nodes` map")]
    NodeNotConfigured { node: String },
    #[error("node {node:?} does not exist in the cluster")]
    NodeNotInCluster { node: String },
    /// The Node object gives no address for NFS; the reason names the node and the fix.
    #[error("{reason}")]
    NodeAddresses { node: String, reason: String },
    #[error("cannot look up node {node:?} in the Kubernetes API: {source}")]
    NodeLookup { node: String, source: kube::Error },
    /// Another call holds the volume (or snapshot, or this node's part of the volume).
    #[error("an operation on {what} is already in progress; retry later")]
    Busy { what: String },
    /// What the agent answered, its code kept (the agent decided it).
    #[error("backend {backend}: {message}")]
    Agent {
        backend: Name,
        code: Code,
        message: String,
    },
    /// The agent could not be reached at all: connection refused or reset, no socket.
    #[error("backend {backend}: the agent at {endpoint} cannot be reached ({cause}); retry")]
    Unreachable {
        backend: Name,
        endpoint: String,
        cause: String,
    },
    /// The agent did not answer within the backend's time limit.
    #[error("backend {backend}: the agent at {endpoint} did not answer within {limit:?}; retry")]
    AgentTimeout {
        backend: Name,
        endpoint: String,
        limit: std::time::Duration,
    },
    #[error("backend {backend}: {method} returned nothing")]
    EmptyAnswer { backend: Name, method: &'static str },
    #[error(
        "backend {backend}: the agent reports no server address; set `server` for this backend \
         in the controller configuration or `serverAddresses` in the agent's"
    )]
    NoServerAddress { backend: Name },
    #[error(transparent)]
    Subdir(#[from] SubdirError),
    #[error("agent snapshot name: {0}")]
    AgentSnapshotName(NameError),
    #[error("agent snapshot source: {0}")]
    AgentSnapshotSource(NameError),
    #[error("ControllerModifyVolume is not supported: rwxnfs volumes have no mutable parameters")]
    ModifyUnsupported,
}

impl ControllerError {
    /// The gRPC code of this error: every code the controller answers is decided here.
    pub fn code(&self) -> Code {
        use ControllerError as E;
        match self {
            E::Missing { .. }
            | E::UnsupportedCapability(_)
            | E::Params(_)
            | E::BadName(_)
            | E::NegativeCapacity
            | E::NegativeMaxEntries
            | E::UnknownBackend { .. }
            | E::BackendRequired { .. }
            | E::SubdirDeletes { .. }
            | E::SubDirOnAgentBackend { .. }
            | E::SourceInOtherBackend { .. } => Code::InvalidArgument,
            E::RequiredAboveLimit { .. } => Code::OutOfRange,
            E::NoSuchVolume { .. }
            | E::NoSuchSnapshotId { .. }
            | E::VolumeBackendNotConfigured { .. }
            | E::SnapshotBackendNotConfigured { .. }
            | E::NoSuchSnapshot { .. }
            | E::NodeNotConfigured { .. }
            | E::NodeNotInCluster { .. } => Code::NotFound,
            E::NodeAddresses { .. } | E::NoServerAddress { .. } | E::NoServerName { .. } => {
                Code::FailedPrecondition
            }
            E::ForeignPageToken { .. } | E::Busy { .. } => Code::Aborted,
            E::NodeLookup { .. } | E::Unreachable { .. } => Code::Unavailable,
            E::AgentTimeout { .. } => Code::DeadlineExceeded,
            E::Agent { code, .. } => *code,
            E::EmptyAnswer { .. } | E::AgentSnapshotName(_) | E::AgentSnapshotSource(_) => {
                Code::Internal
            }
            E::ModifyUnsupported => Code::Unimplemented,
            E::Subdir(subdir) => match subdir {
                SubdirError::Unreachable { .. } => Code::Unavailable,
                SubdirError::BadName(_) => Code::InvalidArgument,
                SubdirError::NoDirectory { .. } => Code::NotFound,
                SubdirError::TooDeep { .. } | SubdirError::NoSnapshots { .. } => {
                    Code::FailedPrecondition
                }
                SubdirError::Nfs { status, .. } => nfs_code(*status),
            },
        }
    }

    /// The message a client sees, as `Status::message` gives it (the `Display` text).
    pub fn message(&self) -> String {
        self.to_string()
    }

    /// "Already gone", which delete paths count as success.
    pub fn is_not_found(&self) -> bool {
        self.code() == Code::NotFound
    }
}

/// The code of a failed NFS call on a subdir backend's share. Every status is named, so a
/// new one in the NFS library forces a choice here too.
fn nfs_code(status: nfsstat3) -> Code {
    use nfsstat3::*;
    match status {
        NFS3ERR_NOENT => Code::NotFound,
        NFS3ERR_EXIST => Code::AlreadyExists,
        NFS3ERR_ACCES | NFS3ERR_PERM | NFS3ERR_ROFS => Code::PermissionDenied,
        NFS3ERR_NOSPC | NFS3ERR_DQUOT => Code::ResourceExhausted,
        NFS3_OK | NFS3ERR_IO | NFS3ERR_NXIO | NFS3ERR_XDEV | NFS3ERR_NODEV | NFS3ERR_NOTDIR
        | NFS3ERR_ISDIR | NFS3ERR_INVAL | NFS3ERR_FBIG | NFS3ERR_MLINK | NFS3ERR_NAMETOOLONG
        | NFS3ERR_NOTEMPTY | NFS3ERR_STALE | NFS3ERR_REMOTE | NFS3ERR_BADHANDLE
        | NFS3ERR_NOT_SYNC | NFS3ERR_BAD_COOKIE | NFS3ERR_NOTSUPP | NFS3ERR_TOOSMALL
        | NFS3ERR_SERVERFAULT | NFS3ERR_BADTYPE | NFS3ERR_JUKEBOX => Code::Internal,
    }
}

impl From<Busy<String, String>> for ControllerError {
    fn from(busy: Busy<String, String>) -> Self {
        ControllerError::Busy { what: busy.what() }
    }
}

impl From<ControllerError> for Status {
    fn from(err: ControllerError) -> Status {
        Status::new(err.code(), err.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_agents_answer_keeps_its_code_and_names_the_backend() {
        let backend = Name::parse("ha").expect("a valid name");
        let status = Status::from(ControllerError::Agent {
            backend,
            code: Code::ResourceExhausted,
            message: "no space on the filesystem".into(),
        });
        assert_eq!(status.code(), Code::ResourceExhausted);
        assert_eq!(status.message(), "backend ha: no space on the filesystem");
    }

    #[test]
    fn an_agent_that_cannot_be_reached_is_unavailable_and_says_retry() {
        let status = Status::from(ControllerError::Unreachable {
            backend: Name::parse("ha").expect("a valid name"),
            endpoint: "unix:///run/agent.sock".into(),
            cause: "No such file or directory".into(),
        });
        assert_eq!(status.code(), Code::Unavailable);
        assert_eq!(
            status.message(),
            "backend ha: the agent at unix:///run/agent.sock cannot be reached \
             (No such file or directory); retry"
        );
    }
}
