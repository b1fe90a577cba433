//! Reading and writing the cache's files. Every file is created private to the owner, a
//! chunk is written whole to a temp file (which `ChunkCache::put` then renames into place),
//! and a chunk file is read whole and checked (its size, then the codec's header and CRC)
//! before any of it is believed.
//!
//! Failures are sorted into [`Bad`], because the cache treats them differently: damage is
//! moved aside, a missing file is forgotten, and any other IO error may be transient, so the
//! file is left where it is.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::path::Path;

use crate::chunk::{Chunk, codec};

/// The codec's 16-byte header plus the largest payload its u32 length can describe: anything
/// larger cannot be a chunk, and is rejected without reading it into memory.
const MAX_FILE_LEN: u64 = 16 + u32::MAX as u64;

/// What reading one chunk file can go wrong with.
pub(super) enum Bad {
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

/// Creates a directory (and its parents) readable by the owner only: chunks hold the run's
/// error messages, which may name hosts and credentials of the system under test.
pub(super) fn create_private_dir(dir: &Path) -> io::Result<()> {
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
pub(super) fn open_rw(path: &Path) -> io::Result<File> {
    private_file_options()
        .read(true)
        .write(true)
        .truncate(false)
        .open(path)
}

/// Reads and fully decodes a chunk file: at open, the meta has to be rebuilt from the content.
pub(super) fn inspect(path: &Path) -> Result<(Chunk, u64), Bad> {
    let bytes = read_bounded(path, None)?;
    let chunk = codec::decode(&bytes).map_err(|e| Bad::Corrupt(e.to_string()))?;
    Ok((chunk, bytes.len() as u64))
}

/// Reads a chunk file and checks it without decoding: its size must be the size written, its
/// header and CRC must hold.
pub(super) fn read_verified(path: &Path, expected_len: u64) -> Result<Vec<u8>, Bad> {
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

/// Creates (or replaces) a file with the given content, mode 0600, synced if `durable`.
pub(super) fn write_new(path: &Path, bytes: &[u8], durable: bool) -> io::Result<()> {
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

pub(super) fn remove_file_if_present(path: &Path) -> io::Result<()> {
    match fs::remove_file(path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::chunk::cache::layout::chunk_file_name;
    use crate::chunk::cache::test_support::{chunk, file_of, key};
    use crate::chunk::cache::{CacheError, ChunkCache};

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
