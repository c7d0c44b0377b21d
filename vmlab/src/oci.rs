//! OCI image archives, written by the lab itself.
//!
//! The lab's Kubernetes nodes reach no registry and run no Docker engine, so the images their
//! containerd runs are written here, as OCI image-layout archives that
//! `ctr -n k8s.io images import` loads. An archive holds
//! - `oci-layout` and `index.json`, whose one manifest descriptor names the image
//!   (`io.containerd.image.name` and `org.opencontainers.image.ref.name`, both the full
//!   reference, which is what containerd tags the import with);
//! - `blobs/sha256/`: one layer, an uncompressed tar (on purpose: the VMs run under software
//!   emulation, where gunzip is slow), the config (`amd64`, `linux`, the layer's diff id, the
//!   entrypoint and environment) and the manifest.
//!
//! The output depends on the inputs alone: entries sorted by path, owned by 0:0, dated 0, JSON
//! written the same way every time; so the same inputs give the same digest, and [`cached`]
//! can keep an archive until an input changes. The lab's own images: [`rwxnfs_image`],
//! [`sidecar_image`] (for each of [`SIDECARS`]), [`pause_image`], [`busybox_image`].

use std::{
    collections::BTreeMap,
    fmt::Write as _,
    fs::File,
    io::{self, BufWriter, Read, Write},
    os::unix::fs::{MetadataExt, PermissionsExt},
    path::{Path, PathBuf},
    sync::atomic::{AtomicU32, Ordering},
};

use serde_json::{Value, json};

mod disk;
mod images;

pub use disk::containerd_disk;
pub use images::{
    PAUSE_IMAGE, RWXNFS_IMAGE, SIDECARS, Sidecar, busybox_image, busybox_name, pause_image,
    rwxnfs_image, sidecar_image,
};

const LAYER_TYPE: &str = "application/vnd.oci.image.layer.v1.tar";
const CONFIG_TYPE: &str = "application/vnd.oci.image.config.v1+json";
const MANIFEST_TYPE: &str = "application/vnd.oci.image.manifest.v1+json";
const INDEX_TYPE: &str = "application/vnd.oci.image.index.v1+json";
/// Part of every cache key: a change to how archives are written invalidates old ones.
const FORMAT: &str = "rwxnfs-vmlab oci 1";

/// An image: its name, its runtime configuration and what its one layer holds.
#[derive(Clone, Debug)]
pub struct ImageSpec {
    /// The full reference it is imported under, e.g. `registry.k8s.io/pause:3.10`.
    pub name: String,
    pub entrypoint: Vec<String>,
    pub cmd: Vec<String>,
    /// `KEY=value` pairs.
    pub env: Vec<String>,
    /// The default user; `None` is root, as in an image built `FROM scratch`.
    pub user: Option<String>,
    pub working_dir: Option<String>,
    /// The layer's content. A later item replaces an earlier one at the same path; missing
    /// parent directories are added with mode 0755.
    pub contents: Vec<Content>,
}

impl ImageSpec {
    pub fn new(name: &str) -> ImageSpec {
        ImageSpec {
            name: name.into(),
            entrypoint: Vec::new(),
            cmd: Vec::new(),
            env: Vec::new(),
            user: None,
            working_dir: None,
            contents: Vec::new(),
        }
    }
}

/// One item of a layer. Paths are absolute paths in the image (`/etc/passwd`).
#[derive(Clone, Debug)]
pub enum Content {
    /// Every directory, file and symlink under a host directory, at the same path under `/`,
    /// with the host's modes.
    Tree(PathBuf),
    /// A host file, following symlinks.
    File {
        path: String,
        from: PathBuf,
        mode: u32,
    },
    /// A file with these bytes.
    Bytes {
        path: String,
        data: Vec<u8>,
        mode: u32,
    },
    Dir {
        path: String,
        mode: u32,
    },
    Symlink {
        path: String,
        target: String,
    },
}

/// A layer entry, by its path in the image (relative, no leading `/`).
enum Node<'a> {
    Dir(u32),
    Host(PathBuf, u32),
    Bytes(&'a [u8], u32),
    Symlink(String),
}

/// Writes `spec` as an OCI image-layout tar at `out` (through a temporary file, so `out` is
/// either complete or absent) and returns the manifest's digest, `sha256:...`.
pub fn write_archive(spec: &ImageSpec, out: &Path) -> io::Result<String> {
    let nodes = nodes(spec)?;
    let layer = temporary(out, "layer");
    let result = write_layer(&nodes, &layer).and_then(|(diff_id, size)| {
        let tmp = temporary(out, "archive");
        let digest = write_layout(spec, &layer, &diff_id, size, &tmp)
            .and_then(|digest| std::fs::rename(&tmp, out).map(|()| digest));
        if digest.is_err() {
            let _ = std::fs::remove_file(&tmp);
        }
        digest
    });
    let _ = std::fs::remove_file(&layer);
    result.map_err(|e| context(e, out))
}

