//! Volume and snapshot ids, as every CSI call after CreateVolume hands them back.

use std::path::Path;

use rwxnfs_model::{SnapshotId, VolumeId, is_static_volume};

use crate::{beneath, one_component};

/// Input: one id, tried as a volume id and as a snapshot id.
pub fn ids(data: &[u8]) {
    let Ok(raw) = std::str::from_utf8(data) else {
        return;
    };
    let root = Path::new("/exports");
    if let Ok(id) = raw.parse::<VolumeId>() {
        // An id is its own canonical spelling, and its parts name entries beneath a root.
        assert_eq!(id.to_string(), raw);
        for part in [id.backend.as_str(), id.name.as_str()] {
            assert!(one_component(part), "{raw}");
            assert!(beneath(root, &root.join(part)), "{raw}");
        }
        assert!(!is_static_volume(raw));
    }
    if let Ok(id) = raw.parse::<SnapshotId>() {
        assert_eq!(id.to_string(), raw);
        for part in [id.backend.as_str(), id.name.as_str()] {
            assert!(one_component(part), "{raw}");
            assert!(beneath(root, &root.join(part)), "{raw}");
        }
    }
    let _ = is_static_volume(raw);
}
