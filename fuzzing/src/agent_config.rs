//! The agent's configuration file (YAML).

use std::path::Path;

use rwxnfs_agent::config::AgentConfig;

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
