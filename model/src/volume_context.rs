//! The volume context: what the controller tells the node plugin to mount, carried by CSI as a
//! string map. The controller renders it ([`VolumeContext::to_map`]) and the node parses it
//! ([`VolumeContext::parse`]); a static PV's `volumeAttributes` give the same keys by hand, so
//! the key names and their values are a wire contract and do not change.

use std::collections::HashMap;

use crate::{NfsVersion, ParamError, Transport};

/// The address (or name) nodes mount from.
const SERVER: &str = "server";
/// The export's path on the server, absolute.
const SHARE: &str = "share";
/// `3`, `4.1` or `4.2`; the default when absent.
const NFS_VERSION: &str = "nfsVersion";
/// Comma-separated mount options; absent when there are none.
const MOUNT_OPTIONS: &str = "mountOptions";
/// `none`, `tls` or `mtls`; absent means `none`.
const TRANSPORT: &str = "transport";
/// With TLS: the name the node mounts by, the one the NFS hosts' certificate carries (TLS
/// checks the certificate against the name in the mount's source, not its address); `server`
/// stays the address mounted. Absent: `server`, which must then be a name.
const SERVER_NAME: &str = "serverName";

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VolumeContext {
    pub server: String,
    pub share: String,
    pub nfs_version: NfsVersion,
    /// One option a string, as `mount -o` takes them (`nconnect=4`, `noatime`).
    pub mount_options: Vec<String>,
    pub transport: Transport,
    /// The server's name for TLS ([`SERVER_NAME`]).
    pub server_name: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum VolumeContextError {
    #[error(
        "volume context has no `server`: is this an rwxnfs volume? (static PVs set volumeAttributes server and share)"
    )]
    NoServer,
    #[error("volume context has no absolute `share` (the export path, e.g. /pvc-123)")]
    NoShare,
    #[error(transparent)]
    NfsVersion(#[from] ParamError),
    #[error(transparent)]
    Transport(ParamError),
    #[error("volume context: serverName {0:?} is not a host name")]
    BadServerName(String),
    #[error(
        "volume context: transport {transport} checks the NFS server's certificate against the \
         name the node mounts by, and the server is given only by its address {server}: set \
         serverName to the name its certificate carries (the controller's serverName for the \
         backend; volumeAttributes serverName for a static PV)"
    )]
    TlsByAddress {
        transport: Transport,
        server: String,
    },
}

impl VolumeContext {
    /// The map a CSI volume carries.
    pub fn to_map(&self) -> HashMap<String, String> {
        let mut map = HashMap::from([
            (SERVER.to_owned(), self.server.clone()),
            (SHARE.to_owned(), self.share.clone()),
            (NFS_VERSION.to_owned(), self.nfs_version.to_string()),
        ]);
        if !self.mount_options.is_empty() {
            map.insert(MOUNT_OPTIONS.to_owned(), self.mount_options.join(","));
        }
        if self.transport != Transport::None {
            map.insert(TRANSPORT.to_owned(), self.transport.to_string());
        }
        if let Some(name) = &self.server_name {
            map.insert(SERVER_NAME.to_owned(), name.clone());
        }
        map
    }

    /// The host name a TLS mount names the server by: `serverName`, else `server`.
    pub fn tls_name(&self) -> &str {
        self.server_name.as_deref().unwrap_or(&self.server)
    }

    /// Reads a volume context, as the controller renders it or a static PV gives it. Keys it
    /// does not know are left alone (the CO adds its own, e.g. the PV's name).
    pub fn parse(map: &HashMap<String, String>) -> Result<Self, VolumeContextError> {
        let server = map
            .get(SERVER)
            .filter(|s| !s.is_empty())
            .ok_or(VolumeContextError::NoServer)?;
        let share = map
            .get(SHARE)
            .filter(|s| s.starts_with('/'))
            .ok_or(VolumeContextError::NoShare)?;
        let nfs_version = match map.get(NFS_VERSION) {
            Some(v) => v.parse::<NfsVersion>()?,
            None => NfsVersion::default(),
        };
        let mount_options = map
            .get(MOUNT_OPTIONS)
            .map(|raw| {
                raw.split(',')
                    .filter(|o| !o.trim().is_empty())
                    .map(str::to_owned)
                    .collect()
            })
            .unwrap_or_default();
        let transport = match map.get(TRANSPORT) {
            Some(t) => t.parse().map_err(VolumeContextError::Transport)?,
            None => Transport::None,
        };
        let server_name = match map.get(SERVER_NAME).filter(|n| !n.is_empty()) {
            Some(name) if is_host_name(name) => Some(name.clone()),
            Some(name) => return Err(VolumeContextError::BadServerName(name.clone())),
            None => None,
        };
        let context = Self {
            server: server.clone(),
            share: share.clone(),
            nfs_version,
            mount_options,
            transport,
            server_name,
        };
        if transport.is_tls() && !is_host_name(context.tls_name()) {
            return Err(VolumeContextError::TlsByAddress {
                transport,
                server: server.clone(),
            });
        }
        Ok(context)
    }
}

