//! The node's TLS identity, handed to the host's `tlshd`.
//!
//! The certificate and key arrive in the node plugin's pod as a volume (cert-manager's CSI
//! driver, or a Secret), whose files are symbolic links into a directory the kubelet or the
//! driver swaps on renewal; `tlshd` refuses links, and runs on the host. So the plugin copies
//! them, as regular files, into a host directory that `tlshd`'s configuration names: at start,
//! and again whenever they change. Each file is written beside its final name and renamed over
//! it, so `tlshd` (which reads them on every handshake) never sees half a file, and a renewed
//! certificate is used from the next handshake on, with nothing remounted or restarted.

use std::{
    io::{self, Write as _},
    os::unix::fs::{OpenOptionsExt as _, PermissionsExt as _},
    path::{Path, PathBuf},
};

/// `(name in the volume, name written, mode)`: the names cert-manager and `kubernetes.io/tls`
/// Secrets use, and the ones `tlshd`'s configuration is told of.
pub const FILES: [(&str, &str, u32); 3] = [
    ("tls.crt", "node.pem", 0o644),
    ("tls.key", "node.key", 0o600),
    ("ca.crt", "ca.pem", 0o644),
];

#[derive(Debug, thiserror::Error)]
#[error("the node's TLS identity: {what} {path}: {source}")]
pub struct IdentityError {
    what: &'static str,
    path: PathBuf,
    #[source]
    source: io::Error,
}

/// Copies the identity from `from` (the mounted volume) to `to` (the host's directory).
#[derive(Clone, Debug)]
pub struct IdentityCopy {
    pub from: PathBuf,
    pub to: PathBuf,
}

impl IdentityCopy {
    /// Brings `to` up to date; the names of the files it rewrote (none when nothing changed).
    pub fn sync(&self) -> Result<Vec<&'static str>, IdentityError> {
        let err = |what, path: &Path| {
            let path = path.to_owned();
            move |source| IdentityError { what, path, source }
        };
        std::fs::create_dir_all(&self.to).map_err(err("cannot create", &self.to))?;
        // Read every file first: a renewal half done (a new certificate, the old key) is
        // never copied, the next round sees both.
        let mut read = Vec::new();
        for (source, target, mode) in FILES {
            let path = self.from.join(source);
            let contents = std::fs::read(&path).map_err(err("cannot read", &path))?;
            if contents.is_empty() {
                return Err(err("cannot use", &path)(io::Error::other("it is empty")));
            }
            read.push((target, mode, contents));
        }
        let mut written = Vec::new();
        for (target, mode, contents) in read {
            let path = self.to.join(target);
            let current = std::fs::symlink_metadata(&path)
                .ok()
                .filter(|m| m.is_file() && m.permissions().mode() & 0o777 == mode)
                .and_then(|_| std::fs::read(&path).ok());
            if current.as_deref() == Some(&contents[..]) {
                continue;
            }
            let temporary = self.to.join(format!(".{target}.new"));
            let _ = std::fs::remove_file(&temporary);
            let mut file = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(mode)
                .open(&temporary)
                .map_err(err("cannot create", &temporary))?;
            file.write_all(&contents)
                .and_then(|()| file.sync_all())
                .map_err(err("cannot write", &temporary))?;
            // The mode asked of open() is filtered by the umask.
            std::fs::set_permissions(&temporary, std::fs::Permissions::from_mode(mode))
                .map_err(err("cannot set the mode of", &temporary))?;
            std::fs::rename(&temporary, &path).map_err(err("cannot rename onto", &path))?;
            written.push(target);
        }
        Ok(written)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    /// A volume as the kubelet lays one out: the files are links into a `..data` directory
    /// that a renewal replaces.
    fn volume(dir: &Path, generation: &str) {
        let data = dir.join(format!("..{generation}"));
        std::fs::create_dir_all(&data).unwrap();
        for (name, _, _) in FILES {
            std::fs::write(data.join(name), format!("{name} {generation}\n")).unwrap();
        }
        let link = dir.join("..data.tmp");
        std::os::unix::fs::symlink(format!("..{generation}"), &link).unwrap();
        std::fs::rename(&link, dir.join("..data")).unwrap();
        for (name, _, _) in FILES {
            let _ = std::os::unix::fs::symlink(format!("..data/{name}"), dir.join(name));
        }
    }

    #[test]
    fn the_identity_is_copied_as_regular_files_with_their_modes_and_again_when_renewed() {
        let dir = tempfile::tempdir().unwrap();
        let from = dir.path().join("volume");
        let copy = IdentityCopy {
            from: from.clone(),
            to: dir.path().join("host/tls"),
        };
        volume(&from, "2026_12_01");
        assert_eq!(copy.sync().unwrap(), ["node.pem", "node.key", "ca.pem"]);
        for (source, target, mode) in FILES {
            let path = copy.to.join(target);
            let meta = std::fs::symlink_metadata(&path).unwrap();
            assert!(meta.is_file(), "{target} is not a regular file");
            assert_eq!(meta.permissions().mode() & 0o777, mode, "{target}");
            assert_eq!(
                std::fs::read_to_string(&path).unwrap(),
                format!("{source} 2026_12_01\n")
            );
        }
        assert!(copy.sync().unwrap().is_empty(), "nothing changed");

        volume(&from, "2026_12_31");
        assert_eq!(copy.sync().unwrap(), ["node.pem", "node.key", "ca.pem"]);
        assert_eq!(
            std::fs::read_to_string(copy.to.join("node.pem")).unwrap(),
            "tls.crt 2026_12_31\n"
        );
        let left: Vec<_> = std::fs::read_dir(&copy.to)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .filter(|n| n.starts_with('.'))
            .collect();
        assert!(left.is_empty(), "temporary files left: {left:?}");
    }

    #[test]
    fn a_missing_or_empty_file_copies_nothing_and_names_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let copy = IdentityCopy {
            from: dir.path().join("volume"),
            to: dir.path().join("host"),
        };
        std::fs::create_dir_all(&copy.from).unwrap();
        std::fs::write(copy.from.join("tls.crt"), "cert").unwrap();
        let err = copy.sync().unwrap_err().to_string();
        assert!(
            err.starts_with("the node's TLS identity: cannot read ")
                && err.contains("volume/tls.key"),
            "{err}"
        );
        assert!(
            !copy.to.join("node.pem").exists(),
            "half an identity copied"
        );
        std::fs::write(copy.from.join("tls.key"), "").unwrap();
        std::fs::write(copy.from.join("ca.crt"), "ca").unwrap();
        let err = copy.sync().unwrap_err().to_string();
        assert!(err.contains("tls.key: it is empty"), "{err}");
    }
}
