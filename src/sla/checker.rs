//! All criteria of one workload (Rally's `SLAChecker`).

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::error::{SlaConfigError, SlaError};
use super::{Criterion, CriterionStatus, IterationSample};

/// The workload's criteria in config order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SlaChecker {
    criteria: Vec<Criterion>,
}

impl SlaChecker {
    /// Builds the checker from the task's `sla` object; error subpaths are
    /// prefixed with the criterion name (`"failure_rate.max"`). An empty
    /// object yields an empty checker (Rally: `sla: {}` means no criteria;
    /// the *missing* `sla` default is the caller's business).
    pub fn from_config(config: &Map<String, Value>) -> Result<SlaChecker, SlaConfigError> {
        let criteria = config
            .iter()
            .map(|(name, value)| Criterion::from_config(name, value).map_err(|e| e.prefixed(name)))
            .collect::<Result<_, _>>()?;
        Ok(SlaChecker { criteria })
    }

    /// Feeds one iteration to **every** criterion (no short-circuit, so all
    /// states stay complete) and returns the AND of their verdicts.
    #[inline]
    pub fn add(&mut self, it: &IterationSample) -> bool {
        let mut ok = true;
        for c in &mut self.criteria {
            ok &= c.add(it);
        }
        ok
    }

    /// Merges criteria pairwise. Checks every pair first, so on error `self`
    /// is left unchanged (Rally requires identical configs too).
    pub fn merge(&mut self, other: &SlaChecker) -> Result<(), SlaError> {
        if self.criteria.len() != other.criteria.len() {
            return Err(SlaError::CriteriaCountMismatch {
                left: self.criteria.len(),
                right: other.criteria.len(),
            });
        }
        for (mine, theirs) in self.criteria.iter().zip(&other.criteria) {
            mine.check_merge(theirs)?;
        }
        for (mine, theirs) in self.criteria.iter_mut().zip(&other.criteria) {
            mine.merge(theirs)?;
        }
        Ok(())
    }

    /// Moves a merged state on by one agent's report: what its cumulative state gained from
    /// `old` (its previous report, `None` for its first) to `new`, so that a controller with
    /// thousands of agents keeps one running merge instead of merging every agent again
    /// whenever one reports. `Ok(false)` (and `self` possibly part-way moved) when a
    /// criterion cannot be moved on this way (`outliers`, `max_percentile`,
    /// `max_avg_duration_per_atomic`): merge everything again then.
    pub fn advance(
        &mut self,
        old: Option<&SlaChecker>,
        new: &SlaChecker,
    ) -> Result<bool, SlaError> {
        if self.criteria.len() != new.criteria.len() {
            return Err(SlaError::CriteriaCountMismatch {
                left: self.criteria.len(),
                right: new.criteria.len(),
            });
        }
        if old.is_some_and(|o| o.criteria.len() != new.criteria.len()) {
            return Ok(false);
        }
        for (mine, theirs) in self.criteria.iter().zip(&new.criteria) {
            mine.check_merge(theirs)?;
        }
        for (k, (mine, theirs)) in self.criteria.iter_mut().zip(&new.criteria).enumerate() {
            if !mine.advance(old.map(|o| &o.criteria[k]), theirs) {
                return Ok(false);
            }
        }
        Ok(true)
    }

    /// AND of all criteria (true when there are none).
    pub fn success(&self) -> bool {
        self.criteria.iter().all(Criterion::success)
    }

    /// One row per criterion, in config order. Pseudo rows
    /// ([`crate::sla::aborted_on_sla`], ...) are appended by the caller.
    pub fn results(&self) -> Vec<CriterionStatus> {
        self.criteria.iter().map(Criterion::status).collect()
    }

    pub fn is_empty(&self) -> bool {
        self.criteria.is_empty()
    }

    pub fn criteria(&self) -> &[Criterion] {
        &self.criteria
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn checker(v: Value) -> Result<SlaChecker, SlaConfigError> {
        SlaChecker::from_config(v.as_object().unwrap())
    }

    fn sample(duration: f64, failed: bool) -> IterationSample<'static> {
        IterationSample {
            duration,
            failed,
            top_level_actions: &[],
        }
    }

