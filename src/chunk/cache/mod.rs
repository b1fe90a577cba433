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
//!
//! The code is split by idea: `layout` names the files and sorts a directory listing, `meta`
//! holds what identifies and describes a cached chunk, `lock` keeps a second agent out, `ids`
//! keeps ids from being reused across restarts, `files` does the reading, writing and
//! checking of files, and `corrupt` moves damaged files aside. This module ties them together
//! into [`ChunkCache`].

mod corrupt;
mod files;
mod ids;
mod layout;
mod lock;
mod meta;

#[cfg(test)]
mod test_support;

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io;
use std::path::{Path, PathBuf};

use super::{Chunk, codec};
use files::{
    Bad, create_private_dir, inspect, open_rw, read_verified, remove_file_if_present, write_new,
};
use ids::read_next_id;
use layout::{NEXT_ID_FILE, chunk_file_name, list_dir, temp_path};
use lock::lock_dir;

pub use corrupt::CorruptFile;
pub use meta::{ChunkKey, ChunkMeta};

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
    /// See [`ChunkCache::id`].
    id: String,
    /// Chunks the disk refused (full, over quota, read-only, failing), kept encoded in memory
    /// until a later write succeeds or the controller has stored them: results are never
    /// dropped for want of disk. The agent bounds this by pausing its load.
    unwritten: BTreeMap<u64, Vec<u8>>,
    unwritten_bytes: usize,
    /// Why the last write failed, while anything is unwritten.
    write_error: Option<String>,
    /// Held for the lock, which is released when the cache is dropped.
    _lock: File,
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
        let id = cache_id(dir)?;
        let mut cache = ChunkCache {
            id,
            unwritten: BTreeMap::new(),
            unwritten_bytes: 0,
            write_error: None,
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

    /// The directory's own random id, the same for every process that opens it (one at a
    /// time: the directory is locked).
    pub fn id(&self) -> &str {
        &self.id
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
    /// id: ids increase, across restarts too. If the disk refuses it, the chunk is held in
    /// memory instead (see [`unwritten_bytes`](Self::unwritten_bytes)) and served from there.
    pub fn put(&mut self, key: &ChunkKey, chunk: &Chunk) -> Result<ChunkMeta, CacheError> {
        key.validate()?;
        let id = self.next_id;
        // Taken even if the write fails: a gap in the ids is harmless, a reused id is not.
        self.next_id = id.checked_add(1).ok_or_else(|| CacheError::IdsExhausted {
            dir: self.dir.clone(),
        })?;
        let bytes = codec::encode(chunk);
        let meta = ChunkMeta::of(id, key.clone(), chunk, bytes.len() as u64);
        // Behind chunks still waiting for the disk, a write would only fail again.
        let written = self.unwritten.is_empty() && self.write(key, id, &bytes).is_ok();
        if !written {
            self.unwritten_bytes += bytes.len();
            self.unwritten.insert(id, bytes);
        }
        self.held.insert(id, meta.clone());
        Ok(meta)
    }

    /// One chunk file, atomically; on failure nothing is left behind and the reason is kept.
    fn write(&mut self, key: &ChunkKey, id: u64, bytes: &[u8]) -> Result<(), CacheError> {
        let path = self.path_of(key, id);
        let temp = temp_path(&path);
        let result = write_new(&temp, bytes, self.durable)
            .map_err(|source| CacheError::Io {
                path: temp.clone(),
                source,
            })
            .and_then(|()| {
                fs::rename(&temp, &path).map_err(|source| CacheError::Io {
                    path: path.clone(),
                    source,
                })
            })
            .and_then(|()| self.sync_dir());
        if let Err(e) = &result {
            let _ = fs::remove_file(&temp);
            if self.write_error.is_none() {
                tracing::warn!("the chunk cache cannot write ({e}); holding chunks in memory");
            }
            self.write_error = Some(e.to_string());
        }
        result
    }

    /// Tries again to write the chunks held in memory, oldest first, stopping at the first
    /// failure. Returns how many bytes are still only in memory.
    pub fn retry_writes(&mut self) -> usize {
        while let Some((&id, _)) = self.unwritten.first_key_value() {
            let Some(key) = self.held.get(&id).map(|m| m.key.clone()) else {
                self.forget_unwritten(id);
                continue;
            };
            let Some(bytes) = self.unwritten.get(&id).cloned() else {
                break;
            };
            if self.write(&key, id, &bytes).is_err() {
                break;
            }
            self.forget_unwritten(id);
        }
        if self.unwritten.is_empty() && self.write_error.take().is_some() {
            tracing::warn!("the chunk cache writes again; nothing is held in memory");
        }
        self.unwritten_bytes
    }

    fn forget_unwritten(&mut self, id: u64) {
        if let Some(bytes) = self.unwritten.remove(&id) {
            self.unwritten_bytes -= bytes.len();
        }
    }

    /// Bytes of chunks the disk refused, held in memory.
    pub fn unwritten_bytes(&self) -> usize {
        self.unwritten_bytes
    }

    /// Why the disk refuses chunks, while any are held in memory.
    pub fn write_error(&self) -> Option<&str> {
        self.write_error.as_deref()
    }

    /// The encoded bytes of a chunk, verified (size as written, magic, version, length, CRC)
    /// before they are returned. A damaged file gives [`CacheError::Corrupt`], is moved aside
    /// and is dropped from the index, so it is never served.
    ///
    /// Only integrity is checked here, not decoded: the content was produced by `encode` (in
    /// `put`) or fully decoded (at open), and the CRC shows it has not changed since.
    pub fn read(&mut self, id: u64) -> Result<Vec<u8>, CacheError> {
        if let Some(bytes) = self.unwritten.get(&id) {
            return Ok(bytes.clone());
        }
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
        if self.unwritten.contains_key(&id) {
            self.forget_unwritten(id);
            self.held.remove(&id);
            return Ok(true);
        }
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

/// Reads the cache's id, or makes one (32 hex digits) if there is none or it is damaged.
fn cache_id(dir: &Path) -> Result<String, CacheError> {
    let path = dir.join(layout::CACHE_ID_FILE);
    if let Ok(text) = std::fs::read_to_string(&path) {
        let id = text.trim();
        if id.len() == 32 && id.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Ok(id.to_string());
        }
    }
    let id = uuid::Uuid::new_v4().simple().to_string();
    std::fs::write(&path, format!("{id}\n")).map_err(io_err(&path))?;
    Ok(id)
}

#[cfg(test)]
mod tests {
    use super::test_support::{chunk, file_of, ids, key};
    use super::*;

    #[test]
    fn a_cache_keeps_its_id_across_opens_and_another_has_another() {
        let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let first = ChunkCache::open(a.path()).unwrap().id().to_string();
        assert_eq!(first.len(), 32);
        assert_eq!(ChunkCache::open(a.path()).unwrap().id(), first);
        assert_ne!(ChunkCache::open(b.path()).unwrap().id(), first);
        // A damaged id is replaced rather than trusted.
        fs::write(a.path().join(layout::CACHE_ID_FILE), "../../etc").unwrap();
        let again = ChunkCache::open(a.path()).unwrap().id().to_string();
        assert_eq!(again.len(), 32);
        assert!(again.bytes().all(|c| c.is_ascii_hexdigit()));
    }

    #[test]
    fn chunks_the_disk_refuses_are_held_in_memory_served_and_written_later() {
        let tmp = tempfile::tempdir().unwrap();
        let mut cache = ChunkCache::open(tmp.path()).unwrap();
        let first = cache.put(&key(0), &chunk(1)).unwrap();
        // The next write cannot happen: a directory stands where its temp file goes (as
        // root, permissions would not stop it; a full disk is tested end to end).
        let blocked = temp_path(&cache.path_of(&key(0), first.id + 1));
        fs::create_dir(&blocked).unwrap();
        let second = cache.put(&key(0), &chunk(4)).unwrap();
        let third = cache.put(&key(0), &chunk(7)).unwrap();
        assert!(cache.unwritten_bytes() > 0);
        assert!(cache.write_error().is_some());
        // Announced and served like any other.
        assert_eq!(ids(&cache), vec![first.id, second.id, third.id]);
        let bytes = cache.read(second.id).unwrap();
        assert_eq!(codec::decode(&bytes).unwrap(), chunk(4));
        // Still refused: nothing changes.
        assert!(cache.retry_writes() > 0);
        // The disk takes writes again: everything goes to disk, in order.
        fs::remove_dir(&blocked).unwrap();
        assert_eq!(cache.retry_writes(), 0);
        assert!(cache.write_error().is_none());
        assert!(file_of(&cache, &third).is_file());
        assert_eq!(
            codec::decode(&cache.read(third.id).unwrap()).unwrap(),
            chunk(7)
        );
        // And a chunk stored while only in memory is simply forgotten.
        fs::create_dir(temp_path(&cache.path_of(&key(0), third.id + 1))).unwrap();
        let fourth = cache.put(&key(0), &chunk(10)).unwrap();
        assert!(cache.remove(fourth.id).unwrap());
        assert_eq!(cache.unwritten_bytes(), 0);
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
}
