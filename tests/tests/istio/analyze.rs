//! `istioctl analyze` offline: on the manifests as rendered (the default, each overlay, with
//! the examples), and beside `rwxnfs doctor` on the doctor's fixtures.

use std::{
    collections::BTreeSet,
    path::{Path, PathBuf},
};

use rwxnfs_doctor::{Severity, load::load};

use crate::istioctl::{Message, analyze, kustomize, repo};

/// Warnings istioctl gives on the shipped manifests, each with why it stays (none today).
const EXPLAINED: &[(&str, &str)] = &[];

/// What istioctl analyze says (Warning and Error) on each of the doctor's fixtures where it
/// says anything; on the others it says nothing. The comparison the README's "Service meshes"
/// section draws.
const ON_THE_FIXTURES: &[(&str, &[&str])] = &[];

/// The analyzers that would look at what the doctor looks at, and that offline analysis skips:
/// files are not a source of Namespaces, Services, Pods, Nodes or Secrets (Istio reads those
/// "runtime resources" from a live cluster only), and these analyzers need the Namespace or
/// Service collection.
const SKIPPED_OFFLINE: &[&str] = &[
    // IST0107/IST0108/IST0125: misplaced, unknown or invalid `*.istio.io` annotations.
    "annotations.K8sAnalyzer",
    // IST0102/IST0103: namespaces not injected, pods missing their proxy.
    "injection.Analyzer",
    // IST0118: Service ports whose names give no protocol (the doctor's RWX020).
    "service.PortNameAnalyzer",
];

fn write(dir: &Path, name: &str, yaml: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, yaml).expect("write");
    path
}

pub(crate) fn manifests_are_clean() {
    let manifests = repo().join("manifests");
    let dir = tempfile::tempdir().expect("a temporary directory");
    let examples = write(
        dir.path(),
        "examples.yaml",
        &kustomize(&manifests.join("examples")),
    );
    // The examples the kustomization leaves out: they need a share of your own.
    let standalone = [
        manifests.join("examples/static-pv.yaml"),
        manifests.join("examples/storageclass-subdir.yaml"),
    ];
    let mut renderings = vec![("manifests".to_owned(), manifests.clone())];
    let mut overlays: Vec<PathBuf> = std::fs::read_dir(manifests.join("overlays"))
        .expect("manifests/overlays")
        .map(|e| e.expect("readable").path())
        .collect();
    overlays.sort();
    for overlay in overlays {
        let name = overlay
            .file_name()
            .expect("a directory name")
            .to_string_lossy()
            .into_owned();
        renderings.push((format!("overlays/{name}"), overlay));
    }
    let mut unexplained = Vec::new();
    for (name, kustomization) in renderings {
        let rendered = write(
            dir.path(),
            &format!("{}.yaml", name.replace('/', "-")),
            &kustomize(&kustomization),
        );
        let mut files = vec![rendered, examples.clone()];
        files.extend(standalone.iter().cloned());
        let analysis = analyze(&files);
        println!("istioctl analyze {name} + examples:");
        for m in &analysis.messages {
            println!("  {}", m.line);
        }
        println!("  not read: {:?}", analysis.unread_kinds);
        for skipped in SKIPPED_OFFLINE {
            assert!(
                analysis.skipped_analyzers.contains(*skipped),
                "{name}: istioctl analyze ran {skipped} offline; the comparison in the README is out of date"
            );
        }
        for m in &analysis.messages {
            assert_ne!(m.level, "Error", "{name}: {}", m.line);
            if m.level == "Warning" && !EXPLAINED.iter().any(|(code, _)| *code == m.code) {
                unexplained.push(format!("{name}: {}", m.line));
            }
        }
    }
    assert!(
        unexplained.is_empty(),
        "warnings without an explanation:\n{}",
        unexplained.join("\n")
    );
}

fn fixture_files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.expect("readable").path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .filter(|p| p.file_name().is_some_and(|n| n != "kustomization.yaml"))
        .collect();
    files.sort();
    files
}

fn serious(messages: &[Message]) -> BTreeSet<String> {
    messages
        .iter()
        .filter(|m| m.level != "Info")
        .map(|m| m.code.clone())
        .collect()
}

pub(crate) fn beside_the_doctor() {
    let fixtures = repo().join("doctor/tests/fixtures");
    let mut cases: Vec<(String, Vec<PathBuf>)> = fixture_files(&fixtures.join("bad"))
        .into_iter()
        .map(|f| {
            (
                f.file_stem()
                    .expect("a file name")
                    .to_string_lossy()
                    .into_owned(),
                vec![f],
            )
        })
        .collect();
    cases.push(("good".to_owned(), fixture_files(&fixtures.join("good"))));
    let mut table = Vec::new();
    let mut differences = Vec::new();
    for (name, files) in &cases {
        let doctor: BTreeSet<&str> = rwxnfs_doctor::analyze(&load(files).expect("loads"))
            .findings
            .iter()
            .filter(|f| f.severity >= Severity::Warning)
            .map(|f| f.code)
            .collect();
        let analysis = analyze(files);
        let messages = analysis.messages;
        let istio = serious(&messages);
        let infos: BTreeSet<&str> = messages
            .iter()
            .filter(|m| m.level == "Info")
            .map(|m| m.code.as_str())
            .collect();
        table.push(format!(
            "{name}: doctor {doctor:?}; istioctl {istio:?} (info {infos:?})\n{}",
            messages
                .iter()
                .map(|m| format!("    {}", m.line))
                .collect::<Vec<_>>()
                .join("\n")
        ));
        let pinned: BTreeSet<String> = ON_THE_FIXTURES
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, codes)| codes.iter().map(|c| c.to_string()).collect())
            .unwrap_or_default();
        if pinned != istio {
            differences.push(format!(
                "{name}: pinned {pinned:?}, istioctl says {istio:?}"
            ));
        }
    }
    println!("{}", table.join("\n"));
    assert!(
        differences.is_empty(),
        "istioctl analyze no longer says what the README reports:\n{}",
        differences.join("\n")
    );
}
