//! The open-model `rps` runner: iterations start on schedule, each as its own tokio task,
//! up to `max_concurrency` at once.
//!
//! When every slot is busy the next iteration waits for one and starts late; its lateness is
//! recorded so that latency from the schedule, not just from the actual start, is known.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use tokio::sync::mpsc;

use crate::chunk::{Chunk, IterationRecord};
use crate::scenario::SlotState;

use super::feed::{Block, Feed};
use super::schedule::Rate;
use super::slot::{SlotBatch, seed};
use super::{RunJob, RunnerError};

pub async fn run(
    job: RunJob,
    times: u64,
    rate: Rate,
    max_concurrency: u64,
    timeout: Option<f64>,
) -> Result<(), RunnerError> {
    let timeout = timeout
        .map(|t| Duration::from_secs_f64(t.max(0.0)))
        .filter(|limit| limit.is_zero() || job.scenario.kind().needs_timeout(*limit));
    let (done_tx, done_rx) = mpsc::unbounded_channel::<Chunk>();
    let collector = tokio::spawn(collect(job.clone(), done_rx));

    // Idle slots come back through this channel; LIFO reuse keeps the hot connections warm.
    let (idle_tx, mut idle_rx) = mpsc::unbounded_channel::<(SlotState, SlotBatch)>();
    let mut idle: Vec<(SlotState, SlotBatch)> = Vec::new();
    let mut created = 0u64;
    let t0 = job.feed.as_ref().map_or_else(Instant::now, |f| f.start);
    let mut numbers = Schedule::new(job.feed.clone(), times);

    loop {
        let (k, lease) = tokio::select! {
            next = numbers.next() => match next {
                Some(next) => next,
                None => break,
            },
            _ = job.stop.cancelled() => break,
        };
        let due = t0 + rate.start_of(k);
        tokio::select! {
            _ = tokio::time::sleep_until(due.into()) => {}
            _ = job.stop.cancelled() => break,
        }
        while let Ok(slot) = idle_rx.try_recv() {
            idle.push(slot);
        }
        // On an agent the controller may change this agent's share of `max_concurrency`
        // while the workload runs (another agent was lost, or came back).
        let max_concurrency = job
            .feed
            .as_ref()
            .map_or(max_concurrency, |f| f.share_or(max_concurrency));
        // Above a lowered share, idle slots are let go (their results were sent already).
        while created > max_concurrency && !idle.is_empty() {
            idle.remove(0);
            created -= 1;
        }
        let slot = match idle.pop() {
            Some(slot) => slot,
            None if created < max_concurrency => {
                created += 1;
                (SlotState::new(seed(created)), SlotBatch::new(&job))
            }
            None => tokio::select! {
                slot = idle_rx.recv() => match slot {
                    Some(slot) => slot,
                    None => break,
                },
                _ = job.stop.cancelled() => break,
            },
        };
        if job.stop.is_cancelled() {
            break;
        }
        if let Some(listener) = &job.on_iteration {
            listener(k);
        }
        let (scenario, idle_tx, done_tx) = (job.scenario.clone(), idle_tx.clone(), done_tx.clone());
        let feed = job.feed.clone();
        let in_flight = job.in_flight.clone();
        in_flight.fetch_add(1, Ordering::Relaxed);
        tokio::spawn(async move {
            let (mut state, mut batch) = slot;
            batch
                .run_one(&scenario, &mut state, k, timeout, Some(due))
                .await;
            in_flight.fetch_sub(1, Ordering::Relaxed);
            if let Some(chunk) = batch.take() {
                let _ = done_tx.send(chunk);
            }
            if let (Some(feed), Some(lease)) = (feed, lease) {
                feed.ran(lease, 1);
            }
            let _ = idle_tx.send((state, batch));
        });
    }
    drop(done_tx);
    drop(idle_tx);
    // In-flight iterations hold senders; the collector ends when the last one is done.
    collector.await.unwrap_or(Err(RunnerError::ConsumerGone))
}

/// The numbers to start, in order: `1..=times`, or the agent's leases (each lease's numbers
/// ascend, and leases come in due order).
struct Schedule {
    feed: Option<Arc<Feed>>,
    next: u64,
    times: u64,
    block: Option<(Block, u64)>,
}

impl Schedule {
    fn new(feed: Option<Arc<Feed>>, times: u64) -> Schedule {
        Schedule {
            feed,
            next: 1,
            times,
            block: None,
        }
    }

    async fn next(&mut self) -> Option<(u64, Option<u64>)> {
        let Some(feed) = &self.feed else {
            let k = self.next;
            self.next += 1;
            return (k <= self.times).then_some((k, None));
        };
        loop {
            if let Some((block, used)) = &mut self.block
                && *used < block.count
            {
                *used += 1;
                return Some((block.nth(*used - 1), Some(block.lease)));
            }
            // One at a time, so that what is queued tells the agent how far ahead it holds work.
            self.block = Some((feed.take(1).await?, 0));
        }
    }
}

/// Gather the one-record chunks of single iterations into timestamp-sorted chunks.
async fn collect(job: RunJob, mut done: mpsc::UnboundedReceiver<Chunk>) -> Result<(), RunnerError> {
    let mut pending = Chunk::new(job.source.clone());
    let mut pending_bytes = 0usize;
    let mut tick = tokio::time::interval(job.limits.max_age);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let send = |chunk: Chunk| {
        let job = &job;
        async move {
            let mut chunk = chunk;
            chunk.sort_by_timestamp();
            job.chunks
                .send(chunk)
                .await
                .map_err(|_| RunnerError::ConsumerGone)
        }
    };
    loop {
        tokio::select! {
            next = done.recv() => match next {
                Some(mut chunk) => {
                    pending_bytes += chunk.records.iter().map(IterationRecord::weight).sum::<usize>();
                    pending.append(&mut chunk);
                    if pending.len() >= job.limits.max_records || pending_bytes >= job.limits.max_bytes {
                        pending_bytes = 0;
                        send(std::mem::replace(&mut pending, Chunk::new(job.source.clone()))).await?;
                    }
                }
                None => break,
            },
            _ = tick.tick() => {
                if !pending.is_empty() {
                    pending_bytes = 0;
                    send(std::mem::replace(&mut pending, Chunk::new(job.source.clone()))).await?;
                }
            }
        }
    }
    if !pending.is_empty() {
        send(pending).await?;
    }
    Ok(())
}
