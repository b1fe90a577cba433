//! Down-sampled time series of a workload, built by streaming its records once.
//!
//! The time axis `[start_time, start_time + load_duration]` is cut into [`BUCKETS`] fixed
//! "fine" buckets (counts and the load profile) and [`COARSE_BUCKETS`] "coarse" ones (duration
//! percentiles, per-agent throughput, atomic actions, additive output), each coarse bucket
//! being [`FINE_PER_COARSE`] fine ones. A record outside the axis is clamped to its edge.
//!
//! # Memory bound
//!
//! Nothing grows with the number of iterations:
//! - fine buckets: four 8-byte numbers each, 32 KB;
//! - coarse duration buckets: one HDR histogram each with **2** significant digits and `u32`
//!   counts (≈13 KiB; the 3-digit, `u64` [`crate::stats::Metric`] is ≈184 KiB and 1000 of them
//!   would be 180 MiB), allocated on first use: at most 200 × 13 KiB ≈ 2.6 MiB. Two digits
//!   mean percentiles within 1%, plenty for a chart;
//! - one full [`Metric`] (≈184 KiB) for the histogram of all durations;
//! - at most [`MAX_SOURCES`] agents and [`MAX_ACTIONS`] atomic actions × 200 buckets;
//! - at most [`MAX_FAILURE_SAMPLES`] failures, each text cut to [`MAX_TEXT`] bytes;
//! - additive output: at most [`MAX_ADDITIVE_CHARTS`] charts × [`MAX_ADDITIVE_SERIES`] names
//!   × 200 buckets, and [`MAX_TABLE_ROWS`] StatsTable rows with a coarse histogram each;
//! - complete output of at most [`MAX_COMPLETE_SAMPLES`] iterations, each at most
//!   [`MAX_COMPLETE_BYTES`] of JSON.
//!
//! So a builder stays under about 5 MiB whatever the run, and typically needs about 3 MiB.
//!
//! This file holds the series themselves and the [`SeriesBuilder`] that streams records into
//! them; `buckets.rs` the bounded accumulators it is made of (time axis, per-bucket
//! distributions and means, histogram), and `output.rs` the scenario-output aggregation
//! (additive charts, complete samples and their caps).

use std::sync::Arc;

use serde::Serialize;

use crate::chunk::{ActionSpan, IterationRecord};
use crate::stats::Metric;

mod buckets;
mod output;

pub(crate) use buckets::CoarseMetric;
use buckets::{Axis, MeanBuckets, histogram};
use output::CompleteSampler;
pub(crate) use output::OutputAggregator;
pub use output::{
    AdditiveChart, AdditiveData, CompleteSample, MAX_ADDITIVE_CHARTS, MAX_ADDITIVE_SERIES,
    MAX_COMPLETE_BYTES, MAX_COMPLETE_SAMPLES, MAX_TABLE_ROWS,
};

/// Fine buckets of the time axis (counts, failures, load profile): Rally's GraphZipper also
/// keeps at most 1000 points.
pub const BUCKETS: usize = 1000;
/// Coarse buckets (percentiles, agents, actions, additive output).
pub const COARSE_BUCKETS: usize = 200;
/// Fine buckets per coarse bucket.
pub const FINE_PER_COARSE: usize = BUCKETS / COARSE_BUCKETS;
/// Agents with a throughput series of their own; later ones are summed into [`OTHER_SOURCES`].
pub const MAX_SOURCES: usize = 32;
/// Name of the series that sums the agents beyond [`MAX_SOURCES`].
pub const OTHER_SOURCES: &str = "(other agents)";
/// Atomic actions (by name) with a series; others are left out of the chart (they are
/// still in the statistics table).
pub const MAX_ACTIONS: usize = 20;
/// Failed iterations kept with their error (the first ones).
pub const MAX_FAILURE_SAMPLES: usize = 100;
/// Longest error type, message or traceback kept, in bytes.
pub const MAX_TEXT: usize = 2048;

