//! The export table: one durable record per export and per snapshot, on the replicated
//! filesystem, so the next NFS host can take over with the same export ids.
//!
//! ```text
//! <state>/exports/<name>.json     one record per export
//! <state>/snapshots/<name>.json   one record per snapshot
//! <state>/next-export-id          the next export id to hand out (never reused)
//! <state>/.reserve                 1 MiB held back for when the filesystem fills up
//! <state>/exports.image           every export record in one file, to start fast (image.rs)
//! <state>/snapshots.image         the same for the snapshot records
//! ```
//!
//! Every write is atomic and durable: write a temporary file, fsync it, rename it over the
//! record, fsync the directory. A crash leaves either the old record or the new one, never half
//! of one; leftover temporary files are ignored and cleaned up on load. A write that fails
//! (a full or read-only filesystem) removes its temporary file and leaves the record as it was.
//!
//! Once a directory has been read whole, its records are kept in memory and every write goes
//! through to both, so reads (List, Get, the records a call starts from) are served from memory
//! and go on being served when the filesystem below stops answering (an XFS shutdown, a DRBD
//! device that lost quorum), while writes are refused with the cause.
//!
//! When the filesystem is full, a new record is refused (RESOURCE_EXHAUSTED), but a change to
//! an existing one (a grant or revoke, a delete: the ways out of a full disk) may use the
//! reserve: the agent gives it up and writes again. It takes the reserve back once the
//! filesystem has room again.

use std::{
    collections::BTreeMap,
    fs::{self, File},
    io::{self, Write},
    net::IpAddr,
    path::{Path, PathBuf},
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, Ordering::Relaxed},
    },
};

use ipnet::IpNet;
use rwxnfs_model::{Name, Transport};
use serde::{Deserialize, Serialize, de::DeserializeOwned};

use self::image::{Kept, Stamp};

mod image;

/// The first export id handed out. Ganesha reserves 0 for its pseudo root, and low ids are
/// often used by hand-written exports on the same server.
pub const FIRST_EXPORT_ID: u32 = 100;

/// What `<state>/.reserve` holds back.
const RESERVE_BYTES: u64 = 1 << 20;
/// The reserve is taken back only with this much more free, so it is not given up and taken
/// back on every write of a nearly full filesystem.
const RESERVE_AGAIN_BYTES: u64 = 16 * RESERVE_BYTES;

#[derive(Debug, thiserror::Error)]
pub enum TableError {
    #[error("export table {path}: {source}")]
    Io { path: PathBuf, source: io::Error },
    /// ENOSPC or EDQUOT: the filesystem holding the state directory is full.
    #[error(
        "the agent's state directory is full: writing {path}: {source}; free space on the \
         filesystem that holds it"
    )]
    NoSpace { path: PathBuf, source: io::Error },
    /// EROFS or EIO: the filesystem holding the state directory was remounted read-only, shut
    /// down after an error (XFS), or lost its device (a DRBD resource without quorum).
    #[error(
        "the agent's state directory cannot be written: {path}: {source}; its filesystem is \
         read-only or has failed (on DRBD: has the resource quorum?); nothing can change until \
         it is writable again or the agent fails over"
    )]
    Unwritable { path: PathBuf, source: io::Error },
    #[error("export table record {path} is unreadable: {source}")]
    Corrupt {
        path: PathBuf,
        source: serde_json::Error,
    },
    #[error("export ids are exhausted (the counter in {path} reached its maximum)")]
    IdsExhausted { path: PathBuf },
}

impl TableError {
    /// An I/O error on `path`, told apart by what the operator must do about it.
    pub fn io(path: PathBuf, source: io::Error) -> Self {
        match Failure::of(&source) {
            Failure::NoSpace => TableError::NoSpace { path, source },
            Failure::Unwritable => TableError::Unwritable { path, source },
            Failure::Other => TableError::Io { path, source },
        }
    }
}

/// What a failed write to a filesystem means for whoever asked for it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Failure {
    /// ENOSPC, EDQUOT: full; freeing space fixes it.
    NoSpace,
    /// EROFS, EIO: read-only or failed (an XFS shutdown, a DRBD device without quorum).
    Unwritable,
    Other,
}

