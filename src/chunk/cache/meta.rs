//! What identifies a cached chunk ([`ChunkKey`]: its run and workload) and what the cache
//! knows about it without reading it again ([`ChunkMeta`]). The key becomes part of a file
//! name, which is why it is validated here.

use serde::{Deserialize, Serialize};

use super::CacheError;
use crate::chunk::Chunk;

/// Run ids are task UUIDs (36 characters); the bound keeps file names far below NAME_MAX.
pub(super) const MAX_RUN_LEN: usize = 128;

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
    pub(super) fn of(id: u64, key: ChunkKey, chunk: &Chunk, bytes: u64) -> ChunkMeta {
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

#[cfg(test)]
mod tests {
    use std::fs;

    use super::*;
    use crate::chunk::cache::ChunkCache;
    use crate::chunk::cache::test_support::chunk;

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
            3,
            "lock, next-id and cache-id only"
        );
    }
}
