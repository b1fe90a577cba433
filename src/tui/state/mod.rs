//! What the TUI shows, folded from engine [`Event`]s and key presses.
//!
//! `TuiState` is pure: it reads no clock and does no I/O, so a recorded event sequence always
//! produces the same screen (the snapshot tests rely on this), and every buffer in it is
//! bounded, so a run of days uses as much memory as a run of minutes.
//!
//! This module folds the live events of the current workload; the rest follows the data:
//! - [`history`]: the bounded time series the charts draw;
//! - [`sources`]: the table's rows, one per agent or local runner;
//! - [`finished`]: what a finished workload leaves behind (its report, its final charts,
//!   the task's verdict), for the workload list and the inspected workload;
//! - [`keys`]: what each key does, with the popups taking the keys first.

use std::collections::VecDeque;

use crate::events::{
    Event, Figures, InstanceState, Level, LiveStatistics, Progress, StopCause, WorkloadInfo,
    WorkloadReport,
};
use crate::sla::{ABORTED_MANUALLY, ABORTED_ON_SLA, CriterionStatus, SOMETHING_WENT_WRONG};

mod finished;
mod history;
mod keys;
mod sources;
#[cfg(test)]
mod tests;

pub use finished::KEPT_HISTORIES;
pub use history::{HISTORY, History, Merge, Ring};
pub use keys::PAGE;
pub use sources::{MAX_SOURCES, SourceRow};

/// Rows Rally adds to say how a workload ended: no criteria of their own, and no value or
/// limit to show.
pub const PSEUDO_ROWS: [&str; 3] = [ABORTED_ON_SLA, ABORTED_MANUALLY, SOMETHING_WENT_WRONG];

/// Log lines kept for the log pane.
pub const LOG_LINES: usize = 200;
/// Longest log message kept (in chars); the rest is cut so one huge message cannot hold
/// memory.
pub const LOG_MESSAGE_CHARS: usize = 500;

/// Where the run is.
#[derive(Debug, Clone, PartialEq)]
pub enum Phase {
    /// No `TaskStarted` yet.
    Waiting,
    Running,
    /// The engine stopped starting iterations; in-flight ones finish.
    Stopping {
        reason: String,
    },
    Finished {
        pass_sla: bool,
    },
    /// Stopped by `--abort-on-sla-failure`.
    AbortedOnSla,
    /// Stopped by the user.
    Aborted,
    Crashed,
}

impl Phase {
    /// Whether the task is over, so quitting loses nothing.
    pub fn is_over(&self) -> bool {
        matches!(
            self,
            Phase::Finished { .. } | Phase::AbortedOnSla | Phase::Aborted | Phase::Crashed
        )
    }

    pub fn label(&self) -> &'static str {
        match self {
            Phase::Waiting => "waiting",
            Phase::Running => "running",
            Phase::Stopping { .. } => "stopping",
            Phase::Finished { pass_sla: true } => "finished",
            Phase::Finished { pass_sla: false } => "finished (SLA failed)",
            Phase::AbortedOnSla => "aborted on SLA",
            Phase::Aborted => "aborted",
            Phase::Crashed => "crashed",
        }
    }
}

/// Which metric the charts show.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum View {
    #[default]
    Throughput,
    Latency,
    Failures,
}

impl View {
    pub const ALL: [View; 3] = [View::Throughput, View::Latency, View::Failures];

    pub fn title(self) -> &'static str {
        match self {
            View::Throughput => "throughput (it/s)",
            View::Latency => "latency (s)",
            View::Failures => "failure rate (%)",
        }
    }

    /// The view after this one (what → shows).
    pub fn next(self) -> View {
        self.step(true)
    }

    fn step(self, forward: bool) -> View {
        let i = View::ALL.iter().position(|v| *v == self).unwrap_or(0);
        let n = View::ALL.len();
        View::ALL[if forward {
            (i + 1) % n
        } else {
            (i + n - 1) % n
        }]
    }
}