/// Everything the HTML report draws of one workload's iterations.
#[derive(Debug, Clone, Default, Serialize)]
pub struct WorkloadSeries {
    /// Unix seconds of the time axis origin.
    pub start_time: f64,
    /// Width of a fine bucket in seconds; 0 when the axis has no length (one bucket).
    pub bucket_seconds: f64,
    /// Width of a coarse bucket in seconds.
    pub coarse_seconds: f64,
    pub iterations: u64,
    pub failures: u64,
    /// Per fine bucket: iterations started in it.
    pub started: Vec<u64>,
    /// Per fine bucket: failed iterations started in it.
    pub failed: Vec<u64>,
    /// Per fine bucket: mean number of iterations in flight (time-weighted, so fractional at
    /// the edges of an iteration, as Rally's load profile).
    pub load: Vec<f64>,
    /// Per coarse bucket: durations of the iterations started in it.
    pub durations: Vec<DurationPoint>,
    /// All durations, binned linearly between the fastest and the slowest iteration.
    pub histogram: Vec<HistogramBin>,
    /// Per runner instance: iterations started per coarse bucket.
    pub sources: Vec<NamedSeries>,
    /// Per atomic action name: mean duration of one run of the action per coarse bucket
    /// (`None` where it did not run).
    pub actions: Vec<NamedSeries>,
    /// The first failed iterations.
    pub failure_samples: Vec<FailureSample>,
    /// Additive scenario output, aggregated over iterations.
    pub additive: Vec<AdditiveChart>,
    /// Complete scenario output of a few iterations: the first ones, then at power-of-two
    /// positions among the iterations with output, so samples spread over the whole run.
    pub complete: Vec<CompleteSample>,
    /// Some agents, actions or output charts were beyond the caps and are not charted.
    pub truncated: bool,
}

/// Duration statistics of one coarse bucket; all `None` when no iteration started in it.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct DurationPoint {
    pub count: u64,
    pub min: Option<f64>,
    pub median: Option<f64>,
    pub p90: Option<f64>,
    pub p95: Option<f64>,
    pub max: Option<f64>,
    pub avg: Option<f64>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct HistogramBin {
    pub from: f64,
    pub to: f64,
    pub count: u64,
}

/// One named line of a chart, a value per bucket.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct NamedSeries {
    pub name: String,
    pub values: Vec<Option<f64>>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FailureSample {
    pub timestamp: f64,
    pub iteration: u64,
    pub etype: String,
    pub message: String,
    pub details: String,
}

/// Iterations started per coarse bucket by one runner instance.
#[derive(Debug, Clone)]
struct SourceAcc {
    name: String,
    started: Vec<u64>,
}

/// Durations of one atomic action name per coarse bucket.
#[derive(Debug, Clone)]
struct ActionAcc {
    name: String,
    means: MeanBuckets,
}

/// Marks an action id without a series slot yet.
const NO_SLOT: u16 = u16::MAX;
/// Marks an action id refused by the cap.
const NO_ROOM: u16 = u16::MAX - 1;

/// Streams a workload's records into a [`WorkloadSeries`] in bounded memory (see the module
/// documentation for the bound).
pub struct SeriesBuilder {
    names: Arc<[String]>,
    axis: Axis,
    iterations: u64,
    failures: u64,
    started: Vec<u64>,
    failed: Vec<u64>,
    load: Vec<f64>,
    /// Whole fine buckets covered by iterations, as a difference array: an iteration spanning
    /// many buckets costs O(1).
    load_diff: Vec<i64>,
    durations: Vec<Option<Box<CoarseMetric>>>,
    all: Metric,
    sources: Vec<SourceAcc>,
    last_source: usize,
    actions: Vec<ActionAcc>,
    action_slot: Vec<u16>,
    failure_samples: Vec<FailureSample>,
    outputs: OutputAggregator,
    complete: CompleteSampler,
    truncated: bool,
}

impl SeriesBuilder {
    /// `start_time` and `load_duration` of the workload are known before streaming (from the
    /// stored aggregates), so the time axis can be bucketed in one pass. A non-finite
    /// `start_time` is replaced by the first record's timestamp; a zero or non-finite
    /// `load_duration` gives a one-bucket axis.
    pub fn new(start_time: f64, load_duration: f64, action_names: Arc<[String]>) -> SeriesBuilder {
        let axis = Axis::new(start_time, load_duration);
        let coarse = axis.coarse_buckets();
        SeriesBuilder {
            names: action_names,
            axis,
            iterations: 0,
            failures: 0,
            started: vec![0; axis.buckets],
            failed: vec![0; axis.buckets],
            load: vec![0.0; axis.buckets],
            load_diff: vec![0; axis.buckets],
            durations: vec![None; coarse],
            all: Metric::default(),
            sources: Vec::new(),
            last_source: 0,
            actions: Vec::new(),
            action_slot: Vec::new(),
            failure_samples: Vec::new(),
            outputs: OutputAggregator::new(coarse, 0.0, axis.width * FINE_PER_COARSE as f64),
            complete: CompleteSampler::default(),
            truncated: false,
        }
    }

