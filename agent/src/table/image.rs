//! A directory's image: all its records in one file, so a start reads one file instead of one
//! per record. After a takeover the new host's page cache is cold, and 10,000 small reads
//! there cost seconds; one file of a few megabytes costs one.
//!
//! The record files stay the truth. Each record in the image carries the stamp of its file
//! (inode, change time, size) as it was when the record was read or written. At load, a record
//! comes from the image only when its file still has that stamp, which any rewrite changes (a
//! write renames a new inode over the file) and so does an edit in place (the change time);
//! any other file is read. An image entry whose file is gone is dropped, and a missing,
//! unreadable or other-version image just means reading every file, as without one. So a
//! stale image costs time, never correctness, and the agent rewrites it in the background
//! when the table has changed (and after a load that found it stale).

use std::{
    collections::BTreeMap,
    fs::{self, File},
    io::{self, Read, Write},
    os::unix::fs::MetadataExt,
    path::Path,
    sync::Arc,
};

use serde::{Deserialize, Serialize, de::DeserializeOwned};

use super::{ByName, Named, TableError, atomic_write_with, record_files};

/// The image format; an image of another version is ignored.
const VERSION: u32 = 1;

/// What identifies one version of a record file.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(super) struct Stamp {
    ino: u64,
    ctime: i64,
    ctime_ns: i64,
    size: u64,
}

impl Stamp {
    /// Matches no file: a record whose file could not be looked at after its write is read
    /// from its file at the next load.
    pub(super) const UNKNOWN: Stamp = Stamp {
        ino: 0,
        ctime: 0,
        ctime_ns: -1,
        size: 0,
    };

    fn of(meta: &fs::Metadata) -> Self {
        Self {
            ino: meta.ino(),
            ctime: meta.ctime(),
            ctime_ns: meta.ctime_nsec(),
            size: meta.size(),
        }
    }

    /// The stamp of the file at `path` now.
    pub(super) fn at(path: &Path) -> Self {
        fs::metadata(path).map_or(Self::UNKNOWN, |meta| Self::of(&meta))
    }
}

/// A record kept in memory, with the stamp of the file it is in; also an entry of the image.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(super) struct Kept<T> {
    pub(super) stamp: Stamp,
    pub(super) record: T,
}

#[derive(Serialize, Deserialize)]
struct Image<R> {
    version: u32,
    records: Vec<R>,
}

/// How a load went, for the log and for whether the image needs writing again.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(super) struct Loaded {
    pub(super) from_image: usize,
    pub(super) from_files: usize,
    /// Image entries whose file is gone.
    pub(super) dropped: usize,
}

impl Loaded {
    pub(super) fn image_is_current(&self) -> bool {
        self.from_files == 0 && self.dropped == 0
    }
}

/// Every record in `dir` by name, taking those whose file is unchanged from `image`.
pub(super) fn load<T: DeserializeOwned + Named>(
    dir: &Path,
    image: &Path,
) -> Result<(ByName<T>, Loaded), TableError> {
    let mut imaged = read_image::<T>(image);
    let mut loaded = Loaded::default();
    let mut records = BTreeMap::new();
    for file in record_files(dir)? {
        let path = dir.join(&file);
        let stem = file.trim_end_matches(".json");
        let kept = match imaged.remove(stem) {
            Some(kept) if Stamp::at(&path) == kept.stamp => {
                loaded.from_image += 1;
                kept
            }
            _ => match read_file(&path)? {
                Some(kept) => {
                    loaded.from_files += 1;
                    Arc::new(kept)
                }
                None => continue,
            },
        };
        records.insert(kept.record.key().to_owned(), kept);
    }
    loaded.dropped = imaged.len();
    Ok((records, loaded))
}

/// The image's records by name; empty when there is none or it cannot be used.
fn read_image<T: DeserializeOwned + Named>(image: &Path) -> ByName<T> {
    let bytes = match fs::read(image) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return BTreeMap::new(),
        Err(e) => {
            tracing::warn!(image = %image.display(), error = %e, "the table's image cannot be read; reading every record file");
            return BTreeMap::new();
        }
    };
    match serde_json::from_slice::<Image<Kept<T>>>(&bytes) {
        Ok(read) if read.version == VERSION => read
            .records
            .into_iter()
            .map(|kept| (kept.record.key().to_owned(), Arc::new(kept)))
            .collect(),
        Ok(read) => {
            tracing::info!(image = %image.display(), version = read.version, "the table's image is of another version; reading every record file");
            BTreeMap::new()
        }
        Err(e) => {
            tracing::warn!(image = %image.display(), error = %e, "the table's image is unreadable; reading every record file");
            BTreeMap::new()
        }
    }
}

/// One record file, with the stamp of the version read (None if it is gone).
pub(super) fn read_file<T: DeserializeOwned>(path: &Path) -> Result<Option<Kept<T>>, TableError> {
    let mut file = match File::open(path) {
        Ok(file) => file,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(source) => return Err(TableError::io(path.to_owned(), source)),
    };
    let mut bytes = Vec::new();
    let stamp = file
        .metadata()
        .and_then(|meta| file.read_to_end(&mut bytes).map(|_| Stamp::of(&meta)))
        .map_err(|source| TableError::io(path.to_owned(), source))?;
    let record = serde_json::from_slice(&bytes).map_err(|source| TableError::Corrupt {
        path: path.to_owned(),
        source,
    })?;
    Ok(Some(Kept { record, stamp }))
}

/// Writes the image of `records` durably (in `dir`, its parent directory), streamed to the
/// file: no copy of the records and no buffer of the whole image, so writing it every few
/// seconds does not grow the agent's memory.
pub(super) fn write<T: Serialize>(
    dir: &Path,
    image: &Path,
    records: &[Arc<Kept<T>>],
) -> Result<(), TableError> {
    let image_of = Image {
        version: VERSION,
        records: records
            .iter()
            .map(|kept| &**kept)
            .collect::<Vec<&Kept<T>>>(),
    };
    atomic_write_with(dir, image, |file| {
        let mut out = io::BufWriter::new(file);
        serde_json::to_writer(&mut out, &image_of).map_err(io::Error::other)?;
        out.flush()
    })
    .map_err(|source| TableError::io(image.to_owned(), source))
}
