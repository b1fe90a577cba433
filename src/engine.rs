//! The TaskEngine: runs a task's workloads in order, consumes their result chunks, checks the
//! SLA live, and publishes one stream of events for the front ends.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::{broadcast, mpsc, watch};
use tokio_util::sync::CancellationToken;

use crate::chunk::{Chunk, ChunkLimits};
use crate::clock::Clock;
use crate::distributed::controller::{Assignment, Controller, DistributedRunner, WorkloadOutcome};
use crate::events::{
    AgentRow, AgentsSnapshot, DistributedSummary, DurationBuckets, Event, Figures, Level,
    LiveStatistics, Progress, SlaSnapshot, SourceDetail, SourceFigures, StatisticsDetail,
    StopCause, TaskStatus, WorkloadInfo, WorkloadReport,
};
use crate::hook::HookExecutor;
use crate::runner::{InstanceStatus, LocalRunner, RunJob, Runner, RunnerSpec};
use crate::scenario::Scenario;
use crate::sla::running::RunningMerge;
use crate::sla::{self, CriterionStatus, IterationSample, SlaChecker};
use crate::stats::ErrorCount;
use crate::stats::{Metric, WorkloadStats};
pub use crate::store::Record;
use crate::task::{SubtaskSpec, TaskSpec, WorkloadSpec};

#[derive(Debug, Clone)]
pub struct EngineOptions {
    /// Stop everything the first time any SLA criterion fails (Rally's flag).
    pub abort_on_sla_failure: bool,
    pub limits: ChunkLimits,
    /// How often progress and SLA snapshots are published.
    pub interval: Duration,
    /// Publish [`crate::events::StatisticsDetail`] (histogram buckets per workload, action
    /// and agent; failures by type) with each `Statistics` event, for `--metrics-listen`.
    /// Off by default: it costs a pass over every agent's histogram each interval.
    pub detail: bool,
}

impl Default for EngineOptions {
    fn default() -> EngineOptions {
        EngineOptions {
            abort_on_sla_failure: false,
            limits: ChunkLimits::default(),
            interval: Duration::from_secs(1),
            detail: false,
        }
    }
}

/// Why the remaining workloads were skipped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Abort {
    Sla,
    User,
}

/// How the whole task ended.
#[derive(Debug, Clone)]
pub struct TaskOutcome {
    pub uuid: String,
    pub status: TaskStatus,
    pub pass_sla: bool,
    pub abort: Option<Abort>,
    pub workloads: Vec<WorkloadReport>,
}

/// Why a stop was asked for, said by whoever cancels the engine's stopper before it does
/// (a signal, the user); the first to say wins, and nobody saying means the user.
#[derive(Debug, Clone, Default)]
pub struct StopReason(Arc<std::sync::Mutex<Option<StopCause>>>);

impl StopReason {
    pub fn set(&self, cause: StopCause) {
        let mut r = self.0.lock().unwrap_or_else(|p| p.into_inner());
        r.get_or_insert(cause);
    }

    pub fn get(&self) -> Option<StopCause> {
        *self.0.lock().unwrap_or_else(|p| p.into_inner())
    }
}

pub struct TaskEngine {
    stop_reason: StopReason,
    spec: TaskSpec,
    options: EngineOptions,
    events: broadcast::Sender<Event>,
    stop: CancellationToken,
    /// Cancelled to leave at once (a second Ctrl-C): in-flight iterations are abandoned,
    /// what arrived is stored and the task is recorded as aborted.
    abandon: CancellationToken,
    uuid: String,
    recorder: Option<mpsc::Sender<Record>>,
    /// Runs distributed workloads on agents; without it they run in this process.
    controller: Option<Arc<Controller>>,
}

impl TaskEngine {
    pub fn new(spec: TaskSpec, options: EngineOptions) -> TaskEngine {
        let (events, _) = broadcast::channel(4096);
        TaskEngine {
            stop_reason: StopReason::default(),
            spec,
            options,
            events,
            stop: CancellationToken::new(),
            abandon: CancellationToken::new(),
            uuid: uuid::Uuid::new_v4().to_string(),
            recorder: None,
            controller: None,
        }
    }

