//! `max_avg_duration_per_atomic`: mean duration per top-level atomic action.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::IterationSample;
use super::config::{describe, object};
use super::error::{SlaConfigError, SlaError, ensure_same_config};
use super::format::status_word;

/// One configured atom: its limit and the (sum, count) of its samples.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AtomLimit {
    pub name: String,
    #[serde(with = "super::serde_f64")]
    pub limit: f64,
    #[serde(with = "super::serde_f64")]
    sum: f64,
    count: u64,
}

impl AtomLimit {
    /// Average of the samples, 0.0 when the atom was never seen (passes).
    pub fn avg(&self) -> f64 {
        if self.count == 0 {
            0.0
        } else {
            self.sum / self.count as f64
        }
    }
}

/// Only the configured atoms are tracked: unconfigured ones can never affect
/// the verdict or the detail, and keeping a fixed list avoids a per-iteration
/// map lookup. Because every instance tracks the same configured atoms,
/// merging is the union Rally intended (Rally drops atoms seen only by
/// `other` and raises `KeyError` for configured atoms missing from `self`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MaxAvgDurationPerAtomic {
    atoms: Vec<AtomLimit>,
    /// All iterations, failed included: Rally re-evaluates on every iteration
    /// but not before the first, which matters for non-positive limits.
    iterations: u64,
}

impl MaxAvgDurationPerAtomic {
    pub const NAME: &'static str = "max_avg_duration_per_atomic";

    /// Rally's schema: object of `{atomic_name: number}`, at least one entry.
    /// Limits are any number (Rally sets no minimum), kept in config order.
    pub fn from_config(value: &Value) -> Result<Self, SlaConfigError> {
        let map = object(
            value,
            "an object mapping atomic action names to maximum average durations in seconds",
        )?;
        if map.is_empty() {
            return Err(SlaConfigError::new(
                "",
                "must name at least one atomic action, e.g. {\"foo\": 1.5}",
            ));
        }
        let atoms = map
            .iter()
            .map(|(name, v)| match v.as_f64() {
                Some(limit) => Ok(AtomLimit {
                    name: name.clone(),
                    limit,
                    sum: 0.0,
                    count: 0,
                }),
                None => Err(SlaConfigError::new(
                    name.as_str(),
                    format!(
                        "must be a number (maximum average duration of atomic action {name:?} \
                         in seconds), got {}",
                        describe(v)
                    ),
                )),
            })
            .collect::<Result<_, _>>()?;
        Ok(Self {
            atoms,
            iterations: 0,
        })
    }

    /// Successful iterations only; each top-level action is one sample, so a
    /// name repeated within an iteration yields several samples.
    #[inline]
    pub fn add(&mut self, it: &IterationSample) {
        self.iterations += 1;
        if it.failed {
            return;
        }
        for &(name, duration) in it.top_level_actions {
            if let Some(atom) = self.atoms.iter_mut().find(|a| a.name == name) {
                atom.sum += duration;
                atom.count += 1;
            }
        }
    }

    /// Fails when `other` has another config (atoms, limits or their order,
    /// which the detail follows).
    pub fn check_merge(&self, other: &Self) -> Result<(), SlaError> {
        let same = self.atoms.len() == other.atoms.len()
            && self
                .atoms
                .iter()
                .zip(&other.atoms)
                .all(|(a, b)| a.name == b.name && a.limit == b.limit);
        let cfg = |s: &Self| -> Vec<(String, f64)> {
            s.atoms.iter().map(|a| (a.name.clone(), a.limit)).collect()
        };
        if same {
            Ok(())
        } else {
            ensure_same_config(Self::NAME, &cfg(self), &cfg(other))
        }
    }

    pub fn merge(&mut self, other: &Self) -> Result<(), SlaError> {
        self.check_merge(other)?;
        for (mine, theirs) in self.atoms.iter_mut().zip(&other.atoms) {
            mine.sum += theirs.sum;
            mine.count += theirs.count;
        }
        self.iterations += other.iterations;
        Ok(())
    }

    /// Configured atoms in config order.
    pub fn atoms(&self) -> &[AtomLimit] {
        &self.atoms
    }

    pub fn success(&self) -> bool {
        self.iterations == 0 || self.atoms.iter().all(|a| a.avg() <= a.limit)
    }

