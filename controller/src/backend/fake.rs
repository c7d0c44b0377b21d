//! An in-memory backend for the controller's unit tests: it keeps exports in a map, records
//! every call, can be told to fail the next call with a status (answered as the agent would,
//! its code kept and the backend named), and can hold CreateExport (or any one call, by its
//! name in `calls`) until released, to have a call in flight.

use std::{
    collections::BTreeMap,
    net::IpAddr,
    sync::{Arc, Mutex},
};

use rwxnfs_model::Name;
use rwxnfs_proto::agent as pb;
use tokio::sync::Semaphore;
use tonic::{Code, Status};

use super::{Backend, ServerAddress};
use crate::ControllerError;

/// The address a fake without a configured `server` reports in its Probe.
pub const PROBED_SERVER: [u8; 4] = [192, 0, 2, 7];

pub struct FakeBackend {
    name: Name,
    exports: Mutex<BTreeMap<String, pb::Export>>,
    /// Every call, as "Method name".
    pub calls: Mutex<Vec<String>>,
    /// Returned (once) by the next call instead of its answer.
    pub fail_next: Mutex<Option<Status>>,
    /// When set, CreateExport waits for a permit first.
    pub gate: Mutex<Option<Arc<Semaphore>>>,
    /// Calls, named as in `calls` ("GrantAccess pvc-1 node-a"), that wait for a permit of
    /// their own first (after they are recorded).
    gates: Mutex<BTreeMap<String, Arc<Semaphore>>>,
    server: ServerAddress,
    /// `serverName`, for TLS claims.
    server_name: Option<String>,
}

impl FakeBackend {
    /// A backend with `server` configured (192.0.2.1): its Probe is never asked for it.
    pub fn new(name: &str) -> Self {
        Self::with_server(name, Some(IpAddr::from([192, 0, 2, 1])))
    }

    /// A backend with no `server` configured: the address comes from its Probe
    /// ([`PROBED_SERVER`]).
    pub fn without_server(name: &str) -> Self {
        Self::with_server(name, None)
    }

    fn with_server(name: &str, server: Option<IpAddr>) -> Self {
        Self {
            name: Name::parse(name).expect("a valid backend name"),
            exports: Mutex::default(),
            calls: Mutex::default(),
            fail_next: Mutex::default(),
            gate: Mutex::default(),
            gates: Mutex::default(),
            server: ServerAddress::new(server),
            server_name: None,
        }
    }

    /// The same backend with `serverName` configured.
    pub fn with_server_name(mut self, name: &str) -> Self {
        self.server_name = Some(name.to_owned());
        self
    }

    /// Holds every following `call` (as named in `calls`) until the returned semaphore is
    /// given a permit per call to let through.
    pub fn hold(&self, call: &str) -> Arc<Semaphore> {
        let gate = Arc::new(Semaphore::new(0));
        self.gates
            .lock()
            .expect("gates")
            .insert(call.to_owned(), gate.clone());
        gate
    }

    pub fn calls(&self) -> Vec<String> {
        self.calls.lock().expect("calls").clone()
    }

    /// An answer of the agent this fake plays.
    fn agent(&self, code: Code, message: String) -> ControllerError {
        ControllerError::Agent {
            backend: self.name.clone(),
            code,
            message,
        }
    }

    async fn enter(&self, call: String) -> Result<(), ControllerError> {
        let gate = self.gates.lock().expect("gates").get(&call).cloned();
        self.calls.lock().expect("calls").push(call);
        if let Some(gate) = gate {
            gate.acquire()
                .await
                .map_err(|_| self.agent(Code::Aborted, "gate closed".into()))?
                .forget();
        }
        match self.fail_next.lock().expect("fail_next").take() {
            Some(status) => {
                let err = self.agent(status.code(), status.message().to_owned());
                self.server.failed(&err);
                Err(err)
            }
            None => Ok(()),
        }
    }

    fn get(&self, name: &str) -> Result<pb::Export, ControllerError> {
        self.exports
            .lock()
            .expect("exports")
            .get(name)
            .cloned()
            .ok_or_else(|| self.agent(Code::NotFound, format!("export {name} does not exist")))
    }
}