    /// Run workloads with a distributed runner on the controller's agents.
    pub fn with_controller(mut self, controller: Arc<Controller>) -> TaskEngine {
        self.controller = Some(controller);
        self
    }

    /// Send everything the task produces to `recorder` (the store's writer) as it happens.
    pub fn with_recorder(mut self, recorder: mpsc::Sender<Record>) -> TaskEngine {
        self.recorder = Some(recorder);
        self
    }

    async fn record(&self, record: Record) {
        if let Some(r) = &self.recorder {
            // A writer that has gone away has already reported why.
            let _ = r.send(record).await;
        }
    }

    pub fn uuid(&self) -> &str {
        &self.uuid
    }

    /// The event stream's sender, for other parts of the run (the controller's notices).
    pub fn events(&self) -> broadcast::Sender<Event> {
        self.events.clone()
    }

    pub fn subscribe(&self) -> broadcast::Receiver<Event> {
        self.events.subscribe()
    }

    /// Cancel it to stop the task as a user would: no new iterations anywhere, in-flight
    /// ones finish and are recorded, remaining workloads are skipped.
    pub fn stopper(&self) -> CancellationToken {
        self.stop.clone()
    }

    /// Cancelling it leaves at once: no waiting for in-flight iterations (which are
    /// abandoned); it stops the load too.
    pub fn abandoner(&self) -> CancellationToken {
        self.abandon.clone()
    }

    /// Where whoever cancels the stopper says why (a signal, the user).
    pub fn stop_reason(&self) -> StopReason {
        self.stop_reason.clone()
    }

    fn publish(&self, event: Event) {
        // No subscriber is fine: events are for whoever watches.
        let _ = self.events.send(event);
    }

    fn infos(&self) -> Vec<WorkloadInfo> {
        let count = self.spec.workloads().count();
        self.spec
            .workloads()
            .enumerate()
            .map(|(index, (s, w))| WorkloadInfo {
                index,
                count,
                subtask: s.title.clone(),
                position: w.position,
                scenario: w.scenario.name.clone(),
                runner: w.runner.describe(),
                total: w.runner.total_iterations(),
                expected_duration: w.runner.expected_duration(),
                target_rate: w.runner.target_rate().cloned(),
                max_concurrency: w.runner.max_concurrency(),
            })
            .collect()
    }

    pub async fn run(&self) -> TaskOutcome {
        let infos = self.infos();
        self.record(Record::TaskStarted {
            uuid: self.uuid.clone(),
            spec: Box::new(self.spec.clone()),
        })
        .await;
        self.publish(Event::TaskStarted {
            uuid: self.uuid.clone(),
            title: self.spec.title.clone(),
            workloads: infos.clone(),
        });
        let abandon_watch = {
            let (abandon, stop) = (self.abandon.clone(), self.stop.clone());
            tokio::spawn(async move {
                abandon.cancelled().await;
                stop.cancel();
            })
        };
        // A user's stop shows as `aborting` in the store while in-flight iterations finish.
        let stop_watch = {
            let (stop, recorder, events, reason) = (
                self.stop.clone(),
                self.recorder.clone(),
                self.events.clone(),
                self.stop_reason.clone(),
            );
            tokio::spawn(async move {
                stop.cancelled().await;
                let _ = events.send(Event::Stopping {
                    reason: reason.get().unwrap_or(StopCause::User),
                });
                if let Some(r) = recorder {
                    let _ = r.send(Record::Stopping { status: "aborting" }).await;
                }
            })
        };
        let mut reports = Vec::new();
        let mut abort = None;
        let subtask_of = self
            .spec
            .subtasks
            .iter()
            .enumerate()
            .flat_map(|(i, s)| s.workloads.iter().map(move |_| i));
        for (((subtask, workload), info), subtask_index) in
            self.spec.workloads().zip(infos).zip(subtask_of)
        {
            if abort.is_some() || self.stop.is_cancelled() {
                abort.get_or_insert(Abort::User);
                break;
            }
            let (report, this_abort) = self
                .run_workload(info, subtask_index, subtask, workload)
                .await;
            abort = abort.or(this_abort);
            self.publish(Event::WorkloadFinished(Box::new(report.clone())));
            self.record(Record::WorkloadFinished(Box::new(report.clone())))
                .await;
            reports.push(report);
        }
        let pass_sla = reports.iter().all(|r| r.pass_sla);
        let status = if abort.is_some() {
            TaskStatus::Aborted
        } else {
            TaskStatus::Finished
        };
        stop_watch.abort();
        abandon_watch.abort();
        self.record(Record::TaskFinished { status, pass_sla }).await;
        self.publish(Event::TaskFinished {
            uuid: self.uuid.clone(),
            status,
            pass_sla,
        });
        TaskOutcome {
            uuid: self.uuid.clone(),
            status,
            pass_sla,
            abort,
            workloads: reports,
        }
    }

