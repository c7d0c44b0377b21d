//! The gRPC face of the agent: decode the request, call [`ExportAgent`], encode the answer.
//! Errors become gRPC codes in exactly one place ([`AgentError`]'s conversion); the server's
//! [`rpc`] layer times and counts every call and logs each failed one with its code and the
//! export or snapshot the handler named with [`rpc::volume_id`].

use std::sync::Arc;

use rwxnfs_model::Transport;
use rwxnfs_proto::agent::{
    self as pb, AccessMode, DeletePolicy,
    agent_server::{Agent, AgentServer},
};
use rwxnfs_server::rpc;
use tonic::{Request, Response, Status};

use crate::{
    access::GrantRequest,
    error::{AgentError, blocking},
    exports::{CreateRequest, ExportAgent, OptionsRequest, SourceRequest},
    table::{Access, ExportRecord, OnDelete, SnapshotRecord, SourceRecord, Squash},
};

pub struct AgentService {
    agent: Arc<ExportAgent>,
}

impl AgentService {
    pub fn new(agent: Arc<ExportAgent>) -> Self {
        Self { agent }
    }

    /// The service with the [`rpc`] layer, which times, counts and logs its calls.
    pub fn into_server(self) -> rpc::Rpc<AgentServer<Self>> {
        rpc::wrap(AgentServer::new(self))
    }

    /// The service behind `policy` ([`crate::guard`]): its refusals are counted and logged by
    /// the [`rpc`] layer like any other failed call.
    pub fn into_guarded_server(
        self,
        policy: std::sync::Arc<crate::guard::Policy>,
    ) -> rpc::Rpc<crate::guard::Guard<AgentServer<Self>>> {
        // The guard refuses larger messages first, with RESOURCE_EXHAUSTED; tonic's own bound
        // (OUT_OF_RANGE, 4 MiB by default) must not come before it.
        let max = policy.limits().max_message_bytes;
        rpc::wrap(crate::guard::Guard::new(
            AgentServer::new(self).max_decoding_message_size(max),
            policy,
        ))
    }
}

type Reply<T> = Result<Response<T>, Status>;

/// One RPC's answer, its error turned into a gRPC status (the [`rpc`] layer logs and counts it).
fn reply<T>(result: Result<T, AgentError>) -> Reply<T> {
    result.map(Response::new).map_err(Status::from)
}

fn timestamp(unix_ms: u64) -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: (unix_ms / 1000) as i64,
        nanos: ((unix_ms % 1000) * 1_000_000) as i32,
    }
}

fn squash_from(raw: i32) -> Result<Option<Squash>, AgentError> {
    match pb::Squash::try_from(raw) {
        Ok(pb::Squash::Unspecified) => Ok(None),
        Ok(pb::Squash::None) => Ok(Some(Squash::None)),
        Ok(pb::Squash::Root) => Ok(Some(Squash::Root)),
        Ok(pb::Squash::All) => Ok(Some(Squash::All)),
        Err(_) => Err(AgentError::InvalidArgument(format!(
            "options.squash: unknown value {raw}"
        ))),
    }
}

fn squash_to(squash: Squash) -> pb::Squash {
    match squash {
        Squash::None => pb::Squash::None,
        Squash::Root => pb::Squash::Root,
        Squash::All => pb::Squash::All,
    }
}

fn transport_from(raw: i32) -> Result<Transport, AgentError> {
    match pb::Transport::try_from(raw) {
        Ok(pb::Transport::None) => Ok(Transport::None),
        Ok(pb::Transport::Tls) => Ok(Transport::Tls),
        Ok(pb::Transport::Mtls) => Ok(Transport::Mtls),
        Err(_) => Err(AgentError::InvalidArgument(format!(
            "options.transport: unknown value {raw}"
        ))),
    }
}

fn transport_to(transport: Transport) -> pb::Transport {
    match transport {
        Transport::None => pb::Transport::None,
        Transport::Tls => pb::Transport::Tls,
        Transport::Mtls => pb::Transport::Mtls,
    }
}

fn policy_from(raw: i32, field: &str) -> Result<Option<OnDelete>, AgentError> {
    match DeletePolicy::try_from(raw) {
        Ok(DeletePolicy::Unspecified) => Ok(None),
        Ok(DeletePolicy::Delete) => Ok(Some(OnDelete::Delete)),
        Ok(DeletePolicy::Retain) => Ok(Some(OnDelete::Retain)),
        Ok(DeletePolicy::Archive) => Ok(Some(OnDelete::Archive)),
        Err(_) => Err(AgentError::InvalidArgument(format!(
            "{field}: unknown value {raw}"
        ))),
    }
}

