//! What the controller and its agents say to each other.
//!
//! Two channels per agent, each its own ZeroMQ connection so that bulk data never sits in front
//! of a stop: **control** carries registration, workloads, leases, stop, heartbeats and the
//! agents' SLA reports (all small); **results** carries chunks, and only when the controller
//! asks for them, a few at a time (credit-based flow control), so the controller decides how
//! much result data is in flight and memory stays bounded on both sides.
//!
//! Before a session has keys, the only frames are the clear handshake
//! ([`crate::transport::handshake`]: hello, challenge, refusal). After it every message is one sealed frame (see
//! [`crate::transport::seal`]) whose plaintext is a tag byte and a body: JSON for control
//! messages (small, readable in a debugger, easy to evolve), MessagePack for the agents'
//! reports (their SLA state and interval histogram are HDR V2 bytes and exact floats, which
//! JSON could carry only as number arrays and decimal strings, at thousands of agents the
//! controller's largest decoding cost), raw bytes for chunks (already in the checksummed
//! chunk format, see [`crate::chunk::codec`]).

use std::sync::Arc;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::chunk::cache::ChunkMeta;
use crate::distributed::plan::Lease;
use crate::sla::SlaChecker;
use crate::sla::histogram::DurationHistogram;

/// Bumped on any incompatible change; an agent of another version is refused at the handshake.
/// 2: histograms in reports are sized for what they hold (their highest trackable value is
/// no longer always one hour), which version 1 refused as foreign bounds; reports are a
/// binary frame ([`ToController::encode`]), which version 1 cannot read.
pub const PROTOCOL_VERSION: u16 = 2;

pub use crate::transport::handshake::{ATTACH, CHALLENGE, HELLO, Hello, REFUSE};

/// What an agent tells about itself once the session is sealed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Register {
    pub name: String,
    pub host: String,
    pub cores: u32,
    pub pid: u32,
    /// Random per agent process: a restarted agent is a new incarnation of the same name.
    pub boot: String,
    /// Its chunk cache's id (`ChunkCache::id`): the same across its restarts, different for
    /// another agent, so that a name taken twice is told from a restart.
    pub cache: String,
    /// The program version (`CARGO_PKG_VERSION`), for the record.
    pub version: String,
    /// Chunks in its cache from earlier sessions (a restarted agent can still deliver them).
    pub cached: Vec<ChunkMeta>,
}

/// A workload as an agent runs it: enough to rebuild the scenario and its share of the runner.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WorkloadOrder {
    /// The task's uuid: cached chunks are filed under it.
    pub run: String,
    /// Index of the workload in the task.
    pub workload: u32,
    pub scenario: String,
    pub args: Value,
    /// The inner runner, as in a task file: `{"constant": {...}}`, with this agent's share of
    /// `concurrency` / `max_concurrency`.
    pub runner: Value,
    pub sla: Map<String, Value>,
    /// Seconds from receipt until the workload's time zero (the `rps` schedule's start).
    pub start_in: f64,
    /// Numbers to hold queued before asking for more (the agent's low-water mark).
    pub low_water: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ToAgent {
    /// The session is accepted.
    Welcome {
        agent: u32,
        /// Token for the results channel's ATTACH.
        session: String,
        results_port: u16,
        heartbeat_ms: u64,
        liveness_ms: u64,
        sla_interval_ms: u64,
    },
    Workload(Box<WorkloadOrder>),
    Lease {
        workload: u32,
        lease: Lease,
    },
    /// This agent's share of the workload's concurrency (`max_concurrency` for `rps`) is
    /// now `share`, and it should hold `low_water` numbers queued: another agent was lost or
    /// came back (SPEC §6 lost shares).
    Share {
        workload: u32,
        share: u64,
        low_water: u64,
    },
    /// Stop starting iterations of this workload now.
    Stop {
        workload: u32,
    },
    /// No more leases will come: finish what is queued and report done.
    End {
        workload: u32,
    },
    /// These chunks are stored; delete them from the cache.
    Stored {
        ids: Vec<u64>,
    },
    Ping {
        /// Controller clock, Unix seconds.
        sent: f64,
    },
    Pong {
        echo: f64,
    },
    /// Leave: the run is over.
    Shutdown,
}

