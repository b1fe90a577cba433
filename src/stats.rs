//! Aggregate statistics of a workload: Rally's "Response Times" table (per atomic action and
//! in total) and the figures of the live progress line.
//!
//! Percentiles come from HDR histograms in microseconds (3 significant digits, so within
//! 0.1%) instead of Rally's sorted list of every value: memory stays constant however many
//! iterations run, and histograms merge exactly across agents.

use serde::{Deserialize, Serialize};

use crate::chunk::{ActionSpan, Chunk, Dials, IterationRecord};
use crate::sla::histogram::DurationHistogram;

pub fn micros(seconds: f64) -> u64 {
    (seconds * 1e6).round().clamp(0.0, u64::MAX as f64) as u64
}

/// Distribution of one measured quantity.
///
/// The histogram is sized for what it holds: its non-zero counters while there are few,
/// then HDR's counters up to the largest value (one hour at most; 23,552 counters, 188 KB,
/// where 1 s iterations need 11,264). A controller keeps one per agent, each of a handful of
/// distinct durations for a steady load. Bucket boundaries do not depend on the size.
#[derive(Debug, Clone)]
pub struct Metric {
    pub hist: DurationHistogram,
    pub count: u64,
    pub success: u64,
    pub sum: f64,
    pub min: f64,
    pub max: f64,
}

impl Default for Metric {
    fn default() -> Metric {
        Metric {
            hist: DurationHistogram::new(),
            count: 0,
            success: 0,
            sum: 0.0,
            min: f64::INFINITY,
            max: f64::NEG_INFINITY,
        }
    }
}

impl Metric {
    #[inline]
    pub fn add(&mut self, seconds: f64, success: bool) {
        // Clamped to one hour.
        self.hist.record_micros(micros(seconds));
        self.count += 1;
        self.success += u64::from(success);
        self.sum += seconds;
        self.min = self.min.min(seconds);
        self.max = self.max.max(seconds);
    }

    pub fn merge(&mut self, other: &Metric) {
        // Same precision on both sides, and `self` grows to hold `other`: fails only if
        // growing cannot allocate.
        let _ = self.hist.add(&other.hist);
        self.count += other.count;
        self.success += other.success;
        self.sum += other.sum;
        self.min = self.min.min(other.min);
        self.max = self.max.max(other.max);
    }

    /// Seconds at quantile `q` in [0, 1]; `None` without data.
    pub fn quantile(&self, q: f64) -> Option<f64> {
        (self.count > 0).then(|| {
            let v = self.hist.value_at_quantile(q) as f64 / 1e6;
            // The histogram rounds to its buckets; never report outside the exact range.
            v.clamp(self.min, self.max)
        })
    }

    pub fn row(&self, name: String) -> StatsRow {
        let some = self.count > 0;
        StatsRow {
            name,
            min: some.then_some(self.min),
            median: self.quantile(0.5),
            p90: self.quantile(0.9),
            p95: self.quantile(0.95),
            max: some.then_some(self.max),
            avg: some.then(|| self.sum / self.count as f64),
            success: some.then(|| self.success as f64 * 100.0 / self.count as f64),
            count: self.count,
            children: Vec::new(),
        }
    }
}

/// One row of the Response Times table; `None` prints as `n/a`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StatsRow {
    pub name: String,
    pub min: Option<f64>,
    pub median: Option<f64>,
    pub p90: Option<f64>,
    pub p95: Option<f64>,
    pub max: Option<f64>,
    pub avg: Option<f64>,
    /// Percent of the counted iterations that succeeded.
    pub success: Option<f64>,
    pub count: u64,
    pub children: Vec<StatsRow>,
}

/// Rally's `MainStatsTable`: atomic actions (nested) and the `total` row.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StatsTable {
    pub atomics: Vec<StatsRow>,
    pub total: StatsRow,
}

/// Actions deeper than this are not tabulated (Rally processes three levels).
const TABLE_DEPTH: u8 = 3;

const NO_NAME_ACTION: &str = "<no-name-action>";

struct ActionRow {
    name: Option<u16>,
    children: Vec<usize>,
    metric: Metric,
    /// How many times the action ran within the iterations this row counts (Rally shows
    /// `name (xN)` when more than once).
    per_iteration: u32,
    /// The earliest start of an iteration it counts. Rally orders rows by first appearance
    /// in its iterations sorted by timestamp; chunks reach us in another order (agents,
    /// slots), so the table sorts siblings by this, not by when we made the row.
    first: f64,
}

