//! Reconcile: make the NFS server match the table again, and finish or roll back whatever a
//! crash interrupted. Runs at start (after a failover, on the new host) and on demand.

use crate::{
    error::{AgentError, blocking},
    exports::{ExportAgent, snapshot_key},
    fs::RelPath,
    table::RecordState,
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
    pub async fn reconcile(&self) -> Result<ReconcileReport, AgentError> {
        let mut report = ReconcileReport::default();
        let table = self.table.clone();
        let exports = blocking(move || table.exports()).await?;
        for stored in exports {
            let name = stored.name;
            let _guard = self.lock_export(&name).await;
            // Re-read under the lock: a call may have changed it since the listing.
            let Some(record) = self.get_record(&name).await? else {
                continue;
            };
            match record.state {
                RecordState::Creating => {
                    self.roll_back_create(&record).await;
                    report
                        .repaired
                        .push(format!("create of {name} rolled back"));
                }
                RecordState::Deleting => {
                    self.finish_delete(&record).await?;
                    report.repaired.push(format!("delete of {name} finished"));
                }
                RecordState::Ready => {
                    let fs = self.fs.clone();
                    let rel = RelPath::volume(&name);
                    let present = blocking(move || -> Result<bool, AgentError> {
                        if !fs.exists(&rel)? {
                            return Ok(false);
                        }
                        fs.prepare_export(&rel)?;
                        Ok(true)
                    })
                    .await?;
                    if !present {
                        tracing::error!(export = %name, "the export's data directory is missing; not exporting it");
                        report.missing.push(name.to_string());
                        continue;
                    }
                    self.exporter.apply(&self.spec(&record)).await?;
                    report.activated.push(name.to_string());
                }
            }
        }
        self.reconcile_snapshots(&mut report).await?;
        self.report_unknown(&mut report).await?;
        self.purge.notify_one();
        tracing::info!(
            activated = report.activated.len(),
            repaired = report.repaired.len(),
            unknown = report.unknown.len(),
            missing = report.missing.len(),
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

    async fn report_unknown(&self, report: &mut ReconcileReport) -> Result<(), AgentError> {
        let table = self.table.clone();
        let known: std::collections::BTreeSet<u32> = blocking(move || table.exports())
            .await?
            .iter()
            .map(|r| r.export_id)
            .collect();
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
