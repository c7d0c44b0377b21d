//! Whether this node can mount a claim over RPC-with-TLS (RFC 9289), asked before the mount.
//!
//! The kernel does not do the TLS handshake itself: it asks a handshake daemon (`tlshd`, from
//! ktls-utils) over netlink, and `tlshd` presents the certificate its configuration names.
//! When either is missing the mount fails only after the attempt, with an errno (EACCES, EIO)
//! that does not say why. So NodeStageVolume of a `tls` or `mtls` claim first checks, and
//! answers FAILED_PRECONDITION naming what is missing and how to fix it:
//!
//! - `tls` and `mtls`: the kernel has the handshake upcall (Linux 6.5 or later) and a daemon
//!   has joined its group in the node's network namespace ([`netlink`]);
//! - `mtls`: `tlshd`'s configuration (`--tlshd-config`, `/etc/tlshd.conf`) names a client
//!   certificate and key in `[authenticate.client]`, and both are regular, readable files
//!   (`tlshd` refuses symbolic links).
//!
//! Whether the certificate is trusted is the NFS hosts' decision, seen only in the handshake:
//! a refused mount of a TLS claim says so ([`crate::error::NodeError::TlsRefused`]).

use std::{
    io,
    path::{Path, PathBuf},
};

use rwxnfs_model::Transport;

pub mod identity;
pub mod netlink;

pub use netlink::Upcall;

/// Where ktls-utils installs `tlshd`'s configuration.
pub const DEFAULT_TLSHD_CONFIG: &str = "/etc/tlshd.conf";

/// What this node lacks for a TLS mount; each message names the way out.
#[derive(Debug, thiserror::Error)]
pub enum TlsUnready {
    #[error(
        "transport {transport}: this node's kernel has no TLS handshake upcall (the `handshake` \
         netlink family of Linux 6.5 and later): NFS over TLS needs Linux 6.5 or later on the \
         node; use transport none on this node's claims or upgrade its kernel"
    )]
    NoUpcall { transport: Transport },
    #[error(
        "transport {transport}: no TLS handshake daemon is running on this node (nothing listens \
         for the kernel's handshake requests in the host network namespace): install ktls-utils \
         and start tlshd (systemctl enable --now tlshd), as the README's \"NFS over TLS\" says"
    )]
    NoDaemon { transport: Transport },
    #[error(
        "transport mtls: cannot read tlshd's configuration {path}: {source}: this node has no \
         client certificate configured; install ktls-utils and give tlshd this node's \
         certificate (see the README's \"NFS over TLS\")"
    )]
    NoConfig {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error(
        "transport mtls: {config} names no client {what} ({key} in [authenticate.client]): this \
         node has no certificate to present, and the NFS hosts admit only nodes that present one \
         they trust; configure this node's certificate and key there (see the README's \"NFS \
         over TLS\")"
    )]
    NoClientCertificate {
        config: PathBuf,
        what: &'static str,
        key: &'static str,
    },
    #[error(
        "transport mtls: the client {what} {path} that {config} names {problem}; tlshd could not \
         present it"
    )]
    BadClientFile {
        config: PathBuf,
        what: &'static str,
        path: PathBuf,
        problem: String,
    },
}

/// The check, behind a trait so that the node service's logic is tested with a fake.
pub trait Handshake: Send + Sync + 'static {
    /// `Ok` when a mount with `transport` can do its TLS handshake here. Blocking (files,
    /// netlink): called off the async threads.
    fn ready(&self, transport: Transport) -> Result<(), TlsUnready>;
}

/// The real check: the kernel's handshake upcall and `tlshd`'s configuration file.
pub struct Tlshd {
    config: PathBuf,
    upcall: fn() -> io::Result<Upcall>,
}

impl Tlshd {
    pub fn new(config: impl Into<PathBuf>) -> Self {
        Self {
            config: config.into(),
            upcall: netlink::tlshd_upcall,
        }
    }

    #[cfg(test)]
    fn with_upcall(config: &Path, upcall: fn() -> io::Result<Upcall>) -> Self {
        Self {
            config: config.to_owned(),
            upcall,
        }
    }

