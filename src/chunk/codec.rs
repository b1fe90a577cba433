//! The binary form of a chunk: how chunks are stored in SQLite (and, later, cached on an
//! agent's disk and sent over the wire).
//!
//! A small header — magic, format version, payload length, CRC-32 of the payload — lets a
//! reader reject a truncated, corrupt or foreign blob with a clear error instead of
//! misreading it; every length inside the payload is checked against what remains, so no
//! input can make the decoder panic or allocate more than the blob's size.

use std::sync::Arc;

use super::{ActionSpan, Chunk, Dials, IterationError, IterationRecord, Output};

const MAGIC: &[u8; 4] = b"RTCK";
/// Bumped whenever the payload layout changes: 2 added the connection counts
/// ([`HAS_DIALS`]). Version 1 blobs (stored before) are read too; a binary that only knows
/// version 1 refuses version 2 with a clear error instead of misreading it.
pub const VERSION: u8 = 2;
/// The oldest layout this build reads.
const OLDEST: u8 = 1;
const HEADER: usize = 4 + 1 + 3 + 4 + 4;
/// The smallest encoded record and action, to bound counts read from the payload.
const MIN_RECORD: usize = 8 + 4 * 8 + 4 + 4 + 1;
const ACTION: usize = 2 + 1 + 1 + 8 + 8;

const HAS_ERROR: u8 = 1;
const HAS_OUTPUT: u8 = 2;
/// Three counts follow ([`super::Dials`]); absent in most records, and in every record
/// written before connections were counted, which read back as having opened none.
const HAS_DIALS: u8 = 4;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CodecError {
    #[error("not a chunk (bad magic)")]
    BadMagic,
    #[error(
        "chunk format version {0} is not supported (this build reads versions {OLDEST} to {VERSION})"
    )]
    Version(u8),
    #[error("chunk is truncated: {0}")]
    Truncated(&'static str),
    #[error("chunk checksum mismatch (stored {stored:08x}, computed {computed:08x})")]
    Checksum { stored: u32, computed: u32 },
    #[error("chunk is malformed: {0}")]
    Malformed(String),
}

/// Serialize a chunk.
pub fn encode(chunk: &Chunk) -> Vec<u8> {
    let mut p =
        Vec::with_capacity(64 + chunk.records.len() * MIN_RECORD + chunk.actions.len() * ACTION);
    put_str(&mut p, &chunk.source);
    p.extend_from_slice(&(chunk.records.len() as u32).to_le_bytes());
    p.extend_from_slice(&(chunk.actions.len() as u32).to_le_bytes());
    for r in &chunk.records {
        p.extend_from_slice(&r.iteration.to_le_bytes());
        for v in [r.timestamp, r.duration, r.idle_duration, r.lateness] {
            p.extend_from_slice(&v.to_le_bytes());
        }
        p.extend_from_slice(&r.actions.start.to_le_bytes());
        p.extend_from_slice(&r.actions.end.to_le_bytes());
        let flags = if r.error.is_some() { HAS_ERROR } else { 0 }
            | if r.output.is_some() { HAS_OUTPUT } else { 0 }
            | if r.dials.is_empty() { 0 } else { HAS_DIALS };
        p.push(flags);
        if !r.dials.is_empty() {
            p.extend_from_slice(&[r.dials.plain, r.dials.tls_full, r.dials.tls_resumed]);
        }
        if let Some(e) = &r.error {
            put_str(&mut p, &e.etype);
            put_str(&mut p, &e.message);
            put_str(&mut p, &e.details);
        }
        if let Some(o) = &r.output {
            put_str(
                &mut p,
                &serde_json::to_string(o).unwrap_or_else(|_| "{}".into()),
            );
        }
    }
    for a in &chunk.actions {
        p.extend_from_slice(&a.name.to_le_bytes());
        p.push(a.depth);
        p.push(u8::from(a.failed));
        p.extend_from_slice(&a.started_at.to_le_bytes());
        p.extend_from_slice(&a.finished_at.to_le_bytes());
    }
    let mut out = Vec::with_capacity(HEADER + p.len());
    out.extend_from_slice(MAGIC);
    out.push(VERSION);
    out.extend_from_slice(&[0, 0, 0]);
    out.extend_from_slice(&(p.len() as u32).to_le_bytes());
    out.extend_from_slice(&crc32fast::hash(&p).to_le_bytes());
    out.extend_from_slice(&p);
    out
}

fn put_str(p: &mut Vec<u8>, s: &str) {
    p.extend_from_slice(&(s.len() as u32).to_le_bytes());
    p.extend_from_slice(s.as_bytes());
}

