//! What the TUI shows, folded from engine [`Event`]s and key presses.
//!
//! `TuiState` is pure: it reads no clock and does no I/O, so a recorded event sequence always
//! produces the same screen (the snapshot tests rely on this), and every buffer in it is
//! bounded, so a run of days uses as much memory as a run of minutes.

use std::collections::VecDeque;

use crossterm::event::KeyCode;

use crate::events::{Event, Figures, Progress, TaskStatus, WorkloadInfo};
use crate::sla::{ABORTED_ON_SLA, CriterionStatus};

/// Points kept per time series: 300 progress events is 5 minutes at one per second, which
/// is as many as a chart a few hundred cells wide can show anyway.
pub const HISTORY: usize = 300;
/// Log lines kept for the log pane.
pub const LOG_LINES: usize = 200;
/// Longest log message kept (in chars); the rest is cut so one huge message cannot hold
/// memory.
pub const LOG_MESSAGE_CHARS: usize = 500;
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
            prev: (0, 0),
        }
    }
}

impl History {
    fn record(&mut self, t: f64, f: &Figures) {
        self.throughput.push(t, f.rate);
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
    /// 95th percentile of all durations so far, seconds.
    pub p95: Option<f64>,
    /// Agent host; `None` until the distributed controller reports it.
    pub host: Option<String>,
    /// Agent state ("running", "lost", ...); `None` for the local runner.
    pub state: Option<String>,
    /// Seconds since the agent's last heartbeat.
    pub heartbeat_age: Option<f64>,
    /// Agent clock minus controller clock, seconds.
    pub clock_offset: Option<f64>,
    /// This source's SLA rows, from the latest `Sla` event.
    pub sla: Vec<CriterionStatus>,
    pub history: History,
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
    /// Set once the user confirmed a stop, so `s` does not ask again.
    pub stop_requested: bool,
    /// One-line hint for the footer (e.g. why `q` did not quit).
    pub notice: Option<String>,
    /// Sources seen after [`MAX_SOURCES`] was reached, not tracked.
    pub dropped_sources: u64,
    sla_abort_seen: bool,
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
            stop_requested: false,
            notice: None,
            dropped_sources: 0,
            sla_abort_seen: false,
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
                self.phase = Phase::Running;
            }
            Event::WorkloadStarted(info) => {
                // Graphs are per workload: elapsed restarts at 0 and the scenario changes.
                self.workload = Some(info.clone());
                self.total = info.total;
                self.elapsed = 0.0;
                self.all = Figures::default();
                self.sla.clear();
                self.history.clear();
                for s in &mut self.sources {
                    s.history.clear();
                    s.sla.clear();
                    s.iterations = 0;
                    s.failures = 0;
                    s.rate = 0.0;
                    s.p95 = None;
                }
                if self.phase == Phase::Waiting {
                    self.phase = Phase::Running;
                }
            }
            Event::Progress(p) => self.progress(p),
            Event::Sla(s) => {
                self.sla.clone_from(&s.total);
                for (name, rows) in &s.sources {
                    if let Some(src) = self.source_mut(name) {
                        src.sla.clone_from(rows);
                    }
                }
            }
            Event::WorkloadFinished(report) => {
                self.sla.clone_from(&report.sla);
                if report.sla.iter().any(|c| c.criterion == ABORTED_ON_SLA) {
                    self.sla_abort_seen = true;
                }
                for f in &report.sources {
                    if let Some(src) = self.source_mut(&f.name) {
                        src.iterations = f.iterations;
                        src.failures = f.failures;
                        src.p95 = f.p95.or(src.p95);
                    }
                }
                self.all.iterations = report.iterations;
                self.all.failures = report.failures;
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
                status, pass_sla, ..
            } => {
                self.phase = match status {
                    TaskStatus::Running | TaskStatus::Finished => Phase::Finished {
                        pass_sla: *pass_sla,
                    },
                    TaskStatus::Aborted if self.sla_abort_seen => Phase::AbortedOnSla,
                    TaskStatus::Aborted => Phase::Aborted,
                    TaskStatus::Crashed => Phase::Crashed,
                };
                self.confirm_stop = false;
                self.notice = Some("task over: q quits".into());
            }
            Event::Log { level, message } => self.log(level, message),
            // The agent table is drawn from these (issue #6 builds on them).
            Event::Agents(_) => {}
        }
    }

    fn progress(&mut self, p: &Progress) {
        self.elapsed = p.elapsed;
        self.total = p.total.or(self.total);
        self.all = p.all.clone();
        self.history.record(p.elapsed, &p.all);
        for (name, f) in &p.sources {
            if let Some(src) = self.source_mut(name) {
                src.iterations = f.iterations;
                src.failures = f.failures;
                src.rate = f.rate;
                src.p95 = f.p95_total;
                src.history.record(p.elapsed, f);
            }
        }
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
        self.logs.push_back(LogLine {
            level: level.to_owned(),
            message,
        });
    }

    /// The source shown in the second chart, if any.
    pub fn selected_source(&self) -> Option<&SourceRow> {
        self.sources.get(self.selected)
    }

    /// Handles one key; popups take the keys first, so a stray key never stops a run.
    pub fn on_key(&mut self, key: KeyCode) -> Action {
        self.notice = None;
        if self.confirm_stop {
            return match key {
                KeyCode::Char('s' | 'S' | 'y' | 'Y') => {
                    self.confirm_stop = false;
                    self.stop_requested = true;
                    self.notice = Some("stopping: in-flight iterations finish".into());
                    Action::ConfirmStop
                }
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
        match key {
            KeyCode::Char('s' | 'S') => self.ask_stop(),
            KeyCode::Char('q' | 'Q') => {
                if self.phase.is_over() {
                    Action::Quit
                } else {
                    self.ask_stop()
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
            KeyCode::Right | KeyCode::Char('l') => {
                self.view = self.view.step(true);
                Action::None
            }
            KeyCode::Left | KeyCode::Char('h') => {
                self.view = self.view.step(false);
                Action::None
            }
            _ => Action::None,
        }
    }

    fn ask_stop(&mut self) -> Action {
        if self.phase.is_over() {
            self.notice = Some("task over: q quits".into());
            Action::None
        } else if self.stop_requested || matches!(self.phase, Phase::Stopping { .. }) {
            self.notice = Some("already stopping: waiting for in-flight iterations".into());
            Action::None
        } else {
            self.confirm_stop = true;
            Action::AskStop
        }
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::events::SlaSnapshot;
    use crate::tui::fixtures::{figures, info, progress, started};

    fn row(name: &str, success: bool, value: f64, limit: f64) -> CriterionStatus {
        CriterionStatus {
            criterion: name.into(),
            success,
            detail: String::new(),
            value,
            limit,
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
}
