//! The sidecars' versions: the images the manifests name against tools/versions, from which
//! scripts/tools builds the copies the tests run, so what is tested is what is deployed.

use std::collections::BTreeMap;

use crate::objects::{Rendering, repo};

/// The sidecars the tests build: each must be in tools/versions and in the base. The driver's
/// pods run nothing else but the rwxnfs image (the Containerfile's): node-driver-registrar and
/// livenessprobe, whose modules this machine's module proxy refuses, are served by rwxnfs
/// itself (`--registration-socket`, `--health-address`).
const BUILT_SIDECARS: [&str; 4] = [
    "csi-provisioner",
    "csi-attacher",
    "csi-resizer",
    "csi-snapshotter",
];

const REGISTRY: &str = "registry.k8s.io/sig-storage/";

/// One line of tools/versions: `name module version local packages...`.
#[derive(Debug)]
pub(crate) struct Tool {
    pub module: String,
    pub version: String,
}

/// tools/versions by tool name; a malformed line fails with its number.
pub(crate) fn tools() -> BTreeMap<String, Tool> {
    let path = repo().join("tools/versions");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    parse(&text, &path.display().to_string())
}

fn parse(text: &str, origin: &str) -> BTreeMap<String, Tool> {
    let mut tools = BTreeMap::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.split('#').next().unwrap_or_default();
        let fields: Vec<&str> = line.split_whitespace().collect();
        if fields.is_empty() {
            continue;
        }
        let at = format!("{origin}:{}", i + 1);
        let &[name, module, version, local, ref packages @ ..] = fields.as_slice() else {
            panic!("{at}: not `name module version local packages...`: {line:?}");
        };
        assert!(!packages.is_empty(), "{at}: {name} builds no package");
        for v in [version].into_iter().chain((local != "-").then_some(local)) {
            assert!(
                v.starts_with('v') && v[1..].split('.').count() == 3,
                "{at}: {v:?} is not a vMAJOR.MINOR.PATCH version"
            );
        }
        let tool = Tool {
            module: module.to_owned(),
            version: version.to_owned(),
        };
        assert!(
            tools.insert(name.to_owned(), tool).is_none(),
            "{at}: {name} twice"
        );
    }
    tools
}

/// The project's own image, as the base's `images:` entry names it: built by the Containerfile.
fn is_rwxnfs_image(image: &str) -> bool {
    let repository = image.split('@').next().unwrap_or_default();
    let last = repository.rsplit('/').next().unwrap_or_default();
    last.split(':').next() == Some("rwxnfs") && !image.starts_with(REGISTRY)
}

/// Every `registry.k8s.io/sig-storage/NAME:TAG` image of a rendering: (container, name, tag).
/// Any other image than these and the rwxnfs image fails: nothing would build it.
fn sidecar_images(r: &Rendering) -> Vec<(String, String, String)> {
    let mut out = Vec::new();
    for pod in r.pods() {
        for c in &pod.spec().containers {
            let image = c.image.as_deref().unwrap_or_default();
            if is_rwxnfs_image(image) {
                continue;
            }
            let Some(rest) = image.strip_prefix(REGISTRY) else {
                panic!(
                    "{}: {} container {} runs {image}, which neither tools/versions nor the \
                     Containerfile builds",
                    r.origin, pod.workload, c.name
                );
            };
            let (name, tag) = rest
                .split_once(':')
                .unwrap_or_else(|| panic!("{}: {image} has no tag", r.origin));
            out.push((
                format!("{} container {}", pod.workload, c.name),
                name.to_owned(),
                tag.to_owned(),
            ));
        }
    }
    out
}

/// The base names each built sidecar; every rendering runs the version tools/versions names.
pub(crate) fn check(base: &Rendering, overlays: &[Rendering]) {
    let tools = tools();
    for sidecar in BUILT_SIDECARS {
        let tool = tools
            .get(sidecar)
            .unwrap_or_else(|| panic!("tools/versions does not name {sidecar}"));
        assert!(
            tool.module.starts_with("github.com/kubernetes-csi/"),
            "tools/versions builds {sidecar} from {}, not kubernetes-csi's module",
            tool.module
        );
        assert!(
            sidecar_images(base)
                .iter()
                .any(|(_, name, _)| name == sidecar),
            "{}: no {REGISTRY}{sidecar} image",
            base.origin
        );
    }
    for r in std::iter::once(base).chain(overlays) {
        for (container, name, tag) in sidecar_images(r) {
            let tool = tools.get(&name).unwrap_or_else(|| {
                panic!(
                    "{}: {container} runs {REGISTRY}{name}, which tools/versions does not \
                     build, so no test runs it",
                    r.origin
                )
            });
            assert_eq!(
                tag, tool.version,
                "{}: {container} runs {name} {tag}, but the tests build and run {} \
                 (tools/versions): change both together",
                r.origin, tool.version
            );
        }
    }
}

#[test]
fn the_rwxnfs_image_is_told_from_the_sidecars() {
    for image in [
        "rwxnfs",
        "ghcr.io/rwxnfs/rwxnfs:0.1.0",
        "registry.example:5000/mirror/rwxnfs@sha256:00",
    ] {
        assert!(is_rwxnfs_image(image), "{image}");
    }
    for image in [
        "registry.k8s.io/sig-storage/livenessprobe:v2.15.0",
        "ghcr.io/rwxnfs/rwxnfs-debug:0.1.0",
        "registry.k8s.io/sig-storage/rwxnfs:v1.0.0",
    ] {
        assert!(!is_rwxnfs_image(image), "{image}");
    }
}

#[test]
fn a_tools_line_parses_with_its_comment_cut_off() {
    let tools = parse(
        "# name module version local packages\n\n\
         csi-snapshotter github.com/kubernetes-csi/external-snapshotter/v8 v8.7.0 v8.7.0 \
         ./cmd/csi-snapshotter ./cmd/snapshot-controller # two binaries\n",
        "test",
    );
    let tool = &tools["csi-snapshotter"];
    assert_eq!(tool.version, "v8.7.0");
    assert_eq!(
        tool.module,
        "github.com/kubernetes-csi/external-snapshotter/v8"
    );
}

#[test]
#[should_panic(expected = "test:1: csi-attacher builds no package")]
fn a_tools_line_without_packages_is_refused() {
    parse(
        "csi-attacher github.com/kubernetes-csi/external-attacher/v4 v4.13.0 -\n",
        "test",
    );
}

#[test]
#[should_panic(expected = "test:2: \"4.13\" is not a vMAJOR.MINOR.PATCH version")]
fn a_tools_line_with_a_bare_version_is_refused() {
    parse(
        "#\ncsi-attacher github.com/kubernetes-csi/external-attacher/v4 4.13 - ./cmd/csi-attacher\n",
        "test",
    );
}