/// A cursor that refuses to read past the end.
struct Reader<'a> {
    bytes: &'a [u8],
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize, what: &'static str) -> Result<&'a [u8], CodecError> {
        if self.bytes.len() < n {
            return Err(CodecError::Truncated(what));
        }
        let (head, rest) = self.bytes.split_at(n);
        self.bytes = rest;
        Ok(head)
    }

    fn array<const N: usize>(&mut self, what: &'static str) -> Result<[u8; N], CodecError> {
        let mut a = [0u8; N];
        a.copy_from_slice(self.take(N, what)?);
        Ok(a)
    }

    fn u8(&mut self, what: &'static str) -> Result<u8, CodecError> {
        Ok(self.take(1, what)?[0])
    }

    fn u16(&mut self, what: &'static str) -> Result<u16, CodecError> {
        Ok(u16::from_le_bytes(self.array(what)?))
    }

    fn u32(&mut self, what: &'static str) -> Result<u32, CodecError> {
        Ok(u32::from_le_bytes(self.array(what)?))
    }

    fn u64(&mut self, what: &'static str) -> Result<u64, CodecError> {
        Ok(u64::from_le_bytes(self.array(what)?))
    }

    fn f64(&mut self, what: &'static str) -> Result<f64, CodecError> {
        Ok(f64::from_le_bytes(self.array(what)?))
    }

    fn string(&mut self, what: &'static str) -> Result<String, CodecError> {
        let len = self.u32(what)? as usize;
        let bytes = self.take(len, what)?;
        String::from_utf8(bytes.to_vec())
            .map_err(|_| CodecError::Malformed(format!("{what} is not UTF-8")))
    }
}

/// Check a blob's header (magic, version, length) and payload checksum without decoding it:
/// the cheap test a holder of encoded chunks (the agent's cache) runs before passing one on.
/// A blob that passes was written by [`encode`] and not damaged since (to CRC-32's strength).
pub fn verify(bytes: &[u8]) -> Result<(), CodecError> {
    framed_payload(bytes).map(|_| ())
}

/// The payload of a framed blob, after checking its header and checksum.
fn framed_payload(bytes: &[u8]) -> Result<&[u8], CodecError> {
    let mut r = Reader { bytes };
    if r.take(4, "magic")? != MAGIC {
        return Err(CodecError::BadMagic);
    }
    let version = r.u8("version")?;
    if !(OLDEST..=VERSION).contains(&version) {
        return Err(CodecError::Version(version));
    }
    r.take(3, "header")?;
    let len = r.u32("payload length")? as usize;
    let stored = r.u32("checksum")?;
    let payload = r.take(len, "payload")?;
    if !r.bytes.is_empty() {
        return Err(CodecError::Malformed(format!(
            "{} bytes after the payload",
            r.bytes.len()
        )));
    }
    let computed = crc32fast::hash(payload);
    if computed != stored {
        return Err(CodecError::Checksum { stored, computed });
    }
    Ok(payload)
}