    pub fn detail(&self) -> String {
        let mut out = String::from("Average duration of one iteration for atomic actions:");
        for a in &self.atoms {
            out.push_str(&format!(
                "\nAction: '{}'. {:.2}s <= {:.2}s",
                a.name,
                a.avg(),
                a.limit
            ));
        }
        out.push_str("\nStatus: ");
        out.push_str(status_word(self.success()));
        out
    }

    /// Headline: (avg, limit) of the atom with the worst avg/limit ratio,
    /// first in config order on ties. A non-positive limit has no meaningful
    /// ratio: it ranks as infinitely bad when exceeded, else as 0.
    pub fn headline(&self) -> (f64, f64) {
        let ratio = |a: &AtomLimit| {
            let avg = a.avg();
            if a.limit > 0.0 {
                avg / a.limit
            } else if avg > a.limit {
                f64::INFINITY
            } else {
                0.0
            }
        };
        let mut worst: Option<(&AtomLimit, f64)> = None;
        for a in &self.atoms {
            let r = ratio(a);
            if worst.is_none_or(|(_, w)| r > w) {
                worst = Some((a, r));
            }
        }
        worst.map_or((0.0, 0.0), |(a, _)| (a.avg(), a.limit))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn add(c: &mut MaxAvgDurationPerAtomic, failed: bool, actions: &[(&str, f64)]) {
        c.add(&IterationSample {
            duration: 1.0,
            failed,
            top_level_actions: actions,
        });
    }

    #[test]
    fn detail_and_semantics() {
        let mut c =
            MaxAvgDurationPerAtomic::from_config(&json!({"a1": 42, "b": 0.5, "never": 1})).unwrap();
        assert_eq!(
            c.detail(),
            "Average duration of one iteration for atomic actions:\n\
             Action: 'a1'. 0.00s <= 42.00s\n\
             Action: 'b'. 0.00s <= 0.50s\n\
             Action: 'never'. 0.00s <= 1.00s\n\
             Status: Passed"
        );
        // Repeated names are separate samples; unconfigured atoms ignored.
        add(&mut c, false, &[("a1", 3.0), ("a1", 3.28), ("other", 99.0)]);
        // Failed iterations are ignored.
        add(&mut c, true, &[("b", 100.0)]);
        add(&mut c, false, &[("b", 0.75)]);
        assert!(!c.success());
        assert_eq!(
            c.detail(),
            "Average duration of one iteration for atomic actions:\n\
             Action: 'a1'. 3.14s <= 42.00s\n\
             Action: 'b'. 0.75s <= 0.50s\n\
             Action: 'never'. 0.00s <= 1.00s\n\
             Status: Failed"
        );
        assert_eq!(c.headline(), (0.75, 0.5));
    }

    #[test]
    fn zero_iterations_pass_even_with_negative_limit() {
        let mut c = MaxAvgDurationPerAtomic::from_config(&json!({"x": -1})).unwrap();
        assert!(c.success());
        add(&mut c, true, &[]);
        assert!(!c.success(), "Rally re-evaluates after any iteration");
    }

    #[test]
    fn config_validation() {
        let err = MaxAvgDurationPerAtomic::from_config(&json!({})).unwrap_err();
        assert_eq!(err.subpath, "");
        assert!(err.message.contains("at least one atomic action"));
        let err = MaxAvgDurationPerAtomic::from_config(&json!({"foo": true})).unwrap_err();
        assert_eq!(err.subpath, "foo");
        assert!(err.message.ends_with("got boolean true"), "{}", err.message);
        assert!(MaxAvgDurationPerAtomic::from_config(&json!([1])).is_err());
    }

    #[test]
    fn merge_is_union() {
        let cfg = json!({"a": 1, "b": 1});
        let mut x = MaxAvgDurationPerAtomic::from_config(&cfg).unwrap();
        let mut y = x.clone();
        add(&mut x, false, &[("a", 0.5)]);
        add(&mut y, false, &[("b", 2.0)]);
        x.merge(&y).unwrap();
        assert_eq!(x.atoms()[0].avg(), 0.5);
        assert_eq!(x.atoms()[1].avg(), 2.0);
        assert!(!x.success());
        let other = MaxAvgDurationPerAtomic::from_config(&json!({"b": 1, "a": 1})).unwrap();
        assert!(
            x.merge(&other).is_err(),
            "config order is part of the config"
        );
    }
}
