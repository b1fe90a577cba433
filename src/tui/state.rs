//! What the TUI shows, folded from engine [`Event`]s and key presses.
//!
//! `TuiState` is pure: it reads no clock and does no I/O, so a recorded event sequence always
//! produces the same screen (the snapshot tests rely on this), and every buffer in it is
//! bounded, so a run of days uses as much memory as a run of minutes.

use std::collections::VecDeque;

use crossterm::event::KeyCode;

use crate::events::{
    AgentRow, AgentsSnapshot, Event, Figures, LiveStatistics, Progress, TaskStatus, WorkloadInfo,
    WorkloadReport,
};
use crate::runner::InstanceState;
use crate::sla::{ABORTED_MANUALLY, ABORTED_ON_SLA, CriterionStatus, SOMETHING_WENT_WRONG};

/// Rows Rally adds to say how a workload ended: no criteria of their own, and no value or
/// limit to show.
pub const PSEUDO_ROWS: [&str; 3] = [ABORTED_ON_SLA, ABORTED_MANUALLY, SOMETHING_WENT_WRONG];

/// Points kept per time series: 300 progress events is 5 minutes at one per second, which
/// is as many as a chart a few hundred cells wide can show anyway.
pub const HISTORY: usize = 300;
/// Rows PageUp / PageDown move the agent selection by.
pub const PAGE: usize = 10;
/// Log lines kept for the log pane.
pub const LOG_LINES: usize = 200;
/// Longest log message kept (in chars); the rest is cut so one huge message cannot hold
/// memory.
pub const LOG_MESSAGE_CHARS: usize = 500;
/// Finished workloads whose charts are kept for the workload list (about 40 KB each).
pub const KEPT_HISTORIES: usize = 64;
/// Most sources tracked: far above the 100 agents SPEC §7 asks for, but a cap, so a stream
/// of ever new source names cannot grow the table without limit.
pub const MAX_SOURCES: usize = 1024;

/// A fixed-capacity series of `(x, y)` points; the oldest point drops out first.
#[derive(Debug, Clone)]
pub struct Ring {
    points: VecDeque<(f64, f64)>,
    cap: usize,
}

impl Ring {
    pub fn new(cap: usize) -> Self {
        Self {
            points: VecDeque::with_capacity(cap.min(HISTORY)),
            cap: cap.max(1),
        }
    }

    pub fn push(&mut self, x: f64, y: f64) {
        if self.points.len() == self.cap {
            self.points.pop_front();
        }
        self.points.push_back((x, y));
    }

    pub fn len(&self) -> usize {
        self.points.len()
    }

    pub fn is_empty(&self) -> bool {
        self.points.is_empty()
    }

    /// The points oldest first, as a `Vec` because ratatui's `Dataset` wants one slice.
    pub fn to_vec(&self) -> Vec<(f64, f64)> {
        self.points.iter().copied().collect()
    }

    pub fn iter(&self) -> impl DoubleEndedIterator<Item = &(f64, f64)> + ExactSizeIterator {
        self.points.iter()
    }

    pub fn last(&self) -> Option<(f64, f64)> {
        self.points.back().copied()
    }
}

/// Time series of one source (or of all), x = seconds since the workload's load started.
#[derive(Debug, Clone)]
pub struct History {
    /// Iterations per second.
    pub throughput: Ring,
    /// Interval latency percentiles, seconds.
    pub p50: Ring,
    pub p95: Ring,
    pub p99: Ring,
    pub max: Ring,
    /// Failed iterations in % of those finished since the previous progress event.
    pub failure_rate: Ring,
    /// Failed iterations in % of all so far: what the `failure_rate` criterion judges.
    pub failure_total: Ring,
    /// An `rps` schedule's target rate.
    pub target: Ring,
    /// Cumulative (iterations, failures) at the previous event, to difference the
    /// cumulative counters into a per-interval failure rate.
    prev: (u64, u64),
}

impl Default for History {
    fn default() -> Self {
        Self {
            throughput: Ring::new(HISTORY),
            p50: Ring::new(HISTORY),
            p95: Ring::new(HISTORY),
            p99: Ring::new(HISTORY),
            max: Ring::new(HISTORY),
            failure_rate: Ring::new(HISTORY),
            failure_total: Ring::new(HISTORY),
            target: Ring::new(HISTORY),
            prev: (0, 0),
        }
    }
}

impl History {
    fn record(&mut self, t: f64, f: &Figures) {
        self.throughput.push(t, f.rate);
        if f.iterations > 0 {
            self.failure_total.push(
                t,
                100.0 * f.failures.min(f.iterations) as f64 / f.iterations as f64,
            );
        }
        for (ring, v) in [
            (&mut self.p50, f.p50),
            (&mut self.p95, f.p95),
            (&mut self.p99, f.p99),
            (&mut self.max, f.max),
        ] {
            if let Some(v) = v {
                ring.push(t, v);
            }
        }
        let done = f.iterations.saturating_sub(self.prev.0);
        let failed = f.failures.saturating_sub(self.prev.1);
        if done > 0 {
            self.failure_rate
                .push(t, 100.0 * failed.min(done) as f64 / done as f64);
        }
        self.prev = (f.iterations, f.failures);
    }

    /// A point for an instance that runs nothing (a lost agent): zero throughput, and no
    /// latency or failure point, since no iteration finished.
    fn record_idle(&mut self, t: f64, f: &Figures) {
        self.throughput.push(t, 0.0);
        self.prev = (f.iterations, f.failures);
    }

    fn clear(&mut self) {
        *self = Self::default();
    }
}

/// One row of the source/agent table, with its own graphs and SLA rows.
#[derive(Debug, Clone, Default)]
pub struct SourceRow {
    pub name: String,
    pub iterations: u64,
    pub failures: u64,
    /// Iterations per second over the last interval.
    pub rate: f64,
    /// 95th percentile of durations, seconds: of all so far for the local runner, of the
    /// last report for an agent (the latest known value when its last interval had none).
    pub p95: Option<f64>,
    /// Agent host; `None` until the distributed controller reports it.
    pub host: Option<String>,
    /// Agent state; `None` for the local runner.
    pub state: Option<InstanceState>,
    /// Seconds since the agent's last heartbeat.
    pub heartbeat_age: Option<f64>,
    /// Agent clock minus controller clock, seconds.
    pub clock_offset: Option<f64>,
    /// This source's SLA rows, from the latest `Sla` event.
    pub sla: Vec<CriterionStatus>,
    pub history: History,
    /// An agent with no share in the current workload (or none yet): it stays in the table,
    /// said idle, rather than vanish or show the last workload's `done`.
    pub idle: bool,
}

