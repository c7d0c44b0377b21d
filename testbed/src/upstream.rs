//! The upstream programs the tests run (csi-sanity, the CSI sidecars, Kubernetes), built by
//! `scripts/tools` from the Go module proxy at the versions `tools/versions` pins.

use std::{
    path::{Path, PathBuf},
    process::Command,
};

/// The workspace this crate was built in.
fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the testbed crate lives in the workspace")
        .to_path_buf()
}

/// The path of `binary` from the tool group `tool` of `tools/versions`, built first if the
/// cache does not have it yet. Fails the test loudly, with the build's own words, when the
/// tool cannot be built: a tier that needs it must never pass without it.
pub fn tool(tool: &str, binary: &str) -> PathBuf {
    let out = Command::new(workspace().join("scripts/tools"))
        .args(["path", tool])
        .output()
        .unwrap_or_else(|e| panic!("cannot run scripts/tools for {tool}: {e}"));
    assert!(
        out.status.success(),
        "scripts/tools could not build {tool}:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let dir = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    let path = Path::new(&dir).join(binary);
    assert!(
        path.is_file(),
        "{tool} is built but has no {binary} in {dir}"
    );
    path
}

/// The version `tools/versions` pins for `tool`.
pub fn version(tool: &str) -> String {
    let text =
        std::fs::read_to_string(workspace().join("tools/versions")).expect("read tools/versions");
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .map(|l| l.split_whitespace().collect::<Vec<_>>())
        .find(|f| f.first() == Some(&tool))
        .and_then(|f| f.get(2).map(|v| v.to_string()))
        .unwrap_or_else(|| panic!("tools/versions names no {tool}"))
}
