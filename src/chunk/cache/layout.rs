//! The names of the files in a cache directory (see the layout in the [parent
//! module](super)): writing a chunk file name, parsing one back strictly, and sorting a
//! directory listing into chunk files, leftover temp files and foreign files.
//!
//! Parsing is strict because a name this cache did not write must never be mistaken for one
//! of its chunks: the cache deletes its own files, and must not delete anyone else's.

use std::fs;
use std::path::{Path, PathBuf};

use super::{CacheError, ChunkKey, io_err};

pub(super) const CHUNK_SUFFIX: &str = ".rtck";
pub(super) const TEMP_SUFFIX: &str = ".tmp";
pub(super) const LOCK_FILE: &str = "lock";
pub(super) const NEXT_ID_FILE: &str = "next-id";
/// The cache's own random id, made once: it tells the controller that an agent registering
/// under a known name is that agent again (a restart on the same cache), not another one.
pub(super) const CACHE_ID_FILE: &str = "cache-id";
pub(super) const CORRUPT_DIR: &str = "corrupt";

/// The files of a cache directory, sorted by kind.
#[derive(Default)]
pub(super) struct Listing {
    pub(super) chunks: Vec<(u64, ChunkKey, PathBuf)>,
    pub(super) temps: Vec<(u64, PathBuf)>,
}

pub(super) fn chunk_file_name(key: &ChunkKey, id: u64) -> String {
    format!("{}.{}.{id:016x}{CHUNK_SUFFIX}", key.run, key.workload)
}

pub(super) fn temp_path(chunk_path: &Path) -> PathBuf {
    let mut name = chunk_path.as_os_str().to_owned();
    name.push(TEMP_SUFFIX);
    PathBuf::from(name)
}

/// The key and id of a chunk file name, or `None` if the name is not exactly one this cache
/// writes (so a foreign file is never mistaken for, or deleted as, one of ours).
pub(super) fn parse_chunk_file_name(name: &str) -> Option<(ChunkKey, u64)> {
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

/// Sorts the directory's entries into chunk files, leftover temp files and the rest (ignored).
/// Only regular files count: we never create anything else.
pub(super) fn list_dir(dir: &Path) -> Result<Listing, CacheError> {
    let mut listing = Listing::default();
    for entry in fs::read_dir(dir).map_err(io_err(dir))? {
        let entry = entry.map_err(io_err(dir))?;
        let path = entry.path();
        let Ok(name) = entry.file_name().into_string() else {
            continue;
        };
        if matches!(
            name.as_str(),
            LOCK_FILE | NEXT_ID_FILE | CACHE_ID_FILE | CORRUPT_DIR
        ) {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chunk::cache::ChunkCache;
    use crate::chunk::cache::test_support::{RUN, chunk, key};

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
}
