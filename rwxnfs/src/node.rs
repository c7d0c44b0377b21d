//! `rwxnfs node`.

use std::sync::Arc;

use anyhow::Context;
use rwxnfs_model::DriverName;
use rwxnfs_node::{NfsClientCheck, NodeConfig, NodeService};
use rwxnfs_server::IdentityService;

use crate::cli::{CsiArgs, NodeArgs};

pub(crate) async fn run(args: NodeArgs) -> anyhow::Result<()> {
    let router = router(&args.node_id, &args.csi)?;
    args.csi.start_metrics().await?;
    rwxnfs_server::serve(
        router,
        &args.endpoint,
        rwxnfs_server::termination_signal(),
        args.csi.shutdown_grace,
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
