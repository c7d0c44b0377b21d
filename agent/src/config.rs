//! The agent's configuration file (YAML).
//!
//! Every key is checked: an unknown or misspelt key, or a value of the wrong kind, is a
//! start-up error that names the key and the file. See the README's "Agent configuration"
//! section for the full reference; [`EXAMPLE`] is a complete, valid file.

use std::{
    net::IpAddr,
    path::{Path, PathBuf},
};

use ipnet::IpNet;
use serde::Deserialize;

use crate::{
    fs::QuotaKind,
    table::{OnDelete, Squash},
};

/// A complete configuration, also used by tests and the documentation.
pub const EXAMPLE: &str = r#"# rwxnfs agent configuration
exportRoot: /drbd/exports          # the replicated filesystem's mount point
stateDir: /drbd/exports/.rwxnfs    # export table and NFS server state (on the replicated fs)
nfsServer:
  kind: ganesha                    # ganesha | kernel
  dbusAddress: unix:path=/run/dbus/system_bus_socket
quota: auto                        # auto | xfs | btrfs | none
defaults:
  sizeBytes: 1073741824            # when a request asks for no size
  squash: root                     # none | root | all
  uid: 0
  gid: 0
  mode: "2775"                     # octal, of each volume's root directory
  onDelete: delete                 # delete | retain | archive
allowedClients: [10.0.0.0/8]       # addresses that may ever be granted access (empty: any)
serverAddresses: [192.168.222.25]  # the VIP(s) clients mount from
listen:
  - tcp://0.0.0.0:9820
  - unix:///run/rwxnfs/agent.sock
tls:                               # each file re-read for every new connection
  ca: /etc/rwxnfs/tls/ca.crt       # client certificates must chain to this
  cert: /etc/rwxnfs/tls/agent.crt
  key: /etc/rwxnfs/tls/agent.key
  allowedClientNames: [rwxnfs-controller]  # a DNS or URI SAN, or the CN, of the client's certificate
limits:
  maxMessageBytes: 1048576         # one request message
  maxConcurrentCallsPerClient: 256 # calls in flight per client name (one for all local callers)
"#;

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read the agent configuration {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("agent configuration {path}: {message}")]
    Invalid { path: PathBuf, message: String },
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct AgentConfig {
    pub export_root: PathBuf,
    pub state_dir: PathBuf,
    #[serde(default)]
    pub nfs_server: NfsServer,
    #[serde(default)]
    pub quota: QuotaSetting,
    #[serde(default)]
    pub defaults: Defaults,
    #[serde(default)]
    pub allowed_clients: Vec<IpNet>,
    #[serde(default)]
    pub server_addresses: Vec<IpAddr>,
    pub listen: Vec<String>,
    #[serde(default)]
    pub tls: Option<TlsFiles>,
    #[serde(default)]
    pub limits: LimitsConfig,
}

#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(tag = "kind", rename_all = "lowercase", deny_unknown_fields)]
pub enum NfsServer {
    #[serde(rename_all = "camelCase")]
    Ganesha {
        /// D-Bus address of the bus Ganesha listens on (default: the system bus).
        #[serde(default)]
        dbus_address: Option<String>,
        /// NFS versions to export with (default [4]).
        #[serde(default)]
        protocols: Option<Vec<u8>>,
        /// Ganesha's `Dbus_Name_Prefix`, when it is set (several instances on one bus).
        #[serde(default)]
        dbus_name_prefix: Option<String>,
    },
    #[serde(rename_all = "camelCase")]
    Kernel {
        /// How a change reaches the kernel: `etab` (default), nfs-utils' table written
        /// directly, or `exportfs`, an exports file and `exportfs -r`.
        #[serde(default)]
        apply: KernelApplySetting,
        /// With `apply: exportfs`: the exports file regenerated from the table (default
        /// /etc/exports.d/rwxnfs.exports).
        #[serde(default)]
        exports_file: Option<PathBuf>,
    },
}

impl Default for NfsServer {
    fn default() -> Self {
        NfsServer::Ganesha {
            dbus_address: None,
            protocols: None,
            dbus_name_prefix: None,
        }
    }
}

/// `nfsServer.apply` for kernel nfsd (the exporter's module documentation says why `etab`).
#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum KernelApplySetting {
    #[default]
    Etab,
    Exportfs,
}

#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum QuotaSetting {
    #[default]
    Auto,
    Xfs,
    Btrfs,
    None,
}

