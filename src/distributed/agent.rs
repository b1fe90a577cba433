//! The RunnerAgent (`rally-tui agent`): runs its share of each workload with the ordinary
//! local runner, keeps every result chunk in its on-disk cache until the controller has
//! stored it, and reports a mergeable SLA state every interval.
//!
//! The agent protects the service under test on its own: if it hears nothing from the
//! controller for the liveness timeout, or the connection breaks, it stops starting
//! iterations (keeping its chunks) and goes back to dialling, so a dead controller never
//! leaves load running.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::protocol::{
    AgentReport, Delivery, Pull, Register, ToAgent, ToController, WorkloadOrder,
};
use super::wire::link::{Inbound, Link, LinkError, LinkSender};
use crate::chunk::cache::{ChunkCache, ChunkKey, ChunkMeta};
use crate::chunk::{Chunk, ChunkLimits};
use crate::clock::{Clock, unix_now};
use crate::runner::feed::Feed;
use crate::runner::{LocalRunner, RunJob, Runner, RunnerSpec};
use crate::scenario::{Scenario, ScenarioSpec};
use crate::sla::histogram::DurationHistogram;
use crate::sla::{IterationSample, SlaChecker};
use crate::task::node::Node;
use crate::transport::bounds;
use crate::transport::token::{Token, hex};

#[derive(Debug, Clone)]
pub struct AgentOptions {
    /// `tcp://HOST:PORT` of the controller's control socket.
    pub connect: String,
    pub name: String,
    pub cache_dir: PathBuf,
    /// Give up when no controller answers for this long (None: keep trying).
    pub give_up_after: Option<Duration>,
}

