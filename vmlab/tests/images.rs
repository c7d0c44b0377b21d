//! The lab's images, checked by their consumers: a private containerd (Debian's 1.6, as on the
//! lab's nodes) imports each archive under its exact name and runs it with runc, and skopeo
//! (containers/image, a second reader of the format) reads the configs.

use std::{
    os::unix::fs::{MetadataExt, PermissionsExt},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use rwxnfs_vmlab::oci;

/// Where the tests cache the lab's archives, as the VM tests do.
fn images() -> PathBuf {
    Path::new(env!("CARGO_TARGET_TMPDIR")).join("images")
}

/// Fails loudly, with the fix, where a consumer is missing.
fn require(program: &str) {
    let found = std::env::var_os("PATH")
        .is_some_and(|path| std::env::split_paths(&path).any(|dir| dir.join(program).is_file()));
    assert!(
        found,
        "{program} is not installed: scripts/install-test-deps installs it (Debian packages \
         containerd runc skopeo)"
    );
}

/// A containerd of its own (sockets, content and snapshots in a temporary directory under
/// `/tmp`, where the sockets' paths stay short; no CRI plugin), killed by its PID on drop.
struct Containerd {
    child: Child,
    dir: tempfile::TempDir,
}

impl Containerd {
    fn start() -> Containerd {
        for program in ["containerd", "containerd-shim-runc-v2", "ctr", "runc"] {
            require(program);
        }
        let dir = tempfile::Builder::new()
            .prefix("rwxnfs-oci-")
            .tempdir()
            .expect("a temporary directory");
        let d = dir.path();
        let config = format!(
            "version = 2\n\
             disabled_plugins = [\"io.containerd.grpc.v1.cri\"]\n\
             [grpc]\n  address = \"{sock}\"\n\
             [ttrpc]\n  address = \"{sock}.ttrpc\"\n\
             [debug]\n  address = \"\"\n\
             [metrics]\n  address = \"\"\n\
             [plugins.\"io.containerd.internal.v1.opt\"]\n  path = \"{opt}\"\n",
            sock = d.join("c.sock").display(),
            opt = d.join("opt").display(),
        );
        std::fs::write(d.join("config.toml"), config).expect("write config.toml");
        let log = std::fs::File::create(d.join("containerd.log")).expect("create the log");
        let child = Command::new("containerd")
            .arg("--root")
            .arg(d.join("root"))
            .arg("--state")
            .arg(d.join("state"))
            .arg("--address")
            .arg(d.join("c.sock"))
            .arg("--config")
            .arg(d.join("config.toml"))
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("the log"))
            .stderr(log)
            .spawn()
            .expect("start containerd");
        let mut containerd = Containerd { child, dir };
        let start = Instant::now();
        while !containerd
            .command(&["version"])
            .output()
            .is_ok_and(|o| o.status.success())
        {
            if let Ok(Some(status)) = containerd.child.try_wait() {
                panic!("containerd exited ({status}):\n{}", containerd.log());
            }
            assert!(
                start.elapsed() < Duration::from_secs(30),
                "containerd did not serve within 30 s:\n{}",
                containerd.log()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        containerd
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("containerd.log")).unwrap_or_default()
    }

    /// `ctr` on this containerd, in the namespace the kubelet's images live in.
    fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new("ctr");
        cmd.arg("--address")
            .arg(self.dir.path().join("c.sock"))
            .args(["-n", "k8s.io"])
            .args(args)
            .stdin(Stdio::null());
        cmd
    }

    /// Runs `ctr args`; its standard output, or a failure with everything it said.
    fn ctr(&self, args: &[&str]) -> String {
        let out = self.command(args).output().expect("run ctr");
        assert!(
            out.status.success(),
            "ctr {} failed ({}):\n{}{}",
            args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Imports `archive` and checks that `name`, exactly, is what it was tagged with.
    fn import(&self, archive: &Path, name: &str) {
        let start = Instant::now();
        self.ctr(&["images", "import", archive.to_str().expect("UTF-8 path")]);
        let size = std::fs::metadata(archive).expect("the archive").len();
        eprintln!(
            "imported {name}: {:.1} MiB in {:.2?}",
            size as f64 / 1048576.0,
            start.elapsed()
        );
        let names = self.ctr(&["images", "ls", "-q"]);
        assert!(
            names.lines().any(|l| l == name),
            "containerd lists no {name} after the import; it has:\n{names}"
        );
    }

    /// The image's root filesystem, mounted read-only until the guard drops.
    fn mount(&self, name: &str) -> Mounted<'_> {
        let label: String = name
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
            .collect();
        let target = self.dir.path().join(format!("mnt-{label}"));
        std::fs::create_dir(&target).expect("create a mount point");
        self.ctr(&["images", "mount", name, target.to_str().expect("UTF-8")]);
        Mounted {
            containerd: self,
            target,
        }
    }
}

impl Drop for Containerd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            eprintln!("--- containerd's log ---\n{}", self.log());
        }
    }
}