impl QuotaSetting {
    /// None for auto-detection.
    pub fn requested(self) -> Option<QuotaKind> {
        match self {
            QuotaSetting::Auto => None,
            QuotaSetting::Xfs => Some(QuotaKind::Xfs),
            QuotaSetting::Btrfs => Some(QuotaKind::Btrfs),
            QuotaSetting::None => Some(QuotaKind::None),
        }
    }
}

#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, rename_all = "camelCase", default)]
pub struct Defaults {
    pub size_bytes: u64,
    pub squash: Squash,
    pub uid: u32,
    pub gid: u32,
    /// Octal permission bits, as a string ("2775").
    pub mode: String,
    pub on_delete: OnDelete,
}

impl Default for Defaults {
    fn default() -> Self {
        Self {
            size_bytes: 1 << 30,
            squash: Squash::Root,
            uid: 0,
            gid: 0,
            mode: "2775".into(),
            on_delete: OnDelete::Delete,
        }
    }
}

#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct TlsFiles {
    pub ca: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
    /// Who may call: one of these must be a DNS or URI subject alternative name, or the common
    /// name, of the client's certificate (default: the controller's, `rwxnfs-controller`).
    #[serde(default = "default_allowed_client_names")]
    pub allowed_client_names: Vec<String>,
}

/// The name of the controller's client certificate in the manifests and the README.
pub const CONTROLLER_NAME: &str = "rwxnfs-controller";

fn default_allowed_client_names() -> Vec<String> {
    vec![CONTROLLER_NAME.to_owned()]
}

impl TlsFiles {
    pub fn files(&self) -> rwxnfs_server::tls::TlsFiles {
        rwxnfs_server::tls::TlsFiles {
            ca: self.ca.clone(),
            cert: self.cert.clone(),
            key: self.key.clone(),
        }
    }
}

/// Bounds on what a client may ask at once.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, rename_all = "camelCase", default)]
pub struct LimitsConfig {
    /// The largest request message; the agent's largest legitimate one is a few kilobytes.
    pub max_message_bytes: usize,
    /// Calls in flight per client name: the controller's sidecars send at most about 130 at
    /// once (the provisioner's 100 workers, 10 each for the attacher, the resizer and the
    /// snapshotter).
    pub max_concurrent_calls_per_client: usize,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        Self {
            max_message_bytes: 1 << 20,
            max_concurrent_calls_per_client: 256,
        }
    }
}

impl LimitsConfig {
    pub fn limits(&self) -> crate::guard::Limits {
        crate::guard::Limits {
            max_message_bytes: self.max_message_bytes,
            max_concurrent_calls_per_client: self.max_concurrent_calls_per_client,
        }
    }
}

/// Parses octal permission bits ("2775", "0755"), at most 0o7777.
pub fn parse_mode(raw: &str) -> Result<u32, String> {
    u32::from_str_radix(raw.trim_start_matches("0o"), 8)
        .ok()
        .filter(|m| *m <= 0o7777)
        .ok_or_else(|| format!("mode {raw:?} is not octal permission bits such as \"2775\""))
}

/// Whether `exportfs -r` (and nfs-server's start) reads `file`: the agent's exports reach the
/// kernel through it, so a file anywhere else would unexport them all.
fn exportfs_reads(file: &Path) -> bool {
    file.parent() == Some(Path::new("/etc/exports.d"))
        && file.extension().is_some_and(|e| e == "exports")
        && file.file_stem().is_some_and(|s| !s.is_empty())
}

