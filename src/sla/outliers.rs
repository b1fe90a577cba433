//! `outliers`: successful iterations slower than `mean + sigmas * std` of the
//! iterations before them.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::IterationSample;
use super::config::{check_keys, integer_at_least, number, object};
use super::error::{SlaConfigError, SlaError, ensure_same_config};
use super::format::status_word;

/// `{max, min_iterations, sigmas}` with Rally's defaults 0, 3, 3.0.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OutliersConfig {
    pub max: u64,
    pub min_iterations: u64,
    #[serde(with = "super::serde_f64")]
    pub sigmas: f64,
}

/// Config plus a streaming mean / variance (Welford) of successful durations.
///
/// The outlier count is Rally's approximation and stays approximate after a
/// merge: each iteration is judged once, against the threshold of the
/// iterations that came before it *in its own stream*, and never
/// re-classified. `merge` adds the two counts (as Rally does), so a merged
/// count generally differs from what one instance fed the interleaved stream
/// would have counted: e.g. the early iterations of every stream are judged
/// against few samples, and a stream of uniformly slow iterations finds no
/// outliers in itself although a fast stream would flag them. `n`, mean and
/// variance on the other hand merge exactly (Chan et al.'s parallel
/// formula), and so does the threshold recomputed from them, which is what
/// later iterations of the merged instance are judged against.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Outliers {
    pub config: OutliersConfig,
    /// Successful iterations seen.
    n: u64,
    outliers: u64,
    #[serde(with = "super::serde_f64")]
    mean: f64,
    /// Sum of squared deviations from the mean (variance = m2 / (n - 1)).
    #[serde(with = "super::serde_f64")]
    m2: f64,
    /// `mean + sigmas * std` once `n >= 2`.
    #[serde(with = "super::serde_f64::option")]
    threshold: Option<f64>,
}

const KEYS: &[&str] = &["max", "min_iterations", "sigmas"];

impl Outliers {
    pub const NAME: &'static str = "outliers";

    /// Rally's draft-07 schema: `max` integer >= 0, `min_iterations` integer
    /// >= 3, `sigmas` number > 0, nothing else; `{}` is valid.
    pub fn from_config(value: &Value) -> Result<Self, SlaConfigError> {
        let map = object(
            value,
            "an object with optional keys max (integer >= 0), min_iterations (integer >= 3) \
             and sigmas (number > 0)",
        )?;
        check_keys(map, KEYS)?;
        let max = match map.get("max") {
            Some(v) => integer_at_least(v, "max", 0)?,
            None => 0,
        };
        let min_iterations = match map.get("min_iterations") {
            Some(v) => integer_at_least(v, "min_iterations", 3)?,
            None => 3,
        };
        let sigmas = match map.get("sigmas") {
            Some(v) => number(v, "sigmas", |x| x > 0.0, "a number greater than 0")?,
            None => 3.0,
        };
        Ok(Self {
            config: OutliersConfig {
                max,
                min_iterations,
                sigmas,
            },
            n: 0,
            outliers: 0,
            mean: 0.0,
            m2: 0.0,
            threshold: None,
        })
    }

    /// Rally's order: first judge the new duration against the threshold of
    /// the previous iterations (a threshold of exactly 0.0 is falsy in Python
    /// and disables the test), then update mean / variance and threshold.
    #[inline]
    pub fn add(&mut self, it: &IterationSample) {
        if it.failed {
            return;
        }
        let x = it.duration;
        self.n += 1;
        if self.n >= self.config.min_iterations
            && let Some(t) = self.threshold
            && t != 0.0
            && x > t
        {
            self.outliers += 1;
        }
        let delta = x - self.mean;
        self.mean += delta / self.n as f64;
        self.m2 += delta * (x - self.mean);
        self.update_threshold();
    }

    fn update_threshold(&mut self) {
        if let Some(var) = self.variance() {
            self.threshold = Some(self.mean + self.config.sigmas * var.sqrt());
        }
    }

    /// Sums `n` and outlier counts, combines mean / variance exactly (Chan et
    /// al.), recomputes the threshold. See the type docs for why the merged
    /// outlier count is only approximate.
    /// Fails when `other` has another config (merging would be meaningless).
    pub fn check_merge(&self, other: &Self) -> Result<(), SlaError> {
        ensure_same_config(Self::NAME, &self.config, &other.config)
    }

    pub fn merge(&mut self, other: &Self) -> Result<(), SlaError> {
        self.check_merge(other)?;
        self.outliers += other.outliers;
        if other.n == 0 {
            return Ok(());
        }
        if self.n == 0 {
            self.n = other.n;
            self.mean = other.mean;
            self.m2 = other.m2;
        } else {
            let (na, nb) = (self.n as f64, other.n as f64);
            let n = na + nb;
            let delta = other.mean - self.mean;
            self.mean += delta * nb / n;
            self.m2 += other.m2 + delta * delta * na * nb / n;
            self.n += other.n;
        }
        self.update_threshold();
        Ok(())
    }

