//! The CSI controller plugin: turns CSI Controller calls into export-agent calls. It holds no
//! state of its own; the agent's export table is the truth.
//!
//! Not implemented yet: `rwxnfs controller` says so and exits non-zero.
