//! Istio's own tools, offline: the manifests rendered as `kubectl kustomize` does, the injector's
//! template, values and mesh config as `istioctl manifest generate` renders them for an
//! install, `istioctl kube-inject` with those files, and `istioctl analyze` on files.

use std::{
    collections::BTreeSet,
    path::{Path, PathBuf},
    process::Command,
    sync::OnceLock,
};

use serde::Deserialize;
use serde_json::Value;
use tempfile::TempDir;

/// The repository's root.
pub(crate) fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the tests crate lives in the repository")
        .to_owned()
}

/// istioctl and pilot-agent, built by scripts/tools (once per test binary: the tests run in
/// parallel, and two builds of one tool into one cache directory would collide).
fn binaries() -> &'static (PathBuf, PathBuf) {
    static BINARIES: OnceLock<(PathBuf, PathBuf)> = OnceLock::new();
    BINARIES.get_or_init(|| {
        let istioctl = rwxnfs_testbed::upstream::tool("istio", "istioctl");
        let agent = istioctl.with_file_name("pilot-agent");
        assert!(agent.is_file(), "the istio tool group has no pilot-agent");
        (istioctl, agent)
    })
}

/// istioctl, offline. Without a kubeconfig client-go would try localhost:8080, where another
/// program on the machine may listen (`kube-inject` asks a cluster for the default revision
/// unless told one): this kubeconfig names a loopback port nothing listens on.
pub(crate) fn istioctl() -> Command {
    static KUBECONFIG: OnceLock<(TempDir, PathBuf)> = OnceLock::new();
    let (_, kubeconfig) = KUBECONFIG.get_or_init(|| {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let path = dir.path().join("kubeconfig");
        std::fs::write(
            &path,
            "apiVersion: v1\nkind: Config\nclusters: [{name: none, cluster: {server: \"https://127.0.0.1:1\"}}]\n\
             contexts: [{name: none, context: {cluster: none, user: none}}]\nusers: [{name: none, user: {}}]\n\
             current-context: none\n",
        )
        .expect("write");
        (dir, path)
    });
    let mut command = Command::new(&binaries().0);
    command.env("KUBECONFIG", kubeconfig);
    command
}

pub(crate) fn pilot_agent() -> &'static Path {
    &binaries().1
}

/// `kubectl kustomize DIR`: offline. A missing kubectl fails the test, loudly.
pub(crate) fn kustomize(dir: &Path) -> String {
    let out = Command::new("kubectl")
        .arg("kustomize")
        .arg(dir)
        .output()
        .unwrap_or_else(|e| {
            panic!("cannot run kubectl ({e}): install it with scripts/install-test-deps")
        });
    assert!(
        out.status.success(),
        "kubectl kustomize {}: {}",
        dir.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("kustomize prints UTF-8")
}

/// Every object of a multi-document YAML stream, as JSON values.
pub(crate) fn documents(yaml: &str) -> Vec<Value> {
    serde_yaml_ng::Deserializer::from_str(yaml)
        .map(|doc| Value::deserialize(doc).expect("YAML"))
        .filter(|v| !v.is_null())
        .collect()
}

/// `objects` as one multi-document YAML stream.
pub(crate) fn to_yaml(objects: &[Value]) -> String {
    objects
        .iter()
        .map(|o| serde_yaml_ng::to_string(o).expect("YAML"))
        .collect::<Vec<_>>()
        .join("---\n")
}

/// The object of `kind` named `name` among `objects`.
pub(crate) fn find<'a>(objects: &'a [Value], kind: &str, name: &str) -> &'a Value {
    objects
        .iter()
        .find(|o| o["kind"] == kind && o["metadata"]["name"] == name)
        .unwrap_or_else(|| panic!("no {kind} {name}"))
}

/// What a running istiod would hand the injector, rendered offline: the
/// `istio-sidecar-injector` ConfigMap's `config` (the templates) and `values`, and the `istio`
/// ConfigMap's `mesh`, each in a file of its own for `kube-inject`.
pub(crate) struct Install {
    dir: TempDir,
}

