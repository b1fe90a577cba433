//! The one stream of events the engine publishes, and that every front end (the headless
//! printer, the TUI) renders. Front ends own no engine state: what they show is in here.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::hook::HookResult;
use crate::runner::InstanceStatus;
use crate::sla::CriterionStatus;
use crate::sla::histogram::DurationHistogram;
use crate::stats::{ErrorCount, StatsTable};

/// How one runner instance (an agent) is doing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum InstanceState {
    Connecting,
    Running,
    Stopping,
    Done,
    Lost,
}

impl InstanceState {
    pub fn as_str(&self) -> &'static str {
        match self {
            InstanceState::Connecting => "connecting",
            InstanceState::Running => "running",
            InstanceState::Stopping => "stopping",
            InstanceState::Done => "done",
            InstanceState::Lost => "lost",
        }
    }
}

/// How much a log line matters: the headless printer prints it before the message, the TUI
/// colours its log pane by it, `--events` writes it as a lowercase word.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Level {
    Error,
    Warning,
    Info,
}

impl Level {
    pub fn as_str(self) -> &'static str {
        match self {
            Level::Error => "error",
            Level::Warning => "warning",
            Level::Info => "info",
        }
    }
}

impl fmt::Display for Level {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A log line for the front ends from the distributed side (agent joined, lost, refused
/// frames, ssh sessions...), before it becomes an [`Event::Log`].
#[derive(Debug, Clone)]
pub struct Notice {
    pub level: Level,
    pub message: String,
}

impl From<Notice> for Event {
    fn from(n: Notice) -> Event {
        Event::Log {
            level: n.level,
            message: n.message,
        }
    }
}

/// Why the engine stopped starting iterations: said in the `Stopping` event, shown by the
/// front ends (`Stopping: stopped by SIGTERM; …`), and telling an SLA abort from a user's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopCause {
    /// The user confirmed a stop (also what a stop nobody explained counts as).
    User,
    /// A signal to the process, by name (`SIGINT`, `SIGTERM`, `SIGHUP`).
    Signal(&'static str),
    /// A criterion failed under `--abort-on-sla-failure`.
    SlaFailure,
}

impl fmt::Display for StopCause {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StopCause::User => f.write_str("stopped by the user"),
            StopCause::Signal(name) => write!(f, "stopped by {name}"),
            StopCause::SlaFailure => f.write_str("SLA failure"),
        }
    }
}

/// Written as the words the front ends show.
impl Serialize for StopCause {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// Where a workload sits in the task.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct WorkloadInfo {
    /// 0-based over the whole task, in run order.
    pub index: usize,
    pub count: usize,
    pub subtask: String,
    pub position: usize,
    pub scenario: String,
    pub runner: String,
    /// Iterations the runner will run, when known in advance.
    pub total: Option<u64>,
    /// Seconds the load should take, when the runner says: a set duration
    /// (`constant_for_duration`), or when an `rps` schedule starts its last iteration.
    #[serde(default)]
    pub expected_duration: Option<f64>,
    /// An `rps` runner's schedule, whose rate the throughput chart draws as the target.
    #[serde(default)]
    pub target_rate: Option<crate::runner::Rate>,
    /// An `rps` runner's `max_concurrency`.
    #[serde(default)]
    pub max_concurrency: Option<u64>,
}

/// Live figures of one runner instance (or of all of them), over the last interval and in
/// total.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Figures {
    pub iterations: u64,
    pub failures: u64,
    /// Iterations per second over the last interval.
    pub rate: f64,
    /// Percentiles of the last interval's durations (seconds); `None` when none finished.
    pub p50: Option<f64>,
    pub p95: Option<f64>,
    pub p99: Option<f64>,
    pub max: Option<f64>,
    /// 95th percentile of all durations so far.
    pub p95_total: Option<f64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Progress {
    pub workload: usize,
    /// Seconds since the workload's load started.
    pub elapsed: f64,
    pub total: Option<u64>,
    pub all: Figures,
    /// Per runner instance ("local", or agent names).
    pub sources: Vec<(String, Figures)>,
    /// Iterations running now, where known (a local `rps` runner).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub in_flight: Option<u64>,
    /// Iterations stored so far, in a distributed run: the agents' counts run ahead of it
    /// while their results are fetched, and after their load ends it says how far the
    /// fetching has got.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stored: Option<u64>,
}

