//! Volume and snapshot ids.
//!
//! Ids are self-describing and versioned, so DeleteVolume, ControllerPublishVolume and the
//! node need no lookup table: `vol1:<backend>:<name>` and `snap1:<backend>:<name>`. Both parts
//! are [`Name`]s, which cannot contain ':', so parsing is unambiguous and an id can never carry
//! a path.

use std::{fmt, str::FromStr};

use crate::name::{Name, NameError};

const VOLUME_PREFIX: &str = "vol1";
const SNAPSHOT_PREFIX: &str = "snap1";

/// The handle of a static PersistentVolume (an existing export the driver did not create, its
/// server and share in the volume attributes) starts with this: `static:<anything>`.
pub const STATIC_VOLUME_PREFIX: &str = "static:";

/// Whether `id` names a static volume: the controller has nothing to grant for it (access is
/// the existing export's own), so publishing it succeeds without a backend.
pub fn is_static_volume(id: &str) -> bool {
    id.strip_prefix(STATIC_VOLUME_PREFIX)
        .is_some_and(|rest| !rest.is_empty())
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdError {
    #[error("id is empty")]
    Empty,
    #[error("id {id:?} is not of the form {prefix}:<backend>:<name>")]
    Malformed { id: String, prefix: &'static str },
    #[error("id {id:?} has an invalid {part}: {source}")]
    BadPart {
        id: String,
        part: &'static str,
        source: NameError,
    },
}

/// Identifies a volume: which backend holds it and the export's name there.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct VolumeId {
    pub backend: Name,
    pub name: Name,
}

/// Identifies a snapshot: which backend holds it and the snapshot's name there.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct SnapshotId {
    pub backend: Name,
    pub name: Name,
}

fn parse_parts(raw: &str, prefix: &'static str) -> Result<(Name, Name), IdError> {
    if raw.is_empty() {
        return Err(IdError::Empty);
    }
    let malformed = || IdError::Malformed {
        id: raw.chars().take(160).collect(),
        prefix,
    };
    let mut parts = raw.splitn(3, ':');
    let (Some(p), Some(backend), Some(name)) = (parts.next(), parts.next(), parts.next()) else {
        return Err(malformed());
    };
    if p != prefix {
        return Err(malformed());
    }
    let part = |part: &'static str, value: &str| {
        Name::parse(value).map_err(|source| IdError::BadPart {
            id: raw.chars().take(160).collect(),
            part,
            source,
        })
    };
    Ok((part("backend", backend)?, part("name", name)?))
}

impl VolumeId {
    pub fn new(backend: Name, name: Name) -> Self {
        Self { backend, name }
    }
}

impl SnapshotId {
    pub fn new(backend: Name, name: Name) -> Self {
        Self { backend, name }
    }
}

impl FromStr for VolumeId {
    type Err = IdError;
    fn from_str(raw: &str) -> Result<Self, IdError> {
        let (backend, name) = parse_parts(raw, VOLUME_PREFIX)?;
        Ok(Self { backend, name })
    }
}

impl FromStr for SnapshotId {
    type Err = IdError;
    fn from_str(raw: &str) -> Result<Self, IdError> {
        let (backend, name) = parse_parts(raw, SNAPSHOT_PREFIX)?;
        Ok(Self { backend, name })
    }
}

impl fmt::Display for VolumeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{VOLUME_PREFIX}:{}:{}", self.backend, self.name)
    }
}

impl fmt::Display for SnapshotId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{SNAPSHOT_PREFIX}:{}:{}", self.backend, self.name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn name(s: &str) -> Name {
        Name::parse(s).unwrap()
    }

    #[test]
    fn volume_ids_round_trip() {
        let id = VolumeId::new(name("ha1"), name("pvc-1234"));
        assert_eq!(id.to_string(), "vol1:ha1:pvc-1234");
        assert_eq!(id.to_string().parse::<VolumeId>().unwrap(), id);
    }

    #[test]
    fn snapshot_ids_are_not_volume_ids() {
        let snap = SnapshotId::new(name("ha1"), name("snap-1")).to_string();
        assert!(snap.parse::<VolumeId>().is_err());
        assert!(snap.parse::<SnapshotId>().is_ok());
    }

    #[test]
    fn garbled_ids_are_rejected() {
        for bad in [
            "",
            "vol1",
            "vol1:ha1",
            "vol2:ha1:x",
            "vol1::x",
            "vol1:ha1:",
            "vol1:ha1:../../etc",
            "vol1:ha1:a:b",
            "vol1:ha/1:x",
            "some-random-id",
        ] {
            assert!(bad.parse::<VolumeId>().is_err(), "{bad:?} must be rejected");
        }
    }
}
