//! Translating between the agent's model and CSI messages, and the checks on CSI inputs that
//! do not depend on any backend.

use std::collections::HashMap;

use rwxnfs_model::{Name, Params, SnapshotId, VolumeId, volume_context::VolumeContext};
use rwxnfs_proto::{
    agent as pb,
    csi::{
        Snapshot, Volume, VolumeCapability, VolumeCondition, volume_capability,
        volume_capability::access_mode::Mode,
    },
};

use crate::ControllerError;

/// Why a capability is not supported, or None when it is.
pub fn unsupported(cap: &VolumeCapability) -> Option<String> {
    match &cap.access_type {
        Some(volume_capability::AccessType::Mount(mount)) => {
            if !matches!(mount.fs_type.as_str(), "" | "nfs" | "nfs4") {
                return Some(format!(
                    "fs_type {:?} is not supported: rwxnfs volumes are NFS (leave fs_type empty)",
                    mount.fs_type
                ));
            }
        }
        Some(volume_capability::AccessType::Block(_)) => {
            return Some(
                "block access is not supported: rwxnfs volumes are NFS filesystems".into(),
            );
        }
        None => return Some("the capability has no access type (mount or block)".into()),
    }
    match cap.access_mode.as_ref().map(|m| Mode::try_from(m.mode)) {
        Some(Ok(Mode::Unknown)) | Some(Err(_)) | None => {
            Some("the capability has no known access mode".into())
        }
        Some(Ok(_)) => None,
    }
}

/// Checks every capability of a request; INVALID_ARGUMENT naming the first bad one.
pub fn check_capabilities(caps: &[VolumeCapability]) -> Result<(), ControllerError> {
    match caps.iter().find_map(unsupported) {
        Some(why) => Err(ControllerError::UnsupportedCapability(why)),
        None => Ok(()),
    }
}

/// Whether a capability only reads.
pub fn read_only_mode(cap: &VolumeCapability) -> bool {
    matches!(
        cap.access_mode.as_ref().map(|m| Mode::try_from(m.mode)),
        Some(Ok(Mode::SingleNodeReaderOnly | Mode::MultiNodeReaderOnly))
    )
}

/// Parses a volume id; anything garbled is NOT_FOUND (it cannot name a volume of ours).
pub fn volume_id(raw: &str) -> Result<VolumeId, ControllerError> {
    raw.parse::<VolumeId>()
        .map_err(|source| ControllerError::NoSuchVolume {
            raw: raw.to_owned(),
            source,
        })
}

pub fn snapshot_id(raw: &str) -> Result<SnapshotId, ControllerError> {
    raw.parse::<SnapshotId>()
        .map_err(|source| ControllerError::NoSuchSnapshotId {
            raw: raw.to_owned(),
            source,
        })
}

/// The volume context: everything the node needs to mount it; with TLS, the name the mount
/// names the server by (`server_name`, the backend's `serverName`).
pub fn volume_context(
    server: &str,
    server_name: Option<&str>,
    export: &pb::Export,
    params: &Params,
) -> HashMap<String, String> {
    VolumeContext {
        server: server.to_owned(),
        share: export.pseudo_path.clone(),
        nfs_version: params.nfs_version,
        mount_options: params.mount_options.clone(),
        transport: params.transport,
        server_name: server_name
            .filter(|_| params.transport.is_tls())
            .map(str::to_owned),
    }
    .to_map()
}

pub fn volume(id: &VolumeId, export: &pb::Export, context: HashMap<String, String>) -> Volume {
    Volume {
        capacity_bytes: export.capacity_bytes,
        volume_id: id.to_string(),
        volume_context: context,
        content_source: None,
        accessible_topology: Vec::new(),
    }
}

pub fn healthy() -> Option<VolumeCondition> {
    Some(VolumeCondition {
        abnormal: false,
        message: String::new(),
    })
}

pub fn snapshot(backend: &Name, s: &pb::Snapshot) -> Result<Snapshot, ControllerError> {
    let name = Name::parse(&s.name).map_err(ControllerError::AgentSnapshotName)?;
    let source = Name::parse(&s.source_export).map_err(ControllerError::AgentSnapshotSource)?;
    Ok(Snapshot {
        size_bytes: s.size_bytes,
        snapshot_id: SnapshotId::new(backend.clone(), name).to_string(),
        source_volume_id: VolumeId::new(backend.clone(), source).to_string(),
        creation_time: s.created,
        ready_to_use: s.ready_to_use,
        group_snapshot_id: String::new(),
    })
}

/// Agent options from StorageClass parameters.
pub fn export_options(params: &Params) -> pb::ExportOptions {
    use rwxnfs_model::params::{OnDeleteParam, SquashParam};
    pb::ExportOptions {
        squash: match params.squash {
            None => pb::Squash::Unspecified,
            Some(SquashParam::None) => pb::Squash::None,
            Some(SquashParam::Root) => pb::Squash::Root,
            Some(SquashParam::All) => pb::Squash::All,
        } as i32,
        uid: params.uid,
        gid: params.gid,
        mode: params.mode,
        allowed_clients: params
            .allowed_clients
            .iter()
            .map(|c| c.to_string())
            .collect(),
        on_delete: match params.on_delete {
            None => pb::DeletePolicy::Unspecified,
            Some(OnDeleteParam::Delete) => pb::DeletePolicy::Delete,
            Some(OnDeleteParam::Retain) => pb::DeletePolicy::Retain,
            Some(OnDeleteParam::Archive) => pb::DeletePolicy::Archive,
        } as i32,
        transport: match params.transport {
            rwxnfs_model::Transport::None => pb::Transport::None,
            rwxnfs_model::Transport::Tls => pb::Transport::Tls,
            rwxnfs_model::Transport::Mtls => pb::Transport::Mtls,
        } as i32,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rwxnfs_proto::csi::volume_capability::{AccessMode, BlockVolume, MountVolume};

    fn cap(access: volume_capability::AccessType, mode: Mode) -> VolumeCapability {
        VolumeCapability {
            access_type: Some(access),
            access_mode: Some(AccessMode { mode: mode as i32 }),
        }
    }

    fn mount(fs: &str) -> volume_capability::AccessType {
        volume_capability::AccessType::Mount(MountVolume {
            fs_type: fs.into(),
            ..Default::default()
        })
    }

    #[test]
    fn mount_capabilities_of_every_mode_are_supported() {
        for mode in [
            Mode::SingleNodeWriter,
            Mode::SingleNodeReaderOnly,
            Mode::MultiNodeReaderOnly,
            Mode::MultiNodeSingleWriter,
            Mode::MultiNodeMultiWriter,
            Mode::SingleNodeSingleWriter,
            Mode::SingleNodeMultiWriter,
        ] {
            assert_eq!(unsupported(&cap(mount(""), mode)), None, "{mode:?}");
        }
    }

    #[test]
    fn block_and_foreign_filesystems_are_not() {
        let block = volume_capability::AccessType::Block(BlockVolume {});
        assert!(unsupported(&cap(block, Mode::SingleNodeWriter)).is_some());
        assert!(unsupported(&cap(mount("ext4"), Mode::SingleNodeWriter)).is_some());
        assert!(unsupported(&cap(mount(""), Mode::Unknown)).is_some());
    }
}
