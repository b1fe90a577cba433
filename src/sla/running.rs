//! The agents' SLA states merged, kept up to date report by report.
//!
//! The live verdict of a distributed workload is the merge of every agent's cumulative SLA
//! state. Merging all of them again whenever one reports costs O(agents) per report, so
//! O(agents²) per interval: with thousands of agents that was the controller's largest
//! cost. Instead one running merge is moved on by what each report adds to its agent's
//! previous state ([`SlaChecker::advance`]). Criteria whose state cannot be moved on that
//! way (`outliers`, `max_percentile`, `max_avg_duration_per_atomic`) mark the merge stale,
//! and the next read merges everything again, as before.

use super::SlaChecker;

#[derive(Debug, Default)]
pub struct RunningMerge {
    merged: Option<Result<SlaChecker, String>>,
    /// Merge everything again on the next read.
    stale: bool,
}

impl RunningMerge {
    /// One agent's state went from `old` (`None`: it had none) to `new`.
    pub fn update(&mut self, old: Option<&SlaChecker>, new: &SlaChecker) {
        if self.stale {
            return;
        }
        match (&mut self.merged, old) {
            (None, None) => self.merged = Some(Ok(new.clone())),
            (Some(Ok(merged)), old) => {
                if !matches!(merged.advance(old, new), Ok(true)) {
                    self.stale = true;
                }
            }
            _ => self.stale = true,
        }
    }

    /// Something was taken out (an agent's state went away): merge everything again.
    pub fn mark_stale(&mut self) {
        self.stale = true;
    }

    /// The merged state (`None` when no agent has one), merging `states` (every agent's
    /// latest) again only when the running merge is stale.
    pub fn get<'a>(
        &mut self,
        states: impl Iterator<Item = &'a SlaChecker>,
    ) -> Option<&Result<SlaChecker, String>> {
        if std::mem::take(&mut self.stale) {
            self.merged = merge_all(states);
        }
        self.merged.as_ref()
    }
}

fn merge_all<'a>(
    mut states: impl Iterator<Item = &'a SlaChecker>,
) -> Option<Result<SlaChecker, String>> {
    let mut merged = states.next()?.clone();
    for s in states {
        if let Err(e) = merged.merge(s) {
            return Some(Err(e.to_string()));
        }
    }
    Some(Ok(merged))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sla::IterationSample;
    use serde_json::json;

    fn checker(v: serde_json::Value) -> SlaChecker {
        SlaChecker::from_config(v.as_object().unwrap()).unwrap()
    }

    fn run(config: serde_json::Value) {
        let mut agents = [checker(config.clone()), checker(config.clone())];
        let mut seen: [Option<SlaChecker>; 2] = [None, None];
        let mut running = RunningMerge::default();
        for i in 0..60u32 {
            let k = (i % 2) as usize;
            agents[k].add(&IterationSample {
                duration: 0.01 * f64::from(i % 13),
                failed: i % 11 == 0,
                top_level_actions: &[],
            });
            if i % 5 == 0 {
                running.update(seen[k].as_ref(), &agents[k]);
                seen[k] = Some(agents[k].clone());
            }
        }
        for k in 0..2 {
            running.update(seen[k].as_ref(), &agents[k]);
            seen[k] = Some(agents[k].clone());
        }
        let got = running.get(seen.iter().flatten()).unwrap().clone().unwrap();
        let want = merge_all(agents.iter()).unwrap().unwrap();
        assert_eq!(got.results(), want.results());
    }

    #[test]
    fn a_new_session_under_the_same_name_is_merged_again_not_subtracted() {
        // An agent lost and back starts a fresh state: it did not grow from the old one.
        let config = json!({"failure_rate": {"max": 50}, "max_seconds_per_iteration": 5.0});
        let (mut old, mut other) = (checker(config.clone()), checker(config.clone()));
        for d in [10.0, 0.1, 0.1] {
            old.add(&IterationSample {
                duration: d,
                failed: false,
                top_level_actions: &[],
            });
        }
        other.add(&IterationSample {
            duration: 0.2,
            failed: true,
            top_level_actions: &[],
        });
        let mut fresh = checker(config.clone());
        fresh.add(&IterationSample {
            duration: 0.1,
            failed: false,
            top_level_actions: &[],
        });
        let mut running = RunningMerge::default();
        running.update(None, &old);
        running.update(None, &other);
        running.update(Some(&old), &fresh);
        // Merged again from the latest state per name: exactly `other` and `fresh`.
        let got = running
            .get([&other, &fresh].into_iter())
            .unwrap()
            .clone()
            .unwrap();
        let want = merge_all([&other, &fresh].into_iter()).unwrap().unwrap();
        assert_eq!(got.results(), want.results());
    }

    #[test]
    fn running_merge_equals_merging_everything() {
        run(json!({"failure_rate": {"max": 5}, "max_seconds_per_iteration": 0.1}));
        run(json!({"performance_degradation": {"max_degradation": 50}, "max_avg_duration": 1}));
        // Not movable by deltas: falls back to merging everything.
        run(json!({"outliers": {"max": 1}, "max_percentile": {"p95": 1}}));
    }
}
