//! The images the lab's nodes run: rwxnfs's own, the upstream CSI sidecars and snapshot
//! controller, the pod sandbox and a busybox for test workloads. Each function returns the
//! archive's path under `dir`, written only when its inputs changed ([`cached`]), and fails
//! the test with the fix when an input is missing.

use std::{
    io::Read,
    path::{Path, PathBuf},
    process::Command,
};

use super::{Content, ImageSpec, cached, temporary};

/// What `manifests/base/kustomization.yaml` sets the rwxnfs image to.
pub const RWXNFS_IMAGE: &str = "ghcr.io/rwxnfs/rwxnfs:0.1.0";
/// The pod sandbox image; containerd's `sandbox_image` must name it, or the kubelet pulls.
pub const PAUSE_IMAGE: &str = "registry.k8s.io/pause:3.10";

/// An upstream image and the binary of `scripts/tools` it is made of.
#[derive(Clone, Copy, Debug)]
pub struct Sidecar {
    /// As `manifests/base/controller.yaml` names it.
    pub image: &'static str,
    /// The tool group of `tools/versions` (`scripts/tools path TOOL`).
    pub tool: &'static str,
    pub binary: &'static str,
}

/// The controller's sidecars, and the snapshot controller of the snapshotter's release.
pub const SIDECARS: &[Sidecar] = &[
    Sidecar {
        image: "registry.k8s.io/sig-storage/csi-provisioner:v6.4.0",
        tool: "csi-provisioner",
        binary: "csi-provisioner",
    },
    Sidecar {
        image: "registry.k8s.io/sig-storage/csi-attacher:v4.13.0",
        tool: "csi-attacher",
        binary: "csi-attacher",
    },
    Sidecar {
        image: "registry.k8s.io/sig-storage/csi-resizer:v2.3.0",
        tool: "csi-resizer",
        binary: "csi-resizer",
    },
    Sidecar {
        image: "registry.k8s.io/sig-storage/csi-snapshotter:v8.7.0",
        tool: "csi-snapshotter",
        binary: "csi-snapshotter",
    },
    Sidecar {
        image: "registry.k8s.io/sig-storage/snapshot-controller:v8.7.0",
        tool: "csi-snapshotter",
        binary: "snapshot-controller",
    },
];

/// distroless's `PATH`.
const PATH: &str = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
const CA_BUNDLE: &str = "/etc/ssl/certs/ca-certificates.crt";
/// The same users and groups `scripts/image-rootfs` writes (a test compares them).
const PASSWD: &str = "root:x:0:0:root:/:/sbin/nologin
nonroot:x:65532:65532:nonroot:/:/sbin/nologin
nobody:x:65534:65534:nobody:/nonexistent:/sbin/nologin
";
const GROUP: &str = "root:x:0:\nnonroot:x:65532:\nnobody:x:65534:\n";
/// Debian's busybox-static.
const BUSYBOX: &str = "/bin/busybox";