/// An agent's running account of a workload, sent every SLA interval and when it finishes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AgentReport {
    pub workload: u32,
    /// Iterations finished so far, and how many of them failed.
    pub iterations: u64,
    pub failures: u64,
    /// Durations of the iterations finished since the last report. In an `Arc` (serialized
    /// as the histogram itself) so that the controller keeps one copy per agent, shared by
    /// the live statuses made from the report.
    pub recent: Arc<DurationHistogram>,
    pub recent_seconds: f64,
    /// The SLA state over all of its finished iterations (mergeable; shared as `recent`).
    pub sla: Option<Arc<SlaChecker>>,
    /// Leases whose every number has run.
    pub completed: Vec<u64>,
    /// Chunks written to the cache since the last report.
    pub chunks: Vec<ChunkMeta>,
    /// Every later chunk holds only iterations that started at or after this (agent clock).
    pub watermark: f64,
    /// The runner has returned: nothing more will come for this workload.
    pub done: bool,
    /// Why the agent has paused its load, while it has (its cache cannot write and the
    /// chunks waiting in memory reached their bound).
    #[serde(default)]
    pub paused: Option<String>,
    /// Iterations running now (kept by the `rps` runner; 0 for the others).
    #[serde(default)]
    pub in_flight: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ToController {
    Register(Box<Register>),
    /// Queued numbers dropped below the low-water mark: about `want` more would do.
    NeedWork {
        workload: u32,
        want: u64,
    },
    Report(Box<AgentReport>),
    /// The workload could not be set up on this agent.
    Failed {
        workload: u32,
        error: String,
    },
    Ping {
        /// Agent clock.
        sent: f64,
    },
    Pong {
        echo: f64,
        /// Agent clock when the ping arrived.
        at: f64,
    },
    /// Leaving (Ctrl-C or shutdown).
    Bye,
}

/// Results channel, controller -> agent.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Pull {
    /// Send these chunks. The ids are the credit: at most this many chunks are in flight.
    Chunks { ids: Vec<u64> },
}

/// Results channel, agent -> controller.
#[derive(Debug, Clone, PartialEq)]
pub enum Delivery {
    /// A chunk in the codec's format, checked against its checksum before it was sent.
    Chunk { id: u64, bytes: Vec<u8> },
    /// The chunk cannot be served (missing, corrupt): the reason.
    Missing { id: u64, reason: String },
}

const TAG_JSON: u8 = b'J';
const TAG_CHUNK: u8 = b'C';
/// An [`AgentReport`] in MessagePack (structs as arrays, bytes as bytes, floats as floats).
const TAG_REPORT: u8 = b'R';

