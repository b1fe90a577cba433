//! The charts' memory: fixed-capacity time series, so a long run keeps flat memory.

use std::collections::VecDeque;

use crate::events::Figures;

/// Points kept per time series: 300 progress events is 5 minutes at one per second, which
/// is as many as a chart a few hundred cells wide can show anyway.
pub const HISTORY: usize = 300;

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
