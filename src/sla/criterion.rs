//! The closed set of criteria, dispatched by `match` (no trait objects: the
//! enum is serde-able as a whole and `add` stays a direct, inlinable call).

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::error::{SlaConfigError, SlaError};
use super::{
    CriterionStatus, FailureRate, IterationSample, MaxAvgDuration, MaxAvgDurationPerAtomic,
    MaxPercentile, MaxSecondsPerIteration, Outliers, PerformanceDegradation,
};

/// Names accepted by [`Criterion::from_config`], in documentation order.
pub const KNOWN_CRITERIA: [&str; 7] = [
    FailureRate::NAME,
    MaxSecondsPerIteration::NAME,
    MaxAvgDuration::NAME,
    MaxAvgDurationPerAtomic::NAME,
    Outliers::NAME,
    PerformanceDegradation::NAME,
    MaxPercentile::NAME,
];

/// One configured criterion with its running state. Serialized externally
/// tagged by criterion name, e.g. `{"failure_rate": {...}}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Criterion {
    FailureRate(FailureRate),
    MaxSecondsPerIteration(MaxSecondsPerIteration),
    MaxAvgDuration(MaxAvgDuration),
    MaxAvgDurationPerAtomic(MaxAvgDurationPerAtomic),
    Outliers(Outliers),
    PerformanceDegradation(PerformanceDegradation),
    MaxPercentile(MaxPercentile),
}

/// Applies `$body` to the inner value of any variant.
macro_rules! each {
    ($self:expr, $c:ident => $body:expr) => {
        match $self {
            Criterion::FailureRate($c) => $body,
            Criterion::MaxSecondsPerIteration($c) => $body,
            Criterion::MaxAvgDuration($c) => $body,
            Criterion::MaxAvgDurationPerAtomic($c) => $body,
            Criterion::Outliers($c) => $body,
            Criterion::PerformanceDegradation($c) => $body,
            Criterion::MaxPercentile($c) => $body,
        }
    };
}

impl Criterion {
    /// Builds a criterion from its task-file entry `name: config`. Errors
    /// carry the key path below the criterion (empty for the value itself or
    /// an unknown name).
    pub fn from_config(name: &str, config: &Value) -> Result<Criterion, SlaConfigError> {
        Ok(match name {
            FailureRate::NAME => Criterion::FailureRate(FailureRate::from_config(config)?),
            MaxSecondsPerIteration::NAME => {
                Criterion::MaxSecondsPerIteration(MaxSecondsPerIteration::from_config(config)?)
            }
            MaxAvgDuration::NAME => Criterion::MaxAvgDuration(MaxAvgDuration::from_config(config)?),
            MaxAvgDurationPerAtomic::NAME => {
                Criterion::MaxAvgDurationPerAtomic(MaxAvgDurationPerAtomic::from_config(config)?)
            }
            Outliers::NAME => Criterion::Outliers(Outliers::from_config(config)?),
            PerformanceDegradation::NAME => {
                Criterion::PerformanceDegradation(PerformanceDegradation::from_config(config)?)
            }
            MaxPercentile::NAME => Criterion::MaxPercentile(MaxPercentile::from_config(config)?),
            _ => {
                return Err(SlaConfigError::new(
                    "",
                    format!(
                        "unknown SLA criterion '{name}'; available: {}",
                        super::config::quoted(&KNOWN_CRITERIA)
                    ),
                ));
            }
        })
    }

