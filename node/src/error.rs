//! The node plugin's errors and the one place they become gRPC codes.

use std::{io, path::PathBuf};

use rwxnfs_model::{MountOptionError, Transport, volume_context::VolumeContextError};
use tonic::Status;

use crate::{bounded::BoundedError, tls::TlsUnready};

#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    #[error("{field} missing in request")]
    Missing { field: &'static str },
    #[error("block access is not supported: rwxnfs volumes are NFS filesystems")]
    BlockAccess,
    #[error("the volume capability has no access type")]
    NoAccessType,
    /// The volume context (`server`, `share`, `nfsVersion`, `mountOptions`): its own error,
    /// which names the key.
    #[error(transparent)]
    Context(#[from] VolumeContextError),
    /// The capability's mount flags with the volume context's `mountOptions`.
    #[error(transparent)]
    MountOptions(#[from] MountOptionError),
    #[error("NFS server {server:?} has no address")]
    NoAddress { server: String },
    #[error("cannot resolve NFS server {server:?}: {source}")]
    Resolve {
        server: String,
        #[source]
        source: io::Error,
    },
    #[error("resolving NFS server {server:?} timed out")]
    ResolveTimedOut { server: String },
    #[error(
        "{staging} already has {fs_type} from {mounted} mounted; not mounting {wanted} over it"
    )]
    StagingTaken {
        staging: PathBuf,
        fs_type: String,
        mounted: String,
        wanted: String,
    },
    #[error("volume {volume_id} is not staged at {staging}")]
    NotStaged { volume_id: String, staging: PathBuf },
    #[error(
        "{target} is already mounted from {mounted} ({}); not publishing {volume_id} there",
        if *.read_only { "read-only" } else { "read-write" }
    )]
    TargetTaken {
        volume_id: String,
        target: PathBuf,
        mounted: String,
        read_only: bool,
    },
    #[error("volume {volume_id} is SINGLE_NODE_SINGLE_WRITER and already published at {other}")]
    SingleWriter { volume_id: String, other: PathBuf },
    #[error("{path} is not a mount of volume {volume_id}")]
    NotMounted { volume_id: String, path: PathBuf },
    #[error("{path} is a mount of {mounted}, not of volume {volume_id}")]
    OtherMount {
        volume_id: String,
        path: PathBuf,
        mounted: String,
    },
    /// The per-volume try-lock (see [`rwxnfs_server::inflight`]) is held by another call.
    #[error("an operation on volume {volume_id} at {path} is already in progress; retry later")]
    InProgress { volume_id: String, path: PathBuf },
    #[error("{path} is still mounted after repeated unmounts")]
    StillMounted { path: PathBuf },
    /// A blocking step that failed, overran its limit, or found its path still held.
    #[error("{step}{}", hint(.step))]
    Step {
        #[from]
        step: BoundedError,
    },
    /// A TLS claim on a node that lacks the handshake daemon or its certificate.
    #[error(transparent)]
    TlsUnready(#[from] TlsUnready),
    /// A TLS claim of a server this node already mounts without TLS.
    #[error(
        "transport {transport}: this node already mounts NFS server {addr} without TLS at {}; \
         a node's mounts of one server share one connection, so this mount would ride the \
         plaintext one and be refused by its export: unstage those volumes first (on one node, \
         the claims of one server use TLS all or none), or give TLS claims a backend of their own",
        .mounts.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(", ")
    )]
    PlaintextBeside {
        transport: Transport,
        addr: std::net::IpAddr,
        mounts: Vec<PathBuf>,
    },
    /// The mount of a TLS claim failed: the handshake, or the export, refused this node.
    #[error(
        "{step} (transport {transport}: the TLS handshake with {server:?} or its export refused \
         this node: the NFS hosts' certificate must carry the name {server:?} and chain to a CA \
         in this node's tlshd trust store; with mtls, this node's certificate must chain to a CA \
         the NFS hosts' tlshd trusts; and the volume must be published to this node. tlshd's log \
         on either side (journalctl -u tlshd) says which)"
    )]
    TlsRefused {
        transport: Transport,
        server: String,
        #[source]
        step: BoundedError,
    },
    #[error(
        "NodeExpandVolume is not supported: NFS volumes are expanded on the server and need no node-side step"
    )]
    ExpandUnsupported,
}

