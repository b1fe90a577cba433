//! A workload's share on this agent: the runner built from the controller's order, the
//! sink that caches each chunk before it is announced, and the account of results the
//! reports are made from. The session controls it through [`Controls`] (stop, feed).

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::core::Action;
use super::lock;
use crate::chunk::cache::{ChunkCache, ChunkKey, ChunkMeta};
use crate::chunk::{Chunk, ChunkLimits};
use crate::clock::{Clock, unix_now};
use crate::distributed::protocol::{AgentReport, WorkloadOrder};
use crate::runner::feed::Feed;
use crate::runner::{LocalRunner, RunJob, Runner, RunnerSpec};
use crate::scenario::{Scenario, ScenarioSpec};
use crate::sla::histogram::DurationHistogram;
use crate::sla::{IterationSample, SlaChecker};
use crate::task::node::Node;

/// One workload running on this agent.
pub(super) struct Running {
    pub controls: Controls,
    account: Arc<Mutex<Account>>,
    /// Fires when the runner has returned and every chunk is cached.
    pub finished: Arc<tokio::sync::Notify>,
    /// Fires when all work handed out has run and its chunks are cached.
    pub announce: Arc<tokio::sync::Notify>,
}

impl Running {
    /// This agent's pace over the workload so far, in iterations per second.
    pub fn pace(&self) -> f64 {
        lock(&self.account).iterations_per_second()
    }

    /// The report of what happened since the last one; `done` in it once the runner has
    /// returned and every chunk is cached.
    pub fn report(&self) -> AgentReport {
        let completed = self.controls.feed.take_completed();
        lock(&self.account).report(completed)
    }
}

/// What the session's decisions act on: the runner's stop and its feed of numbers.
pub(super) struct Controls {
    pub workload: u32,
    pub stop: CancellationToken,
    pub feed: Arc<Feed>,
    /// How far the runner's lifeline reaches when the controller is heard.
    pub liveness: Duration,
}

impl Controls {
    /// Carries out one of the session's decisions about this workload; false for the actions
    /// that are not about it.
    pub fn apply(&self, action: &Action) -> bool {
        match action {
            Action::Stop { why } => {
                if let Some(why) = why {
                    tracing::warn!("stopping the load of workload {}: {why}", self.workload);
                }
                self.stop.cancel();
            }
            Action::Heard => self.feed.heard(self.liveness),
            Action::Lease(lease) => self
                .feed
                .push(lease.id, lease.first, lease.step, lease.count),
            Action::Share { share, low_water } => {
                self.feed.set_share(*share);
                self.feed.set_low_water(*low_water);
            }
            Action::End => self.feed.end(),
            _ => return false,
        }
        true
    }
}

/// What the agent has learned of its workload's results since the last report.
struct Account {
    workload: u32,
    iterations: u64,
    failures: u64,
    recent: DurationHistogram,
    since: Instant,
    sla: Option<SlaChecker>,
    chunks: Vec<ChunkMeta>,
    max_duration: f64,
    done: bool,
    action_names: Arc<[String]>,
    started: Instant,
    /// Why the load is paused, while it is (see `sink`).
    paused: Option<String>,
    /// The runner's count of iterations running now.
    in_flight: Arc<std::sync::atomic::AtomicU64>,
}

impl Account {
    fn add(&mut self, chunk: &Chunk) {
        let mut tops: Vec<(&str, f64)> = Vec::with_capacity(8);
        for r in &chunk.records {
            self.iterations += 1;
            self.failures += u64::from(r.error.is_some());
            self.recent
                .record_micros(DurationHistogram::to_micros(r.duration));
            self.max_duration = self.max_duration.max(r.duration + r.idle_duration);
            if let Some(sla) = &mut self.sla {
                tops.clear();
                for a in chunk.actions_of(r).iter().filter(|a| a.depth == 0) {
                    tops.push((
                        self.action_names
                            .get(a.name as usize)
                            .map_or("", String::as_str),
                        a.duration(),
                    ));
                }
                sla.add(&IterationSample {
                    duration: r.duration,
                    failed: r.error.is_some(),
                    top_level_actions: &tops,
                });
            }
        }
    }

    fn report(&mut self, completed: Vec<u64>) -> AgentReport {
        let now = Instant::now();
        let recent_seconds = now.duration_since(self.since).as_secs_f64();
        self.since = now;
        AgentReport {
            in_flight: self.in_flight.load(std::sync::atomic::Ordering::Relaxed),
            workload: self.workload,
            iterations: self.iterations,
            failures: self.failures,
            recent: Arc::new(std::mem::take(&mut self.recent)),
            recent_seconds,
            sla: self.sla.clone().map(Arc::new),
            completed,
            chunks: std::mem::take(&mut self.chunks),
            // Chunks still to come hold iterations in flight now, which started no earlier
            // than the longest iteration seen (plus a chunk's age) before now.
            watermark: unix_now()
                - self.max_duration
                - 2.0 * ChunkLimits::default().max_age.as_secs_f64(),
            done: self.done,
            paused: self.paused.clone(),
        }
    }
}