    async fn run_workload(
        &self,
        info: WorkloadInfo,
        subtask_index: usize,
        subtask: &SubtaskSpec,
        w: &WorkloadSpec,
    ) -> (WorkloadReport, Option<Abort>) {
        let started = Instant::now();
        self.publish(Event::WorkloadStarted(info.clone()));
        let scenario = Arc::new(Scenario::new(w.scenario.kind.clone()));
        let (committed_tx, committed) = watch::channel(0u64);
        // Without storage a chunk counts as kept once the consumer has it.
        let (to_writer, to_consumer) = match self.recorder {
            Some(_) => (Some(committed_tx), None),
            None => (None, Some(committed_tx)),
        };
        self.record(Record::WorkloadStarted {
            info: info.clone(),
            subtask_index,
            subtask: Box::new(subtask.clone()),
            workload: Box::new(w.clone()),
            action_names: scenario.action_names.clone(),
            committed: to_writer,
        })
        .await;
        let mut consumer =
            Consumer::new(&self.options, &info, scenario.action_names.clone(), &w.sla);
        consumer.committed = to_consumer;

        // Contexts: set up in order; a failure cleans up what was set up and fails the
        // workload, and the task goes on with the next one.
        let mut contexts = w.contexts.clone();
        contexts.sort_by_key(|c| c.order());
        let mut set_up = Vec::new();
        let mut failure = None;
        for c in &contexts {
            let setup = c.setup();
            if let Some(e) = setup.error {
                // Rally's SLA row carries the exception's message alone; which context
                // failed goes to the log.
                self.publish(Event::Log {
                    level: Level::Error,
                    message: format!("setup of context '{}' failed: {e}", c.name),
                });
                failure = Some(e.to_string());
                break;
            }
            set_up.push(c);
        }

        let mut abort = None;
        let mut runner_error = None;
        if failure.is_none() {
            let hooks = HookExecutor::start(w.hooks.clone());
            let workload_stop = self.stop.child_token();
            let (tx, rx) = mpsc::channel::<Chunk>(256);
            let (live_tx, live_rx) = mpsc::unbounded_channel();
            let job = RunJob {
                scenario: scenario.clone(),
                source: Arc::from("local"),
                chunks: tx,
                stop: workload_stop.clone(),
                on_iteration: hooks.iteration_listener(),
                limits: self.options.limits,
                clock: Clock::new(),
                feed: None,
                live: Some(live_tx),
                committed: Some(committed.clone()),
                in_flight: Default::default(),
            };
            // Only an `rps` runner keeps it; others' slots are all busy by definition.
            consumer.in_flight = w
                .runner
                .max_concurrency()
                .is_some()
                .then(|| job.in_flight.clone());
            let distributed = match (&w.runner, &self.controller) {
                (RunnerSpec::Distributed { agents, inner }, Some(controller)) => {
                    Some(DistributedRunner {
                        controller: controller.clone(),
                        assignment: Assignment {
                            run: self.uuid.clone(),
                            workload: info.index as u32,
                            scenario: w.scenario.name.clone(),
                            args: w.scenario.args.clone(),
                            inner: (**inner).clone(),
                            agents: *agents as usize,
                            sla: w.sla.clone(),
                        },
                        outcome: Default::default(),
                    })
                }
                _ => None,
            };
            let local = LocalRunner {
                spec: w.runner.clone(),
            };
            let runner: &dyn Runner = match &distributed {
                Some(d) => d,
                None => &local,
            };
            // Abandoning drops the runner's future (and with it the iterations in flight)
            // and ends the consumer with what it has.
            let run = async {
                tokio::select! {
                    r = runner.run(job) => r,
                    () = self.abandon.cancelled() => Ok(()),
                }
            };
            let consume = consumer.consume(
                rx,
                live_rx,
                &workload_stop,
                &self.abandon,
                self.recorder.as_ref(),
                |e| self.publish(e),
            );
            let (run_result, ()) = tokio::join!(run, consume);
            if let Err(e) = run_result {
                runner_error = Some(e.to_string());
            }
            if let Some(outcome) = distributed.and_then(|d| d.outcome.into_inner().ok().flatten()) {
                consumer.distributed = Some(outcome);
            }
            consumer.hooks = hooks.finish().await;
            abort = if consumer.aborted_on_sla {
                Some(Abort::Sla)
            } else if self.stop.is_cancelled() {
                Some(Abort::User)
            } else {
                None
            };
        }
        for c in set_up.iter().rev() {
            if let Some(e) = c.cleanup().error {
                self.publish(Event::Log {
                    level: Level::Warning,
                    message: format!("cleanup of context '{}' failed: {e}", c.name),
                });
            }
        }
        let report = consumer.report(
            info,
            started.elapsed().as_secs_f64(),
            abort,
            failure,
            runner_error,
        );
        (report, abort)
    }
}