/// The way out, for the errors of a step that have one.
fn hint(step: &BoundedError) -> &'static str {
    match step.raw_os_error() {
        Some(libc::EACCES | libc::EPERM) => {
            " (the NFS server refused this node: is the volume published to it?)"
        }
        Some(libc::ENODEV) => " (this kernel has no NFS client)",
        Some(_) | None => "",
    }
}

impl From<NodeError> for Status {
    fn from(err: NodeError) -> Status {
        let message = err.to_string();
        match err {
            NodeError::Missing { .. }
            | NodeError::BlockAccess
            | NodeError::NoAccessType
            | NodeError::Context(_)
            | NodeError::MountOptions(_) => Status::invalid_argument(message),
            NodeError::NoAddress { .. }
            | NodeError::Resolve { .. }
            | NodeError::ResolveTimedOut { .. } => Status::unavailable(message),
            NodeError::StagingTaken { .. } | NodeError::TargetTaken { .. } => {
                Status::already_exists(message)
            }
            NodeError::NotStaged { .. }
            | NodeError::SingleWriter { .. }
            | NodeError::TlsUnready(_)
            | NodeError::PlaintextBeside { .. } => Status::failed_precondition(message),
            NodeError::TlsRefused { .. } => Status::permission_denied(message),
            NodeError::NotMounted { .. } | NodeError::OtherMount { .. } => {
                Status::not_found(message)
            }
            NodeError::InProgress { .. } => Status::aborted(message),
            NodeError::StillMounted { .. } => Status::internal(message),
            NodeError::ExpandUnsupported => Status::unimplemented(message),
            NodeError::Step { step } => match step {
                BoundedError::TimedOut { .. } => Status::deadline_exceeded(message),
                BoundedError::Busy { .. } => Status::aborted(message),
                BoundedError::Io { source, .. } => match source.raw_os_error() {
                    Some(libc::EACCES | libc::EPERM) => Status::permission_denied(message),
                    Some(libc::ENOENT) => Status::not_found(message),
                    Some(libc::ENODEV) => Status::failed_precondition(message),
                    Some(_) | None => Status::internal(message),
                },
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use std::{error::Error as _, time::Duration};

    use tonic::Code;

    use super::*;

    fn io(errno: i32) -> NodeError {
        NodeError::from(BoundedError::Io {
            what: "NFS mount",
            path: "/staging".into(),
            source: io::Error::from_raw_os_error(errno),
        })
    }

    #[test]
    fn a_refused_mount_is_permission_denied_and_names_the_way_out() {
        let status = Status::from(io(libc::EACCES));
        assert_eq!(status.code(), Code::PermissionDenied);
        assert!(
            status.message().starts_with("NFS mount on /staging: ")
                && status.message().ends_with(
                    " (the NFS server refused this node: is the volume published to it?)"
                ),
            "{}",
            status.message()
        );
        let status = Status::from(io(libc::ENODEV));
        assert_eq!(status.code(), Code::FailedPrecondition);
        assert!(
            status
                .message()
                .ends_with(" (this kernel has no NFS client)")
        );
        assert_eq!(Status::from(io(libc::ENOENT)).code(), Code::NotFound);
        assert_eq!(Status::from(io(libc::EIO)).code(), Code::Internal);
    }

    #[test]
    fn a_step_that_overran_or_found_its_path_held_says_so() {
        let timed_out = NodeError::from(BoundedError::TimedOut {
            what: "statvfs",
            path: "/t".into(),
            limit: Duration::from_secs(10),
        });
        assert_eq!(Status::from(timed_out).code(), Code::DeadlineExceeded);
        let busy = NodeError::from(BoundedError::Busy {
            what: "unmount",
            path: "/t".into(),
        });
        assert_eq!(Status::from(busy).code(), Code::Aborted);
    }

    #[test]
    fn an_io_error_stays_in_the_source_chain() {
        let err = io(libc::EACCES);
        let step = err.source().expect("the step is the source");
        let io = step.source().expect("the io error is the step's source");
        assert_eq!(
            io.downcast_ref::<io::Error>()
                .and_then(io::Error::raw_os_error),
            Some(libc::EACCES)
        );
        let resolve = NodeError::Resolve {
            server: "nfs.example".into(),
            source: io::Error::other("no such host"),
        };
        assert!(resolve.source().is_some());
        assert_eq!(Status::from(resolve).code(), Code::Unavailable);
    }
}
