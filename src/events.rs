//! The one stream of events the engine publishes, and that every front end (the headless
//! printer, the TUI) renders. Front ends own no engine state: what they show is in here.

use serde::{Deserialize, Serialize};

use crate::hook::HookResult;
use crate::sla::CriterionStatus;
use crate::stats::{ErrorCount, StatsTable};

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
        }
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

#[derive(Debug, Clone, Serialize)]
pub enum Event {
    TaskStarted {
        uuid: String,
        title: String,
        workloads: Vec<WorkloadInfo>,
    },
    WorkloadStarted(WorkloadInfo),
    Progress(Progress),
    Sla(SlaSnapshot),
    WorkloadFinished(Box<WorkloadReport>),
    /// The engine stopped starting iterations (user stop or SLA abort); in-flight ones finish.
    Stopping {
        reason: String,
    },
    TaskFinished {
        uuid: String,
        status: TaskStatus,
        pass_sla: bool,
    },
    Log {
        level: String,
        message: String,
    },
}