fn policy_to(policy: OnDelete) -> DeletePolicy {
    match policy {
        OnDelete::Delete => DeletePolicy::Delete,
        OnDelete::Retain => DeletePolicy::Retain,
        OnDelete::Archive => DeletePolicy::Archive,
    }
}

fn access_from(raw: i32) -> Result<Option<Access>, AgentError> {
    match AccessMode::try_from(raw) {
        Ok(AccessMode::Unspecified) => Ok(None),
        Ok(AccessMode::ReadWrite) => Ok(Some(Access::Rw)),
        Ok(AccessMode::ReadOnly) => Ok(Some(Access::Ro)),
        Err(_) => Err(AgentError::InvalidArgument(format!(
            "client.mode: unknown value {raw}"
        ))),
    }
}

fn access_to(access: Access) -> AccessMode {
    match access {
        Access::Rw => AccessMode::ReadWrite,
        Access::Ro => AccessMode::ReadOnly,
    }
}

fn options_from(options: Option<pb::ExportOptions>) -> Result<OptionsRequest, AgentError> {
    let Some(o) = options else {
        return Ok(OptionsRequest::default());
    };
    Ok(OptionsRequest {
        squash: squash_from(o.squash)?,
        uid: o.uid,
        gid: o.gid,
        mode: o.mode,
        allowed_clients: o.allowed_clients,
        on_delete: policy_from(o.on_delete, "options.on_delete")?,
        transport: transport_from(o.transport)?,
    })
}

fn source_from(source: Option<pb::ContentSource>) -> Option<SourceRequest> {
    match source.and_then(|s| s.source) {
        Some(pb::content_source::Source::SnapshotName(n)) => Some(SourceRequest::Snapshot(n)),
        Some(pb::content_source::Source::ExportName(n)) => Some(SourceRequest::Export(n)),
        None => None,
    }
}

/// The proto's `used_bytes`: it has no "unknown" but says "0 when unknown".
fn used_bytes_to(used: Option<u64>) -> i64 {
    used.map_or(0, |bytes| bytes.min(i64::MAX as u64) as i64)
}

impl AgentService {
    /// Runs a call that changes something in a task of its own. A caller that goes away (a
    /// killed controller, a deadline) drops its RPC, never the change half-way, which would
    /// leave a `creating` or `deleting` record and no export until the next reconcile; its
    /// retry finds the change made.
    async fn detached<T, Fut>(
        &self,
        call: impl FnOnce(Arc<ExportAgent>) -> Fut,
    ) -> Result<T, AgentError>
    where
        T: Send + 'static,
        Fut: std::future::Future<Output = Result<T, AgentError>> + Send + 'static,
    {
        tokio::spawn(call(self.agent.clone()))
            .await
            .map_err(|e| AgentError::Internal(format!("a call's task failed: {e}")))?
    }

    /// The records as answered, each with its usage (read in one blocking task).
    async fn exports_to(&self, records: &[ExportRecord]) -> Vec<pb::Export> {
        let usage = self.agent.usage(records).await;
        records
            .iter()
            .zip(usage)
            .map(|(r, used)| self.export_to(r, used))
            .collect()
    }

    async fn one_export_to(&self, record: &ExportRecord) -> pb::Export {
        let mut exports = self.exports_to(std::slice::from_ref(record)).await;
        exports
            .pop()
            .unwrap_or_else(|| self.export_to(record, None))
    }

    fn export_to(&self, r: &ExportRecord, used: Option<u64>) -> pb::Export {
        self.export_with(r, used, None)
    }

    /// The record as answered; with `only`, its clients limited to that client id.
    fn export_with(&self, r: &ExportRecord, used: Option<u64>, only: Option<&str>) -> pb::Export {
        pb::Export {
            name: r.name.to_string(),
            export_id: r.export_id,
            path: self.agent.fs().root().join(&r.path).display().to_string(),
            pseudo_path: r.pseudo_path.clone(),
            capacity_bytes: r.capacity_bytes as i64,
            quota_enforced: r.quota_enforced,
            clients: r
                .clients
                .iter()
                .filter(|c| only.is_none_or(|id| c.client_id == id))
                .map(|c| pb::ClientAccess {
                    client_id: c.client_id.clone(),
                    addresses: c.addresses.iter().map(|a| a.to_string()).collect(),
                    mode: access_to(c.access) as i32,
                })
                .collect(),
            options: Some(pb::ExportOptions {
                squash: squash_to(r.options.squash) as i32,
                uid: Some(r.options.uid),
                gid: Some(r.options.gid),
                mode: Some(r.options.mode),
                allowed_clients: r
                    .options
                    .allowed_clients
                    .iter()
                    .map(|n| n.to_string())
                    .collect(),
                on_delete: policy_to(r.options.on_delete) as i32,
                transport: transport_to(r.options.transport) as i32,
            }),
            source: r.source.as_ref().map(|s| pb::ContentSource {
                source: Some(match s {
                    SourceRecord::Snapshot(n) => {
                        pb::content_source::Source::SnapshotName(n.clone())
                    }
                    SourceRecord::Export(n) => pb::content_source::Source::ExportName(n.clone()),
                }),
            }),
            created: Some(timestamp(r.created_unix_ms)),
            used_bytes: used_bytes_to(used),
        }
    }
}