/// One iteration's runs of one action name under one parent group.
#[derive(Clone, Copy)]
struct Pending {
    /// Index of the parent group in the same iteration's groups.
    parent: Option<usize>,
    name: Option<u16>,
    /// The row it went to, once known (for its children).
    row: usize,
    sum: f64,
    count: u32,
    failed: bool,
}

/// Everything the engine learns about a workload from its chunks.
pub struct WorkloadStats {
    names: std::sync::Arc<[String]>,
    rows: Vec<ActionRow>,
    roots: Vec<usize>,
    pending: Vec<Pending>,
    pub duration: Metric,
    pub idle: Metric,
    pub iterations: u64,
    pub failures: u64,
    /// Rally's `load_started_at` / `load_finished_at`.
    pub first_timestamp: f64,
    pub last_finish: f64,
    /// The most common errors: (type, message, count), at most [`ERROR_KINDS`] kinds.
    pub errors: Vec<ErrorCount>,
    pub connections: ConnectionCounts,
}

/// A workload's connections, summed from its records' [`Dials`]: how many were opened, how
/// many of the TLS ones resumed a session, and how many iterations reused their slot's
/// connection instead. All zero for scenarios that open none.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConnectionCounts {
    pub plain: u64,
    pub tls_full: u64,
    pub tls_resumed: u64,
    /// Iterations that opened no connection.
    pub reused: u64,
}

impl ConnectionCounts {
    pub fn add(&mut self, dials: &Dials) {
        if dials.is_empty() {
            self.reused += 1;
        } else {
            self.plain += u64::from(dials.plain);
            self.tls_full += u64::from(dials.tls_full);
            self.tls_resumed += u64::from(dials.tls_resumed);
        }
    }

    /// New connections, of every kind.
    pub fn opened(&self) -> u64 {
        self.plain + self.tls_full + self.tls_resumed
    }
}

/// How many distinct errors a workload keeps counts of; the rest are only counted as
/// failures (every one is still in the stored records).
pub const ERROR_KINDS: usize = 20;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ErrorCount {
    pub etype: String,
    pub message: String,
    pub count: u64,
}

/// Counts one error by type and message in `errors`, which keeps at most [`ERROR_KINDS`]
/// kinds (the first seen; later new kinds are only failures).
pub fn count_error(errors: &mut Vec<ErrorCount>, etype: &str, message: &str) {
    if let Some(e) = errors
        .iter_mut()
        .find(|e| e.etype == etype && e.message == message)
    {
        e.count += 1;
    } else if errors.len() < ERROR_KINDS {
        errors.push(ErrorCount {
            etype: etype.to_string(),
            message: message.to_string(),
            count: 1,
        });
    }
}

impl WorkloadStats {
    pub fn new(names: std::sync::Arc<[String]>) -> WorkloadStats {
        WorkloadStats {
            names,
            rows: Vec::new(),
            roots: Vec::new(),
            pending: Vec::new(),
            duration: Metric::default(),
            idle: Metric::default(),
            iterations: 0,
            failures: 0,
            first_timestamp: f64::INFINITY,
            last_finish: f64::NEG_INFINITY,
            errors: Vec::new(),
            connections: ConnectionCounts::default(),
        }
    }

    pub fn add_chunk(&mut self, chunk: &Chunk) {
        for record in &chunk.records {
            self.add(record, chunk.actions_of(record));
        }
    }

    #[inline]
    pub fn add(&mut self, r: &IterationRecord, actions: &[ActionSpan]) {
        let ok = r.error.is_none();
        self.iterations += 1;
        self.failures += u64::from(!ok);
        self.duration.add(r.duration, ok);
        self.idle.add(r.idle_duration, ok);
        self.first_timestamp = self.first_timestamp.min(r.timestamp);
        self.last_finish = self.last_finish.max(r.timestamp + r.duration);
        if let Some(e) = &r.error {
            self.count_error(&e.etype, &e.message);
        }
        self.connections.add(&r.dials);
        if !actions.is_empty() || (!ok && !self.names.is_empty()) {
            self.add_actions(r, actions);
        }
    }

