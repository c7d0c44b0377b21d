//! rwxnfs's CSI conformance runner.
//!
//! It checks the behaviours upstream csi-sanity checks, under the same names and grouping
//! (the list of 96 is in [`specs::all`]), against any CSI endpoint. A spec whose capability
//! the driver does not advertise is reported as not applicable, never as passed; a spec whose
//! check is not written yet says so and counts as skipped.

pub mod config;
pub mod context;
pub mod report;
pub mod resources;
pub mod specs;
pub mod verdict;

mod controller;
mod group_controller;
mod identity;
mod node;
mod snapshot;

pub use config::Config;
pub use report::{Outcome, Report};

/// Runs every selected spec against the configured endpoints.
pub async fn run(config: Config, out: &mut dyn std::io::Write) -> anyhow::Result<Report> {
    let ctx = context::Ctx::connect(config).await?;
    Ok(report::run_all(&ctx, out).await)
}
