//! `rwxnfs`: one binary for every rwxnfs component.

mod agent;
mod cli;
mod controller;
// pre_exec(prctl(PR_SET_PDEATHSIG)) for the lab's child processes.
#[cfg(feature = "lab")]
#[allow(unsafe_code)]
mod dev;
mod doctor;
mod mesh;
mod node;
#[cfg(feature = "lab")]
mod walkthrough;

use clap::Parser;

use crate::cli::{Cli, Command};

/// The crate version plus the git revision it was built from, when known.
pub fn version() -> &'static str {
    match option_env!("RWXNFS_GIT_REVISION") {
        Some(rev) if !rev.is_empty() => {
            concat!(env!("CARGO_PKG_VERSION"), "+g", env!("RWXNFS_GIT_REVISION"))
        }
        _ => env!("CARGO_PKG_VERSION"),
    }
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    rwxnfs_server::logging::init(cli.log_format);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(err) => {
            eprintln!("rwxnfs: cannot start the async runtime: {err}");
            return std::process::ExitCode::FAILURE;
        }
    };
    runtime.block_on(async {
        let result = match cli.command {
            Command::Node(args) => node::run(args).await,
            #[cfg(feature = "lab")]
            Command::Dev(args) => dev::run(args).await,
            Command::Mesh(command) => mesh::run(command),
            Command::Controller(args) => controller::run(args).await,
            Command::Agent(args) => agent::run(args).await,
            Command::Tickle(args) => agent::tickle(args),
            Command::Doctor(args) => return doctor::run(args).await,
            #[cfg(feature = "lab")]
            Command::Walkthrough(args) => walkthrough::run(args).await,
        };
        match result {
            Ok(()) => std::process::ExitCode::SUCCESS,
            Err(err) => {
                eprintln!("rwxnfs: {err:#}");
                std::process::ExitCode::FAILURE
            }
        }
    })
}
