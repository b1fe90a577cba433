//! `failure_rate`: percentage of failed iterations within `[min, max]`.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::IterationSample;
use super::config::{check_keys, number, object};
use super::error::{SlaConfigError, SlaError, ensure_same_config};
use super::format::status_word;

/// `{min, max}` percentages; Rally's defaults are 0 and 100.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FailureRateConfig {
    #[serde(with = "super::serde_f64")]
    pub min: f64,
    #[serde(with = "super::serde_f64")]
    pub max: f64,
}

/// Config plus running counts over **all** iterations.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FailureRate {
    pub config: FailureRateConfig,
    total: u64,
    errors: u64,
}

const KEYS: &[&str] = &["min", "max"];
const PERCENT: &str = "a number between 0 and 100";

impl FailureRate {
    pub const NAME: &'static str = "failure_rate";

    /// Validates Rally's draft-04 schema: object, `min`/`max` numbers in
    /// [0, 100], at least one of them, nothing else. `min > max` is valid (and
    /// can never pass once an iteration ran), as in Rally.
    pub fn from_config(value: &Value) -> Result<Self, SlaConfigError> {
        let map = object(
            value,
            "an object with \"min\" and/or \"max\" (numbers between 0 and 100)",
        )?;
        check_keys(map, KEYS)?;
        if map.is_empty() {
            return Err(SlaConfigError::new(
                "",
                "must contain at least one of the keys min, max (numbers between 0 and 100)",
            ));
        }
        let pct = |key: &str, default: f64| match map.get(key) {
            Some(v) => number(v, key, |x| (0.0..=100.0).contains(&x), PERCENT),
            None => Ok(default),
        };
        Ok(Self {
            config: FailureRateConfig {
                min: pct("min", 0.0)?,
                max: pct("max", 100.0)?,
            },
            total: 0,
            errors: 0,
        })
    }

    #[inline]
    pub fn add(&mut self, it: &IterationSample) {
        self.total += 1;
        self.errors += u64::from(it.failed);
    }

    /// Fails when `other` has another config (merging would be meaningless).
    pub fn check_merge(&self, other: &Self) -> Result<(), SlaError> {
        ensure_same_config(Self::NAME, &self.config, &other.config)
    }

    pub fn merge(&mut self, other: &Self) -> Result<(), SlaError> {
        self.check_merge(other)?;
        // Counts come from peers: saturate rather than overflow.
        self.total = self.total.saturating_add(other.total);
        self.errors = self.errors.saturating_add(other.errors);
        Ok(())
    }

    /// Takes in what one agent's cumulative state gained from `old` to `new` (see
    /// [`crate::sla::SlaChecker::advance`]).
    /// False when `new` cannot have grown from `old` (fewer iterations: a new session under
    /// the same agent name): the caller merges everything again instead.
    pub fn advance(&mut self, old: Option<&Self>, new: &Self) -> bool {
        let (total, errors) = old.map_or((0, 0), |o| (o.total, o.errors));
        if new.total < total || new.errors < errors {
            return false;
        }
        self.total = self.total.saturating_add(new.total - total);
        self.errors = self.errors.saturating_add(new.errors - errors);
        true
    }

    /// Failure percentage, 0.0 before any iteration.
    pub fn rate(&self) -> f64 {
        if self.total == 0 {
            0.0
        } else {
            // Same operation order as Rally: errors * 100.0 / total.
            self.errors as f64 * 100.0 / self.total as f64
        }
    }

    /// With zero iterations Rally never evaluates, so it passes even for
    /// `min > 0`; we keep that as a property of the state (Rally's `merge`
    /// of two empty instances would re-evaluate and fail, which breaks the
    /// merge contract).
    pub fn success(&self) -> bool {
        let rate = self.rate();
        self.total == 0 || (self.config.min <= rate && rate <= self.config.max)
    }

