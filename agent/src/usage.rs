//! What each export uses, as its quota counts it: reported with every export the agent
//! answers with (the `used_bytes` of an `Export`).

use crate::{error::blocking, exports::ExportAgent, fs::RelPath, table::ExportRecord};

impl ExportAgent {
    /// The bytes the quota charges to each of `records`, in order; None where the filesystem
    /// does not count them (no quotas). Informational: a usage that cannot be read is logged
    /// and reported as unknown, never an error of the call that asked.
    pub async fn usage(&self, records: &[ExportRecord]) -> Vec<Option<u64>> {
        let fs = self.fs.clone();
        let volumes: Vec<_> = records
            .iter()
            .map(|r| (r.name.clone(), RelPath::volume(&r.name), r.export_id))
            .collect();
        let count = volumes.len();
        let read = blocking(move || {
            let usage = volumes.iter().map(|(name, rel, project_id)| {
                fs.used_bytes(rel, *project_id).unwrap_or_else(|e| {
                    tracing::warn!(export = %name, error = %e, "cannot read the export's usage; reported as unknown");
                    None
                })
            });
            Ok::<_, crate::AgentError>(usage.collect::<Vec<_>>())
        })
        .await;
        read.unwrap_or_else(|e| {
            tracing::warn!(error = %e, "cannot read the exports' usage; reported as unknown");
            vec![None; count]
        })
    }
}
