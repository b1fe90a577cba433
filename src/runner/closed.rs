//! Closed-model runners: `constant`, `constant_for_duration`, `serial`.
//!
//! `concurrency` slots each loop: take the next global iteration number, run it, repeat.
//! Like Rally's `constant`, faster slots simply run more iterations; there is no static split.
//! On an agent the numbers come from the controller's leases instead of a counter.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crate::scenario::SlotState;

use super::feed::{Block, Feed};

use super::slot::{SlotBatch, seed};
use super::{RunJob, RunnerError};

/// When the slots stop taking new iterations.
#[derive(Debug, Clone, Copy)]
pub enum Plan {
    /// Exactly this many iterations in total.
    Times(u64),
    /// Each slot starts iterations until this many seconds have passed (at least one).
    Duration(f64),
}

pub async fn run(
    job: RunJob,
    plan: Plan,
    concurrency: u64,
    timeout: Option<f64>,
) -> Result<(), RunnerError> {
    let timeout = timeout
        .map(|t| Duration::from_secs_f64(t.max(0.0)))
        .filter(|limit| limit.is_zero() || job.scenario.kind().needs_timeout(*limit));
    // Slots read the stop as a flag that a task sets when the token is cancelled, one
    // scheduler turn later: `CancellationToken::is_cancelled` takes a mutex, and checking it
    // before every iteration was 3% of an HTTP load's user CPU.
    // The watcher lives in a JoinSet so that it ends with this function however it ends.
    let stopping = Arc::new(AtomicBool::new(job.stop.is_cancelled()));
    let mut _watcher = tokio::task::JoinSet::new();
    _watcher.spawn({
        let (stop, stopping) = (job.stop.clone(), stopping.clone());
        async move {
            stop.cancelled().await;
            stopping.store(true, Ordering::Release);
        }
    });
    // On an agent the controller may change this agent's share of the concurrency while the
    // workload runs (another agent was lost, or came back): slots are added, or the highest
    // ones retire after their iteration.
    let mut share = job.feed.as_ref().map(|f| f.watch_share());
    let target = job
        .feed
        .as_ref()
        .map_or(concurrency, |f| f.share_or(concurrency));
    let crew = Crew {
        job,
        plan,
        timeout,
        started: Instant::now(),
        next: Arc::new(AtomicU64::new(1)),
        stopping,
        target: Arc::new(AtomicU64::new(target)),
    };
    let mut slots = tokio::task::JoinSet::new();
    let mut running = BTreeSet::new();
    for index in 0..target {
        running.insert(index);
        crew.spawn(&mut slots, index, true);
    }
    let mut result = Ok(());
    // Once a slot has found the workload over (or failed), no slot is added any more.
    let mut over = false;
    loop {
        tokio::select! {
            joined = slots.join_next() => match joined {
                None => break,
                Some(Ok(Ok(SlotExit { index, retired }))) => {
                    running.remove(&index);
                    if !retired {
                        over = true;
                    } else if !over && index < crew.target.load(Ordering::Acquire) {
                        // The share grew again while it was retiring.
                        running.insert(index);
                        crew.spawn(&mut slots, index, false);
                    }
                }
                Some(Ok(Err(e))) => {
                    result = Err(e);
                    over = true;
                }
                Some(Err(_)) => over = true,
            },
            changed = async {
                match &mut share {
                    Some(rx) => rx.changed().await.map(|()| *rx.borrow_and_update()),
                    None => std::future::pending().await,
                }
            }, if !over => match changed {
                Ok(0) => {}
                Ok(n) => {
                    crew.target.store(n, Ordering::Release);
                    for index in 0..n {
                        if running.insert(index) {
                            crew.spawn(&mut slots, index, false);
                        }
                    }
                }
                Err(_) => share = None,
            },
        }
    }
    result
}

/// What every slot of one run shares.
struct Crew {
    job: RunJob,
    plan: Plan,
    timeout: Option<Duration>,
    started: Instant,
    /// The next number, when the runner counts them itself.
    next: Arc<AtomicU64>,
    stopping: Arc<AtomicBool>,
    /// Slots whose index is at or above this retire after their iteration.
    target: Arc<AtomicU64>,
}

/// Why a slot ended: `retired` when its index went above the share, otherwise the workload
/// is over for it (done, stopped, out of time).
struct SlotExit {
    index: u64,
    retired: bool,
}