fn snapshot_to(s: &SnapshotRecord) -> pb::Snapshot {
    pb::Snapshot {
        name: s.name.to_string(),
        source_export: s.source_export.clone(),
        size_bytes: s.size_bytes as i64,
        created: Some(timestamp(s.created_unix_ms)),
        ready_to_use: true,
    }
}

#[tonic::async_trait]
impl Agent for AgentService {
    async fn probe(&self, _request: Request<pb::ProbeRequest>) -> Reply<pb::ProbeResponse> {
        let agent = &self.agent;
        let fs = agent.fs().clone();
        let root_ok = blocking(move || fs.space()).await;
        let state_ok = agent.check_state().await;
        let reason = match (agent.exporter().probe().await, root_ok, state_ok) {
            (Ok(()), Ok(_), Ok(())) => String::new(),
            (Err(e), _, _) => format!("NFS server ({}): {e}", agent.exporter().kind()),
            (_, Err(e), _) => format!("export root: {e}"),
            (_, _, Err(e)) => e.to_string(),
        };
        if !reason.is_empty() {
            tracing::warn!(%reason, "Probe: not ready");
        }
        Ok(Response::new(pb::ProbeResponse {
            ready: reason.is_empty(),
            reason,
            nfs_server: agent.exporter().kind().to_owned(),
            quota: agent.fs().quota_kind().as_str().to_owned(),
            quota_enforced: agent.fs().quota_enforced(),
            version: env!("CARGO_PKG_VERSION").to_owned(),
            server_addresses: agent
                .settings()
                .server_addresses
                .iter()
                .map(|a| a.to_string())
                .collect(),
        }))
    }

    async fn get_capacity(
        &self,
        _request: Request<pb::GetCapacityRequest>,
    ) -> Reply<pb::GetCapacityResponse> {
        let fs = self.agent.fs().clone();
        let result = blocking(move || fs.space())
            .await
            .map(|space| pb::GetCapacityResponse {
                available_bytes: space.available.min(i64::MAX as u64) as i64,
                total_bytes: space.total.min(i64::MAX as u64) as i64,
                quota_enforced: self.agent.fs().quota_enforced(),
                maximum_export_bytes: 0,
                granularity_bytes: self.agent.fs().granularity() as i64,
            });
        reply(result)
    }

    async fn create_export(
        &self,
        request: Request<pb::CreateExportRequest>,
    ) -> Reply<pb::CreateExportResponse> {
        let r = request.into_inner();
        rpc::volume_id(&r.name);
        let result = async {
            let req = CreateRequest {
                name: r.name,
                required_bytes: r.required_bytes,
                limit_bytes: r.limit_bytes,
                options: options_from(r.options)?,
                source: source_from(r.source),
            };
            let record = self
                .detached(|a| async move { a.create_export(req).await })
                .await?;
            Ok(pb::CreateExportResponse {
                export: Some(self.one_export_to(&record).await),
            })
        }
        .await;
        reply(result)
    }

    async fn delete_export(
        &self,
        request: Request<pb::DeleteExportRequest>,
    ) -> Reply<pb::DeleteExportResponse> {
        let r = request.into_inner();
        rpc::volume_id(&r.name);
        let result = async {
            let policy = policy_from(r.policy, "policy")?;
            let name = r.name;
            self.detached(|a| async move { a.delete_export(&name, policy).await })
                .await?;
            Ok(pb::DeleteExportResponse {})
        }
        .await;
        reply(result)
    }

