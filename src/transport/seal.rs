//! Per-frame authenticated encryption between the controller and its agents (SPEC §6 "Security").
//!
//! The `zeromq` crate has no CURVE, so every frame is sealed here before it is handed to a socket
//! and opened here before anything else looks at it. The scheme is Jupyter's "sign every frame with
//! a shared key" idea (reference/rust-ecosystem.md §1.5) with confidentiality added and the bounded,
//! random replay window replaced by a strict sequence check:
//!
//! * **Keys.** Both sides hold a shared token (≥ 16 bytes, from a 0600 file or an environment
//!   variable; loading it is not this module's job). At session start each side draws a random
//!   16-byte nonce ([`new_nonce`]) and they exchange them in the clear. [`derive`] runs HKDF-SHA256
//!   with the token as input key material, `controller_nonce || agent_nonce` as salt and one info
//!   string per direction, giving two independent ChaCha20-Poly1305 keys. Fresh nonces on either
//!   side mean fresh keys, so frames recorded in an earlier session cannot be replayed into a new
//!   one even though sequence numbers restart at 0.
//! * **Frames.** `version (1) | sequence (u64 LE) | ciphertext + 16-byte tag`. The AEAD nonce is
//!   `direction || 0 0 0 || sequence LE`, the associated data is `version || direction || sequence`,
//!   so the header cannot be altered without breaking the tag, and a (key, nonce) pair is never used
//!   twice: the sequence only grows and the [`Sealer`] refuses to wrap it.
//! * **Order.** One session runs over one ZeroMQ TCP connection, which preserves order, so the
//!   [`Opener`] demands strictly increasing sequence numbers (gaps are allowed: a dropped frame is
//!   not an attack we can or need to detect here; the protocol above notices missing replies).
//!
//! **Protected** within a session: confidentiality of frame contents, integrity and origin of every
//! frame (only a token holder can produce one), rejection of replayed, reordered or reflected
//! frames (a frame sent to an agent does not open as one sent to the controller), and of frames
//! from an old session.
//!
//! **Not protected**: traffic analysis (frame sizes, timing and count are visible; the sequence
//! number is in the clear); deletion or truncation of the stream (dropping frames is not detected
//! here); anything once the token leaks: a token holder can impersonate either side, and with
//! recorded nonces (they travel in the clear) can decrypt recorded sessions — there is no forward
//! secrecy. Denial of service by flooding is out of scope, though forged frames are cheap to reject.
//!
//! Nothing in this module panics on input from the network: every malformed frame is a
//! [`SealError`], which the caller logs before dropping the frame.

use std::fmt;

use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{ChaCha20Poly1305, Nonce};
use hkdf::Hkdf;
use sha2::Sha256;
use zeroize::Zeroize;

/// Wire format version; the first byte of every frame.
pub const VERSION: u8 = 1;
/// Shortest token accepted: 128 bits, so that the token itself is not the weak point of HKDF.
pub const MIN_TOKEN_LEN: usize = 16;
/// Bytes of `version | sequence` before the ciphertext.
pub const HEADER_LEN: usize = 1 + 8;
/// Bytes of the Poly1305 tag after the ciphertext.
pub const TAG_LEN: usize = 16;
/// Size of each side's session nonce.
pub const NONCE_LEN: usize = 16;
/// Highest sequence number a [`Sealer`] will use; sealing past it is refused, never wrapped,
/// because a wrapped sequence would reuse an AEAD nonce (fatal for ChaCha20-Poly1305) and be
/// rejected as a replay by the peer anyway.
pub const MAX_SEQUENCE: u64 = u64::MAX - 1;

const INFO_TO_AGENT: &[u8] = b"rally-tui v1 controller->agent";
const INFO_TO_CONTROLLER: &[u8] = b"rally-tui v1 agent->controller";

