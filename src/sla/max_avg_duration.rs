//! `max_avg_duration`: mean duration of the successful iterations.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::IterationSample;
use super::config::number;
use super::error::{SlaConfigError, SlaError, ensure_same_config};
use super::format::status_word;

/// Config (`limit`, seconds) plus (sum, count) of successful durations; a
/// sum rather than a running mean so that merging is plain addition.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MaxAvgDuration {
    #[serde(with = "super::serde_f64")]
    pub limit: f64,
    #[serde(with = "super::serde_f64")]
    sum: f64,
    count: u64,
}

impl MaxAvgDuration {
    pub const NAME: &'static str = "max_avg_duration";

    /// Rally's schema: a number `> 0`.
    pub fn from_config(value: &Value) -> Result<Self, SlaConfigError> {
        let limit = number(value, "", |x| x > 0.0, "a number of seconds greater than 0")?;
        Ok(Self {
            limit,
            sum: 0.0,
            count: 0,
        })
    }

    /// Failed iterations are skipped (they still re-evaluate in Rally, which
    /// cannot change the verdict).
    #[inline]
    pub fn add(&mut self, it: &IterationSample) {
        if !it.failed {
            self.sum += it.duration;
            self.count += 1;
        }
    }

    /// Fails when `other` has another config (merging would be meaningless).
    pub fn check_merge(&self, other: &Self) -> Result<(), SlaError> {
        ensure_same_config(Self::NAME, &self.limit, &other.limit)
    }

    pub fn merge(&mut self, other: &Self) -> Result<(), SlaError> {
        self.check_merge(other)?;
        self.sum += other.sum;
        self.count += other.count;
        Ok(())
    }

    /// Takes in what one agent's cumulative state gained from `old` to `new` (see
    /// [`crate::sla::SlaChecker::advance`]).
    /// False when `new` cannot have grown from `old` (fewer iterations: a new session under
    /// the same agent name): the caller merges everything again instead.
    pub fn advance(&mut self, old: Option<&Self>, new: &Self) -> bool {
        let (sum, count) = old.map_or((0.0, 0), |o| (o.sum, o.count));
        if new.count < count || !(new.sum - sum).is_finite() {
            return false;
        }
        self.sum += new.sum - sum;
        self.count = self.count.saturating_add(new.count - count);
        true
    }

    /// Mean of successful durations, 0.0 when there are none.
    pub fn avg(&self) -> f64 {
        if self.count == 0 {
            0.0
        } else {
            self.sum / self.count as f64
        }
    }

    pub fn success(&self) -> bool {
        self.avg() <= self.limit
    }

    pub fn detail(&self) -> String {
        format!(
            "Average duration of one iteration {:.2}s <= {:.2}s - {}",
            self.avg(),
            self.limit,
            status_word(self.success())
        )
    }

    /// Headline: (average s, limit s).
    pub fn headline(&self) -> (f64, f64) {
        (self.avg(), self.limit)
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
    fn only_successful_iterations_count() {
        let mut c = MaxAvgDuration::from_config(&json!(1)).unwrap();
        assert_eq!(
            c.detail(),
            "Average duration of one iteration 0.00s <= 1.00s - Passed"
        );
        c.add(&sample(100.0, true));
        assert!(c.success());
        c.add(&sample(0.5, false));
        c.add(&sample(2.0, false));
        assert_eq!(
            c.detail(),
            "Average duration of one iteration 1.25s <= 1.00s - Failed"
        );
        assert_eq!(c.headline(), (1.25, 1.0));
    }

    #[test]
    fn config_validation() {
        assert!(MaxAvgDuration::from_config(&json!(0.001)).is_ok());
        for bad in [json!(0), json!(-2), json!(false), json!(null)] {
            assert!(MaxAvgDuration::from_config(&bad).is_err(), "{bad}");
        }
    }
}
