//! The agent's on-disk chunk cache (SPEC §6).
//!
//! An agent writes every chunk here *before* telling the controller it exists and deletes it
//! only once the controller says it is stored, so a chunk survives a lost connection, a slow
//! controller and a restart of the agent itself. The controller pulls chunks by id.
//!
//! Layout of the cache directory (one agent process per directory, enforced by a lock):
//!
//! - `{run}.{workload}.{id:016x}.rtck`: one chunk in the [`codec`] format, which carries magic,
//!   version, length and CRC-32, so damage is detected rather than served.
//! - `{chunk file name}.tmp`: a chunk being written; renamed into place when complete, so a
//!   reader never sees half a chunk. A leftover one (the writer died) is removed at open: the
//!   chunk was never announced, so nobody is waiting for it.
//! - `lock`: held with an exclusive file lock for the life of a [`ChunkCache`]; holds the pid.
//! - `next-id`: the next id to hand out, as 16 hex digits. The largest id present on disk
//!   already bounds the next one; this file matters only once the chunks have been deleted, so
//!   that a restarted agent never reuses an id the controller has already seen.
//! - `corrupt/`: damaged chunk files moved aside, kept for inspection, never served.
//!
//! Anything else in the directory is foreign: left alone and not indexed.

use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::{Chunk, codec};

const CHUNK_SUFFIX: &str = ".rtck";
const TEMP_SUFFIX: &str = ".tmp";
const LOCK_FILE: &str = "lock";
const NEXT_ID_FILE: &str = "next-id";
const CORRUPT_DIR: &str = "corrupt";
/// Run ids are task UUIDs (36 characters); the bound keeps file names far below NAME_MAX.
const MAX_RUN_LEN: usize = 128;
/// The codec's 16-byte header plus the largest payload its u32 length can describe: anything
/// larger cannot be a chunk, and is rejected without reading it into memory.
const MAX_FILE_LEN: u64 = 16 + u32::MAX as u64;

/// Which run and workload a cached chunk belongs to.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ChunkKey {
    /// The task uuid. Only `[A-Za-z0-9-]`, because it becomes part of a file name.
    pub run: String,
    pub workload: u32,
}

impl ChunkKey {
    pub fn new(run: impl Into<String>, workload: u32) -> Result<ChunkKey, CacheError> {
        let key = ChunkKey {
            run: run.into(),
            workload,
        };
        key.validate()?;
        Ok(key)
    }

    /// The run id goes into file names, so it must not be able to name another path (`..`,
    /// `/`) or confuse the name parser (`.`).
    pub fn validate(&self) -> Result<(), CacheError> {
        let run = &self.run;
        if run.is_empty() || run.len() > MAX_RUN_LEN {
            return Err(CacheError::BadKey(format!(
                "run id must be 1 to {MAX_RUN_LEN} characters, got {}",
                run.len()
            )));
        }
        if let Some(c) = run
            .chars()
            .find(|c| !(c.is_ascii_alphanumeric() || *c == '-'))
        {
            return Err(CacheError::BadKey(format!(
                "run id {run:?} contains {c:?}; only A-Z, a-z, 0-9 and '-' are allowed"
            )));
        }
        Ok(())
    }
}

/// What the cache knows about a chunk without reading it again: enough for the agent to
/// announce it and for the controller to decide when to pull it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChunkMeta {
    pub id: u64,
    pub key: ChunkKey,
    pub records: u32,
    /// Records with an error.
    pub failures: u32,
    /// Earliest and latest record timestamp (Unix seconds); both 0 for a chunk with no records.
    pub first_timestamp: f64,
    pub last_timestamp: f64,
    /// Size of the encoded chunk (the file).
    pub bytes: u64,
}

impl ChunkMeta {
    fn of(id: u64, key: ChunkKey, chunk: &Chunk, bytes: u64) -> ChunkMeta {
        let saturate = |n: usize| u32::try_from(n).unwrap_or(u32::MAX);
        let (first, last) = if chunk.records.is_empty() {
            (0.0, 0.0)
        } else {
            chunk
                .records
                .iter()
                .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), r| {
                    (lo.min(r.timestamp), hi.max(r.timestamp))
                })
        };
        ChunkMeta {
            id,
            key,
            records: saturate(chunk.records.len()),
            failures: saturate(chunk.records.iter().filter(|r| r.failed()).count()),
            first_timestamp: first,
            last_timestamp: last,
            bytes,
        }
    }
}

/// A damaged chunk file that [`ChunkCache::open`] or [`ChunkCache::read`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CorruptFile {
    /// Where the file was found.
    pub path: PathBuf,
    /// Where it was moved for inspection; `None` if it could not be moved (or could not be
    /// read at all, which may be transient: it is then left in place and examined again at the
    /// next open). Either way it is not served.
    pub moved_to: Option<PathBuf>,
    pub reason: String,
}

#[derive(Debug, thiserror::Error)]
pub enum CacheError {
    #[error("chunk cache: {path}: {source}")]
    Io { path: PathBuf, source: io::Error },
    #[error("corrupt chunk file {path}: {reason}")]
    Corrupt { path: PathBuf, reason: String },
    #[error("bad chunk key: {0}")]
    BadKey(String),
    #[error(
        "chunk cache {dir} is already in use by another agent{}; give each agent its own cache directory",
        .holder.map(|pid| format!(" (pid {pid})")).unwrap_or_default()
    )]
    Locked { dir: PathBuf, holder: Option<u32> },
    #[error("no chunk {0} in the cache")]
    UnknownId(u64),
    #[error("chunk file {path} has disappeared from the cache")]
    Missing { path: PathBuf },
    #[error("chunk cache {dir} has used every chunk id")]
    IdsExhausted { dir: PathBuf },
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> CacheError + '_ {
    move |source| CacheError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// How to open a cache.
