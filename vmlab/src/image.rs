//! The VMs' kernel and initramfs, built by `tests/vm/build-image` from one Debian release's
//! packages and cached by kernel package and build-script version.

use std::{
    fmt,
    path::{Path, PathBuf},
    process::Command,
};

/// The Debian release whose kernel and userland (nfs-utils, drbd-utils, xfsprogs, their
/// libraries and C library) the VMs run. Users run both kernels, so the tier tests both.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kernel {
    /// Debian 12: Linux 6.1, nfs-utils 2.6, drbd-utils 9.22 (DRBD 8.4 in the kernel).
    Bookworm,
    /// Debian 13: Linux 6.12, nfs-utils 2.8 (`xprtsec=`), drbd-utils 9.22 (DRBD 8.4 in the
    /// kernel), and ktls-utils' `tlshd` for RPC-with-TLS.
    Trixie,
}

impl Kernel {
    /// Both, oldest first.
    pub const ALL: [Kernel; 2] = [Kernel::Bookworm, Kernel::Trixie];

    /// The Debian suite the image is built from.
    pub fn suite(self) -> &'static str {
        match self {
            Kernel::Bookworm => "bookworm",
            Kernel::Trixie => "trixie",
        }
    }

    /// The kernel's version line (what `uname -r` starts with in the VMs).
    pub fn version(self) -> &'static str {
        match self {
            Kernel::Bookworm => "6.1",
            Kernel::Trixie => "6.12",
        }
    }

    /// `RWXNFS_VM_KERNEL`: `bookworm` or `6.1` (the default when unset), `trixie` or `6.12`.
    /// Any other value is a mistake that must not pass for the default: it panics, naming the
    /// values.
    pub fn from_env() -> Kernel {
        match std::env::var("RWXNFS_VM_KERNEL") {
            Err(std::env::VarError::NotPresent) => Kernel::Bookworm,
            Ok(value) => value.parse().unwrap_or_else(|e| panic!("{e}")),
            Err(e) => panic!("RWXNFS_VM_KERNEL: {e}"),
        }
    }
}

impl std::str::FromStr for Kernel {
    type Err = String;

    fn from_str(s: &str) -> Result<Kernel, String> {
        Kernel::ALL
            .into_iter()
            .find(|k| s == k.suite() || s == k.version())
            .ok_or_else(|| {
                format!("RWXNFS_VM_KERNEL={s:?}: expected bookworm (or 6.1) or trixie (or 6.12)")
            })
    }
}

impl fmt::Display for Kernel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Linux {} (Debian {})", self.version(), self.suite())
    }
}

/// The cached base image: a kernel and an initramfs, and the initramfs of Kubernetes nodes
/// (the base followed by containerd, runc, the CNI plugins and nft).
#[derive(Clone, Debug)]
pub struct Image {
    pub release: Kernel,
    pub kernel: PathBuf,
    pub initrd: PathBuf,
    pub kube_initrd: PathBuf,
}

impl Image {
    /// [`Image::get_for`] the kernel [`Kernel::from_env`] names.
    pub fn get(target_tmp: &Path) -> Image {
        Image::get_for(Kernel::from_env(), target_tmp)
    }

    /// Builds the image of `release` if its inputs changed (a no-op otherwise) and returns it.
    ///
    /// The image is cached outside the clone, by kernel package and version of its build
    /// script, in `$RWXNFS_VM_CACHE` (default /var/cache/rwxnfs/vm-image, beside the
    /// upstream tools' cache), so a second clone on the machine builds nothing; where that
    /// cannot be created, under `target_tmp`. Each release's package lists are kept there too
    /// (`apt-<suite>`), apart from this machine's.
    pub fn get_for(release: Kernel, target_tmp: &Path) -> Image {
        let root = std::env::var_os("RWXNFS_VM_CACHE").map_or_else(
            || PathBuf::from("/var/cache/rwxnfs/vm-image"),
            PathBuf::from,
        );
        let root = if std::fs::create_dir_all(&root).is_ok() {
            root
        } else {
            target_tmp.join("vm-image")
        };
        let builder = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/vm/build-image");
        let out = Command::new(&builder)
            .args(["--suite", release.suite(), "--cache"])
            .arg(&root)
            .stderr(std::process::Stdio::inherit())
            .output()
            .unwrap_or_else(|e| panic!("{}: {e}", builder.display()));
        assert!(
            out.status.success(),
            "tests/vm/build-image --suite {} failed; it needs qemu-system-x86, busybox-static, \
             cpio, binutils, xz-utils and zstd (scripts/install-test-deps) and Debian's \
             package archive",
            release.suite()
        );
        let dir = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
        Image {
            release,
            kernel: dir.join("vmlinux"),
            initrd: dir.join("base.cpio.gz"),
            kube_initrd: dir.join("kube.cpio.gz"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_kernel_is_named_by_its_suite_or_its_version() {
        for (name, kernel) in [
            ("bookworm", Kernel::Bookworm),
            ("6.1", Kernel::Bookworm),
            ("trixie", Kernel::Trixie),
            ("6.12", Kernel::Trixie),
        ] {
            assert_eq!(name.parse::<Kernel>(), Ok(kernel), "{name}");
        }
        let err = "6.6".parse::<Kernel>().unwrap_err();
        assert_eq!(
            err,
            "RWXNFS_VM_KERNEL=\"6.6\": expected bookworm (or 6.1) or trixie (or 6.12)"
        );
    }
}
