//! `istioctl analyze` offline: on the manifests as rendered (the default, each overlay, with
//! the examples), and beside `rwxnfs doctor` on the doctor's fixtures.

use std::{
    collections::BTreeSet,
    path::{Path, PathBuf},
};

use rwxnfs_doctor::{Severity, load::load};

use crate::{
    istioctl::{Install, Message, analyze, documents, kustomize, repo, to_yaml},
    live::Cluster,
};

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

/// What istioctl analyze says (any level, but IST0102) against a real API server holding each
/// mesh fixture of the doctor, injected as the webhook would; on the others it says nothing.
/// The README's comparison.
const LIVE_ON_THE_FIXTURES: &[(&str, &[&str])] = &[
    // Info: "Port name nfs (port: 2049, targetPort: 2049) doesn't follow the naming
    // convention of Istio port" (the doctor's RWX020 says it as a warning, with the patch).
    ("RWX020-service-port-not-tcp", &["IST0118"]),
];

/// `yaml` with a Namespace object first for every namespace its objects name but it does not
/// define (an API server refuses objects in a namespace that does not exist).
fn with_namespaces(yaml: &str) -> String {
    let objects = documents(yaml);
    let defined: BTreeSet<&str> = objects
        .iter()
        .filter(|o| o["kind"] == "Namespace")
        .filter_map(|o| o["metadata"]["name"].as_str())
        .collect();
    let named: BTreeSet<&str> = objects
        .iter()
        .filter_map(|o| o["metadata"]["namespace"].as_str())
        .collect();
    let mut out: Vec<String> = named
        .difference(&defined)
        .map(|n| format!("apiVersion: v1\nkind: Namespace\nmetadata:\n  name: {n}\n"))
        .collect();
    out.push(yaml.to_owned());
    out.join("\n---\n")
}

pub(crate) fn live_beside_the_doctor() {
    let cluster = Cluster::start();
    let manifests = repo().join("manifests");
    let examples = kustomize(&manifests.join("examples"));
    let mut renderings = vec![("manifests".to_owned(), manifests.clone())];
    for overlay in ["istio-sidecar", "istio-ambient", "no-snapshots"] {
        renderings.push((
            format!("overlays/{overlay}"),
            manifests.join("overlays").join(overlay),
        ));
    }
    let mut unexplained = Vec::new();
    // The cluster runs no istiod, so no webhook injects the pods: the sidecar overlay goes in
    // as the injector leaves it (`istioctl kube-inject`, as in the injection tests).
    let install = Install::generate(&[]);
    for (name, kustomization) in renderings {
        let mut rendered = kustomize(&kustomization);
        if name.ends_with("istio-sidecar") {
            rendered = to_yaml(&install.kube_inject(&rendered, &[]).0);
        }
        let yaml = format!("{rendered}\n---\n{examples}");
        let applied = cluster.write("manifests.yaml", &yaml);
        cluster.apply(&yaml);
        let analysis = cluster.analyze();
        println!("istioctl analyze (live) {name} + examples:");
        for m in &analysis.messages {
            println!("  {}", m.line);
            assert_ne!(m.level, "Error", "{name}: {}", m.line);
            if m.level == "Warning" && !EXPLAINED.iter().any(|(code, _)| *code == m.code) {
                unexplained.push(format!("{name}: {}", m.line));
            }
        }
        // Gone before the next rendering: a rollout never finishes without a kubelet, and the
        // old pods would stay.
        cluster.delete(&applied);
    }
    assert!(
        unexplained.is_empty(),
        "warnings without an explanation:\n{}",
        unexplained.join("\n")
    );
    misspelt_annotation(&cluster, &install);

    let fixtures = repo().join("doctor/tests/fixtures/bad");
    let mut differences = Vec::new();
    for file in fixture_files(&fixtures) {
        let name = file
            .file_stem()
            .expect("a file name")
            .to_string_lossy()
            .into_owned();
        // The mesh findings (RWX001-RWX031); the rest is the driver's own wiring.
        if name.as_str() >= "RWX040" {
            continue;
        }
        // As the webhook would leave it: injected where the namespace or pod asks for it.
        let source = std::fs::read_to_string(&file).expect("readable");
        let yaml = with_namespaces(&to_yaml(&install.kube_inject(&source, &[]).0));
        let applied = cluster.write(&format!("{name}.yaml"), &yaml);
        cluster.apply(&yaml);
        let messages = cluster.analyze().messages;
        cluster.delete(&applied);
        // Every code but IST0102 (a namespace not labelled for injection, said of most).
        let istio: BTreeSet<String> = messages
            .iter()
            .filter(|m| m.code != "IST0102")
            .map(|m| m.code.clone())
            .collect();
        println!("{name} (live): istioctl {istio:?}");
        for m in &messages {
            println!("    {}", m.line);
        }
        let pinned: BTreeSet<String> = LIVE_ON_THE_FIXTURES
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, codes)| codes.iter().map(|c| c.to_string()).collect())
            .unwrap_or_default();
        if pinned != istio {
            differences.push(format!(
                "{name}: pinned {pinned:?}, istioctl says {istio:?}"
            ));
        }
    }
    assert!(
        differences.is_empty(),
        "istioctl analyze (live) no longer says what the README reports:\n{}",
        differences.join("\n")
    );
}

/// A misspelt exclusion annotation on the controller (`excludeOutboundPort`): each tool sees its
/// half. The doctor finds the NFS and agent ports not excluded (RWX001); Istio finds an
/// annotation it does not know (IST0108).
fn misspelt_annotation(cluster: &Cluster, install: &Install) {
    let rendered = kustomize(&repo().join("manifests/overlays/istio-sidecar")).replace(
        "traffic.sidecar.istio.io/excludeOutboundPorts",
        "traffic.sidecar.istio.io/excludeOutboundPort",
    );
    let file = cluster.write("misspelt.yaml", &rendered);
    let doctor: BTreeSet<&str> =
        rwxnfs_doctor::analyze(&load(std::slice::from_ref(&file)).expect("loads"))
            .findings
            .iter()
            .filter(|f| f.severity >= Severity::Warning)
            .map(|f| f.code)
            .collect();
    let yaml = to_yaml(&install.kube_inject(&rendered, &[]).0);
    let applied = cluster.write("misspelt-injected.yaml", &yaml);
    cluster.apply(&yaml);
    let messages = cluster.analyze().messages;
    cluster.delete(&applied);
    println!("misspelt excludeOutboundPort: doctor {doctor:?}");
    for m in &messages {
        println!("    {}", m.line);
    }
    assert!(doctor.contains("RWX001"), "{doctor:?}");
    assert!(
        messages.iter().any(|m| m.code == "IST0108"),
        "istioctl analyze no longer reports the unknown annotation"
    );
}
