//! StorageClass parameters: the one table of keys rwxnfs accepts, each validated.
//!
//! | key | values | default |
//! |---|---|---|
//! | `backend` | a backend name from the controller's configuration | the only backend, if there is one |
//! | `nfsVersion` | `4.2`, `4.1`, `3` | `4.2` |
//! | `onDelete` | `delete`, `retain`, `archive` | the agent's default |
//! | `allowedClients` | comma-separated addresses or CIDRs that may always mount | none: only published nodes |
//! | `squash` | `none`, `root`, `all` | the agent's default |
//! | `uid`, `gid` | owner of the volume's root directory | the agent's default |
//! | `mode` | octal permission bits of the volume's root directory, e.g. `2775` | the agent's default |
//! | `subDir` | subdir backend: directory template with `${pvc.metadata.namespace}`, `${pvc.metadata.name}`, `${pv.metadata.name}` | `${pv.metadata.name}` |
//! | `mountOptions` | comma-separated NFS mount options passed to the node (in addition to the StorageClass's own `mountOptions`) | none |
//! | `transport` | `none`, `tls` (RPC-with-TLS, RFC 9289: encrypted), `mtls` (encrypted, and each node presents a client certificate the NFS hosts trust) | `none` |
//!
//! Keys under `csi.storage.k8s.io/` (the external-provisioner's extra metadata and secret
//! references) are accepted and used where they mean something.

use std::{collections::BTreeMap, fmt, net::IpAddr, str::FromStr};

use crate::name::Name;

/// The keys accepted, in the order they are documented.
pub const KEYS: [&str; 11] = [
    "backend",
    "nfsVersion",
    "onDelete",
    "allowedClients",
    "squash",
    "uid",
    "gid",
    "mode",
    "subDir",
    "mountOptions",
    "transport",
];

/// The external-provisioner's metadata keys (`--extra-create-metadata`).
pub const PVC_NAME: &str = "csi.storage.k8s.io/pvc/name";
pub const PVC_NAMESPACE: &str = "csi.storage.k8s.io/pvc/namespace";
pub const PV_NAME: &str = "csi.storage.k8s.io/pv/name";
const RESERVED_PREFIX: &str = "csi.storage.k8s.io/";

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum NfsVersion {
    V3,
    V4_1,
    #[default]
    V4_2,
}

impl NfsVersion {
    pub fn as_str(self) -> &'static str {
        match self {
            NfsVersion::V3 => "3",
            NfsVersion::V4_1 => "4.1",
            NfsVersion::V4_2 => "4.2",
        }
    }
}

impl FromStr for NfsVersion {
    type Err = ParamError;
    fn from_str(s: &str) -> Result<Self, ParamError> {
        match s {
            "3" => Ok(Self::V3),
            "4.1" => Ok(Self::V4_1),
            "4.2" => Ok(Self::V4_2),
            other => Err(ParamError::bad("nfsVersion", other, "4.2, 4.1 or 3")),
        }
    }
}

impl fmt::Display for NfsVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How NFS traffic between a node and its export is protected (RFC 9289, RPC-with-TLS): the
/// server's export option and the client's mount option `xprtsec=`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Transport {
    /// Plain RPC over TCP (the export still admits TLS: a node's mounts share one transport).
    #[default]
    None,
    /// TLS: encrypted, the server authenticated by its certificate.
    Tls,
    /// Mutual TLS: as `tls`, and the node presents a client certificate the server trusts.
    Mtls,
}

impl Transport {
    pub fn as_str(self) -> &'static str {
        match self {
            Transport::None => "none",
            Transport::Tls => "tls",
            Transport::Mtls => "mtls",
        }
    }

    /// Whether the traffic is encrypted.
    pub fn is_tls(self) -> bool {
        self != Transport::None
    }
}

impl FromStr for Transport {
    type Err = ParamError;
    fn from_str(s: &str) -> Result<Self, ParamError> {
        match s {
            "none" => Ok(Self::None),
            "tls" => Ok(Self::Tls),
            "mtls" => Ok(Self::Mtls),
            other => Err(ParamError::bad("transport", other, "none, tls or mtls")),
        }
    }
}

impl fmt::Display for Transport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OnDeleteParam {
    Delete,
    Retain,
    Archive,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SquashParam {
    None,
    Root,
    All,
}

/// An `allowedClients` entry: an address or a network.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Cidr {
    pub addr: IpAddr,
    pub prefix: u8,
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

impl FromStr for Cidr {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let (addr, prefix) = match s.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (s, None),
        };
        let addr: IpAddr = addr
            .parse()
            .map_err(|_| format!("{s:?} is not an address or CIDR"))?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            None => max,
            Some(p) => p
                .parse::<u8>()
                .ok()
                .filter(|p| *p <= max)
                .ok_or_else(|| format!("{s:?} has an invalid prefix length"))?,
        };
        Ok(Self { addr, prefix })
    }
}