/// Why a token, key derivation, seal or open was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SealError {
    /// The shared token is shorter than [`MIN_TOKEN_LEN`] bytes.
    #[error("token too short: at least {MIN_TOKEN_LEN} bytes are required")]
    WeakToken,
    /// The frame's version byte is not one this build understands.
    #[error("unknown frame version {0}")]
    Version(u8),
    /// The frame is too short or otherwise not shaped like a frame.
    #[error("malformed frame: {0}")]
    Malformed(&'static str),
    /// Authentication failed: wrong token, wrong direction, wrong session, or a forged/altered frame.
    #[error("authentication tag mismatch (wrong token or forged frame)")]
    BadTag,
    /// The frame is larger than this opener accepts (checked before anything is decrypted).
    #[error("frame of {bytes} bytes exceeds the limit of {limit} bytes")]
    TooLarge { bytes: usize, limit: usize },
    /// The sequence number is not above the highest already accepted (replayed or reordered frame).
    #[error("replayed or reordered frame: sequence {got} <= last accepted {last}")]
    Replay { got: u64, last: u64 },
    /// The sealer has used every sequence number of this session; start a new session.
    #[error("sequence numbers exhausted; a new session (fresh nonces) is required")]
    SequenceExhausted,
}

/// A 32-byte ChaCha20-Poly1305 key for one direction of one session.
///
/// Not `Clone`, not printable (`Debug` is redacted) and wiped on drop, so that keys do not end up
/// in logs or linger in freed memory.
pub struct Key([u8; 32]);

impl fmt::Debug for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Key(<redacted>)")
    }
}

impl Drop for Key {
    fn drop(&mut self) {
        self.0.zeroize();
    }
}

/// The two keys of one session, one per direction, so that a frame can never be reflected back
/// to its sender.
#[derive(Debug)]
pub struct SessionKeys {
    /// Seals controller -> agent frames ([`Direction::ToAgent`]).
    pub to_agent: Key,
    /// Seals agent -> controller frames ([`Direction::ToController`]).
    pub to_controller: Key,
}

/// Which way a frame travels. Bound into the AEAD nonce and associated data as well as selecting
/// the key, so a direction mix-up fails authentication rather than silently succeeding.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// Controller -> agent.
    ToAgent,
    /// Agent -> controller.
    ToController,
}

impl Direction {
    fn byte(self) -> u8 {
        match self {
            Direction::ToAgent => 0x01,
            Direction::ToController => 0x02,
        }
    }
}

/// A fresh random session nonce from the operating system's CSPRNG.
///
/// # Panics
///
/// Only if the OS random source fails, which leaves no safe way to run a session at all.
pub fn new_nonce() -> [u8; NONCE_LEN] {
    let mut nonce = [0u8; NONCE_LEN];
    getrandom::fill(&mut nonce).expect("OS random number generator failed");
    nonce
}

/// Derives the two session keys from the shared token and both sides' session nonces.
///
/// Both sides call this with the same arguments (the nonces in the same order: controller's first)
/// and get the same keys.
pub fn derive(
    token: &[u8],
    controller_nonce: &[u8; NONCE_LEN],
    agent_nonce: &[u8; NONCE_LEN],
) -> Result<SessionKeys, SealError> {
    derive_channel(token, controller_nonce, agent_nonce, "")
}

/// Like [`derive`], for one of several channels of a session (`"results"`): each channel runs
/// its own sequence numbers, so each needs its own keys, or two channels would seal different
/// frames under the same (key, nonce) pair.
pub fn derive_channel(
    token: &[u8],
    controller_nonce: &[u8; NONCE_LEN],
    agent_nonce: &[u8; NONCE_LEN],
    channel: &str,
) -> Result<SessionKeys, SealError> {
    if token.len() < MIN_TOKEN_LEN {
        return Err(SealError::WeakToken);
    }
    let mut salt = [0u8; 2 * NONCE_LEN];
    salt[..NONCE_LEN].copy_from_slice(controller_nonce);
    salt[NONCE_LEN..].copy_from_slice(agent_nonce);
    let hk = Hkdf::<Sha256>::new(Some(&salt), token);
    let mut to_agent = Key([0u8; 32]);
    let mut to_controller = Key([0u8; 32]);
    // `expand` fails only for outputs longer than 255 * 32 bytes; map rather than unwrap anyway.
    let info = |base: &[u8]| [base, channel.as_bytes()].concat();
    hk.expand(&info(INFO_TO_AGENT), &mut to_agent.0)
        .map_err(|_| SealError::Malformed("hkdf output length"))?;
    hk.expand(&info(INFO_TO_CONTROLLER), &mut to_controller.0)
        .map_err(|_| SealError::Malformed("hkdf output length"))?;
    Ok(SessionKeys {
        to_agent,
        to_controller,
    })
}

