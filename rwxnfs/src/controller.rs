//! `rwxnfs controller`.

use std::{sync::Arc, task::Poll};

use anyhow::Context;
use rwxnfs_controller::{
    Backend, ControllerConfig, ControllerError, ControllerService, NodeResolver, StaticNodes,
    nodes::KubeNodes,
};
use rwxnfs_doctor::selfcheck;
use rwxnfs_model::{DriverName, mesh::NfsProtocol};
use rwxnfs_proto::csi::plugin_capability;
use rwxnfs_server::{
    IdentityService, Readiness,
    identity::{controller_service, expansion_capability},
};

use crate::cli::{ControllerArgs, CsiArgs};

pub(crate) async fn run(args: ControllerArgs) -> anyhow::Result<()> {
    let config = ControllerConfig::load(&args.config)?;
    let nodes: Arc<dyn NodeResolver> = if config.nodes.is_empty() {
        let kube = KubeNodes::from_environment().await.context(
            "the configuration has no `nodes` map, so node addresses come from the Kubernetes API, \
             but no in-cluster service account or kubeconfig was found",
        )?;
        tracing::info!("node addresses come from Kubernetes Node objects");
        Arc::new(kube)
    } else {
        Arc::new(StaticNodes(config.nodes.clone()))
    };
    start_self_check(&config, &args.config);
    let (router, readiness) = plugin(&config, nodes, &args.csi, args.node_id.as_deref())?;
    args.csi.start_metrics().await?;
    args.health.start(readiness, &args.endpoint).await?;
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

/// In a cluster (POD_NAME and POD_NAMESPACE from the downward API), checks this pod's
/// service-mesh settings against the configuration's traffic, in the background: findings are
/// logged with their fix and recorded as an Event; an unreachable API is logged, never fatal.
fn start_self_check(config: &ControllerConfig, path: &std::path::Path) {
    let (Ok(pod), Ok(namespace)) = (std::env::var("POD_NAME"), std::env::var("POD_NAMESPACE"))
    else {
        tracing::debug!("POD_NAME or POD_NAMESPACE unset: not in a cluster, no mesh self-check");
        return;
    };
    let (traffic, unresolved) = rwxnfs_doctor::traffic::from_config(config, NfsProtocol::V41Plus);
    for note in unresolved {
        tracing::info!("self-check: {note}");
    }
    let me = selfcheck::Identity {
        pod,
        namespace,
        traffic,
        config: path.display().to_string(),
    };
    tokio::spawn(async move {
        let client = match rwxnfs_doctor::live::client(None).await {
            Ok(client) => client,
            Err(e) => {
                tracing::warn!(error = %e, "self-check skipped: no Kubernetes API client");
                return;
            }
        };
        if let Err(e) = selfcheck::run(&client, &me).await {
            tracing::warn!(error = %e, "self-check incomplete");
        }
    });
}

/// Ready while at least one backend's agent answers and is ready; each one that is not is
/// named in the reason. A backend that does not enforce capacity is said so, once.
struct BackendsReady(
    Vec<Arc<dyn Backend>>,
    std::sync::Mutex<std::collections::BTreeSet<String>>,
);

/// A backend's answer to Probe; `None` for one still being asked when another said ready.
type ProbeAnswer = Option<Result<rwxnfs_proto::agent::ProbeResponse, ControllerError>>;

impl BackendsReady {
    fn new(backends: Vec<Arc<dyn Backend>>) -> Self {
        Self(backends, Default::default())
    }

    /// Asks every backend at once, in configuration order, until one says ready or all have
    /// answered: a hung agent neither delays the others' answers nor, once one is ready, the
    /// verdict (its call is dropped, which cancels it).
    async fn probe_all(&self) -> Vec<ProbeAnswer> {
        let mut calls: Vec<_> = self.0.iter().map(|b| Some(b.probe())).collect();
        let mut answers: Vec<ProbeAnswer> = self.0.iter().map(|_| None).collect();
        std::future::poll_fn(|cx| {
            for (call, answer) in calls.iter_mut().zip(&mut answers) {
                if let Some(pending) = call
                    && let Poll::Ready(a) = pending.as_mut().poll(cx)
                {
                    *answer = Some(a);
                    *call = None;
                }
            }
            let ready = answers
                .iter()
                .flatten()
                .any(|a| matches!(a, Ok(p) if p.ready));
            if ready || calls.iter().all(Option::is_none) {
                Poll::Ready(())
            } else {
                Poll::Pending
            }
        })
        .await;
        answers
    }
}

#[tonic::async_trait]
impl Readiness for BackendsReady {
    async fn check(&self) -> Result<(), String> {
        let mut ready = false;
        let mut problems = Vec::new();
        for (backend, answer) in self.0.iter().zip(self.probe_all().await) {
            match answer {
                Some(Ok(p)) if p.ready => {
                    ready = true;
                    let told = &mut *self.1.lock().unwrap_or_else(|e| e.into_inner());
                    if !p.quota_enforced && told.insert(backend.name().to_string()) {
                        tracing::warn!(
                            backend = %backend.name(),
                            quota = %p.quota,
                            "capacity is not enforced on this backend: a claim can grow past its size"
                        );
                    }
                }
                Some(Ok(p)) => problems.push(format!("backend {}: {}", backend.name(), p.reason)),
                // A backend's errors name it already.
                Some(Err(e)) => problems.push(e.to_string()),
                None => problems.push(format!(
                    "backend {}: no answer yet when another backend was ready",
                    backend.name()
                )),
            }
        }
        if !ready {
            return Err(problems.join("; "));
        }
        if !problems.is_empty() {
            tracing::warn!(
                problems = problems.join("; "),
                "some backends are not ready"
            );
        }
        Ok(())
    }
}

/// Ready while every part of a single endpoint is: the backends and, with the Node service
/// on the same endpoint, the kernel's NFS client.
struct AllReady(Vec<Arc<dyn Readiness>>);

#[tonic::async_trait]
impl Readiness for AllReady {
    async fn check(&self) -> Result<(), String> {
        let mut problems = Vec::new();
        for part in &self.0 {
            if let Err(reason) = part.check().await {
                problems.push(reason);
            }
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(problems.join("; "))
        }
    }
}

/// The controller endpoint's services, for a process that serves no /healthz of its own.
#[cfg(feature = "lab")]
pub(crate) fn router(
    config: &ControllerConfig,
    nodes: Arc<dyn NodeResolver>,
    csi: &CsiArgs,
    node_id: Option<&str>,
) -> anyhow::Result<tonic::transport::server::Router> {
    Ok(plugin(config, nodes, csi, node_id)?.0)
}

/// The controller endpoint's services (Identity, Controller and reflection, and with `node_id`
/// the Node service of that node as well: one endpoint for the whole plugin), and the
/// readiness its Probe reports, which /healthz answers with too.
pub(crate) fn plugin(
    config: &ControllerConfig,
    nodes: Arc<dyn NodeResolver>,
    csi: &CsiArgs,
    node_id: Option<&str>,
) -> anyhow::Result<(tonic::transport::server::Router, Arc<dyn Readiness>)> {
    let name = DriverName::parse(&csi.driver_name)?;
    let mut backends: Vec<Arc<dyn Backend>> = Vec::new();
    for backend in &config.backends {
        backends.push(rwxnfs_controller::backend::from_config(backend)?);
    }
    let controller = ControllerService::new(backends.clone(), nodes);
    let mut readiness: Vec<Arc<dyn Readiness>> = vec![Arc::new(BackendsReady::new(backends))];
    let node = node_id.map(crate::node::service).transpose()?;
    if node.is_some() {
        readiness.push(Arc::new(rwxnfs_node::NfsClientCheck::default()));
    }
    let readiness: Arc<dyn Readiness> = Arc::new(AllReady(readiness));
    let identity = IdentityService::new(
        name,
        crate::version(),
        vec![
            controller_service(),
            expansion_capability(plugin_capability::volume_expansion::Type::Online),
        ],
        readiness.clone(),
    );
    let router = rwxnfs_server::builder()
        .add_service(identity.into_server())
        .add_service(controller.into_server())
        .add_optional_service(node.map(|n| n.into_server()))
        .add_service(rwxnfs_server::reflection().context("cannot build gRPC reflection")?);
    Ok((router, readiness))
}