impl Failure {
    pub fn of(e: &io::Error) -> Self {
        match (e.raw_os_error(), e.kind()) {
            (Some(libc::ENOSPC | libc::EDQUOT), _)
            | (_, io::ErrorKind::StorageFull | io::ErrorKind::QuotaExceeded) => Failure::NoSpace,
            (Some(libc::EROFS | libc::EIO), _) | (_, io::ErrorKind::ReadOnlyFilesystem) => {
                Failure::Unwritable
            }
            _ => Failure::Other,
        }
    }
}

/// Where a record is in its life. Anything but `Ready` found at start-up is the trace of an
/// operation a crash interrupted, and reconcile finishes or rolls it back.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RecordState {
    Creating,
    Ready,
    Deleting,
}

/// Read-write or read-only, per client.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Access {
    Rw,
    Ro,
}

/// Which client users are mapped to the anonymous user.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Squash {
    None,
    #[default]
    Root,
    All,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OnDelete {
    #[default]
    Delete,
    Retain,
    Archive,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClientRecord {
    pub client_id: String,
    pub addresses: Vec<IpAddr>,
    pub access: Access,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct OptionsRecord {
    pub squash: Squash,
    pub uid: u32,
    pub gid: u32,
    pub mode: u32,
    pub allowed_clients: Vec<IpNet>,
    pub on_delete: OnDelete,
    /// `none` is not written, so records read back exactly as older agents wrote them.
    #[serde(
        default,
        with = "transport_as_string",
        skip_serializing_if = "transport_as_string::is_none"
    )]
    pub transport: Transport,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SourceRecord {
    Snapshot(String),
    Export(String),
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExportRecord {
    #[serde(with = "name_as_string")]
    pub name: Name,
    pub export_id: u32,
    pub state: RecordState,
    /// Relative to the export root.
    pub path: PathBuf,
    pub pseudo_path: String,
    /// What the quota enforces (or would, without quotas).
    pub capacity_bytes: u64,
    pub quota_enforced: bool,
    pub clients: Vec<ClientRecord>,
    pub options: OptionsRecord,
    pub source: Option<SourceRecord>,
    pub created_unix_ms: u64,
    pub updated_unix_ms: u64,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SnapshotRecord {
    #[serde(with = "name_as_string")]
    pub name: Name,
    pub source_export: String,
    pub state: RecordState,
    /// Relative to the export root.
    pub path: PathBuf,
    /// The source's capacity when the snapshot was taken: the smallest volume it restores to.
    pub size_bytes: u64,
    pub created_unix_ms: u64,
}

/// A record's name is stored as the plain string it always was. One that is not a valid
/// [`Name`] (a record edited by hand) makes the record unreadable, reported with its path like
/// any other corrupt record, so no path is ever built from it.
mod name_as_string {
    use rwxnfs_model::Name;
    use serde::{Deserialize, Deserializer, Serializer, de::Error as _};

    pub(super) fn serialize<S: Serializer>(name: &Name, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(name.as_str())
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<Name, D::Error> {
        let raw = String::deserialize(deserializer)?;
        Name::parse(&raw).map_err(D::Error::custom)
    }
}

/// A transport is stored as its StorageClass spelling (`none`, `tls`, `mtls`).
mod transport_as_string {
    use rwxnfs_model::Transport;
    use serde::{Deserialize, Deserializer, Serializer, de::Error as _};

    pub(super) fn serialize<S: Serializer>(
        transport: &Transport,
        serializer: S,
    ) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(transport.as_str())
    }

    pub(super) fn is_none(transport: &Transport) -> bool {
        *transport == Transport::None
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<Transport, D::Error> {
        let raw = String::deserialize(deserializer)?;
        raw.parse().map_err(D::Error::custom)
    }
}

/// Milliseconds since the Unix epoch, for record timestamps.
pub fn now_unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// The table on disk. Methods block: call them from `spawn_blocking`. Clones share the
/// records kept in memory; the agent's writes all go through one table, so its memory and the
/// disk agree (a second [`Table::open`] of the same directory is another table: tests use one
/// to look at the disk).
#[derive(Clone, Debug)]
pub struct Table {
    state_dir: PathBuf,
    exports: Records<ExportRecord>,
    snapshots: Records<SnapshotRecord>,
    counter: PathBuf,
    reserve: PathBuf,
    memory: Arc<Memory>,
}

/// One directory of records, its image, and its records kept in memory.
#[derive(Clone, Debug)]
struct Records<T> {
    dir: PathBuf,
    image: PathBuf,
    /// By name, once read whole (None before). A whole read holds the lock while it reads,
    /// and a write updates memory after its disk write, so a record written during the read
    /// is in memory in its newest version either way.
    kept: Arc<Mutex<Option<ByName<T>>>>,
}

/// Each record behind an `Arc`, so the image writer takes a snapshot without copying them.
type ByName<T> = BTreeMap<String, Arc<Kept<T>>>;

impl<T> Records<T> {
    fn new(state_dir: &Path, name: &str) -> Self {
        Self {
            dir: state_dir.join(name),
            image: state_dir.join(format!("{name}.image")),
            kept: Arc::default(),
        }
    }
}

#[derive(Debug, Default)]
struct Memory {
    /// Whether `<state>/.reserve` is allocated.
    reserve_held: std::sync::atomic::AtomicBool,
    /// Writes to the records kept in memory, and how many of them the images cover: when
    /// they differ the images are rewritten.
    changes: AtomicU64,
    imaged: AtomicU64,
}

/// A poisoned lock only means another thread panicked holding it; the map is still whole (each
/// update is one insert or remove).
fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

trait Named {
    fn key(&self) -> &str;
}

impl Named for ExportRecord {
    fn key(&self) -> &str {
        self.name.as_str()
    }
}

impl Named for SnapshotRecord {
    fn key(&self) -> &str {
        self.name.as_str()
    }
}

impl<T: Clone + Serialize + DeserializeOwned + Named> Records<T> {
    /// One record by name: from memory once the directory was read whole, else from disk.
    fn get(&self, name: &Name) -> Result<Option<T>, TableError> {
        if let Some(records) = lock(&self.kept).as_ref() {
            return Ok(records.get(name.as_str()).map(|kept| kept.record.clone()));
        }
        image::read_file(&self.dir.join(format!("{name}.json")))
            .map(|kept| kept.map(|kept: Kept<T>| kept.record))
    }

    /// Every record, sorted by name: from memory, reading the directory (with its image) the
    /// first time. Whether this read found the image stale (None when nothing was read).
    fn all(&self) -> Result<(Vec<T>, Option<image::Loaded>), TableError> {
        let mut kept = lock(&self.kept);
        let mut loaded = None;
        if kept.is_none() {
            let (records, how) = image::load::<T>(&self.dir, &self.image)?;
            *kept = Some(records);
            loaded = Some(how);
        }
        let records = kept
            .as_ref()
            .map(|records| records.values().map(|k| k.record.clone()).collect())
            .unwrap_or_default();
        Ok((records, loaded))
    }

    /// Writes `record` durably, then into memory (if the directory is kept there).
    fn put(&self, record: &T) -> Result<(), TableError> {
        let stamp = write_record(&self.dir, record.key(), record)?;
        if let Some(records) = lock(&self.kept).as_mut() {
            let kept = Kept {
                record: record.clone(),
                stamp,
            };
            records.insert(record.key().to_owned(), Arc::new(kept));
        }
        Ok(())
    }

    /// Removes the record durably, then from memory.
    fn remove(&self, name: &Name) -> Result<(), TableError> {
        remove_record(&self.dir, name.as_str())?;
        if let Some(records) = lock(&self.kept).as_mut() {
            records.remove(name.as_str());
        }
        Ok(())
    }

    /// Writes the image of the records kept in memory (nothing before they were read whole).
    fn write_image(&self, state_dir: &Path) -> Result<(), TableError> {
        let records: Vec<Arc<Kept<T>>> = match lock(&self.kept).as_ref() {
            Some(records) => records.values().cloned().collect(),
            None => return Ok(()),
        };
        image::write(state_dir, &self.image, &records)
    }
}

impl Table {
    /// Opens (creating if needed) the table under `state_dir`.
    pub fn open(state_dir: &Path) -> Result<Self, TableError> {
        let table = Self {
            state_dir: state_dir.to_owned(),
            exports: Records::new(state_dir, "exports"),
            snapshots: Records::new(state_dir, "snapshots"),
            counter: state_dir.join("next-export-id"),
            reserve: state_dir.join(".reserve"),
            memory: Arc::default(),
        };
        for dir in [&table.exports.dir, &table.snapshots.dir] {
            fs::create_dir_all(dir).map_err(|source| TableError::io(dir.clone(), source))?;
            remove_leftover_temporaries(dir, "");
        }
        for image in ["exports.image.", "snapshots.image."] {
            remove_leftover_temporaries(state_dir, image);
        }
        table.hold_reserve();
        Ok(table)
    }

    /// Allocates the reserve (best effort: a full filesystem leaves it for later).
    fn hold_reserve(&self) {
        use std::os::fd::AsFd;
        let allocated = fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(false)
            .open(&self.reserve)
            .and_then(|file| {
                nix::fcntl::fallocate(
                    file.as_fd(),
                    nix::fcntl::FallocateFlags::empty(),
                    0,
                    RESERVE_BYTES as i64,
                )
                .map_err(io::Error::from)
            });
        match allocated {
            Ok(()) => self.memory.reserve_held.store(true, Relaxed),
            Err(e) => {
                // Part of it may have been allocated: leave the space to the records.
                let _ = fs::remove_file(&self.reserve);
                tracing::debug!(error = %e, reserve = %self.reserve.display(), "the table's reserve is not held");
            }
        }
    }

    /// Gives the reserve up so a change to an existing record can be written; whether there
    /// was one to give.
    fn release_reserve(&self) -> bool {
        if !self.memory.reserve_held.swap(false, Relaxed) {
            return false;
        }
        let released = fs::remove_file(&self.reserve).is_ok();
        tracing::warn!(reserve = %self.reserve.display(), "the state directory is full: its reserve was given up to write a change to an existing record");
        released
    }

    /// After a write: takes the reserve back once the filesystem has room again.
    fn take_reserve_back(&self) {
        if self.memory.reserve_held.load(Relaxed) {
            return;
        }
        let room = nix::sys::statvfs::statvfs(&self.reserve)
            .map(|st| st.blocks_available().saturating_mul(st.fragment_size()));
        if room.is_ok_and(|bytes| bytes >= RESERVE_AGAIN_BYTES) {
            self.hold_reserve();
        }
    }

    /// Runs `write`; a change to an existing record (`existing`) that finds the filesystem
    /// full gives up the reserve and writes again.
    fn write_with_reserve(
        &self,
        existing: impl FnOnce() -> bool,
        write: impl Fn() -> Result<(), TableError>,
    ) -> Result<(), TableError> {
        let result = match write() {
            Err(TableError::NoSpace { .. }) if existing() && self.release_reserve() => write(),
            other => other,
        };
        if result.is_ok() {
            self.changed();
            self.take_reserve_back();
        }
        result
    }

    /// Reads both directories whole, so every later read is served from memory (also when
    /// the filesystem stops answering). The agent calls it at start.
    pub fn load(&self) -> Result<(), TableError> {
        self.exports()?;
        self.snapshots().map(drop)
    }

    /// After a whole read: logs how it went, and marks the images for rewriting if they were
    /// missing or stale.
    fn loaded(&self, what: &str, loaded: Option<image::Loaded>) {
        let Some(loaded) = loaded else { return };
        tracing::info!(
            records = what,
            from_image = loaded.from_image,
            from_files = loaded.from_files,
            "export table read"
        );
        if !loaded.image_is_current() {
            self.changed();
        }
    }

    /// Records a write to the records in memory, for the image writer.
    fn changed(&self) {
        self.memory.changes.fetch_add(1, Relaxed);
    }

    /// Rewrites the images if the records changed since they were last written (or were
    /// found stale at start); whether it wrote. The agent calls it now and then from the
    /// background: images only make starts faster, so a failure is for the log.
    pub fn write_images(&self) -> Result<bool, TableError> {
        let changes = self.memory.changes.load(Relaxed);
        if changes == self.memory.imaged.load(Relaxed) {
            return Ok(false);
        }
        self.exports.write_image(&self.state_dir)?;
        self.snapshots.write_image(&self.state_dir)?;
        self.memory.imaged.store(changes, Relaxed);
        Ok(true)
    }

    pub fn export(&self, name: &Name) -> Result<Option<ExportRecord>, TableError> {
        self.exports.get(name)
    }

    pub fn put_export(&self, record: &ExportRecord) -> Result<(), TableError> {
        self.write_with_reserve(
            || self.export(&record.name).is_ok_and(|r| r.is_some()),
            || self.exports.put(record),
        )
    }

    pub fn remove_export(&self, name: &Name) -> Result<(), TableError> {
        self.exports.remove(name).inspect(|()| self.changed())
    }

    /// The names of all export records, sorted: from memory once the table was read whole,
    /// else from the directory without reading the records. A file whose name is not a valid
    /// export name (put there by hand) is reported like a corrupt record.
    pub fn export_names(&self) -> Result<Vec<Name>, TableError> {
        if let Some(records) = lock(&self.exports.kept).as_ref() {
            // Each key is the name of a record read or written whole, so it parses.
            let mut names: Vec<Name> = records.values().map(|k| k.record.name.clone()).collect();
            names.sort();
            return Ok(names);
        }
        let mut names = Vec::new();
        for file in record_files(&self.exports.dir)? {
            let stem = file.trim_end_matches(".json");
            let name = Name::parse(stem).map_err(|e| {
                TableError::io(
                    self.exports.dir.join(&file),
                    io::Error::new(io::ErrorKind::InvalidData, e.to_string()),
                )
            })?;
            names.push(name);
        }
        // Name order, which is the order locks are taken in ("a" before "a-b"; their files
        // sort the other way round).
        names.sort();
        Ok(names)
    }

    /// Whether the state directory can be written now, without writing: its filesystem is not
    /// mounted read-only and still answers (an XFS that shut down fails every directory read
    /// with EIO, though statvfs still answers). For Probe, which runs every few seconds.
    pub fn check_writable(&self) -> Result<(), TableError> {
        let dir = &self.exports.dir;
        let st = nix::sys::statvfs::statvfs(dir)
            .map_err(|e| TableError::io(dir.clone(), io::Error::from(e)))?;
        if st.flags().contains(nix::sys::statvfs::FsFlags::ST_RDONLY) {
            return Err(TableError::io(
                dir.clone(),
                io::Error::from_raw_os_error(libc::EROFS),
            ));
        }
        let mut entries = fs::read_dir(dir).map_err(|e| TableError::io(dir.clone(), e))?;
        match entries.next() {
            Some(Err(e)) => Err(TableError::io(dir.clone(), e)),
            _ => Ok(()),
        }
    }

    /// All export records, sorted by name.
    pub fn exports(&self) -> Result<Vec<ExportRecord>, TableError> {
        let (records, loaded) = self.exports.all()?;
        self.loaded("exports", loaded);
        Ok(records)
    }

    pub fn snapshot(&self, name: &Name) -> Result<Option<SnapshotRecord>, TableError> {
        self.snapshots.get(name)
    }

    pub fn put_snapshot(&self, record: &SnapshotRecord) -> Result<(), TableError> {
        self.write_with_reserve(
            || self.snapshot(&record.name).is_ok_and(|r| r.is_some()),
            || self.snapshots.put(record),
        )
    }

    pub fn remove_snapshot(&self, name: &Name) -> Result<(), TableError> {
        self.snapshots.remove(name).inspect(|()| self.changed())
    }

    /// All snapshot records, sorted by name.
    pub fn snapshots(&self) -> Result<Vec<SnapshotRecord>, TableError> {
        let (records, loaded) = self.snapshots.all()?;
        self.loaded("snapshots", loaded);
        Ok(records)
    }

    /// Hands out the next export id and durably advances the counter before returning it, so
    /// an id is never handed out twice, even across a crash. The caller serialises calls.
    pub fn allocate_export_id(&self) -> Result<u32, TableError> {
        self.reserve_export_ids(1).map(|ids| ids.start)
    }

    /// Reserves the next `count` export ids: the counter is durably advanced past them
    /// before they are returned, so none is ever handed out twice, even across a crash. Ids
    /// reserved but not used before a crash are skipped, never reused. The caller serialises
    /// calls.
    pub fn reserve_export_ids(&self, count: u32) -> Result<std::ops::Range<u32>, TableError> {
        let io_err = |source| TableError::io(self.counter.clone(), source);
        let current = match fs::read_to_string(&self.counter) {
            Ok(text) => text
                .trim()
                .parse::<u32>()
                .map_err(|e| io_err(io::Error::new(io::ErrorKind::InvalidData, e.to_string())))?,
            Err(e) if e.kind() == io::ErrorKind::NotFound => self.highest_recorded_id()?,
            Err(e) => return Err(io_err(e)),
        };
        let id = current.max(FIRST_EXPORT_ID);
        let next = id
            .checked_add(count.max(1))
            .ok_or_else(|| TableError::IdsExhausted {
                path: self.counter.clone(),
            })?;
        let dir = self.counter.parent().unwrap_or(Path::new("."));
        atomic_write(dir, &self.counter, format!("{next}\n").as_bytes()).map_err(io_err)?;
        Ok(id..next)
    }

    /// Without a counter file (a table written by hand, or a lost file), ids continue after
    /// the highest one any record uses, so they are still never reused.
    fn highest_recorded_id(&self) -> Result<u32, TableError> {
        Ok(self
            .exports()?
            .iter()
            .map(|r| r.export_id.saturating_add(1))
            .max()
            .unwrap_or(FIRST_EXPORT_ID))
    }
}

/// Temporary files that [`atomic_write`]s a crash interrupted left in `dir` (the files they were
/// replacing are intact), of the files whose names start with `of` ("" for any). Only at
/// start: while the agent runs, a temporary file may be another call's write in flight.
pub fn remove_leftover_temporaries(dir: &Path, of: &str) {
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with(&format!(".{of}")) && name.ends_with(".tmp") {
            let _ = fs::remove_file(entry.path());
        }
    }
}

/// The record files in `dir`, sorted (temporary files of writes in flight left out).
fn record_files(dir: &Path) -> Result<Vec<String>, TableError> {
    let io_err = |source| TableError::io(dir.to_owned(), source);
    let mut names: Vec<String> = Vec::new();
    for entry in fs::read_dir(dir).map_err(io_err)? {
        let name = entry
            .map_err(io_err)?
            .file_name()
            .to_string_lossy()
            .into_owned();
        if name.ends_with(".json") && !name.starts_with('.') {
            names.push(name);
        }
    }
    names.sort();
    Ok(names)
}

/// Writes the record durably; the stamp of the file written, for the image.
fn write_record<T: Serialize>(dir: &Path, name: &str, record: &T) -> Result<Stamp, TableError> {
    let path = dir.join(format!("{name}.json"));
    let mut bytes = serde_json::to_vec_pretty(record)
        .map_err(|e| TableError::io(path.clone(), io::Error::other(e)))?;
    bytes.push(b'\n');
    atomic_write(dir, &path, &bytes).map_err(|source| TableError::io(path.clone(), source))?;
    Ok(Stamp::at(&path))
}

fn remove_record(dir: &Path, name: &str) -> Result<(), TableError> {
    let path = dir.join(format!("{name}.json"));
    let io_err = |source| TableError::io(path.clone(), source);
    match fs::remove_file(&path) {
        Ok(()) => fsync_dir(dir).map_err(io_err),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(io_err(e)),
    }
}

/// temp file + fsync + rename + fsync(dir). The temporary name is unique per call, so
/// concurrent writers of the same file never trip over each other's temporary (the last
/// rename wins, and every reader sees a whole file).
pub fn atomic_write(dir: &Path, path: &Path, bytes: &[u8]) -> io::Result<()> {
    atomic_write_with(dir, path, |file| file.write_all(bytes))
}

/// [`atomic_write`] of what `write` writes to the temporary file.
pub fn atomic_write_with(
    dir: &Path,
    path: &Path,
    write: impl FnOnce(&mut File) -> io::Result<()>,
) -> io::Result<()> {
    static SEQUENCE: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let file_name = path
        .file_name()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "no file name"))?;
    let n = SEQUENCE.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let tmp = dir.join(format!(
        ".{}.{}-{n}.tmp",
        file_name.to_string_lossy(),
        std::process::id()
    ));
    let written = File::create(&tmp).and_then(|mut file| {
        write(&mut file)?;
        file.sync_all()
    });
    if let Err(e) = written.and_then(|()| fs::rename(&tmp, path)) {
        // A full or failing filesystem must not collect half-written temporaries (ENOENT
        // when even the create failed).
        let _ = fs::remove_file(&tmp);
        return Err(e);
    }
    fsync_dir(dir)
}

pub(crate) fn fsync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

#[cfg(test)]
mod tests;