impl AgentConfig {
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        Self::parse(&text, path)
    }

    /// Parses and validates; `path` only names the file in errors.
    pub fn parse(text: &str, path: &Path) -> Result<Self, ConfigError> {
        let invalid = |message: String| ConfigError::Invalid {
            path: path.to_owned(),
            message,
        };
        let config: Self = serde_yaml_ng::from_str(text).map_err(|e| invalid(e.to_string()))?;
        config.validate().map_err(invalid)?;
        Ok(config)
    }

    fn validate(&self) -> Result<(), String> {
        for (key, dir) in [
            ("exportRoot", &self.export_root),
            ("stateDir", &self.state_dir),
        ] {
            if !dir.is_absolute() {
                return Err(format!("{key}: {} is not an absolute path", dir.display()));
            }
        }
        if self.listen.is_empty() {
            return Err(
                "listen: give at least one endpoint (tcp://host:port or unix:///path)".into(),
            );
        }
        for raw in &self.listen {
            raw.parse::<rwxnfs_server::Endpoint>()
                .map_err(|e| format!("listen: {e}"))?;
        }
        parse_mode(&self.defaults.mode).map_err(|e| format!("defaults.mode: {e}"))?;
        if let Some(tls) = &self.tls
            && (tls.allowed_client_names.is_empty()
                || tls.allowed_client_names.iter().any(|n| n.trim().is_empty()))
        {
            return Err(format!(
                "tls.allowedClientNames: {:?} must name at least one client certificate \
                 (default [{CONTROLLER_NAME}]), and no name may be empty",
                tls.allowed_client_names
            ));
        }
        for (key, value) in [
            ("limits.maxMessageBytes", self.limits.max_message_bytes),
            (
                "limits.maxConcurrentCallsPerClient",
                self.limits.max_concurrent_calls_per_client,
            ),
        ] {
            if value == 0 {
                return Err(format!("{key}: must be greater than 0"));
            }
        }
        if self.defaults.size_bytes == 0 {
            return Err("defaults.sizeBytes: must be greater than 0".into());
        }
        if let NfsServer::Ganesha {
            protocols: Some(protocols),
            ..
        } = &self.nfs_server
            && (protocols.is_empty() || protocols.iter().any(|p| !matches!(p, 3 | 4)))
        {
            return Err(format!(
                "nfsServer.protocols: {protocols:?} must be a non-empty list of 3 and/or 4"
            ));
        }
        if let NfsServer::Kernel {
            apply: KernelApplySetting::Etab,
            exports_file: Some(file),
        } = &self.nfs_server
        {
            return Err(format!(
                "nfsServer.exportsFile: {} is used only with `apply: exportfs`; with the \
                 default `apply: etab` no exports file names the agent's exports (remove the key)",
                file.display()
            ));
        }
        if let NfsServer::Kernel {
            exports_file: Some(file),
            ..
        } = &self.nfs_server
            && !exportfs_reads(file)
        {
            return Err(format!(
                "nfsServer.exportsFile: {} is not a file exportfs -r reads; give a file in \
                 /etc/exports.d ending in .exports",
                file.display()
            ));
        }
        Ok(())
    }

    /// Whether any listen endpoint is TCP (which then needs TLS).
    pub fn listens_on_tcp(&self) -> bool {
        self.listen.iter().any(|l| l.starts_with("tcp://"))
    }

    pub fn default_mode(&self) -> u32 {
        parse_mode(&self.defaults.mode).unwrap_or(0o2775)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<AgentConfig, ConfigError> {
        AgentConfig::parse(text, Path::new("/etc/rwxnfs/agent.yaml"))
    }

    #[test]
    fn the_example_is_valid() {
        let config = parse(EXAMPLE).unwrap();
        assert_eq!(config.export_root, Path::new("/drbd/exports"));
        assert_eq!(config.default_mode(), 0o2775);
        assert!(config.listens_on_tcp());
        let tls = config.tls.unwrap();
        assert_eq!(tls.allowed_client_names, [CONTROLLER_NAME]);
        assert_eq!(config.limits, LimitsConfig::default());
    }

    #[test]
    fn the_allowed_client_names_default_to_the_controllers_and_may_not_be_empty() {
        let base = "exportRoot: /e\nstateDir: /e/.s\nlisten: [unix:///run/a.sock]\n";
        let config = parse(&format!("{base}tls: {{ca: /c, cert: /t, key: /k}}\n")).unwrap();
        assert_eq!(config.tls.unwrap().allowed_client_names, [CONTROLLER_NAME]);
        for names in ["[]", "[\"\"]"] {
            let err = parse(&format!(
                "{base}tls: {{ca: /c, cert: /t, key: /k, allowedClientNames: {names}}}\n"
            ))
            .unwrap_err()
            .to_string();
            assert!(err.contains("tls.allowedClientNames"), "{err}");
        }
        let err = parse(&format!(
            "{base}limits: {{maxConcurrentCallsPerClient: 0}}\n"
        ))
        .unwrap_err()
        .to_string();
        assert!(err.contains("limits.maxConcurrentCallsPerClient"), "{err}");
    }

    #[test]
    fn a_minimal_file_gets_defaults() {
        let config =
            parse("exportRoot: /e\nstateDir: /e/.s\nlisten: [unix:///run/a.sock]\n").unwrap();
        assert_eq!(config.quota, QuotaSetting::Auto);
        assert_eq!(config.defaults, Defaults::default());
        assert!(matches!(config.nfs_server, NfsServer::Ganesha { .. }));
    }

    #[test]
    fn an_unknown_key_is_an_error_naming_the_key_and_the_file() {
        let err = parse("exportRoot: /e\nstateDir: /s\nlisten: [unix:///a]\nexportRot: /x\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("exportRot"), "{err}");
        assert!(err.contains("/etc/rwxnfs/agent.yaml"), "{err}");
    }

    #[test]
    fn a_nested_unknown_key_is_an_error() {
        let err =
            parse("exportRoot: /e\nstateDir: /s\nlisten: [unix:///a]\ndefaults: {sqash: all}\n")
                .unwrap_err()
                .to_string();
        assert!(err.contains("sqash"), "{err}");
    }

    #[test]
    fn wrong_values_are_errors_naming_the_key() {
        for (text, key) in [
            (
                "exportRoot: rel\nstateDir: /s\nlisten: [unix:///a]\n",
                "exportRoot",
            ),
            ("exportRoot: /e\nstateDir: /s\nlisten: []\n", "listen"),
            (
                "exportRoot: /e\nstateDir: /s\nlisten: [http://x]\n",
                "listen",
            ),
            (
                "exportRoot: /e\nstateDir: /s\nlisten: [unix:///a]\nquota: zfs\n",
                "zfs",
            ),
            (
                "exportRoot: /e\nstateDir: /s\nlisten: [unix:///a]\ndefaults: {mode: \"999\"}\n",
                "defaults.mode",
            ),
            (
                "exportRoot: /e\nstateDir: /s\nlisten: [unix:///a]\nallowedClients: [10.0.0.300/8]\n",
                "allowedClients",
            ),
            (
                "exportRoot: /e\nstateDir: /s\nlisten: [unix:///a]\nnfsServer: {kind: ganesha, protocols: [2]}\n",
                "protocols",
            ),
        ] {
            let err = parse(text).unwrap_err().to_string();
            assert!(err.contains(key), "{text:?}: {err}");
        }
    }

    #[test]
    fn the_kernel_exports_file_must_be_one_exportfs_reads() {
        let config = |file: &str| {
            parse(&format!(
                "exportRoot: /e\nstateDir: /e/.s\nlisten: [unix:///run/a.sock]\n\
                 nfsServer: {{ kind: kernel, apply: exportfs, exportsFile: {file} }}\n"
            ))
        };
        config("/etc/exports.d/rwxnfs.exports").unwrap();
        for wrong in [
            "/etc/exports.d/rwxnfs.conf",
            "/srv/rwxnfs.exports",
            "/etc/exports",
        ] {
            let err = config(wrong).unwrap_err().to_string();
            assert!(
                err.contains("nfsServer.exportsFile") && err.contains(wrong),
                "{err}"
            );
        }
    }

    #[test]
    fn the_kernel_exporter_writes_the_etab_unless_told_to_run_exportfs() {
        let config = |server: &str| {
            parse(&format!(
                "exportRoot: /e\nstateDir: /e/.s\nlisten: [unix:///run/a.sock]\n\
                 nfsServer: {server}\n"
            ))
        };
        let kernel = |c: AgentConfig| match c.nfs_server {
            NfsServer::Kernel { apply, .. } => apply,
            other => panic!("{other:?}"),
        };
        assert_eq!(
            kernel(config("{ kind: kernel }").unwrap()),
            KernelApplySetting::Etab
        );
        assert_eq!(
            kernel(config("{ kind: kernel, apply: exportfs }").unwrap()),
            KernelApplySetting::Exportfs
        );
        let err = config("{ kind: kernel, exportsFile: /etc/exports.d/rwxnfs.exports }")
            .unwrap_err()
            .to_string();
        assert!(err.contains("apply: exportfs"), "{err}");
        let err = config("{ kind: kernel, apply: sometimes }")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("sometimes") && err.contains("exportfs"),
            "{err}"
        );
    }

    #[test]
    fn modes_parse_as_octal() {
        assert_eq!(parse_mode("2775"), Ok(0o2775));
        assert_eq!(parse_mode("0755"), Ok(0o755));
        assert!(parse_mode("8").is_err());
        assert!(parse_mode("17777").is_err());
    }
}