#[tonic::async_trait]
impl Backend for FakeBackend {
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
        self.enter("Probe".into()).await?;
        Ok(pb::ProbeResponse {
            ready: true,
            quota_enforced: true,
            server_addresses: vec![IpAddr::from(PROBED_SERVER).to_string()],
            ..Default::default()
        })
    }

    async fn capacity(&self) -> Result<pb::GetCapacityResponse, ControllerError> {
        self.enter("GetCapacity".into()).await?;
        Ok(pb::GetCapacityResponse {
            available_bytes: 10 << 30,
            total_bytes: 20 << 30,
            quota_enforced: true,
            ..Default::default()
        })
    }

    async fn create_export(
        &self,
        req: pb::CreateExportRequest,
    ) -> Result<pb::Export, ControllerError> {
        self.enter(format!("CreateExport {}", req.name)).await?;
        let gate = self.gate.lock().expect("gate").clone();
        if let Some(gate) = gate {
            let _permit = gate
                .acquire()
                .await
                .map_err(|_| self.agent(Code::Aborted, "gate closed".into()))?;
        }
        let mut exports = self.exports.lock().expect("exports");
        if let Some(existing) = exports.get(&req.name) {
            if existing.capacity_bytes < req.required_bytes {
                return Err(self.agent(
                    Code::AlreadyExists,
                    format!(
                        "export {} exists with {} bytes",
                        req.name, existing.capacity_bytes
                    ),
                ));
            }
            return Ok(existing.clone());
        }
        let export = pb::Export {
            name: req.name.clone(),
            export_id: 100 + exports.len() as u32,
            pseudo_path: format!("/{}", req.name),
            capacity_bytes: req.required_bytes.max(1 << 30),
            quota_enforced: true,
            ..Default::default()
        };
        exports.insert(req.name, export.clone());
        Ok(export)
    }

    async fn delete_export(&self, name: &str) -> Result<(), ControllerError> {
        self.enter(format!("DeleteExport {name}")).await?;
        self.exports.lock().expect("exports").remove(name);
        Ok(())
    }

    async fn expand_export(
        &self,
        name: &str,
        required: i64,
        _limit: i64,
    ) -> Result<i64, ControllerError> {
        self.enter(format!("ExpandExport {name}")).await?;
        let mut exports = self.exports.lock().expect("exports");
        let export = exports
            .get_mut(name)
            .ok_or_else(|| self.agent(Code::NotFound, format!("export {name} does not exist")))?;
        export.capacity_bytes = export.capacity_bytes.max(required);
        Ok(export.capacity_bytes)
    }

    async fn grant(
        &self,
        name: &str,
        client: pb::ClientAccess,
    ) -> Result<pb::Export, ControllerError> {
        self.enter(format!("GrantAccess {name} {}", client.client_id))
            .await?;
        self.get(name)
    }

    async fn revoke(&self, name: &str, client_id: &str) -> Result<(), ControllerError> {
        self.enter(format!("RevokeAccess {name} {client_id}"))
            .await?;
        Ok(())
    }

    async fn get_export(&self, name: &str) -> Result<pb::Export, ControllerError> {
        self.enter(format!("GetExport {name}")).await?;
        self.get(name)
    }

    async fn list_exports(
        &self,
        _max: i32,
        _token: &str,
    ) -> Result<(Vec<pb::Export>, String), ControllerError> {
        self.enter("ListExports".into()).await?;
        let exports = self.exports.lock().expect("exports");
        Ok((exports.values().cloned().collect(), String::new()))
    }

    async fn create_snapshot(
        &self,
        name: &str,
        source: &str,
    ) -> Result<pb::Snapshot, ControllerError> {
        self.enter(format!("CreateSnapshot {name} {source}"))
            .await?;
        self.get(source)?;
        Ok(pb::Snapshot {
            name: name.into(),
            source_export: source.into(),
            ready_to_use: true,
            created: Some(prost_types::Timestamp::default()),
            ..Default::default()
        })
    }

    async fn delete_snapshot(&self, name: &str) -> Result<(), ControllerError> {
        self.enter(format!("DeleteSnapshot {name}")).await?;
        Ok(())
    }

    async fn list_snapshots(
        &self,
        _max: i32,
        _token: &str,
        _name: &str,
        _source: &str,
    ) -> Result<(Vec<pb::Snapshot>, String), ControllerError> {
        self.enter("ListSnapshots".into()).await?;
        Ok((Vec::new(), String::new()))
    }
}