    fn count_error(&mut self, etype: &str, message: &str) {
        count_error(&mut self.errors, etype, message);
    }

    /// The row of `name` run `per_iteration` times under `parent`: Rally keeps a row per
    /// name *and* count (`foo` for iterations that ran it once, `foo (x2)` for those that
    /// ran it twice), each with its own statistics.
    fn row_for(&mut self, parent: Option<usize>, name: Option<u16>, per_iteration: u32) -> usize {
        let siblings = match parent {
            Some(p) => &self.rows[p].children,
            None => &self.roots,
        };
        if let Some(&i) = siblings
            .iter()
            .find(|&&i| self.rows[i].name == name && self.rows[i].per_iteration == per_iteration)
        {
            return i;
        }
        let i = self.rows.len();
        self.rows.push(ActionRow {
            name,
            children: Vec::new(),
            metric: Metric::default(),
            per_iteration,
            first: f64::INFINITY,
        });
        match parent {
            Some(p) => self.rows[p].children.push(i),
            None => self.roots.push(i),
        }
        i
    }

    /// One iteration's actions: first grouped by name under their parent group (summing
    /// durations and counting runs, as Rally's `merge_atomic_actions`), then each group
    /// added to the row of its name and count.
    fn add_actions(&mut self, r: &IterationRecord, actions: &[ActionSpan]) {
        self.pending.clear();
        // The group open at each depth, for this iteration's spans so far.
        let mut at_depth = [None::<usize>; TABLE_DEPTH as usize];
        let mut any_failed = false;
        let mut top_sum = 0.0;
        for span in actions {
            if span.depth >= TABLE_DEPTH {
                continue;
            }
            let parent = match span.depth {
                0 => None,
                // A span deeper than any open parent (a damaged or foreign chunk) has no
                // row to go under: skipped, never a panic.
                d => match at_depth[d as usize - 1] {
                    Some(p) => Some(p),
                    None => continue,
                },
            };
            at_depth[span.depth as usize] =
                Some(self.pend(parent, Some(span.name), span.duration(), span.failed));
            // A new span at this depth closes the deeper ones.
            for deeper in at_depth.iter_mut().skip(span.depth as usize + 1) {
                *deeper = None;
            }
            any_failed |= span.failed;
            if span.depth == 0 {
                top_sum += span.duration();
            }
        }
        if r.error.is_some() && !any_failed {
            // Rally's pseudo-action for a failure outside every atomic action.
            self.pend(None, None, (r.duration - top_sum).max(0.0), true);
        }
        // Groups come parents first (spans are in pre-order), so a parent's row is known
        // before its children's.
        for g in 0..self.pending.len() {
            let p = self.pending[g];
            let parent_row = p.parent.map(|pg| self.pending[pg].row);
            let row = self.row_for(parent_row, p.name, p.count);
            self.pending[g].row = row;
            let row = &mut self.rows[row];
            row.metric.add(p.sum, !p.failed);
            row.first = row.first.min(r.timestamp);
        }
    }

    /// Adds a run of `name` under group `parent` to this iteration's groups; returns the
    /// group's index.
    fn pend(
        &mut self,
        parent: Option<usize>,
        name: Option<u16>,
        seconds: f64,
        failed: bool,
    ) -> usize {
        match self
            .pending
            .iter()
            .position(|p| p.parent == parent && p.name == name)
        {
            Some(i) => {
                let p = &mut self.pending[i];
                p.sum += seconds;
                p.count += 1;
                p.failed |= failed;
                i
            }
            None => {
                self.pending.push(Pending {
                    parent,
                    name,
                    row: 0,
                    sum: seconds,
                    count: 1,
                    failed,
                });
                self.pending.len() - 1
            }
        }
    }

    /// Seconds between the first start and the last end (Rally's `load_duration`).
    pub fn load_duration(&self) -> f64 {
        if self.iterations == 0 {
            0.0
        } else {
            (self.last_finish - self.first_timestamp).max(0.0)
        }
    }

    pub fn table(&self) -> StatsTable {
        let mut total = self.duration.row("total".into());
        total.children = vec![
            self.duration.row("duration".into()),
            self.idle.row("idle_duration".into()),
        ];
        StatsTable {
            atomics: self
                .in_rallys_order(&self.roots)
                .into_iter()
                .map(|i| self.action_row(i))
                .collect(),
            total,
        }
    }