/// Results held in memory (their disk refused them) past which the agent pauses its load.
const MEMORY_HELD: usize = 64 * 1024 * 1024;

/// Builds the scenario and the runner share and starts them; the order was just heard, so
/// the runner's lifeline starts now and reaches `liveness` ahead.
pub(super) fn start(
    order: WorkloadOrder,
    cache: &Arc<Mutex<ChunkCache>>,
    liveness: Duration,
) -> Result<Running, String> {
    let args = Node::parse(&order.args.to_string()).map_err(|e| e.to_string())?;
    let scenario = ScenarioSpec::from_config(&order.scenario, &args)
        .map_err(|e| format!("scenario {}: {}", order.scenario, e.message))?;
    let runner_node = Node::parse(&order.runner.to_string()).map_err(|e| e.to_string())?;
    let (name, cfg) = runner_node
        .as_map()
        .and_then(|m| m.first())
        .map(|(k, v)| (k.clone(), v.clone()))
        .ok_or("runner must be {name: {...}}")?;
    let spec = RunnerSpec::from_config(&name, &cfg, false)
        .map_err(|e| format!("runner {name}: {}", e.message))?;
    let sla = if order.sla.is_empty() {
        None
    } else {
        Some(SlaChecker::from_config(&order.sla).map_err(|e| e.to_string())?)
    };
    let key = ChunkKey::new(order.run.clone(), order.workload).map_err(|e| e.to_string())?;
    let scenario = Arc::new(Scenario::new(scenario.kind));
    // Negative for a share of a workload under way (this agent came back): the schedule's
    // time zero is in the past, and ends where the other agents' ends.
    let start_in = order.start_in.clamp(-86_400.0, 60.0);
    let now = Instant::now();
    let start = if start_in >= 0.0 {
        now + Duration::from_secs_f64(start_in)
    } else {
        now.checked_sub(Duration::from_secs_f64(-start_in))
            .unwrap_or(now)
    };
    let feed = Arc::new(Feed::new(start));
    feed.set_low_water(order.low_water.max(1));
    if let RunnerSpec::Constant { concurrency, .. }
    | RunnerSpec::ConstantForDuration { concurrency, .. }
    | RunnerSpec::Rps {
        max_concurrency: concurrency,
        ..
    } = &spec
    {
        feed.set_share(*concurrency);
    }
    // The order was just heard: the lifeline starts now.
    feed.heard(liveness);
    if let RunnerSpec::ConstantForDuration { duration, .. } = &spec {
        // Slots waiting for a lease when the time is up must not wait for ever.
        let (feed, duration) = (feed.clone(), *duration);
        tokio::spawn(async move {
            tokio::time::sleep_until((start + Duration::from_secs_f64(duration)).into()).await;
            feed.end();
        });
    }
    let stop = CancellationToken::new();
    let in_flight: Arc<std::sync::atomic::AtomicU64> = Default::default();
    let account = Arc::new(Mutex::new(Account {
        in_flight: in_flight.clone(),
        workload: order.workload,
        iterations: 0,
        failures: 0,
        recent: DurationHistogram::new(),
        since: Instant::now(),
        sla,
        chunks: Vec::new(),
        max_duration: 0.0,
        done: false,
        action_names: scenario.action_names.clone(),
        started: start,
        paused: None,
    }));
    let (tx, rx) = mpsc::channel::<Chunk>(64);
    let job = RunJob {
        scenario,
        source: Arc::from(hostname_or(&order)),
        chunks: tx,
        stop: stop.clone(),
        on_iteration: None,
        limits: ChunkLimits::default(),
        clock: Clock::new(),
        feed: Some(feed.clone()),
        live: None,
        committed: None,
        in_flight,
    };
    let announce = Arc::new(tokio::sync::Notify::new());
    let sink = tokio::spawn(sink(
        rx,
        key,
        cache.clone(),
        account.clone(),
        feed.clone(),
        announce.clone(),
    ));
    let finished = Arc::new(tokio::sync::Notify::new());
    let (acc, done) = (account.clone(), finished.clone());
    tokio::spawn(async move {
        tokio::time::sleep_until(start.into()).await;
        let runner = LocalRunner { spec };
        if let Err(e) = runner.run(job).await {
            tracing::error!("runner: {e}");
        }
        let _ = sink.await;
        lock(&acc).done = true;
        // notify_one keeps the permit if the session is not waiting at this moment.
        done.notify_one();
    });
    Ok(Running {
        controls: Controls {
            workload: order.workload,
            stop,
            feed,
            liveness,
        },
        account,
        finished,
        announce,
    })
}

