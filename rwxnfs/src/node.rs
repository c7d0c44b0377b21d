//! `rwxnfs node`.

use std::{future::Future, sync::Arc, time::Duration};

use anyhow::Context;
use rwxnfs_model::DriverName;
use rwxnfs_node::{
    NfsClientCheck, NodeConfig, NodeService, RegistrationService,
    tls::{Tlshd, identity::IdentityCopy},
};
use rwxnfs_server::{Endpoint, IdentityService, Readiness};
use tokio::sync::oneshot;

use crate::cli::{CsiArgs, NodeArgs};

/// How often the node's TLS identity is compared with what the host's tlshd has.
const IDENTITY_PERIOD: Duration = Duration::from_secs(30);

/// How long the kubelet may take to register the driver before that is logged as a warning.
/// Only logged: liveness does not wait for the kubelet.
const REGISTRATION_PATIENCE: Duration = Duration::from_secs(60);

pub(crate) async fn run(args: NodeArgs) -> anyhow::Result<()> {
    let service =
        service(&args.node_id)?.with_handshake(Arc::new(Tlshd::new(args.tlshd_config.clone())));
    let (router, readiness) = plugin(service, &args.csi)?;
    if let (Some(from), Some(to)) = (&args.tls_identity_from, &args.tls_identity_to) {
        let copy = IdentityCopy {
            from: from.clone(),
            to: to.clone(),
        };
        tokio::spawn(keep_identity(copy));
    }
    let registration = match &args.registration_socket {
        Some(socket) => Some((socket.clone(), registration_endpoint(&args)?)),
        None => None,
    };
    args.csi.start_metrics().await?;
    args.health.start(readiness, &args.endpoint).await?;
    // The kubelet calls NodeGetInfo on the CSI socket as soon as it registers the driver, so
    // the registration socket appears only once the CSI socket listens.
    let (listening, csi_listens) = oneshot::channel::<()>();
    let registration = registration.map(|(socket, csi_endpoint)| {
        tokio::spawn(serve_registration(
            socket,
            csi_endpoint,
            args.csi.clone(),
            csi_listens,
            rwxnfs_server::termination_signal(),
        ))
    });
    rwxnfs_server::serve(
        router,
        &args.endpoint,
        rwxnfs_server::termination_signal(),
        args.csi.shutdown_grace,
        move || {
            let _ = listening.send(());
        },
    )
    .await?;
    if let Some(task) = registration {
        task.await.context("the registration server failed")??;
    }
    Ok(())
}

/// Keeps the host's copy of the node's TLS identity up to date, for as long as the plugin runs.
/// A failure is logged and tried again: claims without TLS do not need it, and TLS claims are
/// refused at NodeStageVolume with the reason while it is missing.
async fn keep_identity(copy: IdentityCopy) {
    loop {
        let round = copy.clone();
        match tokio::task::spawn_blocking(move || round.sync()).await {
            Ok(Ok(written)) if written.is_empty() => {}
            Ok(Ok(written)) => tracing::info!(
                to = %copy.to.display(),
                files = ?written,
                "copied the node's TLS identity for tlshd"
            ),
            Ok(Err(e)) => tracing::warn!(error = %e, "cannot copy the node's TLS identity"),
            Err(e) => tracing::warn!(error = %e, "the TLS identity copy failed"),
        }
        tokio::time::sleep(IDENTITY_PERIOD).await;
    }
}

/// Where the kubelet is told the CSI endpoint is: the flag, else the endpoint's own path.
fn registration_endpoint(args: &NodeArgs) -> anyhow::Result<String> {
    if let Some(path) = &args.kubelet_registration_path {
        return Ok(path.display().to_string());
    }
    match &args.endpoint {
        Endpoint::Unix(path) => Ok(path.display().to_string()),
        Endpoint::Tcp(_) => anyhow::bail!(
            "--registration-socket needs --kubelet-registration-path: the kubelet reaches CSI \
             drivers on a unix socket, and --endpoint is TCP"
        ),
    }
}

/// Serves the kubelet's plugin registration API on `socket`, from when `csi_listens` until
/// `shutdown`; warns when the kubelet has not registered the driver within
/// [`REGISTRATION_PATIENCE`].
async fn serve_registration(
    socket: std::path::PathBuf,
    csi_endpoint: String,
    csi: CsiArgs,
    csi_listens: oneshot::Receiver<()>,
    shutdown: impl Future<Output = ()>,
) -> anyhow::Result<()> {
    if csi_listens.await.is_err() {
        // The CSI server ended before it listened, and says why itself.
        return Ok(());
    }
    let service = RegistrationService::new(csi.driver_name.clone(), csi_endpoint);
    let mut verdicts = service.verdicts();
    let watched = socket.clone();
    tokio::spawn(async move {
        let verdict =
            tokio::time::timeout(REGISTRATION_PATIENCE, verdicts.wait_for(Option::is_some));
        if verdict.await.is_err() {
            tracing::warn!(
                socket = %watched.display(),
                "the kubelet has not registered the driver after {REGISTRATION_PATIENCE:?}: it \
                 watches its plugins_registry directory (/var/lib/kubelet/plugins_registry unless \
                 its --root-dir moves it), which must be where this socket is on the host; see the \
                 kubelet's log. Liveness does not depend on it"
            );
        }
    });
    let router = rwxnfs_server::builder().add_service(service.into_server());
    // The kubelet's plugin watcher sends the socket's path as the authority, which tonic
    // would refuse.
    rwxnfs_server::serve_rewriting_authority(
        router,
        &Endpoint::Unix(socket),
        shutdown,
        csi.shutdown_grace,
        || {},
    )
    .await?;
    Ok(())
}

/// The node endpoint's services (Identity, Node and reflection), and the readiness its Probe
/// reports, which /healthz answers with too.
pub(crate) fn plugin(
    service: NodeService,
    csi: &CsiArgs,
) -> anyhow::Result<(tonic::transport::server::Router, Arc<dyn Readiness>)> {
    let name = DriverName::parse(&csi.driver_name)?;
    let readiness: Arc<dyn Readiness> = Arc::new(NfsClientCheck::default());
    let identity = IdentityService::new(name, crate::version(), vec![], readiness.clone());
    let router = rwxnfs_server::builder()
        .add_service(identity.into_server())
        .add_service(service.into_server())
        .add_service(rwxnfs_server::reflection().context("cannot build gRPC reflection")?);
    Ok((router, readiness))
}

/// The node endpoint's services, for a process that serves no /healthz of its own.
#[cfg(feature = "lab")]
pub(crate) fn router(
    node_id: &str,
    csi: &CsiArgs,
) -> anyhow::Result<tonic::transport::server::Router> {
    Ok(plugin(service(node_id)?, csi)?.0)
}

/// The Node service for `node_id` (the Kubernetes node name).
pub(crate) fn service(node_id: &str) -> anyhow::Result<NodeService> {
    anyhow::ensure!(
        !node_id.trim().is_empty(),
        "the node id is empty: pass --node-id or set NODE_NAME to the Kubernetes node name"
    );
    Ok(NodeService::new(NodeConfig {
        node_id: node_id.to_owned(),
    }))
}