/// Writes the image layout around a written layer (`diff_id`, `size` bytes at `layer`): the
/// config, the manifest and the index that names the image. Returns the manifest's digest.
fn write_layout(
    spec: &ImageSpec,
    layer: &Path,
    diff_id: &str,
    size: u64,
    path: &Path,
) -> io::Result<String> {
    let config = to_json(&config(spec, diff_id));
    let config_digest = sha256(&config);
    let manifest = to_json(&json!({
        "schemaVersion": 2,
        "mediaType": MANIFEST_TYPE,
        "config": descriptor(CONFIG_TYPE, &config_digest, config.len() as u64),
        "layers": [descriptor(LAYER_TYPE, diff_id, size)],
    }));
    let manifest_digest = sha256(&manifest);
    let mut desc = descriptor(MANIFEST_TYPE, &manifest_digest, manifest.len() as u64);
    desc["platform"] = json!({"architecture": "amd64", "os": "linux"});
    desc["annotations"] = json!({
        "io.containerd.image.name": spec.name,
        "org.opencontainers.image.ref.name": spec.name,
    });
    let index = to_json(&json!({
        "schemaVersion": 2,
        "mediaType": INDEX_TYPE,
        "manifests": [desc],
    }));
    let layout = br#"{"imageLayoutVersion":"1.0.0"}"#;
    let mut tar = tar::Builder::new(BufWriter::new(create(path)?));
    append_bytes(&mut tar, "oci-layout", layout, 0o644)?;
    append_bytes(&mut tar, "index.json", &index, 0o644)?;
    append_dir(&mut tar, "blobs", 0o755)?;
    append_dir(&mut tar, "blobs/sha256", 0o755)?;
    append_file(&mut tar, &blob_path(diff_id), layer, 0o644)?;
    append_bytes(&mut tar, &blob_path(&config_digest), &config, 0o644)?;
    append_bytes(&mut tar, &blob_path(&manifest_digest), &manifest, 0o644)?;
    tar.into_inner()?.flush()?;
    Ok(manifest_digest)
}

/// The archive of `spec` in `dir`, written only when no archive of the same inputs is there.
/// The key covers the name, the configuration, every path, mode and symlink target, generated
/// files' bytes, and host files' size and modification time (not their bytes: the sidecars
/// are a hundred megabytes each; nor where they are, so a tree assembled anew in another
/// directory with the same times hits). Older archives of the same image are removed.
pub fn cached(spec: &ImageSpec, dir: &Path) -> io::Result<PathBuf> {
    let key = key(spec, &nodes(spec)?)?;
    std::fs::create_dir_all(dir).map_err(|e| context(e, dir))?;
    // '+' is in no image reference, so `stem+` starts this image's archives alone.
    let stem: String = spec
        .name
        .chars()
        .map(|c| if c == '/' || c == ':' { '_' } else { c })
        .collect();
    let out = dir.join(format!("{stem}+{}.tar", &key[..16]));
    if !out.is_file() {
        write_archive(spec, &out)?;
    }
    for entry in std::fs::read_dir(dir)?.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with(&format!("{stem}+")) && name.ends_with(".tar") && entry.path() != out {
            let _ = std::fs::remove_file(entry.path());
        }
    }
    Ok(out)
}

/// The image's configuration, in the OCI image spec's terms.
fn config(spec: &ImageSpec, diff_id: &str) -> Value {
    let mut config = serde_json::Map::new();
    let lists = [
        ("Entrypoint", &spec.entrypoint),
        ("Cmd", &spec.cmd),
        ("Env", &spec.env),
    ];
    for (key, list) in lists {
        if !list.is_empty() {
            config.insert(key.into(), json!(list));
        }
    }
    let strings = [("User", &spec.user), ("WorkingDir", &spec.working_dir)];
    for (key, value) in strings {
        if let Some(value) = value {
            config.insert(key.into(), json!(value));
        }
    }
    json!({
        "architecture": "amd64",
        "os": "linux",
        "config": config,
        "rootfs": {"type": "layers", "diff_ids": [diff_id]},
        "history": [{"created_by": "rwxnfs-vmlab (vmlab/src/oci.rs)"}],
    })
}

fn descriptor(media_type: &str, digest: &str, size: u64) -> Value {
    json!({"mediaType": media_type, "digest": digest, "size": size})
}

