//! Configuration files and manifests: the agent's and the controller's YAML, and the
//! doctor's offline input (multi-document YAML from files or standard input).

use std::path::Path;

use rwxnfs_agent::config::AgentConfig;
use rwxnfs_controller::config::ControllerConfig;
use rwxnfs_doctor::{Objects, analyze, load::add_text};

use crate::{beneath, one_component};

/// Input: an agent configuration file.
pub fn agent_config(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(config) = AgentConfig::parse(text, Path::new("agent.yaml")) else {
        return;
    };
    assert!(config.export_root.is_absolute());
    assert!(config.state_dir.is_absolute());
    assert!(config.default_mode() <= 0o7777);
    assert!(!config.listen.is_empty());
}

/// Input: a controller configuration file.
pub fn controller_config(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(config) = ControllerConfig::parse(text, Path::new("controller.yaml")) else {
        return;
    };
    assert!(!config.backends.is_empty());
    for backend in &config.backends {
        assert!(one_component(&backend.name), "{}", backend.name);
        if let Some(subdir) = &backend.subdir {
            // The share is where every claim's directory is made: a plain absolute path.
            assert!(
                beneath(Path::new("/"), Path::new(&subdir.share)),
                "share {:?}",
                subdir.share
            );
        }
    }
}

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