fn hostname_or(_order: &WorkloadOrder) -> String {
    // Chunks are re-labelled with the agent's name by the controller; the runner's own
    // label only has to be something.
    "agent".to_string()
}

impl Account {
    /// This agent's pace over the workload so far.
    fn iterations_per_second(&self) -> f64 {
        let seconds = self.started.elapsed().as_secs_f64();
        if seconds < 0.01 {
            return 0.0;
        }
        self.iterations as f64 / seconds
    }
}

/// Writes each chunk to the cache before it is announced, and accounts for it. When every
/// number handed out so far has run, it asks for a report at once: the controller completes
/// leases from stored chunks, so waiting for the next interval would stall the end of the
/// workload (and a lost agent's last work) by up to a second.
async fn sink(
    mut rx: mpsc::Receiver<Chunk>,
    key: ChunkKey,
    cache: Arc<Mutex<ChunkCache>>,
    account: Arc<Mutex<Account>>,
    feed: Arc<Feed>,
    announce: Arc<tokio::sync::Notify>,
) {
    while let Some(chunk) = rx.recv().await {
        // Back-pressure: with too much waiting in memory for a disk that refuses it, take
        // no more results (the slots then wait on this channel: the load pauses) until the
        // disk writes again or the controller has stored enough.
        loop {
            let (held, why) = on_disk(&cache, |c| {
                let held = c.retry_writes();
                (held, c.write_error().unwrap_or("").to_string())
            })
            .await;
            let over = held > MEMORY_HELD;
            {
                let mut acc = lock(&account);
                if !over {
                    if acc.paused.take().is_some() {
                        tracing::warn!(
                            "resuming the load: the results in memory are under the bound"
                        );
                    }
                } else if acc.paused.is_none() {
                    let reason = format!(
                        "its chunk cache cannot write ({why}) and {} MiB of results wait in \
                         memory for the controller",
                        held >> 20
                    );
                    tracing::warn!("pausing the load: {reason}");
                    acc.paused = Some(reason);
                }
            }
            if !over {
                break;
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
        let (put, chunk) = {
            let key = key.clone();
            on_disk(&cache, move |c| (c.put(&key, &chunk), chunk)).await
        };
        let mut acc = lock(&account);
        acc.add(&chunk);
        match put {
            Ok(meta) => acc.chunks.push(meta),
            // Only a key the cache cannot name or ids exhausted: nothing a disk does.
            Err(e) => tracing::error!("cannot cache a chunk ({e}); its results are lost"),
        }
        drop(acc);
        if feed.unrun() == 0 {
            announce.notify_one();
        }
    }
}

/// Runs `work` on the chunk cache on tokio's blocking threads. Cache calls write, fsync, read
/// and delete files: on the runtime's own threads they would stall the load (with one CPU the
/// runtime has a single thread, and a slow disk would hold every slot).
pub(super) async fn on_disk<T: Send + 'static>(
    cache: &Arc<Mutex<ChunkCache>>,
    work: impl FnOnce(&mut ChunkCache) -> T + Send + 'static,
) -> T {
    let cache = cache.clone();
    let blocking = tokio::task::spawn_blocking(move || work(&mut lock(&cache)));
    match blocking.await {
        Ok(out) => out,
        // The work panicked: carry the panic here, where it would have happened inline.
        Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
        // Cancelled: only when the runtime shuts down, and then this task goes too.
        Err(_) => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::distributed::plan::Lease;

    fn controls() -> Controls {
        Controls {
            workload: 1,
            stop: CancellationToken::new(),
            feed: Arc::new(Feed::new(Instant::now())),
            liveness: Duration::from_secs(3),
        }
    }

    #[test]
    fn a_share_grows_and_shrinks_the_feeds_share() {
        let c = controls();
        assert_eq!(c.feed.share_or(0), 0);
        for share in [8, 2, 5] {
            assert!(c.apply(&Action::Share {
                share,
                low_water: 4
            }));
            assert_eq!(c.feed.share_or(0), share);
        }
    }

    #[test]
    fn a_stop_reaches_the_runner() {
        let c = controls();
        assert!(!c.stop.is_cancelled());
        assert!(c.apply(&Action::Stop { why: None }));
        assert!(c.stop.is_cancelled());
    }

    #[test]
    fn leases_and_the_end_reach_the_feed() {
        let c = controls();
        let lease = Lease {
            id: 1,
            first: 10,
            step: 2,
            count: 3,
        };
        assert!(c.apply(&Action::Lease(lease)));
        assert_eq!(c.feed.queued(), 3);
        assert!(c.apply(&Action::End));
        assert!(!c.apply(&Action::Serve(vec![1])), "not the runner's");
    }
}
