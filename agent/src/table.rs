//! The export table: one durable record per export and per snapshot, on the replicated
//! filesystem, so the next NFS host can take over with the same export ids.
//!
//! ```text
//! <state>/exports/<name>.json     one record per export
//! <state>/snapshots/<name>.json   one record per snapshot
//! <state>/next-export-id          the next export id to hand out (never reused)
//! ```
//!
//! Every write is atomic and durable: write a temporary file, fsync it, rename it over the
//! record, fsync the directory. A crash leaves either the old record or the new one, never half
//! of one; leftover temporary files are ignored and cleaned up on load.

use std::{
    fs::{self, File},
    io::{self, Write},
    net::IpAddr,
    path::{Path, PathBuf},
};

use ipnet::IpNet;
use rwxnfs_model::{Name, Transport};
use serde::{Deserialize, Serialize, de::DeserializeOwned};

/// The first export id handed out. Ganesha reserves 0 for its pseudo root, and low ids are
/// often used by hand-written exports on the same server.
pub const FIRST_EXPORT_ID: u32 = 100;

#[derive(Debug, thiserror::Error)]
pub enum TableError {
    #[error("export table {path}: {source}")]
    Io { path: PathBuf, source: io::Error },
    #[error("export table record {path} is unreadable: {source}")]
    Corrupt {
        path: PathBuf,
        source: serde_json::Error,
    },
    #[error("export ids are exhausted (the counter in {path} reached its maximum)")]
    IdsExhausted { path: PathBuf },
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

/// The table on disk. Methods block: call them from `spawn_blocking`.
#[derive(Clone, Debug)]
pub struct Table {
    exports: PathBuf,
    snapshots: PathBuf,
    counter: PathBuf,
}

impl Table {
    /// Opens (creating if needed) the table under `state_dir`.
    pub fn open(state_dir: &Path) -> Result<Self, TableError> {
        let table = Self {
            exports: state_dir.join("exports"),
            snapshots: state_dir.join("snapshots"),
            counter: state_dir.join("next-export-id"),
        };
        for dir in [&table.exports, &table.snapshots] {
            fs::create_dir_all(dir).map_err(|source| TableError::Io {
                path: dir.clone(),
                source,
            })?;
            remove_leftover_temporaries(dir);
        }
        Ok(table)
    }

    pub fn export(&self, name: &Name) -> Result<Option<ExportRecord>, TableError> {
        read_record(&self.exports.join(format!("{name}.json")))
    }

    pub fn put_export(&self, record: &ExportRecord) -> Result<(), TableError> {
        write_record(&self.exports, record.name.as_str(), record)
    }

    pub fn remove_export(&self, name: &Name) -> Result<(), TableError> {
        remove_record(&self.exports, name.as_str())
    }

    /// The names of all export records, sorted, without reading them. A file whose name is
    /// not a valid export name (put there by hand) is reported like a corrupt record.
    pub fn export_names(&self) -> Result<Vec<Name>, TableError> {
        let mut names = Vec::new();
        for file in record_files(&self.exports)? {
            let stem = file.trim_end_matches(".json");
            let name = Name::parse(stem).map_err(|e| TableError::Io {
                path: self.exports.join(&file),
                source: io::Error::new(io::ErrorKind::InvalidData, e.to_string()),
            })?;
            names.push(name);
        }
        // Name order, which is the order locks are taken in ("a" before "a-b"; their files
        // sort the other way round).
        names.sort();
        Ok(names)
    }

    /// All export records, sorted by name.
    pub fn exports(&self) -> Result<Vec<ExportRecord>, TableError> {
        read_all(&self.exports)
    }

    pub fn snapshot(&self, name: &Name) -> Result<Option<SnapshotRecord>, TableError> {
        read_record(&self.snapshots.join(format!("{name}.json")))
    }

    pub fn put_snapshot(&self, record: &SnapshotRecord) -> Result<(), TableError> {
        write_record(&self.snapshots, record.name.as_str(), record)
    }

    pub fn remove_snapshot(&self, name: &Name) -> Result<(), TableError> {
        remove_record(&self.snapshots, name.as_str())
    }

    /// All snapshot records, sorted by name.
    pub fn snapshots(&self) -> Result<Vec<SnapshotRecord>, TableError> {
        read_all(&self.snapshots)
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
        let io_err = |source| TableError::Io {
            path: self.counter.clone(),
            source,
        };
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

/// Temporary files of writes a crash interrupted (the records they were replacing are intact).
/// Only at open: while the agent runs, a temporary file may be another call's write in flight.
fn remove_leftover_temporaries(dir: &Path) {
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with('.') && name.ends_with(".tmp") {
            let _ = fs::remove_file(entry.path());
        }
    }
}

fn read_record<T: DeserializeOwned>(path: &Path) -> Result<Option<T>, TableError> {
    match fs::read(path) {
        Ok(bytes) => {
            serde_json::from_slice(&bytes)
                .map(Some)
                .map_err(|source| TableError::Corrupt {
                    path: path.to_owned(),
                    source,
                })
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(TableError::Io {
            path: path.to_owned(),
            source,
        }),
    }
}

/// The record files in `dir`, sorted (temporary files of writes in flight left out).
fn record_files(dir: &Path) -> Result<Vec<String>, TableError> {
    let io_err = |source| TableError::Io {
        path: dir.to_owned(),
        source,
    };
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

fn read_all<T: DeserializeOwned>(dir: &Path) -> Result<Vec<T>, TableError> {
    let names = record_files(dir)?;
    let mut records = Vec::with_capacity(names.len());
    for name in names {
        if let Some(record) = read_record(&dir.join(name))? {
            records.push(record);
        }
    }
    Ok(records)
}

fn write_record<T: Serialize>(dir: &Path, name: &str, record: &T) -> Result<(), TableError> {
    let path = dir.join(format!("{name}.json"));
    let mut bytes = serde_json::to_vec_pretty(record).map_err(|e| TableError::Io {
        path: path.clone(),
        source: io::Error::other(e),
    })?;
    bytes.push(b'\n');
    atomic_write(dir, &path, &bytes).map_err(|source| TableError::Io { path, source })
}

fn remove_record(dir: &Path, name: &str) -> Result<(), TableError> {
    let path = dir.join(format!("{name}.json"));
    let io_err = |source| TableError::Io {
        path: path.clone(),
        source,
    };
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
    let mut file = File::create(&tmp)?;
    file.write_all(bytes)?;
    file.sync_all()?;
    drop(file);
    fs::rename(&tmp, path)?;
    fsync_dir(dir)
}

fn fsync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

#[cfg(test)]
mod tests;
