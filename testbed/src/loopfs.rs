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

impl LoopFs {
    /// `mount -o remount,<options>` (e.g. `ro`, `rw`).
    pub fn remount(&self, options: &str) {
        run(
            "mount",
            &[
                "-o",
                &format!("remount,{options}"),
                &self.mount.to_string_lossy(),
            ],
        );
    }

    /// Unmounts and mounts again (after an XFS shutdown: the log is replayed).
    pub fn cycle(&self) {
        run("umount", &[&self.mount.to_string_lossy()]);
        run("mount", &[&self.device, &self.mount.to_string_lossy()]);
    }

    /// Fills the filesystem to the last block and inode with files under `<mount>/filler`
    /// (ever smaller preallocated files, then empty ones and directories), so that creating anything fails
    /// with ENOSPC; removing that directory frees it all again.
    pub fn fill(&self) -> PathBuf {
        use std::os::fd::AsFd;
        let filler = self.mount.join("filler");
        std::fs::create_dir_all(&filler).expect("filler directory");
        let mut n = 0u32;
        for size in [64 << 20, 1 << 20, 64 << 10, 4 << 10, 0i64] {
            // Bounded: a 300 MiB filesystem takes at most a few hundred files of each size.
            for _ in 0..20_000 {
                n += 1;
                let file = match std::fs::File::create(filler.join(n.to_string())) {
                    Ok(file) => file,
                    Err(_) => break,
                };
                if size > 0
                    && nix::fcntl::fallocate(
                        file.as_fd(),
                        nix::fcntl::FallocateFlags::empty(),
                        0,
                        size,
                    )
                    .is_err()
                {
                    drop(file);
                    let _ = std::fs::remove_file(filler.join(n.to_string()));
                    break;
                }
            }
        }
        // The last free inodes: a chain of directories, each entry held in its parent's inode
        // (at most the inodes of one allocation chunk are left by now).
        let mut dir = filler.join("d");
        for _ in 0..256 {
            if std::fs::create_dir(&dir).is_err() {
                break;
            }
            dir = dir.join("d");
        }
        run("sync", &[]);
        filler
    }
}

impl Drop for LoopFs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.mount).status();
        let _ = Command::new("losetup").args(["-d", &self.device]).status();
    }
}
