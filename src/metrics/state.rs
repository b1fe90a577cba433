//! What `/metrics` shows, kept as plain values and updated from the engine's events by
//! [`RunMetrics::apply`], a pure function: no clock, no I/O, so the unit tests below feed it
//! events and read the values back.
//!
//! Counters are absolute values taken from the events (which carry running totals), never
//! increments: a missed event (a lagging subscriber) loses nothing but time. Each counter only
//! ever rises ([`raise`]), since the engine's live counts (agents' reports) and stored counts
//! (chunks) can briefly disagree.

use std::collections::BTreeMap;

use crate::events::InstanceState;
use crate::events::{
    AgentRow, DurationBuckets, Event, Figures, SlaSnapshot, SourceDetail, WorkloadInfo,
};
use crate::sla::CriterionStatus;

/// Agents that get series of their own, per workload: the first this many by name (among
/// those in the workload's first snapshot, then in the order they appear); the rest are
/// summed under `agent="other"`, so a run with 1,000 agents exports at most 51 series per
/// per-agent family and workload.
pub const AGENT_SERIES: usize = 50;

/// The `agent` label of the agents beyond [`AGENT_SERIES`].
pub const OTHER_AGENT: &str = "other";

/// The run's state, as `rally_tui_run_state{state=…}` shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunState {
    /// Before the engine's first event: agents are registering.
    Starting,
    Running,
    /// No new iterations start (user stop or SLA abort); in-flight ones finish.
    Stopping,
    Finished,
    Aborted,
    Crashed,
}

impl RunState {
    pub const ALL: [RunState; 6] = [
        RunState::Starting,
        RunState::Running,
        RunState::Stopping,
        RunState::Finished,
        RunState::Aborted,
        RunState::Crashed,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            RunState::Starting => "starting",
            RunState::Running => "running",
            RunState::Stopping => "stopping",
            RunState::Finished => "finished",
            RunState::Aborted => "aborted",
            RunState::Crashed => "crashed",
        }
    }
}

/// One SLA criterion's (or one part's, for `max_percentile`) current state.
#[derive(Debug, Clone, PartialEq)]
pub struct SlaGauge {
    pub criterion: String,
    /// The part's name (`p99`) for a criterion with several limits, else empty.
    pub part: String,
    pub value: f64,
    pub limit: f64,
    pub success: bool,
}

/// One runner instance's ("local", or an agent's) values.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct AgentValues {
    pub started: u64,
    pub finished: u64,
    pub failed: u64,
    pub in_flight: u64,
    pub rate: f64,
    pub duration: DurationBuckets,
    pub failures_by_type: BTreeMap<String, u64>,
    pub state: Option<InstanceState>,
}

impl AgentValues {
    /// Adds `other`'s values into these (for `agent="other"`).
    fn add(&mut self, other: &AgentValues) {
        self.started += other.started;
        self.finished += other.finished;
        self.failed += other.failed;
        self.in_flight += other.in_flight;
        self.rate += other.rate;
        add_buckets(&mut self.duration, &other.duration);
        for (t, n) in &other.failures_by_type {
            *self.failures_by_type.entry(t.clone()).or_default() += n;
        }
    }

    fn figures(&mut self, f: &Figures) {
        raise(&mut self.finished, f.iterations);
        raise(&mut self.failed, f.failures);
        raise(&mut self.started, self.finished + self.in_flight);
        self.rate = f.rate;
    }
}

/// Sums two cumulative histograms with the same bounds (an empty one takes the other's).
fn add_buckets(into: &mut DurationBuckets, b: &DurationBuckets) {
    if into.buckets.is_empty() {
        into.buckets = b.buckets.clone();
    } else {
        for (mine, theirs) in into.buckets.iter_mut().zip(&b.buckets) {
            mine.1 += theirs.1;
        }
    }
    into.count += b.count;
    into.sum += b.sum;
}

