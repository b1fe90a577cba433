//! `performance_degradation`: slowest vs fastest successful iteration of the
//! same workload run, in percent.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::IterationSample;
use super::config::{check_keys, number, object};
use super::error::{SlaConfigError, SlaError, ensure_same_config};
use super::format::{format_float_to_str, status_word};

/// Config (`max_degradation`, percent) plus min and max successful duration.
///
/// Successful iterations with a duration `<= 0` (or not finite) are ignored here:
/// Rally raises `ValueError("Unexpected value: 0.0")` in its consumer thread,
/// and a zero minimum would make the ratio infinite. Such durations are clock
/// artefacts of sub-resolution iterations, not a degradation; the other
/// criteria still see them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PerformanceDegradation {
    #[serde(with = "super::serde_f64")]
    pub max_degradation: f64,
    #[serde(with = "super::serde_f64::option")]
    min: Option<f64>,
    #[serde(with = "super::serde_f64::option")]
    max: Option<f64>,
}

impl PerformanceDegradation {
    pub const NAME: &'static str = "performance_degradation";

    /// Rally's schema: `{max_degradation: number >= 0}`, required, nothing else.
    pub fn from_config(value: &Value) -> Result<Self, SlaConfigError> {
        let map = object(
            value,
            "an object {\"max_degradation\": <number >= 0, percent>}",
        )?;
        check_keys(map, &["max_degradation"])?;
        let v = map.get("max_degradation").ok_or_else(|| {
            SlaConfigError::new(
                "max_degradation",
                "is required: a number >= 0 (allowed degradation in percent)",
            )
        })?;
        let max_degradation = number(
            v,
            "max_degradation",
            |x| x >= 0.0,
            "a number >= 0 (percent)",
        )?;
        Ok(Self {
            max_degradation,
            min: None,
            max: None,
        })
    }

    #[inline]
    pub fn add(&mut self, it: &IterationSample) {
        let d = it.duration;
        // `d > 0.0` is also false for NaN; infinities would poison the ratio.
        if !it.failed && d > 0.0 && d.is_finite() {
            self.observe(d, d);
        }
    }

    fn observe(&mut self, lo: f64, hi: f64) {
        self.min = Some(self.min.map_or(lo, |m| m.min(lo)));
        self.max = Some(self.max.map_or(hi, |m| m.max(hi)));
    }

    /// Fails when `other` has another config (merging would be meaningless).
    pub fn check_merge(&self, other: &Self) -> Result<(), SlaError> {
        ensure_same_config(Self::NAME, &self.max_degradation, &other.max_degradation)
    }

    pub fn merge(&mut self, other: &Self) -> Result<(), SlaError> {
        self.check_merge(other)?;
        if let (Some(lo), Some(hi)) = (other.min, other.max) {
            self.observe(lo, hi);
        }
        Ok(())
    }

    /// Takes in one agent's cumulative state: its minimum only falls and its maximum only
    /// grows, so merging the newer state again is exact (see
    /// [`crate::sla::SlaChecker::advance`]).
    /// False when `new` cannot have grown from `old` (its range is narrower: a new session
    /// under the same agent name): the caller merges everything again instead.
    pub fn advance(&mut self, old: Option<&Self>, new: &Self) -> bool {
        if let Some(o) = old {
            let narrower =
                |a: Option<f64>, b: Option<f64>, wider: fn(f64, f64) -> bool| match (a, b) {
                    (Some(_), None) => true,
                    (Some(a), Some(b)) => wider(a, b),
                    _ => false,
                };
            if narrower(o.min, new.min, |o, n| n > o) || narrower(o.max, new.max, |o, n| n < o) {
                return false;
            }
        }
        if let (Some(lo), Some(hi)) = (new.min, new.max) {
            self.observe(lo, hi);
        }
        true
    }

    /// `(max / min - 1) * 100`, 0.0 with no data.
    pub fn degradation(&self) -> f64 {
        match (self.min, self.max) {
            (Some(min), Some(max)) => (max / min - 1.0) * 100.0,
            _ => 0.0,
        }
    }

    pub fn success(&self) -> bool {
        self.degradation() <= self.max_degradation
    }

    pub fn detail(&self) -> String {
        format!(
            "Current degradation: {}% - {}",
            format_float_to_str(self.degradation()),
            status_word(self.success())
        )
    }

    /// Headline: (degradation %, max_degradation %).
    pub fn headline(&self) -> (f64, f64) {
        (self.degradation(), self.max_degradation)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn feed(c: &mut PerformanceDegradation, durations: &[(f64, bool)]) {
        for &(duration, failed) in durations {
            c.add(&IterationSample {
                duration,
                failed,
                top_level_actions: &[],
            });
        }
    }

    #[test]
    fn rally_details() {
        let mut c = PerformanceDegradation::from_config(&json!({"max_degradation": 50})).unwrap();
        assert_eq!(c.detail(), "Current degradation: 0.0% - Passed");
        feed(&mut c, &[(1.5, false), (2.45, false), (100.0, true)]);
        assert_eq!(c.detail(), "Current degradation: 63.333333% - Failed");
        let mut c = PerformanceDegradation::from_config(&json!({"max_degradation": 50})).unwrap();
        feed(&mut c, &[(2.0, false), (3.0, false)]);
        assert_eq!(c.detail(), "Current degradation: 50.0% - Passed");
        let mut c = PerformanceDegradation::from_config(&json!({"max_degradation": 5})).unwrap();
        feed(&mut c, &[(1.5, false), (1.6, false)]);
        assert_eq!(c.detail(), "Current degradation: 6.666667% - Failed");
    }

    #[test]
    fn non_positive_durations_are_ignored() {
        let mut c = PerformanceDegradation::from_config(&json!({"max_degradation": 0})).unwrap();
        feed(&mut c, &[(0.0, false), (-1.0, false), (f64::NAN, false)]);
        assert_eq!(c.detail(), "Current degradation: 0.0% - Passed");
        feed(&mut c, &[(1.0, false), (0.0, false)]);
        assert_eq!(c.degradation(), 0.0);
    }

    #[test]
    fn config_validation() {
        assert!(PerformanceDegradation::from_config(&json!({"max_degradation": 0})).is_ok());
        for (cfg, subpath, needle) in [
            (
                json!({"max_degradation": -1}),
                "max_degradation",
                "must be a number >= 0 (percent), got -1",
            ),
            (
                json!({"max_degradation": false}),
                "max_degradation",
                "got boolean false",
            ),
            (json!({}), "max_degradation", "is required"),
            (
                json!({"max_degradation": 1, "x": 1}),
                "x",
                "allowed keys: 'max_degradation'",
            ),
            (json!(10), "", "must be an object"),
        ] {
            let err = PerformanceDegradation::from_config(&cfg).unwrap_err();
            assert_eq!(err.subpath, subpath, "{cfg}");
            assert!(err.message.contains(needle), "{cfg}: {}", err.message);
        }
    }
}
