//! The controller's configuration file (YAML; a ConfigMap in the cluster).
//!
//! ```yaml
//! backends:
//!   - name: ha1                        # StorageClass parameter `backend: ha1`
//!     agent:
//!       endpoint: tcp://192.168.222.25:9820
//!       tls: {ca: /tls/ca.crt, cert: /tls/tls.crt, key: /tls/tls.key, serverName: rwxnfs-agent}
//!     server: 192.168.222.25           # where nodes mount from (default: the agent's VIPs)
//!     serverName: nfs.example.com      # for NFS over TLS: the name in the NFS hosts' certificate
//! nodes:                               # node id -> addresses, when not resolved through Kubernetes
//!   node-a: [10.0.0.11]
//! ```
//!
//! Every key is checked: an unknown key is an error naming it and the file.

use std::{
    collections::BTreeMap,
    net::IpAddr,
    path::{Path, PathBuf},
};

use rwxnfs_model::Name;
use serde::Deserialize;

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read the controller configuration {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("controller configuration {path}: {message}")]
    Invalid { path: PathBuf, message: String },
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ControllerConfig {
    pub backends: Vec<BackendConfig>,
    /// Node id -> the addresses the NFS server sees for it.
    #[serde(default)]
    pub nodes: BTreeMap<String, Vec<IpAddr>>,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct BackendConfig {
    pub name: String,
    /// Per-claim exports through the export agent on an HA NFS cluster.
    #[serde(default)]
    pub agent: Option<AgentBackendConfig>,
    /// One directory per claim on an existing export (a managed NFS share, a NAS), made through
    /// a userspace NFSv3 client: no agent, no mount privileges, capacity not enforced.
    #[serde(default)]
    pub subdir: Option<SubdirBackendConfig>,
    /// Where nodes mount from; default: the first address the agent reports (for a subdir
    /// backend: its `server`).
    #[serde(default)]
    pub server: Option<IpAddr>,
    /// The NFS hosts' name for NFS over TLS (StorageClass `transport: tls|mtls`): the name
    /// their certificate carries. Nodes mount TLS claims by this name at `server`'s address
    /// (they need not resolve it); without it such claims are refused.
    #[serde(default)]
    pub server_name: Option<String>,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct SubdirBackendConfig {
    /// The NFS server's address.
    pub server: IpAddr,
    /// The existing export the claims' directories go in, e.g. /exports/k8s.
    pub share: String,
    /// mountd's port; default: asked of the server's portmapper (111).
    #[serde(default)]
    pub mount_port: Option<u16>,
    /// NFS's port; default: asked of the portmapper.
    #[serde(default)]
    pub nfs_port: Option<u16>,
    /// Upper bound of one call on the share, in seconds (default 30).
    #[serde(default)]
    pub timeout_seconds: Option<u64>,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct AgentBackendConfig {
    pub endpoint: String,
    #[serde(default)]
    pub tls: Option<ClientTls>,
    /// Upper bound of one agent call, in seconds (default 30).
    #[serde(default)]
    pub timeout_seconds: Option<u64>,
}

/// The controller's side of the agent's mutual TLS. The files are read at start (an error stops
/// the controller) and again for every new connection, so a renewed Secret needs no restart.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ClientTls {
    pub ca: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
    /// The name in the agent's certificate (default: the endpoint's host).
    #[serde(default)]
    pub server_name: Option<String>,
}

impl ControllerConfig {
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        Self::parse(&text, path)
    }

    pub fn parse(text: &str, path: &Path) -> Result<Self, ConfigError> {
        let invalid = |message: String| ConfigError::Invalid {
            path: path.to_owned(),
            message,
        };
        let config: Self = serde_yaml_ng::from_str(text).map_err(|e| invalid(e.to_string()))?;
        if config.backends.is_empty() {
            return Err(invalid("backends: configure at least one backend".into()));
        }
        let mut seen = std::collections::BTreeSet::new();
        for (i, b) in config.backends.iter().enumerate() {
            Name::parse(&b.name).map_err(|e| invalid(format!("backends[{i}].name: {e}")))?;
            if !seen.insert(b.name.clone()) {
                return Err(invalid(format!(
                    "backends[{i}].name: {} is used twice",
                    b.name
                )));
            }
            if let Some(name) = &b.server_name
                && !rwxnfs_model::volume_context::is_host_name(name)
            {
                return Err(invalid(format!(
                    "backends[{i}].serverName: {name:?} is not a host name (the name in the NFS \
                     hosts' certificate, e.g. nfs.example.com)"
                )));
            }
            match (&b.agent, &b.subdir) {
                (Some(agent), None) => {
                    let endpoint: rwxnfs_server::Endpoint = agent
                        .endpoint
                        .parse()
                        .map_err(|e| invalid(format!("backends[{i}].agent.endpoint: {e}")))?;
                    if matches!(endpoint, rwxnfs_server::Endpoint::Tcp(_)) && agent.tls.is_none() {
                        return Err(invalid(format!(
                            "backends[{i}].agent.tls: a TCP agent endpoint needs TLS (ca, cert, key)"
                        )));
                    }
                }
                (None, Some(subdir)) => {
                    let share = Path::new(&subdir.share);
                    // Every claim's directory is made beneath it: no way up out of it.
                    if !subdir.share.starts_with('/')
                        || share
                            .components()
                            .any(|c| c == std::path::Component::ParentDir)
                    {
                        return Err(invalid(format!(
                            "backends[{i}].subdir.share: {:?} is not an absolute export path",
                            subdir.share
                        )));
                    }
                }
                _ => {
                    return Err(invalid(format!(
                        "backends[{i}] ({}): give exactly one of `agent` and `subdir`",
                        b.name
                    )));
                }
            }
        }
        Ok(config)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<ControllerConfig, ConfigError> {
        ControllerConfig::parse(text, Path::new("/etc/rwxnfs/controller.yaml"))
    }

    #[test]
    fn the_documented_example_parses() {
        let text = "backends:\n  - name: ha1\n    agent:\n      endpoint: tcp://192.168.222.25:9820\n      tls: {ca: /tls/ca.crt, cert: /tls/tls.crt, key: /tls/tls.key, serverName: rwxnfs-agent}\n    server: 192.168.222.25\n    serverName: nfs.example.com\nnodes:\n  node-a: [10.0.0.11]\n";
        let config = parse(text).unwrap();
        assert_eq!(config.backends[0].name, "ha1");
        assert_eq!(
            config.backends[0].server_name.as_deref(),
            Some("nfs.example.com")
        );
        assert_eq!(
            config.nodes["node-a"],
            vec!["10.0.0.11".parse::<IpAddr>().unwrap()]
        );
    }

    #[test]
    fn mistakes_are_named() {
        for (text, needle) in [
            ("backends: []\n", "at least one"),
            (
                "backends:\n  - name: a\n    agent: {endpoint: \"unix:///a\"}\n    sever: 1.2.3.4\n",
                "sever",
            ),
            (
                "backends:\n  - name: a/b\n    agent: {endpoint: \"unix:///a\"}\n",
                "backends[0].name",
            ),
            (
                "backends:\n  - name: a\n    agent: {endpoint: \"unix:///a\"}\n    serverName: 192.0.2.1\n",
                "backends[0].serverName: \"192.0.2.1\" is not a host name",
            ),
            (
                "backends:\n  - name: a\n    agent: {endpoint: \"tcp://h:1\"}\n",
                "needs TLS",
            ),
            (
                "backends:\n  - {name: a, agent: {endpoint: \"unix:///a\"}}\n  - {name: a, agent: {endpoint: \"unix:///b\"}}\n",
                "twice",
            ),
            (
                "backends:
  - name: a
",
                "exactly one of `agent` and `subdir`",
            ),
            (
                "backends:
  - name: a
    agent: {endpoint: \"unix:///a\"}
    subdir: {server: 10.0.0.5, share: /k8s}
",
                "exactly one",
            ),
            (
                "backends:
  - name: a
    subdir: {server: 10.0.0.5, share: k8s}
",
                "backends[0].subdir.share",
            ),
            (
                // Found by the controller_config fuzz target's invariant: a trailing ".."
                // passed the check for "/../".
                "backends:
  - name: a
    subdir: {server: 10.0.0.5, share: /srv/..}
",
                "backends[0].subdir.share",
            ),
            (
                "backends:
  - name: a
    subdir: {server: 10.0.0.5, share: /k8s, mountport: 1}
",
                "mountport",
            ),
        ] {
            let err = parse(text).unwrap_err().to_string();
            assert!(err.contains(needle), "{text:?}: {err}");
        }
    }
}
