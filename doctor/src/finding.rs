//! What a check reports: a stable code, a severity, the object, the problem and the exact fix.

use std::fmt::Write as _;

use serde::Serialize;

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Info,
    Warning,
    Error,
}

impl Severity {
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Info => "info",
            Severity::Warning => "warning",
            Severity::Error => "error",
        }
    }
}

/// The object a finding is about.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct ObjectRef {
    pub kind: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    pub name: String,
}

impl ObjectRef {
    pub fn new(kind: &str, namespace: Option<&str>, name: &str) -> Self {
        Self {
            kind: kind.to_owned(),
            namespace: namespace.map(str::to_owned),
            name: name.to_owned(),
        }
    }
}

impl std::fmt::Display for ObjectRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.namespace {
            Some(ns) => write!(f, "{}/{}/{}", self.kind, ns, self.name),
            None => write!(f, "{}/{}", self.kind, self.name),
        }
    }
}

/// How to fix a finding: a patch of the object, when one does it, and the command that applies
/// it (or does the job when no patch can).
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Fix {
    /// `strategic`, `merge` or `json`, as `kubectl patch --type` takes it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub patch_type: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub patch: Option<serde_json::Value>,
    pub command: String,
}

impl Fix {
    /// `kubectl patch` of `object` with `patch`.
    pub fn patch(object: &ObjectRef, patch_type: &'static str, patch: serde_json::Value) -> Self {
        let ns = object
            .namespace
            .as_deref()
            .map(|ns| format!("-n {ns} "))
            .unwrap_or_default();
        let command = format!(
            "kubectl {ns}patch {} {} --type {patch_type} -p '{patch}'",
            object.kind.to_lowercase(),
            object.name
        );
        Self {
            patch_type: Some(patch_type),
            patch: Some(patch),
            command,
        }
    }

    pub fn command(command: impl Into<String>) -> Self {
        Self {
            patch_type: None,
            patch: None,
            command: command.into(),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Finding {
    pub code: &'static str,
    pub severity: Severity,
    pub object: ObjectRef,
    pub problem: String,
    pub fix: Fix,
}

/// Every finding of a run, most severe first.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Report {
    pub findings: Vec<Finding>,
}

impl Report {
    pub fn new(mut findings: Vec<Finding>) -> Self {
        findings
            .sort_by(|a, b| (b.severity, a.code, &a.object).cmp(&(a.severity, b.code, &b.object)));
        findings.dedup();
        Self { findings }
    }

    pub fn worst(&self) -> Option<Severity> {
        self.findings.iter().map(|f| f.severity).max()
    }

    /// 0 when clean (info only), 1 for warnings only, 2 when there is an error.
    pub fn exit_code(&self) -> u8 {
        match self.worst() {
            None | Some(Severity::Info) => 0,
            Some(Severity::Warning) => 1,
            Some(Severity::Error) => 2,
        }
    }

    pub fn count(&self, severity: Severity) -> usize {
        self.findings
            .iter()
            .filter(|f| f.severity == severity)
            .count()
    }

    pub fn to_text(&self) -> String {
        let mut out = String::new();
        for f in &self.findings {
            let _ = writeln!(
                out,
                "{} [{}] {}: {}",
                f.severity.as_str(),
                f.code,
                f.object,
                f.problem
            );
            let _ = writeln!(out, "    fix: {}", f.fix.command);
        }
        let _ = writeln!(
            out,
            "{} error(s), {} warning(s), {} info",
            self.count(Severity::Error),
            self.count(Severity::Warning),
            self.count(Severity::Info)
        );
        out
    }

    pub fn to_json(&self) -> String {
        let value = serde_json::json!({
            "findings": self.findings,
            "summary": {
                "errors": self.count(Severity::Error),
                "warnings": self.count(Severity::Warning),
                "info": self.count(Severity::Info),
                "exitCode": self.exit_code(),
            }
        });
        serde_json::to_string_pretty(&value).unwrap_or_else(|e| format!("{{\"error\": \"{e}\"}}"))
    }
}