/// How often the merged agents' SLA state is checked while reports come in.
const SLA_CHECK: Duration = Duration::from_millis(20);

/// How often, at most, agents' state changes are published between intervals.
const AGENTS_AT_ONCE: Duration = Duration::from_millis(100);

/// How often the iteration count is published between intervals (SPEC §14: progress
/// redraws at least 4 times a second).
const COUNT_INTERVAL: Duration = Duration::from_millis(200);

/// Figures over one publishing interval.
struct Interval {
    metric: Metric,
}

impl Interval {
    fn new() -> Interval {
        Interval {
            metric: Metric::default(),
        }
    }

    fn figures(&mut self, seconds: f64, total: &Metric, failures: u64) -> Figures {
        let m = &self.metric;
        let f = Figures {
            iterations: total.count,
            failures,
            rate: if seconds > 0.0 {
                m.count as f64 / seconds
            } else {
                0.0
            },
            p50: m.quantile(0.5),
            p95: m.quantile(0.95),
            p99: m.quantile(0.99),
            max: (m.count > 0).then_some(m.max),
            p95_total: total.quantile(0.95),
        };
        self.metric = Metric::default();
        f
    }
}

/// One runner instance's stored figures.
struct SourceStats {
    name: Arc<str>,
    metric: Metric,
    failures: u64,
    /// Its most common errors, as the workload's are counted.
    errors: Vec<ErrorCount>,
    /// Its failures by error type, for `--metrics-listen`: bounded like `errors`.
    by_type: Vec<(String, u64)>,
}

/// Counts a failure of type `etype`: the first [`crate::stats::ERROR_KINDS`] types by
/// name, later new ones under `other`, so that a scenario raising ever new types cannot
/// grow the list (or the metrics' label values) without bound.
fn count_type(by_type: &mut Vec<(String, u64)>, etype: &str) {
    if let Some((_, n)) = by_type.iter_mut().find(|(t, _)| t == etype) {
        *n += 1;
    } else if by_type.len() < crate::stats::ERROR_KINDS {
        by_type.push((etype.to_string(), 1));
    } else if let Some((_, n)) = by_type.iter_mut().find(|(t, _)| t == OTHER_TYPE) {
        *n += 1;
    } else {
        by_type.push((OTHER_TYPE.to_string(), 1));
    }
}

/// The error type that [`count_type`] counts new types under once it has enough.
pub const OTHER_TYPE: &str = "other";