fn aead_nonce(direction: Direction, sequence: u64) -> Nonce {
    let mut n = [0u8; 12];
    n[0] = direction.byte();
    n[4..].copy_from_slice(&sequence.to_le_bytes());
    Nonce::from(n)
}

fn associated_data(direction: Direction, sequence: u64) -> [u8; 10] {
    let mut aad = [0u8; 10];
    aad[0] = VERSION;
    aad[1] = direction.byte();
    aad[2..].copy_from_slice(&sequence.to_le_bytes());
    aad
}

/// Seals frames for one direction of one session. Holds the key and the next sequence number.
pub struct Sealer {
    cipher: ChaCha20Poly1305,
    direction: Direction,
    next: u64,
}

impl fmt::Debug for Sealer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Sealer")
            .field("direction", &self.direction)
            .field("next", &self.next)
            .finish_non_exhaustive()
    }
}

impl Sealer {
    /// A sealer starting at sequence 0. `key` must be the key for `direction`
    /// ([`SessionKeys::to_agent`] for [`Direction::ToAgent`]).
    pub fn new(key: &Key, direction: Direction) -> Self {
        Self {
            cipher: ChaCha20Poly1305::new(&key.0.into()),
            direction,
            next: 0,
        }
    }

    /// The sequence number the next [`seal`](Self::seal) will use.
    pub fn next_sequence(&self) -> u64 {
        self.next
    }

    /// Encrypts and authenticates `plaintext` into one wire frame.
    pub fn seal(&mut self, plaintext: &[u8]) -> Result<Vec<u8>, SealError> {
        let seq = self.next;
        if seq > MAX_SEQUENCE {
            return Err(SealError::SequenceExhausted);
        }
        let aad = associated_data(self.direction, seq);
        let ciphertext = self
            .cipher
            .encrypt(
                &aead_nonce(self.direction, seq),
                Payload {
                    msg: plaintext,
                    aad: &aad,
                },
            )
            // Only for plaintexts beyond ChaCha20's 256 GiB limit.
            .map_err(|_| SealError::Malformed("plaintext too long"))?;
        let mut frame = Vec::with_capacity(HEADER_LEN + ciphertext.len());
        frame.push(VERSION);
        frame.extend_from_slice(&seq.to_le_bytes());
        frame.extend_from_slice(&ciphertext);
        self.next = seq + 1;
        Ok(frame)
    }
}

/// Opens frames for one direction of one session, enforcing strictly increasing sequence numbers.
pub struct Opener {
    cipher: ChaCha20Poly1305,
    direction: Direction,
    /// Highest sequence accepted so far; `None` before the first frame.
    last: Option<u64>,
    /// Largest frame accepted.
    limit: usize,
}

impl fmt::Debug for Opener {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Opener")
            .field("direction", &self.direction)
            .field("last", &self.last)
            .finish_non_exhaustive()
    }
}

impl Opener {
    /// An opener that has accepted nothing yet. `key` must be the key for `direction`.
    pub fn new(key: &Key, direction: Direction) -> Self {
        Self {
            cipher: ChaCha20Poly1305::new(&key.0.into()),
            direction,
            last: None,
            limit: usize::MAX,
        }
    }

    /// The same, refusing frames longer than `bytes` before decrypting them.
    pub fn with_limit(mut self, bytes: usize) -> Self {
        self.limit = bytes;
        self
    }

    /// The highest sequence number accepted so far.
    pub fn last_sequence(&self) -> Option<u64> {
        self.last
    }