    #[test]
    fn error_subpath_is_prefixed() {
        let err = checker(json!({"failure_rate": {"max": 200}})).unwrap_err();
        assert_eq!(err.subpath, "failure_rate.max");
        assert_eq!(
            err.to_string(),
            "failure_rate.max: must be a number between 0 and 100, got 200"
        );
        let err = checker(json!({"max_avg_duration": -1})).unwrap_err();
        assert_eq!(err.subpath, "max_avg_duration");
        let err = checker(json!({"nope": 1})).unwrap_err();
        assert_eq!(err.subpath, "nope");
        assert!(err.message.contains("available: 'failure_rate'"));
    }

    #[test]
    fn add_updates_all_without_short_circuit() {
        let mut c = checker(json!({
            "failure_rate": {"max": 0},
            "max_seconds_per_iteration": 1.0,
        }))
        .unwrap();
        assert!(c.add(&sample(0.5, false)));
        // failure_rate fails first; max_seconds must still see the 3 s.
        assert!(!c.add(&sample(3.0, true)));
        let rows = c.results();
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[0].criterion, "failure_rate");
        assert_eq!(
            rows[1].detail,
            "Maximum seconds per iteration 3.00s <= 1.00s - Failed"
        );
        assert!(!c.success());
    }

    #[test]
    fn empty_checker() {
        let c = checker(json!({})).unwrap();
        assert!(c.is_empty());
        assert!(c.success());
        assert!(c.results().is_empty());
    }

    #[test]
    fn merge_checks_everything_first() {
        let mut a = checker(json!({"max_avg_duration": 1, "failure_rate": {"max": 5}})).unwrap();
        let mut b = checker(json!({"max_avg_duration": 1, "failure_rate": {"max": 6}})).unwrap();
        a.add(&sample(0.5, false));
        b.add(&sample(0.7, false));
        let before = a.clone();
        assert!(a.merge(&b).is_err());
        assert_eq!(a, before, "failed merge leaves self unchanged");
        let c = checker(json!({"max_avg_duration": 1})).unwrap();
        assert!(matches!(
            a.merge(&c),
            Err(SlaError::CriteriaCountMismatch { left: 2, right: 1 })
        ));
    }

    #[test]
    fn serde_round_trip() {
        let mut c = checker(json!({
            "failure_rate": {"max": 10},
            "outliers": {"max": 1},
            "max_percentile": {"p99": 2},
            "max_avg_duration_per_atomic": {"x": 1}
        }))
        .unwrap();
        let acts = [("x", 0.25)];
        for i in 0..50 {
            c.add(&IterationSample {
                duration: 0.01 * f64::from(i % 7),
                failed: i % 11 == 0,
                top_level_actions: &acts,
            });
        }
        let back: SlaChecker = serde_json::from_str(&serde_json::to_string(&c).unwrap()).unwrap();
        assert_eq!(back, c);
        assert_eq!(back.results(), c.results());
    }

    #[test]
    fn advance_equals_merging_again() {
        let config = json!({
            "failure_rate": {"max": 10},
            "max_avg_duration": 1,
            "max_seconds_per_iteration": 2.0,
            "performance_degradation": {"max_degradation": 50},
        });
        let mut a = checker(config.clone()).unwrap();
        let mut b = checker(config.clone()).unwrap();
        let mut running: Option<SlaChecker> = None;
        let mut seen_a: Option<SlaChecker> = None;
        for i in 0..40 {
            let s = sample(0.01 * f64::from(i % 9), i % 7 == 0);
            if i % 3 == 0 {
                a.add(&s);
                match &mut running {
                    None => running = Some(a.clone()),
                    Some(r) => assert!(r.advance(seen_a.as_ref(), &a).unwrap()),
                }
                seen_a = Some(a.clone());
            } else {
                b.add(&s);
            }
        }
        let mut running = running.unwrap();
        assert!(running.advance(None, &b).unwrap());
        let mut merged = a.clone();
        merged.merge(&b).unwrap();
        assert_eq!(running.results(), merged.results());
        let other = checker(json!({"outliers": {"max": 1}})).unwrap();
        let mut o = other.clone();
        assert!(!o.advance(None, &other).unwrap());
    }
}