/// Where a workload sits, as its labels say.
#[derive(Debug, Clone, PartialEq)]
pub struct WorkloadId {
    /// 0-based over the whole task, in run order.
    pub index: usize,
    pub subtask: String,
    pub scenario: String,
    /// Its type (`constant`, `rps`, …), without the parameters.
    pub runner: String,
}

impl WorkloadId {
    fn of(info: &WorkloadInfo) -> WorkloadId {
        WorkloadId {
            index: info.index,
            subtask: info.subtask.clone(),
            scenario: info.scenario.clone(),
            runner: info
                .runner
                .split(" (")
                .next()
                .unwrap_or_default()
                .to_string(),
        }
    }
}

/// One workload's values.
#[derive(Debug, Clone, PartialEq)]
pub struct WorkloadMetrics {
    pub info: WorkloadId,
    pub started: u64,
    pub finished: u64,
    pub failed: u64,
    /// Iterations per second over the last interval.
    pub rate: f64,
    /// Iterations running now, where the runner keeps count (`rps`).
    pub in_flight: Option<u64>,
    pub duration: DurationBuckets,
    /// Top-level atomic actions, by name.
    pub actions: BTreeMap<String, DurationBuckets>,
    pub sla: Vec<SlaGauge>,
    /// Agents by state, once the workload had any agents.
    pub agent_states: Option<BTreeMap<&'static str, u64>>,
    /// Every runner instance, by name.
    pub agents: BTreeMap<String, AgentValues>,
    /// The agents with series of their own, at most [`AGENT_SERIES`].
    pub named: Vec<String>,
    /// The error types with series of their own over all agents: the first
    /// [`ERROR_KINDS`](crate::stats::ERROR_KINDS) seen (agents by name, each one's types in
    /// its order); later ones count under `other`, and a type never moves once it has a
    /// series (a counter that did would break `rate()`).
    pub error_types: Vec<String>,
}

impl WorkloadMetrics {
    fn new(info: &WorkloadInfo) -> WorkloadMetrics {
        WorkloadMetrics {
            info: WorkloadId::of(info),
            started: 0,
            finished: 0,
            failed: 0,
            rate: 0.0,
            in_flight: None,
            duration: DurationBuckets::default(),
            actions: BTreeMap::new(),
            sla: Vec::new(),
            agent_states: None,
            agents: BTreeMap::new(),
            named: Vec::new(),
            error_types: Vec::new(),
        }
    }

    /// The runner instance `name`'s values; newly seen names get their own series while
    /// there is room. Callers pass a snapshot's names sorted, so "first" is "first by name".
    fn agent(&mut self, name: &str) -> &mut AgentValues {
        if !self.agents.contains_key(name) {
            if self.named.len() < AGENT_SERIES {
                self.named.push(name.to_string());
            }
            self.agents.insert(name.to_string(), AgentValues::default());
        }
        self.agents.entry(name.to_string()).or_default()
    }

    /// Failures by type over all runner instances, capped as [`Self::error_types`] says.
    pub fn failures_by_type(&self) -> BTreeMap<String, u64> {
        let mut out = BTreeMap::new();
        for a in self.agents.values() {
            for (t, n) in &a.failures_by_type {
                *out.entry(t.clone()).or_default() += n;
            }
        }
        self.capped(out)
    }

    /// `by_type` with the types beyond [`Self::error_types`] summed under `other`.
    pub fn capped(&self, by_type: BTreeMap<String, u64>) -> BTreeMap<String, u64> {
        let mut out = BTreeMap::new();
        for (t, n) in by_type {
            let t = if self.error_types.contains(&t) {
                t
            } else {
                crate::engine::OTHER_TYPE.to_string()
            };
            *out.entry(t).or_default() += n;
        }
        out
    }

    /// Gives the types first seen a series of their own while there is room.
    fn learn_types(&mut self, types: &[(String, u64)]) {
        for (t, _) in types {
            if t != crate::engine::OTHER_TYPE
                && self.error_types.len() < crate::stats::ERROR_KINDS
                && !self.error_types.contains(t)
            {
                self.error_types.push(t.clone());
            }
        }
    }