    /// Successful iterations seen.
    pub fn n(&self) -> u64 {
        self.n
    }

    /// Mean of successful durations (0.0 when none).
    pub fn mean(&self) -> f64 {
        self.mean
    }

    /// Sample variance (divisor n - 1), `None` below two samples.
    pub fn variance(&self) -> Option<f64> {
        (self.n >= 2).then(|| self.m2 / (self.n - 1) as f64)
    }

    /// Current threshold, `None` below two samples.
    pub fn threshold(&self) -> Option<f64> {
        self.threshold
    }

    /// Outliers counted so far (approximate, see the type docs).
    pub fn outliers(&self) -> u64 {
        self.outliers
    }

    pub fn success(&self) -> bool {
        self.outliers <= self.config.max
    }

    pub fn detail(&self) -> String {
        format!(
            "Maximum number of outliers {} <= {} - {}",
            self.outliers,
            self.config.max,
            status_word(self.success())
        )
    }

    /// Headline: (outlier count, max).
    pub fn headline(&self) -> (f64, f64) {
        (self.outliers as f64, self.config.max as f64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn feed(c: &mut Outliers, durations: &[f64]) {
        for &duration in durations {
            c.add(&IterationSample {
                duration,
                failed: false,
                top_level_actions: &[],
            });
        }
    }

    #[test]
    fn rally_streaming_rule() {
        let mut c = Outliers::from_config(&json!({})).unwrap();
        assert_eq!(c.detail(), "Maximum number of outliers 0 <= 0 - Passed");
        // 1,1 -> mean 1 std 0 -> threshold 1.0; third iteration (n=3) > 1.0.
        feed(&mut c, &[1.0, 1.0, 1.1]);
        assert_eq!(c.outliers(), 1);
        assert_eq!(c.detail(), "Maximum number of outliers 1 <= 0 - Failed");
        assert_eq!(c.headline(), (1.0, 0.0));
    }

    #[test]
    fn min_iterations_delays_the_test() {
        let mut c = Outliers::from_config(&json!({"min_iterations": 4})).unwrap();
        feed(&mut c, &[1.0, 1.0, 5.0]);
        assert_eq!(c.outliers(), 0);
        feed(&mut c, &[50.0]);
        assert_eq!(c.outliers(), 1);
    }

    #[test]
    fn zero_threshold_disables_the_test() {
        let mut c = Outliers::from_config(&json!({})).unwrap();
        feed(&mut c, &[0.0, 0.0, 7.0]);
        assert_eq!(c.outliers(), 0);
    }

    #[test]
    fn failed_iterations_ignored() {
        let mut c = Outliers::from_config(&json!({})).unwrap();
        feed(&mut c, &[1.0, 1.0]);
        c.add(&IterationSample {
            duration: 100.0,
            failed: true,
            top_level_actions: &[],
        });
        assert_eq!((c.n(), c.outliers()), (2, 0));
    }

    #[test]
    fn welford_matches_two_pass() {
        let xs = [0.3, 1.7, 0.9, 2.2, 0.4, 1.1];
        let mut c = Outliers::from_config(&json!({"sigmas": 1.5})).unwrap();
        feed(&mut c, &xs);
        let mean = xs.iter().sum::<f64>() / 6.0;
        let var = xs.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / 5.0;
        assert!((c.mean() - mean).abs() < 1e-12);
        assert!((c.variance().unwrap() - var).abs() < 1e-12);
        let t = c.threshold().unwrap();
        assert!((t - (mean + 1.5 * var.sqrt())).abs() < 1e-12);
    }

    #[test]
    fn config_validation() {
        let c = Outliers::from_config(&json!({})).unwrap();
        assert_eq!(
            c.config,
            OutliersConfig {
                max: 0,
                min_iterations: 3,
                sigmas: 3.0
            }
        );
        assert!(
            Outliers::from_config(&json!({"max": 2, "min_iterations": 10, "sigmas": 1})).is_ok()
        );
        for (cfg, subpath, needle) in [
            (
                json!({"min_iterations": 2}),
                "min_iterations",
                "must be an integer >= 3, got 2",
            ),
            (json!({"min_iterations": 3.0}), "min_iterations", "write 3"),
            (
                json!({"sigmas": 0}),
                "sigmas",
                "must be a number greater than 0, got 0",
            ),
            (json!({"sigmas": true}), "sigmas", "got boolean true"),
            (json!({"max": -1}), "max", "must be an integer >= 0, got -1"),
            (json!({"max": 1.5}), "max", "got 1.5"),
            (
                json!({"maximum": 1}),
                "maximum",
                "allowed keys: 'max', 'min_iterations', 'sigmas'",
            ),
            (json!(3), "", "must be an object"),
        ] {
            let err = Outliers::from_config(&cfg).unwrap_err();
            assert_eq!(err.subpath, subpath, "{cfg}");
            assert!(err.message.contains(needle), "{cfg}: {}", err.message);
        }
    }
}