    pub fn add(&mut self, record: &IterationRecord, actions: &[ActionSpan], source: &str) {
        if !self.axis.start.is_finite() {
            self.axis.start = record.timestamp;
        }
        let ok = !record.failed();
        let fine = self.axis.fine(record.timestamp);
        let coarse = fine / FINE_PER_COARSE;
        self.iterations += 1;
        self.failures += u64::from(!ok);
        self.started[fine] += 1;
        self.failed[fine] += u64::from(!ok);
        self.add_load(record);
        self.add_duration(coarse, record.duration, ok);
        self.add_source(coarse, source);
        for span in actions {
            self.add_action(span);
        }
        if !ok && self.failure_samples.len() < MAX_FAILURE_SAMPLES {
            self.sample_failure(record);
        }
        if let Some(output) = &record.output {
            self.outputs.add(coarse, &output.additive);
            if !output.complete.is_empty() {
                self.complete.add(record, &output.complete);
            }
        }
    }

    /// Spreads the iteration's time in flight (`duration + idle_duration`) over the buckets
    /// it overlaps, in fractions of a bucket.
    fn add_load(&mut self, record: &IterationRecord) {
        let busy = finite_or_zero(record.duration) + finite_or_zero(record.idle_duration);
        if self.axis.width <= 0.0 {
            self.load[0] += 1.0;
            return;
        }
        let a = self.axis.position(record.timestamp);
        let b = self.axis.position(record.timestamp + busy.max(0.0)).max(a);
        let last = self.axis.buckets - 1;
        let (i, j) = ((a as usize).min(last), (b as usize).min(last));
        if i == j {
            self.load[i] += b - a;
            return;
        }
        self.load[i] += (i + 1) as f64 - a;
        self.load[j] += b - j as f64;
        if j > i + 1 {
            self.load_diff[i + 1] += 1;
            self.load_diff[j] -= 1;
        }
    }

    fn add_duration(&mut self, coarse: usize, duration: f64, ok: bool) {
        if !duration.is_finite() {
            return;
        }
        self.all.add(duration, ok);
        if let Some(slot) = self.durations.get_mut(coarse) {
            slot.get_or_insert_with(|| Box::new(CoarseMetric::durations()))
                .add(duration);
        }
    }

    fn add_source(&mut self, coarse: usize, source: &str) {
        let i = if self
            .sources
            .get(self.last_source)
            .is_some_and(|s| s.name == source)
        {
            self.last_source
        } else {
            self.source_index(source)
        };
        self.last_source = i;
        if let Some(n) = self.sources[i].started.get_mut(coarse) {
            *n += 1;
        }
    }

    /// Index of a source's series, creating it, or the shared "other" series beyond the cap.
    fn source_index(&mut self, source: &str) -> usize {
        if let Some(i) = self.sources.iter().position(|s| s.name == source) {
            return i;
        }
        let name = if self.sources.len() < MAX_SOURCES {
            source.to_string()
        } else {
            self.truncated = true;
            if let Some(i) = self.sources.iter().position(|s| s.name == OTHER_SOURCES) {
                return i;
            }
            OTHER_SOURCES.to_string()
        };
        self.sources.push(SourceAcc {
            name,
            started: vec![0; self.durations.len()],
        });
        self.sources.len() - 1
    }

    fn add_action(&mut self, span: &ActionSpan) {
        let id = usize::from(span.name);
        if self.action_slot.len() <= id {
            self.action_slot.resize(id + 1, NO_SLOT);
        }
        let slot = match self.action_slot[id] {
            NO_ROOM => return,
            NO_SLOT if self.actions.len() >= MAX_ACTIONS => {
                self.action_slot[id] = NO_ROOM;
                self.truncated = true;
                return;
            }
            NO_SLOT => {
                let name = self
                    .names
                    .get(id)
                    .cloned()
                    .unwrap_or_else(|| format!("action #{id}"));
                self.actions.push(ActionAcc {
                    name,
                    means: MeanBuckets::new(self.durations.len()),
                });
                let slot = self.actions.len() - 1;
                // MAX_ACTIONS is far below NO_ROOM, so the slot fits.
                self.action_slot[id] = slot as u16;
                slot
            }
            slot => usize::from(slot),
        };
        let bucket = self.axis.coarse(span.started_at);
        self.actions[slot].means.add(bucket, span.duration());
    }

