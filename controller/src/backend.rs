//! Backends: where volumes live. Today the export agent on an HA NFS cluster; the trait keeps
//! the controller's logic independent of how a backend is reached.

use std::{net::IpAddr, time::Duration};

use rwxnfs_model::Name;
use rwxnfs_proto::agent::{self as pb, agent_client::AgentClient};
use tonic::{Status, transport::Channel};

use crate::{
    ControllerError,
    config::{BackendConfig, ClientTls},
};

/// The in-memory backend of the unit tests, out of the release binary.
#[cfg(any(test, feature = "test-support"))]
pub mod fake;
mod server;
mod subdir;

pub use server::ServerAddress;
pub use subdir::{SubdirBackend, SubdirError};

/// The agent API, as the controller uses it. An agent's refusal keeps the agent's code
/// ([`ControllerError::Agent`]).
#[tonic::async_trait]
pub trait Backend: Send + Sync + 'static {
    fn name(&self) -> &Name;
    /// Whether claims are directories named by the `subDir` template (the subdir backend)
    /// rather than exports named by the request.
    fn has_sub_dirs(&self) -> bool {
        false
    }
    /// The name TLS claims mount this backend by (`serverName`), if configured.
    fn server_name(&self) -> Option<&str> {
        None
    }
    /// Where nodes mount this backend's exports from. Asked on every CreateVolume, GetVolume
    /// and ListVolumes page: a backend that must ask its server keeps the answer
    /// ([`ServerAddress`]).
    async fn server_address(&self) -> Result<IpAddr, ControllerError>;
    async fn probe(&self) -> Result<pb::ProbeResponse, ControllerError>;
    async fn capacity(&self) -> Result<pb::GetCapacityResponse, ControllerError>;
    async fn create_export(
        &self,
        req: pb::CreateExportRequest,
    ) -> Result<pb::Export, ControllerError>;
    async fn delete_export(&self, name: &str) -> Result<(), ControllerError>;
    async fn expand_export(
        &self,
        name: &str,
        required: i64,
        limit: i64,
    ) -> Result<i64, ControllerError>;
    async fn grant(
        &self,
        name: &str,
        client: pb::ClientAccess,
    ) -> Result<pb::Export, ControllerError>;
    async fn revoke(&self, name: &str, client_id: &str) -> Result<(), ControllerError>;
    async fn get_export(&self, name: &str) -> Result<pb::Export, ControllerError>;
    async fn list_exports(
        &self,
        max: i32,
        token: &str,
    ) -> Result<(Vec<pb::Export>, String), ControllerError>;
    async fn create_snapshot(
        &self,
        name: &str,
        source: &str,
    ) -> Result<pb::Snapshot, ControllerError>;
    async fn delete_snapshot(&self, name: &str) -> Result<(), ControllerError>;
    async fn list_snapshots(
        &self,
        max: i32,
        token: &str,
        name: &str,
        source: &str,
    ) -> Result<(Vec<pb::Snapshot>, String), ControllerError>;
}

/// A backend reached through the export agent's gRPC API.
pub struct AgentBackend {
    name: Name,
    /// Where the agent is, as configured (for messages).
    endpoint: String,
    server: ServerAddress,
    server_name: Option<String>,
    client: AgentClient<Channel>,
    /// Every call's time limit (`timeoutSeconds`).
    timeout: Duration,
}

#[derive(Debug, thiserror::Error)]
pub enum BackendError {
    #[error("backend {backend}: {message}")]
    Setup { backend: String, message: String },
}