fn to_json(value: &Value) -> Vec<u8> {
    serde_json::to_vec(value).expect("a JSON value serializes")
}

/// The layer's entries by path, with the parent directories no item names.
fn nodes(spec: &ImageSpec) -> io::Result<BTreeMap<String, Node<'_>>> {
    let mut nodes = BTreeMap::new();
    for content in &spec.contents {
        match content {
            Content::Tree(root) => walk(root, root, &mut nodes)?,
            Content::File { path, from, mode } => {
                nodes.insert(clean(path)?, Node::Host(from.clone(), *mode));
            }
            Content::Bytes { path, data, mode } => {
                nodes.insert(clean(path)?, Node::Bytes(data, *mode));
            }
            Content::Dir { path, mode } => {
                nodes.insert(clean(path)?, Node::Dir(*mode));
            }
            Content::Symlink { path, target } => {
                nodes.insert(clean(path)?, Node::Symlink(target.clone()));
            }
        }
    }
    let paths: Vec<String> = nodes.keys().cloned().collect();
    for path in paths {
        let mut parent = Path::new(&path).parent();
        while let Some(dir) = parent.and_then(Path::to_str).filter(|d| !d.is_empty()) {
            match nodes.get(dir) {
                None => {
                    nodes.insert(dir.to_owned(), Node::Dir(0o755));
                }
                Some(Node::Dir(_)) => {}
                Some(_) => return Err(invalid(dir, "a parent of image paths but not a directory")),
            }
            parent = Path::new(dir).parent();
        }
    }
    Ok(nodes)
}

/// Adds what is under `dir` (a directory under `root`) at its path relative to `root`.
fn walk(root: &Path, dir: &Path, nodes: &mut BTreeMap<String, Node<'_>>) -> io::Result<()> {
    for entry in std::fs::read_dir(dir).map_err(|e| context(e, dir))? {
        let host = entry.map_err(|e| context(e, dir))?.path();
        let rel = host.strip_prefix(root).expect("read_dir yields children");
        let rel = rel
            .to_str()
            .ok_or_else(|| invalid(&host.display().to_string(), "not UTF-8"))?
            .to_owned();
        let meta = std::fs::symlink_metadata(&host).map_err(|e| context(e, &host))?;
        let mode = meta.permissions().mode() & 0o7777;
        if meta.is_dir() {
            nodes.insert(rel, Node::Dir(mode));
            walk(root, &host, nodes)?;
        } else if meta.is_file() {
            nodes.insert(rel, Node::Host(host, mode));
        } else if meta.file_type().is_symlink() {
            let target = std::fs::read_link(&host).map_err(|e| context(e, &host))?;
            let target = target
                .to_str()
                .ok_or_else(|| invalid(&host.display().to_string(), "a target not in UTF-8"))?;
            nodes.insert(rel, Node::Symlink(target.to_owned()));
        } else {
            let what = "neither a file, a directory nor a symlink";
            return Err(invalid(&host.display().to_string(), what));
        }
    }
    Ok(())
}

/// An absolute image path as a layer path: no leading `/`, no empty, `.` or `..` component.
fn clean(path: &str) -> io::Result<String> {
    let rel = path.trim_start_matches('/');
    if rel.is_empty()
        || rel
            .split('/')
            .any(|c| c.is_empty() || c == "." || c == "..")
    {
        return Err(invalid(path, "not a plain absolute path"));
    }
    Ok(rel.to_owned())
}

/// The cache key of `spec`: the hex SHA-256 of a line per entry.
fn key(spec: &ImageSpec, nodes: &BTreeMap<String, Node<'_>>) -> io::Result<String> {
    let mut text = format!("{FORMAT}\n{}\n{}\n", spec.name, config(spec, ""));
    for (path, node) in nodes {
        let _ = match node {
            Node::Dir(mode) => writeln!(text, "d {mode:o} {path}"),
            Node::Host(from, mode) => {
                let meta = std::fs::metadata(from).map_err(|e| context(e, from))?;
                let (size, secs, nanos) = (meta.len(), meta.mtime(), meta.mtime_nsec());
                writeln!(text, "f {mode:o} {path} {size} {secs}.{nanos:09}")
            }
            Node::Bytes(data, mode) => writeln!(text, "b {mode:o} {path} {}", sha256(data)),
            Node::Symlink(target) => writeln!(text, "l {path} {target}"),
        };
    }
    Ok(sha256(text.as_bytes())["sha256:".len()..].to_owned())
}

