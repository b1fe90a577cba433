//! The chunk cache's side of the results channel: pulls answered one chunk at a time, and
//! chunks the controller has stored deleted. Cache calls touch files, so they run on
//! tokio's blocking threads ([`on_disk`]).

use std::sync::{Arc, Mutex};

use tokio::sync::mpsc;

use super::lock;
use super::workload::on_disk;
use crate::chunk::cache::ChunkCache;
use crate::distributed::protocol::Delivery;
use crate::distributed::wire::link::LinkSender;

/// Serves the controller's pulls, one chunk at a time, on the results channel.
pub(super) async fn serve_pulls(
    sender: Arc<LinkSender>,
    cache: Arc<Mutex<ChunkCache>>,
    mut pulls: mpsc::Receiver<Vec<u64>>,
) {
    while let Some(ids) = pulls.recv().await {
        for id in ids {
            let delivery = on_disk(&cache, move |c| answer(c, id)).await;
            if sender.deliver(&delivery).await.is_err() {
                return;
            }
        }
    }
}

/// The answer to a pull of chunk `id`: its bytes as cached, or why they cannot be had.
pub(super) fn answer(cache: &mut ChunkCache, id: u64) -> Delivery {
    match cache.read(id) {
        Ok(bytes) => Delivery::Chunk { id, bytes },
        Err(e) => {
            tracing::error!("{e}");
            Delivery::Missing {
                id,
                reason: e.to_string(),
            }
        }
    }
}

/// Deletes chunks the controller has stored, on a blocking thread (see `on_disk`), and not
/// awaited: nothing waits for the files to go.
pub(super) fn forget(cache: &Arc<Mutex<ChunkCache>>, ids: Vec<u64>) {
    let cache = cache.clone();
    tokio::task::spawn_blocking(move || {
        let mut cache = lock(&cache);
        for id in ids {
            if let Err(e) = cache.remove(id) {
                tracing::warn!("{e}");
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chunk::cache::ChunkKey;
    use crate::chunk::{Chunk, IterationRecord};

    #[test]
    fn a_pull_is_answered_from_the_cache() {
        let dir = tempfile::tempdir().unwrap();
        let mut cache = ChunkCache::open(dir.path()).unwrap();
        let mut chunk = Chunk::new(Arc::from("agent"));
        chunk.records.push(IterationRecord::passed(7, 10.0, 0.5));
        let key = ChunkKey::new("6f1c2d3e-0000-4abc-8def-0123456789ab", 0).unwrap();
        let meta = cache.put(&key, &chunk).unwrap();
        let cached = cache.read(meta.id).unwrap();
        assert_eq!(
            answer(&mut cache, meta.id),
            Delivery::Chunk {
                id: meta.id,
                bytes: cached
            }
        );
        // A chunk it does not hold is answered too: as missing, with the reason.
        match answer(&mut cache, meta.id + 100) {
            Delivery::Missing { id, reason } => {
                assert_eq!(id, meta.id + 100);
                assert!(!reason.is_empty());
            }
            other => panic!("{other:?}"),
        }
    }
}