#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    #[error(transparent)]
    Cache(#[from] crate::chunk::cache::CacheError),
    #[error(transparent)]
    Link(#[from] LinkError),
    #[error("no controller answered at {0} in time")]
    GaveUp(String),
}

/// How an agent's run ended.
#[derive(Debug, PartialEq, Eq)]
pub enum AgentExit {
    /// The controller said the run is over.
    Shutdown,
    /// Ctrl-C or SIGTERM.
    Interrupted,
}

/// Runs the agent until the controller shuts it down or `interrupt` fires.
pub async fn run_agent(
    options: AgentOptions,
    token: Token,
    interrupt: CancellationToken,
) -> Result<AgentExit, AgentError> {
    let cache = ChunkCache::open(&options.cache_dir)?;
    for bad in cache.corrupt() {
        tracing::warn!("chunk cache: {bad:?}");
    }
    let cache = Arc::new(Mutex::new(cache));
    let boot = hex(&crate::transport::seal::new_nonce()[..6]);
    let mut attempt = 0u32;
    let mut backoff = Duration::from_millis(100);
    let mut last_contact = Instant::now();
    loop {
        attempt += 1;
        let register = registration(&options, &boot, &cache);
        let identity = format!("{}/{boot}/{attempt}", options.name);
        let link = tokio::select! {
            link = Link::connect(&options.connect, &identity, &token, &register) => link,
            _ = interrupt.cancelled() => return Ok(AgentExit::Interrupted),
        };
        match link {
            Ok(link) => {
                backoff = Duration::from_millis(100);
                tracing::info!("registered with the controller at {}", options.connect);
                let exit = Session::new(link, cache.clone(), &interrupt).serve().await;
                last_contact = Instant::now();
                if let Some(exit) = exit {
                    return Ok(exit);
                }
                tracing::warn!("lost the controller; reconnecting");
            }
            Err(e) if e.is_permanent() => return Err(e.into()),
            Err(e) => {
                // Not there yet is routine; an answer that breaks the protocol or its bounds
                // is not (a hostile or confused peer at the controller's address).
                if matches!(e, LinkError::Handshake(_)) {
                    tracing::warn!("{e}");
                } else if attempt == 1 || attempt.is_multiple_of(10) {
                    // Said at once, then every tenth attempt: the agent may well have been
                    // started before its controller.
                    tracing::warn!("{e}; trying again");
                } else {
                    tracing::info!("{e}");
                }
                if let Some(limit) = options.give_up_after
                    && last_contact.elapsed() > limit
                {
                    return Err(AgentError::GaveUp(options.connect.clone()));
                }
            }
        }
        // Jittered exponential backoff, 0.1 s doubling to 5 s.
        let jitter = Duration::from_millis(fastrand::u64(0..=backoff.as_millis() as u64 / 2));
        tokio::select! {
            _ = tokio::time::sleep(backoff + jitter) => {}
            _ = interrupt.cancelled() => return Ok(AgentExit::Interrupted),
        }
        backoff = (backoff * 2).min(Duration::from_secs(5));
    }
}

fn registration(options: &AgentOptions, boot: &str, cache: &Mutex<ChunkCache>) -> Register {
    // The registration travels before the controller knows this agent, where messages are
    // small (transport::bounds): list what fits, oldest first; the rest stays cached.
    let mut cached = Vec::new();
    let mut bytes = 0;
    let mut left_out = 0;
    let cache = lock(cache);
    for meta in cache.held() {
        let size = serde_json::to_vec(meta).map_or(usize::MAX, |v| v.len() + 1);
        if bytes + size <= bounds::REGISTRATION_CACHED_BYTES {
            bytes += size;
            cached.push(meta.clone());
        } else {
            left_out += 1;
        }
    }
    if left_out > 0 {
        tracing::warn!(
            "{left_out} cached chunks do not fit in the registration; they stay in the cache \
             (the controller is told of {} of them)",
            cached.len()
        );
    }
    Register {
        name: options.name.clone(),
        host: hostname(),
        cores: std::thread::available_parallelism().map_or(1, |n| n.get() as u32),
        pid: std::process::id(),
        boot: boot.to_string(),
        cache: cache.id().to_string(),
        version: env!("CARGO_PKG_VERSION").to_string(),
        cached,
    }
}

pub fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_else(|_| "localhost".into())
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// One workload running on this agent.
struct Running {
    workload: u32,
    stop: CancellationToken,
    feed: Arc<Feed>,
    account: Arc<Mutex<Account>>,
    asked: Option<Instant>,
    /// Size of the last lease asked for: leases grow from the low-water mark by doubling
    /// until they cover about half a second of this agent's pace.
    last_want: u64,
    low_water: u64,
    /// Fires when the runner has returned and every chunk is cached.
    finished: Arc<tokio::sync::Notify>,
    /// Fires when all work handed out has run and its chunks are cached.
    announce: Arc<tokio::sync::Notify>,
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

/// Why an agent stops its load when it finds, on waking, that it was not heard from for
/// longer than the liveness timeout.
const RESUMED: &str =
    "resumed after hearing nothing from the controller for longer than the liveness timeout";

/// One link's life: serve the controller until the link breaks or the run ends.
struct Session<'a> {
    link: Link,
    cache: Arc<Mutex<ChunkCache>>,
    interrupt: &'a CancellationToken,
    running: Option<Running>,
    heartbeat: Duration,
    liveness: Duration,
    sla_interval: Duration,
    pulls: mpsc::Sender<Vec<u64>>,
    puller: tokio::task::JoinHandle<()>,
}

impl<'a> Session<'a> {
    fn new(
        link: Link,
        cache: Arc<Mutex<ChunkCache>>,
        interrupt: &'a CancellationToken,
    ) -> Session<'a> {
        let (heartbeat, liveness, sla_interval) = match &link.welcome {
            ToAgent::Welcome {
                heartbeat_ms,
                liveness_ms,
                sla_interval_ms,
                ..
            } => (*heartbeat_ms, *liveness_ms, *sla_interval_ms),
            _ => (1000, 3000, 1000),
        };
        let (pulls, pull_rx) = mpsc::channel(64);
        let puller = tokio::spawn(serve_pulls(link.sender.clone(), cache.clone(), pull_rx));
        Session {
            link,
            cache,
            interrupt,
            running: None,
            heartbeat: Duration::from_millis(heartbeat.max(50)),
            liveness: Duration::from_millis(liveness.max(100)),
            sla_interval: Duration::from_millis(sla_interval.max(50)),
            pulls,
            puller,
        }
    }

    /// The controller was heard now: the running workload's lifeline moves forward.
    fn heard(&self) -> Instant {
        if let Some(r) = &self.running {
            r.feed.heard(self.liveness);
        }
        Instant::now()
    }

    fn stop_load(&mut self, why: &str) {
        // Said even when the runner has already ended by itself (its lifeline ran out).
        if let Some(r) = &self.running
            && (!r.stop.is_cancelled() || why == RESUMED)
        {
            tracing::warn!("stopping the load of workload {}: {why}", r.workload);
            r.stop.cancel();
        }
    }

    /// `Some(exit)` when the agent should exit, `None` to reconnect.
    async fn serve(mut self) -> Option<AgentExit> {
        let sender = self.link.sender.clone();
        let mut last_heard = Instant::now();
        let mut last_report = Instant::now();
        let mut ping = tokio::time::interval(self.heartbeat);
        let mut report = tokio::time::interval(self.sla_interval);
        report.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let exit = loop {
            let need_work = async {
                match &self.running {
                    Some(r) if r.asked.is_none() => r.feed.wait_low().await,
                    _ => std::future::pending().await,
                }
            };
            let finished = async {
                match &self.running {
                    Some(r) => tokio::select! {
                        () = r.finished.notified() => {}
                        () = r.announce.notified() => {
                            // At most one prompt report per 10 ms: the SLA state travels too.
                            tokio::time::sleep_until((last_report + Duration::from_millis(10)).into()).await;
                        }
                    },
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                () = finished => {
                    if last_heard.elapsed() > self.liveness {
                        // The runner ended because its lifeline ran out (see `Feed::heard`):
                        // not a finished share, a freeze.
                        self.stop_load(RESUMED);
                        break None;
                    }
                    last_report = Instant::now();
                    if self.send_report(&sender).await.is_err() {
                        break None;
                    }
                }
                inbound = self.link.inbox.recv() => {
                    // Judged before the frame counts: frames queued while this process was
                    // frozen arrive all at once when it resumes, and must not hide that the
                    // controller went unheard for longer than the liveness timeout (by now it
                    // has declared this agent lost and given its leases away).
                    if matches!(inbound, Some(Inbound::Control(_) | Inbound::Pull(_)))
                        && last_heard.elapsed() > self.liveness
                    {
                        self.stop_load(RESUMED);
                        break None;
                    }
                    match inbound {
                        None | Some(Inbound::Closed(_)) => break None,
                        Some(Inbound::Dropped(why)) => tracing::warn!("dropped a frame from the controller: {why}"),
                        Some(Inbound::Pull(Pull::Chunks { ids })) => {
                            last_heard = self.heard();
                            let _ = self.pulls.try_send(ids);
                        }
                        Some(Inbound::Control(message)) => {
                            last_heard = self.heard();
                            if let Some(exit) = self.on_message(message, &sender).await {
                                break Some(exit);
                            }
                        }
                    }
                },
                // Silence is judged at its deadline, not at the next heartbeat.
                () = tokio::time::sleep_until((last_heard + self.liveness).into()) => {
                    self.stop_load("nothing heard from the controller within the liveness timeout");
                    break None;
                }
                _ = ping.tick() => {
                    if last_heard.elapsed() > self.liveness {
                        self.stop_load("nothing heard from the controller within the liveness timeout");
                        break None;
                    }
                    if sender.send(&ToController::Ping { sent: unix_now() }).await.is_err() {
                        break None;
                    }
                }
                _ = report.tick() => {
                    if last_heard.elapsed() > self.liveness {
                        self.stop_load(RESUMED);
                        break None;
                    }
                    last_report = Instant::now();
                    if self.send_report(&sender).await.is_err() {
                        break None;
                    }
                }
                () = need_work => {
                    if let Some(r) = &mut self.running {
                        r.asked = Some(Instant::now());
                        let pace = lock(&r.account).iterations_per_second();
                        let want = (r.last_want * 2)
                            .max(r.low_water)
                            .min(((pace * 0.5) as u64).max(r.low_water));
                        r.last_want = want;
                        let _ = sender.send(&ToController::NeedWork { workload: r.workload, want }).await;
                    }
                }
                _ = self.interrupt.cancelled() => {
                    self.stop_load("interrupted");
                    let _ = self.send_report(&sender).await;
                    let _ = sender.send(&ToController::Bye).await;
                    break Some(AgentExit::Interrupted);
                }
            }
            // Ask again if a request went unanswered for a while (the controller had nothing
            // then; lost agents' work may have turned up since).
            if let Some(r) = &mut self.running
                && r.asked
                    .is_some_and(|t| t.elapsed() > Duration::from_millis(200))
            {
                r.asked = None;
            }
        };
        if exit.is_none() {
            self.stop_load("the connection to the controller broke");
        }
        self.puller.abort();
        exit
    }

    async fn send_report(&mut self, sender: &LinkSender) -> Result<(), LinkError> {
        let Some(r) = &self.running else {
            return Ok(());
        };
        let completed = r.feed.take_completed();
        let report = lock(&r.account).report(completed);
        let done = report.done;
        sender.send(&ToController::Report(Box::new(report))).await?;
        if done {
            self.running = None;
        }
        Ok(())
    }

    async fn on_message(
        &mut self,
        message: ToAgent,
        sender: &Arc<LinkSender>,
    ) -> Option<AgentExit> {
        match message {
            ToAgent::Workload(order) => {
                let workload = order.workload;
                if let Err(error) = self.start(*order) {
                    let _ = sender.send(&ToController::Failed { workload, error }).await;
                }
            }
            ToAgent::Lease { workload, lease } => {
                if let Some(r) = &mut self.running
                    && r.workload == workload
                {
                    r.feed.push(lease.id, lease.first, lease.step, lease.count);
                    r.asked = None;
                }
            }
            ToAgent::Share {
                workload,
                share,
                low_water,
            } => {
                if let Some(r) = &mut self.running
                    && r.workload == workload
                {
                    r.feed.set_share(share.max(1));
                    r.low_water = low_water.max(1);
                    r.feed.set_low_water(r.low_water);
                }
            }
            ToAgent::Stop { workload } => {
                if let Some(r) = &self.running
                    && r.workload == workload
                {
                    r.stop.cancel();
                }
            }
            ToAgent::End { workload } => {
                if let Some(r) = &self.running
                    && r.workload == workload
                {
                    r.feed.end();
                }
            }
            ToAgent::Stored { ids } => {
                // On a blocking thread (see `on_disk`), and not awaited: nothing here waits
                // for the files to go.
                let cache = self.cache.clone();
                tokio::task::spawn_blocking(move || {
                    let mut cache = lock(&cache);
                    for id in ids {
                        if let Err(e) = cache.remove(id) {
                            tracing::warn!("{e}");
                        }
                    }
                });
            }
            ToAgent::Ping { sent } => {
                let _ = sender
                    .send(&ToController::Pong {
                        echo: sent,
                        at: unix_now(),
                    })
                    .await;
            }
            ToAgent::Pong { .. } | ToAgent::Welcome { .. } => {}
            ToAgent::Shutdown => {
                self.stop_load("the controller shut the run down");
                return Some(AgentExit::Shutdown);
            }
        }
        None
    }

    /// Builds the scenario and the runner share and starts them.
    fn start(&mut self, order: WorkloadOrder) -> Result<(), String> {
        if let Some(r) = &self.running {
            // A new workload means the controller is done with the old one.
            r.stop.cancel();
        }
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
        feed.heard(self.liveness);
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
            self.cache.clone(),
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
        self.running = Some(Running {
            workload: order.workload,
            stop,
            feed,
            account,
            asked: None,
            last_want: 0,
            low_water: order.low_water.max(1),
            finished,
            announce,
        });
        Ok(())
    }
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
async fn on_disk<T: Send + 'static>(
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

/// Serves the controller's pulls, one chunk at a time, on the results channel.
async fn serve_pulls(
    sender: Arc<LinkSender>,
    cache: Arc<Mutex<ChunkCache>>,
    mut pulls: mpsc::Receiver<Vec<u64>>,
) {
    while let Some(ids) = pulls.recv().await {
        for id in ids {
            let delivery = match on_disk(&cache, move |c| c.read(id)).await {
                Ok(bytes) => Delivery::Chunk { id, bytes },
                Err(e) => {
                    tracing::error!("{e}");
                    Delivery::Missing {
                        id,
                        reason: e.to_string(),
                    }
                }
            };
            if sender.deliver(&delivery).await.is_err() {
                return;
            }
        }
    }
}
