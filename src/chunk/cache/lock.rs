//! One agent process per cache directory. Two agents sharing a directory would hand out the
//! same ids, so the second one is refused at open, with an error that names the pid of the
//! first.
//!
//! The lock is an OS file lock (`flock`-style) on the `lock` file, so it is released when its
//! holder exits however it exits; a stale lock file left by a dead agent does not block.

use std::fs::{self, File};
use std::io::{Read, Write};
use std::path::Path;

use super::files::open_rw;
use super::layout::LOCK_FILE;
use super::{CacheError, io_err};

/// Takes the directory's exclusive lock, then records our pid in the lock file so that a
/// second agent's error can say who holds it.
pub(super) fn lock_dir(dir: &Path) -> Result<File, CacheError> {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chunk::cache::ChunkCache;

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
}