/// A panel over the charts, one key away (the same key or Esc closes it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Overlay {
    #[default]
    None,
    /// `w`: every workload of the task, with its state and verdict.
    Workloads,
    /// `e`: the current workload's errors, grouped as the headless `Errors:` block.
    Errors,
    /// `v`: Rally's Response Times table, from the merged data.
    Statistics,
    /// `l`: the log pane enlarged, scrollable.
    Log,
}

/// What the event loop must do after a key; the state has already changed itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    None,
    /// The stop confirmation is now open.
    AskStop,
    /// The user confirmed: tell the engine to stop.
    ConfirmStop,
    /// Leave the TUI (only returned once the task is over).
    Quit,
    /// Leave now, while stopping: in-flight iterations are abandoned (a second Ctrl-C, or
    /// `q` then `y` while stopping).
    LeaveNow,
    /// Switch to the next theme.
    CycleTheme,
    /// The help overlay opened or closed.
    ToggleHelp,
}

#[derive(Debug, Clone, PartialEq)]
pub struct LogLine {
    pub level: String,
    pub message: String,
}

/// Everything the screen shows.
#[derive(Debug, Clone)]
pub struct TuiState {
    pub uuid: String,
    pub title: String,
    /// The task's workloads, from `TaskStarted` (bounded by the task file).
    pub workloads: Vec<WorkloadInfo>,
    pub workload: Option<WorkloadInfo>,
    /// Seconds since the current workload's load started (from events, never a clock).
    pub elapsed: f64,
    /// Iterations running now, where the runner says (a local `rps` runner).
    pub in_flight: Option<u64>,
    pub total: Option<u64>,
    /// Aggregate figures of the current workload.
    pub all: Figures,
    pub phase: Phase,
    /// Aggregate SLA rows of the current workload.
    pub sla: Vec<CriterionStatus>,
    pub history: History,
    pub sources: Vec<SourceRow>,
    pub logs: VecDeque<LogLine>,
    /// Index into `sources` of the source shown in the second chart.
    pub selected: usize,
    pub view: View,
    pub show_help: bool,
    pub confirm_stop: bool,
    /// The "leave now?" question, asked by `q` while stopping.
    pub confirm_leave: bool,
    /// Set once the user confirmed a stop, so `s` does not ask again.
    pub stop_requested: bool,
    /// One-line hint for the footer (e.g. why `q` did not quit).
    pub notice: Option<String>,
    /// Sources in the latest figures or agents snapshot that the table has no room for
    /// (beyond [`MAX_SOURCES`]): a gauge, not a count of look-ups.
    pub dropped_sources: u64,
    /// `(alive, all)` agents of the latest agents snapshot (or of the workload's report
    /// once it ended): counted from the snapshot, so agents beyond the table's cap count.
    pub(super) agent_counts: (usize, usize),
    /// Set once an `Agents` event arrived: the table then shows the agent columns.
    pub distributed: bool,
    /// Every agent's load is over and its results are still being fetched: (stored, run).
    pub storing: Option<(u64, u64)>,
    /// Workloads finished so far, and how many of them failed their SLA: the task's
    /// verdict so far, which the header carries (the SLA panel is the current workload's).
    pub workloads_done: usize,
    pub workloads_failed: usize,
    /// The current workload's average rate over its load duration, once it finished.
    pub final_rate: Option<f64>,
    /// The current workload's statistics and errors, as of the last interval.
    pub live: Option<LiveStatistics>,
    /// Each finished workload's report, by index: what the workload list shows again.
    /// Bounded by the task file's workloads.
    pub finished: Vec<WorkloadReport>,
    /// The final charts of the most recent finished workloads ([`KEPT_HISTORIES`] at
    /// most): (index, aggregate history, elapsed at the end).
    pub histories: VecDeque<(usize, History, f64)>,
    pub overlay: Overlay,
    /// The row selected in the workload list; Enter shows that workload's statistics.
    pub workload_cursor: usize,
    /// How many lines the enlarged log is scrolled back from the newest.
    pub log_scroll: usize,
    /// The first row the errors and Response Times panels show (0 when opened).
    pub overlay_scroll: usize,
    /// A finished workload whose figures the statistics and errors panels show instead of
    /// the current one's.
    pub inspected: Option<usize>,
    sla_abort_seen: bool,
    /// A workload started and no figures of it arrived yet: the first ones say which rows
    /// the table keeps.
    rows_stale: bool,
}