/// Validated StorageClass parameters.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Params {
    pub backend: Option<Name>,
    pub nfs_version: NfsVersion,
    pub on_delete: Option<OnDeleteParam>,
    pub allowed_clients: Vec<Cidr>,
    pub squash: Option<SquashParam>,
    pub uid: Option<u32>,
    pub gid: Option<u32>,
    pub mode: Option<u32>,
    pub sub_dir: Option<String>,
    pub mount_options: Vec<String>,
    pub transport: Transport,
    pub pvc_name: Option<String>,
    pub pvc_namespace: Option<String>,
    pub pv_name: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ParamError {
    #[error("parameter {key:?} is not known; valid keys are {}", KEYS.join(", "))]
    Unknown { key: String },
    #[error("parameter {key}: {value:?} is invalid; expected {expected}")]
    Bad {
        key: &'static str,
        value: String,
        expected: String,
    },
}

impl ParamError {
    fn bad(key: &'static str, value: &str, expected: &str) -> Self {
        ParamError::Bad {
            key,
            value: value.chars().take(128).collect(),
            expected: expected.to_owned(),
        }
    }
}

fn parse_u32(key: &'static str, value: &str) -> Result<u32, ParamError> {
    value
        .parse()
        .map_err(|_| ParamError::bad(key, value, "a number from 0 to 4294967295"))
}

impl Params {
    pub fn parse(raw: &BTreeMap<String, String>) -> Result<Self, ParamError> {
        let mut p = Params::default();
        for (key, value) in raw {
            match key.as_str() {
                "backend" => {
                    p.backend = Some(
                        Name::parse(value)
                            .map_err(|e| ParamError::bad("backend", value, &e.to_string()))?,
                    )
                }
                "nfsVersion" => p.nfs_version = value.parse()?,
                "onDelete" => {
                    p.on_delete = Some(match value.as_str() {
                        "delete" => OnDeleteParam::Delete,
                        "retain" => OnDeleteParam::Retain,
                        "archive" => OnDeleteParam::Archive,
                        other => {
                            return Err(ParamError::bad(
                                "onDelete",
                                other,
                                "delete, retain or archive",
                            ));
                        }
                    })
                }
                "allowedClients" => {
                    for item in value.split(',').map(str::trim).filter(|s| !s.is_empty()) {
                        let cidr = item
                            .parse()
                            .map_err(|e: String| ParamError::bad("allowedClients", item, &e))?;
                        p.allowed_clients.push(cidr);
                    }
                }
                "squash" => {
                    p.squash = Some(match value.as_str() {
                        "none" => SquashParam::None,
                        "root" => SquashParam::Root,
                        "all" => SquashParam::All,
                        other => return Err(ParamError::bad("squash", other, "none, root or all")),
                    })
                }
                "uid" => p.uid = Some(parse_u32("uid", value)?),
                "gid" => p.gid = Some(parse_u32("gid", value)?),
                "mode" => {
                    p.mode = Some(
                        u32::from_str_radix(value, 8)
                            .ok()
                            .filter(|m| *m <= 0o7777)
                            .ok_or_else(|| {
                                ParamError::bad("mode", value, "octal permission bits such as 2775")
                            })?,
                    )
                }
                "subDir" => p.sub_dir = Some(value.clone()),
                "mountOptions" => {
                    p.mount_options = value
                        .split(',')
                        .map(str::trim)
                        .filter(|s| !s.is_empty())
                        .map(str::to_owned)
                        .collect()
                }
                "transport" => p.transport = value.parse()?,
                PVC_NAME => p.pvc_name = Some(value.clone()),
                PVC_NAMESPACE => p.pvc_namespace = Some(value.clone()),
                PV_NAME => p.pv_name = Some(value.clone()),
                other if other.starts_with(RESERVED_PREFIX) => {}
                other => {
                    return Err(ParamError::Unknown {
                        key: other.chars().take(128).collect(),
                    });
                }
            }
        }
        Ok(p)
    }
}