/// The client side of the agent's mutual TLS: the files are read now (an error here stops the
/// controller at start) and again for every new connection, so a renewed certificate or CA
/// bundle is used without a restart.
fn client_tls(
    tls: &ClientTls,
    endpoint: &str,
    backend: &str,
) -> Result<rwxnfs_server::tls::ClientTls, BackendError> {
    let host = endpoint
        .trim_start_matches("tcp://")
        .rsplit_once(':')
        .map(|(h, _)| h.trim_matches(['[', ']']).to_owned())
        .unwrap_or_default();
    let files = rwxnfs_server::tls::TlsFiles {
        ca: tls.ca.clone(),
        cert: tls.cert.clone(),
        key: tls.key.clone(),
    };
    rwxnfs_server::tls::ClientTls::load(files, tls.server_name.as_deref().unwrap_or(&host)).map_err(
        |e| BackendError::Setup {
            backend: backend.to_owned(),
            message: e.to_string(),
        },
    )
}

/// The innermost cause of a transport failure, for the message.
fn transport_cause(status: &Status) -> String {
    let mut cause: &dyn std::error::Error = status;
    while let Some(inner) = cause.source() {
        cause = inner;
    }
    cause.to_string()
}

/// The backend a configuration entry describes.
pub fn from_config(config: &BackendConfig) -> Result<std::sync::Arc<dyn Backend>, BackendError> {
    Ok(match &config.subdir {
        Some(subdir) => std::sync::Arc::new(subdir::SubdirBackend::new(
            &config.name,
            subdir,
            config.server,
        )?),
        None => std::sync::Arc::new(AgentBackend::new(config)?),
    })
}

impl AgentBackend {
    pub fn new(config: &BackendConfig) -> Result<Self, BackendError> {
        let setup = |message: String| BackendError::Setup {
            backend: config.name.clone(),
            message,
        };
        let name = Name::parse(&config.name).map_err(|e| setup(e.to_string()))?;
        let agent = config
            .agent
            .as_ref()
            .ok_or_else(|| setup("has no `agent` section".into()))?;
        let endpoint: rwxnfs_server::Endpoint = agent
            .endpoint
            .parse()
            .map_err(|e: rwxnfs_server::EndpointError| setup(e.to_string()))?;
        let tls = match &agent.tls {
            Some(tls) => Some(client_tls(tls, &agent.endpoint, &config.name)?),
            None => None,
        };
        let timeout = Duration::from_secs(agent.timeout_seconds.unwrap_or(30));
        let channel = endpoint
            .lazy_channel(tls, timeout)
            .map_err(|e| setup(e.to_string()))?;
        Ok(Self {
            name,
            endpoint: agent.endpoint.clone(),
            server: ServerAddress::new(config.server),
            server_name: config.server_name.clone(),
            client: AgentClient::new(channel),
            timeout,
        })
    }

    fn client(&self) -> AgentClient<Channel> {
        self.client.clone()
    }

    /// Makes one agent call: records its latency and outcome, and prefixes a failure's message
    /// with the backend's name (the code is kept).
    async fn call<T>(
        &self,
        method: &'static str,
        call: impl std::future::Future<Output = Result<tonic::Response<T>, Status>>,
    ) -> Result<T, ControllerError> {
        let started = std::time::Instant::now();
        let result = call.await;
        let code = result
            .as_ref()
            .map_or_else(Status::code, |_| tonic::Code::Ok);
        rwxnfs_server::metrics::record_outgoing("agent", method, code, started.elapsed());
        result.map(tonic::Response::into_inner).map_err(|s| {
            // A status the agent sent comes off the wire with no source; one with a source is
            // the client's own failure to reach it (connection refused, reset, timed out, no
            // socket), which callers must see as UNAVAILABLE so that they retry, and which
            // names where the agent was looked for.
            //
            // The channel's own time limit ends a call with CANCELLED ("Timeout expired"),
            // though the caller cancelled nothing: it is reported as DEADLINE_EXCEEDED.
            let err = if s.code() == tonic::Code::Cancelled
                && s.message() == tonic::TimeoutExpired(()).to_string()
            {
                ControllerError::AgentTimeout {
                    backend: self.name.clone(),
                    endpoint: self.endpoint.clone(),
                    limit: self.timeout,
                }
            } else if std::error::Error::source(&s).is_some()
                && matches!(s.code(), tonic::Code::Unknown | tonic::Code::Unavailable)
            {
                ControllerError::Unreachable {
                    backend: self.name.clone(),
                    endpoint: self.endpoint.clone(),
                    cause: transport_cause(&s),
                }
            } else {
                ControllerError::Agent {
                    backend: self.name.clone(),
                    code: s.code(),
                    message: s.message().to_owned(),
                }
            };
            self.server.failed(&err);
            err
        })
    }