    fn sample_failure(&mut self, record: &IterationRecord) {
        if let Some(e) = &record.error {
            self.failure_samples.push(FailureSample {
                timestamp: record.timestamp,
                iteration: record.iteration,
                etype: truncate(&e.etype),
                message: truncate(&e.message),
                details: truncate(&e.details),
            });
        }
    }

    pub fn finish(self) -> WorkloadSeries {
        let mut load = self.load;
        let mut covered = 0i64;
        for (l, d) in load.iter_mut().zip(&self.load_diff) {
            covered += d;
            *l += covered as f64;
        }
        let truncated = self.truncated || self.outputs.is_truncated();
        let mut sources = self.sources;
        // By name, so agents keep their colours from one report to the next; "other" last.
        sources.sort_by(|a, b| {
            (a.name == OTHER_SOURCES, &a.name).cmp(&(b.name == OTHER_SOURCES, &b.name))
        });
        WorkloadSeries {
            start_time: self.axis.start,
            bucket_seconds: self.axis.width,
            coarse_seconds: self.axis.width * FINE_PER_COARSE as f64,
            iterations: self.iterations,
            failures: self.failures,
            started: self.started,
            failed: self.failed,
            load,
            durations: self
                .durations
                .iter()
                .map(|d| d.as_ref().map(|m| m.point()).unwrap_or_default())
                .collect(),
            histogram: histogram(&self.all),
            sources: sources
                .into_iter()
                .map(|s| NamedSeries {
                    name: s.name,
                    values: s.started.iter().map(|&n| Some(n as f64)).collect(),
                })
                .collect(),
            actions: self
                .actions
                .into_iter()
                .map(|a| NamedSeries {
                    name: a.name,
                    values: a.means.means(),
                })
                .collect(),
            failure_samples: self.failure_samples,
            additive: self.outputs.finish(),
            complete: self.complete.finish(),
            truncated,
        }
    }
}

fn finite_or_zero(v: f64) -> f64 {
    if v.is_finite() { v } else { 0.0 }
}

