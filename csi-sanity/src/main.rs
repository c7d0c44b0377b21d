//! `csi-sanity`: checks a CSI driver against the behaviours upstream csi-sanity checks.
//!
//! Prints one line per spec and closes with `N passed, N failed, N skipped`. Exits 1 when any
//! spec failed, 2 when the run could not start.

use std::{path::PathBuf, process::ExitCode, time::Duration};

use clap::Parser;
use csi_sanity::{
    Config,
    config::{parse_parameters, parse_size},
};
use rwxnfs_server::Endpoint;

#[derive(Parser, Debug)]
#[command(
    name = "csi-sanity",
    about = "Checks a CSI driver against the csi-sanity behaviours"
)]
struct Args {
    /// The CSI endpoint (node, and controller unless --controller-endpoint is given).
    #[arg(long)]
    endpoint: Endpoint,
    /// A separate controller endpoint.
    #[arg(long)]
    controller_endpoint: Option<Endpoint>,
    /// Directory under which each spec makes its staging paths.
    #[arg(long, default_value = "/tmp/csi-sanity/staging")]
    staging_dir: PathBuf,
    /// Directory under which each spec makes its target paths.
    #[arg(long, default_value = "/tmp/csi-sanity/target")]
    target_dir: PathBuf,
    /// A YAML file of CreateVolume parameters (a flat `key: value` mapping).
    #[arg(long)]
    params: Option<PathBuf>,
    /// Size of the volumes the specs create.
    #[arg(long, default_value = "10Gi", value_parser = parse_size)]
    test_volume_size: i64,
    /// Size the expansion specs grow volumes to.
    #[arg(long, default_value = "20Gi", value_parser = parse_size)]
    test_volume_expand_size: i64,
    /// Run only specs whose name contains this (repeatable).
    #[arg(long)]
    focus: Vec<String>,
    /// Skip specs whose name contains this (repeatable).
    #[arg(long)]
    skip: Vec<String>,
    /// Upper bound for one spec, in seconds.
    #[arg(long, default_value_t = 120)]
    spec_timeout: u64,

    /// The node plugin runs on another machine (a VM): the staging and target directories are
    /// its paths, so none are created here.
    #[arg(long)]
    remote_node: bool,
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = Args::parse();
    let parameters = match args.params.as_ref().map(|p| {
        std::fs::read_to_string(p)
            .map_err(|e| format!("cannot read {}: {e}", p.display()))
            .and_then(|text| parse_parameters(&text).map_err(|e| format!("{}: {e}", p.display())))
    }) {
        None => Default::default(),
        Some(Ok(map)) => map,
        Some(Err(e)) => {
            eprintln!("csi-sanity: {e}");
            return ExitCode::from(2);
        }
    };
    let config = Config {
        controller_endpoint: args.controller_endpoint,
        staging_dir: args.staging_dir,
        target_dir: args.target_dir,
        parameters,
        test_volume_size: args.test_volume_size,
        test_volume_expand_size: args.test_volume_expand_size,
        focus: args.focus,
        skip: args.skip,
        spec_timeout: Duration::from_secs(args.spec_timeout),
        local_node: !args.remote_node,
        ..Config::new(args.endpoint)
    };
    match csi_sanity::run(config, &mut std::io::stdout()).await {
        Ok(report) if report.failed() == 0 => ExitCode::SUCCESS,
        Ok(_) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("csi-sanity: {e:#}");
            ExitCode::from(2)
        }
    }
}