/// Consumes a workload's chunks: statistics, SLA, and what the front ends see.
struct Consumer {
    index: usize,
    abort_on_sla: bool,
    interval: Duration,
    stats: WorkloadStats,
    names: Arc<[String]>,
    sla: Result<SlaChecker, String>,
    aborted_on_sla: bool,
    recent: Interval,
    hooks: Vec<crate::hook::HookResult>,
    total: Option<u64>,
    /// Stored figures per runner instance (agent), from the chunks.
    per_source: Vec<SourceStats>,
    /// Where each source is in `per_source` (every chunk looks its source up; thousands of
    /// agents are thousands of sources).
    per_source_index: std::collections::HashMap<Arc<str>, usize>,
    /// The agents' latest live reports (distributed workloads only).
    instances: Vec<InstanceStatus>,
    /// Where each agent is in `instances`, by name (a report is found in O(1)).
    instance_index: std::collections::HashMap<String, usize>,
    /// The agents' SLA states merged, moved on by each report (see [`RunningMerge`]).
    running_sla: RunningMerge,
    distributed: Option<WorkloadOutcome>,
    /// Counts chunks consumed, when nothing stores them.
    committed: Option<watch::Sender<u64>>,
    /// The local `rps` runner's count of iterations running now.
    in_flight: Option<Arc<std::sync::atomic::AtomicU64>>,
    /// [`EngineOptions::detail`].
    detail: bool,
}

impl Consumer {
    fn new(
        options: &EngineOptions,
        info: &WorkloadInfo,
        names: Arc<[String]>,
        sla: &serde_json::Map<String, serde_json::Value>,
    ) -> Consumer {
        Consumer {
            index: info.index,
            abort_on_sla: options.abort_on_sla_failure,
            interval: options.interval,
            stats: WorkloadStats::new(names.clone()),
            names,
            sla: SlaChecker::from_config(sla).map_err(|e| e.to_string()),
            aborted_on_sla: false,
            recent: Interval::new(),
            hooks: Vec::new(),
            total: info.total,
            per_source: Vec::new(),
            per_source_index: std::collections::HashMap::new(),
            instances: Vec::new(),
            instance_index: std::collections::HashMap::new(),
            running_sla: RunningMerge::default(),
            distributed: None,
            committed: None,
            in_flight: None,
            detail: options.detail,
        }
    }