    /// The top-level atomic actions' rows, by the names the table gives them.
    pub fn top_level_actions(&self) -> impl Iterator<Item = (String, &Metric)> {
        self.in_rallys_order(&self.roots)
            .into_iter()
            .map(|i| (self.row_name(i), &self.rows[i].metric))
    }

    /// Sibling rows by the earliest iteration each counts (a stable sort: rows first seen in
    /// the same iteration keep that iteration's order of actions, as in Rally).
    fn in_rallys_order(&self, rows: &[usize]) -> Vec<usize> {
        let mut rows = rows.to_vec();
        rows.sort_by(|&a, &b| self.rows[a].first.total_cmp(&self.rows[b].first));
        rows
    }

    fn row_name(&self, i: usize) -> String {
        let row = &self.rows[i];
        let name = match row.name {
            Some(id) => self.names.get(id as usize).cloned().unwrap_or_default(),
            None => NO_NAME_ACTION.to_string(),
        };
        if row.per_iteration > 1 {
            format!("{name} (x{})", row.per_iteration)
        } else {
            name
        }
    }

    fn action_row(&self, i: usize) -> StatsRow {
        let row = &self.rows[i];
        let mut out = row.metric.row(self.row_name(i));
        out.children = self
            .in_rallys_order(&row.children)
            .into_iter()
            .map(|c| self.action_row(c))
            .collect();
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chunk::IterationError;

    fn span(name: u16, depth: u8, start: f64, end: f64) -> ActionSpan {
        ActionSpan {
            name,
            depth,
            failed: false,
            started_at: start,
            finished_at: end,
        }
    }

    fn record(duration: f64, error: bool, actions: std::ops::Range<u32>) -> IterationRecord {
        IterationRecord {
            iteration: 1,
            timestamp: 100.0,
            duration,
            idle_duration: 0.0,
            lateness: 0.0,
            error: error.then(|| Box::new(IterationError::new("E", "m"))),
            output: None,
            actions,
            dials: Default::default(),
        }
    }

    #[test]
    fn nested_rows_and_repeats() {
        let names: std::sync::Arc<[String]> = vec!["foo".to_string(), "bar".to_string()].into();
        let mut s = WorkloadStats::new(names);
        let mut chunk = Chunk::new("local".into());
        chunk.actions = vec![
            span(0, 0, 0.0, 1.0),
            span(1, 1, 0.0, 0.5),
            span(1, 1, 0.5, 1.0),
            span(0, 0, 1.0, 2.0),
        ];
        chunk.records.push(record(2.0, false, 0..4));
        s.add_chunk(&chunk);
        let t = s.table();
        assert_eq!(t.atomics.len(), 1);
        assert_eq!(t.atomics[0].name, "foo (x2)");
        assert_eq!(t.atomics[0].avg, Some(2.0));
        assert_eq!(t.atomics[0].children[0].name, "bar (x2)");
        assert_eq!(t.total.count, 1);
        assert_eq!(t.total.children[0].name, "duration");
    }

    /// Rows come in the order of the iterations' timestamps, as Rally sorts them, not in the
    /// order chunks arrived: a later chunk holding an earlier iteration puts its row first.
    #[test]
    fn rows_follow_iteration_timestamps_not_arrival() {
        let names: std::sync::Arc<[String]> = vec!["foo".to_string(), "bar".to_string()].into();
        let mut s = WorkloadStats::new(names);
        let mut late = record(1.0, false, 0..2);
        late.timestamp = 200.0;
        let mut early = record(1.0, false, 0..1);
        early.timestamp = 100.0;
        // Arrives first, starts later.
        s.add(&late, &[span(0, 0, 0.0, 0.5), span(0, 0, 0.5, 1.0)]);
        s.add(&early, &[span(0, 0, 0.0, 1.0)]);
        let children =
            |t: &StatsTable| t.atomics.iter().map(|r| r.name.clone()).collect::<Vec<_>>();
        assert_eq!(children(&s.table()), ["foo", "foo (x2)"]);
        let top: Vec<String> = s.top_level_actions().map(|(n, _)| n).collect();
        assert_eq!(top, ["foo", "foo (x2)"]);
        // Nested rows too.
        let mut s = WorkloadStats::new(vec!["foo".to_string(), "bar".to_string()].into());
        s.add(
            &late,
            &[
                span(0, 0, 0.0, 1.0),
                span(1, 1, 0.0, 0.5),
                span(1, 1, 0.5, 1.0),
            ],
        );
        s.add(&early, &[span(0, 0, 0.0, 1.0), span(1, 1, 0.0, 1.0)]);
        let t = s.table();
        let nested: Vec<String> = t.atomics[0]
            .children
            .iter()
            .map(|r| r.name.clone())
            .collect();
        assert_eq!(nested, ["bar", "bar (x2)"]);
    }

    #[test]
    fn failure_outside_actions_gets_a_pseudo_row() {
        let names: std::sync::Arc<[String]> = vec!["a".to_string()].into();
        let mut s = WorkloadStats::new(names);
        let r = record(1.0, true, 0..0);
        s.add(&r, &[]);
        let t = s.table();
        assert_eq!(t.atomics[0].name, "<no-name-action>");
        assert_eq!(t.atomics[0].success, Some(0.0));
        assert_eq!(t.total.success, Some(0.0));
        assert_eq!(s.failures, 1);
    }

    #[test]
    fn percentiles_are_close_and_bounded() {
        let mut m = Metric::default();
        for i in 1..=1000 {
            m.add(i as f64 / 1000.0, true);
        }
        let p95 = m.quantile(0.95).unwrap();
        assert!((p95 - 0.95).abs() / 0.95 < 0.002, "{p95}");
        assert_eq!(m.quantile(1.0), Some(1.0));
        assert_eq!(Metric::default().quantile(0.5), None);
    }

    /// Rally keeps a row per action name and count per iteration: iterations that ran
    /// `foo` once count in `foo`, those that ran it twice in `foo (x2)`, each with its own
    /// children.
    #[test]
    fn repeated_actions_split_rows_by_count_per_iteration() {
        let names: std::sync::Arc<[String]> = vec!["foo".to_string(), "bar".to_string()].into();
        let mut s = WorkloadStats::new(names);
        let mut chunk = Chunk::new("local".into());
        // Iteration 1: foo{bar} once. Iteration 2: foo{bar} twice.
        chunk
            .actions
            .extend([span(0, 0, 0.0, 1.0), span(1, 1, 0.0, 0.5)]);
        chunk.records.push(record(1.0, false, 0..2));
        chunk.actions.extend([
            span(0, 0, 0.0, 1.0),
            span(1, 1, 0.0, 0.5),
            span(0, 0, 1.0, 2.0),
            span(1, 1, 1.0, 1.5),
        ]);
        chunk.records.push(record(2.0, false, 2..6));
        s.add_chunk(&chunk);
        let t = s.table();
        type Row = (String, u64, Vec<(String, u64)>);
        let rows: Vec<Row> = t
            .atomics
            .iter()
            .map(|r| {
                (
                    r.name.clone(),
                    r.count,
                    r.children
                        .iter()
                        .map(|c| (c.name.clone(), c.count))
                        .collect(),
                )
            })
            .collect();
        assert_eq!(
            rows,
            vec![
                ("foo".to_string(), 1, vec![("bar".to_string(), 1)]),
                ("foo (x2)".to_string(), 1, vec![("bar (x2)".to_string(), 1)]),
            ]
        );
        assert_eq!(
            t.atomics[1].max,
            Some(2.0),
            "summed over the iteration's runs"
        );
    }

    /// A span deeper than any open parent (only a damaged or foreign chunk has one) is
    /// skipped instead of indexing a row that does not exist.
    #[test]
    fn orphan_spans_are_skipped() {
        let names: std::sync::Arc<[String]> = vec!["foo".to_string(), "bar".to_string()].into();
        let mut s = WorkloadStats::new(names);
        let mut chunk = Chunk::new("local".into());
        chunk
            .actions
            .extend([span(1, 1, 0.0, 0.5), span(0, 0, 0.0, 1.0)]);
        chunk.records.push(record(1.0, false, 0..2));
        s.add_chunk(&chunk);
        let t = s.table();
        assert_eq!(t.atomics.len(), 1);
        assert_eq!(t.atomics[0].name, "foo");
        assert!(t.atomics[0].children.is_empty());
    }
}
