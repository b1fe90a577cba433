//! The source table's rows (one per agent, or the local runner), kept in natural name
//! order and capped at [`MAX_SOURCES`].

use super::TuiState;
use super::history::History;
use crate::events::InstanceState;
use crate::events::{AgentRow, AgentsSnapshot, Figures};
use crate::sla::CriterionStatus;

/// Most sources tracked: far above the 100 agents SPEC §7 asks for, but a cap, so a stream
/// of ever new source names cannot grow the table without limit.
pub const MAX_SOURCES: usize = 1024;

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
    pub(super) fn is_lost(&self) -> bool {
        self.state == Some(InstanceState::Lost)
    }

    pub(super) fn on_progress(&mut self, t: f64, f: &Figures) {
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

    pub(super) fn on_agent(&mut self, a: &AgentRow) {
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
    pub(super) fn reset(&mut self) {
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

impl TuiState {
    /// After a workload change, drops the rows the new workload's first figures do not
    /// name (e.g. `local` when the next workload runs on agents), keeping the selection on
    /// the same name where it survives.
    pub(super) fn keep_rows<'a>(&mut self, names: impl Iterator<Item = &'a str> + Clone) {
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

    pub(super) fn agents(&mut self, a: &AgentsSnapshot) {
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
    pub(super) fn sort_rows(&mut self) {
        let selected = self.selected_source().map(|s| s.name.clone());
        self.sources.sort_by_cached_key(|s| natural_key(&s.name));
        if let Some(i) = selected.and_then(|n| self.sources.iter().position(|s| s.name == n)) {
            self.selected = i;
        }
    }

    /// The row of `name`, added on first sight (up to [`MAX_SOURCES`]).
    pub(super) fn source_mut(&mut self, name: &str) -> Option<&mut SourceRow> {
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
}

/// Sorts names with their digit runs as numbers: `("local-", 2, "")` before
/// `("local-", 10, "")`.
pub(super) fn natural_key(name: &str) -> Vec<(String, u64)> {
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
