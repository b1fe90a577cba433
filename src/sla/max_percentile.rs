//! `max_percentile` (not in Rally): duration percentiles of successful
//! iterations, e.g. `{p50: 0.1, p95: 0.25, "p99.9": 1.0}`.
//!
//! Detail format (same style as Rally's criteria; keys as configured, in
//! config order; values and limits `%.2f` seconds):
//! `"Percentile durations: p50 0.10s <= 0.10s, p95 0.21s <= 0.25s - Passed"`.
//! With zero iterations every value prints as `0.00s` and the criterion passes.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::IterationSample;
use super::config::{number, object};
use super::error::{SlaConfigError, SlaError, ensure_same_config};
use super::format::status_word;
use super::histogram::DurationHistogram;

/// One configured percentile.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PercentileLimit {
    /// The key as written (`"p99.9"`), used in the detail.
    pub key: String,
    /// Percentile in (0, 100].
    #[serde(with = "super::serde_f64")]
    pub percentile: f64,
    /// Maximum allowed value, seconds.
    #[serde(with = "super::serde_f64")]
    pub limit: f64,
}

impl PercentileLimit {
    /// The quantile passed to HDR; computed in one place so that the cheap
    /// verdict in [`MaxPercentile::success`] and the detail agree bit for bit.
    fn quantile(&self) -> f64 {
        self.percentile / 100.0
    }
}

/// Config plus an HDR histogram of successful durations (µs, 1 µs .. 1 h,
/// 3 significant digits, so values carry <= 0.1% relative error; longer
/// iterations saturate at 1 h).
///
/// Computing a percentile walks the histogram, too slow for every `add`, so
/// the verdict uses a per-percentile counter instead: `over[i]` counts the
/// samples whose bucket would report a value above `limits[i].limit`. Buckets
/// are ordered, so the percentile's bucket reports a value within the limit
/// iff at least `ceil(q * n)` samples are *not* over (exactly HDR's
/// `value_at_quantile` rule). Counters and histogram both merge by addition,
/// so merged verdicts and details are exact.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MaxPercentile {
    limits: Vec<PercentileLimit>,
    histogram: DurationHistogram,
    over: Vec<u64>,
}

const KEY_RULE: &str =
    "keys must be \"p\" followed by a percentile in (0, 100], e.g. \"p95\" or \"p99.9\"";

/// Parses `p<digits>[.<digits>]` into a percentile in (0, 100].
fn parse_key(key: &str) -> Option<f64> {
    let num = key.strip_prefix('p')?;
    let (int, frac) = num.split_once('.').unwrap_or((num, "0"));
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    if !digits(int) || !digits(frac) {
        return None;
    }
    let p: f64 = num.parse().ok()?;
    (p > 0.0 && p <= 100.0).then_some(p)
}

impl MaxPercentile {
    pub const NAME: &'static str = "max_percentile";

    /// Object of `{"p<percentile>": seconds > 0}`, at least one entry.
    pub fn from_config(value: &Value) -> Result<Self, SlaConfigError> {
        let map = object(
            value,
            "an object mapping percentiles to maximum durations in seconds, e.g. \
             {\"p95\": 0.25, \"p99.9\": 1.0}",
        )?;
        if map.is_empty() {
            return Err(SlaConfigError::new(
                "",
                format!("must contain at least one percentile; {KEY_RULE}"),
            ));
        }
        let mut limits = Vec::with_capacity(map.len());
        for (key, v) in map {
            let percentile = parse_key(key).ok_or_else(|| {
                SlaConfigError::new(key.as_str(), format!("invalid key {key:?}: {KEY_RULE}"))
            })?;
            let limit = number(v, key, |x| x > 0.0, "a number of seconds greater than 0")?;
            limits.push(PercentileLimit {
                key: key.clone(),
                percentile,
                limit,
            });
        }
        Ok(Self {
            over: vec![0; limits.len()],
            limits,
            histogram: DurationHistogram::new(),
        })
    }

    #[inline]
    pub fn add(&mut self, it: &IterationSample) {
        if it.failed {
            return;
        }
        let micros = DurationHistogram::to_micros(it.duration);
        self.histogram.record_micros(micros);
        let reported = self.histogram.bucket_top_secs(micros);
        for (limit, over) in self.limits.iter().zip(&mut self.over) {
            *over += u64::from(reported > limit.limit);
        }
    }

    /// Fails when `other` has another config, or when a (deserialized)
    /// state's counters do not match its percentiles.
    pub fn check_merge(&self, other: &Self) -> Result<(), SlaError> {
        ensure_same_config(Self::NAME, &self.limits, &other.limits)?;
        if self.over.len() != self.limits.len() || other.over.len() != other.limits.len() {
            return Err(SlaError::InvalidState {
                criterion: Self::NAME,
                message: "over-limit counters do not match the configured percentiles".into(),
            });
        }
        Ok(())
    }

    /// Histograms with the fixed bounds always add, so after `check_merge`
    /// this cannot fail half-way.
    pub fn merge(&mut self, other: &Self) -> Result<(), SlaError> {
        self.check_merge(other)?;
        self.histogram
            .add(&other.histogram)
            .map_err(|message| SlaError::InvalidState {
                criterion: Self::NAME,
                message,
            })?;
        for (mine, theirs) in self.over.iter_mut().zip(&other.over) {
            *mine += theirs;
        }
        Ok(())
    }

    pub fn limits(&self) -> &[PercentileLimit] {
        &self.limits
    }