    /// The series of the per-agent families: each named agent's values, then the rest summed
    /// as `other` (when there are any).
    pub fn agent_series(&self) -> Vec<(&str, AgentValues)> {
        let mut out: Vec<(&str, AgentValues)> = self
            .named
            .iter()
            .filter_map(|n| self.agents.get(n).map(|v| (n.as_str(), v.clone())))
            .collect();
        let mut rest = AgentValues::default();
        let mut any = false;
        for (name, v) in &self.agents {
            if !self.named.contains(name) {
                rest.add(v);
                any = true;
            }
        }
        if any {
            out.push((OTHER_AGENT, rest));
        }
        // The same error types as the workload's series, the rest under `other`.
        for (_, v) in &mut out {
            v.failures_by_type = self.capped(std::mem::take(&mut v.failures_by_type));
        }
        out
    }

    fn agent_rows(&mut self, rows: &[AgentRow]) {
        let mut sorted: Vec<&AgentRow> = rows.iter().collect();
        sorted.sort_by(|a, b| a.name.cmp(&b.name));
        let mut states: BTreeMap<&'static str, u64> = BTreeMap::new();
        for row in sorted {
            *states.entry(row.state.as_str()).or_default() += 1;
            let a = self.agent(&row.name);
            raise(&mut a.finished, row.iterations);
            raise(&mut a.failed, row.failures);
            raise(&mut a.started, a.finished + a.in_flight);
            a.rate = row.rate;
            a.state = Some(row.state);
        }
        self.agent_states = Some(states);
    }

    fn sources(&mut self, sources: &[SourceDetail]) {
        let mut sorted: Vec<&SourceDetail> = sources.iter().collect();
        sorted.sort_by(|a, b| a.name.cmp(&b.name));
        for s in sorted {
            self.learn_types(&s.failures_by_type);
            let a = self.agent(&s.name);
            a.duration = s.duration.clone();
            a.failures_by_type = s.failures_by_type.iter().cloned().collect();
            if let Some(n) = s.in_flight {
                a.in_flight = n;
            }
            raise(&mut a.started, a.finished + a.in_flight);
        }
    }

    /// At the workload's end no agents snapshot follows: each agent is lost (as the
    /// report says) or done, as the TUI settles them, not left `running` or `stopping`.
    fn settle_agents(&mut self, sources: &[crate::events::SourceFigures]) {
        if self.agent_states.is_none() {
            return;
        }
        let mut states: BTreeMap<&'static str, u64> = BTreeMap::new();
        for (name, a) in &mut self.agents {
            let Some(state) = a.state else { continue };
            let lost =
                state == InstanceState::Lost || sources.iter().any(|s| s.lost && s.name == *name);
            let settled = if lost {
                InstanceState::Lost
            } else {
                InstanceState::Done
            };
            a.state = Some(settled);
            *states.entry(settled.as_str()).or_default() += 1;
        }
        self.agent_states = Some(states);
    }

    fn sla(&mut self, snapshot: &SlaSnapshot) {
        self.sla = snapshot.total.iter().flat_map(gauges).collect();
    }
}

/// A criterion's gauges: one, or one per part.
fn gauges(c: &CriterionStatus) -> Vec<SlaGauge> {
    if c.parts.is_empty() {
        vec![SlaGauge {
            criterion: c.criterion.clone(),
            part: String::new(),
            value: c.value,
            limit: c.limit,
            success: c.success,
        }]
    } else {
        c.parts
            .iter()
            .map(|p| SlaGauge {
                criterion: c.criterion.clone(),
                part: p.name.clone(),
                value: p.value,
                limit: p.limit,
                success: p.success,
            })
            .collect()
    }
}

/// A counter's new value: never lower than what was already shown.
fn raise(counter: &mut u64, value: u64) {
    *counter = (*counter).max(value);
}

/// Everything `/metrics` shows of one run.
#[derive(Debug, Clone, PartialEq)]
pub struct RunMetrics {
    /// The task's uuid, once the engine has started.
    pub task: String,
    pub title: String,
    pub state: RunState,
    /// By [`WorkloadInfo::index`].
    pub workloads: Vec<WorkloadMetrics>,
}

