//! Who may reach an export: GrantAccess and RevokeAccess.

use std::{
    collections::HashMap,
    net::IpAddr,
    sync::{Arc, Mutex},
};

use ipnet::IpNet;
use tokio::sync::oneshot;

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

/// One grant waiting for its export's lock.
pub(crate) struct Pending {
    client_id: String,
    addresses: Vec<IpAddr>,
    access: Access,
    done: oneshot::Sender<Result<Arc<ExportRecord>, AgentError>>,
}

/// Grants queued per export key. Whoever holds an export's lock takes every grant queued for
/// it (its own and those of callers still waiting for the lock) and answers them all.
#[derive(Default)]
pub(crate) struct PendingGrants(Mutex<HashMap<String, Vec<Pending>>>);

impl PendingGrants {
    fn queue(&self, key: &str, pending: Pending) {
        let mut map = self.0.lock().unwrap_or_else(|e| e.into_inner());
        map.entry(key.to_owned()).or_default().push(pending);
    }

    fn take(&self, key: &str) -> Vec<Pending> {
        let mut map = self.0.lock().unwrap_or_else(|e| e.into_inner());
        map.remove(key).unwrap_or_default()
    }
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
    /// same client with new addresses (a node whose address changed) replaces them. Answers
    /// the export as the grant left it, shared with the grants applied together with it.
    pub async fn grant_access(&self, req: GrantRequest) -> Result<Arc<ExportRecord>, AgentError> {
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

        let key = crate::exports::export_key(&name);
        // A grant that a cancelled batch dropped is queued again; the change it carried, if
        // written, is found by the next batch, which applies the export again.
        for _ in 0..3 {
            let (done, mut answer) = oneshot::channel();
            self.grants.queue(
                &key,
                Pending {
                    client_id: client_id.clone(),
                    addresses: addresses.clone(),
                    access,
                    done,
                },
            );
            // Whichever comes first: the lock, or the answer of a holder that took this grant
            // into its batch. Waiting for the lock after being answered would make N callers
            // of one export a convoy of N lock turns, each after the batch that answered it.
            let guard = tokio::select! {
                biased;
                answered = &mut answer => match answered {
                    Ok(result) => return result,
                    Err(_) => continue,
                },
                guard = self.lock_export(&name) => guard,
            };
            let batch = self.grants.take(&key);
            if !batch.is_empty() {
                self.grant_batch(&name, batch).await;
            }
            drop(guard);
            if let Ok(result) = answer.await {
                return result;
            }
        }
        Err(AgentError::Aborted(format!(
            "granting {name} to {client_id} was interrupted three times; retry"
        )))
    }

    /// Applies grants to one export that queued while its lock was held: every change in one
    /// table write and one exporter apply, and each caller answered with the result. With N
    /// nodes publishing one claim at once (a Deployment's pods starting) that is a handful of
    /// commits, not N one after another.
    async fn grant_batch(&self, name: &rwxnfs_model::Name, batch: Vec<Pending>) {
        let mut record = match self.ready_record(name).await {
            Ok(record) => record,
            Err(e) => {
                let e = Arc::new(e);
                for p in batch {
                    let _ = p.done.send(Err(AgentError::Shared(e.clone())));
                }
                return;
            }
        };
        let mut changed = false;
        let mut accepted = Vec::with_capacity(batch.len());
        for p in batch {
            match record
                .clients
                .iter_mut()
                .find(|c| c.client_id == p.client_id)
            {
                Some(existing) if existing.access != p.access => {
                    let e = AgentError::AlreadyExists(format!(
                        "export {name} is already granted to {} as {:?}, not {:?}",
                        p.client_id, existing.access, p.access
                    ));
                    let _ = p.done.send(Err(e));
                    continue;
                }
                Some(existing) if existing.addresses == p.addresses => {}
                Some(existing) => {
                    existing.addresses = p.addresses.clone();
                    changed = true;
                }
                None => {
                    record.clients.push(ClientRecord {
                        client_id: p.client_id.clone(),
                        addresses: p.addresses.clone(),
                        access: p.access,
                    });
                    changed = true;
                }
            }
            accepted.push(p);
        }
        if accepted.is_empty() {
            return;
        }
        let result = async {
            if changed {
                record.clients.sort_by(|a, b| a.client_id.cmp(&b.client_id));
                record.updated_unix_ms = now_unix_ms();
                record = self.put_export(record).await?;
            }
            // Granting the same again re-applies the export: a repair when the server lost it.
            self.exporter.apply(&self.spec(&record)).await?;
            Ok::<_, AgentError>(record)
        }
        .await;
        match result {
            Ok(record) => {
                let record = Arc::new(record);
                for p in accepted {
                    tracing::info!(export = %name, client = %p.client_id, access = ?p.access, "access granted");
                    let _ = p.done.send(Ok(Arc::clone(&record)));
                }
            }
            Err(e) => {
                let e = Arc::new(e);
                for p in accepted {
                    let _ = p.done.send(Err(AgentError::Shared(e.clone())));
                }
            }
        }
    }

    /// RevokeAccess: takes one client's access away. An unknown export: success. A client
    /// the record no longer has: success once the NFS server has the export as the record
    /// says (the retry of a revoke whose record was written and whose server change failed,
    /// as granting the same again is).
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
            if record.state == RecordState::Ready {
                self.exporter.apply(&self.spec(&record)).await?;
            }
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
