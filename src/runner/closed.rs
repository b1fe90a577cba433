//! Closed-model runners: `constant`, `constant_for_duration`, `serial`.
//!
//! `concurrency` slots each loop: take the next global iteration number, run it, repeat.
//! Like Rally's `constant`, faster slots simply run more iterations; there is no static split.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crate::scenario::SlotState;

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
    let next = Arc::new(AtomicU64::new(1));
    let started = Instant::now();
    let timeout = timeout
        .filter(|_| job.scenario.kind().may_wait())
        .map(Duration::from_secs_f64);
    let mut slots = tokio::task::JoinSet::new();
    for index in 0..concurrency {
        let job = job.clone();
        let next = next.clone();
        slots.spawn(async move {
            let mut state = SlotState::new(seed(index));
            let mut batch = SlotBatch::new(&job);
            let mut ran_any = false;
            loop {
                if job.stop.is_cancelled() {
                    break;
                }
                let number = match plan {
                    Plan::Times(times) => {
                        let n = next.fetch_add(1, Ordering::Relaxed);
                        if n > times {
                            break;
                        }
                        n
                    }
                    Plan::Duration(seconds) => {
                        if ran_any && started.elapsed().as_secs_f64() >= seconds {
                            break;
                        }
                        next.fetch_add(1, Ordering::Relaxed)
                    }
                };
                ran_any = true;
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
            batch.flush(&job).await
        });
    }
    let mut result = Ok(());
    while let Some(joined) = slots.join_next().await {
        if let Ok(Err(e)) = joined {
            result = Err(e);
        }
    }
    result
}
