//! Damaged chunk files. A chunk file that fails its checks (at open or at read) is never
//! served: it leaves the index, is moved to `corrupt/` for inspection, and is reported through
//! [`ChunkCache::corrupt`], so the damage is visible rather than silently dropped.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use super::ChunkCache;
use super::files::create_private_dir;
use super::layout::CORRUPT_DIR;

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

impl ChunkCache {
    /// Moves a damaged file to `corrupt/` and records it. If it cannot be moved it stays where
    /// it is (it is not in the index, so it is still not served).
    pub(super) fn quarantine(&mut self, path: &Path, reason: String) {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chunk::cache::CacheError;
    use crate::chunk::cache::test_support::{chunk, file_of, ids, key};

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
}
