//! The volume and export model shared by every rwxnfs component.
//!
//! Everything here is pure: no I/O, no async. Names and ids that arrive over the wire are
//! checked here before any other code sees them.

mod driver_name;
mod id;
pub mod mesh;
pub mod mount_options;
pub mod mountinfo;
mod name;
pub mod params;
pub mod volume_context;

pub use driver_name::{DriverName, DriverNameError};
pub use id::{IdError, STATIC_VOLUME_PREFIX, SnapshotId, VolumeId, is_static_volume};
pub use mount_options::{MountOptionError, MountOptions};
pub use name::{Name, NameError};
pub use params::{NfsVersion, ParamError, Params, Transport, render_sub_dir};

/// The driver name used when none is configured.
pub const DEFAULT_DRIVER_NAME: &str = "rwxnfs.csi.io";
