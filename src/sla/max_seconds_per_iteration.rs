//! `max_seconds_per_iteration`: the slowest iteration, failed ones included.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::IterationSample;
use super::config::number;
use super::error::{SlaConfigError, SlaError, ensure_same_config};
use super::format::status_word;

/// Config (`limit`, seconds) plus the maximum duration seen (0.0 initially,
/// like Rally, which is why zero iterations pass).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MaxSecondsPerIteration {
    #[serde(with = "super::serde_f64")]
    pub limit: f64,
    #[serde(with = "super::serde_f64")]
    max_duration: f64,
}

impl MaxSecondsPerIteration {
    pub const NAME: &'static str = "max_seconds_per_iteration";

    /// Rally's schema: a number `> 0`.
    pub fn from_config(value: &Value) -> Result<Self, SlaConfigError> {
        let limit = number(value, "", |x| x > 0.0, "a number of seconds greater than 0")?;
        Ok(Self {
            limit,
            max_duration: 0.0,
        })
    }

    #[inline]
    pub fn add(&mut self, it: &IterationSample) {
        if it.duration > self.max_duration {
            self.max_duration = it.duration;
        }
    }

    /// Fails when `other` has another config (merging would be meaningless).
    pub fn check_merge(&self, other: &Self) -> Result<(), SlaError> {
        ensure_same_config(Self::NAME, &self.limit, &other.limit)
    }

    pub fn merge(&mut self, other: &Self) -> Result<(), SlaError> {
        self.check_merge(other)?;
        if other.max_duration > self.max_duration {
            self.max_duration = other.max_duration;
        }
        Ok(())
    }

    /// Takes in one agent's cumulative state: its maximum only grows, so the merged maximum
    /// is the larger of the two (see [`crate::sla::SlaChecker::advance`]).
    /// False when `new` cannot have grown from `old` (its maximum is lower: a new session
    /// under the same agent name): the caller merges everything again instead.
    pub fn advance(&mut self, old: Option<&Self>, new: &Self) -> bool {
        if old.is_some_and(|o| new.max_duration < o.max_duration) {
            return false;
        }
        if new.max_duration > self.max_duration {
            self.max_duration = new.max_duration;
        }
        true
    }

    pub fn max_duration(&self) -> f64 {
        self.max_duration
    }

    pub fn success(&self) -> bool {
        self.max_duration <= self.limit
    }

    pub fn detail(&self) -> String {
        format!(
            "Maximum seconds per iteration {:.2}s <= {:.2}s - {}",
            self.max_duration,
            self.limit,
            status_word(self.success())
        )
    }

    /// Headline: (max duration s, limit s).
    pub fn headline(&self) -> (f64, f64) {
        (self.max_duration, self.limit)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn sample(duration: f64, failed: bool) -> IterationSample<'static> {
        IterationSample {
            duration,
            failed,
            top_level_actions: &[],
        }
    }

    #[test]
    fn counts_failed_iterations_too() {
        let mut c = MaxSecondsPerIteration::from_config(&json!(1.5)).unwrap();
        assert_eq!(
            c.detail(),
            "Maximum seconds per iteration 0.00s <= 1.50s - Passed"
        );
        c.add(&sample(1.2, false));
        assert!(c.success());
        c.add(&sample(2.345, true));
        assert_eq!(
            c.detail(),
            "Maximum seconds per iteration 2.35s <= 1.50s - Failed"
        );
    }

    #[test]
    fn config_validation() {
        assert!(MaxSecondsPerIteration::from_config(&json!(3)).is_ok());
        for bad in [
            json!(0),
            json!(-1.0),
            json!(true),
            json!("1"),
            json!({"max": 1}),
        ] {
            let err = MaxSecondsPerIteration::from_config(&bad).unwrap_err();
            assert_eq!(err.subpath, "");
            assert!(
                err.message
                    .starts_with("must be a number of seconds greater than 0, got")
            );
        }
    }
}