impl Default for TuiState {
    fn default() -> Self {
        Self::new()
    }
}

impl TuiState {
    pub fn new() -> Self {
        Self {
            uuid: String::new(),
            title: String::new(),
            workloads: Vec::new(),
            workload: None,
            elapsed: 0.0,
            in_flight: None,
            total: None,
            all: Figures::default(),
            phase: Phase::Waiting,
            sla: Vec::new(),
            history: History::default(),
            sources: Vec::new(),
            logs: VecDeque::with_capacity(LOG_LINES),
            selected: 0,
            view: View::default(),
            show_help: false,
            confirm_stop: false,
            confirm_leave: false,
            stop_requested: false,
            notice: None,
            dropped_sources: 0,
            agent_counts: (0, 0),
            distributed: false,
            storing: None,
            workloads_done: 0,
            workloads_failed: 0,
            final_rate: None,
            live: None,
            finished: Vec::new(),
            histories: VecDeque::new(),
            overlay: Overlay::None,
            workload_cursor: 0,
            log_scroll: 0,
            overlay_scroll: 0,
            inspected: None,
            sla_abort_seen: false,
            rows_stale: false,
        }
    }

    /// Folds one engine event into the state.
    pub fn apply(&mut self, e: &Event) {
        match e {
            Event::TaskStarted {
                uuid,
                title,
                workloads,
            } => {
                self.uuid.clone_from(uuid);
                self.title.clone_from(title);
                self.workloads.clone_from(workloads);
                if self.phase == Phase::Waiting {
                    self.phase = Phase::Running;
                }
            }
            Event::WorkloadStarted(info) => self.workload_started(info),
            Event::Progress(p) => self.progress(p),
            Event::Sla(s) => {
                self.log_sla_changes(&s.total);
                self.sla.clone_from(&s.total);
                for (name, rows) in &s.sources {
                    if let Some(src) = self.source_mut(name) {
                        src.sla.clone_from(rows);
                    }
                }
            }
            Event::Agents(a) => self.agents(a),
            Event::WorkloadFinished(report) => self.workload_finished(report),
            Event::Count {
                workload,
                elapsed,
                iterations,
                failures,
            } => {
                if self.workload.as_ref().is_some_and(|w| w.index == *workload)
                    && self.final_rate.is_none()
                {
                    self.elapsed = self.elapsed.max(*elapsed);
                    self.all.iterations = self.all.iterations.max(*iterations);
                    self.all.failures = self.all.failures.max(*failures);
                }
            }
            Event::Statistics(live) => {
                if self
                    .workload
                    .as_ref()
                    .is_some_and(|w| w.index == live.workload)
                {
                    self.live = Some((**live).clone());
                }
            }
            Event::Stopping { reason } => {
                if *reason == StopCause::SlaFailure {
                    self.sla_abort_seen = true;
                }
                self.phase = Phase::Stopping {
                    reason: reason.to_string(),
                };
                self.confirm_stop = false;
            }
            Event::TaskFinished {
                uuid,
                status,
                pass_sla,
            } => self.task_finished(uuid, *status, *pass_sla),
            Event::Log { level, message } => self.log(*level, message),
        }
    }

    fn workload_started(&mut self, info: &WorkloadInfo) {
        // Graphs are per workload: elapsed restarts at 0 and the scenario changes.
        self.workload = Some(info.clone());
        self.total = info.total;
        self.elapsed = 0.0;
        self.all = Figures::default();
        self.final_rate = None;
        self.in_flight = None;
        self.storing = None;
        self.live = None;
        self.workload_cursor = info.index;
        // No agent works in it until its first agents snapshot.
        self.agent_counts = (0, 0);
        self.sla.clear();
        self.history.clear();
        for s in &mut self.sources {
            s.reset();
        }
        self.rows_stale = true;
        if self.phase == Phase::Waiting {
            self.phase = Phase::Running;
        }
    }

