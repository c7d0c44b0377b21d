//! The doctor's offline input: multi-document YAML from files or standard input.

use std::path::Path;

use rwxnfs_doctor::{Objects, analyze, load::add_text};

/// Input: the manifests `rwxnfs doctor` is given, analysed as it analyses them.
pub fn doctor_manifests(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let mut objects = Objects::offline();
    if add_text(&mut objects, text, Path::new("input.yaml")).is_err() {
        return;
    }
    let report = analyze(&objects);
    let _ = report.to_text();
    let _ = report.exit_code();
}