    /// Current value of each configured percentile, seconds, config order.
    pub fn values(&self) -> impl Iterator<Item = f64> + '_ {
        self.limits
            .iter()
            .map(|l| self.histogram.value_at_quantile_secs(l.quantile()))
    }

    /// Cheap verdict (no histogram walk), see the type docs.
    pub fn success(&self) -> bool {
        (0..self.limits.len()).all(|i| self.within(i))
    }

    /// Whether percentile `i` is within its limit, by the over-limit counter.
    fn within(&self, i: usize) -> bool {
        let n = self.histogram.len();
        let rank = ((self.limits[i].quantile() * n as f64).ceil() as u64).max(1);
        n == 0 || n - self.over[i] >= rank
    }

    /// Each percentile's value, limit and verdict, config order.
    pub fn parts(&self) -> Vec<super::CriterionPart> {
        self.limits
            .iter()
            .zip(self.values())
            .enumerate()
            .map(|(i, (l, value))| super::CriterionPart {
                name: l.key.clone(),
                value,
                limit: l.limit,
                success: self.within(i),
            })
            .collect()
    }

    pub fn detail(&self) -> String {
        let parts: Vec<String> = self
            .limits
            .iter()
            .zip(self.values())
            .map(|(l, v)| format!("{} {v:.2}s <= {:.2}s", l.key, l.limit))
            .collect();
        format!(
            "Percentile durations: {} - {}",
            parts.join(", "),
            status_word(self.success())
        )
    }

    /// Headline: (value, limit) of the percentile with the worst value/limit
    /// ratio, first in config order on ties.
    pub fn headline(&self) -> (f64, f64) {
        let mut worst: Option<(f64, f64)> = None;
        for (l, v) in self.limits.iter().zip(self.values()) {
            if worst.is_none_or(|(wv, wl)| v / l.limit > wv / wl) {
                worst = Some((v, l.limit));
            }
        }
        worst.unwrap_or((0.0, 0.0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn feed(c: &mut MaxPercentile, durations: &[f64]) {
        for &duration in durations {
            c.add(&IterationSample {
                duration,
                failed: false,
                top_level_actions: &[],
            });
        }
    }

    #[test]
    fn detail_format() {
        let mut c = MaxPercentile::from_config(&json!({"p50": 0.1, "p95": 0.25})).unwrap();
        assert_eq!(
            c.detail(),
            "Percentile durations: p50 0.00s <= 0.10s, p95 0.00s <= 0.25s - Passed"
        );
        // 1..=100 ms: p50 = 50 ms, p95 = 95 ms.
        let ds: Vec<f64> = (1..=100).map(|i| f64::from(i) / 1000.0).collect();
        feed(&mut c, &ds);
        assert_eq!(
            c.detail(),
            "Percentile durations: p50 0.05s <= 0.10s, p95 0.10s <= 0.25s - Passed"
        );
        c.add(&IterationSample {
            duration: 99.0,
            failed: true,
            top_level_actions: &[],
        });
        assert!(c.success(), "failed iterations are ignored");
    }

    #[test]
    fn tail_breach() {
        let mut c = MaxPercentile::from_config(&json!({"p90": 1, "p99.9": 0.5})).unwrap();
        let mut ds = vec![0.01; 95];
        ds.extend([2.0; 5]);
        feed(&mut c, &ds);
        // p90 of 100 samples is rank 90: fast. p99.9 is rank 100: slow.
        assert!(!c.success());
        assert_eq!(
            c.detail(),
            "Percentile durations: p90 0.01s <= 1.00s, p99.9 2.00s <= 0.50s - Failed"
        );
        let (v, l) = c.headline();
        assert!((v - 2.0).abs() < 0.01 && l == 0.5, "{v} {l}");

        let mut c = MaxPercentile::from_config(&json!({"p90": 1})).unwrap();
        feed(&mut c, &ds);
        assert!(c.success());
        // 110 samples, rank 99, only 95 fast ones.
        feed(&mut c, &[2.0; 10]);
        assert!(!c.success());
        assert_eq!(
            c.detail(),
            "Percentile durations: p90 2.00s <= 1.00s - Failed"
        );
    }

    #[test]
    fn verdict_at_bucket_boundary_matches_value() {
        // 1.000 s and 1.0005 s share an HDR bucket whose top is > 1.0 s.
        let mut c = MaxPercentile::from_config(&json!({"p100": 1.0})).unwrap();
        feed(&mut c, &[1.0]);
        let v = c.values().next().unwrap();
        assert_eq!(c.success(), v <= 1.0, "value {v}");
    }

    #[test]
    fn config_validation() {
        assert!(MaxPercentile::from_config(&json!({"p100": 1, "p0.5": 2})).is_ok());
        for (cfg, subpath, needle) in [
            (json!({}), "", "at least one percentile"),
            (json!({"p0": 1}), "p0", "invalid key \"p0\""),
            (json!({"p101": 1}), "p101", "(0, 100]"),
            (json!({"95": 1}), "95", "followed by a percentile"),
            (json!({"pinf": 1}), "pinf", "invalid key"),
            (json!({"p1e1": 1}), "p1e1", "invalid key"),
            (json!({"p95": 0}), "p95", "greater than 0, got 0"),
            (json!({"p95": true}), "p95", "got boolean true"),
            (json!([0.5]), "", "must be an object"),
        ] {
            let err = MaxPercentile::from_config(&cfg).unwrap_err();
            assert_eq!(err.subpath, subpath, "{cfg}");
            assert!(err.message.contains(needle), "{cfg}: {}", err.message);
        }
    }
}