#[derive(Debug, Clone, Copy, Default)]
pub struct CacheOptions {
    durable: bool,
}

impl CacheOptions {
    /// Whether a chunk is on stable storage when [`ChunkCache::put`] returns (and a removal
    /// when [`ChunkCache::remove`] returns): fsync of the file and the directory.
    ///
    /// Off by default, because it costs a disk flush per chunk and the default already covers
    /// the common failure: a rename is atomic, so an agent that crashes or is killed (even with
    /// SIGKILL) leaves every chunk it announced intact in the page cache, where its successor
    /// finds it. Only a power loss or kernel crash can lose (or resurrect) recent chunks
    /// without it.
    pub fn durable(mut self, durable: bool) -> CacheOptions {
        self.durable = durable;
        self
    }

    pub fn open(self, dir: &Path) -> Result<ChunkCache, CacheError> {
        ChunkCache::open_with(dir, self)
    }
}

/// The chunks an agent holds on disk until the controller has stored them.
#[derive(Debug)]
pub struct ChunkCache {
    dir: PathBuf,
    durable: bool,
    held: BTreeMap<u64, ChunkMeta>,
    corrupt: Vec<CorruptFile>,
    /// The id the next `put` gets: above every id this directory has ever held.
    next_id: u64,
    /// The value last written to `next-id`: ids below it are safe from reuse even once their
    /// files are gone.
    persisted_next: u64,
    next_id_file: File,
    /// Held for the lock, which is released when the cache is dropped.
    _lock: File,
}

/// What reading one chunk file can go wrong with.
enum Bad {
    /// The content is damaged: move it aside.
    Corrupt(String),
    /// The file is gone.
    Missing,
    /// Reading failed; perhaps transiently, so the file is left where it is.
    Io(io::Error),
}

impl From<io::Error> for Bad {
    fn from(e: io::Error) -> Bad {
        if e.kind() == io::ErrorKind::NotFound {
            Bad::Missing
        } else {
            Bad::Io(e)
        }
    }
}

/// The files of a cache directory, sorted by kind.
#[derive(Default)]
struct Listing {
    chunks: Vec<(u64, ChunkKey, PathBuf)>,
    temps: Vec<(u64, PathBuf)>,
}

impl ChunkCache {
    /// Opens (creating with mode 0700 if missing) the cache directory, removes leftover temp
    /// files from an interrupted write, and indexes the chunk files already there, decoding
    /// each to rebuild its [`ChunkMeta`]. A damaged file is not indexed: it is reported through
    /// [`corrupt`](Self::corrupt) and moved to `corrupt/`. Fails with [`CacheError::Locked`] if
    /// another live `ChunkCache` (in any process) has the directory.
    pub fn open(dir: &Path) -> Result<ChunkCache, CacheError> {
        CacheOptions::default().open(dir)
    }

    fn open_with(dir: &Path, options: CacheOptions) -> Result<ChunkCache, CacheError> {
        create_private_dir(dir).map_err(io_err(dir))?;
        let lock = lock_dir(dir)?;
        let next_id_path = dir.join(NEXT_ID_FILE);
        let mut next_id_file = open_rw(&next_id_path).map_err(io_err(&next_id_path))?;
        let persisted_next = read_next_id(&mut next_id_file, &next_id_path);
        let listing = list_dir(dir)?;
        for (_, path) in &listing.temps {
            tracing::info!("removing {}, left by an interrupted write", path.display());
            remove_file_if_present(path).map_err(io_err(path))?;
        }
        let max_seen = listing
            .chunks
            .iter()
            .map(|(id, _, _)| *id)
            .chain(listing.temps.iter().map(|(id, _)| *id))
            .max();
        let next_id = match max_seen {
            Some(id) => id.saturating_add(1).max(persisted_next),
            None => persisted_next,
        }
        .max(1);
        let mut cache = ChunkCache {
            dir: dir.to_path_buf(),
            durable: options.durable,
            held: BTreeMap::new(),
            corrupt: Vec::new(),
            next_id,
            persisted_next,
            next_id_file,
            _lock: lock,
        };
        // Before any file is moved aside, so its id stays used even though it leaves the scan.
        if next_id != persisted_next {
            cache.persist_next_id()?;
        }
        cache.index(listing.chunks);
        Ok(cache)
    }

    /// Decodes the chunk files found at open; the good ones become servable.
    fn index(&mut self, mut chunks: Vec<(u64, ChunkKey, PathBuf)>) {
        chunks.sort_by(|a, b| (a.0, &a.2).cmp(&(b.0, &b.2)));
        for (id, key, path) in chunks {
            if self.held.contains_key(&id) {
                // Never written by this cache (ids are unique), so someone copied files in.
                self.quarantine(&path, format!("another chunk file has id {id}"));
                continue;
            }
            match inspect(&path) {
                Ok((chunk, bytes)) => {
                    self.held.insert(id, ChunkMeta::of(id, key, &chunk, bytes));
                }
                Err(Bad::Corrupt(reason)) => self.quarantine(&path, reason),
                Err(Bad::Missing) => {}
                Err(Bad::Io(e)) => {
                    let reason = format!("could not be read: {e}");
                    tracing::warn!("chunk file {}: {reason}; not served", path.display());
                    self.corrupt.push(CorruptFile {
                        path,
                        moved_to: None,
                        reason,
                    });
                }
            }
        }
    }