struct Mounted<'a> {
    containerd: &'a Containerd,
    target: PathBuf,
}

impl Drop for Mounted<'_> {
    fn drop(&mut self) {
        let target = self.target.to_str().expect("UTF-8");
        let _ = self
            .containerd
            .command(&["images", "unmount", "--rm", target])
            .output();
    }
}

/// `skopeo inspect --config` of an archive: the image configuration as containers/image reads
/// it.
fn skopeo_config(archive: &Path) -> serde_json::Value {
    require("skopeo");
    let out = Command::new("skopeo")
        .args(["inspect", "--config"])
        .arg(format!("oci-archive:{}", archive.display()))
        .output()
        .expect("run skopeo");
    assert!(
        out.status.success(),
        "skopeo inspect --config failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("skopeo prints JSON")
}

/// The rwxnfs binary of this build profile (`cargo build -p rwxnfs`), beside the test's.
fn rwxnfs_bin() -> PathBuf {
    let exe = std::env::current_exe().expect("the test's path");
    let bin = exe
        .parent()
        .and_then(Path::parent)
        .expect("target/<profile>/deps")
        .join("rwxnfs");
    assert!(
        bin.is_file(),
        "{} is missing: build it first with `cargo build -p rwxnfs`",
        bin.display()
    );
    bin
}

/// `scripts/tools path TOOL`/BINARY, built first if missing.
fn tool(tool: &str, binary: &str) -> PathBuf {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/tools");
    let out = Command::new(&script)
        .args(["path", tool])
        .output()
        .expect("run scripts/tools");
    assert!(
        out.status.success(),
        "scripts/tools could not build {tool}:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    Path::new(String::from_utf8_lossy(&out.stdout).trim()).join(binary)
}

/// A container id of this process: runc's state directory (`/run/containerd/runc/k8s.io`) is
/// the same for every containerd on the machine.
fn container_id(name: &str) -> String {
    format!("{name}-{}", std::process::id())
}

/// Writes an image through `write` and reports its size and the time it took.
fn timed(name: &str, write: impl FnOnce() -> PathBuf) -> PathBuf {
    let start = Instant::now();
    let path = write();
    let size = std::fs::metadata(&path).expect("the archive").len();
    eprintln!(
        "built {name}: {:.1} MiB in {:.2?}",
        size as f64 / 1048576.0,
        start.elapsed()
    );
    path
}

#[test]
fn the_rwxnfs_image_holds_its_binary_and_libraries_and_no_shell() {
    let containerd = Containerd::start();
    let bin = rwxnfs_bin();
    let archive = timed(oci::RWXNFS_IMAGE, || oci::rwxnfs_image(&bin, &images()));
    containerd.import(&archive, oci::RWXNFS_IMAGE);
    // The tree is assembled anew on each call, with the same sizes and times: the cache holds.
    let inode = std::fs::metadata(&archive).expect("the archive").ino();
    assert_eq!(oci::rwxnfs_image(&bin, &images()), archive);
    assert_eq!(
        std::fs::metadata(&archive).expect("the archive").ino(),
        inode
    );

    let config = skopeo_config(&archive);
    assert_eq!(
        config["config"]["Entrypoint"],
        serde_json::json!(["/usr/local/bin/rwxnfs"])
    );
    assert_eq!(config["architecture"], "amd64");
    assert_eq!(config["os"], "linux");
    assert!(config["config"]["User"].is_null(), "root by default");

    // The glibc-dynamic binary starts: its loader and libraries are all in the image.
    let version = containerd.ctr(&[
        "run",
        "--rm",
        oci::RWXNFS_IMAGE,
        &container_id("rwxnfs-version"),
        "/usr/local/bin/rwxnfs",
        "--version",
    ]);
    assert!(version.starts_with("rwxnfs "), "{version:?}");

    let mounted = containerd.mount(oci::RWXNFS_IMAGE);
    let root = &mounted.target;
    let mut top: Vec<String> = std::fs::read_dir(root)
        .expect("read the image's root")
        .map(|e| {
            e.expect("an entry")
                .file_name()
                .to_string_lossy()
                .into_owned()
        })
        .collect();
    top.sort();
    assert_eq!(top, ["etc", "lib", "lib64", "tmp", "usr"]);
    for absent in ["bin", "sbin", "usr/bin", "bin/sh"] {
        assert!(!root.join(absent).exists(), "/{absent} is in the image");
    }
    let meta = std::fs::metadata(root.join("usr/local/bin/rwxnfs")).expect("the binary");
    assert_eq!(meta.permissions().mode() & 0o7777, 0o755);
    assert_eq!(
        meta.len(),
        std::fs::metadata(&bin).expect("the binary").len()
    );
    let tmp = std::fs::metadata(root.join("tmp")).expect("/tmp");
    assert_eq!(tmp.permissions().mode() & 0o7777, 0o1777);
    assert_eq!((tmp.uid(), tmp.gid()), (0, 0));
    assert_eq!(
        std::fs::read(root.join("etc/ssl/certs/ca-certificates.crt")).expect("the CA bundle"),
        std::fs::read("/etc/ssl/certs/ca-certificates.crt").expect("this machine's CA bundle")
    );
    let passwd = std::fs::read_to_string(root.join("etc/passwd")).expect("/etc/passwd");
    for user in [
        "root:x:0:0:",
        "nonroot:x:65532:65532:",
        "nobody:x:65534:65534:",
    ] {
        assert!(passwd.contains(user), "{passwd}");
    }

    // The users and groups the sidecars' and busybox's images get from Rust are the script's.
    let busybox = oci::busybox_image(&images());
    containerd.import(&busybox, &oci::busybox_name());
    let other = containerd.mount(&oci::busybox_name());
    for file in ["etc/passwd", "etc/group"] {
        assert_eq!(
            std::fs::read(root.join(file)).expect("the rwxnfs image's"),
            std::fs::read(other.target.join(file)).expect("busybox's"),
            "/{file} differs between scripts/image-rootfs and vmlab::oci"
        );
    }
}

#[test]
fn busybox_runs_a_shell_with_every_applet_on_its_path() {
    let containerd = Containerd::start();
    let name = oci::busybox_name();
    assert!(
        name.starts_with("localhost/rwxnfs-lab/busybox:1."),
        "{name}"
    );
    let archive = timed(&name, || oci::busybox_image(&images()));
    containerd.import(&archive, &name);
    let config = skopeo_config(&archive);
    assert_eq!(config["config"]["Cmd"], serde_json::json!(["sh"]));
    assert!(config["config"]["Entrypoint"].is_null());

    let out = containerd.ctr(&[
        "run",
        "--rm",
        &name,
        &container_id("busybox-sh"),
        "sh",
        "-c",
        "echo ok; id -un; ls -ld /tmp | cut -c1-10; readlink /bin/wget",
    ]);
    assert_eq!(out, "ok\nroot\ndrwxrwxrwt\nbusybox\n");
}

#[test]
fn the_pause_image_waits_until_terminated_and_then_exits_0() {
    let containerd = Containerd::start();
    let archive = timed(oci::PAUSE_IMAGE, || oci::pause_image(&images()));
    containerd.import(&archive, oci::PAUSE_IMAGE);

    // Its own entrypoint, as the kubelet starts a sandbox.
    let id = container_id("pause");
    let mut run = containerd
        .command(&["run", "--rm", oci::PAUSE_IMAGE, &id])
        .stdout(Stdio::null())
        .spawn()
        .expect("ctr run");
    let start = Instant::now();
    while !containerd
        .ctr(&["tasks", "ls"])
        .lines()
        .any(|l| l.starts_with(&format!("{id} ")) && l.contains("RUNNING"))
    {
        assert!(start.elapsed() < Duration::from_secs(20), "pause never ran");
        std::thread::sleep(Duration::from_millis(100));
    }
    std::thread::sleep(Duration::from_millis(500));
    assert!(
        run.try_wait().expect("ctr run").is_none(),
        "pause ended by itself"
    );
    containerd.ctr(&["tasks", "kill", "--signal", "SIGTERM", &id]);
    let start = Instant::now();
    let status = loop {
        if let Some(status) = run.try_wait().expect("ctr run") {
            break status;
        }
        if start.elapsed() > Duration::from_secs(10) {
            let _ = containerd.ctr(&["tasks", "kill", "--signal", "SIGKILL", &id]);
            let _ = run.wait();
            panic!("pause did not end within 10 s of SIGTERM");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(status.success(), "pause exited {status} on SIGTERM");
}

#[test]
fn each_sidecar_image_imports_under_its_manifest_name_and_runs_its_binary() {
    let manifests = Path::new(env!("CARGO_MANIFEST_DIR")).join("../manifests/base");
    let controller =
        std::fs::read_to_string(manifests.join("controller.yaml")).expect("controller.yaml");
    let kustomization =
        std::fs::read_to_string(manifests.join("kustomization.yaml")).expect("kustomization");
    let (image, tag) = oci::RWXNFS_IMAGE.split_once(':').expect("a tag");
    assert!(
        kustomization.contains(&format!("newName: {image}"))
            && kustomization.contains(&format!("newTag: {tag}")),
        "manifests/base/kustomization.yaml does not set the image to {}",
        oci::RWXNFS_IMAGE
    );

    let containerd = Containerd::start();
    for sidecar in oci::SIDECARS {
        if sidecar.binary != "snapshot-controller" {
            assert!(
                controller.contains(&format!("image: {}\n", sidecar.image)),
                "manifests/base/controller.yaml does not run {}",
                sidecar.image
            );
        }
        let binary = tool(sidecar.tool, sidecar.binary);
        let archive = timed(sidecar.image, || {
            oci::sidecar_image(sidecar.image, &binary, &images())
        });
        containerd.import(&archive, sidecar.image);
        let entrypoint = format!("/{}", sidecar.binary);
        let id = container_id(&format!("{}-version", sidecar.binary));
        let out = containerd
            .command(&["run", "--rm", sidecar.image, &id, &entrypoint, "--version"])
            .output()
            .expect("ctr run");
        assert!(
            out.status.success(),
            "{entrypoint} --version in {}: {}{}",
            sidecar.image,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let provisioner = oci::SIDECARS[0];
    let archive = oci::sidecar_image(
        provisioner.image,
        &tool(provisioner.tool, provisioner.binary),
        &images(),
    );
    let config = skopeo_config(&archive);
    assert_eq!(
        config["config"]["Entrypoint"],
        serde_json::json!(["/csi-provisioner"])
    );
}
