//! `rwxnfs node`.

use std::sync::Arc;

use anyhow::Context;
use rwxnfs_model::DriverName;
use rwxnfs_node::{NfsClientCheck, NodeConfig, NodeService, RegistrationService};
use rwxnfs_server::{Endpoint, IdentityService};

use crate::cli::{CsiArgs, NodeArgs};

pub(crate) async fn run(args: NodeArgs) -> anyhow::Result<()> {
    let router = router(&args.node_id, &args.csi)?;
    args.csi.start_metrics().await?;
    let registration = match &args.registration_socket {
        Some(socket) => Some(tokio::spawn(serve_registration(
            socket.clone(),
            registration_endpoint(&args)?,
            args.csi.clone(),
        ))),
        None => None,
    };
    rwxnfs_server::serve(
        router,
        &args.endpoint,
        rwxnfs_server::termination_signal(),
        args.csi.shutdown_grace,
        || {},
    )
    .await?;
    if let Some(task) = registration {
        task.await.context("the registration server failed")??;
    }
    Ok(())
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

/// Serves the kubelet's plugin registration API on `socket` until SIGTERM/SIGINT.
async fn serve_registration(
    socket: std::path::PathBuf,
    csi_endpoint: String,
    csi: CsiArgs,
) -> anyhow::Result<()> {
    let service = RegistrationService::new(csi.driver_name.clone(), csi_endpoint);
    let router = rwxnfs_server::builder().add_service(service.into_server());
    rwxnfs_server::serve(
        router,
        &Endpoint::Unix(socket),
        rwxnfs_server::termination_signal(),
        csi.shutdown_grace,
        || {},
    )
    .await?;
    Ok(())
}

/// The node endpoint's services: Identity, Node and reflection.
pub(crate) fn router(
    node_id: &str,
    csi: &CsiArgs,
) -> anyhow::Result<tonic::transport::server::Router> {
    let name = DriverName::parse(&csi.driver_name)?;
    let identity = IdentityService::new(
        name,
        crate::version(),
        vec![],
        Arc::new(NfsClientCheck::default()),
    );
    Ok(rwxnfs_server::builder()
        .add_service(identity.into_server())
        .add_service(service(node_id)?.into_server())
        .add_service(rwxnfs_server::reflection().context("cannot build gRPC reflection")?))
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
