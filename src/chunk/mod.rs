//! Iteration results, and the chunks that carry them from runners to the engine.
//!
//! At a million iterations per second nothing per iteration may allocate, so a chunk keeps its
//! records in one vector and all of their atomic actions in another: a record points at its
//! actions by range, and an action names itself by an index into the workload's action-name
//! table. Errors and scenario output are rare and boxed.

pub mod cache;
pub mod codec;
pub mod merge;

use std::ops::Range;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

/// Index into a workload's table of atomic action names.
pub type ActionId = u16;

/// One timed atomic action. Actions of an iteration are stored in pre-order (a parent before
/// its children), with `depth` giving the nesting: Rally's tree, flattened.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct ActionSpan {
    pub name: ActionId,
    pub depth: u8,
    pub failed: bool,
    /// Wall-clock Unix seconds.
    pub started_at: f64,
    pub finished_at: f64,
}

impl ActionSpan {
    pub fn duration(&self) -> f64 {
        self.finished_at - self.started_at
    }
}

/// Rally's error triple: exception class, message, details (a traceback in Rally).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct IterationError {
    pub etype: String,
    pub message: String,
    pub details: String,
}

impl IterationError {
    pub fn new(etype: impl Into<String>, message: impl Into<String>) -> IterationError {
        IterationError {
            etype: etype.into(),
            message: message.into(),
            details: String::new(),
        }
    }

    /// Cuts `message` and `details` to at most [`MAX_ERROR_FIELD`] bytes each, with a note of
    /// how much was cut: a record must fit in one chunk, and a chunk in one transport frame
    /// (`transport::bounds::RESULTS_MESSAGE`). Rally would store any size; a scenario that
    /// raises a message of megabytes is rare (`Dummy.dummy_exception {size_of_message: N}`),
    /// and up to 4 MiB it is stored whole.
    pub fn bounded(mut self) -> IterationError {
        truncate_field(&mut self.message);
        truncate_field(&mut self.details);
        truncate_field(&mut self.etype);
        self
    }

    /// What Rally records when an iteration overruns the runner's `timeout`.
    pub fn timeout() -> IterationError {
        IterationError::new(
            "ThreadTimeoutException",
            "Iteration interrupted due to timeout.",
        )
    }
}

/// The most of one error field stored; see [`IterationError::bounded`].
pub const MAX_ERROR_FIELD: usize = 4 * 1024 * 1024;

fn truncate_field(field: &mut String) {
    if field.len() <= MAX_ERROR_FIELD {
        return;
    }
    let cut = field.len();
    let mut end = MAX_ERROR_FIELD;
    while !field.is_char_boundary(end) {
        end -= 1;
    }
    field.truncate(end);
    field.push_str(&format!(
        "... [truncated by rally-tui: {} of {cut} bytes kept]",
        end
    ));
}

/// Scenario output charts (`Dummy.dummy_output`, hooks): Rally's `{additive, complete}`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Output {
    pub additive: Vec<serde_json::Value>,
    pub complete: Vec<serde_json::Value>,
}

/// One iteration's result: Rally's record plus the global iteration number.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct IterationRecord {
    /// Global, 1-based.
    pub iteration: u64,
    /// Wall-clock Unix seconds at the start of the timed block.
    pub timestamp: f64,
    /// Seconds, excluding `idle_duration`.
    pub duration: f64,
    pub idle_duration: f64,
    /// For open-model runners (`rps`): how late the iteration started after its scheduled
    /// start, in seconds. Latency from the schedule is `duration + lateness`, which is what a
    /// stalled target really costs its users (no coordinated omission). Zero elsewhere.
    pub lateness: f64,
    pub error: Option<Box<IterationError>>,
    pub output: Option<Box<Output>>,
    /// Range into the chunk's `actions`.
    pub actions: Range<u32>,
    /// The connections this iteration opened (HTTP scenarios).
    #[serde(default)]
    pub dials: Dials,
}

/// The connections one iteration opened, by how each began. HTTP scenarios keep one
/// connection per slot, so most iterations open none; a count here is a slot's first
/// request, or a reconnect after the server closed (or a redirect to another host). Whether
/// a TLS reconnect resumed its session is what tells a cheap reconnect from a full handshake.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Dials {
    /// Plain TCP (`http://`).
    pub plain: u8,
    /// TLS with a full handshake (certificates sent and checked).
    pub tls_full: u8,
    /// TLS that resumed an earlier session (a ticket or session id).
    pub tls_resumed: u8,
}

/// How one new connection began.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dial {
    Plain,
    TlsFull,
    TlsResumed,
}

impl Dials {
    pub fn add(&mut self, dial: Dial) {
        let n = match dial {
            Dial::Plain => &mut self.plain,
            Dial::TlsFull => &mut self.tls_full,
            Dial::TlsResumed => &mut self.tls_resumed,
        };
        *n = n.saturating_add(1);
    }

