//! What any peer can make the controller or an agent hold (SPEC §6 "Bounded memory against any
//! peer"; the README's "Security" lists the same numbers). Each bound is enforced where the
//! bytes arrive: message sizes on the ZeroMQ length field before the bytes are buffered
//! (vendor/zeromq, the `MessageLimit` patch) and again on each sealed frame before it is
//! decrypted; the rest in [`super::admission`] and [`super::hub`].

use std::time::Duration;

const KIB: usize = 1024;
const MIB: usize = 1024 * KIB;

/// From TCP accept to an authenticated session (the ZeroMQ handshake, hello, challenge and a
/// registration that opens under the token's keys).
pub const HANDSHAKE_DEADLINE: Duration = Duration::from_secs(5);
/// Connections per port in the ZeroMQ greeting at once; a new one evicts the oldest.
pub const ZMTP_HANDSHAKES: usize = 64;
/// Connections past the ZeroMQ greeting that have not authenticated, both ports together...
pub const WAITING: usize = 128;
/// ...and from one address.
pub const WAITING_PER_ADDRESS: usize = 32;

/// Largest message before authentication on the control port: a hello, or a sealed
/// registration (which lists the chunks a restarted agent still holds; see
/// [`REGISTRATION_CACHED_BYTES`]).
pub const CONTROL_BEFORE_AUTH: usize = 512 * KIB;
/// Largest message before authentication on the results port: the attach.
pub const RESULTS_BEFORE_AUTH: usize = 4 * KIB;
/// What a registration may spend on the list of cached chunks, leaving room for the rest.
pub const REGISTRATION_CACHED_BYTES: usize = 384 * KIB;
/// Largest control message from an authenticated agent (reports with SLA state).
pub const CONTROL_MESSAGE: usize = 8 * MIB;
/// Largest results message from an authenticated agent: one chunk. Agents cut chunks by size
/// well below it and truncate single fields that would not fit (see `chunk::ChunkLimits`).
pub const RESULTS_MESSAGE: usize = 32 * MIB;
/// Largest message an agent accepts from its controller.
pub const TO_AGENT_MESSAGE: usize = 8 * MIB;
/// Decoded messages read from agents but not yet handled by the controller, in bytes: past it
/// the hub stops reading (TCP pushes back on the agents) until the controller catches up.
pub const INBOUND_BUDGET: usize = 64 * MIB;

/// Worst case of what unauthenticated peers can make the controller hold: every waiting
/// connection mid-way through its largest message, plus the greetings.
pub const fn unauthenticated_worst_case() -> usize {
    WAITING * CONTROL_BEFORE_AUTH + 2 * ZMTP_HANDSHAKES * 64 * KIB
}

// Checked when compiling: the documented worst case before authentication stays under
// 80 MiB, and a registration's list of cached chunks leaves room for the rest of it.
const _: () = assert!(unauthenticated_worst_case() <= 80 * MIB);
const _: () = assert!(REGISTRATION_CACHED_BYTES < CONTROL_BEFORE_AUTH);