impl Default for RunMetrics {
    fn default() -> Self {
        RunMetrics {
            task: String::new(),
            title: String::new(),
            state: RunState::Starting,
            workloads: Vec::new(),
        }
    }
}

impl RunMetrics {
    /// Takes in one engine event.
    pub fn apply(&mut self, event: &Event) {
        match event {
            Event::TaskStarted {
                uuid,
                title,
                workloads,
            } => {
                self.task = uuid.clone();
                self.title = title.clone();
                self.state = RunState::Running;
                for info in workloads {
                    self.workload_info(info);
                }
            }
            Event::WorkloadStarted(info) => self.workload_info(info),
            Event::Count {
                workload,
                iterations,
                failures,
                ..
            } => {
                if let Some(w) = self.workload(*workload) {
                    raise(&mut w.finished, *iterations);
                    raise(&mut w.failed, *failures);
                    raise(&mut w.started, w.finished + w.in_flight.unwrap_or(0));
                }
            }
            Event::Progress(p) => {
                if let Some(w) = self.workload(p.workload) {
                    raise(&mut w.finished, p.all.iterations);
                    raise(&mut w.failed, p.all.failures);
                    w.rate = p.all.rate;
                    w.in_flight = p.in_flight;
                    raise(&mut w.started, w.finished + w.in_flight.unwrap_or(0));
                    let mut sources: Vec<&(String, Figures)> = p.sources.iter().collect();
                    sources.sort_by(|a, b| a.0.cmp(&b.0));
                    for (name, f) in sources {
                        w.agent(name).figures(f);
                    }
                }
            }
            Event::Agents(a) => {
                if let Some(w) = self.workload(a.workload) {
                    w.agent_rows(&a.agents);
                }
            }
            Event::Sla(s) => {
                if let Some(w) = self.workload(s.workload) {
                    w.sla(s);
                }
            }
            Event::Statistics(s) => {
                if let (Some(w), Some(d)) = (self.workload(s.workload), &s.detail) {
                    w.duration = d.duration.clone();
                    w.actions = d.actions.iter().cloned().collect();
                    w.sources(&d.sources);
                }
            }
            Event::WorkloadFinished(report) => {
                if let Some(w) = self.workload(report.info.index) {
                    // The stored totals are the last word; nothing runs any more.
                    raise(&mut w.finished, report.iterations);
                    raise(&mut w.failed, report.failures);
                    raise(&mut w.started, w.finished);
                    w.rate = 0.0;
                    w.in_flight = w.in_flight.map(|_| 0);
                    w.sla = report.sla.iter().flat_map(gauges).collect();
                    for a in w.agents.values_mut() {
                        a.rate = 0.0;
                        a.in_flight = 0;
                    }
                    w.settle_agents(&report.sources);
                }
            }
            Event::Stopping { .. } => self.state = RunState::Stopping,
            Event::TaskFinished { status, .. } => {
                self.state = match status {
                    crate::events::TaskStatus::Running => RunState::Running,
                    crate::events::TaskStatus::Finished => RunState::Finished,
                    crate::events::TaskStatus::Aborted => RunState::Aborted,
                    crate::events::TaskStatus::Crashed => RunState::Crashed,
                };
            }
            Event::Log { .. } => {}
        }
    }

    fn workload_info(&mut self, info: &WorkloadInfo) {
        match self
            .workloads
            .iter_mut()
            .find(|w| w.info.index == info.index)
        {
            Some(w) => w.info = WorkloadId::of(info),
            None => {
                self.workloads.push(WorkloadMetrics::new(info));
                self.workloads.sort_by_key(|w| w.info.index);
            }
        }
    }

    fn workload(&mut self, index: usize) -> Option<&mut WorkloadMetrics> {
        self.workloads.iter_mut().find(|w| w.info.index == index)
    }
}

#[cfg(test)]
mod tests;