/// Parse a chunk written by [`encode`].
pub fn decode(bytes: &[u8]) -> Result<Chunk, CodecError> {
    let payload = framed_payload(bytes)?;
    let mut r = Reader { bytes: payload };
    let source: Arc<str> = Arc::from(r.string("source")?);
    let n_records = r.u32("record count")? as usize;
    let n_actions = r.u32("action count")? as usize;
    if n_records
        .saturating_mul(MIN_RECORD)
        .saturating_add(n_actions.saturating_mul(ACTION))
        > r.bytes.len()
    {
        return Err(CodecError::Truncated("records"));
    }
    let mut records = Vec::with_capacity(n_records);
    for _ in 0..n_records {
        let iteration = r.u64("iteration")?;
        let timestamp = r.f64("timestamp")?;
        let duration = r.f64("duration")?;
        let idle_duration = r.f64("idle duration")?;
        let lateness = r.f64("lateness")?;
        let start = r.u32("actions")?;
        let end = r.u32("actions")?;
        if start > end || end as usize > n_actions {
            return Err(CodecError::Malformed(format!(
                "iteration {iteration}: action range {start}..{end} outside 0..{n_actions}"
            )));
        }
        let flags = r.u8("flags")?;
        if flags & !(HAS_ERROR | HAS_OUTPUT | HAS_DIALS) != 0 {
            return Err(CodecError::Malformed(format!(
                "iteration {iteration}: unknown flags {flags:#04x}"
            )));
        }
        let dials = if flags & HAS_DIALS != 0 {
            let [plain, tls_full, tls_resumed] = r.array("connection counts")?;
            Dials {
                plain,
                tls_full,
                tls_resumed,
            }
        } else {
            Dials::default()
        };
        let error = if flags & HAS_ERROR != 0 {
            Some(Box::new(IterationError {
                etype: r.string("error type")?,
                message: r.string("error message")?,
                details: r.string("error details")?,
            }))
        } else {
            None
        };
        let output = if flags & HAS_OUTPUT != 0 {
            let text = r.string("output")?;
            let o: Output = serde_json::from_str(&text).map_err(|e| {
                CodecError::Malformed(format!("output of iteration {iteration}: {e}"))
            })?;
            Some(Box::new(o))
        } else {
            None
        };
        records.push(IterationRecord {
            iteration,
            timestamp,
            duration,
            idle_duration,
            lateness,
            error,
            output,
            actions: start..end,
            dials,
        });
    }
    let mut actions = Vec::with_capacity(n_actions);
    for _ in 0..n_actions {
        actions.push(ActionSpan {
            name: r.u16("action name")?,
            depth: r.u8("action depth")?,
            failed: r.u8("action failed")? != 0,
            started_at: r.f64("action start")?,
            finished_at: r.f64("action end")?,
        });
    }
    if !r.bytes.is_empty() {
        return Err(CodecError::Malformed(format!(
            "{} bytes after the last action",
            r.bytes.len()
        )));
    }
    Ok(Chunk {
        source,
        records,
        actions,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn sample() -> Chunk {
        Chunk {
            source: Arc::from("agent-1"),
            records: vec![
                IterationRecord {
                    iteration: 1,
                    timestamp: 1.5,
                    duration: 0.25,
                    idle_duration: 0.0,
                    lateness: 0.01,
                    error: None,
                    output: None,
                    actions: 0..2,
                    dials: Default::default(),
                },
                IterationRecord {
                    iteration: 2,
                    timestamp: 2.5,
                    duration: 0.5,
                    idle_duration: 0.1,
                    lateness: 0.0,
                    error: Some(Box::new(IterationError::new("ValueError", "boom ünicode"))),
                    output: Some(Box::new(Output {
                        additive: vec![serde_json::json!({"title": "t"})],
                        complete: vec![],
                    })),
                    actions: 2..2,
                    dials: Dials {
                        plain: 0,
                        tls_full: 1,
                        tls_resumed: 2,
                    },
                },
            ],
            actions: vec![
                ActionSpan {
                    name: 0,
                    depth: 0,
                    failed: false,
                    started_at: 1.5,
                    finished_at: 1.7,
                },
                ActionSpan {
                    name: 1,
                    depth: 1,
                    failed: true,
                    started_at: 1.6,
                    finished_at: 1.7,
                },
            ],
        }
    }

    #[test]
    fn round_trip() {
        let c = sample();
        assert_eq!(decode(&encode(&c)).unwrap(), c);
        assert_eq!(
            decode(&encode(&Chunk::new("x".into()))).unwrap(),
            Chunk::new("x".into())
        );
    }

    #[test]
    fn damage_is_detected() {
        let bytes = encode(&sample());
        assert_eq!(
            decode(&bytes[..bytes.len() - 1]),
            Err(CodecError::Truncated("payload"))
        );
        let mut flipped = bytes.clone();
        let last = flipped.len() - 3;
        flipped[last] ^= 0x40;
        assert!(matches!(decode(&flipped), Err(CodecError::Checksum { .. })));
        let mut version = bytes.clone();
        version[4] = 99;
        assert_eq!(decode(&version), Err(CodecError::Version(99)));
        assert_eq!(decode(b"nope"), Err(CodecError::BadMagic));
        assert_eq!(decode(b""), Err(CodecError::Truncated("magic")));
    }

    proptest! {
        /// Whatever the bytes, decoding returns an error or a chunk; it never panics, even
        /// behind a valid header and checksum.
        #[test]
        fn arbitrary_bytes_never_panic(body in proptest::collection::vec(any::<u8>(), 0..400)) {
            let _ = decode(&body);
            let mut framed = Vec::new();
            framed.extend_from_slice(MAGIC);
            framed.push(VERSION);
            framed.extend_from_slice(&[0, 0, 0]);
            framed.extend_from_slice(&(body.len() as u32).to_le_bytes());
            framed.extend_from_slice(&crc32fast::hash(&body).to_le_bytes());
            framed.extend_from_slice(&body);
            let _ = decode(&framed);
        }
    }
}
