//! Reconcile: make the NFS server match the table again, and finish or roll back whatever a
//! crash interrupted. Runs at start (after a failover, on the new host) and on demand.

use std::collections::BTreeSet;

use crate::{
    error::{AgentError, blocking},
    exports::{ExportAgent, snapshot_key},
    fs::RelPath,
    table::{ExportRecord, RecordState},
};

#[derive(Debug, Default, PartialEq, Eq)]
pub struct ReconcileReport {
    /// Exports made active from the table.
    pub activated: Vec<String>,
    /// Export ids the NFS server has that the table does not (reported, never removed).
    pub unknown: Vec<String>,
    /// Interrupted operations finished or rolled back.
    pub repaired: Vec<String>,
    /// Exports whose data directory is missing (reported; their record is kept).
    pub missing: Vec<String>,
}

impl ExportAgent {
    /// One pass over the whole table. Every export's lock is held for the pass (calls for
    /// them wait; creates of new names do not), the records are read and the ready ones'
    /// data checked in one blocking pass, and the ready exports go to the NFS server as one
    /// batch ([`crate::exporter::Exporter::apply_all`]). Interrupted creates and deletes are
    /// repaired after that, once the exporter knows the whole table.
    pub async fn reconcile(&self) -> Result<ReconcileReport, AgentError> {
        let started = std::time::Instant::now();
        let mut report = ReconcileReport::default();
        let table = self.table.clone();
        let names = blocking(move || table.export_names()).await?;
        let mut guards = Vec::with_capacity(names.len());
        for name in &names {
            guards.push(self.lock_export(name).await);
        }
        let table = self.table.clone();
        let fs = self.fs.clone();
        let records = blocking(move || -> Result<Vec<(ExportRecord, bool)>, AgentError> {
            let mut records = Vec::with_capacity(names.len());
            // One listing for every volume's directory. The export locks are held, so none
            // of them comes or goes during the pass.
            let volumes = fs.volume_names()?;
            for name in names {
                // Gone since the listing (a delete that held the lock first): nothing to do.
                let Some(record) = table.export(&name)? else {
                    continue;
                };
                let mut present = false;
                if record.state == RecordState::Ready {
                    let rel = RelPath::volume(&name);
                    present = volumes.contains(std::ffi::OsStr::new(name.as_str()));
                    if present {
                        fs.prepare_export(&rel)?;
                    }
                }
                records.push((record, present));
            }
            Ok(records)
        })
        .await?;
        let read = started.elapsed();

        let mut ready = Vec::new();
        for (record, present) in &records {
            if record.state != RecordState::Ready {
                continue;
            }
            if *present {
                ready.push(record);
            } else {
                tracing::error!(export = %record.name, "the export's data directory is missing; not exporting it");
                report.missing.push(record.name.to_string());
            }
        }
        let specs: Vec<_> = ready.iter().map(|r| self.spec(r)).collect();
        let results = self.exporter.apply_all(&specs).await;
        let applied = started.elapsed() - read;
        let mut failed = None;
        for (record, result) in ready.iter().zip(results) {
            match result {
                Ok(()) => report.activated.push(record.name.to_string()),
                Err(e) => {
                    tracing::error!(export = %record.name, error = %e, "the NFS server did not take the export");
                    failed.get_or_insert(e);
                }
            }
        }
        for (record, _) in &records {
            match record.state {
                RecordState::Ready => {}
                RecordState::Creating => {
                    self.roll_back_create(record).await;
                    report
                        .repaired
                        .push(format!("create of {} rolled back", record.name));
                }
                RecordState::Deleting => {
                    self.finish_delete(record).await?;
                    report
                        .repaired
                        .push(format!("delete of {} finished", record.name));
                }
            }
        }
        let known: BTreeSet<u32> = records.iter().map(|(r, _)| r.export_id).collect();
        drop(guards);
        if let Some(e) = failed {
            return Err(e.into());
        }
        self.reconcile_snapshots(&mut report).await?;
        self.report_unknown(&known, &mut report).await?;
        self.purge.notify_one();
        tracing::info!(
            activated = report.activated.len(),
            repaired = report.repaired.len(),
            unknown = report.unknown.len(),
            missing = report.missing.len(),
            read = ?read,
            applied = ?applied,
            took = ?started.elapsed(),
            "reconciled"
        );
        Ok(report)
    }

    async fn reconcile_snapshots(&self, report: &mut ReconcileReport) -> Result<(), AgentError> {
        let table = self.table.clone();
        for record in blocking(move || table.snapshots()).await? {
            if record.state == RecordState::Ready {
                continue;
            }
            let name = record.name.clone();
            let _guard = self.locks.lock(snapshot_key(&name)).await;
            self.finish_snapshot_delete(&record).await?;
            report.repaired.push(format!("snapshot {name} cleaned up"));
        }
        Ok(())
    }

    async fn report_unknown(
        &self,
        known: &BTreeSet<u32>,
        report: &mut ReconcileReport,
    ) -> Result<(), AgentError> {
        for id in self.exporter.active().await? {
            if !known.contains(&id) {
                tracing::warn!(
                    export_id = id,
                    "the NFS server has an export the table does not know; left alone"
                );
                report.unknown.push(id.to_string());
            }
        }
        Ok(())
    }
}