impl Progress {
    /// Results still being fetched after every agent's load ended: (stored, run).
    pub fn storing(&self, agents_running: bool) -> Option<(u64, u64)> {
        let stored = self.stored?;
        (!agents_running && stored < self.all.iterations).then_some((stored, self.all.iterations))
    }
}

/// What `Event::Statistics` carries.
#[derive(Debug, Clone, Serialize)]
pub struct LiveStatistics {
    pub workload: usize,
    pub table: StatsTable,
    /// Most frequent first.
    pub errors: Vec<ErrorCount>,
    /// The same per runner instance (agent) that had any, most frequent first.
    pub by_source: Vec<(String, Vec<ErrorCount>)>,
    /// Cumulative histogram buckets and failures by error type, for `--metrics-listen`;
    /// only when the engine is asked for them ([`crate::engine::EngineOptions::detail`]),
    /// since they cost a pass over every agent's histogram each interval.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<Box<StatisticsDetail>>,
}

/// Upper bounds (seconds) of the duration histograms' buckets that `--metrics-listen`
/// exports: latencies from a millisecond to five minutes, roughly 1-2.5-5 per decade (the
/// Prometheus clients' defaults stop at 10 s, too short for cloud API calls).
pub const DURATION_BUCKETS: [f64; 17] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
    120.0, 300.0,
];

/// A cumulative histogram of durations, as Prometheus keeps one: for each bound of
/// [`DURATION_BUCKETS`], how many durations were at most that long.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct DurationBuckets {
    pub count: u64,
    /// Seconds, exact (not from the histogram).
    pub sum: f64,
    /// `(upper bound in seconds, durations <= bound)` for each of [`DURATION_BUCKETS`];
    /// the `+Inf` bucket is `count`.
    pub buckets: Vec<(f64, u64)>,
}

impl DurationBuckets {
    /// From a metric's HDR histogram, in one pass over its recorded values. A value counts
    /// under a bound when its HDR bucket's lowest value does, so a duration exactly on a
    /// bound counts under it, and one within 0.1% above may too (the histogram's own
    /// precision).
    pub fn from_metric(m: &crate::stats::Metric) -> DurationBuckets {
        let tops: Vec<u64> = DURATION_BUCKETS
            .iter()
            .map(|b| crate::stats::micros(*b))
            .collect();
        let mut counts = vec![0u64; tops.len()];
        for (value, count) in m.hist.recorded() {
            let at = DurationHistogram::lowest_equivalent(value);
            // The first bound this value fits under; every later bound counts it too
            // (cumulated below).
            if let Some(i) = tops.iter().position(|&t| at <= t) {
                counts[i] += count;
            }
        }
        let mut running = 0;
        let buckets = DURATION_BUCKETS
            .iter()
            .zip(counts)
            .map(|(&b, c)| {
                running += c;
                (b, running)
            })
            .collect();
        DurationBuckets {
            count: m.count,
            sum: if m.count > 0 { m.sum } else { 0.0 },
            buckets,
        }
    }
}

/// What `--metrics-listen` needs beyond the statistics table, from the stored results.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct StatisticsDetail {
    /// Iteration durations.
    pub duration: DurationBuckets,
    /// Each top-level atomic action's durations, by its row name in the table.
    pub actions: Vec<(String, DurationBuckets)>,
    /// Per runner instance ("local", or agent names).
    pub sources: Vec<SourceDetail>,
}