    /// An agent answer that must carry an object.
    fn present<T>(&self, object: Option<T>, method: &'static str) -> Result<T, ControllerError> {
        object.ok_or_else(|| ControllerError::EmptyAnswer {
            backend: self.name.clone(),
            method,
        })
    }
}

#[tonic::async_trait]
impl Backend for AgentBackend {
    fn name(&self) -> &Name {
        &self.name
    }

    fn server_name(&self) -> Option<&str> {
        self.server_name.as_deref()
    }

    async fn server_address(&self) -> Result<IpAddr, ControllerError> {
        self.server.get(&self.name, self.probe()).await
    }

    async fn probe(&self) -> Result<pb::ProbeResponse, ControllerError> {
        self.call("Probe", self.client().probe(pb::ProbeRequest {}))
            .await
    }

    async fn capacity(&self) -> Result<pb::GetCapacityResponse, ControllerError> {
        self.call(
            "GetCapacity",
            self.client().get_capacity(pb::GetCapacityRequest {}),
        )
        .await
    }

    async fn create_export(
        &self,
        req: pb::CreateExportRequest,
    ) -> Result<pb::Export, ControllerError> {
        let r = self
            .call("CreateExport", self.client().create_export(req))
            .await?;
        self.present(r.export, "CreateExport")
    }

    async fn delete_export(&self, name: &str) -> Result<(), ControllerError> {
        let req = pb::DeleteExportRequest {
            name: name.to_owned(),
            policy: 0,
        };
        self.call("DeleteExport", self.client().delete_export(req))
            .await
            .map(|_| ())
    }

    async fn expand_export(
        &self,
        name: &str,
        required: i64,
        limit: i64,
    ) -> Result<i64, ControllerError> {
        let req = pb::ExpandExportRequest {
            name: name.to_owned(),
            required_bytes: required,
            limit_bytes: limit,
        };
        let r = self
            .call("ExpandExport", self.client().expand_export(req))
            .await?;
        Ok(r.capacity_bytes)
    }

    async fn grant(
        &self,
        name: &str,
        client: pb::ClientAccess,
    ) -> Result<pb::Export, ControllerError> {
        let req = pb::GrantAccessRequest {
            name: name.to_owned(),
            client: Some(client),
        };
        let r = self
            .call("GrantAccess", self.client().grant_access(req))
            .await?;
        self.present(r.export, "GrantAccess")
    }

    async fn revoke(&self, name: &str, client_id: &str) -> Result<(), ControllerError> {
        let req = pb::RevokeAccessRequest {
            name: name.to_owned(),
            client_id: client_id.to_owned(),
        };
        self.call("RevokeAccess", self.client().revoke_access(req))
            .await
            .map(|_| ())
    }

    async fn get_export(&self, name: &str) -> Result<pb::Export, ControllerError> {
        let req = pb::GetExportRequest {
            name: name.to_owned(),
        };
        let r = self
            .call("GetExport", self.client().get_export(req))
            .await?;
        self.present(r.export, "GetExport")
    }

    async fn list_exports(
        &self,
        max: i32,
        token: &str,
    ) -> Result<(Vec<pb::Export>, String), ControllerError> {
        let req = pb::ListExportsRequest {
            max_entries: max,
            starting_token: token.to_owned(),
        };
        let r = self
            .call("ListExports", self.client().list_exports(req))
            .await?;
        Ok((r.exports, r.next_token))
    }

