//! Records the git revision, when the source is a git checkout, for GetPluginInfo's
//! vendor_version and `rwxnfs --version`.

use std::{path::Path, process::Command};

fn main() {
    let git = |args: &[&str]| {
        Command::new("git")
            .args(args)
            .output()
            .ok()
            .filter(|out| out.status.success())
            .map(|out| String::from_utf8_lossy(&out.stdout).trim().to_owned())
    };
    if let Some(dir) = git(&["rev-parse", "--absolute-git-dir"]) {
        // Branches and packed-refs live in the common directory when this is a worktree.
        let common = git(&["rev-parse", "--path-format=absolute", "--git-common-dir"])
            .unwrap_or_else(|| dir.clone());
        for path in watched(Path::new(&dir), Path::new(&common)) {
            println!("cargo:rerun-if-changed={}", path.display());
        }
    }
    let revision = git(&["rev-parse", "--short=10", "HEAD"]).unwrap_or_default();
    println!("cargo:rustc-env=RWXNFS_GIT_REVISION={revision}");
}

/// The files whose change can move HEAD: HEAD itself, the branch it names (a loose ref, or
/// `refs/heads`, where a packed branch's next commit writes one), and packed-refs. Only
/// those that exist: cargo takes a missing path for a changed one, so naming one would rerun
/// this script, and rebuild the binary, on every build.
fn watched(dir: &Path, common: &Path) -> Vec<std::path::PathBuf> {
    let head = dir.join("HEAD");
    let mut paths = vec![head.clone()];
    let branch = std::fs::read_to_string(&head).ok().and_then(|text| {
        text.trim()
            .strip_prefix("ref:")
            .map(|r| r.trim().to_owned())
    });
    if let Some(branch) = branch {
        paths.extend([dir.join(&branch), common.join(&branch)]);
    }
    paths.extend([common.join("refs/heads"), common.join("packed-refs")]);
    paths.sort();
    paths.dedup();
    paths.retain(|p| p.exists());
    paths
}
