//! The export agent: creates, resizes, snapshots, grants, revokes and deletes per-claim
//! exports on the local NFS server, and keeps the export table on the replicated filesystem so
//! that the next NFS host can take over with the same export ids.
//!
//! - [`exporter`]: making exports active on the NFS server (NFS-Ganesha over D-Bus, kernel
//!   nfsd through exportfs), behind one trait.
//! - [`fs`]: what happens on the export root's filesystem: volume directories, quotas,
//!   snapshots and clones, deletion, all kept beneath the root.

pub mod exporter;
pub mod fs;