    /// The criterion's config name (`"failure_rate"`, ...).
    pub fn name(&self) -> &'static str {
        match self {
            Criterion::FailureRate(_) => FailureRate::NAME,
            Criterion::MaxSecondsPerIteration(_) => MaxSecondsPerIteration::NAME,
            Criterion::MaxAvgDuration(_) => MaxAvgDuration::NAME,
            Criterion::MaxAvgDurationPerAtomic(_) => MaxAvgDurationPerAtomic::NAME,
            Criterion::Outliers(_) => Outliers::NAME,
            Criterion::PerformanceDegradation(_) => PerformanceDegradation::NAME,
            Criterion::MaxPercentile(_) => MaxPercentile::NAME,
        }
    }

    /// Feeds one iteration; returns the cumulative verdict (Rally's
    /// `add_iteration`).
    #[inline]
    pub fn add(&mut self, it: &IterationSample) -> bool {
        each!(self, c => { c.add(it); c.success() })
    }

    /// Moves a merged state on by what one agent's cumulative state gained from `old`
    /// (`None`: nothing yet) to `new`, without re-merging the others. False when this kind
    /// cannot (its state is not a sum or a running extreme); the caller merges everything
    /// again then. The configs must already match ([`Criterion::check_merge`]).
    pub fn advance(&mut self, old: Option<&Criterion>, new: &Criterion) -> bool {
        match (self, old, new) {
            (Criterion::FailureRate(m), None, Criterion::FailureRate(n)) => m.advance(None, n),
            (
                Criterion::FailureRate(m),
                Some(Criterion::FailureRate(o)),
                Criterion::FailureRate(n),
            ) => m.advance(Some(o), n),
            (Criterion::MaxAvgDuration(m), None, Criterion::MaxAvgDuration(n)) => {
                m.advance(None, n)
            }
            (
                Criterion::MaxAvgDuration(m),
                Some(Criterion::MaxAvgDuration(o)),
                Criterion::MaxAvgDuration(n),
            ) => m.advance(Some(o), n),
            (Criterion::MaxSecondsPerIteration(m), None, Criterion::MaxSecondsPerIteration(n)) => {
                m.advance(None, n)
            }
            (
                Criterion::MaxSecondsPerIteration(m),
                Some(Criterion::MaxSecondsPerIteration(o)),
                Criterion::MaxSecondsPerIteration(n),
            ) => m.advance(Some(o), n),
            (Criterion::PerformanceDegradation(m), None, Criterion::PerformanceDegradation(n)) => {
                m.advance(None, n)
            }
            (
                Criterion::PerformanceDegradation(m),
                Some(Criterion::PerformanceDegradation(o)),
                Criterion::PerformanceDegradation(n),
            ) => m.advance(Some(o), n),
            _ => false,
        }
    }

    /// Checks that `other` is the same kind with the same config, without
    /// changing anything.
    pub fn check_merge(&self, other: &Criterion) -> Result<(), SlaError> {
        match (self, other) {
            (Criterion::FailureRate(a), Criterion::FailureRate(b)) => a.check_merge(b),
            (Criterion::MaxSecondsPerIteration(a), Criterion::MaxSecondsPerIteration(b)) => {
                a.check_merge(b)
            }
            (Criterion::MaxAvgDuration(a), Criterion::MaxAvgDuration(b)) => a.check_merge(b),
            (Criterion::MaxAvgDurationPerAtomic(a), Criterion::MaxAvgDurationPerAtomic(b)) => {
                a.check_merge(b)
            }
            (Criterion::Outliers(a), Criterion::Outliers(b)) => a.check_merge(b),
            (Criterion::PerformanceDegradation(a), Criterion::PerformanceDegradation(b)) => {
                a.check_merge(b)
            }
            (Criterion::MaxPercentile(a), Criterion::MaxPercentile(b)) => a.check_merge(b),
            (a, b) => Err(SlaError::KindMismatch {
                left: a.name(),
                right: b.name(),
            }),
        }
    }

    /// Folds `other`'s state in, as if this instance had seen its iterations
    /// too. Fails without changing `self` when kinds or configs differ.
    pub fn merge(&mut self, other: &Criterion) -> Result<(), SlaError> {
        match (self, other) {
            (Criterion::FailureRate(a), Criterion::FailureRate(b)) => a.merge(b),
            (Criterion::MaxSecondsPerIteration(a), Criterion::MaxSecondsPerIteration(b)) => {
                a.merge(b)
            }
            (Criterion::MaxAvgDuration(a), Criterion::MaxAvgDuration(b)) => a.merge(b),
            (Criterion::MaxAvgDurationPerAtomic(a), Criterion::MaxAvgDurationPerAtomic(b)) => {
                a.merge(b)
            }
            (Criterion::Outliers(a), Criterion::Outliers(b)) => a.merge(b),
            (Criterion::PerformanceDegradation(a), Criterion::PerformanceDegradation(b)) => {
                a.merge(b)
            }
            (Criterion::MaxPercentile(a), Criterion::MaxPercentile(b)) => a.merge(b),
            (a, b) => Err(SlaError::KindMismatch {
                left: a.name(),
                right: b.name(),
            }),
        }
    }

    /// Verdict on the data seen so far (true with zero iterations).
    pub fn success(&self) -> bool {
        each!(self, c => c.success())
    }

    /// Rally's detail text.
    pub fn detail(&self) -> String {
        each!(self, c => c.detail())
    }

    /// The result row. `value` / `limit` are, per criterion:
    /// `failure_rate` failure % and `max`; `max_seconds_per_iteration` the
    /// max duration and limit; `max_avg_duration` the average and limit;
    /// `max_avg_duration_per_atomic` avg and limit of the atom with the
    /// worst avg/limit ratio; `outliers` the outlier count and `max`;
    /// `performance_degradation` degradation % and `max_degradation`;
    /// `max_percentile` value and limit of the worst value/limit ratio.
    pub fn status(&self) -> CriterionStatus {
        let (value, limit) = each!(self, c => c.headline());
        CriterionStatus {
            criterion: self.name().to_owned(),
            success: self.success(),
            detail: self.detail(),
            value,
            limit,
            parts: match self {
                Criterion::MaxPercentile(c) => c.parts(),
                _ => Vec::new(),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn unknown_name_lists_known() {
        let err = Criterion::from_config("max_failure", &json!(1)).unwrap_err();
        assert_eq!(err.subpath, "");
        assert_eq!(
            err.message,
            "unknown SLA criterion 'max_failure'; available: 'failure_rate', \
             'max_seconds_per_iteration', 'max_avg_duration', 'max_avg_duration_per_atomic', \
             'outliers', 'performance_degradation', 'max_percentile'"
        );
    }

    #[test]
    fn every_known_name_parses_and_round_trips() {
        let configs = [
            json!({"max": 0}),
            json!(1.0),
            json!(1.0),
            json!({"a": 1}),
            json!({}),
            json!({"max_degradation": 10}),
            json!({"p95": 1}),
        ];
        for (name, cfg) in KNOWN_CRITERIA.iter().zip(configs) {
            let mut c = Criterion::from_config(name, &cfg).unwrap();
            assert_eq!(c.name(), *name);
            assert!(c.success(), "{name}: zero iterations pass");
            for i in 0..10 {
                c.add(&IterationSample {
                    duration: 0.1 * f64::from(i),
                    failed: i == 3,
                    top_level_actions: &[("a", 0.05)],
                });
            }
            let json = serde_json::to_string(&c).unwrap();
            assert!(json.starts_with(&format!("{{\"{name}\":")), "{json}");
            let back: Criterion = serde_json::from_str(&json).unwrap();
            assert_eq!(back, c);
            assert_eq!(back.status(), c.status());
        }
    }

    #[test]
    fn merge_rejects_other_kind() {
        let mut a = Criterion::from_config("max_avg_duration", &json!(1)).unwrap();
        let b = Criterion::from_config("max_seconds_per_iteration", &json!(1)).unwrap();
        assert_eq!(
            a.merge(&b),
            Err(SlaError::KindMismatch {
                left: "max_avg_duration",
                right: "max_seconds_per_iteration"
            })
        );
        let c = Criterion::from_config("max_avg_duration", &json!(2)).unwrap();
        assert!(matches!(a.merge(&c), Err(SlaError::ConfigMismatch { .. })));
    }

    #[test]
    fn status_row() {
        let mut c = Criterion::from_config("failure_rate", &json!({"max": 10})).unwrap();
        c.add(&IterationSample {
            duration: 1.0,
            failed: true,
            top_level_actions: &[],
        });
        let s = c.status();
        assert_eq!(s.criterion, "failure_rate");
        assert!(!s.success);
        assert_eq!(
            s.detail,
            "Failure rate criteria 0.00% <= 100.00% <= 10.00% - Failed"
        );
        assert_eq!((s.value, s.limit), (100.0, 10.0));
    }
}
