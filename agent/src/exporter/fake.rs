//! An in-memory exporter for unit tests of the agent's logic.

use std::{
    collections::BTreeMap,
    sync::{Arc, Mutex},
};

use super::{ExportError, ExportSpec, Exporter};

/// Records what is active; can be told to fail, to test error paths.
#[derive(Clone, Default)]
pub struct FakeExporter {
    state: Arc<Mutex<FakeState>>,
}

#[derive(Default)]
struct FakeState {
    active: BTreeMap<u32, ExportSpec>,
    fail_with: Option<String>,
    calls: Vec<String>,
    apply_takes: std::time::Duration,
}

impl FakeExporter {
    pub fn new() -> Self {
        Self::default()
    }

    /// The export with this id, as last applied.
    pub fn get(&self, export_id: u32) -> Option<ExportSpec> {
        self.lock().active.get(&export_id).cloned()
    }

    /// Makes every following call fail as "unavailable" (None: succeed again).
    pub fn fail(&self, message: Option<&str>) {
        self.lock().fail_with = message.map(str::to_owned);
    }

    /// Makes every following apply take this long, as a real server's update does.
    pub fn apply_takes(&self, duration: std::time::Duration) {
        self.lock().apply_takes = duration;
    }

    /// Calls made so far, as "apply 7", "remove 7", ...
    pub fn calls(&self) -> Vec<String> {
        self.lock().calls.clone()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, FakeState> {
        // A panic in another test thread must not hide this test's result.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn check(&self, call: String) -> Result<std::sync::MutexGuard<'_, FakeState>, ExportError> {
        let mut state = self.lock();
        state.calls.push(call);
        match &state.fail_with {
            Some(message) => Err(ExportError::Unavailable(message.clone())),
            None => Ok(state),
        }
    }
}

#[tonic::async_trait]
impl Exporter for FakeExporter {
    /// The fake plays a TLS-capable server, so the agent's TLS plumbing is testable.
    fn supports(&self, _transport: rwxnfs_model::Transport) -> Result<(), String> {
        Ok(())
    }

    fn kind(&self) -> &'static str {
        "fake"
    }

    async fn apply(&self, spec: &ExportSpec) -> Result<(), ExportError> {
        let takes = self.lock().apply_takes;
        if !takes.is_zero() {
            tokio::time::sleep(takes).await;
        }
        let mut state = self.check(format!("apply {}", spec.export_id))?;
        state.active.insert(spec.export_id, spec.clone());
        Ok(())
    }

    async fn remove(&self, export_id: u32) -> Result<(), ExportError> {
        let mut state = self.check(format!("remove {export_id}"))?;
        state.active.remove(&export_id);
        Ok(())
    }

    async fn active(&self) -> Result<Vec<u32>, ExportError> {
        let state = self.check("active".into())?;
        Ok(state.active.keys().copied().collect())
    }

    async fn probe(&self) -> Result<(), String> {
        match &self.lock().fail_with {
            Some(message) => Err(message.clone()),
            None => Ok(()),
        }
    }
}
