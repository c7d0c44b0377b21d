//! A filesystem on a loop device, mounted on a temporary directory and torn down on drop.

use std::{path::PathBuf, process::Command};

/// A loop-mounted filesystem made by `mkfs.<kind>` with `mkfs_args`.
pub struct LoopFs {
    _dir: tempfile::TempDir,
    pub mount: PathBuf,
    device: String,
}

/// Runs a tool, failing the test with its error output (or a hint when it is missing).
pub fn run(program: &str, args: &[&str]) -> String {
    let out = Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("{program} is missing ({e}): run scripts/install-test-deps"));
    assert!(
        out.status.success(),
        "{program} {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

impl LoopFs {
    pub fn new(kind: &str, size_mb: u64, mkfs_args: &[&str]) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let image = dir.path().join(format!("{kind}.img"));
        std::fs::File::create(&image)
            .and_then(|f| f.set_len(size_mb << 20))
            .expect("image file");
        let device = run("losetup", &["-f", "--show", &image.to_string_lossy()]);
        let mount = dir.path().join("mnt");
        std::fs::create_dir(&mount).expect("mount point");
        let fs = Self {
            _dir: dir,
            mount,
            device,
        };
        let mut args: Vec<&str> = mkfs_args.to_vec();
        args.push(&fs.device);
        run(&format!("mkfs.{kind}"), &args);
        run("mount", &[&fs.device, &fs.mount.to_string_lossy()]);
        fs
    }
}

impl Drop for LoopFs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.mount).status();
        let _ = Command::new("losetup").args(["-d", &self.device]).status();
    }
}
