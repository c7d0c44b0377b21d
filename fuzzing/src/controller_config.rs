//! The controller's configuration file (YAML; a ConfigMap in the cluster).

use std::path::Path;

use rwxnfs_controller::config::ControllerConfig;

use crate::{beneath, one_component};

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
