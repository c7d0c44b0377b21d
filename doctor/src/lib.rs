//! `rwxnfs doctor`: finds service-mesh and NFS misconfiguration in rwxnfs's manifests or in a
//! live cluster, in the spirit of `istioctl analyze`. Every finding has a stable code, a
//! severity, the object, the problem and the exact fix.
//!
//! Objects come from YAML ([`load`]) or from the Kubernetes API ([`live`]); [`analyze`] runs
//! every check in [`checks`] on them. The controller runs [`selfcheck`] on its own pod at
//! start.

pub mod args;
pub mod checks;
pub mod context;
pub mod finding;
pub mod istio;
pub mod live;
pub mod load;
pub mod objects;
pub mod registration;
pub mod selfcheck;
pub mod traffic;
pub mod workload;

pub use context::Context;
pub use finding::{Finding, Fix, ObjectRef, Report, Severity};
pub use objects::Objects;

/// Runs every check on `objects`.
pub fn analyze(objects: &Objects) -> Report {
    let ctx = Context::new(objects);
    let mut findings = objects.notes.clone();
    findings.extend(ctx.notes.iter().cloned());
    for check in checks::ALL {
        findings.extend(check(&ctx));
    }
    Report::new(findings)
}
