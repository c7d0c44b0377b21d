//! The bodies of the fuzz targets: one `pub fn <target>(data: &[u8])` per parser that takes
//! input from outside the process. The cargo-fuzz targets in `fuzz/` call these, and
//! `tests/corpus.rs` replays every file of `fuzz/corpus/<target>/` through them in the normal
//! test run, so a crash the fuzzer once found stays fixed.
//!
//! Each body asserts the target's invariants with `assert!`: a parser may refuse its input
//! with an error, but it never panics, and whatever path it produces stays beneath the root
//! it is meant for. While fuzzing, memory is bounded by libFuzzer's `-rss_limit_mb` and by
//! the fuzz targets' allocator, which refuses any single allocation above 256 MiB.

#[cfg(feature = "agent")]
mod agent_api;
#[cfg(feature = "agent")]
mod agent_config;
#[cfg(feature = "controller")]
mod controller_config;
#[cfg(feature = "doctor")]
mod doctor_manifests;
#[cfg(feature = "agent")]
mod exportfs;
mod ids;
mod mount_options;
mod mountinfo;
mod storage_class;

#[cfg(feature = "agent")]
pub use agent_api::agent_api;
#[cfg(feature = "agent")]
pub use agent_config::agent_config;
#[cfg(feature = "controller")]
pub use controller_config::controller_config;
#[cfg(feature = "doctor")]
pub use doctor_manifests::doctor_manifests;
#[cfg(feature = "agent")]
pub use exportfs::exportfs;
pub use ids::ids;
pub use mount_options::mount_options;
pub use mountinfo::mountinfo;
pub use storage_class::storage_class;

use std::path::{Component, Path};

/// Whether `name` joined to a root names exactly one entry directly beneath it.
fn one_component(name: &str) -> bool {
    let mut parts = Path::new(name).components();
    matches!(parts.next(), Some(Component::Normal(n)) if n == name) && parts.next().is_none()
}

/// Whether `path` lies beneath `root` without a `..`, `.` or a second root on the way.
fn beneath(root: &Path, path: &Path) -> bool {
    path.strip_prefix(root)
        .is_ok_and(|rest| rest.components().all(|c| matches!(c, Component::Normal(_))))
}
