//! The charts' memory: bounded time series that cover the whole run, so a long run keeps
//! flat memory and still charts from its start (SPEC §14, "a console for the whole run").

use crate::events::Figures;

/// Points kept per time series: a chart a few hundred cells wide shows no more. A longer run
/// is downsampled (neighbouring points merged), never cut.
pub const HISTORY: usize = 300;

/// How two neighbouring points become one when a series is downsampled: what stays honest
/// for what the chart (and the SLA under it) shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Merge {
    /// Rates, percentages, percentiles: the mean over the merged intervals.
    Mean,
    /// The slowest iteration: a spike must survive any amount of downsampling.
    Max,
}

impl Merge {
    fn fold(self, a: f64, b: f64) -> f64 {
        match self {
            Merge::Mean => a + b,
            Merge::Max => a.max(b),
        }
    }
}

/// A bounded series of `(x, y)` points covering everything pushed since it was created.
/// Each kept point stands for `stride` pushed ones: y merged as [`Merge`] says, x the latest
/// of them (a progress point is drawn at the end of its interval, a merged one too); when
/// the series is full, neighbouring pairs merge and `stride` doubles, so memory stays at
/// `cap` points while the first point stays near the run's start.
#[derive(Debug, Clone)]
pub struct Ring {
    points: Vec<(f64, f64)>,
    cap: usize,
    merge: Merge,
    /// Pushed points per kept point.
    stride: usize,
    /// Points pushed since the last kept one: count, latest x, folded y (sum or max).
    bucket: (usize, f64, f64),
    /// The open bucket as one point (x = its latest), so a chart reaches the latest push
    /// before the bucket fills.
    pending: Option<(f64, f64)>,
}

impl Ring {
    pub fn new(cap: usize) -> Self {
        Self::with_merge(cap, Merge::Mean)
    }

    pub fn with_merge(cap: usize, merge: Merge) -> Self {
        // Even, so pairs merge without a leftover.
        let cap = cap.max(2).div_ceil(2) * 2;
        Self {
            points: Vec::with_capacity(cap.min(HISTORY)),
            cap,
            merge,
            stride: 1,
            bucket: (0, 0.0, 0.0),
            pending: None,
        }
    }

    pub fn push(&mut self, x: f64, y: f64) {
        let (n, _, sy) = self.bucket;
        let sy = if n == 0 { y } else { self.merge.fold(sy, y) };
        self.bucket = (n + 1, x, sy);
        if n + 1 < self.stride {
            self.pending = Some((x, self.bucket_y()));
            return;
        }
        let point = (x, self.bucket_y());
        self.bucket = (0, 0.0, 0.0);
        self.pending = None;
        self.points.push(point);
        if self.points.len() >= self.cap {
            self.halve();
        }
    }

    /// The open bucket's y as a point's: its mean or its max.
    fn bucket_y(&self) -> f64 {
        let (n, _, y) = self.bucket;
        match self.merge {
            Merge::Mean => y / n.max(1) as f64,
            Merge::Max => y,
        }
    }

    /// Merge neighbouring pairs: half the points, each standing for twice as many pushes.
    fn halve(&mut self) {
        let merge = self.merge;
        let merged: Vec<(f64, f64)> = self
            .points
            .chunks(2)
            .map(|pair| {
                let n = pair.len() as f64;
                let x = pair.iter().map(|p| p.0).fold(f64::NEG_INFINITY, f64::max);
                let y = pair
                    .iter()
                    .map(|p| p.1)
                    .reduce(|a, b| merge.fold(a, b))
                    .unwrap_or(0.0);
                let y = if merge == Merge::Mean { y / n } else { y };
                (x, y)
            })
            .collect();
        self.points = merged;
        self.stride *= 2;
    }

    /// Points kept, the open bucket included.
    pub fn len(&self) -> usize {
        self.points.len() + usize::from(self.pending.is_some())
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Pushed points per kept point (1 until the series first fills).
    pub fn stride(&self) -> usize {
        self.stride
    }

    /// The points oldest first, as a `Vec` because ratatui's `Dataset` wants one slice.
    pub fn to_vec(&self) -> Vec<(f64, f64)> {
        self.iter().copied().collect()
    }

    pub fn iter(&self) -> impl DoubleEndedIterator<Item = &(f64, f64)> {
        self.points.iter().chain(self.pending.iter())
    }

    pub fn last(&self) -> Option<(f64, f64)> {
        self.pending.or_else(|| self.points.last().copied())
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
            // A spike is what a max series is for: merged by max, never averaged away.
            max: Ring::with_merge(HISTORY, Merge::Max),
            failure_rate: Ring::new(HISTORY),
            failure_total: Ring::new(HISTORY),
            target: Ring::new(HISTORY),
            prev: (0, 0),
        }
    }
}

impl History {
    pub(super) fn record(&mut self, t: f64, f: &Figures) {
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
    pub(super) fn record_idle(&mut self, t: f64, f: &Figures) {
        self.throughput.push(t, 0.0);
        self.prev = (f.iterations, f.failures);
    }

    pub(super) fn clear(&mut self) {
        *self = Self::default();
    }
}