/// Why a decrypted frame could not be understood.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    #[error("empty message")]
    Empty,
    #[error("unknown message tag {0:#04x}")]
    Tag(u8),
    #[error("malformed message: {0}")]
    Json(#[from] serde_json::Error),
    #[error("chunk message shorter than its header")]
    Short,
    #[error("malformed report: {0}")]
    Report(#[from] rmp_serde::decode::Error),
}

/// JSON messages: a tag byte, then the body.
pub fn encode_json<T: Serialize>(message: &T) -> Vec<u8> {
    let mut out = vec![TAG_JSON];
    // Our message types hold only strings, numbers, maps and byte arrays: always serializable.
    serde_json::to_writer(&mut out, message).expect("protocol messages serialize");
    out
}

pub fn decode_json<T: for<'de> Deserialize<'de>>(plain: &[u8]) -> Result<T, DecodeError> {
    match plain.split_first() {
        None => Err(DecodeError::Empty),
        Some((&TAG_JSON, body)) => Ok(serde_json::from_slice(body)?),
        Some((&tag, _)) => Err(DecodeError::Tag(tag)),
    }
}

impl ToController {
    /// The plaintext of this message: reports as a binary frame, the rest as JSON.
    pub fn encode(&self) -> Vec<u8> {
        match self {
            ToController::Report(report) => {
                let mut out = vec![TAG_REPORT];
                // Numbers, strings, byte strings and sequences only: always serializable.
                rmp_serde::encode::write(&mut out, report.as_ref())
                    .expect("agent reports serialize");
                out
            }
            other => encode_json(other),
        }
    }

    pub fn decode(plain: &[u8]) -> Result<ToController, DecodeError> {
        match plain.split_first() {
            Some((&TAG_REPORT, body)) => {
                Ok(ToController::Report(Box::new(rmp_serde::from_slice(body)?)))
            }
            _ => decode_json(plain),
        }
    }
}

impl Delivery {
    pub fn encode(&self) -> Vec<u8> {
        match self {
            Delivery::Chunk { id, bytes } => {
                let mut out = Vec::with_capacity(9 + bytes.len());
                out.push(TAG_CHUNK);
                out.extend_from_slice(&id.to_le_bytes());
                out.extend_from_slice(bytes);
                out
            }
            Delivery::Missing { id, reason } => encode_json(&MissingBody {
                id: *id,
                reason: reason.clone(),
            }),
        }
    }

    pub fn decode(plain: &[u8]) -> Result<Delivery, DecodeError> {
        match plain.split_first() {
            None => Err(DecodeError::Empty),
            Some((&TAG_CHUNK, rest)) => {
                let (id, bytes) = rest.split_at_checked(8).ok_or(DecodeError::Short)?;
                let id = u64::from_le_bytes(id.try_into().map_err(|_| DecodeError::Short)?);
                Ok(Delivery::Chunk {
                    id,
                    bytes: bytes.to_vec(),
                })
            }
            Some(_) => {
                let m: MissingBody = decode_json(plain)?;
                Ok(Delivery::Missing {
                    id: m.id,
                    reason: m.reason,
                })
            }
        }
    }
}

#[derive(Serialize, Deserialize)]
struct MissingBody {
    id: u64,
    reason: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_round_trip() {
        let m = ToAgent::Stop { workload: 3 };
        assert_eq!(decode_json::<ToAgent>(&encode_json(&m)).unwrap(), m);
        let d = Delivery::Chunk {
            id: 9,
            bytes: vec![1, 2, 3],
        };
        assert_eq!(Delivery::decode(&d.encode()).unwrap(), d);
        let d = Delivery::Missing {
            id: 4,
            reason: "corrupt".into(),
        };
        assert_eq!(Delivery::decode(&d.encode()).unwrap(), d);
    }

    #[test]
    fn reports_are_binary_and_round_trip() {
        let config = serde_json::json!({
            "failure_rate": {"max": 10},
            "max_percentile": {"p99": 2},
            "outliers": {"max": 1},
            "max_avg_duration_per_atomic": {"x": 1},
            "performance_degradation": {"max_degradation": 50},
        });
        let mut sla = SlaChecker::from_config(config.as_object().unwrap()).unwrap();
        let mut recent = DurationHistogram::new();
        let acts = [("x", 0.25)];
        for i in 0..500u32 {
            let duration = 0.001 * f64::from(i % 97) + 0.1;
            recent.record_micros(DurationHistogram::to_micros(duration));
            sla.add(&crate::sla::IterationSample {
                duration,
                failed: i % 13 == 0,
                top_level_actions: &acts,
            });
        }
        let report = ToController::Report(Box::new(AgentReport {
            workload: 1,
            iterations: 500,
            failures: 39,
            recent: Arc::new(recent),
            recent_seconds: 0.1 + 0.2,
            sla: Some(Arc::new(sla)),
            completed: vec![1, 2],
            chunks: vec![],
            watermark: 12.5,
            done: false,
            paused: Some("cache full".into()),
            in_flight: 3,
        }));
        let plain = report.encode();
        assert_eq!(plain[0], TAG_REPORT);
        let back = ToController::decode(&plain).unwrap();
        assert_eq!(back, report);
        let ToController::Report(r) = &back else {
            unreachable!()
        };
        assert_eq!(r.recent_seconds, 0.1 + 0.2, "floats are exact");
        // The histogram bytes as bytes: far smaller than JSON's number arrays.
        let json = encode_json(&report);
        println!(
            "report: {} bytes binary, {} bytes JSON",
            plain.len(),
            json.len()
        );
        assert!(
            plain.len() * 2 < json.len(),
            "{} vs {}",
            plain.len(),
            json.len()
        );
        // Other messages stay JSON, and both decode through the same door.
        let ping = ToController::Ping { sent: 1.5 };
        assert_eq!(ping.encode()[0], TAG_JSON);
        assert_eq!(ToController::decode(&ping.encode()).unwrap(), ping);
        assert_eq!(ToController::decode(&json).unwrap(), report);
        for bad in [&b"R"[..], b"R\x93\x01", &plain[..plain.len() / 2]] {
            assert!(ToController::decode(bad).is_err());
        }
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        for bad in [
            &b""[..],
            b"X{}",
            b"J{",
            b"J{\"type\":\"nope\"}",
            b"C\x01\x02",
        ] {
            assert!(decode_json::<ToAgent>(bad).is_err());
            assert!(Delivery::decode(bad).is_err() || bad.first() == Some(&b'J'));
        }
    }
}
