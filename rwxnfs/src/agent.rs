//! `rwxnfs agent`.

use std::sync::Arc;

use rwxnfs_agent::{config::AgentConfig, fs, run};
use rwxnfs_server::Shutdown;

use crate::cli::{AgentArgs, TickleArgs};

pub(crate) async fn run(args: AgentArgs) -> anyhow::Result<()> {
    let config = AgentConfig::load(&args.config.config)?;
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
    // For `rwxnfs tickle` on the host that takes over from this one.
    rwxnfs_agent::tickle::spawn_recorder(config.state_dir.clone());
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

/// `rwxnfs tickle`: every recorded connection tickled from this host. A connection that
/// could not be tickled is a warning, not a failure: the address is up either way, and that
/// client reconnects after its own backoff.
pub(crate) fn tickle(args: TickleArgs) -> anyhow::Result<()> {
    use rwxnfs_agent::tickle;
    let config = AgentConfig::load(&args.config.config)?;
    let path = config.state_dir.join(tickle::FILE);
    let text = match std::fs::read_to_string(&path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            tracing::info!(file = %path.display(), "no NFS connections recorded; nothing to tickle");
            return Ok(());
        }
        Err(e) => anyhow::bail!("cannot read {}: {e}", path.display()),
    };
    let connections = tickle::parse(&text);
    let started = std::time::Instant::now();
    let done = tickle::tickle(&connections);
    for (c, error) in &done.failed {
        tracing::warn!(local = %c.local, remote = %c.remote, %error, "could not tickle a client");
    }
    tracing::info!(
        recorded = connections.len(),
        tickled = done.sent,
        not_on_this_host = done.not_here,
        failed = done.failed.len(),
        took_ms = started.elapsed().as_millis() as u64,
        "tickled the NFS clients' connections"
    );
    Ok(())
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
