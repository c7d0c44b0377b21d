//! Where nodes mount a backend's exports from: the configured `server`, else the first address
//! the agent's Probe reports, asked once and kept until the agent is unavailable (after which
//! the next use asks again: a failover may have moved it).

use std::{future::Future, net::IpAddr, sync::Mutex};

use rwxnfs_model::Name;
use rwxnfs_proto::agent as pb;

use crate::ControllerError;

pub struct ServerAddress {
    configured: Option<IpAddr>,
    probed: Mutex<Option<IpAddr>>,
}

impl ServerAddress {
    pub fn new(configured: Option<IpAddr>) -> Self {
        Self {
            configured,
            probed: Mutex::new(None),
        }
    }

    /// The address; `probe` is awaited only when none is configured or kept.
    pub async fn get(
        &self,
        backend: &Name,
        probe: impl Future<Output = Result<pb::ProbeResponse, ControllerError>>,
    ) -> Result<IpAddr, ControllerError> {
        if let Some(address) = self.configured.or(*self.lock()) {
            return Ok(address);
        }
        let address = probe
            .await?
            .server_addresses
            .iter()
            .find_map(|a| a.parse().ok())
            .ok_or_else(|| ControllerError::NoServerAddress {
                backend: backend.clone(),
            })?;
        *self.lock() = Some(address);
        Ok(address)
    }

    /// Takes note of a failed call: an agent that is unavailable may come back elsewhere, so
    /// its address is asked again.
    pub fn failed(&self, err: &ControllerError) {
        if err.code() == tonic::Code::Unavailable {
            *self.lock() = None;
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Option<IpAddr>> {
        self.probed.lock().unwrap_or_else(|e| e.into_inner())
    }
}
