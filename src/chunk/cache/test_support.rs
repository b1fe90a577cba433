//! Chunks, keys and lookups shared by the cache's unit tests.

use std::path::PathBuf;
use std::sync::Arc;

use super::layout::chunk_file_name;
use super::{ChunkCache, ChunkKey, ChunkMeta};
use crate::chunk::{ActionSpan, Chunk, IterationError, IterationRecord};

pub(super) const RUN: &str = "6f1c2d3e-0000-4abc-8def-0123456789ab";

pub(super) fn key(workload: u32) -> ChunkKey {
    ChunkKey::new(RUN, workload).unwrap()
}

pub(super) fn record(iteration: u64, timestamp: f64, failed: bool) -> IterationRecord {
    IterationRecord {
        iteration,
        timestamp,
        duration: 0.5,
        idle_duration: 0.0,
        lateness: 0.0,
        error: failed.then(|| Box::new(IterationError::new("ValueError", "boom"))),
        output: None,
        actions: 0..0,
        dials: Default::default(),
    }
}

pub(super) fn chunk(first_iteration: u64) -> Chunk {
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

pub(super) fn file_of(cache: &ChunkCache, meta: &ChunkMeta) -> PathBuf {
    cache.dir().join(chunk_file_name(&meta.key, meta.id))
}

pub(super) fn ids(cache: &ChunkCache) -> Vec<u64> {
    cache.held().map(|m| m.id).collect()
}