/// One runner instance's share of [`StatisticsDetail`].
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct SourceDetail {
    pub name: String,
    pub duration: DurationBuckets,
    /// Failures by error type (`HTTPError`, `Timeout`, …; never the message), first
    /// [`crate::stats::ERROR_KINDS`] types seen, later new ones counted under `other`.
    pub failures_by_type: Vec<(String, u64)>,
    /// Iterations running now, where known (an `rps` runner).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub in_flight: Option<u64>,
}

/// Each criterion's current state on the merged data, in total and per runner instance.
#[derive(Debug, Clone, Serialize)]
pub struct SlaSnapshot {
    pub workload: usize,
    pub total: Vec<CriterionStatus>,
    pub sources: Vec<(String, Vec<CriterionStatus>)>,
}

/// One runner instance's (agent's) share of a finished workload.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SourceFigures {
    pub name: String,
    pub iterations: u64,
    pub failures: u64,
    /// Duration percentiles of its iterations (seconds); `None` when it ran none.
    pub p50: Option<f64>,
    pub p95: Option<f64>,
    pub p99: Option<f64>,
    /// The agent was lost during the workload.
    #[serde(default)]
    pub lost: bool,
}

impl SourceFigures {
    pub fn from_metric(name: &str, m: &crate::stats::Metric, failures: u64) -> SourceFigures {
        SourceFigures {
            name: name.to_string(),
            iterations: m.count,
            failures,
            p50: m.quantile(0.5),
            p95: m.quantile(0.95),
            p99: m.quantile(0.99),
            lost: false,
        }
    }
}

/// What happened to the agents of a distributed workload.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct DistributedSummary {
    pub agents: Vec<String>,
    pub lost: Vec<String>,
    /// Iterations re-run elsewhere after their agent was lost.
    pub reissued: u64,
    /// Records dropped because their iteration was already stored.
    pub duplicates: u64,
    /// Results that could not be fetched, and why.
    pub missing: Vec<String>,
    /// Lost agents that came back and took their share again: "NAME lost at 2.1 s, back at
    /// 4.3 s" (seconds into the workload).
    #[serde(default)]
    pub returned: Vec<String>,
    /// Shares of the concurrency (or `max_concurrency`) moved between agents as they were
    /// lost and came back (SPEC §6 lost shares).
    #[serde(default)]
    pub reshares: Vec<crate::distributed::shares::Reshare>,
}

/// One agent's row in the agent table.
#[derive(Debug, Clone, Serialize)]
pub struct AgentRow {
    pub name: String,
    pub host: String,
    pub state: InstanceState,
    pub iterations: u64,
    pub failures: u64,
    /// Iterations per second over its last report interval.
    pub rate: f64,
    pub p95: Option<f64>,
    /// Seconds since the controller last heard from it.
    pub heartbeat_age: Option<f64>,
    /// Its clock minus the controller's, seconds.
    pub clock_offset: Option<f64>,
}

