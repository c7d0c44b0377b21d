//! Snapshots: point-in-time copies of an export (a btrfs snapshot or reflinks where the
//! filesystem has them; a byte copy only as the fallback).

use crate::{
    error::{AgentError, blocking},
    exports::{
        ExportAgent, check_max_entries, export_key, page, parse_name, parse_token, snapshot_key,
    },
    fs::RelPath,
    table::{RecordState, SnapshotRecord, now_unix_ms},
};

impl ExportAgent {
    /// CreateSnapshot. The same name and source again returns the same snapshot; the same
    /// name with another source is ALREADY_EXISTS.
    pub async fn create_snapshot(
        &self,
        name: &str,
        source: &str,
    ) -> Result<SnapshotRecord, AgentError> {
        let name = parse_name(name, "name")?;
        let source = parse_name(source, "source_export")?;
        let _guards = self
            .locks
            .lock_all(vec![export_key(&source), snapshot_key(&name)])
            .await;

        let table = self.table.clone();
        let key = name.clone();
        if let Some(existing) = blocking(move || table.snapshot(&key)).await? {
            match existing.state {
                _ if existing.source_export != source.as_str() => {
                    return Err(AgentError::AlreadyExists(format!(
                        "snapshot {name} exists with source export {}",
                        existing.source_export
                    )));
                }
                RecordState::Ready => return Ok(existing),
                // What an interrupted attempt left (this call holds the name's lock): taken
                // again below, its leftover data trashed first.
                RecordState::Creating => {}
                RecordState::Deleting => {
                    return Err(AgentError::FailedPrecondition(format!(
                        "snapshot {name} is being deleted; retry shortly"
                    )));
                }
            }
        }
        let source_record = match self.get_record(&source).await? {
            Some(r) if r.state == RecordState::Ready => r,
            _ => {
                return Err(AgentError::NotFound(format!(
                    "source export {source} does not exist"
                )));
            }
        };
        let rel = RelPath::snapshot(&name);
        let record = SnapshotRecord {
            name: name.clone(),
            source_export: source.to_string(),
            state: RecordState::Creating,
            path: rel.as_path().to_owned(),
            size_bytes: source_record.capacity_bytes,
            created_unix_ms: now_unix_ms(),
        };
        let mut record = self.put_snapshot(record).await?;

        let fs = self.fs.clone();
        let (src, dst) = (RelPath::volume(&source), rel.clone());
        let started = std::time::Instant::now();
        match blocking(move || {
            if fs.exists(&dst)? {
                // Leftovers of an interrupted attempt: the record said "creating", so it is ours.
                fs.trash(&dst)?;
            }
            fs.clone_tree(&src, &dst)
        })
        .await
        {
            Ok(method) => {
                tracing::info!(snapshot = %name, source = %source, ?method, ms = started.elapsed().as_millis() as u64, "snapshot taken")
            }
            Err(e) => {
                self.drop_snapshot(&record).await;
                return Err(e);
            }
        }
        record.state = RecordState::Ready;
        match self.put_snapshot(record.clone()).await {
            Ok(record) => Ok(record),
            Err(e) => {
                self.drop_snapshot(&record).await;
                Err(e)
            }
        }
    }

    /// DeleteSnapshot. Already gone: success.
    pub async fn delete_snapshot(&self, name: &str) -> Result<(), AgentError> {
        let name = parse_name(name, "name")?;
        let _guard = self.locks.lock(snapshot_key(&name)).await;
        let table = self.table.clone();
        let key = name.clone();
        let Some(mut record) = blocking(move || table.snapshot(&key)).await? else {
            return Ok(());
        };
        record.state = RecordState::Deleting;
        let record = self.put_snapshot(record).await?;
        self.finish_snapshot_delete(&record).await
    }

    /// Moves the snapshot's data to the trash and removes its record; reconcile calls it too.
    pub(crate) async fn finish_snapshot_delete(
        &self,
        record: &SnapshotRecord,
    ) -> Result<(), AgentError> {
        let name = record.name.clone();
        let fs = self.fs.clone();
        let table = self.table.clone();
        blocking(move || -> Result<(), AgentError> {
            fs.trash(&RelPath::snapshot(&name))?;
            table.remove_snapshot(&name)?;
            Ok(())
        })
        .await?;
        self.purge.notify_one();
        tracing::info!(snapshot = %record.name, "snapshot deleted");
        Ok(())
    }

    /// Rolls back a snapshot whose copy failed; errors are logged (reconcile retries).
    pub(crate) async fn drop_snapshot(&self, record: &SnapshotRecord) {
        if let Err(e) = self.finish_snapshot_delete(record).await {
            tracing::error!(snapshot = %record.name, error = %e, "rolling back a failed snapshot failed; reconcile will retry");
        }
    }

    /// Ready snapshots ordered by name, optionally one name or one source, paged.
    pub async fn list_snapshots(
        &self,
        max: i32,
        token: &str,
        name: &str,
        source: &str,
    ) -> Result<(Vec<SnapshotRecord>, String), AgentError> {
        check_max_entries(max)?;
        let after = parse_token(token)?;
        let table = self.table.clone();
        let all = blocking(move || table.snapshots()).await?;
        let (name, source) = (name.to_owned(), source.to_owned());
        let matching = all.into_iter().filter(|s| {
            s.state == RecordState::Ready
                && (name.is_empty() || s.name.as_str() == name)
                && (source.is_empty() || s.source_export == source)
        });
        Ok(page(matching, |s| s.name.as_str(), after.as_deref(), max))
    }

    async fn put_snapshot(&self, record: SnapshotRecord) -> Result<SnapshotRecord, AgentError> {
        let table = self.table.clone();
        blocking(move || table.put_snapshot(&record).map(|()| record)).await
    }
}
