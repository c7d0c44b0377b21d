//! The export agent: creates, resizes, snapshots, grants, revokes and deletes per-claim
//! exports on the local NFS server, and keeps the export table on the replicated filesystem.
//!
//! Not implemented yet: `rwxnfs agent` says so and exits non-zero.