impl AgentRow {
    pub fn from_instance(i: &InstanceStatus) -> AgentRow {
        let f = Figures::from_instance(i);
        AgentRow {
            name: i.name.clone(),
            host: i.host.clone(),
            state: i.state,
            iterations: i.iterations,
            failures: i.failures,
            rate: f.rate,
            p95: f.p95,
            heartbeat_age: i.heartbeat_age,
            clock_offset: i.clock_offset,
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct AgentsSnapshot {
    pub workload: usize,
    pub agents: Vec<AgentRow>,
}

impl Figures {
    /// An agent's figures from its last report.
    pub fn from_instance(i: &InstanceStatus) -> Figures {
        let n = i.recent.len();
        let q = |k: usize| i.quantiles.map(|q| q[k]);
        Figures {
            iterations: i.iterations,
            failures: i.failures,
            // A lost or finished agent's last report is history, not its current rate.
            rate: if matches!(i.state, InstanceState::Lost | InstanceState::Done) {
                0.0
            } else if i.recent_seconds > 0.0 {
                n as f64 / i.recent_seconds
            } else {
                0.0
            },
            p50: q(0),
            p95: q(1),
            p99: q(2),
            max: q(3),
            // An agent's reports carry its recent durations only; the engine fills this
            // from the stored results.
            p95_total: None,
        }
    }

    /// All agents together: counts and rates add up, percentiles come from the merged
    /// histograms (of the last reports: `p95_total` is left to the engine's stored results).
    pub fn merged(instances: &[InstanceStatus]) -> Figures {
        let mut all = DurationHistogram::new();
        let mut f = Figures::default();
        for i in instances {
            if i.state != InstanceState::Lost {
                let _ = all.add(&i.recent);
            }
            let one = Figures::from_instance(i);
            f.iterations += one.iterations;
            f.failures += one.failures;
            f.rate += one.rate;
        }
        if !all.is_empty() {
            f.p50 = Some(all.value_at_quantile_secs(0.5));
            f.p95 = Some(all.value_at_quantile_secs(0.95));
            f.p99 = Some(all.value_at_quantile_secs(0.99));
            f.max = Some(all.value_at_quantile_secs(1.0));
        }
        f
    }
}

/// How a workload ended.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct WorkloadReport {
    pub info: WorkloadInfo,
    pub stats: StatsTable,
    pub sla: Vec<CriterionStatus>,
    pub pass_sla: bool,
    pub iterations: u64,
    pub failures: u64,
    pub load_duration: f64,
    pub full_duration: f64,
    /// Unix seconds of the first iteration, if any ran.
    pub start_time: Option<f64>,
    pub hooks: Vec<HookResult>,
    /// What each runner instance (agent) did.
    pub sources: Vec<SourceFigures>,
    /// The most common errors, most frequent first.
    pub errors: Vec<ErrorCount>,
    /// Set for a workload run on agents.
    #[serde(default)]
    pub distributed: Option<DistributedSummary>,
    /// Connections opened and reused, for scenarios that open any (HTTP).
    #[serde(default)]
    pub connections: Option<crate::stats::ConnectionCounts>,
    /// The runner could not run the workload to its end (a distributed one whose agents
    /// were all lost, or none was alive): a failure of the run (exit 1), not of its SLA.
    #[serde(default)]
    pub runner_error: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TaskStatus {
    Running,
    Finished,
    Aborted,
    Crashed,
}

impl TaskStatus {
    pub fn as_str(&self) -> &'static str {
        match self {
            TaskStatus::Running => "running",
            TaskStatus::Finished => "finished",
            TaskStatus::Aborted => "aborted",
            TaskStatus::Crashed => "crashed",
        }
    }
}

/// Serialized (`--events`) as one object per event with its kind under `type`
/// (`task_started`, `progress`, …); see [`crate::event_log`].
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Event {
    TaskStarted {
        uuid: String,
        title: String,
        workloads: Vec<WorkloadInfo>,
    },
    WorkloadStarted(WorkloadInfo),
    Progress(Progress),
    Sla(SlaSnapshot),
    /// The agents of a distributed workload, every interval.
    Agents(AgentsSnapshot),
    WorkloadFinished(Box<WorkloadReport>),
    /// The current workload's iteration count, several times a second between the
    /// interval's figures, so progress moves smoothly.
    Count {
        workload: usize,
        /// Seconds since the workload's load started.
        elapsed: f64,
        iterations: u64,
        failures: u64,
    },
    /// The current workload's Response Times table and its most common errors, from the
    /// merged data, every interval.
    Statistics(Box<LiveStatistics>),
    /// The engine stopped starting iterations (user stop or SLA abort); in-flight ones finish.
    Stopping {
        reason: StopCause,
    },
    TaskFinished {
        uuid: String,
        status: TaskStatus,
        pass_sla: bool,
    },
    Log {
        level: Level,
        message: String,
    },
}
