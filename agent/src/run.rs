//! Running the agent: its endpoints (TCP with mutual TLS, unix sockets for local use), the
//! reconcile at start, and the trash purger.

use std::{path::Path, sync::Arc, time::Duration};

use rwxnfs_server::{Endpoint, Shutdown, tls::ServerTls};

use crate::{
    config::AgentConfig,
    exporter::Exporter,
    exports::{ExportAgent, Settings},
    fs::VolumeFs,
    guard::{Counts, Guard, Policy},
    service::AgentService,
    table::Table,
};

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error(
        "the agent would listen on {endpoint} without TLS; configure `tls` (ca, cert, key) or, for \
         development only, start it with --insecure-tcp"
    )]
    TcpWithoutTls { endpoint: String },
    #[error(transparent)]
    Tls(#[from] rwxnfs_server::tls::TlsError),
    #[error(transparent)]
    Table(#[from] crate::table::TableError),
    #[error(transparent)]
    Serve(#[from] rwxnfs_server::ServeError),
    #[error("gRPC reflection: {0}")]
    Reflection(#[from] tonic_reflection::server::Error),
}

/// The settings a configuration file implies.
pub fn settings(config: &AgentConfig) -> Settings {
    Settings {
        default_size: config.defaults.size_bytes,
        default_squash: config.defaults.squash,
        default_uid: config.defaults.uid,
        default_gid: config.defaults.gid,
        default_mode: config.default_mode(),
        default_on_delete: config.defaults.on_delete,
        allowed_clients: config.allowed_clients.clone(),
        server_addresses: config.server_addresses.clone(),
    }
}

/// Opens the table and builds the agent; starts the purger and a reconcile that retries until
/// the NFS server answers.
pub fn start(
    config: &AgentConfig,
    fs: Arc<dyn VolumeFs>,
    exporter: Arc<dyn Exporter>,
) -> Result<Arc<ExportAgent>, RunError> {
    let table = Table::open(&config.state_dir)?;
    // Kept in memory from here on, so reads go on being answered if the state directory's
    // filesystem fails. An unreadable record is not fatal here: reconcile reports it.
    if let Err(e) = table.load() {
        tracing::warn!(error = %e, "the export table could not be read whole; reading it from disk until it can");
    }
    let agent = Arc::new(ExportAgent::new(settings(config), table, fs, exporter));
    agent.spawn_purger();
    spawn_image_writer(&agent);
    let reconciling = agent.clone();
    tokio::spawn(async move {
        let mut delay = Duration::from_secs(1);
        loop {
            match reconciling.reconcile().await {
                Ok(report) => {
                    crate::notify::notify(&format!(
                        "READY=1\nSTATUS=reconciled: {} exports active",
                        report.activated.len()
                    ));
                    break;
                }
                Err(e) => {
                    crate::notify::notify(&format!("STATUS=reconcile failed, retrying: {e}"));
                    tracing::warn!(error = %e, retry_in_s = delay.as_secs(), "reconcile failed; retrying");
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(Duration::from_secs(30));
                }
            }
        }
    });
    Ok(agent)
}

/// How often the table's images are brought up to date when the table has changed. A start
/// reads the records written since the last image from their files, one by one.
const IMAGE_EVERY: Duration = Duration::from_secs(15);

/// Brings the table's images up to date every [`IMAGE_EVERY`] (the first time after one
/// period, so it does not compete with the reconcile at start).
fn spawn_image_writer(agent: &ExportAgent) -> tokio::task::JoinHandle<()> {
    let table = agent.table.clone();
    tokio::spawn(async move {
        let start = tokio::time::Instant::now() + IMAGE_EVERY;
        let mut every = tokio::time::interval_at(start, IMAGE_EVERY);
        every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            every.tick().await;
            write_images(&table).await;
        }
    })
}

/// Brings the table's images up to date now; the agent calls it when it stops, so the next
/// start (a switch-over to the other host) reads one file per directory.
pub async fn write_images_now(agent: &ExportAgent) {
    write_images(&agent.table).await;
}

async fn write_images(table: &Table) {
    let table = table.clone();
    match tokio::task::spawn_blocking(move || table.write_images()).await {
        Ok(Ok(true)) => tracing::debug!("the export table's images were brought up to date"),
        Ok(Ok(false)) => {}
        Ok(Err(e)) => {
            tracing::warn!(error = %e, "the export table's images could not be written; the next start reads every record file that changed since")
        }
        Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
        Err(_) => {}
    }
}

/// Serves the agent on every configured endpoint until `shutdown`.
pub async fn serve(
    agent: Arc<ExportAgent>,
    config: &AgentConfig,
    insecure_tcp: bool,
    shutdown: Shutdown,
    grace: Duration,
) -> Result<(), RunError> {
    // One endpoint failing stops the others: a half-up agent is worse than a stopped one.
    let (stop_all, inner) = Shutdown::manual();
    let stop_all = Arc::new(stop_all);
    let on_outer = stop_all.clone();
    tokio::spawn(async move {
        shutdown.wait().await;
        let _ = on_outer.send(true);
    });
    let mut servers = tokio::task::JoinSet::new();
    let limits = config.limits.limits();
    let counts = Counts::default();
    for raw in &config.listen {
        let endpoint: Endpoint = raw
            .parse()
            .map_err(|e: rwxnfs_server::EndpointError| RunError::Serve(e.into()))?;
        let mut tls = None;
        let mut policy = Policy::local(limits, &counts);
        if matches!(endpoint, Endpoint::Tcp(_)) {
            match (&config.tls, insecure_tcp) {
                (Some(files), _) => {
                    tls = Some(ServerTls::load(files.files())?);
                    policy = Policy::tls(files.allowed_client_names.clone(), limits, &counts);
                }
                (None, true) => {
                    tracing::warn!(%endpoint, "serving TCP without TLS (--insecure-tcp): for development only");
                }
                (None, false) => {
                    return Err(RunError::TcpWithoutTls {
                        endpoint: endpoint.to_string(),
                    });
                }
            }
        }
        let router = rwxnfs_server::builder()
            .add_service(AgentService::new(agent.clone()).into_guarded_server(policy.clone()))
            .add_service(Guard::new(rwxnfs_server::reflection()?, policy));
        let stop = inner.clone();
        servers.spawn(async move {
            match tls {
                Some(tls) => {
                    rwxnfs_server::serve_tls(router, &endpoint, tls, stop.wait(), grace, || {})
                        .await
                }
                None => rwxnfs_server::serve(router, &endpoint, stop.wait(), grace, || {}).await,
            }
        });
    }
    let mut first_error = None;
    while let Some(joined) = servers.join_next().await {
        match joined {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                tracing::error!(error = %e, "an agent endpoint failed; stopping the others");
                let _ = stop_all.send(true);
                first_error.get_or_insert(RunError::Serve(e));
            }
            Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
            Err(_) => {}
        }
    }
    first_error.map_or(Ok(()), Err)
}

/// The exports file of the `exportfs` mode, and of agents before the `etab` mode.
const LEGACY_EXPORTS_FILE: &str = "/etc/exports.d/rwxnfs.exports";

/// In the `etab` mode, an exports file an earlier agent (or the `exportfs` mode) left, if it is
/// the agent's: every `exportfs -a` would check its exports one by one again, and an
/// `exportfs -r` would bring back what it says, stale.
pub fn remove_legacy_exports_file(file: &Path) {
    let ours = std::fs::read_to_string(file)
        .is_ok_and(|text| text.starts_with(crate::exporter::kernel::EXPORTS_FILE_HEADER));
    if ours {
        match std::fs::remove_file(file) {
            Ok(()) => {
                tracing::info!(file = %file.display(), "removed the exports file of the exportfs mode: the agent writes nfs-utils' table itself")
            }
            Err(e) => {
                tracing::warn!(file = %file.display(), error = %e, "cannot remove the exports file of the exportfs mode")
            }
        }
    }
}

/// The NFS server the configuration names.
pub fn exporter(config: &AgentConfig) -> Result<Arc<dyn Exporter>, crate::exporter::ExportError> {
    use crate::{
        config::{KernelApplySetting, NfsServer},
        exporter::{
            ganesha::{GaneshaExporter, GaneshaSettings},
            kernel::{KernelExporter, ProcessRunner},
        },
    };
    Ok(match &config.nfs_server {
        NfsServer::Ganesha {
            dbus_address,
            protocols,
            dbus_name_prefix,
        } => Arc::new(GaneshaExporter::new(GaneshaSettings {
            dbus_address: dbus_address.clone(),
            name_prefix: dbus_name_prefix.clone(),
            conf_dir: config.state_dir.join("ganesha"),
            protocols: protocols.clone().unwrap_or_else(|| vec![4]),
        })?),
        NfsServer::Kernel {
            apply: KernelApplySetting::Etab,
            ..
        } => {
            remove_legacy_exports_file(Path::new(LEGACY_EXPORTS_FILE));
            Arc::new(KernelExporter::direct(
                "/var/lib/nfs/etab".into(),
                config.export_root.clone(),
                "/proc/net/rpc".into(),
            ))
        }
        NfsServer::Kernel {
            apply: KernelApplySetting::Exportfs,
            exports_file,
        } => Arc::new(
            KernelExporter::new(
                "exportfs".into(),
                exports_file
                    .clone()
                    .unwrap_or_else(|| LEGACY_EXPORTS_FILE.into()),
                // exportfs -r reads and applies every export: allow for 10,000 on a slow host.
                Arc::new(ProcessRunner {
                    timeout: Duration::from_secs(120),
                }),
            )
            .with_etab("/var/lib/nfs/etab".into()),
        ),
    })
}
