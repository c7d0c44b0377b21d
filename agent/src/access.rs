//! Who may reach an export: GrantAccess and RevokeAccess.

use std::net::IpAddr;

use ipnet::IpNet;

use crate::{
    error::AgentError,
    exports::{ExportAgent, parse_name},
    table::{Access, ClientRecord, ExportRecord, RecordState, now_unix_ms},
};

/// Longest accepted client id (a Kubernetes node name is at most 253).
const MAX_CLIENT_ID: usize = 253;
/// More addresses than any node has; bounds the export's client list.
const MAX_ADDRESSES: usize = 16;

pub struct GrantRequest {
    pub name: String,
    pub client_id: String,
    pub addresses: Vec<String>,
    pub access: Option<Access>,
}

fn parse_client_id(raw: &str) -> Result<String, AgentError> {
    let ok = !raw.is_empty()
        && raw.len() <= MAX_CLIENT_ID
        && raw
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-._:".contains(c));
    if ok {
        Ok(raw.to_owned())
    } else {
        Err(AgentError::InvalidArgument(format!(
            "client_id {:?} must be 1..={MAX_CLIENT_ID} characters of a-z, A-Z, 0-9, '-', '.', '_', ':'",
            raw.chars().take(64).collect::<String>()
        )))
    }
}

impl ExportAgent {
    /// GrantAccess: lets one client reach the export. Granting the same again is a no-op that
    /// re-applies the export; the same client with another access mode is ALREADY_EXISTS; the
    /// same client with new addresses (a node whose address changed) replaces them.
    pub async fn grant_access(&self, req: GrantRequest) -> Result<ExportRecord, AgentError> {
        let name = parse_name(&req.name, "name")?;
        let client_id = parse_client_id(&req.client_id)?;
        let access = req.access.ok_or_else(|| {
            AgentError::InvalidArgument("client.mode: give READ_WRITE or READ_ONLY".into())
        })?;
        if req.addresses.is_empty() || req.addresses.len() > MAX_ADDRESSES {
            return Err(AgentError::InvalidArgument(format!(
                "client.addresses: give 1..={MAX_ADDRESSES} addresses, not {}",
                req.addresses.len()
            )));
        }
        let mut addresses = Vec::with_capacity(req.addresses.len());
        for raw in &req.addresses {
            let addr: IpAddr = raw.parse().map_err(|_| {
                AgentError::InvalidArgument(format!(
                    "client.addresses: {raw:?} is not an IP address"
                ))
            })?;
            self.check_allowed(&IpNet::from(addr))?;
            addresses.push(addr);
        }
        addresses.sort();
        addresses.dedup();

        let _guard = self.lock_export(&name).await;
        let mut record = self.ready_record(&name).await?;
        match record.clients.iter_mut().find(|c| c.client_id == client_id) {
            Some(existing) if existing.access != access => {
                return Err(AgentError::AlreadyExists(format!(
                    "export {name} is already granted to {client_id} as {:?}, not {access:?}",
                    existing.access
                )));
            }
            Some(existing) if existing.addresses == addresses => {
                self.exporter.apply(&self.spec(&record)).await?;
                return Ok(record);
            }
            Some(existing) => existing.addresses = addresses,
            None => record.clients.push(ClientRecord {
                client_id: client_id.clone(),
                addresses,
                access,
            }),
        }
        record.clients.sort_by(|a, b| a.client_id.cmp(&b.client_id));
        record.updated_unix_ms = now_unix_ms();
        let record = self.put_export(record).await?;
        self.exporter.apply(&self.spec(&record)).await?;
        tracing::info!(export = %name, client = %client_id, ?access, "access granted");
        Ok(record)
    }

    /// RevokeAccess: takes one client's access away. An unknown export or client: success.
    pub async fn revoke_access(&self, name: &str, client_id: &str) -> Result<(), AgentError> {
        let name = parse_name(name, "name")?;
        let client_id = parse_client_id(client_id)?;
        let _guard = self.lock_export(&name).await;
        let Some(mut record) = self.get_record(&name).await? else {
            return Ok(());
        };
        let before = record.clients.len();
        record.clients.retain(|c| c.client_id != client_id);
        if record.clients.len() == before {
            return Ok(());
        }
        record.updated_unix_ms = now_unix_ms();
        let record = self.put_export(record).await?;
        if record.state == RecordState::Ready {
            self.exporter.apply(&self.spec(&record)).await?;
        }
        tracing::info!(export = %name, client = %client_id, "access revoked");
        Ok(())
    }

    async fn ready_record(&self, name: &rwxnfs_model::Name) -> Result<ExportRecord, AgentError> {
        match self.get_record(name).await? {
            Some(record) if record.state == RecordState::Ready => Ok(record),
            _ => Err(AgentError::NotFound(format!(
                "export {name} does not exist"
            ))),
        }
    }
}
