//! Running one iteration in a slot, and batching a slot's results into chunks.

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::chunk::{Chunk, ChunkLimits, IterationError, IterationRecord};
use crate::clock::Clock;
use crate::scenario::{ActionRecorder, Iteration, Scenario, SlotState};

use super::{RunJob, RunnerError};

/// A slot's results since its last chunk was sent.
pub struct SlotBatch {
    records: Vec<IterationRecord>,
    recorder: ActionRecorder,
    first_done: Option<Instant>,
    /// When the last iteration ended: `due` judges from it instead of reading the clock a
    /// third time per iteration (clock reads were ~4% of an HTTP load's CPU).
    last_done: Option<Instant>,
    source: Arc<str>,
    limits: ChunkLimits,
    /// Sum of the records' weights.
    bytes: usize,
}

impl SlotBatch {
    pub fn new(job: &RunJob) -> SlotBatch {
        SlotBatch {
            records: Vec::new(),
            recorder: ActionRecorder::new(job.clock),
            first_done: None,
            last_done: None,
            source: job.source.clone(),
            limits: job.limits,
            bytes: 0,
        }
    }

    /// Run iteration `number` and keep its record. `scheduled` is when an open-model runner
    /// meant it to start.
    pub async fn run_one(
        &mut self,
        scenario: &Scenario,
        state: &mut SlotState,
        number: u64,
        timeout: Option<Duration>,
        scheduled: Option<Instant>,
    ) -> Duration {
        let first_action = self.recorder.len();
        let start = Instant::now();
        let mut it = Iteration {
            number,
            actions: &mut self.recorder,
            output: None,
            idle: 0.0,
            started: start,
        };
        let result = match timeout {
            // A negative `timeout` (Rally allows it): expired before the iteration starts.
            Some(limit) if limit.is_zero() => Err(IterationError::timeout()),
            Some(limit) => match tokio::time::timeout(limit, scenario.run(state, &mut it)).await {
                Ok(r) => r,
                Err(_) => Err(IterationError::timeout()),
            },
            None => scenario.run(state, &mut it).await,
        };
        let (output, idle) = (it.output.take(), it.idle);
        let end = Instant::now();
        if result.is_err() {
            self.recorder.abandon_open(end);
        }
        let elapsed = end.duration_since(start);
        let clock: &Clock = self.recorder.clock();
        self.records.push(IterationRecord {
            iteration: number,
            timestamp: clock.wall(start),
            duration: (elapsed.as_secs_f64() - idle).max(0.0),
            idle_duration: idle,
            lateness: scheduled.map_or(0.0, |s| start.saturating_duration_since(s).as_secs_f64()),
            error: result.err().map(|e| Box::new(e.bounded())),
            output,
            actions: first_action..self.recorder.len(),
            dials: state.take_dials(),
        });
        self.bytes += self.records.last().map_or(0, IterationRecord::weight);
        self.first_done.get_or_insert(end);
        self.last_done = Some(end);
        elapsed
    }

    /// Whether to send now: the chunk is full, or its oldest record would otherwise wait
    /// longer than the age limit (judged by how long the last iteration took, so that slow
    /// iterations are sent one by one and fast ones in batches).
    pub fn due(&self, last: Duration) -> bool {
        match (self.first_done, self.last_done) {
            (Some(first), Some(now)) => {
                self.records.len() >= self.limits.max_records
                    || self.bytes >= self.limits.max_bytes
                    || now.saturating_duration_since(first) + last >= self.limits.max_age
            }
            _ => false,
        }
    }

    /// When this slot's last iteration ended.
    pub fn last_done(&self) -> Option<Instant> {
        self.last_done
    }

    pub fn take(&mut self) -> Option<Chunk> {
        if self.records.is_empty() {
            return None;
        }
        self.first_done = None;
        self.bytes = 0;
        Some(Chunk {
            source: self.source.clone(),
            records: std::mem::take(&mut self.records),
            actions: std::mem::take(&mut self.recorder.spans),
        })
    }

    pub async fn flush(&mut self, job: &RunJob) -> Result<(), RunnerError> {
        match self.take() {
            Some(chunk) => job
                .chunks
                .send(chunk)
                .await
                .map_err(|_| RunnerError::ConsumerGone),
            None => Ok(()),
        }
    }
}

/// A per-slot seed, so slots draw different random numbers.
pub fn seed(slot: u64) -> u64 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    nanos ^ slot.wrapping_mul(0x9E37_79B9_7F4A_7C15)
}