    fn progress(&mut self, p: &Progress) {
        self.keep_rows(p.sources.iter().map(|(n, _)| n.as_str()));
        self.elapsed = p.elapsed;
        self.in_flight = p.in_flight;
        self.total = p.total.or(self.total);
        self.all = p.all.clone();
        self.history.record(p.elapsed, &p.all);
        if let Some(rate) = self.workload.as_ref().and_then(|w| w.target_rate.as_ref()) {
            self.history.target.push(p.elapsed, rate.at(p.elapsed));
        }
        let mut untracked = 0;
        for (name, f) in &p.sources {
            match self.source_mut(name) {
                Some(src) => src.on_progress(p.elapsed, f),
                None => untracked += 1,
            }
        }
        self.dropped_sources = untracked;
        let running = self
            .sources
            .iter()
            .any(|src| !matches!(src.state, Some(InstanceState::Done | InstanceState::Lost)));
        self.storing = p.storing(running);
    }

    /// Logs each aggregate criterion that starts or stops failing, with Rally's detail, so
    /// the moment the service degraded stays on screen.
    fn log_sla_changes(&mut self, rows: &[CriterionStatus]) {
        let changes: Vec<(bool, String)> = rows
            .iter()
            .filter(|r| !PSEUDO_ROWS.contains(&r.criterion.as_str()))
            .filter_map(|r| {
                // A criterion passes until it is seen failing.
                let was_ok = self
                    .sla
                    .iter()
                    .find(|p| p.criterion == r.criterion)
                    .is_none_or(|p| p.success);
                let detail = if r.detail.is_empty() {
                    format!("{} {} (limit {})", r.criterion, r.value, r.limit)
                } else {
                    r.detail.clone()
                };
                (was_ok != r.success).then_some((r.success, detail))
            })
            .collect();
        for (success, detail) in changes {
            // The verdict first: Rally's detail (`0.10s <= 0.10s - Failed`) reads like a pass.
            if success {
                self.log(Level::Info, &format!("PASS again: {detail}"));
            } else {
                self.log(Level::Warning, &format!("FAIL: {detail}"));
            }
        }
    }

    fn log(&mut self, level: Level, message: &str) {
        if self.logs.len() == LOG_LINES {
            self.logs.pop_front();
        }
        let message = match message.char_indices().nth(LOG_MESSAGE_CHARS) {
            Some((cut, _)) => format!("{}…", &message[..cut]),
            None => message.to_owned(),
        };
        // Short words of one width at most, so the pane's columns line up.
        let level = match level {
            Level::Warning => "warn",
            Level::Error => "error",
            Level::Info => "info",
        };
        self.logs.push_back(LogLine {
            level: level.to_owned(),
            message,
        });
        if self.log_scroll > 0 {
            // Scrolled back: the lines on screen stay put as new ones arrive.
            self.log_scroll = (self.log_scroll + 1).min(self.logs.len().saturating_sub(1));
        }
    }

    /// How long the current workload's load should take, in seconds, and whether that is
    /// an estimate: the runner's set duration (`constant_for_duration`), else the time so
    /// far scaled by iterations still to run.
    pub fn expected(&self) -> Option<(f64, bool)> {
        let w = self.workload.as_ref()?;
        if let Some(d) = w.expected_duration {
            return Some((d, false));
        }
        let total = self.total? as f64;
        let done = self.all.iterations as f64;
        (done > 0.0 && self.elapsed > 0.0).then(|| (self.elapsed * total.max(done) / done, true))
    }

    /// The current workload's average rate: over its load duration once it finished,
    /// else over the time so far.
    pub fn average_rate(&self) -> Option<f64> {
        self.final_rate.or_else(|| {
            (self.elapsed > 0.0 && self.all.iterations > 0)
                .then(|| self.all.iterations as f64 / self.elapsed)
        })
    }
}
