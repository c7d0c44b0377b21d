//! NFS mount options: merged over defaults chosen for HA failover, validated against a known
//! list, and rendered into what mount(2) takes (flags plus a data string).
//!
//! Defaults: `vers=4.2` (or the volume's `nfsVersion`), `hard`, `timeo=600`, `retrans=2`,
//! `noresvport`. A hard mount never returns EIO to an application during a failover; it waits,
//! and `timeo`/`retrans` bound how long each retry takes (60 s, twice) before the client logs
//! "server not responding" and keeps trying. `noresvport` lets the client reconnect from any
//! source port after the VIP moves, instead of waiting for a privileged port to free up.
//! NFSv3 gets `nolock` unless the user asks for locking: the HA cluster runs no lock manager.
//!
//! A user's option replaces the default of the same kind (`vers=4.1` replaces `vers=4.2`,
//! `soft` replaces `hard`); unknown or contradictory options are errors naming the option.
//! `addr=` is set by the node plugin (the mount system call does not resolve names) and is
//! refused from users; so is `xprtsec=`, which comes from the StorageClass's `transport`
//! ([`MountOptions::with_transport`]) so that the export and the mount always agree.

use std::fmt;

use crate::params::{NfsVersion, Transport};

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum MountOptionError {
    #[error("mount option {0:?} is not supported; see the README's list of NFS mount options")]
    Unknown(String),
    #[error("mount options {0:?} and {1:?} contradict each other")]
    Contradiction(String, String),
    #[error("mount option {0:?} is set by rwxnfs and cannot be given")]
    Reserved(String),
    #[error("mount option {0:?} needs a value")]
    MissingValue(String),
    #[error("mount option {0:?} has an invalid value")]
    BadValue(String),
}

/// Options that take `=value`, and what the value must be.
const VALUED: &[(&str, Value)] = &[
    ("vers", Value::Version),
    ("nfsvers", Value::Version),
    ("proto", Value::Word),
    ("port", Value::Number),
    ("rsize", Value::Number),
    ("wsize", Value::Number),
    ("timeo", Value::Number),
    ("retrans", Value::Number),
    ("actimeo", Value::Number),
    ("acregmin", Value::Number),
    ("acregmax", Value::Number),
    ("acdirmin", Value::Number),
    ("acdirmax", Value::Number),
    ("lookupcache", Value::Word),
    ("nconnect", Value::Number),
    ("max_connect", Value::Number),
    ("local_lock", Value::Word),
    ("sec", Value::Word),
    ("namlen", Value::Number),
    ("clientaddr", Value::Address),
    ("mountport", Value::Number),
    ("mountproto", Value::Word),
    ("mountvers", Value::Number),
    ("fsc", Value::Optional),
];

/// Flags, each with the group it belongs to (one of a group wins).
const FLAGS: &[(&str, &str)] = &[
    ("hard", "hardness"),
    ("soft", "hardness"),
    ("softerr", "hardness"),
    ("intr", "intr"),
    ("nointr", "intr"),
    ("ac", "ac"),
    ("noac", "ac"),
    ("lock", "lock"),
    ("nolock", "lock"),
    ("cto", "cto"),
    ("nocto", "cto"),
    ("sharecache", "sharecache"),
    ("nosharecache", "sharecache"),
    ("resvport", "resvport"),
    ("noresvport", "resvport"),
    ("fsc", "fsc"),
    ("nofsc", "fsc"),
    ("ro", "rw"),
    ("rw", "rw"),
    ("noatime", "atime"),
    ("atime", "atime"),
    ("relatime", "atime"),
    ("strictatime", "atime"),
    ("nodiratime", "diratime"),
    ("diratime", "diratime"),
    ("noexec", "exec"),
    ("exec", "exec"),
    ("nosuid", "suid"),
    ("suid", "suid"),
    ("nodev", "dev"),
    ("dev", "dev"),
];

/// Options that are mount(2) flags rather than NFS data.
pub const VFS_FLAGS: &[&str] = &[
    "ro",
    "rw",
    "noatime",
    "atime",
    "relatime",
    "strictatime",
    "nodiratime",
    "diratime",
    "noexec",
    "exec",
    "nosuid",
    "suid",
    "nodev",
    "dev",
];

#[derive(Clone, Copy)]
enum Value {
    Version,
    Number,
    Word,
    Address,
    Optional,
}

/// One option: a name and, maybe, a value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MountOption {
    pub name: String,
    pub value: Option<String>,
}

impl fmt::Display for MountOption {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.value {
            Some(v) => write!(f, "{}={v}", self.name),
            None => f.write_str(&self.name),
        }
    }
}

impl MountOption {
    /// What this option competes with: two options of the same group cannot both apply.
    fn group(&self) -> &str {
        if self.name == "nfsvers" {
            return "vers";
        }
        if self.value.is_some() {
            return &self.name;
        }
        FLAGS
            .iter()
            .find(|(n, _)| *n == self.name)
            .map_or(self.name.as_str(), |(_, g)| g)
    }
}