/// A DNS name (not an address): labels of letters, digits and `-`, joined by dots, with a
/// letter somewhere (an IPv4 address is digits and dots only).
pub fn is_host_name(name: &str) -> bool {
    name.len() <= 253
        && name.bytes().any(|b| b.is_ascii_alphabetic())
        && name.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn map(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn a_rendered_context_parses_back_to_itself() {
        for (mount_options, transport) in [
            (vec![], Transport::None),
            (
                vec!["nconnect=4".to_string(), "noatime".to_string()],
                Transport::Mtls,
            ),
            (vec![], Transport::Tls),
        ] {
            let context = VolumeContext {
                server: "192.0.2.1".into(),
                share: "/pvc-1".into(),
                nfs_version: NfsVersion::V4_1,
                mount_options,
                transport,
                server_name: transport.is_tls().then(|| "nfs.example.com".into()),
            };
            assert_eq!(VolumeContext::parse(&context.to_map()).unwrap(), context);
        }
    }

    /// What static PVs' volumeAttributes and existing volumes carry: the keys do not change.
    #[test]
    fn the_wire_format_is_the_one_static_pvs_use() {
        let context = VolumeContext {
            server: "nfs.example.com".into(),
            share: "/exports/team-a".into(),
            nfs_version: NfsVersion::V3,
            mount_options: vec!["nconnect=4".into(), "noatime".into()],
            transport: Transport::None,
            server_name: None,
        };
        assert_eq!(
            context.to_map(),
            map(&[
                ("server", "nfs.example.com"),
                ("share", "/exports/team-a"),
                ("nfsVersion", "3"),
                ("mountOptions", "nconnect=4,noatime"),
            ])
        );
        let bare = VolumeContext {
            mount_options: vec![],
            nfs_version: NfsVersion::default(),
            ..context
        };
        assert!(!bare.to_map().contains_key("mountOptions"));
        assert!(!bare.to_map().contains_key("transport"));
        let tls = VolumeContext {
            transport: Transport::Mtls,
            ..bare.clone()
        };
        assert_eq!(tls.to_map()["transport"], "mtls");
        let named = VolumeContext {
            server: "192.0.2.1".into(),
            server_name: Some("nfs.example.com".into()),
            ..tls.clone()
        };
        assert_eq!(named.to_map()["serverName"], "nfs.example.com");
        assert_eq!(named.tls_name(), "nfs.example.com");
        assert_eq!(tls.tls_name(), "nfs.example.com", "server is a name there");
        assert_eq!(
            bare.to_map()["nfsVersion"],
            NfsVersion::default().to_string()
        );
    }

    #[test]
    fn a_tls_context_needs_a_name_to_mount_by() {
        let err = VolumeContext::parse(&map(&[
            ("server", "192.0.2.1"),
            ("share", "/pvc-1"),
            ("transport", "mtls"),
        ]))
        .unwrap_err();
        assert!(
            matches!(err, VolumeContextError::TlsByAddress { .. }),
            "{err:?}"
        );
        assert!(err.to_string().contains("set serverName"), "{err}");
        for bad in ["nfs.example.com:/x", "-nfs", "a..b", "nfs/x"] {
            let err = VolumeContext::parse(&map(&[
                ("server", "192.0.2.1"),
                ("share", "/pvc-1"),
                ("serverName", bad),
            ]))
            .unwrap_err();
            assert_eq!(err, VolumeContextError::BadServerName(bad.into()));
        }
        let by_name = VolumeContext::parse(&map(&[
            ("server", "192.0.2.1"),
            ("share", "/pvc-1"),
            ("transport", "tls"),
            ("serverName", "nfs-1.storage.example"),
        ]))
        .unwrap();
        assert_eq!(by_name.tls_name(), "nfs-1.storage.example");
        assert!(!is_host_name("10.0.0.5"));
        assert!(!is_host_name("fd00::1"));
    }

    #[test]
    fn a_static_pv_may_leave_out_the_version_and_options_and_add_keys_of_its_own() {
        let parsed = VolumeContext::parse(&map(&[
            ("server", "10.0.0.5"),
            ("share", "/data"),
            ("csi.storage.k8s.io/pv/name", "pv-1"),
            ("mountOptions", "nconnect=4,,noatime, "),
        ]))
        .unwrap();
        assert_eq!(parsed.nfs_version, NfsVersion::default());
        assert_eq!(parsed.mount_options, ["nconnect=4", "noatime"]);
    }

    #[test]
    fn a_missing_or_bad_key_is_named() {
        let cases = [
            (map(&[("share", "/pvc-1")]), VolumeContextError::NoServer),
            (
                map(&[("server", ""), ("share", "/pvc-1")]),
                VolumeContextError::NoServer,
            ),
            (map(&[("server", "10.0.0.5")]), VolumeContextError::NoShare),
            (
                map(&[("server", "10.0.0.5"), ("share", "pvc-1")]),
                VolumeContextError::NoShare,
            ),
        ];
        for (context, expected) in cases {
            assert_eq!(
                VolumeContext::parse(&context).unwrap_err(),
                expected,
                "{context:?}"
            );
        }
        let err = VolumeContext::parse(&map(&[
            ("server", "10.0.0.5"),
            ("share", "/pvc-1"),
            ("nfsVersion", "5"),
        ]))
        .unwrap_err();
        assert!(matches!(err, VolumeContextError::NfsVersion(_)), "{err:?}");
        assert!(err.to_string().contains("nfsVersion"), "{err}");
        let err = VolumeContext::parse(&map(&[
            ("server", "10.0.0.5"),
            ("share", "/pvc-1"),
            ("transport", "ssl"),
        ]))
        .unwrap_err();
        assert!(matches!(err, VolumeContextError::Transport(_)), "{err:?}");
        assert!(err.to_string().contains("none, tls or mtls"), "{err}");
        assert!(
            VolumeContextError::NoServer
                .to_string()
                .contains("static PVs set volumeAttributes server and share")
        );
    }
}