    fn client_identity(&self) -> Result<(), TlsUnready> {
        let text =
            std::fs::read_to_string(&self.config).map_err(|source| TlsUnready::NoConfig {
                path: self.config.clone(),
                source,
            })?;
        let section = client_section(&text);
        for (what, key) in [
            ("certificate", "x509.certificate"),
            ("private key", "x509.private_key"),
        ] {
            let path = value(&section, key).ok_or_else(|| TlsUnready::NoClientCertificate {
                config: self.config.clone(),
                what,
                key,
            })?;
            if let Some(problem) = unusable(Path::new(path)) {
                return Err(TlsUnready::BadClientFile {
                    config: self.config.clone(),
                    what,
                    path: path.into(),
                    problem,
                });
            }
        }
        Ok(())
    }
}

impl Handshake for Tlshd {
    fn ready(&self, transport: Transport) -> Result<(), TlsUnready> {
        if !transport.is_tls() {
            return Ok(());
        }
        match (self.upcall)() {
            Ok(Upcall::Listening) => {}
            Ok(Upcall::NoListener) => return Err(TlsUnready::NoDaemon { transport }),
            Ok(Upcall::NoFamily) => return Err(TlsUnready::NoUpcall { transport }),
            // Not knowing is no reason to refuse: the mount will tell.
            Err(e) => tracing::warn!(
                error = %e,
                "cannot ask the kernel whether a TLS handshake daemon listens; mounting anyway"
            ),
        }
        if transport == Transport::Mtls {
            self.client_identity()?;
        }
        Ok(())
    }
}

/// The `[authenticate.client]` group's lines of a GLib key file (tlshd's format).
fn client_section(text: &str) -> Vec<(&str, &str)> {
    let mut inside = false;
    let mut out = Vec::new();
    for line in text.lines().map(str::trim) {
        if line.starts_with('#') || line.is_empty() {
            continue;
        }
        if let Some(group) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            inside = group == "authenticate.client";
            continue;
        }
        if inside && let Some((key, value)) = line.split_once('=') {
            out.push((key.trim(), value.trim()));
        }
    }
    out
}

/// A key's value; the last one wins, as in GLib; empty is none.
fn value<'a>(section: &[(&str, &'a str)], key: &str) -> Option<&'a str> {
    section
        .iter()
        .rev()
        .find(|(k, _)| *k == key)
        .map(|(_, v)| *v)
        .filter(|v| !v.is_empty())
}

/// Why `tlshd` could not use this file, if it could not.
fn unusable(path: &Path) -> Option<String> {
    let meta = match std::fs::symlink_metadata(path) {
        Ok(meta) => meta,
        Err(e) => return Some(format!("cannot be read: {e}")),
    };
    if meta.file_type().is_symlink() {
        return Some(
            "is a symbolic link, which tlshd refuses: copy the file there (a mounted Secret's \
             files are links)"
                .into(),
        );
    }
    if !meta.is_file() {
        return Some("is not a regular file".into());
    }
    match std::fs::File::open(path) {
        Ok(_) if meta.len() == 0 => Some("is empty".into()),
        Ok(_) => None,
        Err(e) => Some(format!("cannot be read: {e}")),
    }
}

/// What a [`FakeHandshake`] says is missing, for a transport.
#[cfg(any(test, feature = "test-support"))]
pub type Missing = fn(Transport) -> TlsUnready;

/// For tests of the node service: a node whose handshake is ready, or lacks something.
#[cfg(any(test, feature = "test-support"))]
pub struct FakeHandshake(Option<Missing>);

#[cfg(any(test, feature = "test-support"))]
impl FakeHandshake {
    pub fn ready() -> Self {
        Self(None)
    }

    pub fn unready(missing: Missing) -> Self {
        Self(Some(missing))
    }
}

#[cfg(any(test, feature = "test-support"))]
impl Handshake for FakeHandshake {
    fn ready(&self, transport: Transport) -> Result<(), TlsUnready> {
        match self.0 {
            Some(missing) if transport.is_tls() => Err(missing(transport)),
            _ => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests;