    async fn expand_export(
        &self,
        request: Request<pb::ExpandExportRequest>,
    ) -> Reply<pb::ExpandExportResponse> {
        let r = request.into_inner();
        rpc::volume_id(&r.name);
        let (name, required, limit) = (r.name, r.required_bytes, r.limit_bytes);
        let result = self
            .detached(|a| async move { a.expand_export(&name, required, limit).await })
            .await
            .map(|c| pb::ExpandExportResponse {
                capacity_bytes: c as i64,
            });
        reply(result)
    }

    async fn grant_access(
        &self,
        request: Request<pb::GrantAccessRequest>,
    ) -> Reply<pb::GrantAccessResponse> {
        let r = request.into_inner();
        rpc::volume_id(&r.name);
        let result = async {
            let client = r
                .client
                .ok_or_else(|| AgentError::InvalidArgument("client: missing".into()))?;
            let req = GrantRequest {
                name: r.name,
                client_id: client.client_id,
                addresses: client.addresses,
                access: access_from(client.mode)?,
            };
            let client_id = req.client_id.clone();
            let record = self
                .detached(|a| async move { a.grant_access(req).await })
                .await?;
            // The answer names only the client granted, without usage: with one claim on 500
            // nodes, 500 grants answering every client would send 250,000 of them.
            let export = self.export_with(&record, None, Some(&client_id));
            Ok(pb::GrantAccessResponse {
                export: Some(export),
            })
        }
        .await;
        reply(result)
    }

    async fn revoke_access(
        &self,
        request: Request<pb::RevokeAccessRequest>,
    ) -> Reply<pb::RevokeAccessResponse> {
        let r = request.into_inner();
        rpc::volume_id(&r.name);
        let (name, client) = (r.name, r.client_id);
        let result = self
            .detached(|a| async move { a.revoke_access(&name, &client).await })
            .await
            .map(|()| pb::RevokeAccessResponse {});
        reply(result)
    }

    async fn get_export(
        &self,
        request: Request<pb::GetExportRequest>,
    ) -> Reply<pb::GetExportResponse> {
        let r = request.into_inner();
        rpc::volume_id(&r.name);
        let result = match self.agent.get_export(&r.name).await {
            Ok(record) => Ok(pb::GetExportResponse {
                export: Some(self.one_export_to(&record).await),
            }),
            Err(e) => Err(e),
        };
        reply(result)
    }

    async fn list_exports(
        &self,
        request: Request<pb::ListExportsRequest>,
    ) -> Reply<pb::ListExportsResponse> {
        let r = request.into_inner();
        let result = match self
            .agent
            .list_exports(r.max_entries, &r.starting_token)
            .await
        {
            Ok((records, next_token)) => Ok(pb::ListExportsResponse {
                exports: self.exports_to(&records).await,
                next_token,
            }),
            Err(e) => Err(e),
        };
        reply(result)
    }

    async fn create_snapshot(
        &self,
        request: Request<pb::CreateSnapshotRequest>,
    ) -> Reply<pb::CreateSnapshotResponse> {
        let r = request.into_inner();
        rpc::volume_id(&r.name);
        let (name, source) = (r.name, r.source_export);
        let result = self
            .detached(|a| async move { a.create_snapshot(&name, &source).await })
            .await
            .map(|s| pb::CreateSnapshotResponse {
                snapshot: Some(snapshot_to(&s)),
            });
        reply(result)
    }

    async fn delete_snapshot(
        &self,
        request: Request<pb::DeleteSnapshotRequest>,
    ) -> Reply<pb::DeleteSnapshotResponse> {
        let r = request.into_inner();
        rpc::volume_id(&r.name);
        let name = r.name;
        let result = self
            .detached(|a| async move { a.delete_snapshot(&name).await })
            .await
            .map(|()| pb::DeleteSnapshotResponse {});
        reply(result)
    }

    async fn list_snapshots(
        &self,
        request: Request<pb::ListSnapshotsRequest>,
    ) -> Reply<pb::ListSnapshotsResponse> {
        let r = request.into_inner();
        rpc::volume_id(&r.name);
        let result = self
            .agent
            .list_snapshots(r.max_entries, &r.starting_token, &r.name, &r.source_export)
            .await
            .map(|(snapshots, next_token)| pb::ListSnapshotsResponse {
                snapshots: snapshots.iter().map(snapshot_to).collect(),
                next_token,
            });
        reply(result)
    }

    async fn reconcile(
        &self,
        _request: Request<pb::ReconcileRequest>,
    ) -> Reply<pb::ReconcileResponse> {
        let result = self
            .agent
            .reconcile()
            .await
            .map(|report| pb::ReconcileResponse {
                activated: report.activated,
                unknown: report.unknown,
                repaired: report.repaired,
            });
        reply(result)
    }
}