fn parse_one(raw: &str) -> Result<MountOption, MountOptionError> {
    let raw = raw.trim();
    let (name, value) = match raw.split_once('=') {
        Some((n, v)) => (n.trim(), Some(v.trim().to_owned())),
        None => (raw, None),
    };
    if name == "addr" || name == "xprtsec" {
        return Err(MountOptionError::Reserved(raw.to_owned()));
    }
    let valued = VALUED.iter().find(|(n, _)| *n == name);
    let flag = FLAGS.iter().any(|(n, _)| *n == name);
    match (valued, &value) {
        (Some((_, kind)), Some(v)) => {
            let ok = match kind {
                Value::Version => matches!(v.as_str(), "3" | "4" | "4.0" | "4.1" | "4.2"),
                Value::Number => !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit()),
                Value::Word => {
                    !v.is_empty()
                        && v.bytes()
                            .all(|b| b.is_ascii_alphanumeric() || b"_:-".contains(&b))
                }
                Value::Address => v.parse::<std::net::IpAddr>().is_ok(),
                Value::Optional => {
                    !v.is_empty()
                        && v.bytes()
                            .all(|b| b.is_ascii_alphanumeric() || b"_-".contains(&b))
                }
            };
            if !ok {
                return Err(MountOptionError::BadValue(raw.to_owned()));
            }
        }
        (Some((_, Value::Optional)), None) => {}
        (Some(_), None) if !flag => return Err(MountOptionError::MissingValue(raw.to_owned())),
        (None, Some(_)) => return Err(MountOptionError::Unknown(raw.to_owned())),
        (None, None) if !flag => return Err(MountOptionError::Unknown(raw.to_owned())),
        _ => {}
    }
    Ok(MountOption {
        name: name.to_owned(),
        value,
    })
}

/// Options that apply to a mount, after merging.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MountOptions {
    pub options: Vec<MountOption>,
}