    async fn consume(
        &mut self,
        mut rx: mpsc::Receiver<Chunk>,
        mut live: mpsc::UnboundedReceiver<Vec<InstanceStatus>>,
        stop: &CancellationToken,
        abandon: &CancellationToken,
        recorder: Option<&mpsc::Sender<Record>>,
        publish: impl Fn(Event),
    ) {
        let started = Instant::now();
        let mut tick = tokio::time::interval_at((started + self.interval).into(), self.interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut last_tick = started;
        let mut live_open = true;
        let mut sla_dirty = false;
        let mut sla_check = tokio::time::interval(SLA_CHECK);
        sla_check.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut count_tick = tokio::time::interval(COUNT_INTERVAL);
        count_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        let mut counted = (u64::MAX, u64::MAX);
        // Agents' state changes, published at most every AGENTS_AT_ONCE: with a thousand
        // agents starting, one snapshot per status would be a million rows.
        let mut agents_changed = false;
        let mut agents_tick = tokio::time::interval(AGENTS_AT_ONCE);
        agents_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        loop {
            tokio::select! {
                update = live.recv(), if live_open => match update {
                    Some(instances) => {
                        agents_changed |= self.upsert(instances);
                        sla_dirty = true;
                    }
                    None => live_open = false,
                },
                // The merged agents' state is the live verdict (chunks reach the controller
                // later than the agents' SLA reports). It is a running merge that each
                // report moves on (see `upsert`); its verdict is checked at most every
                // SLA_CHECK.
                _ = sla_check.tick(), if sla_dirty => {
                    sla_dirty = false;
                    let failing = self.merged_sla().is_some_and(|m| m.as_ref().is_ok_and(|m| !m.success()));
                    if failing && self.abort_on_sla && !self.aborted_on_sla {
                        self.abort(stop, recorder, &publish).await;
                    }
                }
                chunk = rx.recv() => match chunk {
                    Some(chunk) => {
                        if self.ingest(&chunk) && self.abort_on_sla && !self.aborted_on_sla {
                            self.abort(stop, recorder, &publish).await;
                        }
                        if let Some(r) = recorder {
                            let _ = r.send(Record::Chunk { index: self.index, chunk }).await;
                        }
                        if let Some(c) = &self.committed {
                            c.send_modify(|n| *n += 1);
                        }
                    }
                    None => break,
                },
                _ = agents_tick.tick(), if agents_changed => {
                    agents_changed = false;
                    publish(Event::Agents(AgentsSnapshot {
                        workload: self.index,
                        agents: self.instances.iter().map(AgentRow::from_instance).collect(),
                    }));
                }
                // Leaving now: what already arrived is counted and stored; the rest is not
                // waited for.
                () = abandon.cancelled() => {
                    while let Ok(chunk) = rx.try_recv() {
                        self.ingest(&chunk);
                        if let Some(r) = recorder {
                            let _ = r.send(Record::Chunk { index: self.index, chunk }).await;
                        }
                    }
                    break;
                }
                _ = count_tick.tick() => {
                    let (iterations, failures) = self.count();
                    if (iterations, failures) != counted {
                        counted = (iterations, failures);
                        publish(Event::Count {
                            workload: self.index,
                            elapsed: started.elapsed().as_secs_f64(),
                            iterations,
                            failures,
                        });
                    }
                }
                _ = tick.tick() => {
                    let now = Instant::now();
                    self.publish_snapshot(now.duration_since(last_tick).as_secs_f64(), now.duration_since(started).as_secs_f64(), &publish);
                    last_tick = now;
                }
            }
        }
        let now = Instant::now();
        self.publish_snapshot(
            now.duration_since(last_tick).as_secs_f64(),
            now.duration_since(started).as_secs_f64(),
            &publish,
        );
    }

    async fn abort(
        &mut self,
        stop: &CancellationToken,
        recorder: Option<&mpsc::Sender<Record>>,
        publish: &impl Fn(Event),
    ) {
        self.aborted_on_sla = true;
        stop.cancel();
        publish(Event::Stopping {
            reason: StopCause::SlaFailure,
        });
        if let Some(r) = recorder {
            let _ = r
                .send(Record::Stopping {
                    status: "soft_aborting",
                })
                .await;
        }
    }

    /// Take in agents' latest statuses (some or all of them).
    /// Takes the agents' latest statuses; true when one of them changed state (lost,
    /// stopping, done) or is new, which the screens should learn at once rather than at
    /// the next interval.
    fn upsert(&mut self, statuses: Vec<InstanceStatus>) -> bool {
        let mut changed = false;
        for status in statuses {
            match self.instance_index.get(&status.name) {
                Some(&k) => {
                    let known = &mut self.instances[k];
                    changed |= known.state != status.state;
                    match (&known.sla, &status.sla) {
                        // The same report again (every interval re-sends them all).
                        (Some(old), Some(new)) if Arc::ptr_eq(old, new) => {}
                        (old, Some(new)) => self.running_sla.update(old.as_deref(), new),
                        (Some(_), None) => self.running_sla.mark_stale(),
                        (None, None) => {}
                    }
                    *known = status;
                }
                None => {
                    changed = true;
                    if let Some(new) = &status.sla {
                        self.running_sla.update(None, new);
                    }
                    self.instance_index
                        .insert(status.name.clone(), self.instances.len());
                    self.instances.push(status);
                }
            }
        }
        changed
    }

    /// The agents' SLA states merged, when agents report them.
    fn merged_sla(&mut self) -> Option<&Result<SlaChecker, String>> {
        self.running_sla
            .get(self.instances.iter().filter_map(|i| i.sla.as_deref()))
    }

    /// A source's p95 over its stored results.
    fn source_p95_total(&self, name: &str) -> Option<f64> {
        let &i = self.per_source_index.get(name)?;
        self.per_source.get(i)?.metric.quantile(0.95)
    }

    fn source_metric(&mut self, source: &Arc<str>) -> usize {
        match self.per_source_index.get(source) {
            Some(&i) => i,
            None => {
                self.per_source_index
                    .insert(source.clone(), self.per_source.len());
                self.per_source.push(SourceStats {
                    name: source.clone(),
                    metric: Metric::default(),
                    failures: 0,
                    errors: Vec::new(),
                    by_type: Vec::new(),
                });
                self.per_source.len() - 1
            }
        }
    }

    /// Account for a chunk; true when an SLA criterion failed on the data so far.
    fn ingest(&mut self, chunk: &Chunk) -> bool {
        let mut sla_failed = false;
        let source = self.source_metric(&chunk.source);
        for record in &chunk.records {
            let s = &mut self.per_source[source];
            s.metric.add(record.duration, record.error.is_none());
            if let Some(e) = &record.error {
                s.failures += 1;
                crate::stats::count_error(&mut s.errors, &e.etype, &e.message);
                count_type(&mut s.by_type, &e.etype);
            }
        }
        let mut tops: Vec<(&str, f64)> = Vec::with_capacity(8);
        for record in &chunk.records {
            let actions = chunk.actions_of(record);
            self.stats.add(record, actions);
            self.recent
                .metric
                .add(record.duration, record.error.is_none());
            if let Ok(checker) = &mut self.sla {
                tops.clear();
                for a in actions.iter().filter(|a| a.depth == 0) {
                    tops.push((
                        self.names.get(a.name as usize).map_or("", String::as_str),
                        a.duration(),
                    ));
                }
                let sample = IterationSample {
                    duration: record.duration,
                    failed: record.error.is_some(),
                    top_level_actions: &tops,
                };
                sla_failed |= !checker.add(&sample);
            }
        }
        sla_failed
    }

    fn sla_rows(&self) -> Vec<CriterionStatus> {
        match &self.sla {
            Ok(checker) => checker.results(),
            Err(e) => vec![sla::something_went_wrong(e)],
        }
    }

    /// Iterations and failures so far: the stored records', or the agents' own reports
    /// where those are ahead (results reach the controller after the reports).
    fn count(&self) -> (u64, u64) {
        let reported = self
            .instances
            .iter()
            .fold((0, 0), |(i, f), s| (i + s.iterations, f + s.failures));
        (
            self.stats.iterations.max(reported.0),
            self.stats.failures.max(reported.1),
        )
    }

    fn publish_snapshot(&mut self, seconds: f64, elapsed: f64, publish: &impl Fn(Event)) {
        self.publish_figures(seconds, elapsed, publish);
        let mut errors = self.stats.errors.clone();
        errors.sort_by_key(|e| std::cmp::Reverse(e.count));
        let by_source = self
            .per_source
            .iter()
            .filter(|s| !s.errors.is_empty())
            .map(|s| {
                let mut errors = s.errors.clone();
                errors.sort_by_key(|e| std::cmp::Reverse(e.count));
                (s.name.to_string(), errors)
            })
            .collect();
        let detail = self.detail.then(|| Box::new(self.detail()));
        publish(Event::Statistics(Box::new(LiveStatistics {
            workload: self.index,
            table: self.stats.table(),
            errors,
            by_source,
            detail,
        })));
    }

    /// Histogram buckets and failures by type from the stored results, with the agents'
    /// in-flight counts where the runner keeps them (`rps`).
    fn detail(&self) -> StatisticsDetail {
        use std::collections::HashMap;
        let reported: HashMap<&str, u64> = self
            .instances
            .iter()
            .map(|i| (i.name.as_str(), i.in_flight))
            .collect();
        let local_in_flight = self
            .in_flight
            .as_ref()
            .map(|n| n.load(std::sync::atomic::Ordering::Relaxed));
        StatisticsDetail {
            duration: DurationBuckets::from_metric(&self.stats.duration),
            actions: self
                .stats
                .top_level_actions()
                .map(|(name, m)| (name, DurationBuckets::from_metric(m)))
                .collect(),
            sources: self
                .per_source
                .iter()
                .map(|s| SourceDetail {
                    name: s.name.to_string(),
                    duration: DurationBuckets::from_metric(&s.metric),
                    failures_by_type: s.by_type.clone(),
                    in_flight: local_in_flight.and_then(|local| {
                        if self.instances.is_empty() {
                            Some(local)
                        } else {
                            reported.get(&*s.name).copied()
                        }
                    }),
                })
                .collect(),
        }
    }

    fn publish_figures(&mut self, seconds: f64, elapsed: f64, publish: &impl Fn(Event)) {
        let all = self
            .recent
            .figures(seconds, &self.stats.duration, self.stats.failures);
        if self.instances.is_empty() {
            publish(Event::Progress(Progress {
                workload: self.index,
                elapsed,
                total: self.total,
                all: all.clone(),
                sources: vec![("local".into(), all)],
                in_flight: self
                    .in_flight
                    .as_ref()
                    .map(|n| n.load(std::sync::atomic::Ordering::Relaxed)),
                stored: None,
            }));
            let rows = self.sla_rows();
            publish(Event::Sla(SlaSnapshot {
                workload: self.index,
                total: rows.clone(),
                sources: vec![("local".into(), rows)],
            }));
            return;
        }
        let sources: Vec<(String, Figures)> = self
            .instances
            .iter()
            .map(|i| {
                let mut f = Figures::from_instance(i);
                f.p95_total = self.source_p95_total(&i.name);
                (i.name.clone(), f)
            })
            .collect();
        // The p95s over everything come from the stored results, which trail the agents'
        // reports (and so the counts) by one fetch.
        let mut all = Figures::merged(&self.instances);
        all.p95_total = self.stats.duration.quantile(0.95);
        publish(Event::Agents(AgentsSnapshot {
            workload: self.index,
            agents: self.instances.iter().map(AgentRow::from_instance).collect(),
        }));
        publish(Event::Progress(Progress {
            workload: self.index,
            elapsed,
            total: self.total,
            all,
            sources,
            // The agents' own counts, for an `rps` workload.
            in_flight: self
                .in_flight
                .as_ref()
                .map(|_| self.instances.iter().map(|i| i.in_flight).sum()),
            stored: Some(self.stats.iterations),
        }));
        let total = match self.merged_sla() {
            Some(Ok(merged)) => merged.results(),
            Some(Err(e)) => vec![sla::something_went_wrong(e)],
            None => self.sla_rows(),
        };
        publish(Event::Sla(SlaSnapshot {
            workload: self.index,
            total,
            sources: self
                .instances
                .iter()
                .map(|i| {
                    (
                        i.name.clone(),
                        i.sla
                            .as_deref()
                            .map(SlaChecker::results)
                            .unwrap_or_default(),
                    )
                })
                .collect(),
        }));
    }

    /// Per runner instance, from the stored chunks; agents that ran nothing or were lost are
    /// listed too.
    fn sources(&self) -> Vec<SourceFigures> {
        let mut out: Vec<SourceFigures> = self
            .per_source
            .iter()
            .map(|s| SourceFigures::from_metric(&s.name, &s.metric, s.failures))
            .collect();
        if let Some(d) = &self.distributed {
            for name in &d.agents {
                if !out.iter().any(|s| &s.name == name) {
                    out.push(SourceFigures::from_metric(name, &Metric::default(), 0));
                }
            }
            for s in &mut out {
                s.lost = d.lost.contains(&s.name);
            }
        }
        out
    }

    fn report(
        self,
        info: WorkloadInfo,
        full_duration: f64,
        abort: Option<Abort>,
        context_error: Option<String>,
        runner_error: Option<String>,
    ) -> WorkloadReport {
        let mut sla = self.sla_rows();
        match abort {
            Some(Abort::Sla) => sla.push(sla::aborted_on_sla()),
            Some(Abort::User) => sla.push(sla::aborted_manually()),
            None => {}
        }
        // Both are Rally's `something_went_wrong` row; only the runner's (agents lost
        // beyond recovery) makes the run a failure rather than a failed SLA.
        if let Some(f) = context_error.as_ref().or(runner_error.as_ref()) {
            sla.push(sla::something_went_wrong(f));
        }
        let pass_sla = sla.iter().all(|r| r.success);
        let sources = self.sources();
        let mut errors = self.stats.errors.clone();
        errors.sort_by_key(|e| std::cmp::Reverse(e.count));
        let connections = (self.stats.connections.opened() > 0).then_some(self.stats.connections);
        WorkloadReport {
            errors,
            connections,
            runner_error,
            info,
            stats: self.stats.table(),
            pass_sla,
            iterations: self.stats.iterations,
            failures: self.stats.failures,
            load_duration: self.stats.load_duration(),
            full_duration,
            start_time: (self.stats.iterations > 0).then_some(self.stats.first_timestamp),
            hooks: self.hooks,
            sources,
            sla,
            distributed: self.distributed.map(|d| DistributedSummary {
                agents: d.agents,
                lost: d.lost,
                reissued: d.reissued,
                duplicates: d.duplicates,
                missing: d.missing,
                returned: d.returned,
                reshares: d.reshares,
            }),
        }
    }
}

#[cfg(test)]
#[path = "engine_tests.rs"]
mod tests;
