//! A node's disk with its images already in containerd: importing the images inside every
//! node VM (copying a hundred megabytes per image over 9p, hashing and unpacking it, all
//! under software emulation) took four minutes a node. So this machine's containerd (the
//! same Debian package the nodes run) imports and unpacks them once into a root of its own,
//! and `mke2fs -d` turns that root into an ext4 filesystem image that each node boots with a
//! copy of, mounted at /var/lib: containerd on the node finds the images, unpacked for its
//! overlayfs snapshotter, at start.

use std::{
    io,
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::{Duration, Instant},
};

/// The filesystem image, `size_mb` large (sparse), with `archives` imported; cached in `dir`
/// by the archives' names (which carry their content keys) and the size.
pub fn containerd_disk(archives: &[PathBuf], size_mb: u64, dir: &Path) -> io::Result<PathBuf> {
    let mut names: Vec<String> = archives
        .iter()
        .map(|a| {
            a.file_name()
                .unwrap_or_default()
                .to_string_lossy()
                .into_owned()
        })
        .collect();
    names.sort();
    let key = ring::digest::digest(
        &ring::digest::SHA256,
        format!(
            "rwxnfs-vmlab containerd disk 1 {size_mb} {}",
            names.join(" ")
        )
        .as_bytes(),
    );
    let key: String = key.as_ref()[..8]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    std::fs::create_dir_all(dir)?;
    let out = dir.join(format!("containerd-disk+{key}.ext4"));
    if out.is_file() {
        return Ok(out);
    }
    for program in ["containerd", "ctr", "mke2fs"] {
        if !on_path(program) {
            return Err(io::Error::other(format!(
                "{program} is not installed: scripts/install-test-deps installs it (Debian \
                 packages containerd, e2fsprogs)"
            )));
        }
    }
    let work = dir.join(format!("containerd-disk+{key}.tmp"));
    let _ = std::fs::remove_dir_all(&work);
    let root = work.join("root");
    let containerd_root = root.join("containerd");
    std::fs::create_dir_all(&containerd_root)?;
    let sock = work.join("c.sock");
    let config = format!(
        "version = 2\n\
         root = \"{root}\"\n\
         state = \"{state}\"\n\
         disabled_plugins = [\"io.containerd.grpc.v1.cri\"]\n\
         [grpc]\n  address = \"{sock}\"\n\
         [ttrpc]\n  address = \"{sock}.ttrpc\"\n\
         [debug]\n  address = \"\"\n\
         [metrics]\n  address = \"\"\n\
         [plugins.\"io.containerd.internal.v1.opt\"]\n  path = \"{opt}\"\n",
        root = containerd_root.display(),
        state = work.join("state").display(),
        sock = sock.display(),
        opt = work.join("opt").display(),
    );
    std::fs::write(work.join("config.toml"), config)?;
    let log = std::fs::File::create(work.join("containerd.log"))?;
    let mut containerd = Command::new("containerd")
        .arg("--config")
        .arg(work.join("config.toml"))
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .spawn()?;
    let result = (|| {
        let started = Instant::now();
        while !sock.exists() {
            if started.elapsed() > Duration::from_secs(30) {
                return Err(io::Error::other("containerd did not serve within 30 s"));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        for archive in archives {
            let out = Command::new("ctr")
                .arg("--address")
                .arg(&sock)
                .args(["-n", "k8s.io", "images", "import"])
                .arg(archive)
                .output()?;
            if !out.status.success() {
                return Err(io::Error::other(format!(
                    "ctr images import {}: {}",
                    archive.display(),
                    String::from_utf8_lossy(&out.stderr)
                )));
            }
        }
        Ok(())
    })();
    // SIGTERM, so the metadata database is closed cleanly before it is copied.
    let pid = containerd.id().to_string();
    let _ = Command::new("kill").args(["-TERM", &pid]).status();
    let _ = containerd.wait();
    if let Err(e) = result {
        let log = std::fs::read_to_string(work.join("containerd.log")).unwrap_or_default();
        return Err(io::Error::other(format!("{e}\ncontainerd's log:\n{log}")));
    }
    let image = work.join("disk.ext4");
    let out_mke2fs = Command::new("mke2fs")
        .args(["-q", "-F", "-t", "ext4", "-L", "var-lib", "-d"])
        .arg(&root)
        .arg(&image)
        .arg(format!("{size_mb}M"))
        .output()?;
    if !out_mke2fs.status.success() {
        return Err(io::Error::other(format!(
            "mke2fs -d {}: {}",
            root.display(),
            String::from_utf8_lossy(&out_mke2fs.stderr)
        )));
    }
    std::fs::rename(&image, &out)?;
    let _ = std::fs::remove_dir_all(&work);
    for entry in std::fs::read_dir(dir)?.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with("containerd-disk+") && entry.path() != out {
            let _ = std::fs::remove_file(entry.path());
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
    Ok(out)
}

fn on_path(program: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|path| std::env::split_paths(&path).any(|dir| dir.join(program).is_file()))
}
