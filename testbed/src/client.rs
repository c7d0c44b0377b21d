//! NFS clients from libnfs-utils (NFSv4, no kernel NFS, no rpcbind), run inside a client
//! namespace so the server sees that namespace's address.

use std::{path::Path, process::Output};

use crate::Netns;

/// What a client saw.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NfsOutcome {
    Ok(Vec<u8>),
    /// The export is invisible to this client (not in its client list).
    Denied,
    /// A write to a read-only export.
    ReadOnly,
    Other(String),
}

fn classify(out: Output) -> NfsOutcome {
    if out.status.success() {
        return NfsOutcome::Ok(out.stdout);
    }
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    if err.contains("NFS4ERR_NOENT") && err.contains("mount") {
        NfsOutcome::Denied
    } else if err.contains("NFS4ERR_ROFS") || err.contains("Read-only") || err.contains("ROFS") {
        NfsOutcome::ReadOnly
    } else if err.contains("NFS4ERR_ACCESS") || err.contains("NFS4ERR_PERM") {
        NfsOutcome::Denied
    } else {
        NfsOutcome::Other(err)
    }
}

fn url(server: &str, path: &str) -> String {
    format!("nfs://{server}{path}?version=4")
}

/// Reads `path` (e.g. `/pvc-1/file`) from `server`, from inside `client`.
pub fn nfs_cat(client: &Netns, server: &str, path: &str) -> NfsOutcome {
    let out = client
        .command("nfs-cat")
        .arg(url(server, path))
        .output()
        .expect("nfs-cat (libnfs-utils)");
    classify(out)
}

/// Writes `content` (keep it under 3 KB: libnfs 4.0's NFSv4 writes fail above ~3.8 KB) to
/// `path` on `server`, from inside `client`.
pub fn nfs_write(
    client: &Netns,
    server: &str,
    path: &str,
    content: &[u8],
    scratch: &Path,
) -> NfsOutcome {
    let local = scratch.join(format!("upload-{}", std::process::id()));
    std::fs::write(&local, content).expect("scratch file");
    let out = client
        .command("nfs-cp")
        .arg(&local)
        .arg(url(server, path))
        .output()
        .expect("nfs-cp (libnfs-utils)");
    let _ = std::fs::remove_file(&local);
    match classify(out) {
        // nfs-cp reports what it copied on stdout; the content is what matters.
        NfsOutcome::Ok(_) => NfsOutcome::Ok(Vec::new()),
        other => other,
    }
}