/// The directory a subdir-backend claim gets: the `subDir` template (default
/// `${pv.metadata.name}`) with `${pvc.metadata.namespace}`, `${pvc.metadata.name}` and
/// `${pv.metadata.name}` filled in from the external-provisioner's extra metadata (the PV's
/// name is the CSI request's `name`). The result is one directory name, never a path: it
/// becomes the export's name and so the volume id's, which is how DeleteVolume finds it again.
pub fn render_sub_dir(
    template: Option<&str>,
    request_name: &str,
    parameters: &BTreeMap<String, String>,
) -> Result<Name, ParamError> {
    let template = template.unwrap_or("${pv.metadata.name}");
    let mut out = String::new();
    let mut rest = template;
    while let Some(start) = rest.find("${") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let end = after
            .find('}')
            .ok_or_else(|| ParamError::bad("subDir", template, "a closed ${...}"))?;
        let missing = || {
            ParamError::bad(
                "subDir",
                template,
                "PVC metadata, which the external-provisioner passes only with \
                 --extra-create-metadata",
            )
        };
        let value = match &after[..end] {
            "pvc.metadata.namespace" => parameters.get(PVC_NAMESPACE).ok_or_else(missing)?,
            "pvc.metadata.name" => parameters.get(PVC_NAME).ok_or_else(missing)?,
            "pv.metadata.name" => parameters.get(PV_NAME).map_or(request_name, String::as_str),
            other => {
                return Err(ParamError::bad(
                    "subDir",
                    template,
                    &format!(
                        "only ${{pvc.metadata.namespace}}, ${{pvc.metadata.name}} and \
                         ${{pv.metadata.name}} (not ${{{other}}})"
                    ),
                ));
            }
        };
        out.push_str(value);
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    Name::parse(&out).map_err(|e| {
        ParamError::bad(
            "subDir",
            template,
            &format!("one directory name ({e}); join parts with '-' or '.', not '/'"),
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sub_dir_template_becomes_one_directory_name() {
        let meta: BTreeMap<String, String> = [
            (PVC_NAMESPACE.to_string(), "team-a".to_string()),
            (PVC_NAME.to_string(), "data".to_string()),
            (PV_NAME.to_string(), "pvc-1234".to_string()),
        ]
        .into();
        let render = |t: Option<&str>, m: &BTreeMap<String, String>| {
            render_sub_dir(t, "pvc-req", m).map(|n| n.to_string())
        };
        assert_eq!(render(None, &meta).unwrap(), "pvc-1234");
        assert_eq!(render(None, &BTreeMap::new()).unwrap(), "pvc-req");
        assert_eq!(
            render(
                Some("${pvc.metadata.namespace}-${pvc.metadata.name}"),
                &meta
            )
            .unwrap(),
            "team-a-data"
        );
        for (template, needle) in [
            ("${pvc.metadata.namespace}/${pvc.metadata.name}", "not '/'"),
            ("${pvc.metadata.labels}", "not ${pvc.metadata.labels}"),
            ("${pvc.metadata.name", "closed"),
            ("..", "one directory name"),
        ] {
            let err = render(Some(template), &meta).unwrap_err().to_string();
            assert!(err.contains(needle), "{template}: {err}");
        }
        let err = render(Some("${pvc.metadata.name}"), &BTreeMap::new())
            .unwrap_err()
            .to_string();
        assert!(err.contains("--extra-create-metadata"), "{err}");
    }

    fn params(pairs: &[(&str, &str)]) -> Result<Params, ParamError> {
        Params::parse(
            &pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        )
    }

    #[test]
    fn every_documented_key_parses() {
        let p = params(&[
            ("backend", "ha1"),
            ("nfsVersion", "4.1"),
            ("onDelete", "archive"),
            ("allowedClients", "10.0.0.0/8, 192.168.1.7"),
            ("squash", "all"),
            ("uid", "1000"),
            ("gid", "2000"),
            ("mode", "0770"),
            ("subDir", "${pvc.metadata.namespace}/${pvc.metadata.name}"),
            ("mountOptions", "nconnect=4,noatime"),
            ("transport", "mtls"),
            (PVC_NAME, "data"),
            ("csi.storage.k8s.io/provisioner-secret-name", "x"),
        ])
        .unwrap();
        assert_eq!(p.nfs_version, NfsVersion::V4_1);
        assert_eq!(p.allowed_clients.len(), 2);
        assert_eq!(p.allowed_clients[1].to_string(), "192.168.1.7/32");
        assert_eq!(p.mode, Some(0o770));
        assert_eq!(p.mount_options, ["nconnect=4", "noatime"]);
        assert_eq!(p.pvc_name.as_deref(), Some("data"));
        assert_eq!(p.transport, Transport::Mtls);
        assert_eq!(params(&[]).unwrap().transport, Transport::None);
    }

    #[test]
    fn an_unknown_key_lists_the_valid_ones() {
        let err = params(&[("nfsversion", "4.2")]).unwrap_err().to_string();
        assert!(
            err.contains("nfsversion") && err.contains("nfsVersion, onDelete"),
            "{err}"
        );
    }

    #[test]
    fn bad_values_name_their_key() {
        for (k, v) in [
            ("nfsVersion", "4"),
            ("onDelete", "keep"),
            ("allowedClients", "10.0.0.0/33"),
            ("squash", "yes"),
            ("uid", "-1"),
            ("mode", "0999"),
            ("backend", "../x"),
            ("transport", "TLS"),
        ] {
            let err = params(&[(k, v)]).unwrap_err().to_string();
            assert!(err.contains(k), "{k}={v}: {err}");
        }
    }
}