/// At most [`MAX_TEXT`] bytes, cut at a character boundary.
fn truncate(s: &str) -> String {
    if s.len() <= MAX_TEXT {
        return s.to_string();
    }
    let mut end = MAX_TEXT;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &s[..end])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chunk::IterationError;

    pub(super) fn names() -> Arc<[String]> {
        vec!["foo".to_string(), "bar".to_string()].into()
    }

    pub(super) fn record(
        iteration: u64,
        timestamp: f64,
        duration: f64,
        fail: bool,
    ) -> IterationRecord {
        let mut r = IterationRecord::passed(iteration, timestamp, duration);
        r.error = fail.then(|| Box::new(IterationError::new("E", format!("m{iteration}"))));
        r
    }

    #[test]
    fn bucket_counts_add_up() {
        let mut b = SeriesBuilder::new(100.0, 10.0, names());
        for i in 0..5000u64 {
            // Some before and after the axis: they clamp to the edges.
            let t = 99.0 + i as f64 * 12.0 / 5000.0;
            b.add(&record(i + 1, t, 0.01, i % 7 == 0), &[], "local");
        }
        let s = b.finish();
        assert_eq!(s.started.len(), BUCKETS);
        assert_eq!(s.started.iter().sum::<u64>(), 5000);
        assert_eq!(s.failed.iter().sum::<u64>(), s.failures);
        assert_eq!(s.failures, (0..5000).filter(|i| i % 7 == 0).count() as u64);
        assert_eq!(s.durations.iter().map(|d| d.count).sum::<u64>(), 5000);
        assert_eq!(s.histogram.iter().map(|h| h.count).sum::<u64>(), 5000);
        assert!(s.started[0] > 0 && s.started[BUCKETS - 1] > 0);
        assert_eq!(s.sources.len(), 1);
        let by_source: f64 = s.sources[0].values.iter().flatten().sum();
        assert_eq!(by_source, 5000.0);
    }

    #[test]
    fn load_profile_counts_iterations_in_flight() {
        let mut b = SeriesBuilder::new(0.0, 10.0, names());
        b.add(&record(1, 0.0, 10.0, false), &[], "local");
        b.add(&record(2, 0.0, 5.0, false), &[], "local");
        // Half a bucket (bucket = 10 ms) in flight: 0.5 on average.
        b.add(&record(3, 9.0, 0.005, false), &[], "local");
        let s = b.finish();
        let close = |a: f64, b: f64| (a - b).abs() < 1e-6;
        assert!(
            s.load[..499].iter().all(|&l| close(l, 2.0)),
            "{:?}",
            &s.load[..5]
        );
        assert!(s.load[501..900].iter().all(|&l| close(l, 1.0)));
        assert!(close(s.load[900], 1.5));
        assert!(s.load[901..].iter().all(|&l| close(l, 1.0)));
        let mean: f64 = s.load.iter().sum::<f64>() / BUCKETS as f64;
        // (10 + 5 + 0.005) s of iterations over 10 s.
        assert!(close(mean, 1.5005), "{mean}");
    }

    #[test]
    fn per_source_split() {
        let mut b = SeriesBuilder::new(0.0, 1.0, names());
        for i in 0..300u64 {
            let source = ["a", "b", "c"][(i % 3) as usize];
            b.add(&record(i + 1, i as f64 / 300.0, 0.001, false), &[], source);
        }
        for i in 0..(MAX_SOURCES as u64 + 5) {
            b.add(
                &record(1000 + i, 0.5, 0.001, false),
                &[],
                &format!("agent-{i}"),
            );
        }
        let s = b.finish();
        let total = |name: &str| -> f64 {
            let series = s.sources.iter().find(|x| x.name == name);
            series.map_or(0.0, |x| x.values.iter().flatten().sum())
        };
        assert_eq!((total("a"), total("b"), total("c")), (100.0, 100.0, 100.0));
        assert_eq!(s.sources.len(), MAX_SOURCES + 1);
        assert_eq!(total(OTHER_SOURCES), 8.0);
        assert!(s.truncated);
    }

    #[test]
    fn failures_are_capped() {
        let mut b = SeriesBuilder::new(0.0, 1.0, names());
        for i in 0..1000u64 {
            let mut r = record(i + 1, 0.5, 0.1, true);
            if let Some(e) = &mut r.error {
                e.details = "x".repeat(10_000);
            }
            b.add(&r, &[], "local");
        }
        let s = b.finish();
        assert_eq!(s.failures, 1000);
        assert_eq!(s.failure_samples.len(), MAX_FAILURE_SAMPLES);
        assert_eq!(s.failure_samples[0].iteration, 1);
        assert_eq!(s.failure_samples[0].message, "m1");
        assert!(s.failure_samples[0].details.len() <= MAX_TEXT + 4);
    }

    #[test]
    fn atomic_actions_average_per_bucket() {
        let mut b = SeriesBuilder::new(0.0, 1.0, names());
        let span = |name, depth, start: f64, d: f64| ActionSpan {
            name,
            depth,
            failed: false,
            started_at: start,
            finished_at: start + d,
        };
        let actions = [span(0, 0, 0.0, 0.4), span(1, 1, 0.0, 0.2)];
        b.add(&record(1, 0.0, 0.4, false), &actions, "local");
        let actions = [span(0, 0, 0.001, 0.6), span(7, 0, 0.001, 0.1)];
        b.add(&record(2, 0.001, 0.6, false), &actions, "local");
        let s = b.finish();
        let names: Vec<_> = s.actions.iter().map(|a| a.name.as_str()).collect();
        assert_eq!(names, ["foo", "bar", "action #7"]);
        let foo = s.actions[0].values[0].unwrap_or_default();
        assert!((foo - 0.5).abs() < 1e-9, "{foo}");
        assert_eq!(s.actions[0].values[1], None);
    }

    #[test]
    fn empty_and_degenerate_input() {
        let s = SeriesBuilder::new(f64::NAN, 0.0, Arc::from(Vec::new())).finish();
        assert_eq!(s.iterations, 0);
        assert!(s.histogram.is_empty());
        let mut b = SeriesBuilder::new(f64::NAN, f64::NAN, Arc::from(Vec::new()));
        b.add(&record(1, f64::NAN, f64::NAN, true), &[], "x");
        b.add(&record(2, 5.0, 1.0, false), &[], "x");
        let s = b.finish();
        assert_eq!(s.started, vec![2]);
        assert_eq!(s.durations[0].count, 1);
        assert_eq!(s.histogram.len(), 1);
    }
}