impl SourceRow {
    fn is_lost(&self) -> bool {
        self.state == Some(InstanceState::Lost)
    }

    fn on_progress(&mut self, t: f64, f: &Figures) {
        self.idle = false;
        self.iterations = f.iterations;
        self.failures = f.failures;
        if self.is_lost() {
            // The controller keeps a lost agent's last report, but it runs nothing now: a
            // flat line at its old rate would hide the loss.
            self.rate = 0.0;
            self.history.record_idle(t, f);
            return;
        }
        self.rate = f.rate;
        self.p95 = f.p95_total.or(f.p95).or(self.p95);
        self.history.record(t, f);
    }

    fn on_agent(&mut self, a: &AgentRow) {
        self.idle = false;
        self.host = Some(a.host.clone());
        self.state = Some(a.state);
        self.iterations = a.iterations;
        self.failures = a.failures;
        self.rate = if a.state == InstanceState::Lost {
            0.0
        } else {
            a.rate
        };
        self.p95 = a.p95.or(self.p95);
        self.heartbeat_age = a.heartbeat_age;
        self.clock_offset = a.clock_offset;
    }

    /// Forgets the previous workload's figures; name, host and state stay, so the table
    /// keeps its rows (and the selection) from one workload to the next.
    fn reset(&mut self) {
        self.history.clear();
        self.sla.clear();
        self.iterations = 0;
        self.failures = 0;
        self.rate = 0.0;
        self.p95 = None;
        // An agent is idle until the new workload's figures name it; a lost one stays lost.
        self.idle = self.state.is_some() && !self.is_lost();
    }
}

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
    /// Sources seen after [`MAX_SOURCES`] was reached, not tracked.
    pub dropped_sources: u64,
    /// Set once an `Agents` event arrived: the table then shows the agent columns.
    pub distributed: bool,
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
            distributed: false,
            workloads_done: 0,
            workloads_failed: 0,
            final_rate: None,
            live: None,
            finished: Vec::new(),
            histories: VecDeque::new(),
            overlay: Overlay::None,
            workload_cursor: 0,
            log_scroll: 0,
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
                if reason.to_ascii_lowercase().contains("sla") {
                    self.sla_abort_seen = true;
                }
                self.phase = Phase::Stopping {
                    reason: reason.clone(),
                };
                self.confirm_stop = false;
            }
            Event::TaskFinished {
                uuid,
                status,
                pass_sla,
            } => self.task_finished(uuid, *status, *pass_sla),
            Event::Log { level, message } => self.log(level, message),
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
        self.live = None;
        self.workload_cursor = info.index;
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

    /// After a workload change, drops the rows the new workload's first figures do not
    /// name (e.g. `local` when the next workload runs on agents), keeping the selection on
    /// the same name where it survives.
    fn keep_rows<'a>(&mut self, names: impl Iterator<Item = &'a str> + Clone) {
        if !std::mem::take(&mut self.rows_stale) {
            return;
        }
        let selected = self.selected_source().map(|s| s.name.clone());
        // Agents stay (idle, see `SourceRow::idle`); only the local runner's row goes when
        // the new workload does not run locally.
        self.sources
            .retain(|s| s.state.is_some() || names.clone().any(|n| n == s.name.as_str()));
        self.selected = selected
            .and_then(|name| self.sources.iter().position(|s| s.name == name))
            .unwrap_or(0);
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
        for (name, f) in &p.sources {
            if let Some(src) = self.source_mut(name) {
                src.on_progress(p.elapsed, f);
            }
        }
    }

    fn agents(&mut self, a: &AgentsSnapshot) {
        self.keep_rows(a.agents.iter().map(|r| r.name.as_str()));
        self.distributed = true;
        let before = self.sources.len();
        for row in &a.agents {
            if let Some(src) = self.source_mut(&row.name) {
                src.on_agent(row);
            }
        }
        if before == 0 {
            // A new table starts on its first agent, not on the first to register.
            self.sort_rows();
            self.selected = 0;
        } else if self.sources.len() != before {
            self.sort_rows();
        }
    }

    /// Agents in name order, numbers compared as numbers (`local-2` before `local-10`),
    /// whatever order they registered in; the selection stays on its agent.
    fn sort_rows(&mut self) {
        let selected = self.selected_source().map(|s| s.name.clone());
        self.sources.sort_by_cached_key(|s| natural_key(&s.name));
        if let Some(i) = selected.and_then(|n| self.sources.iter().position(|s| s.name == n)) {
            self.selected = i;
        }
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
                self.log("info", &format!("PASS again: {detail}"));
            } else {
                self.log("warn", &format!("FAIL: {detail}"));
            }
        }
    }

    fn workload_finished(&mut self, report: &WorkloadReport) {
        self.sla.clone_from(&report.sla);
        if report.sla.iter().any(|c| c.criterion == ABORTED_ON_SLA) {
            self.sla_abort_seen = true;
        }
        for f in &report.sources {
            if let Some(src) = self.source_mut(&f.name) {
                src.iterations = f.iterations;
                src.failures = f.failures;
                src.p95 = f.p95.or(src.p95);
                src.rate = 0.0;
                // No `Agents` event follows the workload's end: settle each agent's state
                // here, or the table would keep its last live one ("stopping").
                if f.lost {
                    src.state = Some(InstanceState::Lost);
                } else if src.state.is_some() {
                    src.state = Some(InstanceState::Done);
                }
            }
        }
        self.all.iterations = report.iterations;
        self.all.failures = report.failures;
        self.all.rate = 0.0;
        self.in_flight = None;
        // The whole workload's figures, from the merged data: the last interval's are gone.
        self.all.p95_total = report.stats.total.p95.or(self.all.p95_total);
        self.final_rate =
            (report.load_duration > 0.0).then(|| report.iterations as f64 / report.load_duration);
        self.workloads_done += 1;
        if !report.pass_sla {
            self.workloads_failed += 1;
        }
        // The report has the whole workload's table and errors; the per-agent errors are
        // the last interval's (published as the workload ended).
        let by_source = self.live.take().map(|l| l.by_source).unwrap_or_default();
        self.live = Some(LiveStatistics {
            workload: report.info.index,
            table: report.stats.clone(),
            errors: report.errors.clone(),
            by_source,
            detail: None,
        });
        self.finished.retain(|r| r.info.index != report.info.index);
        self.finished.push(report.clone());
        self.histories.retain(|(i, _, _)| *i != report.info.index);
        if self.histories.len() == KEPT_HISTORIES {
            self.histories.pop_front();
        }
        self.histories
            .push_back((report.info.index, self.history.clone(), self.elapsed));
        self.log_report(report);
    }

    /// The workload's outcome in the log pane, so it stays readable after the next
    /// workload replaced the charts and the SLA panel.
    fn log_report(&mut self, r: &WorkloadReport) {
        let level = if r.pass_sla { "info" } else { "error" };
        let verdict = verdict(&r.sla);
        let message = format!(
            "workload {}/{} {}: {} iterations, {} failed, {verdict}",
            r.info.index + 1,
            r.info.count,
            r.info.scenario,
            r.iterations,
            r.failures,
        );
        self.log(level, &message);
        let Some(d) = &r.distributed else {
            return;
        };
        if !d.lost.is_empty() {
            let message = format!(
                "agents lost: {}; {} of their iterations re-run by the others",
                d.lost.join(", "),
                d.reissued
            );
            self.log("warn", &message);
        }
        for back in &d.returned {
            let message = format!("agent back: {back}");
            self.log("info", &message);
        }
        if d.duplicates > 0 {
            let message = format!("{} duplicate records dropped", d.duplicates);
            self.log("info", &message);
        }
        for m in &d.missing {
            let message = format!("missing results: {m}");
            self.log("warn", &message);
        }
    }

    fn task_finished(&mut self, uuid: &str, status: TaskStatus, pass_sla: bool) {
        self.phase = match status {
            TaskStatus::Running | TaskStatus::Finished => Phase::Finished { pass_sla },
            TaskStatus::Aborted if self.sla_abort_seen => Phase::AbortedOnSla,
            TaskStatus::Aborted => Phase::Aborted,
            TaskStatus::Crashed => Phase::Crashed,
        };
        self.confirm_stop = false;
        self.confirm_leave = false;
        self.notice = Some("task over: q quits".into());
        // A user's stop fails Rally's SLA (its `aborted_manually` row) but is no alarm.
        let level = match self.phase {
            Phase::Finished { pass_sla: true } => "info",
            Phase::Aborted => "warn",
            _ => "error",
        };
        let message = format!("task {uuid} {}", self.phase.label());
        self.log(level, &message);
    }

    /// The row of `name`, added on first sight (up to [`MAX_SOURCES`]).
    fn source_mut(&mut self, name: &str) -> Option<&mut SourceRow> {
        if let Some(i) = self.sources.iter().position(|s| s.name == name) {
            return self.sources.get_mut(i);
        }
        if self.sources.len() >= MAX_SOURCES {
            self.dropped_sources += 1;
            return None;
        }
        self.sources.push(SourceRow {
            name: name.to_owned(),
            ..SourceRow::default()
        });
        self.sources.last_mut()
    }

    fn log(&mut self, level: &str, message: &str) {
        if self.logs.len() == LOG_LINES {
            self.logs.pop_front();
        }
        let message = match message.char_indices().nth(LOG_MESSAGE_CHARS) {
            Some((cut, _)) => format!("{}…", &message[..cut]),
            None => message.to_owned(),
        };
        // One spelling per level, so the pane's columns line up whoever logged.
        let level = match level.to_ascii_lowercase().as_str() {
            "warning" | "warn" => "warn",
            "error" | "err" => "error",
            "debug" => "debug",
            "trace" => "trace",
            _ => "info",
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

    /// `(alive, all)` agents of a distributed workload: lost ones are not alive.
    pub fn agents_alive(&self) -> Option<(usize, usize)> {
        if !self.distributed {
            return None;
        }
        let working = |s: &&SourceRow| s.state.is_some() && !s.idle;
        let all = self.sources.iter().filter(working).count();
        let lost = self
            .sources
            .iter()
            .filter(working)
            .filter(|s| s.is_lost())
            .count();
        Some((all - lost, all))
    }

    /// Agents with no share in the current workload.
    pub fn agents_idle(&self) -> usize {
        self.sources.iter().filter(|s| s.idle).count()
    }

    /// The source shown in the second chart, if any.
    pub fn selected_source(&self) -> Option<&SourceRow> {
        self.sources.get(self.selected)
    }

    /// Handles one key; popups take the keys first, so a stray key never stops a run.
    pub fn on_key(&mut self, key: KeyCode) -> Action {
        self.notice = None;
        if self.confirm_leave {
            self.confirm_leave = false;
            return match key {
                KeyCode::Char('y' | 'Y' | 'q' | 'Q') if !self.phase.is_over() => Action::LeaveNow,
                KeyCode::Char('y' | 'Y' | 'q' | 'Q') => Action::Quit,
                _ => Action::None,
            };
        }
        if self.confirm_stop {
            return match key {
                KeyCode::Char('s' | 'S' | 'y' | 'Y') => self.request_stop(),
                KeyCode::Char('n' | 'N') | KeyCode::Esc => {
                    self.confirm_stop = false;
                    Action::None
                }
                _ => Action::None,
            };
        }
        if self.show_help {
            return match key {
                KeyCode::Char('?' | 'q') | KeyCode::Esc => {
                    self.show_help = false;
                    Action::ToggleHelp
                }
                _ => Action::None,
            };
        }
        if let Some(action) = self.overlay_key(key) {
            return action;
        }
        match key {
            KeyCode::Char('s' | 'S') => self.ask_stop(false),
            KeyCode::Char('q' | 'Q') => {
                if self.phase.is_over() {
                    Action::Quit
                } else {
                    self.ask_stop(true)
                }
            }
            KeyCode::Char('t' | 'T') => Action::CycleTheme,
            KeyCode::Char('?') => {
                self.show_help = true;
                Action::ToggleHelp
            }
            KeyCode::Tab | KeyCode::Down | KeyCode::Char('j') => {
                self.select(true);
                Action::None
            }
            KeyCode::BackTab | KeyCode::Up | KeyCode::Char('k') => {
                self.select(false);
                Action::None
            }
            KeyCode::PageDown => self.select_by(PAGE as isize),
            KeyCode::PageUp => self.select_by(-(PAGE as isize)),
            KeyCode::Home => self.select_by(isize::MIN),
            KeyCode::End => self.select_by(isize::MAX),
            KeyCode::Right => {
                self.view = self.view.step(true);
                Action::None
            }
            KeyCode::Left => {
                self.view = self.view.step(false);
                Action::None
            }
            _ => Action::None,
        }
    }

    /// Keys that open, close or move within an overlay; `None` for the keys it leaves to
    /// the main screen (stop, quit, theme).
    fn overlay_key(&mut self, key: KeyCode) -> Option<Action> {
        let toggle = |this: &mut Self, o: Overlay| {
            this.overlay = if this.overlay == o { Overlay::None } else { o };
            Some(Action::None)
        };
        match key {
            KeyCode::Char('w' | 'W') => return toggle(self, Overlay::Workloads),
            KeyCode::Char('e' | 'E') => return toggle(self, Overlay::Errors),
            KeyCode::Char('v' | 'V') => return toggle(self, Overlay::Statistics),
            KeyCode::Char('l' | 'L') => {
                self.log_scroll = 0;
                return toggle(self, Overlay::Log);
            }
            KeyCode::Esc if self.overlay != Overlay::None || self.inspected.is_some() => {
                self.overlay = Overlay::None;
                self.inspected = None;
                return Some(Action::None);
            }
            _ => {}
        }
        if self.overlay == Overlay::Log {
            let most = self.logs.len().saturating_sub(1);
            let back = |n: usize| self.log_scroll.saturating_add(n).min(most);
            self.log_scroll = match key {
                KeyCode::Up | KeyCode::Char('k') => back(1),
                KeyCode::PageUp => back(PAGE),
                KeyCode::Home => most,
                KeyCode::Down | KeyCode::Char('j') => self.log_scroll.saturating_sub(1),
                KeyCode::PageDown => self.log_scroll.saturating_sub(PAGE),
                KeyCode::End => 0,
                _ => return None,
            };
            return Some(Action::None);
        }
        if self.overlay != Overlay::Workloads {
            return None;
        }
        let last = self.workloads.len().saturating_sub(1);
        match key {
            KeyCode::Down | KeyCode::Char('j') | KeyCode::Tab => {
                self.workload_cursor = (self.workload_cursor + 1).min(last);
            }
            KeyCode::Up | KeyCode::Char('k') | KeyCode::BackTab => {
                self.workload_cursor = self.workload_cursor.saturating_sub(1);
            }
            KeyCode::Home => self.workload_cursor = 0,
            KeyCode::End => self.workload_cursor = last,
            KeyCode::Enter => {
                // A finished workload other than the one on screen: its final charts, SLA
                // panel, statistics and errors, until Esc.
                let current = self.workload.as_ref().map(|w| w.index);
                let finished = self.finished_report(self.workload_cursor).is_some();
                self.inspected = (finished && Some(self.workload_cursor) != current)
                    .then_some(self.workload_cursor);
                self.overlay = Overlay::None;
            }
            _ => return None,
        }
        Some(Action::None)
    }

    /// What the charts and the SLA panel show: the inspected finished workload's final
    /// ones, else the current workload's.
    /// The finished workload whose final charts are on screen, if its charts are kept.
    pub fn inspected_charts(&self) -> Option<usize> {
        self.inspected
            .filter(|i| self.histories.iter().any(|(j, _, _)| j == i))
    }

    pub fn shown_charts(&self) -> (&History, &[CriterionStatus], f64) {
        let inspected = self.inspected.and_then(|i| {
            let report = self.finished_report(i)?;
            let (_, history, until) = self.histories.iter().find(|(j, _, _)| *j == i)?;
            Some((history, report.sla.as_slice(), *until))
        });
        inspected.unwrap_or((&self.history, &self.sla, self.elapsed))
    }

    /// The report of workload `index`, if it finished.
    pub fn finished_report(&self, index: usize) -> Option<&WorkloadReport> {
        self.finished.iter().find(|r| r.info.index == index)
    }

    /// What the statistics and errors panels show: the inspected finished workload's
    /// figures, else the current workload's latest.
    pub fn shown_statistics(
        &self,
    ) -> Option<(
        usize,
        &crate::stats::StatsTable,
        &[crate::stats::ErrorCount],
    )> {
        if let Some(r) = self.inspected.and_then(|i| self.finished_report(i)) {
            return Some((r.info.index, &r.stats, &r.errors));
        }
        self.live
            .as_ref()
            .map(|l| (l.workload, &l.table, l.errors.as_slice()))
    }

    /// A confirmed stop (the popup's `y`, Ctrl-C, a signal): shows `stopping` at once, since
    /// the engine announces only its own (SLA) stops. `Action::None` once the task is over.
    pub fn request_stop(&mut self) -> Action {
        self.confirm_stop = false;
        if self.phase.is_over() {
            self.notice = Some("task over: q quits".into());
            return Action::None;
        }
        if !self.stop_requested {
            self.stop_requested = true;
            self.log("warn", "stop requested: agents stop starting iterations");
        }
        if !matches!(self.phase, Phase::Stopping { .. }) {
            self.phase = Phase::Stopping {
                reason: "by user".into(),
            };
        }
        self.notice = Some("stopping: in-flight iterations finish".into());
        Action::ConfirmStop
    }

    /// `s` (or `q` with `leave`): the stop question; while stopping, `q` asks instead
    /// whether to leave without waiting for in-flight iterations.
    fn ask_stop(&mut self, leave: bool) -> Action {
        let stopping = self.stop_requested || matches!(self.phase, Phase::Stopping { .. });
        if self.phase.is_over() {
            self.notice = Some("task over: q quits".into());
            Action::None
        } else if stopping && leave {
            self.confirm_leave = true;
            Action::AskStop
        } else if stopping {
            self.notice =
                Some("already stopping: waiting for in-flight iterations (q leaves now)".into());
            Action::None
        } else {
            self.confirm_stop = true;
            Action::AskStop
        }
    }

    /// Moves the selection `by` rows, clamped to the table (no wrap-around, so End and
    /// PageDown stop at the last agent).
    fn select_by(&mut self, by: isize) -> Action {
        let last = self.sources.len().saturating_sub(1);
        self.selected = self.selected.saturating_add_signed(by).min(last);
        Action::None
    }

    fn select(&mut self, forward: bool) {
        let n = self.sources.len();
        if n == 0 {
            self.selected = 0;
        } else if forward {
            self.selected = (self.selected + 1) % n;
        } else {
            self.selected = (self.selected + n - 1) % n;
        }
    }
}

/// Sorts names with their digit runs as numbers: `("local-", 2, "")` before
/// `("local-", 10, "")`.
fn natural_key(name: &str) -> Vec<(String, u64)> {
    let mut out = Vec::new();
    let mut text = String::new();
    let mut chars = name.chars().peekable();
    while let Some(c) = chars.next() {
        if !c.is_ascii_digit() {
            text.push(c);
            continue;
        }
        let mut number = u64::from(c as u8 - b'0');
        while let Some(d) = chars.peek().and_then(|d| d.to_digit(10)) {
            number = number.saturating_mul(10).saturating_add(u64::from(d));
            chars.next();
        }
        out.push((std::mem::take(&mut text), number));
    }
    out.push((text, 0));
    out
}

/// A workload's SLA outcome in words: the failed criteria by name, and how it ended when
/// it did not end by itself (Rally's pseudo rows).
fn verdict(rows: &[CriterionStatus]) -> String {
    let failed: Vec<&str> = rows
        .iter()
        .filter(|c| !c.success && !PSEUDO_ROWS.contains(&c.criterion.as_str()))
        .map(|c| c.criterion.as_str())
        .collect();
    let mut out = if failed.is_empty() {
        "SLA passed".to_owned()
    } else {
        format!("SLA failed ({})", failed.join(", "))
    };
    for c in rows {
        match c.criterion.as_str() {
            ABORTED_ON_SLA => out.push_str("; aborted on SLA failure"),
            ABORTED_MANUALLY => out.push_str("; stopped by user"),
            SOMETHING_WENT_WRONG => out.push_str(&format!("; crashed: {}", c.detail)),
            _ => {}
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::events::SlaSnapshot;
    use crate::tui::fixtures::{agent_row, agents, figures, info, progress, started};

    fn row(name: &str, success: bool, value: f64, limit: f64) -> CriterionStatus {
        CriterionStatus {
            criterion: name.into(),
            success,
            detail: String::new(),
            value,
            limit,
            parts: Vec::new(),
        }
    }

    #[test]
    fn folds_a_run() {
        let mut s = TuiState::new();
        assert_eq!(s.phase, Phase::Waiting);
        s.apply(&started());
        s.apply(&Event::WorkloadStarted(info(0, 2, Some(1000))));
        assert_eq!(s.phase, Phase::Running);
        assert_eq!(s.title, "smoke test");
        s.apply(&progress(
            1.0,
            1000,
            &[("local", figures(10, 1, 10.0, 0.1))],
        ));
        s.apply(&progress(
            2.0,
            1000,
            &[("local", figures(30, 1, 20.0, 0.2))],
        ));
        assert_eq!(s.elapsed, 2.0);
        assert_eq!(s.all.iterations, 30);
        assert_eq!(s.sources.len(), 1);
        let h = &s.sources[0].history;
        assert_eq!(h.throughput.to_vec(), vec![(1.0, 10.0), (2.0, 20.0)]);
        // 1 of the first 10 failed, none of the next 20.
        assert_eq!(h.failure_rate.to_vec(), vec![(1.0, 10.0), (2.0, 0.0)]);
        assert_eq!(s.history.p99.last(), Some((2.0, 0.2 * 1.8)));
        s.apply(&Event::Sla(SlaSnapshot {
            workload: 0,
            total: vec![row("failure_rate", true, 3.3, 5.0)],
            sources: vec![("local".into(), vec![row("failure_rate", true, 3.3, 5.0)])],
        }));
        assert_eq!(s.sla.len(), 1);
        assert_eq!(s.sources[0].sla.len(), 1);
        // A new workload restarts the graphs.
        s.apply(&Event::WorkloadStarted(info(1, 2, None)));
        assert!(s.history.throughput.is_empty());
        assert!(s.sources[0].history.throughput.is_empty());
        assert_eq!(s.total, None);
        s.apply(&Event::TaskFinished {
            uuid: s.uuid.clone(),
            status: TaskStatus::Finished,
            pass_sla: true,
        });
        assert_eq!(s.phase, Phase::Finished { pass_sla: true });
    }

    #[test]
    fn sla_abort_is_told_apart_from_user_abort() {
        let finish = Event::TaskFinished {
            uuid: String::new(),
            status: TaskStatus::Aborted,
            pass_sla: false,
        };
        let mut s = TuiState::new();
        s.apply(&started());
        s.apply(&Event::Stopping {
            reason: "SLA failure".into(),
        });
        assert!(matches!(s.phase, Phase::Stopping { .. }));
        s.apply(&finish);
        assert_eq!(s.phase, Phase::AbortedOnSla);
        let mut s = TuiState::new();
        s.apply(&started());
        s.apply(&Event::Stopping {
            reason: "user".into(),
        });
        s.apply(&finish);
        assert_eq!(s.phase, Phase::Aborted);
    }

    #[test]
    fn memory_is_bounded() {
        let mut s = TuiState::new();
        s.apply(&started());
        for i in 0..10_000u64 {
            let t = i as f64;
            s.apply(&progress(
                t,
                1000,
                &[
                    ("a", figures(i, 0, 1.0, 0.1)),
                    ("b", figures(i, 0, 1.0, 0.1)),
                ],
            ));
            s.apply(&Event::Log {
                level: "info".into(),
                message: "x".repeat(2 * LOG_MESSAGE_CHARS),
            });
        }
        // The oldest points dropped out first.
        assert_eq!(s.history.throughput.iter().next(), Some(&(9_700.0, 2.0)));
        for i in 0..(MAX_SOURCES as u64 + 50) {
            s.apply(&progress(
                10_000.0,
                1000,
                &[(&format!("agent-{i}"), figures(1, 0, 1.0, 0.1))],
            ));
        }
        assert_eq!(s.history.throughput.len(), HISTORY);
        assert_eq!(s.history.failure_rate.len(), HISTORY);
        assert_eq!(s.sources[0].history.p95.len(), HISTORY);
        assert_eq!(s.logs.len(), LOG_LINES);
        assert!(
            s.logs
                .iter()
                .all(|l| l.message.chars().count() <= LOG_MESSAGE_CHARS + 1)
        );
        assert_eq!(s.sources.len(), MAX_SOURCES);
        assert_eq!(s.dropped_sources, 52);
    }

    #[test]
    fn stop_needs_confirmation() {
        let mut s = TuiState::new();
        s.apply(&started());
        assert_eq!(s.on_key(KeyCode::Char('s')), Action::AskStop);
        assert!(s.confirm_stop);
        // Other keys do nothing while the popup is open.
        assert_eq!(s.on_key(KeyCode::Char('t')), Action::None);
        assert_eq!(s.on_key(KeyCode::Esc), Action::None);
        assert!(!s.confirm_stop);
        assert_eq!(s.on_key(KeyCode::Char('s')), Action::AskStop);
        assert_eq!(s.on_key(KeyCode::Char('n')), Action::None);
        assert_eq!(s.on_key(KeyCode::Char('s')), Action::AskStop);
        assert_eq!(s.on_key(KeyCode::Char('s')), Action::ConfirmStop);
        // Asking again after a confirmed stop is a no-op with a hint.
        assert_eq!(s.on_key(KeyCode::Char('s')), Action::None);
        assert!(s.notice.is_some());
        let mut s = TuiState::new();
        s.apply(&started());
        s.on_key(KeyCode::Char('s'));
        assert_eq!(s.on_key(KeyCode::Char('y')), Action::ConfirmStop);
    }

    #[test]
    fn q_quits_only_when_over() {
        let mut s = TuiState::new();
        s.apply(&started());
        assert_eq!(s.on_key(KeyCode::Char('q')), Action::AskStop);
        assert_eq!(s.on_key(KeyCode::Esc), Action::None);
        s.apply(&Event::TaskFinished {
            uuid: String::new(),
            status: TaskStatus::Crashed,
            pass_sla: false,
        });
        assert_eq!(s.on_key(KeyCode::Char('s')), Action::None);
        assert_eq!(s.on_key(KeyCode::Char('q')), Action::Quit);
    }

    #[test]
    fn navigation_theme_and_help() {
        let mut s = TuiState::new();
        s.apply(&started());
        s.on_key(KeyCode::Tab);
        assert_eq!(s.selected, 0, "no sources: nothing to select");
        s.apply(&progress(
            1.0,
            1000,
            &[
                ("a", figures(1, 0, 1.0, 0.1)),
                ("b", figures(1, 0, 1.0, 0.1)),
                ("c", figures(1, 0, 1.0, 0.1)),
            ],
        ));
        s.on_key(KeyCode::Tab);
        s.on_key(KeyCode::Down);
        assert_eq!(s.selected_source().map(|r| r.name.as_str()), Some("c"));
        s.on_key(KeyCode::Tab);
        assert_eq!(s.selected, 0, "wraps around");
        s.on_key(KeyCode::Up);
        assert_eq!(s.selected, 2);
        s.on_key(KeyCode::BackTab);
        assert_eq!(s.selected, 1);
        assert_eq!(s.view, View::Throughput);
        s.on_key(KeyCode::Right);
        assert_eq!(s.view, View::Latency);
        s.on_key(KeyCode::Left);
        s.on_key(KeyCode::Left);
        assert_eq!(s.view, View::Failures);
        assert_eq!(s.on_key(KeyCode::Char('t')), Action::CycleTheme);
        assert_eq!(s.on_key(KeyCode::Char('?')), Action::ToggleHelp);
        assert!(s.show_help);
        // Help swallows keys, and q closes it instead of quitting.
        assert_eq!(s.on_key(KeyCode::Char('s')), Action::None);
        assert_eq!(s.on_key(KeyCode::Char('q')), Action::ToggleHelp);
        assert!(!s.show_help);
    }

    /// The agent table comes from `Agents` events; a lost agent's stale figures (the
    /// controller keeps its last report) draw as zero throughput, not a flat line.
    #[test]
    fn agents_fill_the_table_and_a_lost_agent_goes_flat() {
        let mut s = TuiState::new();
        s.apply(&started());
        s.apply(&Event::WorkloadStarted(info(0, 1, Some(1000))));
        let f = figures(10, 1, 50.0, 0.1);
        let step = |s: &mut TuiState, t: f64, second: InstanceState| {
            s.apply(&agents(vec![
                agent_row("local-1", InstanceState::Running, &f, 0.2),
                agent_row("local-2", second, &f, 3.5),
            ]));
            s.apply(&progress(
                t,
                1000,
                &[("local-1", f.clone()), ("local-2", f.clone())],
            ));
        };
        step(&mut s, 1.0, InstanceState::Running);
        assert!(s.distributed);
        assert_eq!(s.agents_alive(), Some((2, 2)));
        let row = &s.sources[1];
        assert_eq!(row.host.as_deref(), Some("loadgen-a"));
        assert_eq!(row.heartbeat_age, Some(3.5));
        assert_eq!(row.clock_offset, Some(0.0015));
        assert_eq!(row.p95, f.p95);
        step(&mut s, 2.0, InstanceState::Lost);
        assert_eq!(s.agents_alive(), Some((1, 2)));
        let lost = &s.sources[1];
        assert_eq!(lost.state, Some(InstanceState::Lost));
        assert_eq!(lost.rate, 0.0);
        assert_eq!(
            lost.history.throughput.to_vec(),
            vec![(1.0, 50.0), (2.0, 0.0)]
        );
        assert_eq!(lost.history.p95.len(), 1, "no latency point once lost");
        assert_eq!(s.sources[0].history.throughput.len(), 2);
    }

    /// The report settles each agent (no `Agents` event follows a workload) and the log
    /// keeps the outcome.
    #[test]
    fn workload_end_settles_agent_states() {
        use crate::events::{DistributedSummary, SourceFigures, WorkloadReport};
        let mut s = TuiState::new();
        s.apply(&started());
        let f = figures(10, 0, 5.0, 0.1);
        s.apply(&agents(vec![
            agent_row("a", InstanceState::Stopping, &f, 0.1),
            agent_row("b", InstanceState::Running, &f, 0.1),
        ]));
        let source = |name: &str, lost| SourceFigures {
            lost,
            ..SourceFigures::from_metric(name, &crate::stats::Metric::default(), 0)
        };
        let report = WorkloadReport {
            connections: None,
            info: info(0, 1, None),
            stats: crate::stats::WorkloadStats::new(Vec::new().into()).table(),
            sla: vec![crate::sla::aborted_manually()],
            pass_sla: false,
            iterations: 20,
            failures: 0,
            load_duration: 1.0,
            full_duration: 1.0,
            start_time: None,
            hooks: Vec::new(),
            sources: vec![source("a", false), source("b", true)],
            errors: Vec::new(),
            distributed: Some(DistributedSummary {
                agents: vec!["a".into(), "b".into()],
                lost: vec!["b".into()],
                reissued: 7,
                duplicates: 0,
                missing: vec!["3 chunks of agent b".into()],
                returned: vec!["c lost at 1.0 s, back at 2.5 s".into()],
                reshares: Vec::new(),
            }),
        };
        s.apply(&Event::WorkloadFinished(Box::new(report)));
        assert_eq!(s.sources[0].state, Some(InstanceState::Done));
        assert_eq!(s.sources[1].state, Some(InstanceState::Lost));
        let log: Vec<String> = s
            .logs
            .iter()
            .map(|l| format!("{} {}", l.level, l.message))
            .collect();
        assert_eq!(
            log,
            [
                "error workload 1/1 Dummy.dummy: 20 iterations, 0 failed, SLA passed; \
                 stopped by user",
                "warn agents lost: b; 7 of their iterations re-run by the others",
                "info agent back: c lost at 1.0 s, back at 2.5 s",
                "warn missing results: 3 chunks of agent b",
            ]
        );
    }

    /// A new workload keeps the rows its first figures name; agents it does not name stay,
    /// said idle (not `done` from the last workload); the selection stays on its agent.
    #[test]
    fn next_workload_keeps_only_its_own_rows() {
        let mut s = TuiState::new();
        s.apply(&started());
        let f = figures(1, 0, 1.0, 0.1);
        s.apply(&progress(1.0, 10, &[("local", f.clone())]));
        s.apply(&Event::WorkloadStarted(info(1, 2, None)));
        assert_eq!(s.sources.len(), 1, "rows stay until new figures arrive");
        s.apply(&agents(vec![
            agent_row("x", InstanceState::Running, &f, 0.1),
            agent_row("y", InstanceState::Running, &f, 0.1),
        ]));
        s.on_key(KeyCode::End);
        assert_eq!(s.selected_source().map(|r| r.name.as_str()), Some("y"));
        s.apply(&Event::WorkloadStarted(info(1, 2, None)));
        s.apply(&agents(vec![
            agent_row("y", InstanceState::Connecting, &f, 0.1),
            agent_row("z", InstanceState::Running, &f, 0.1),
        ]));
        let names: Vec<&str> = s.sources.iter().map(|r| r.name.as_str()).collect();
        assert_eq!(names, ["x", "y", "z"]);
        let idle: Vec<bool> = s.sources.iter().map(|r| r.idle).collect();
        assert_eq!(idle, [true, false, false]);
        assert_eq!(s.agents_alive(), Some((2, 2)));
        assert_eq!(s.agents_idle(), 1);
        assert_eq!(s.selected_source().map(|r| r.name.as_str()), Some("y"));
    }

    #[test]
    fn expected_duration_from_the_runner_or_the_pace() {
        let mut s = TuiState::new();
        s.apply(&started());
        assert_eq!(s.expected(), None);
        s.apply(&Event::WorkloadStarted(info(0, 1, Some(1000))));
        s.apply(&progress(
            10.0,
            1000,
            &[("local", figures(250, 0, 25.0, 0.1))],
        ));
        assert_eq!(s.expected(), Some((40.0, true)));
        let mut w = info(0, 1, None);
        w.expected_duration = Some(90.0);
        s.apply(&Event::WorkloadStarted(w));
        assert_eq!(s.expected(), Some((90.0, false)));
    }

    /// An `rps` ramp's expected end comes from its schedule, not from the pace so far (which
    /// a ramp makes wrong: slow at first), and its target rate is drawn from the schedule.
    #[test]
    fn rps_schedules_give_the_expected_end_and_the_target_rate() {
        use crate::runner::RunnerSpec;
        let runner = RunnerSpec::from_config(
            "rps",
            &crate::task::node::Node::parse(
                "{times: 400, rps: {start: 5, end: 40, step: 5, duration: 1}, max_concurrency: 200}",
            )
            .unwrap(),
            false,
        )
        .unwrap();
        assert_eq!(
            runner.describe(),
            "rps (times 400, rps 5→40/s, +5/s every 1 s, max_concurrency 200)"
        );
        let mut w = info(0, 1, Some(400));
        w.expected_duration = runner.expected_duration();
        w.target_rate = runner.target_rate().cloned();
        w.max_concurrency = runner.max_concurrency();
        assert_eq!(w.max_concurrency, Some(200));
        let mut s = TuiState::new();
        s.apply(&started());
        s.apply(&Event::WorkloadStarted(w));
        for (t, done) in [(1.0, 10), (2.0, 40), (3.0, 90)] {
            s.apply(&progress(t, 400, &[("local", figures(done, 0, 30.0, 0.1))]));
        }
        let (end, estimate) = s.expected().unwrap();
        assert!(!estimate);
        // 5→40/s over 7 s is 157.5 iterations; the other 241.5 at 40/s.
        assert!((end - (7.0 + (399.0 - 157.5) / 40.0)).abs() < 1e-6, "{end}");
        assert_eq!(
            s.history.target.to_vec(),
            vec![(1.0, 10.0), (2.0, 15.0), (3.0, 20.0)]
        );
    }

    /// Ctrl-C and signals stop without the popup and show `stopping` at once (the engine
    /// announces only its own SLA stops); after the end they do nothing.
    #[test]
    fn request_stop_is_immediate_and_idempotent() {
        let mut s = TuiState::new();
        s.apply(&started());
        assert_eq!(s.request_stop(), Action::ConfirmStop);
        assert!(matches!(s.phase, Phase::Stopping { .. }));
        assert_eq!(s.request_stop(), Action::ConfirmStop);
        assert_eq!(
            s.logs
                .iter()
                .filter(|l| l.message.starts_with("stop"))
                .count(),
            1
        );
        s.apply(&Event::TaskFinished {
            uuid: String::new(),
            status: TaskStatus::Aborted,
            pass_sla: true,
        });
        assert_eq!(s.phase, Phase::Aborted, "a user stop is no SLA abort");
        assert_eq!(s.request_stop(), Action::None);
    }

    #[test]
    fn paging_clamps_to_the_table() {
        let mut s = TuiState::new();
        s.apply(&started());
        let names: Vec<String> = (0..25).map(|i| format!("a{i}")).collect();
        let figs: Vec<(&str, Figures)> = names
            .iter()
            .map(|n| (n.as_str(), figures(1, 0, 1.0, 0.1)))
            .collect();
        s.apply(&progress(1.0, 10, &figs));
        s.on_key(KeyCode::PageDown);
        assert_eq!(s.selected, PAGE);
        s.on_key(KeyCode::End);
        assert_eq!(s.selected, 24);
        s.on_key(KeyCode::PageDown);
        assert_eq!(s.selected, 24);
        s.on_key(KeyCode::Home);
        assert_eq!(s.selected, 0);
        s.on_key(KeyCode::PageUp);
        assert_eq!(s.selected, 0);
    }

    #[test]
    fn agents_sort_by_name_with_numbers_as_numbers() {
        let mut s = TuiState::new();
        s.apply(&started());
        let f = figures(1, 0, 1.0, 0.1);
        let row = |n: &str| agent_row(n, InstanceState::Running, &f, 0.1);
        s.apply(&agents(vec![
            row("local-10"),
            row("local-2"),
            row("local-1"),
        ]));
        s.on_key(KeyCode::Down);
        assert_eq!(
            s.selected_source().map(|r| r.name.as_str()),
            Some("local-2")
        );
        s.apply(&agents(vec![row("b"), row("local-3")]));
        let names: Vec<&str> = s.sources.iter().map(|r| r.name.as_str()).collect();
        assert_eq!(names, ["b", "local-1", "local-2", "local-3", "local-10"]);
        assert_eq!(
            s.selected_source().map(|r| r.name.as_str()),
            Some("local-2"),
            "the selection follows its agent"
        );
    }

    /// The moment a criterion starts (or stops) failing stays in the log pane.
    #[test]
    fn sla_changes_are_logged() {
        let mut s = TuiState::new();
        s.apply(&started());
        let sla = |ok: bool| {
            Event::Sla(SlaSnapshot {
                workload: 0,
                total: vec![CriterionStatus {
                    detail: format!("detail {ok}"),
                    ..row("failure_rate", ok, 1.0, 2.0)
                }],
                sources: Vec::new(),
            })
        };
        s.apply(&sla(true));
        s.apply(&sla(true));
        assert!(s.logs.is_empty());
        s.apply(&sla(false));
        s.apply(&sla(false));
        s.apply(&sla(true));
        let log: Vec<String> = s
            .logs
            .iter()
            .map(|l| format!("{} {}", l.level, l.message))
            .collect();
        assert_eq!(
            log,
            ["warn FAIL: detail false", "info PASS again: detail true"]
        );
    }

    /// `l` enlarges the log; ↑ PgUp Home scroll back, and lines arriving meanwhile do not
    /// move what is on screen; `l` again closes it at the newest line.
    #[test]
    fn the_enlarged_log_scrolls_back_and_stays_put() {
        let mut s = TuiState::new();
        for i in 0..30 {
            s.log("info", &format!("line {i}"));
        }
        s.on_key(KeyCode::Char('l'));
        assert_eq!(s.overlay, Overlay::Log);
        s.on_key(KeyCode::PageUp);
        s.on_key(KeyCode::Up);
        assert_eq!(s.log_scroll, PAGE + 1);
        s.log("info", "new");
        assert_eq!(s.log_scroll, PAGE + 2, "the view stays on the same lines");
        s.on_key(KeyCode::Home);
        assert_eq!(s.log_scroll, 30);
        s.on_key(KeyCode::End);
        assert_eq!(s.log_scroll, 0);
        s.on_key(KeyCode::Char('l'));
        assert_eq!(s.overlay, Overlay::None);
    }

    /// While stopping, `q` asks whether to leave without waiting for in-flight iterations;
    /// `y` says so, anything else keeps waiting.
    #[test]
    fn q_while_stopping_asks_to_leave_now() {
        let mut s = TuiState::new();
        s.apply(&started());
        assert_eq!(s.on_key(KeyCode::Char('q')), Action::AskStop);
        assert_eq!(s.on_key(KeyCode::Char('y')), Action::ConfirmStop);
        assert_eq!(s.on_key(KeyCode::Char('q')), Action::AskStop);
        assert!(s.confirm_leave);
        assert_eq!(s.on_key(KeyCode::Char('n')), Action::None);
        assert!(!s.confirm_leave);
        s.on_key(KeyCode::Char('q'));
        assert_eq!(s.on_key(KeyCode::Char('y')), Action::LeaveNow);
    }
}