    /// Verifies and decrypts one wire frame. On error the opener's state is unchanged, so a
    /// forged frame cannot advance the sequence and block genuine ones.
    pub fn open(&mut self, frame: &[u8]) -> Result<Vec<u8>, SealError> {
        if frame.len() > self.limit {
            return Err(SealError::TooLarge {
                bytes: frame.len(),
                limit: self.limit,
            });
        }
        let (&version, rest) = frame
            .split_first()
            .ok_or(SealError::Malformed("empty frame"))?;
        if version != VERSION {
            return Err(SealError::Version(version));
        }
        if frame.len() < HEADER_LEN + TAG_LEN {
            return Err(SealError::Malformed("shorter than header and tag"));
        }
        let (seq_bytes, ciphertext) = rest.split_at(8);
        let mut seq_arr = [0u8; 8];
        seq_arr.copy_from_slice(seq_bytes);
        let seq = u64::from_le_bytes(seq_arr);
        // Checked before decrypting: cheaper, and a frame at or below `last` is refused whether
        // or not it is authentic.
        if let Some(last) = self.last
            && seq <= last
        {
            return Err(SealError::Replay { got: seq, last });
        }
        let aad = associated_data(self.direction, seq);
        let plaintext = self
            .cipher
            .decrypt(
                &aead_nonce(self.direction, seq),
                Payload {
                    msg: ciphertext,
                    aad: &aad,
                },
            )
            .map_err(|_| SealError::BadTag)?;
        self.last = Some(seq);
        Ok(plaintext)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const TOKEN: &[u8] = b"0123456789abcdef-test-token";
    const CN: [u8; 16] = [1; 16];
    const AN: [u8; 16] = [2; 16];

    fn keys() -> SessionKeys {
        derive(TOKEN, &CN, &AN).unwrap()
    }

    fn pair(direction: Direction) -> (Sealer, Opener) {
        let (a, b) = (keys(), keys());
        let (ka, kb) = match direction {
            Direction::ToAgent => (&a.to_agent, &b.to_agent),
            Direction::ToController => (&a.to_controller, &b.to_controller),
        };
        (Sealer::new(ka, direction), Opener::new(kb, direction))
    }

    #[test]
    fn round_trip_both_directions() {
        for dir in [Direction::ToAgent, Direction::ToController] {
            let (mut s, mut o) = pair(dir);
            for msg in [&b""[..], b"hello", &[0xAB; 70_000][..]] {
                let frame = s.seal(msg).unwrap();
                assert_eq!(frame.len(), HEADER_LEN + msg.len() + TAG_LEN);
                assert_eq!(o.open(&frame).unwrap(), msg);
            }
            assert_eq!(o.last_sequence(), Some(2));
            assert_eq!(s.next_sequence(), 3);
        }
    }

    #[test]
    fn a_frame_over_the_limit_is_refused_before_decryption_and_changes_nothing() {
        let (mut s, o) = pair(Direction::ToController);
        let mut o = o.with_limit(HEADER_LEN + 100 + TAG_LEN);
        let big = s.seal(&[7; 101]).unwrap();
        assert_eq!(
            o.open(&big),
            Err(SealError::TooLarge {
                bytes: HEADER_LEN + 101 + TAG_LEN,
                limit: HEADER_LEN + 100 + TAG_LEN
            })
        );
        assert_eq!(o.last_sequence(), None);
        let fits = s.seal(&[7; 100]).unwrap();
        assert_eq!(o.open(&fits).unwrap(), vec![7; 100]);
    }

    #[test]
    fn ciphertext_hides_plaintext() {
        let (mut s, _) = pair(Direction::ToAgent);
        let msg = b"secret secret secret secret";
        let frame = s.seal(msg).unwrap();
        assert!(!frame.windows(6).any(|w| w == b"secret"));
    }

    #[test]
    fn directions_do_not_cross() {
        let k = keys();
        let mut to_agent = Sealer::new(&k.to_agent, Direction::ToAgent);
        let frame = to_agent.seal(b"stop").unwrap();
        // The agent's own opener for controller-bound frames (reflection attack).
        let mut o = Opener::new(&k.to_controller, Direction::ToController);
        assert_eq!(o.open(&frame), Err(SealError::BadTag));
        // Right key, wrong direction byte in nonce/AAD.
        let mut o = Opener::new(&k.to_agent, Direction::ToController);
        assert_eq!(o.open(&frame), Err(SealError::BadTag));
        // Wrong key, right direction.
        let mut o = Opener::new(&k.to_controller, Direction::ToAgent);
        assert_eq!(o.open(&frame), Err(SealError::BadTag));
        assert_eq!(o.last_sequence(), None);
    }

    #[test]
    fn keys_differ_per_direction_and_session() {
        let k = keys();
        assert_ne!(k.to_agent.0, k.to_controller.0);
        let other = derive(TOKEN, &CN, &[3; 16]).unwrap();
        assert_ne!(k.to_agent.0, other.to_agent.0);
        // Swapped nonces are a different salt.
        let swapped = derive(TOKEN, &AN, &CN).unwrap();
        let results = derive_channel(TOKEN, &CN, &AN, "results").unwrap();
        let mut s = Sealer::new(&results.to_agent, Direction::ToAgent);
        let frame = s.seal(b"x").unwrap();
        assert!(
            Opener::new(&keys().to_agent, Direction::ToAgent)
                .open(&frame)
                .is_err(),
            "another channel's keys do not open it"
        );
        assert_ne!(k.to_agent.0, swapped.to_agent.0);
    }

    #[test]
    fn old_session_frame_rejected() {
        let old = keys();
        let frame = Sealer::new(&old.to_agent, Direction::ToAgent)
            .seal(b"x")
            .unwrap();
        let new = derive(TOKEN, &CN, &[9; 16]).unwrap();
        let mut o = Opener::new(&new.to_agent, Direction::ToAgent);
        assert_eq!(o.open(&frame), Err(SealError::BadTag));
    }

    #[test]
    fn wrong_token_is_bad_tag() {
        let good = keys();
        let bad = derive(b"0123456789abcdef-WRONG-token", &CN, &AN).unwrap();
        let frame = Sealer::new(&good.to_controller, Direction::ToController)
            .seal(b"sla state")
            .unwrap();
        let mut o = Opener::new(&bad.to_controller, Direction::ToController);
        assert_eq!(o.open(&frame), Err(SealError::BadTag));
    }

    #[test]
    fn weak_token_rejected() {
        assert_eq!(derive(b"", &CN, &AN).unwrap_err(), SealError::WeakToken);
        assert_eq!(
            derive(&[7u8; 15], &CN, &AN).unwrap_err(),
            SealError::WeakToken
        );
        assert!(derive(&[7u8; 16], &CN, &AN).is_ok());
    }

    #[test]
    fn every_bit_flip_rejected() {
        let (mut s, _) = pair(Direction::ToAgent);
        let frame = s.seal(b"a frame worth forging").unwrap();
        for i in 0..frame.len() {
            for bit in 0..8 {
                let mut f = frame.clone();
                f[i] ^= 1 << bit;
                let (_, mut o) = pair(Direction::ToAgent);
                match o.open(&f) {
                    Err(SealError::BadTag | SealError::Malformed(_)) => {}
                    Err(SealError::Version(_)) if i == 0 => {}
                    other => panic!("byte {i} bit {bit}: {other:?}"),
                }
                assert_eq!(o.last_sequence(), None);
            }
        }
    }

    #[test]
    fn replay_rejected() {
        let (mut s, mut o) = pair(Direction::ToController);
        let f0 = s.seal(b"zero").unwrap();
        assert_eq!(o.open(&f0).unwrap(), b"zero");
        assert_eq!(o.open(&f0), Err(SealError::Replay { got: 0, last: 0 }));
        let f1 = s.seal(b"one").unwrap();
        assert_eq!(o.open(&f1).unwrap(), b"one");
        assert_eq!(o.open(&f1), Err(SealError::Replay { got: 1, last: 1 }));
    }

    #[test]
    fn reorder_rejected_and_gaps_allowed() {
        let (mut s, mut o) = pair(Direction::ToAgent);
        let f0 = s.seal(b"0").unwrap();
        let f1 = s.seal(b"1").unwrap();
        let f2 = s.seal(b"2").unwrap();
        assert_eq!(o.open(&f2).unwrap(), b"2"); // f0, f1 "lost": gap accepted
        assert_eq!(o.open(&f1), Err(SealError::Replay { got: 1, last: 2 }));
        assert_eq!(o.open(&f0), Err(SealError::Replay { got: 0, last: 2 }));
        let f3 = s.seal(b"3").unwrap();
        assert_eq!(o.open(&f3).unwrap(), b"3");
    }

    #[test]
    fn forged_frame_does_not_advance_sequence() {
        let (mut s, mut o) = pair(Direction::ToAgent);
        let good = s.seal(b"real").unwrap();
        let mut forged = good.clone();
        forged[1..9].copy_from_slice(&1000u64.to_le_bytes());
        assert_eq!(o.open(&forged), Err(SealError::BadTag));
        assert_eq!(o.open(&good).unwrap(), b"real");
    }

    #[test]
    fn truncations_rejected_without_panic() {
        let (mut s, _) = pair(Direction::ToAgent);
        let frame = s.seal(b"some payload to truncate").unwrap();
        for len in 0..frame.len() {
            let (_, mut o) = pair(Direction::ToAgent);
            let r = o.open(&frame[..len]);
            assert!(
                matches!(r, Err(SealError::Malformed(_) | SealError::BadTag)),
                "len {len}: {r:?}"
            );
        }
    }

    #[test]
    fn unknown_version_rejected() {
        let (mut s, mut o) = pair(Direction::ToAgent);
        let mut frame = s.seal(b"v").unwrap();
        for v in [0u8, 2, 0xFF] {
            frame[0] = v;
            assert_eq!(o.open(&frame), Err(SealError::Version(v)));
        }
        assert_eq!(o.open(&[2u8]), Err(SealError::Version(2)));
    }

    #[test]
    fn sequence_exhaustion_refused_not_wrapped() {
        let (mut s, mut o) = pair(Direction::ToAgent);
        s.next = MAX_SEQUENCE;
        let last = s.seal(b"last").unwrap();
        assert_eq!(s.seal(b"one more"), Err(SealError::SequenceExhausted));
        assert_eq!(s.next_sequence(), u64::MAX);
        assert_eq!(o.open(&last).unwrap(), b"last");
        assert_eq!(o.last_sequence(), Some(MAX_SEQUENCE));
    }

    #[test]
    fn debug_redacts_keys() {
        let k = keys();
        let shown = format!("{k:?} {:?}", Sealer::new(&k.to_agent, Direction::ToAgent));
        assert!(shown.contains("redacted"));
        let hex: String = k.to_agent.0.iter().map(|b| format!("{b:02x}")).collect();
        assert!(!shown.contains(&hex));
        assert!(!shown.contains(&format!("{:?}", k.to_agent.0)));
    }

    #[test]
    fn nonces_are_random() {
        assert_ne!(new_nonce(), new_nonce());
    }

    proptest! {
        #[test]
        fn open_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
            let (_, mut o) = pair(Direction::ToAgent);
            prop_assert!(o.open(&bytes).is_err());
        }

        #[test]
        fn open_never_panics_on_valid_version(mut bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
            if let Some(b) = bytes.first_mut() {
                *b = VERSION;
            }
            let (_, mut o) = pair(Direction::ToController);
            prop_assert!(o.open(&bytes).is_err());
        }

        #[test]
        fn round_trip_arbitrary(msg in proptest::collection::vec(any::<u8>(), 0..2048)) {
            let (mut s, mut o) = pair(Direction::ToController);
            let frame = s.seal(&msg).unwrap();
            prop_assert_eq!(o.open(&frame).unwrap(), msg);
        }
    }
}
