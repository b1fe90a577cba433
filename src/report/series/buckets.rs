//! The bucketing primitives behind [`super::SeriesBuilder`] and [`super::OutputAggregator`]:
//! the time axis cut into fine and coarse buckets, a small per-bucket distribution
//! ([`CoarseMetric`]), per-bucket means, and the linear histogram of all durations.
//!
//! They are what keeps a series bounded: each has a fixed size whatever the number of
//! iterations (see the memory bound in the [`super`] module documentation).

use hdrhistogram::Histogram;

use super::{BUCKETS, DurationPoint, FINE_PER_COARSE, HistogramBin};
use crate::sla::histogram::DurationHistogram;
use crate::stats::{Metric, StatsRow};

/// The time axis, in fine buckets.
#[derive(Debug, Clone, Copy)]
pub(super) struct Axis {
    pub(super) start: f64,
    /// Fine bucket width in seconds; 0 for a one-bucket axis.
    pub(super) width: f64,
    pub(super) buckets: usize,
}

impl Axis {
    pub(super) fn new(start: f64, load_duration: f64) -> Axis {
        if load_duration.is_finite() && load_duration > 0.0 {
            Axis {
                start,
                width: load_duration / BUCKETS as f64,
                buckets: BUCKETS,
            }
        } else {
            Axis {
                start,
                width: 0.0,
                buckets: 1,
            }
        }
    }

    pub(super) fn coarse_buckets(&self) -> usize {
        self.buckets.div_ceil(FINE_PER_COARSE)
    }

    /// Position of `t` in fine-bucket units, clamped to `[0, buckets]`; NaN goes to 0.
    pub(super) fn position(&self, t: f64) -> f64 {
        if self.width <= 0.0 {
            return 0.0;
        }
        let p = (t - self.start) / self.width;
        if p.is_nan() {
            0.0
        } else {
            p.clamp(0.0, self.buckets as f64)
        }
    }

    pub(super) fn fine(&self, t: f64) -> usize {
        (self.position(t) as usize).min(self.buckets - 1)
    }

    pub(super) fn coarse(&self, t: f64) -> usize {
        self.fine(t) / FINE_PER_COARSE
    }
}

/// A distribution kept with a 2-significant-digit HDR histogram with `u32` counts (≈13 KiB
/// for one hour in microseconds), for the many per-bucket distributions where the full
/// [`Metric`] would cost 184 KiB each. Values are stored as `round(value * scale)`;
/// negative values count as 0 in the percentiles, which stay clamped to the exact min/max.
#[derive(Debug, Clone)]
pub(crate) struct CoarseMetric {
    hist: Histogram<u32>,
    scale: f64,
    count: u64,
    sum: f64,
    min: f64,
    max: f64,
}

impl CoarseMetric {
    /// Durations in seconds, at microsecond resolution up to one hour (as [`Metric`]).
    pub(super) fn durations() -> CoarseMetric {
        CoarseMetric::new(1e6, 3_600_000_000)
    }

    /// Arbitrary scenario output numbers, at 1/1000 resolution up to 10^12.
    pub(super) fn values() -> CoarseMetric {
        CoarseMetric::new(1e3, 1_000_000_000_000_000)
    }

    fn new(scale: f64, high: u64) -> CoarseMetric {
        CoarseMetric {
            // Constant bounds hdrhistogram accepts (1 ≤ low, high ≥ 2·low, 2 digits).
            hist: Histogram::new_with_bounds(1, high, 2).expect("valid histogram bounds"),
            scale,
            count: 0,
            sum: 0.0,
            min: f64::INFINITY,
            max: f64::NEG_INFINITY,
        }
    }

    pub(super) fn add(&mut self, v: f64) {
        if !v.is_finite() {
            return;
        }
        let scaled = (v * self.scale).round().clamp(0.0, u64::MAX as f64) as u64;
        self.hist.saturating_record(scaled);
        self.count += 1;
        self.sum += v;
        self.min = self.min.min(v);
        self.max = self.max.max(v);
    }

    fn quantile(&self, q: f64) -> Option<f64> {
        (self.count > 0)
            .then(|| (self.hist.value_at_quantile(q) as f64 / self.scale).clamp(self.min, self.max))
    }

    pub(super) fn point(&self) -> DurationPoint {
        let some = self.count > 0;
        DurationPoint {
            count: self.count,
            min: some.then_some(self.min),
            median: self.quantile(0.5),
            p90: self.quantile(0.9),
            p95: self.quantile(0.95),
            max: some.then_some(self.max),
            avg: some.then(|| self.sum / self.count as f64),
        }
    }

    pub(super) fn row(&self, name: String) -> StatsRow {
        let p = self.point();
        StatsRow {
            name,
            min: p.min,
            median: p.median,
            p90: p.p90,
            p95: p.p95,
            max: p.max,
            avg: p.avg,
            success: None,
            count: p.count,
            children: Vec::new(),
        }
    }
}

/// Sum and count per bucket, for means.
#[derive(Debug, Clone)]
pub(super) struct MeanBuckets {
    sum: Vec<f64>,
    count: Vec<u32>,
}

impl MeanBuckets {
    pub(super) fn new(buckets: usize) -> MeanBuckets {
        MeanBuckets {
            sum: vec![0.0; buckets],
            count: vec![0; buckets],
        }
    }

    pub(super) fn add(&mut self, bucket: usize, v: f64) {
        if let (Some(s), Some(c)) = (self.sum.get_mut(bucket), self.count.get_mut(bucket))
            && v.is_finite()
        {
            *s += v;
            *c = c.saturating_add(1);
        }
    }

    pub(super) fn means(&self) -> Vec<Option<f64>> {
        self.sum
            .iter()
            .zip(&self.count)
            .map(|(&s, &c)| (c > 0).then(|| s / f64::from(c)))
            .collect()
    }
}

/// Most bins of the durations histogram.
const MAX_BINS: usize = 40;

/// Linear bins between the fastest and the slowest duration; Rice's rule (2·∛n) for their
/// number, as one of Rally's choices, capped so a huge run stays readable.
pub(super) fn histogram(m: &Metric) -> Vec<HistogramBin> {
    if m.count == 0 || !m.min.is_finite() || !m.max.is_finite() {
        return Vec::new();
    }
    let (lo, hi) = (m.min, m.max);
    let bins = if hi > lo {
        ((2.0 * (m.count as f64).cbrt()).ceil() as usize).clamp(1, MAX_BINS)
    } else {
        1
    };
    let width = (hi - lo) / bins as f64;
    let mut out: Vec<HistogramBin> = (0..bins)
        .map(|i| HistogramBin {
            from: lo + width * i as f64,
            to: if i + 1 == bins {
                hi
            } else {
                lo + width * (i + 1) as f64
            },
            count: 0,
        })
        .collect();
    for (value, count) in m.hist.recorded() {
        let s = (DurationHistogram::median_equivalent(value) as f64 / 1e6).clamp(lo, hi);
        let i = if width > 0.0 {
            (((s - lo) / width) as usize).min(bins - 1)
        } else {
            0
        };
        out[i].count += count;
    }
    out
}
