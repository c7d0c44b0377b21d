//! The controller's configuration as shipped, where it is mounted, and the Secret it names.

use std::path::Path;

use rwxnfs_controller::ControllerConfig;

use crate::{
    CONTROLLER,
    objects::{Object, Rendering, driver_renderings, flag, name, repo},
    pods::{args, volume_holding},
};

#[test]
fn config_maps_exist_and_secrets_are_documented() {
    let readme = std::fs::read_to_string(repo().join("README.md")).expect("README.md");
    let deploying = section(&readme, "## Deploying");
    for rendering in driver_renderings() {
        for pod in rendering.pods() {
            for volume in pod.spec().volumes.as_deref().unwrap_or_default() {
                if let Some(cm) = &volume.config_map {
                    let found = rendering
                        .config_maps()
                        .into_iter()
                        .any(|c| name(&c.metadata) == cm.name);
                    assert!(
                        found,
                        "{}: {}: ConfigMap {} is not rendered",
                        rendering.origin, pod.workload, cm.name
                    );
                }
                if let Some(secret) = &volume.secret {
                    let secret_name = secret.secret_name.as_deref().expect("secretName");
                    let rendered = rendering.objects.iter().any(
                        |o| matches!(o, Object::Secret(s) if name(&s.metadata) == secret_name),
                    );
                    assert!(
                        rendered
                            || deploying.contains(&format!("create secret generic {secret_name}")),
                        "{}: Secret {secret_name} is neither rendered nor created in the README's Deploying section",
                        pod.workload
                    );
                }
            }
        }
        controller_config_matches_its_mounts(&rendering, deploying);
    }
}

/// The text of a README section, up to the next one of the same level.
pub(crate) fn section<'a>(readme: &'a str, heading: &str) -> &'a str {
    let start = readme
        .find(&format!("\n{heading}\n"))
        .unwrap_or_else(|| panic!("README.md has no {heading} section"));
    let body = &readme[start + heading.len() + 2..];
    let end = body.find("\n## ").unwrap_or(body.len());
    &body[..end]
}

/// The shipped controller configuration parses, is the file --config names, and its TLS
/// files are the keys of the Secret the README tells to create, where that Secret is mounted.
fn controller_config_matches_its_mounts(rendering: &Rendering, deploying: &str) {
    let (config, file) = shipped_controller_config(rendering);
    let pod = rendering.pod(CONTROLLER);
    let rwxnfs = pod.container("rwxnfs");
    let config_path = flag(args(rwxnfs), "config").expect("--config");
    let (volume, rest) = volume_holding(rwxnfs, config_path);
    let source = pod
        .spec()
        .volumes
        .as_deref()
        .unwrap_or_default()
        .iter()
        .find(|v| v.name == volume)
        .and_then(|v| v.config_map.as_ref())
        .expect("the configuration comes from a ConfigMap");
    assert!(source.name.starts_with("rwxnfs-controller-config"));
    assert_eq!(
        rest.trim_start_matches('/'),
        file,
        "--config names the ConfigMap's key"
    );
    for backend in &config.backends {
        let tls = backend
            .agent
            .as_ref()
            .and_then(|agent| agent.tls.as_ref())
            .expect("the shipped backend is an agent backend with TLS");
        for path in [&tls.ca, &tls.cert, &tls.key] {
            let path = path.to_str().expect("UTF-8");
            let (volume, key) = volume_holding(rwxnfs, path);
            let secret = pod
                .spec()
                .volumes
                .as_deref()
                .unwrap_or_default()
                .iter()
                .find(|v| v.name == volume)
                .and_then(|v| v.secret.as_ref())
                .unwrap_or_else(|| panic!("{path}: not on a Secret volume"));
            let key = key.trim_start_matches('/');
            assert!(
                deploying.contains(&format!("--from-file={key}=")),
                "the README's Deploying section does not put {key} in Secret {:?}",
                secret.secret_name
            );
        }
    }
}

/// The controller configuration in the rendered ConfigMap, and its key.
pub(crate) fn shipped_controller_config(rendering: &Rendering) -> (ControllerConfig, String) {
    let cm = rendering
        .config_maps()
        .into_iter()
        .find(|c| name(&c.metadata).starts_with("rwxnfs-controller-config"))
        .unwrap_or_else(|| panic!("{}: no controller ConfigMap", rendering.origin));
    let data = cm.data.clone().unwrap_or_default();
    assert_eq!(data.len(), 1, "one file in the controller's ConfigMap");
    let (file, text) = data.into_iter().next().expect("one entry");
    let config = ControllerConfig::parse(&text, Path::new(&file))
        .unwrap_or_else(|e| panic!("the shipped controller configuration: {e}"));
    (config, file)
}