    /// Writes a chunk atomically (encode, write to a temp file in the same directory, rename
    /// into place; fsync only if [`CacheOptions::durable`]) and returns its meta, with a new
    /// id: ids increase, across restarts too.
    pub fn put(&mut self, key: &ChunkKey, chunk: &Chunk) -> Result<ChunkMeta, CacheError> {
        key.validate()?;
        let id = self.next_id;
        // Taken even if the write fails: a gap in the ids is harmless, a reused id is not.
        self.next_id = id.checked_add(1).ok_or_else(|| CacheError::IdsExhausted {
            dir: self.dir.clone(),
        })?;
        let bytes = codec::encode(chunk);
        let path = self.path_of(key, id);
        let temp = temp_path(&path);
        if let Err(e) = write_new(&temp, &bytes, self.durable) {
            let _ = fs::remove_file(&temp);
            return Err(CacheError::Io {
                path: temp,
                source: e,
            });
        }
        if let Err(e) = fs::rename(&temp, &path) {
            let _ = fs::remove_file(&temp);
            return Err(CacheError::Io { path, source: e });
        }
        self.sync_dir()?;
        let meta = ChunkMeta::of(id, key.clone(), chunk, bytes.len() as u64);
        self.held.insert(id, meta.clone());
        Ok(meta)
    }

    /// The encoded bytes of a chunk, verified (size as written, magic, version, length, CRC)
    /// before they are returned. A damaged file gives [`CacheError::Corrupt`], is moved aside
    /// and is dropped from the index, so it is never served.
    ///
    /// Only integrity is checked here, not decoded: the content was produced by `encode` (in
    /// `put`) or fully decoded (at open), and the CRC shows it has not changed since.
    pub fn read(&mut self, id: u64) -> Result<Vec<u8>, CacheError> {
        let meta = self.held.get(&id).ok_or(CacheError::UnknownId(id))?;
        let path = self.path_of(&meta.key, id);
        match read_verified(&path, meta.bytes) {
            Ok(bytes) => Ok(bytes),
            Err(Bad::Io(source)) => Err(CacheError::Io { path, source }),
            Err(Bad::Missing) => {
                tracing::warn!("chunk file {} has disappeared", path.display());
                self.held.remove(&id);
                Err(CacheError::Missing { path })
            }
            Err(Bad::Corrupt(reason)) => {
                self.held.remove(&id);
                // The file leaves the directory scan, so its id must be remembered first.
                self.cover_id(id)?;
                self.quarantine(&path, reason.clone());
                Err(CacheError::Corrupt { path, reason })
            }
        }
    }

    /// Deletes a chunk the controller has stored. `Ok(false)` for an id the cache does not
    /// hold (already removed, or never there), so a repeated acknowledgement is harmless.
    pub fn remove(&mut self, id: u64) -> Result<bool, CacheError> {
        let Some(meta) = self.held.get(&id) else {
            return Ok(false);
        };
        let path = self.path_of(&meta.key, id);
        self.cover_id(id)?;
        remove_file_if_present(&path).map_err(io_err(&path))?;
        self.held.remove(&id);
        self.sync_dir()?;
        Ok(true)
    }

    /// The chunks held, in id order.
    pub fn held(&self) -> impl Iterator<Item = &ChunkMeta> {
        self.held.values()
    }

    pub fn meta(&self, id: u64) -> Option<&ChunkMeta> {
        self.held.get(&id)
    }