impl Crew {
    /// Starts slot `index`. A slot added while the workload runs (`initial` false) starts
    /// nothing once a `constant_for_duration` is past its duration.
    fn spawn(
        &self,
        slots: &mut tokio::task::JoinSet<Result<SlotExit, RunnerError>>,
        index: u64,
        initial: bool,
    ) {
        let job = self.job.clone();
        let (plan, timeout, started) = (self.plan, self.timeout, self.started);
        let mut numbers = Numbers::new(
            &job,
            plan,
            self.next.clone(),
            self.stopping.clone(),
            (index, self.target.clone()),
        );
        if !initial
            && let Plan::Duration(seconds) = plan
            && started.elapsed().as_secs_f64() >= seconds
        {
            numbers.out_of_time = true;
        }
        slots.spawn(async move {
            let mut state = SlotState::new(seed(index));
            let mut batch = SlotBatch::new(&job);
            while let Some(number) = numbers.next(started, &job, &mut batch).await? {
                if let Some(listener) = &job.on_iteration {
                    listener(number);
                }
                let took = batch
                    .run_one(&job.scenario, &mut state, number, timeout, None)
                    .await;
                if batch.due(took) {
                    batch.flush(&job).await?;
                }
            }
            numbers.finish();
            batch.flush(&job).await?;
            Ok(SlotExit {
                index,
                retired: numbers.retired,
            })
        });
    }
}

/// How many numbers a slot takes from a feed at once: one lock per block, and small enough
/// that a stop or the end of the workload leaves little taken and unrun.
const BLOCK: u64 = 32;

/// A slot's source of iteration numbers: the shared counter, or the agent's leases.
struct Numbers {
    plan: Plan,
    next: Arc<AtomicU64>,
    stopping: Arc<AtomicBool>,
    feed: Option<Arc<Feed>>,
    block: Option<(Block, u64)>,
    ran_any: bool,
    /// This slot's index and the share it must stay below.
    index: u64,
    target: Arc<AtomicU64>,
    /// Set when `next` ended because the share went below this slot.
    retired: bool,
    /// Added after a `constant_for_duration` ran out: runs nothing.
    out_of_time: bool,
}

impl Numbers {
    fn new(
        job: &RunJob,
        plan: Plan,
        next: Arc<AtomicU64>,
        stopping: Arc<AtomicBool>,
        (index, target): (u64, Arc<AtomicU64>),
    ) -> Numbers {
        Numbers {
            plan,
            next,
            stopping,
            feed: job.feed.clone(),
            block: None,
            ran_any: false,
            index,
            target,
            retired: false,
            out_of_time: false,
        }
    }

    /// The next number to run, or `None` when this slot is done.
    async fn next(
        &mut self,
        started: Instant,
        job: &RunJob,
        batch: &mut SlotBatch,
    ) -> Result<Option<u64>, RunnerError> {
        if self.stopping.load(Ordering::Acquire) || self.out_of_time {
            return Ok(None);
        }
        if self.index >= self.target.load(Ordering::Acquire) {
            self.retired = true;
            return Ok(None);
        }
        // Judged from when the last iteration ended rather than by reading the clock again.
        if let Plan::Duration(seconds) = self.plan
            && self.ran_any
            && batch
                .last_done()
                .is_some_and(|end| end.saturating_duration_since(started).as_secs_f64() >= seconds)
        {
            return Ok(None);
        }
        let number = match self.feed.clone() {
            None => {
                let n = self.next.fetch_add(1, Ordering::Relaxed);
                match self.plan {
                    Plan::Times(times) if n > times => return Ok(None),
                    _ => n,
                }
            }
            Some(feed) => match self.take_from_feed(&feed, job, batch).await? {
                Some(n) => n,
                None => return Ok(None),
            },
        };
        self.ran_any = true;
        Ok(Some(number))
    }

    async fn take_from_feed(
        &mut self,
        feed: &Feed,
        job: &RunJob,
        batch: &mut SlotBatch,
    ) -> Result<Option<u64>, RunnerError> {
        loop {
            if let Some((block, used)) = &mut self.block {
                // A lease is only good while the controller is: a freeze longer than the
                // liveness timeout ends it here, before the next iteration starts.
                if *used < block.count && feed.expired() {
                    return Ok(None);
                }
                if *used < block.count {
                    *used += 1;
                    return Ok(Some(block.nth(*used - 1)));
                }
                feed.ran(block.lease, block.count);
                self.block = None;
            }
            let block = match feed.try_take(BLOCK) {
                Some(block) => block,
                None => {
                    // About to wait for the controller: the results held here must not
                    // wait with us (the controller may be waiting for them).
                    batch.flush(job).await?;
                    tokio::select! {
                        b = feed.take(BLOCK) => match b {
                            Some(b) => b,
                            None => return Ok(None),
                        },
                        _ = job.stop.cancelled() => return Ok(None),
                    }
                }
            };
            self.block = Some((block, 0));
        }
    }

    /// Account for the numbers run from the current block (a stop can leave some unrun). A
    /// retiring slot gives the rest of its block back: the workload goes on without it, and
    /// another slot must run them.
    fn finish(&mut self) {
        if let (Some(feed), Some((mut block, used))) = (&self.feed, self.block.take()) {
            feed.ran(block.lease, used);
            if self.retired {
                block.split_front(used);
                feed.put_back(block);
            }
        }
    }
}
