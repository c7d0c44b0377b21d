//! `rwxnfs agent`.

use std::sync::Arc;

use rwxnfs_agent::{config::AgentConfig, fs, run};
use rwxnfs_server::Shutdown;

use crate::cli::AgentArgs;

pub(crate) async fn run(args: AgentArgs) -> anyhow::Result<()> {
    let config = AgentConfig::load(&args.config)?;
    // NFS-Ganesha exports a btrfs subvolume only when it is mounted on its own.
    let mount_subvolumes = matches!(
        config.nfs_server,
        rwxnfs_agent::config::NfsServer::Ganesha { .. }
    );
    let root = Arc::from(fs::open_root(
        &config.export_root,
        config.quota.requested(),
        mount_subvolumes,
    )?);
    let exporter = run::exporter(&config)?;
    let agent = start(&config, root, exporter)?;
    let served = run::serve(
        agent.clone(),
        &config,
        args.insecure_tcp,
        Shutdown::on_signal(),
        args.shutdown_grace,
    )
    .await;
    run::write_images_now(&agent).await;
    Ok(served?)
}

/// Builds the agent and says loudly what it does not enforce.
pub(crate) fn start(
    config: &AgentConfig,
    root: Arc<dyn fs::VolumeFs>,
    exporter: Arc<dyn rwxnfs_agent::exporter::Exporter>,
) -> anyhow::Result<Arc<rwxnfs_agent::ExportAgent>> {
    if !root.quota_enforced() {
        tracing::warn!(
            export_root = %config.export_root.display(),
            "quotas are not enforced on this export root: capacities are reported, not enforced"
        );
    }
    tracing::info!(
        export_root = %config.export_root.display(),
        state_dir = %config.state_dir.display(),
        nfs_server = exporter.kind(),
        quota = root.quota_kind().as_str(),
        "agent starting"
    );
    Ok(run::start(config, root, exporter)?)
}