/// The rwxnfs image: `scripts/image-rootfs`'s tree for `rwxnfs_bin` (the Containerfile's
/// final stage is that same tree), entrypoint `/usr/local/bin/rwxnfs`, the Containerfile's
/// `PATH`, default user root.
pub fn rwxnfs_image(rwxnfs_bin: &Path, dir: &Path) -> PathBuf {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/image-rootfs");
    std::fs::create_dir_all(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
    // The tree is assembled again on every call (a copy of the binary, well under a second);
    // the archive is written only when the tree's sizes and times differ.
    let rootfs = temporary(&dir.join("rwxnfs-rootfs"), "tree");
    let status = Command::new(&script)
        .arg(&rootfs)
        .arg(rwxnfs_bin)
        .status()
        .unwrap_or_else(|e| panic!("{}: {e}", script.display()));
    let mut spec = ImageSpec::new(RWXNFS_IMAGE);
    spec.entrypoint = vec!["/usr/local/bin/rwxnfs".into()];
    spec.env = vec![PATH.into()];
    spec.contents.push(Content::Tree(rootfs.clone()));
    let archive = status.success().then(|| cached(&spec, dir));
    let _ = std::fs::remove_dir_all(&rootfs);
    match archive {
        Some(Ok(path)) => path,
        Some(Err(e)) => panic!("the rwxnfs image: {e}"),
        None => panic!(
            "scripts/image-rootfs {} {} failed ({status}); it needs bash and readelf \
             (binutils, scripts/install-test-deps)",
            rootfs.display(),
            rwxnfs_bin.display()
        ),
    }
}

/// An upstream sidecar's image (`name` with its tag, e.g. one of [`SIDECARS`]), laid out as
/// upstream's Dockerfiles lay it out on distroless/static: the binary at `/<its name>` and the
/// entrypoint, the CA bundle, `/etc/passwd` with nonroot, `/tmp`; default user root.
/// `binary` must be static, as `scripts/tools` builds them (CGO_ENABLED=0): the image has no
/// libc.
pub fn sidecar_image(name: &str, binary: &Path, dir: &Path) -> PathBuf {
    require_static(
        binary,
        "scripts/tools builds the sidecars with CGO_ENABLED=0",
    );
    let file_name = binary
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or_else(|| panic!("{}: no file name", binary.display()));
    let at = format!("/{file_name}");
    let mut spec = ImageSpec::new(name);
    spec.entrypoint = vec![at.clone()];
    spec.env = vec![PATH.into(), format!("SSL_CERT_FILE={CA_BUNDLE}")];
    base(&mut spec);
    spec.contents.push(Content::File {
        path: at,
        from: binary.into(),
        mode: 0o755,
    });
    build(&spec, dir)
}

/// The pod sandbox, [`PAUSE_IMAGE`]: Debian's static busybox running a shell that waits for
/// ever and exits 0 on TERM or INT, as the real pause does.
pub fn pause_image(dir: &Path) -> PathBuf {
    require_static(Path::new(BUSYBOX), "install Debian's busybox-static");
    let mut spec = ImageSpec::new(PAUSE_IMAGE);
    spec.entrypoint = [
        BUSYBOX,
        "sh",
        "-c",
        "trap 'exit 0' TERM INT; while :; do /bin/busybox sleep 3600 & wait $!; done",
    ]
    .map(String::from)
    .to_vec();
    spec.contents.push(Content::File {
        path: BUSYBOX.into(),
        from: BUSYBOX.into(),
        mode: 0o755,
    });
    build(&spec, dir)
}

/// The test workloads' image, named [`busybox_name`]: Debian's static busybox at
/// `/bin/busybox` with a symlink in `/bin` for each applet, `/etc/passwd` with nonroot, `/tmp`;
/// `PATH` set, no entrypoint, command `sh`.
pub fn busybox_image(dir: &Path) -> PathBuf {
    require_static(Path::new(BUSYBOX), "install Debian's busybox-static");
    let mut spec = ImageSpec::new(&busybox_name());
    spec.cmd = vec!["sh".into()];
    spec.env = vec![PATH.into()];
    base(&mut spec);
    spec.contents.push(Content::File {
        path: BUSYBOX.into(),
        from: BUSYBOX.into(),
        mode: 0o755,
    });
    let list = busybox(&["--list"]);
    for applet in list.lines().filter(|a| !a.is_empty() && *a != "busybox") {
        spec.contents.push(Content::Symlink {
            path: format!("/bin/{applet}"),
            target: "busybox".into(),
        });
    }
    build(&spec, dir)
}

/// `localhost/rwxnfs-lab/busybox:<version>`, the version this machine's busybox reports: a
/// local name, since it is not Docker Hub's busybox.
pub fn busybox_name() -> String {
    let banner = busybox(&[]);
    let version = banner
        .split_whitespace()
        .nth(1)
        .and_then(|v| v.strip_prefix('v'))
        .unwrap_or_else(|| panic!("{BUSYBOX}: no version in {banner:?}"));
    format!("localhost/rwxnfs-lab/busybox:{version}")
}

fn busybox(args: &[&str]) -> String {
    let out = Command::new(BUSYBOX)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("{BUSYBOX}: {e}; install Debian's busybox-static"));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// What every image but the sandbox has from distroless: users, CA bundle, `/tmp`.
fn base(spec: &mut ImageSpec) {
    spec.contents.extend([
        Content::Bytes {
            path: "/etc/passwd".into(),
            data: PASSWD.into(),
            mode: 0o644,
        },
        Content::Bytes {
            path: "/etc/group".into(),
            data: GROUP.into(),
            mode: 0o644,
        },
        Content::File {
            path: CA_BUNDLE.into(),
            from: CA_BUNDLE.into(),
            mode: 0o644,
        },
        Content::Dir {
            path: "/tmp".into(),
            mode: 0o1777,
        },
    ]);
}

fn build(spec: &ImageSpec, dir: &Path) -> PathBuf {
    cached(spec, dir).unwrap_or_else(|e| panic!("the image {}: {e}", spec.name))
}

/// Fails unless `path` is an x86-64 ELF executable without a program interpreter: one that
/// runs in an image without libc.
fn require_static(path: &Path, fix: &str) {
    match interpreted(path) {
        Ok(false) => {}
        Ok(true) => panic!("{} is dynamically linked: {fix}", path.display()),
        Err(e) => panic!("{}: {e}: {fix}", path.display()),
    }
}

/// Whether an ELF64 x86-64 file has a PT_INTERP program header.
fn interpreted(path: &Path) -> std::io::Result<bool> {
    const PT_INTERP: u64 = 3;
    let mut elf = Vec::new();
    std::fs::File::open(path)?
        .take(1 << 16)
        .read_to_end(&mut elf)?;
    let le = |at: usize, n: usize| {
        elf.get(at..at + n)
            .map(|b| b.iter().rev().fold(0u64, |v, &x| v << 8 | u64::from(x)))
            .ok_or_else(|| std::io::Error::other("a truncated ELF header"))
    };
    if !elf.starts_with(b"\x7fELF\x02\x01") || le(18, 2)? != 62 {
        return Err(std::io::Error::other("not an x86-64 ELF file"));
    }
    // e_phoff, e_phentsize and e_phnum, where the ELF64 header has them.
    let (off, size, num) = (le(0x20, 8)? as usize, le(0x36, 2)? as usize, le(0x38, 2)?);
    for i in 0..num as usize {
        if le(off + i * size, 4)? == PT_INTERP {
            return Ok(true);
        }
    }
    Ok(false)
}