    pub fn merge(&mut self, other: Dials) {
        self.plain = self.plain.saturating_add(other.plain);
        self.tls_full = self.tls_full.saturating_add(other.tls_full);
        self.tls_resumed = self.tls_resumed.saturating_add(other.tls_resumed);
    }

    pub fn is_empty(&self) -> bool {
        *self == Dials::default()
    }
}

impl IterationRecord {
    /// A passed iteration with no actions, output or connections: test data.
    #[cfg(test)]
    pub(crate) fn passed(iteration: u64, timestamp: f64, duration: f64) -> IterationRecord {
        IterationRecord {
            iteration,
            timestamp,
            duration,
            idle_duration: 0.0,
            lateness: 0.0,
            error: None,
            output: None,
            actions: 0..0,
            dials: Dials::default(),
        }
    }

    pub fn failed(&self) -> bool {
        self.error.is_some()
    }

    /// About how many bytes this record takes encoded, for cutting chunks by size: a fixed
    /// part, plus the error's text and the output, which can be large.
    pub fn weight(&self) -> usize {
        const FIXED: usize = 64;
        let error = self
            .error
            .as_ref()
            .map_or(0, |e| e.etype.len() + e.message.len() + e.details.len());
        let output = self
            .output
            .as_ref()
            .map_or(0, |o| serde_json::to_vec(o.as_ref()).map_or(0, |v| v.len()));
        FIXED + error + output
    }
}

/// A batch of iteration results from one runner instance, sorted by timestamp.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Chunk {
    /// Which runner instance produced it: "local", or an agent's name.
    pub source: Arc<str>,
    pub records: Vec<IterationRecord>,
    pub actions: Vec<ActionSpan>,
}

impl Chunk {
    pub fn new(source: Arc<str>) -> Chunk {
        Chunk {
            source,
            records: Vec::new(),
            actions: Vec::new(),
        }
    }

    pub fn len(&self) -> usize {
        self.records.len()
    }

    pub fn is_empty(&self) -> bool {
        self.records.is_empty()
    }

    /// The atomic actions of one record.
    pub fn actions_of(&self, record: &IterationRecord) -> &[ActionSpan] {
        &self.actions[record.actions.start as usize..record.actions.end as usize]
    }

    /// Sort records by timestamp (stable, so equal timestamps keep their order). Records
    /// from one slot are already in order; a chunk merged from several slots is not.
    pub fn sort_by_timestamp(&mut self) {
        if self
            .records
            .windows(2)
            .all(|w| w[0].timestamp <= w[1].timestamp)
        {
            return;
        }
        self.records
            .sort_by(|a, b| a.timestamp.total_cmp(&b.timestamp));
    }

    /// Move all records of `other` into this chunk.
    pub fn append(&mut self, other: &mut Chunk) {
        let offset = self.actions.len() as u32;
        self.actions.append(&mut other.actions);
        self.records.extend(other.records.drain(..).map(|mut r| {
            r.actions = r.actions.start + offset..r.actions.end + offset;
            r
        }));
    }
}

/// When a chunk is handed on: whichever of the limits is reached first.
#[derive(Debug, Clone, Copy)]
pub struct ChunkLimits {
    pub max_records: usize,
    pub max_age: std::time::Duration,
    /// By [`IterationRecord::weight`]: keeps a chunk of large errors well inside one
    /// transport frame (32 MiB) and the memory of a chunk in flight small.
    pub max_bytes: usize,
}

impl Default for ChunkLimits {
    fn default() -> ChunkLimits {
        ChunkLimits {
            max_records: 1000,
            max_age: std::time::Duration::from_millis(250),
            max_bytes: 4 * 1024 * 1024,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(iteration: u64, timestamp: f64, actions: Range<u32>) -> IterationRecord {
        IterationRecord {
            iteration,
            timestamp,
            duration: 0.1,
            idle_duration: 0.0,
            lateness: 0.0,
            error: None,
            output: None,
            actions,
            dials: Default::default(),
        }
    }

    fn span(name: ActionId) -> ActionSpan {
        ActionSpan {
            name,
            depth: 0,
            failed: false,
            started_at: 0.0,
            finished_at: 1.0,
        }
    }

    #[test]
    fn append_rebases_action_ranges() {
        let mut a = Chunk::new("x".into());
        a.actions.push(span(0));
        a.records.push(record(1, 1.0, 0..1));
        let mut b = Chunk::new("x".into());
        b.actions.push(span(5));
        b.actions.push(span(6));
        b.records.push(record(2, 0.5, 0..2));
        a.append(&mut b);
        assert!(b.is_empty());
        let names: Vec<_> = a.actions_of(&a.records[1]).iter().map(|s| s.name).collect();
        assert_eq!(names, vec![5, 6]);
        a.sort_by_timestamp();
        assert_eq!(a.records[0].iteration, 2);
        assert_eq!(a.actions_of(&a.records[0]).len(), 2);
    }
}