    async fn create_snapshot(
        &self,
        name: &str,
        source: &str,
    ) -> Result<pb::Snapshot, ControllerError> {
        let req = pb::CreateSnapshotRequest {
            name: name.to_owned(),
            source_export: source.to_owned(),
        };
        let r = self
            .call("CreateSnapshot", self.client().create_snapshot(req))
            .await?;
        self.present(r.snapshot, "CreateSnapshot")
    }

    async fn delete_snapshot(&self, name: &str) -> Result<(), ControllerError> {
        let req = pb::DeleteSnapshotRequest {
            name: name.to_owned(),
        };
        self.call("DeleteSnapshot", self.client().delete_snapshot(req))
            .await
            .map(|_| ())
    }

    async fn list_snapshots(
        &self,
        max: i32,
        token: &str,
        name: &str,
        source: &str,
    ) -> Result<(Vec<pb::Snapshot>, String), ControllerError> {
        let req = pb::ListSnapshotsRequest {
            max_entries: max,
            starting_token: token.to_owned(),
            name: name.to_owned(),
            source_export: source.to_owned(),
        };
        let r = self
            .call("ListSnapshots", self.client().list_snapshots(req))
            .await?;
        Ok((r.snapshots, r.next_token))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use crate::config::ControllerConfig;

    fn backend(endpoint: &str) -> AgentBackend {
        let text = format!(
            "backends:\n  - name: ha\n    agent:\n      endpoint: {endpoint}\n      timeoutSeconds: 2\n"
        );
        let config =
            ControllerConfig::parse(&text, std::path::Path::new("controller.yaml")).unwrap();
        AgentBackend::new(&config.backends[0]).unwrap()
    }

    #[tokio::test]
    async fn an_agent_that_cannot_be_reached_is_unavailable() {
        let dir = tempfile::tempdir().unwrap();
        let backend = backend(&format!("unix://{}/absent.sock", dir.path().display()));
        let err = backend.probe().await.unwrap_err();
        assert_eq!(err.code(), tonic::Code::Unavailable, "{err:?}");
        assert!(
            err.message().starts_with(&format!(
                "backend ha: the agent at unix://{}/absent.sock cannot be reached (",
                dir.path().display()
            )),
            "{}",
            err.message()
        );
    }

    /// An agent that takes the connection and never answers (a host stalled on its disk, or
    /// traffic dropped on the way) ends the call at the backend's time limit.
    #[tokio::test]
    async fn an_agent_that_does_not_answer_in_time_is_deadline_exceeded() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("agent.sock");
        let listener = tokio::net::UnixListener::bind(&path).unwrap();
        let held = tokio::spawn(async move {
            let mut open = Vec::new();
            while let Ok((stream, _)) = listener.accept().await {
                open.push(stream);
            }
        });
        let backend = backend(&format!("unix://{}", path.display()));
        let started = std::time::Instant::now();
        let err = backend.probe().await.unwrap_err();
        held.abort();
        assert_eq!(err.code(), tonic::Code::DeadlineExceeded, "{err:?}");
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "{:?}",
            started.elapsed()
        );
        assert_eq!(
            err.message(),
            format!(
                "backend ha: the agent at unix://{} did not answer within 2s; retry",
                path.display()
            )
        );
    }

    /// What a controller sees right after a failover: its connection to the address led to a
    /// host that is gone, and the peer now there drops it.
    #[tokio::test]
    async fn a_connection_that_breaks_is_unavailable_so_callers_retry() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("agent.sock");
        let listener = tokio::net::UnixListener::bind(&path).unwrap();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                drop(stream);
            }
        });
        let backend = backend(&format!("unix://{}", path.display()));
        let err = backend.probe().await.unwrap_err();
        assert_eq!(err.code(), tonic::Code::Unavailable, "{err:?}");
        assert!(
            err.message().starts_with(&format!(
                "backend ha: the agent at unix://{} cannot be reached",
                path.display()
            )),
            "{}",
            err.message()
        );
    }
}