/// Writes the layer tar to `path`; returns its digest (the diff id: it is not compressed) and
/// size.
fn write_layer(nodes: &BTreeMap<String, Node<'_>>, path: &Path) -> io::Result<(String, u64)> {
    let file = BufWriter::new(create(path)?);
    let mut tar = tar::Builder::new(Digesting::new(file));
    for (path, node) in nodes {
        match node {
            Node::Dir(mode) => append_dir(&mut tar, path, *mode)?,
            Node::Host(from, mode) => append_file(&mut tar, path, from, *mode)?,
            Node::Bytes(data, mode) => append_bytes(&mut tar, path, data, *mode)?,
            Node::Symlink(target) => {
                let mut header = header(tar::EntryType::Symlink, 0o777, 0);
                tar.append_link(&mut header, path, target)?;
            }
        }
    }
    let Digesting {
        mut inner,
        sha,
        len,
    } = tar.into_inner()?;
    inner.flush()?;
    Ok((hex_digest(sha.finish()), len))
}

/// A tar header that says nothing about the machine it was written on.
fn header(kind: tar::EntryType, mode: u32, size: u64) -> tar::Header {
    let mut header = tar::Header::new_gnu();
    header.set_entry_type(kind);
    header.set_mode(mode);
    header.set_size(size);
    header.set_mtime(0);
    header.set_uid(0);
    header.set_gid(0);
    header
}

fn append_dir<W: Write>(tar: &mut tar::Builder<W>, path: &str, mode: u32) -> io::Result<()> {
    let mut header = header(tar::EntryType::Directory, mode, 0);
    tar.append_data(&mut header, path, io::empty())
}

fn append_bytes<W: Write>(
    tar: &mut tar::Builder<W>,
    path: &str,
    data: &[u8],
    mode: u32,
) -> io::Result<()> {
    let mut header = header(tar::EntryType::Regular, mode, data.len() as u64);
    tar.append_data(&mut header, path, data)
}

fn append_file<W: Write>(
    tar: &mut tar::Builder<W>,
    path: &str,
    from: &Path,
    mode: u32,
) -> io::Result<()> {
    let file = open(from)?;
    let size = file.metadata().map_err(|e| context(e, from))?.len();
    let mut header = header(tar::EntryType::Regular, mode, size);
    // The header promised `size` bytes: a file that shrinks meanwhile must fail the write, not
    // leave an entry shorter than its header.
    let mut exact = Exact {
        inner: file.take(size),
        left: size,
    };
    tar.append_data(&mut header, path, &mut exact)
        .map_err(|e| context(e, from))
}

/// Reads exactly `left` bytes from `inner`, or fails.
struct Exact<R> {
    inner: R,
    left: u64,
}

impl<R: Read> Read for Exact<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        if n == 0 && self.left > 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!("{} bytes short of its size when read", self.left),
            ));
        }
        self.left -= n as u64;
        Ok(n)
    }
}

/// A writer that hashes and counts what passes through it.
struct Digesting<W> {
    inner: W,
    sha: ring::digest::Context,
    len: u64,
}

impl<W> Digesting<W> {
    fn new(inner: W) -> Self {
        Digesting {
            inner,
            sha: ring::digest::Context::new(&ring::digest::SHA256),
            len: 0,
        }
    }
}

impl<W: Write> Write for Digesting<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.sha.update(&buf[..n]);
        self.len += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

fn sha256(data: &[u8]) -> String {
    hex_digest(ring::digest::digest(&ring::digest::SHA256, data))
}

fn hex_digest(digest: ring::digest::Digest) -> String {
    let mut s = String::from("sha256:");
    for b in digest.as_ref() {
        let _ = write!(s, "{b:02x}");
    }
    s
}

fn blob_path(digest: &str) -> String {
    format!("blobs/sha256/{}", &digest["sha256:".len()..])
}

/// A name beside `out` for a file being written, unique to this process and call.
fn temporary(out: &Path, what: &str) -> PathBuf {
    static N: AtomicU32 = AtomicU32::new(0);
    let n = N.fetch_add(1, Ordering::Relaxed);
    let name = out.file_name().unwrap_or_default().to_string_lossy();
    out.with_file_name(format!("{name}.{what}.{}-{n}.tmp", std::process::id()))
}

fn create(path: &Path) -> io::Result<File> {
    File::create(path).map_err(|e| context(e, path))
}

fn open(path: &Path) -> io::Result<File> {
    File::open(path).map_err(|e| context(e, path))
}

fn context(e: io::Error, path: &Path) -> io::Error {
    io::Error::new(e.kind(), format!("{}: {e}", path.display()))
}

fn invalid(what: &str, why: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidInput, format!("{what}: {why}"))
}