impl MountOptions {
    /// Merges the user's options (from the capability's mount flags and the volume context)
    /// over the defaults for `version`.
    pub fn merge<'a>(
        version: NfsVersion,
        user: impl IntoIterator<Item = &'a str>,
    ) -> Result<Self, MountOptionError> {
        let mut chosen: Vec<MountOption> = Vec::new();
        for raw in user
            .into_iter()
            .flat_map(|s| s.split(','))
            .filter(|s| !s.trim().is_empty())
        {
            let option = parse_one(raw)?;
            if let Some(previous) = chosen.iter().find(|o| o.group() == option.group())
                && previous != &option
            {
                return Err(MountOptionError::Contradiction(
                    previous.to_string(),
                    option.to_string(),
                ));
            }
            if !chosen.contains(&option) {
                chosen.push(option);
            }
        }
        let mut defaults = vec![
            ("vers", Some(version.as_str())),
            ("hardness", None),
            ("timeo", Some("600")),
            ("retrans", Some("2")),
            ("resvport", None),
        ];
        if version == NfsVersion::V3 {
            defaults.push(("lock", None));
        }
        let mut merged = Vec::new();
        for (group, value) in defaults {
            if chosen.iter().any(|o| o.group() == group) {
                continue;
            }
            let name = match group {
                "hardness" => "hard",
                "resvport" => "noresvport",
                "lock" => "nolock",
                other => other,
            };
            merged.push(MountOption {
                name: name.to_owned(),
                value: value.map(str::to_owned),
            });
        }
        merged.extend(chosen);
        Ok(Self { options: merged })
    }

    /// Adds `xprtsec=tls` or `xprtsec=mtls` for an encrypted transport; `none` adds nothing
    /// (the kernel's default).
    pub fn with_transport(mut self, transport: Transport) -> Self {
        if transport.is_tls() {
            self.options.push(MountOption {
                name: "xprtsec".to_owned(),
                value: Some(transport.as_str().to_owned()),
            });
        }
        self
    }

    /// The NFS version these options mount with ("3", "4", "4.1", ...).
    pub fn version(&self) -> &str {
        self.options
            .iter()
            .find(|o| o.group() == "vers")
            .and_then(|o| o.value.as_deref())
            .unwrap_or("4.2")
    }

    pub fn is_v3(&self) -> bool {
        self.version() == "3"
    }

    /// Whether `ro` was asked for.
    pub fn read_only(&self) -> bool {
        self.options.iter().any(|o| o.name == "ro")
    }

    /// The names of the options that are mount(2) flags.
    pub fn vfs_flags(&self) -> Vec<&str> {
        self.options
            .iter()
            .filter(|o| o.value.is_none() && VFS_FLAGS.contains(&o.name.as_str()))
            .map(|o| o.name.as_str())
            .collect()
    }

    /// The data string for mount(2): every NFS option, plus `addr=` for the resolved server.
    pub fn data(&self, server_addr: std::net::IpAddr) -> String {
        let mut parts: Vec<String> = self
            .options
            .iter()
            .filter(|o| !(o.value.is_none() && VFS_FLAGS.contains(&o.name.as_str())))
            .map(|o| match (o.name.as_str(), &o.value) {
                // The kernel spells it "vers"; "nfsvers" is the same thing.
                ("nfsvers", Some(v)) => format!("vers={v}"),
                _ => o.to_string(),
            })
            .collect();
        parts.push(format!("addr={server_addr}"));
        parts.join(",")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(o: &MountOptions) -> Vec<String> {
        o.options.iter().map(ToString::to_string).collect()
    }

    #[test]
    fn defaults_are_chosen_for_failover() {
        let o = MountOptions::merge(NfsVersion::V4_2, []).unwrap();
        assert_eq!(
            names(&o),
            ["vers=4.2", "hard", "timeo=600", "retrans=2", "noresvport"]
        );
        assert_eq!(
            o.data("10.0.0.1".parse().unwrap()),
            "vers=4.2,hard,timeo=600,retrans=2,noresvport,addr=10.0.0.1"
        );
    }

    #[test]
    fn the_transport_is_rwxnfs_s_to_set_not_the_user_s() {
        let o = MountOptions::merge(NfsVersion::V4_2, [])
            .unwrap()
            .with_transport(Transport::Mtls);
        assert_eq!(
            o.data("10.0.0.1".parse().unwrap()),
            "vers=4.2,hard,timeo=600,retrans=2,noresvport,xprtsec=mtls,addr=10.0.0.1"
        );
        let plain = MountOptions::merge(NfsVersion::V4_2, [])
            .unwrap()
            .with_transport(Transport::None);
        assert!(!plain.data("10.0.0.1".parse().unwrap()).contains("xprtsec"));
        assert_eq!(
            MountOptions::merge(NfsVersion::V4_2, ["xprtsec=none"]).unwrap_err(),
            MountOptionError::Reserved("xprtsec=none".into())
        );
    }

    #[test]
    fn a_users_version_replaces_the_default_and_is_never_duplicated() {
        let o = MountOptions::merge(NfsVersion::V4_2, ["vers=4.1"]).unwrap();
        assert_eq!(o.options.iter().filter(|o| o.group() == "vers").count(), 1);
        assert_eq!(o.version(), "4.1");
        let o = MountOptions::merge(NfsVersion::V4_2, ["nfsvers=3"]).unwrap();
        assert!(o.is_v3());
        assert!(o.data("10.0.0.1".parse().unwrap()).contains("vers=3"));
    }

    #[test]
    fn user_choices_replace_defaults_of_the_same_kind() {
        let o = MountOptions::merge(
            NfsVersion::V4_1,
            ["soft,timeo=100", "nconnect=4", "noatime"],
        )
        .unwrap();
        let n = names(&o);
        assert!(
            n.contains(&"soft".to_string()) && !n.contains(&"hard".to_string()),
            "{n:?}"
        );
        assert!(n.contains(&"timeo=100".to_string()) && !n.contains(&"timeo=600".to_string()));
        assert_eq!(o.vfs_flags(), ["noatime"]);
        assert!(!o.data("10.0.0.1".parse().unwrap()).contains("noatime"));
    }

    #[test]
    fn nfsv3_gets_nolock_unless_locking_is_asked_for() {
        assert!(
            names(&MountOptions::merge(NfsVersion::V3, []).unwrap())
                .contains(&"nolock".to_string())
        );
        let o = MountOptions::merge(NfsVersion::V3, ["lock"]).unwrap();
        assert!(!names(&o).contains(&"nolock".to_string()));
    }

    #[test]
    fn unknown_contradictory_and_reserved_options_are_named() {
        for (input, expected) in [
            ("bogus", MountOptionError::Unknown("bogus".into())),
            (
                "hard,soft",
                MountOptionError::Contradiction("hard".into(), "soft".into()),
            ),
            (
                "ro,rw",
                MountOptionError::Contradiction("ro".into(), "rw".into()),
            ),
            (
                "vers=4.1,vers=3",
                MountOptionError::Contradiction("vers=4.1".into(), "vers=3".into()),
            ),
            (
                "addr=1.2.3.4",
                MountOptionError::Reserved("addr=1.2.3.4".into()),
            ),
            ("timeo", MountOptionError::MissingValue("timeo".into())),
            (
                "nconnect=four",
                MountOptionError::BadValue("nconnect=four".into()),
            ),
            ("vers=5", MountOptionError::BadValue("vers=5".into())),
            (
                "clientaddr=host",
                MountOptionError::BadValue("clientaddr=host".into()),
            ),
            ("hard=1", MountOptionError::Unknown("hard=1".into())),
        ] {
            assert_eq!(
                MountOptions::merge(NfsVersion::V4_2, [input]),
                Err(expected),
                "{input}"
            );
        }
    }

    #[test]
    fn repeating_the_same_option_is_harmless() {
        let o = MountOptions::merge(NfsVersion::V4_2, ["noatime", "noatime,hard"]).unwrap();
        assert_eq!(o.vfs_flags(), ["noatime"]);
    }
}