    pub fn detail(&self) -> String {
        format!(
            "Failure rate criteria {:.2}% <= {:.2}% <= {:.2}% - {}",
            self.config.min,
            self.rate(),
            self.config.max,
            status_word(self.success())
        )
    }

    /// Headline: (failure rate %, max %).
    pub fn headline(&self) -> (f64, f64) {
        (self.rate(), self.config.max)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn feed(fr: &mut FailureRate, failed: &[bool]) {
        for &failed in failed {
            fr.add(&IterationSample {
                duration: 0.1,
                failed,
                top_level_actions: &[],
            });
        }
    }

    /// Dummy.failure from 5 to 10 each 2 over 20 iterations: 6, 8, 10 fail.
    fn dummy_failure_5_10_2() -> Vec<bool> {
        (1..=20)
            .map(|i| (5..=10).contains(&i) && i % 2 == 0)
            .collect()
    }

    #[test]
    fn default_sla_fails_on_15_percent() {
        let mut fr = FailureRate::from_config(&json!({"max": 0})).unwrap();
        feed(&mut fr, &dummy_failure_5_10_2());
        assert!(!fr.success());
        assert_eq!(
            fr.detail(),
            "Failure rate criteria 0.00% <= 15.00% <= 0.00% - Failed"
        );
        assert_eq!(fr.headline(), (15.0, 0.0));
    }

    #[test]
    fn rally_self_test_25_percent() {
        let mut fr = FailureRate::from_config(&json!({"min": 25, "max": 25})).unwrap();
        let f: Vec<bool> = (1..=20)
            .map(|i| (5..=15).contains(&i) && i % 2 == 0)
            .collect();
        feed(&mut fr, &f);
        assert!(fr.success());
        assert_eq!(
            fr.detail(),
            "Failure rate criteria 25.00% <= 25.00% <= 25.00% - Passed"
        );
    }

    #[test]
    fn zero_iterations_pass_even_with_min() {
        let fr = FailureRate::from_config(&json!({"min": 50})).unwrap();
        assert_eq!(
            fr.detail(),
            "Failure rate criteria 50.00% <= 0.00% <= 100.00% - Passed"
        );
        let mut empty = fr.clone();
        empty.merge(&fr).unwrap();
        assert!(empty.success());
    }

    #[test]
    fn min_trips_on_first_success() {
        let mut fr = FailureRate::from_config(&json!({"min": 25})).unwrap();
        feed(&mut fr, &[false]);
        assert!(!fr.success());
    }

    #[test]
    fn config_validation() {
        let ok = FailureRate::from_config(&json!({"min": 10.5})).unwrap();
        assert_eq!(
            ok.config,
            FailureRateConfig {
                min: 10.5,
                max: 100.0
            }
        );
        assert!(FailureRate::from_config(&json!({"min": 60, "max": 10})).is_ok());
        for (cfg, subpath, needle) in [
            (
                json!({"max": 200}),
                "max",
                "must be a number between 0 and 100, got 200",
            ),
            (json!({"min": -1}), "min", "got -1"),
            (json!({"max": true}), "max", "got boolean true"),
            (json!({"max": "5"}), "max", "got string \"5\""),
            (json!({}), "", "at least one of the keys min, max"),
            (
                json!({"maxx": 1}),
                "maxx",
                "unknown key 'maxx'; allowed keys: 'min', 'max'",
            ),
            (json!(5), "", "must be an object"),
        ] {
            let err = FailureRate::from_config(&cfg).unwrap_err();
            assert_eq!(err.subpath, subpath, "{cfg}");
            assert!(err.message.contains(needle), "{cfg}: {}", err.message);
        }
    }

    #[test]
    fn merge_rejects_other_config() {
        let mut a = FailureRate::from_config(&json!({"max": 1})).unwrap();
        let b = FailureRate::from_config(&json!({"max": 2})).unwrap();
        assert!(matches!(a.merge(&b), Err(SlaError::ConfigMismatch { .. })));
    }
}