    /// The damaged files that [`open`](Self::open) and [`read`](Self::read) have found.
    pub fn corrupt(&self) -> &[CorruptFile] {
        &self.corrupt
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn path_of(&self, key: &ChunkKey, id: u64) -> PathBuf {
        self.dir.join(chunk_file_name(key, id))
    }

    /// Makes sure `next-id` is above `id` before the last trace of `id` on disk goes away.
    fn cover_id(&mut self, id: u64) -> Result<(), CacheError> {
        if self.persisted_next > id {
            return Ok(());
        }
        self.persist_next_id()
    }

    /// Overwrites the fixed-width `next-id` in place: one small write, which a process crash
    /// cannot tear. A torn write after a power loss only makes the file unreadable, and
    /// [`read_next_id`] then falls back on the ids of the files present.
    fn persist_next_id(&mut self) -> Result<(), CacheError> {
        let path = self.dir.join(NEXT_ID_FILE);
        let text = format!("{:016x}\n", self.next_id);
        let mut f = &self.next_id_file;
        f.seek(SeekFrom::Start(0))
            .and_then(|_| f.write_all(text.as_bytes()))
            .and_then(|()| f.set_len(text.len() as u64))
            .and_then(|()| if self.durable { f.sync_data() } else { Ok(()) })
            .map_err(io_err(&path))?;
        self.persisted_next = self.next_id;
        Ok(())
    }

    /// Moves a damaged file to `corrupt/` and records it. If it cannot be moved it stays where
    /// it is (it is not in the index, so it is still not served).
    fn quarantine(&mut self, path: &Path, reason: String) {
        tracing::warn!(
            "corrupt chunk file {}: {reason}; moved aside, not served",
            path.display()
        );
        let moved_to = match move_aside(&self.dir, path) {
            Ok(to) => Some(to),
            Err(e) => {
                tracing::warn!("could not move {} aside: {e}", path.display());
                None
            }
        };
        self.corrupt.push(CorruptFile {
            path: path.to_path_buf(),
            moved_to,
            reason,
        });
    }

    /// Makes renames and deletions in the directory durable, when asked for.
    fn sync_dir(&self) -> Result<(), CacheError> {
        if !self.durable {
            return Ok(());
        }
        File::open(&self.dir)
            .and_then(|d| d.sync_all())
            .map_err(io_err(&self.dir))
    }
}

fn chunk_file_name(key: &ChunkKey, id: u64) -> String {
    format!("{}.{}.{id:016x}{CHUNK_SUFFIX}", key.run, key.workload)
}

fn temp_path(chunk_path: &Path) -> PathBuf {
    let mut name = chunk_path.as_os_str().to_owned();
    name.push(TEMP_SUFFIX);
    PathBuf::from(name)
}

/// The key and id of a chunk file name, or `None` if the name is not exactly one this cache
/// writes (so a foreign file is never mistaken for, or deleted as, one of ours).
fn parse_chunk_file_name(name: &str) -> Option<(ChunkKey, u64)> {
    let stem = name.strip_suffix(CHUNK_SUFFIX)?;
    let mut parts = stem.rsplitn(3, '.');
    let (id, workload, run) = (parts.next()?, parts.next()?, parts.next()?);
    if id.len() != 16 {
        return None;
    }
    let id = u64::from_str_radix(id, 16).ok()?;
    let key = ChunkKey {
        run: run.to_owned(),
        workload: workload.parse().ok()?,
    };
    key.validate().ok()?;
    // Rejects what the parsers above tolerate: "+1", "007", upper-case hex.
    (chunk_file_name(&key, id) == name).then_some((key, id))
}

/// Creates a directory (and its parents) readable by the owner only: chunks hold the run's
/// error messages, which may name hosts and credentials of the system under test.
fn create_private_dir(dir: &Path) -> io::Result<()> {
    let mut builder = fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder.create(dir)
}

/// Options that create files readable by the owner only (see [`create_private_dir`]).
fn private_file_options() -> OpenOptions {
    let mut options = OpenOptions::new();
    options.create(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    options
}

/// Opens for reading and writing, creating but never truncating.
fn open_rw(path: &Path) -> io::Result<File> {
    private_file_options()
        .read(true)
        .write(true)
        .truncate(false)
        .open(path)
}

/// Takes the directory's exclusive lock, then records our pid in the lock file so that a
/// second agent's error can say who holds it.
fn lock_dir(dir: &Path) -> Result<File, CacheError> {
    let path = dir.join(LOCK_FILE);
    let mut file = open_rw(&path).map_err(io_err(&path))?;
    match file.try_lock() {
        Ok(()) => {}
        Err(fs::TryLockError::WouldBlock) => {
            let mut text = String::new();
            let holder = file
                .read_to_string(&mut text)
                .ok()
                .and_then(|_| text.trim().parse().ok());
            return Err(CacheError::Locked {
                dir: dir.to_path_buf(),
                holder,
            });
        }
        Err(fs::TryLockError::Error(e)) => return Err(io_err(&path)(e)),
    }
    file.set_len(0)
        .and_then(|()| file.write_all(format!("{}\n", std::process::id()).as_bytes()))
        .map_err(io_err(&path))?;
    Ok(file)
}

/// The id stored in `next-id`, or 0 if there is none or it is unreadable (the ids of the files
/// present then decide).
fn read_next_id(file: &mut File, path: &Path) -> u64 {
    let mut text = String::new();
    if let Err(e) = file.read_to_string(&mut text) {
        tracing::warn!("{}: {e}; ids continue from the chunk files", path.display());
        return 0;
    }
    let text = text.trim();
    if text.is_empty() {
        return 0;
    }
    u64::from_str_radix(text, 16).unwrap_or_else(|_| {
        tracing::warn!(
            "{} is damaged ({text:?}); ids continue from the chunk files",
            path.display()
        );
        0
    })
}

/// Sorts the directory's entries into chunk files, leftover temp files and the rest (ignored).
/// Only regular files count: we never create anything else.
fn list_dir(dir: &Path) -> Result<Listing, CacheError> {
    let mut listing = Listing::default();
    for entry in fs::read_dir(dir).map_err(io_err(dir))? {
        let entry = entry.map_err(io_err(dir))?;
        let path = entry.path();
        let Ok(name) = entry.file_name().into_string() else {
            continue;
        };
        if matches!(name.as_str(), LOCK_FILE | NEXT_ID_FILE | CORRUPT_DIR) {
            continue;
        }
        let is_file = entry.file_type().map_err(io_err(&path))?.is_file();
        if let Some((key, id)) = parse_chunk_file_name(&name).filter(|_| is_file) {
            listing.chunks.push((id, key, path));
        } else if let Some((_, id)) = name
            .strip_suffix(TEMP_SUFFIX)
            .and_then(parse_chunk_file_name)
            .filter(|_| is_file)
        {
            listing.temps.push((id, path));
        } else {
            tracing::debug!(
                "ignoring foreign file {} in the chunk cache",
                path.display()
            );
        }
    }
    Ok(listing)
}

/// Reads and fully decodes a chunk file: at open, the meta has to be rebuilt from the content.
fn inspect(path: &Path) -> Result<(Chunk, u64), Bad> {
    let bytes = read_bounded(path, None)?;
    let chunk = codec::decode(&bytes).map_err(|e| Bad::Corrupt(e.to_string()))?;
    Ok((chunk, bytes.len() as u64))
}

/// Reads a chunk file and checks it without decoding: its size must be the size written, its
/// header and CRC must hold.
fn read_verified(path: &Path, expected_len: u64) -> Result<Vec<u8>, Bad> {
    let bytes = read_bounded(path, Some(expected_len))?;
    codec::verify(&bytes).map_err(|e| Bad::Corrupt(e.to_string()))?;
    Ok(bytes)
}

/// Reads a whole file, refusing without reading it one whose size is wrong: `expected_len` if
/// known, else no larger than any chunk can be.
fn read_bounded(path: &Path, expected_len: Option<u64>) -> Result<Vec<u8>, Bad> {
    let file = File::open(path)?;
    let len = file.metadata()?.len();
    let wrong = match expected_len {
        Some(expected) if len != expected => {
            Some(format!("file is {len} bytes, {expected} were written"))
        }
        None if len > MAX_FILE_LEN => Some(format!("file is {len} bytes, too large for a chunk")),
        _ => None,
    };
    if let Some(reason) = wrong {
        return Err(Bad::Corrupt(reason));
    }
    let mut bytes = Vec::with_capacity(usize::try_from(len).unwrap_or(0));
    // Bounded by `take` in case the file grows while we read.
    file.take(len.saturating_add(1)).read_to_end(&mut bytes)?;
    if bytes.len() as u64 != len {
        return Err(Bad::Corrupt(format!(
            "file changed size while being read ({len} then {} bytes)",
            bytes.len()
        )));
    }
    Ok(bytes)
}

/// Moves a file into `corrupt/`, without overwriting an earlier one of the same name.
fn move_aside(dir: &Path, path: &Path) -> io::Result<PathBuf> {
    let corrupt_dir = dir.join(CORRUPT_DIR);
    create_private_dir(&corrupt_dir)?;
    let name = path
        .file_name()
        .ok_or_else(|| io::Error::other("not a file name"))?;
    for n in 0..1000u32 {
        let mut candidate = name.to_owned();
        if n > 0 {
            candidate.push(format!(".{n}"));
        }
        let to = corrupt_dir.join(candidate);
        if !to.try_exists()? {
            fs::rename(path, &to)?;
            return Ok(to);
        }
    }
    Err(io::Error::other("too many corrupt files of that name"))
}

/// Creates (or replaces) a file with the given content, mode 0600, synced if `durable`.
fn write_new(path: &Path, bytes: &[u8], durable: bool) -> io::Result<()> {
    let mut file = private_file_options()
        .write(true)
        .truncate(true)
        .open(path)?;
    file.write_all(bytes)?;
    if durable {
        file.sync_all()?;
    }
    Ok(())
}

fn remove_file_if_present(path: &Path) -> io::Result<()> {
    match fs::remove_file(path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use proptest::prelude::*;

    use super::*;
    use crate::chunk::{ActionSpan, IterationError, IterationRecord};

    const RUN: &str = "6f1c2d3e-0000-4abc-8def-0123456789ab";

    fn key(workload: u32) -> ChunkKey {
        ChunkKey::new(RUN, workload).unwrap()
    }

    fn record(iteration: u64, timestamp: f64, failed: bool) -> IterationRecord {
        IterationRecord {
            iteration,
            timestamp,
            duration: 0.5,
            idle_duration: 0.0,
            lateness: 0.0,
            error: failed.then(|| Box::new(IterationError::new("ValueError", "boom"))),
            output: None,
            actions: 0..0,
        }
    }

    fn chunk(first_iteration: u64) -> Chunk {
        let mut c = Chunk::new(Arc::from("agent-1"));
        c.actions.push(ActionSpan {
            name: 0,
            depth: 0,
            failed: false,
            started_at: 10.0,
            finished_at: 10.5,
        });
        c.records.push(IterationRecord {
            actions: 0..1,
            ..record(first_iteration, 10.0, false)
        });
        c.records.push(record(first_iteration + 1, 11.0, true));
        c.records.push(record(first_iteration + 2, 12.5, false));
        c
    }

    fn file_of(cache: &ChunkCache, meta: &ChunkMeta) -> PathBuf {
        cache.dir().join(chunk_file_name(&meta.key, meta.id))
    }

    fn ids(cache: &ChunkCache) -> Vec<u64> {
        cache.held().map(|m| m.id).collect()
    }

    #[test]
    fn put_read_remove_round_trip() {
        let tmp = tempfile::tempdir().unwrap();
        let mut cache = ChunkCache::open(tmp.path()).unwrap();
        let c = chunk(1);
        let meta = cache.put(&key(3), &c).unwrap();
        assert_eq!(meta.key, key(3));
        assert_eq!((meta.records, meta.failures), (3, 1));
        assert_eq!((meta.first_timestamp, meta.last_timestamp), (10.0, 12.5));
        let bytes = cache.read(meta.id).unwrap();
        assert_eq!(meta.bytes, bytes.len() as u64);
        assert_eq!(codec::decode(&bytes).unwrap(), c);
        assert_eq!(cache.meta(meta.id), Some(&meta));
        assert_eq!(ids(&cache), vec![meta.id]);

        assert!(cache.remove(meta.id).unwrap());
        assert!(
            !cache.remove(meta.id).unwrap(),
            "a repeated ack is harmless"
        );
        assert!(!file_of(&cache, &meta).exists());
        assert!(matches!(cache.read(meta.id), Err(CacheError::UnknownId(_))));
        assert_eq!(cache.held().count(), 0);
        assert!(cache.corrupt().is_empty());
    }

    #[test]
    fn empty_chunk_round_trips() {
        let tmp = tempfile::tempdir().unwrap();
        let mut cache = ChunkCache::open(tmp.path()).unwrap();
        let meta = cache.put(&key(0), &Chunk::new("x".into())).unwrap();
        assert_eq!((meta.records, meta.first_timestamp), (0, 0.0));
        drop(cache);
        let cache = ChunkCache::open(tmp.path()).unwrap();
        assert_eq!(cache.meta(meta.id), Some(&meta));
    }

    #[test]
    fn held_is_in_id_order() {
        let tmp = tempfile::tempdir().unwrap();
        let mut cache = ChunkCache::open(tmp.path()).unwrap();
        for w in [5, 1, 3] {
            cache.put(&key(w), &chunk(1)).unwrap();
        }
        assert_eq!(ids(&cache), vec![1, 2, 3]);
        let workloads: Vec<u32> = cache.held().map(|m| m.key.workload).collect();
        assert_eq!(workloads, vec![5, 1, 3]);
    }

    #[test]
    fn restart_finds_earlier_chunks_with_their_meta() {
        let tmp = tempfile::tempdir().unwrap();
        let mut cache = ChunkCache::open(tmp.path()).unwrap();
        let metas: Vec<ChunkMeta> = (0..3)
            .map(|i| cache.put(&key(i), &chunk(u64::from(i) * 10)).unwrap())
            .collect();
        drop(cache);

        let mut cache = ChunkCache::open(tmp.path()).unwrap();
        let found: Vec<ChunkMeta> = cache.held().cloned().collect();
        assert_eq!(found, metas);
        assert_eq!(
            codec::decode(&cache.read(metas[1].id).unwrap()).unwrap(),
            chunk(10)
        );
        assert!(cache.corrupt().is_empty());
    }

    #[test]
    fn ids_increase_across_reopen() {
        let tmp = tempfile::tempdir().unwrap();
        let mut cache = ChunkCache::open(tmp.path()).unwrap();
        let a = cache.put(&key(1), &chunk(1)).unwrap().id;
        let b = cache.put(&key(1), &chunk(4)).unwrap().id;
        assert!(b > a);
        drop(cache);

        let mut cache = ChunkCache::open(tmp.path()).unwrap();
        let c = cache.put(&key(1), &chunk(7)).unwrap().id;
        assert!(c > b);
        // Even once every chunk has been acknowledged and deleted, a restarted agent must not
        // hand out an id the controller has already seen.
        for id in [a, b, c] {
            assert!(cache.remove(id).unwrap());
        }
        drop(cache);
        let mut cache = ChunkCache::open(tmp.path()).unwrap();
        assert_eq!(cache.held().count(), 0);
        let d = cache.put(&key(1), &chunk(10)).unwrap().id;
        assert!(d > c, "{d} reuses an id at or below {c}");
    }

    #[test]
    fn damaged_next_id_falls_back_on_the_files() {
        let tmp = tempfile::tempdir().unwrap();
        let mut cache = ChunkCache::open(tmp.path()).unwrap();
        let a = cache.put(&key(1), &chunk(1)).unwrap().id;
        let b = cache.put(&key(1), &chunk(4)).unwrap().id;
        drop(cache);
        fs::write(tmp.path().join(NEXT_ID_FILE), b"\xffgarbage").unwrap();
        let mut cache = ChunkCache::open(tmp.path()).unwrap();
        assert_eq!(ids(&cache), vec![a, b]);
        assert!(cache.put(&key(1), &chunk(7)).unwrap().id > b);
    }

    /// A way a file can be damaged, with a name for the failure message.
    type Damage = (&'static str, fn(&mut Vec<u8>));

    fn damages() -> Vec<Damage> {
        vec![
            ("truncated", |b| b.truncate(b.len() - 7)),
            ("flipped byte", |b| {
                let i = b.len() - 3;
                b[i] ^= 0x40;
            }),
            ("wrong magic", |b| b[..4].copy_from_slice(b"XXXX")),
            ("zero length", |b| b.clear()),
            ("extended", |b| b.extend_from_slice(b"more")),
            ("wrong version", |b| b[4] = 99),
        ]
    }

    fn damage_file(path: &Path, damage: fn(&mut Vec<u8>)) {
        let mut bytes = fs::read(path).unwrap();
        damage(&mut bytes);
        fs::write(path, bytes).unwrap();
    }

    fn assert_moved_aside(cache: &ChunkCache, path: &Path, what: &str) {
        let bad = cache.corrupt().iter().find(|c| c.path == path);
        let bad = bad.unwrap_or_else(|| panic!("{what}: {} not reported", path.display()));
        assert!(!bad.reason.is_empty());
        let moved_to = bad.moved_to.as_ref().expect("moved aside");
        assert_eq!(
            moved_to.parent(),
            Some(cache.dir().join(CORRUPT_DIR).as_path())
        );
        assert!(moved_to.exists(), "{what}: kept for inspection");
        assert!(!path.exists(), "{what}: no longer among the chunks");
    }

    #[test]
    fn damage_is_detected_at_open() {
        for (what, damage) in damages() {
            let tmp = tempfile::tempdir().unwrap();
            let mut cache = ChunkCache::open(tmp.path()).unwrap();
            let good = cache.put(&key(1), &chunk(1)).unwrap();
            let bad = cache.put(&key(1), &chunk(4)).unwrap();
            let bad_path = file_of(&cache, &bad);
            drop(cache);
            damage_file(&bad_path, damage);

            let mut cache = ChunkCache::open(tmp.path()).unwrap();
            assert_eq!(ids(&cache), vec![good.id], "{what}");
            assert_eq!(cache.corrupt().len(), 1, "{what}");
            assert_moved_aside(&cache, &bad_path, what);
            assert!(matches!(cache.read(bad.id), Err(CacheError::UnknownId(_))));
            assert!(cache.read(good.id).is_ok());
            // Its id is not handed out again, though its file has left the directory.
            assert!(cache.put(&key(1), &chunk(7)).unwrap().id > bad.id, "{what}");
            drop(cache);
            let cache = ChunkCache::open(tmp.path()).unwrap();
            assert!(
                cache.corrupt().is_empty(),
                "{what}: reported once, not again"
            );
        }
    }

    #[test]
    fn damage_is_detected_at_read() {
        for (what, damage) in damages() {
            let tmp = tempfile::tempdir().unwrap();
            let mut cache = ChunkCache::open(tmp.path()).unwrap();
            let bad = cache.put(&key(1), &chunk(1)).unwrap();
            let bad_path = file_of(&cache, &bad);
            damage_file(&bad_path, damage);

            match cache.read(bad.id) {
                Err(CacheError::Corrupt { path, reason }) => {
                    assert_eq!(path, bad_path, "{what}");
                    assert!(!reason.is_empty());
                }
                other => panic!("{what}: {other:?}"),
            }
            assert_moved_aside(&cache, &bad_path, what);
            assert!(cache.meta(bad.id).is_none(), "{what}");
            assert!(matches!(cache.read(bad.id), Err(CacheError::UnknownId(_))));
            assert!(!cache.remove(bad.id).unwrap());
            drop(cache);
            let mut cache = ChunkCache::open(tmp.path()).unwrap();
            assert_eq!(cache.held().count(), 0, "{what}");
            assert!(cache.put(&key(1), &chunk(7)).unwrap().id > bad.id, "{what}");
        }
    }

    /// A flip of any bit of the header or payload is caught (the three reserved header bytes
    /// excepted: the codec ignores them).
    #[test]
    fn every_flipped_byte_is_detected_at_read() {
        let tmp = tempfile::tempdir().unwrap();
        let mut cache = ChunkCache::open(tmp.path()).unwrap();
        let len = codec::encode(&chunk(1)).len();
        for i in (0..len).filter(|i| !(5..8).contains(i)) {
            let meta = cache.put(&key(1), &chunk(1)).unwrap();
            let path = file_of(&cache, &meta);
            let mut bytes = fs::read(&path).unwrap();
            bytes[i] ^= 0x01;
            fs::write(&path, bytes).unwrap();
            assert!(
                matches!(cache.read(meta.id), Err(CacheError::Corrupt { .. })),
                "flip at byte {i} was served"
            );
        }
        assert_eq!(cache.held().count(), 0);
    }

    #[test]
    fn same_file_name_moved_aside_twice_keeps_both() {
        let tmp = tempfile::tempdir().unwrap();
        let mut cache = ChunkCache::open(tmp.path()).unwrap();
        let meta = cache.put(&key(1), &chunk(1)).unwrap();
        let path = file_of(&cache, &meta);
        let bytes = fs::read(&path).unwrap();
        fs::write(&path, b"junk").unwrap();
        assert!(cache.read(meta.id).is_err());
        drop(cache);
        // The same name reappears (copied back in by hand) and is still bad.
        fs::write(&path, &bytes[..10]).unwrap();
        let cache = ChunkCache::open(tmp.path()).unwrap();
        assert_moved_aside(&cache, &path, "second");
        assert_eq!(
            fs::read_dir(tmp.path().join(CORRUPT_DIR)).unwrap().count(),
            2
        );
    }

    #[test]
    fn missing_file_is_reported_and_dropped() {
        let tmp = tempfile::tempdir().unwrap();
        let mut cache = ChunkCache::open(tmp.path()).unwrap();
        let meta = cache.put(&key(1), &chunk(1)).unwrap();
        fs::remove_file(file_of(&cache, &meta)).unwrap();
        assert!(matches!(
            cache.read(meta.id),
            Err(CacheError::Missing { .. })
        ));
        assert!(cache.meta(meta.id).is_none());
    }

    #[test]
    fn leftover_temp_files_are_removed_at_open() {
        let tmp = tempfile::tempdir().unwrap();
        let cache = ChunkCache::open(tmp.path()).unwrap();
        let temp = temp_path(&cache.dir().join(chunk_file_name(&key(1), 9)));
        drop(cache);
        fs::write(&temp, &codec::encode(&chunk(1))[..20]).unwrap();

        let mut cache = ChunkCache::open(tmp.path()).unwrap();
        assert!(!temp.exists());
        assert_eq!(cache.held().count(), 0);
        assert!(cache.corrupt().is_empty());
        assert!(cache.put(&key(1), &chunk(1)).unwrap().id > 9);
    }

    #[test]
    fn second_open_of_a_locked_dir_fails_clearly() {
        let tmp = tempfile::tempdir().unwrap();
        let cache = ChunkCache::open(tmp.path()).unwrap();
        let err = ChunkCache::open(tmp.path()).unwrap_err();
        assert!(
            matches!(&err, CacheError::Locked { holder: Some(pid), .. } if *pid == std::process::id()),
            "{err:?}"
        );
        let message = err.to_string();
        assert!(
            message.contains(&tmp.path().display().to_string()),
            "{message}"
        );
        assert!(message.contains("in use by another agent"), "{message}");
        drop(cache);
        ChunkCache::open(tmp.path()).expect("the lock is released on drop");
    }

    #[test]
    fn foreign_files_are_left_alone() {
        let tmp = tempfile::tempdir().unwrap();
        let foreign = [
            "notes.txt",
            "foo.tmp",
            "run.1.zz.rtck",
            "run.1.00000000000001.rtck",
            "run.01.0000000000000001.rtck",
            "run.+1.0000000000000001.rtck",
            "run.1.000000000000000A.rtck",
            "r_n.1.0000000000000001.rtck",
            ".1.0000000000000001.rtck",
            "a.b.1.0000000000000001.rtck",
            "run.1.0000000000000001.rtck.bak",
            "run.1.0000000000000001.rtck.tmp.tmp",
        ];
        for name in foreign {
            fs::write(tmp.path().join(name), b"not ours").unwrap();
        }
        // A directory with a chunk's name is not a chunk either.
        fs::create_dir(tmp.path().join("run.2.0000000000000001.rtck")).unwrap();

        let mut cache = ChunkCache::open(tmp.path()).unwrap();
        assert_eq!(cache.held().count(), 0);
        assert!(cache.corrupt().is_empty());
        for name in foreign {
            assert_eq!(
                fs::read(tmp.path().join(name)).unwrap(),
                b"not ours",
                "{name}"
            );
        }
        assert!(!tmp.path().join(CORRUPT_DIR).exists());
        cache.put(&key(1), &chunk(1)).unwrap();
    }

    #[test]
    fn file_names_round_trip_strictly() {
        let k = key(42);
        let name = chunk_file_name(&k, 0xabc);
        assert_eq!(name, format!("{RUN}.42.0000000000000abc.rtck"));
        assert_eq!(parse_chunk_file_name(&name), Some((k, 0xabc)));
        let max = chunk_file_name(&key(u32::MAX), u64::MAX);
        assert_eq!(
            parse_chunk_file_name(&max).map(|(_, id)| id),
            Some(u64::MAX)
        );
    }

    #[test]
    fn bad_keys_are_rejected() {
        let tmp = tempfile::tempdir().unwrap();
        let mut cache = ChunkCache::open(tmp.path()).unwrap();
        for run in [
            "",
            "../x",
            "a/b",
            "a.b",
            "a b",
            "é",
            &"a".repeat(MAX_RUN_LEN + 1),
        ] {
            let k = ChunkKey {
                run: run.to_owned(),
                workload: 0,
            };
            assert!(
                matches!(cache.put(&k, &chunk(1)), Err(CacheError::BadKey(_))),
                "{run:?}"
            );
        }
        assert!(ChunkKey::new("a/b", 0).is_err());
        assert_eq!(
            fs::read_dir(tmp.path()).unwrap().count(),
            2,
            "lock and next-id only"
        );
    }

    #[cfg(unix)]
    #[test]
    fn new_dir_and_files_are_private() {
        use std::os::unix::fs::PermissionsExt;
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("a/cache");
        let mut cache = ChunkCache::open(&dir).unwrap();
        let meta = cache.put(&key(1), &chunk(1)).unwrap();
        let mode = |p: &Path| fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&dir), 0o700);
        assert_eq!(mode(&file_of(&cache, &meta)) & 0o077, 0);
    }

    #[test]
    fn durable_mode_round_trips() {
        let tmp = tempfile::tempdir().unwrap();
        let mut cache = CacheOptions::default()
            .durable(true)
            .open(tmp.path())
            .unwrap();
        let meta = cache.put(&key(1), &chunk(1)).unwrap();
        assert!(cache.read(meta.id).is_ok());
        assert!(cache.remove(meta.id).unwrap());
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        /// Whatever a chunk file holds, opening and reading never panic, and nothing is served
        /// that does not decode. Random bytes are tried bare and behind a valid header and
        /// checksum (which only a well-formed payload gets past).
        #[test]
        fn random_chunk_files_are_never_served(
            body in proptest::collection::vec(any::<u8>(), 0..300),
            framed in any::<bool>(),
        ) {
            let bytes = if framed { frame(&body) } else { body };
            let tmp = tempfile::tempdir().unwrap();
            let path = tmp.path().join(chunk_file_name(&key(1), 1));

            // Found at open.
            fs::write(&path, &bytes).unwrap();
            let mut cache = ChunkCache::open(tmp.path()).unwrap();
            if cache.meta(1).is_some() {
                let served = cache.read(1).unwrap();
                prop_assert!(codec::decode(&served).is_ok());
            } else {
                prop_assert_eq!(cache.corrupt().len(), 1);
                prop_assert!(cache.read(1).is_err());
            }

            // Damage to a file while the cache is open. `read` checks integrity (header and
            // CRC), not structure, so only unframed bytes are expected to fail it here: a
            // framed blob with a valid CRC is not damage, it is a forgery.
            if !framed {
                let meta = cache.put(&key(2), &chunk(1)).unwrap();
                fs::write(file_of(&cache, &meta), &bytes).unwrap();
                prop_assert!(cache.read(meta.id).is_err());
                prop_assert!(cache.meta(meta.id).is_none());
            }
        }
    }

    /// Random bytes behind a valid header and CRC.
    fn frame(body: &[u8]) -> Vec<u8> {
        let mut out = b"RTCK".to_vec();
        out.push(codec::VERSION);
        out.extend_from_slice(&[0, 0, 0]);
        out.extend_from_slice(&(body.len() as u32).to_le_bytes());
        out.extend_from_slice(&crc32fast::hash(body).to_le_bytes());
        out.extend_from_slice(body);
        out
    }
}
