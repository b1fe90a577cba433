//! Chunk ids that are never reused, across restarts too: a restarted agent must never hand
//! out an id the controller has already seen.
//!
//! The largest id of a file present bounds the next id; the `next-id` file covers the ids
//! whose files are gone (removed after the controller stored them, or moved aside as
//! corrupt). It is written before the last trace of an id leaves the directory.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::Path;

use super::layout::NEXT_ID_FILE;
use super::{CacheError, ChunkCache, io_err};

impl ChunkCache {
    /// Makes sure `next-id` is above `id` before the last trace of `id` on disk goes away.
    pub(super) fn cover_id(&mut self, id: u64) -> Result<(), CacheError> {
        if self.persisted_next > id {
            return Ok(());
        }
        self.persist_next_id()
    }

    /// Overwrites the fixed-width `next-id` in place: one small write, which a process crash
    /// cannot tear. A torn write after a power loss only makes the file unreadable, and
    /// [`read_next_id`] then falls back on the ids of the files present.
    pub(super) fn persist_next_id(&mut self) -> Result<(), CacheError> {
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
}

/// The id stored in `next-id`, or 0 if there is none or it is unreadable (the ids of the files
/// present then decide).
pub(super) fn read_next_id(file: &mut File, path: &Path) -> u64 {
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

#[cfg(test)]
mod tests {
    use std::fs;

    use super::*;
    use crate::chunk::cache::test_support::{chunk, ids, key};

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
}