/// `istioctl manifest generate` with `settings` (`--set` arguments), offline: the objects an
/// install of that profile creates.
pub(crate) fn manifest_generate(settings: &[&str]) -> Vec<Value> {
    let mut command = istioctl();
    command.args(["manifest", "generate"]);
    for s in settings {
        command.args(["--set", s]);
    }
    let out = command.output().expect("run istioctl");
    assert!(
        out.status.success(),
        "istioctl manifest generate {settings:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    documents(&String::from_utf8_lossy(&out.stdout))
}

impl Install {
    /// The injector's files of an install with `settings`.
    pub(crate) fn generate(settings: &[&str]) -> Self {
        let objects = manifest_generate(settings);
        let injector = &find(&objects, "ConfigMap", "istio-sidecar-injector")["data"];
        let mesh = &find(&objects, "ConfigMap", "istio")["data"]["mesh"];
        let dir = tempfile::tempdir().expect("a temporary directory");
        for (file, value) in [
            ("inject-config.yaml", &injector["config"]),
            ("values.json", &injector["values"]),
            ("mesh.yaml", mesh),
        ] {
            let text = value
                .as_str()
                .unwrap_or_else(|| panic!("manifest generate rendered no {file}"));
            std::fs::write(dir.path().join(file), text).expect("write");
        }
        Install { dir }
    }

    /// `istioctl kube-inject` of `yaml` with this install's files and `env` set (istiod's
    /// feature flags are environment variables): the injected objects and what it warned.
    pub(crate) fn kube_inject(&self, yaml: &str, env: &[(&str, &str)]) -> (Vec<Value>, String) {
        let input = self.dir.path().join("input.yaml");
        std::fs::write(&input, yaml).expect("write");
        let file = |f: &str| self.dir.path().join(f);
        let out = istioctl()
            .args(["kube-inject", "--revision", "default"])
            .arg("--filename")
            .arg(&input)
            .arg("--injectConfigFile")
            .arg(file("inject-config.yaml"))
            .arg("--valuesFile")
            .arg(file("values.json"))
            .arg("--meshConfigFile")
            .arg(file("mesh.yaml"))
            .envs(env.iter().copied())
            .output()
            .expect("run istioctl");
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        assert!(out.status.success(), "istioctl kube-inject: {stderr}");
        (documents(&String::from_utf8_lossy(&out.stdout)), stderr)
    }
}

/// One message of `istioctl analyze`: `Warning [IST0118] (Service ns/name) text`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Message {
    pub level: String,
    pub code: String,
    pub line: String,
}

/// What `istioctl analyze` said, and what it left out: the analyzers it skipped for want of a
/// collection, and the kinds (group/version/kind) of the files' objects it did not read.
pub(crate) struct Analysis {
    pub messages: Vec<Message>,
    pub skipped_analyzers: BTreeSet<String>,
    pub unread_kinds: BTreeSet<String>,
}

/// `istioctl analyze` on `files` without a cluster, every message down to Info.
pub(crate) fn analyze(files: &[PathBuf]) -> Analysis {
    let mut command = istioctl();
    command.args(["analyze", "--use-kube=false"]).args(files);
    run_analyze(command, &format!("{files:?}"))
}

/// `istioctl analyze` of everything in the cluster `kubeconfig` reaches.
pub(crate) fn analyze_live(kubeconfig: &Path) -> Analysis {
    let mut command = istioctl();
    command.arg("analyze").env("KUBECONFIG", kubeconfig);
    run_analyze(command, "the cluster")
}

fn run_analyze(mut command: Command, what: &str) -> Analysis {
    let out = command
        .arg("--output-threshold=Info")
        .args(["--failure-threshold=Error", "--all-namespaces"])
        // Its own log says which analyzers ran and which objects it read.
        .arg("--log_output_level=analysis:info,file:debug")
        .output()
        .expect("run istioctl");
    let printed = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let messages: Vec<Message> = printed.lines().filter_map(message).collect();
    // 0: nothing at or above the failure threshold; 79: analyzer messages at or above it.
    let code = out.status.code();
    assert!(
        code == Some(0) || code == Some(79),
        "istioctl analyze {what} failed ({}):\n{printed}",
        out.status
    );
    let errors = messages.iter().any(|m| m.level == "Error");
    assert_eq!(
        code == Some(79),
        errors,
        "the exit code says errors:\n{printed}"
    );
    let after = |line: &str, marker: &str| line.split_once(marker).map(|(_, r)| r.to_owned());
    Analysis {
        messages,
        skipped_analyzers: printed
            .lines()
            .filter_map(|l| after(l, "Skipping analyzer \""))
            .filter_map(|r| r.split_once('"').map(|(name, _)| name.to_owned()))
            .collect(),
        unread_kinds: printed
            .lines()
            .filter_map(|l| after(l, "failed finding schema for group/version/kind: "))
            .map(|k| k.trim().trim_start_matches('/').to_owned())
            .collect(),
    }
}

fn message(line: &str) -> Option<Message> {
    let (level, rest) = line.split_once(" [")?;
    let (code, _) = rest.split_once(']')?;
    if !["Error", "Warning", "Info"].contains(&level) || !code.starts_with("IST") {
        return None;
    }
    Some(Message {
        level: level.to_owned(),
        code: code.to_owned(),
        line: line.to_owned(),
    })
}
