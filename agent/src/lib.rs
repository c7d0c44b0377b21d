//! The export agent: creates, resizes, snapshots, grants, revokes and deletes per-claim
//! exports on the local NFS server, and keeps the export table on the replicated filesystem so
//! that the next NFS host can take over with the same export ids.
//!
//! - [`exports`], [`access`], [`snapshots`], [`reconcile`]: the operations, each reading
//!   validate → lock → act, on [`exports::ExportAgent`].
//! - [`table`]: the durable export table.
//! - [`exporter`]: making exports active on the NFS server (NFS-Ganesha over D-Bus, kernel
//!   nfsd through exportfs), behind one trait.
//! - [`fs`]: what happens on the export root's filesystem: volume directories, quotas,
//!   snapshots and clones, deletion, all kept beneath the root.
//! - [`usage`]: what each export uses, as its quota counts it.
//! - [`service`]: the gRPC service; [`config`]: the configuration file; [`guard`]: who may
//!   call it (the client certificate's names) and how much at once.

pub mod access;
pub mod config;
pub mod error;
pub mod exporter;
pub mod exports;
pub mod fs;
pub mod group_commit;
pub mod guard;
pub mod locks;
pub mod notify;
pub mod reconcile;
pub mod run;
pub mod service;
pub mod snapshots;
pub mod table;
pub mod tickle;
pub mod usage;

pub use error::AgentError;
pub use exports::{ExportAgent, Settings};
pub use service::AgentService;
