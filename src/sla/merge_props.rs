//! Property tests of the merge contract: splitting a stream into groups,
//! feeding each group to its own checker (serde round-tripped, as agents
//! would ship them), and merging them in random order must give the same
//! rows as one checker fed the whole stream.
//!
//! Durations are multiples of 2^-10 s so that every sum is exact in f64 and
//! the comparison can be exact; with arbitrary floats the summation order
//! differs and a `%.2f` could flip at a rounding boundary, which is float
//! noise, not a merge defect.
//!
//! `outliers` rows are excluded from the exact comparison: its count is an
//! approximation that depends on how the stream was split (see
//! [`super::Outliers`]); its `n` / mean / variance are compared instead.
//!
//! `max_percentile` rows are compared exactly (HDR histograms merge by
//! integer bucket addition); the 1% bound applies to HDR versus the true
//! nearest-rank percentile and is checked separately.

use proptest::prelude::*;
use serde_json::{Value, json};

use super::{Criterion, IterationSample, MaxPercentile, Outliers, SlaChecker};

const ATOMS: [&str; 4] = ["a", "b", "c", "unconfigured"];

#[derive(Debug, Clone)]
struct Iter {
    /// Duration in 1/1024 s.
    k: u32,
    failed: bool,
    /// (atom index, duration in 1/1024 s)
    actions: Vec<(usize, u32)>,
    group: usize,
}

fn secs(k: u32) -> f64 {
    f64::from(k) / 1024.0
}

fn iter_strategy(groups: usize) -> impl Strategy<Value = Iter> {
    (
        0u32..8192,
        prop::bool::weighted(0.2),
        prop::collection::vec((0usize..ATOMS.len(), 0u32..4096), 0..4),
        0..groups,
    )
        .prop_map(|(k, failed, actions, group)| Iter {
            k,
            failed,
            actions,
            group,
        })
}

/// (group count, iterations tagged with their group, merge order)
fn split_stream() -> impl Strategy<Value = (usize, Vec<Iter>, Vec<usize>)> {
    (1usize..6).prop_flat_map(|g| {
        (
            Just(g),
            prop::collection::vec(iter_strategy(g), 0..150),
            Just((0..g).collect::<Vec<_>>()).prop_shuffle(),
        )
    })
}

/// Random limits so that verdicts go both ways.
fn config_strategy() -> impl Strategy<Value = Value> {
    (
        (0u32..=30, 0u32..=100),
        (1u32..9000, 1u32..6000),
        (1u32..4096, 1u32..4096, 1u32..4096),
        (
            0u64..5,
            3u64..7,
            prop::sample::select(vec![0.5, 1.0, 2.0, 3.0]),
        ),
        0u32..2000,
        (1u32..8192, 1u32..8192, 1u32..8192),
    )
        .prop_map(
            |(fr, (ms, avg), (la, lb, lc), (omax, omin, sig), deg, (p50, p90, p999))| {
                json!({
                    "failure_rate": {"min": fr.0, "max": fr.1},
                    "max_seconds_per_iteration": secs(ms),
                    "max_avg_duration": secs(avg),
                    "max_avg_duration_per_atomic": {"a": secs(la), "b": secs(lb), "c": secs(lc)},
                    "outliers": {"max": omax, "min_iterations": omin, "sigmas": sig},
                    "performance_degradation": {"max_degradation": deg},
                    "max_percentile": {"p50": secs(p50), "p90": secs(p90), "p99.9": secs(p999)},
                })
            },
        )
}

fn checker(config: &Value) -> SlaChecker {
    SlaChecker::from_config(config.as_object().expect("config strategy yields objects"))
        .expect("config strategy yields valid configs")
}

fn feed(c: &mut SlaChecker, it: &Iter) -> bool {
    let actions: Vec<(&str, f64)> = it
        .actions
        .iter()
        .map(|&(a, k)| (ATOMS[a], secs(k)))
        .collect();
    c.add(&IterationSample {
        duration: secs(it.k),
        failed: it.failed,
        top_level_actions: &actions,
    })
}

fn outliers(c: &SlaChecker) -> &Outliers {
    c.criteria()
        .iter()
        .find_map(|c| match c {
            Criterion::Outliers(o) => Some(o),
            _ => None,
        })
        .expect("config has outliers")
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() <= 1e-9 * a.abs().max(b.abs()).max(1.0)
}

proptest! {
    #[test]
    fn merged_groups_equal_single_stream(
        config in config_strategy(),
        (groups, stream, order) in split_stream(),
    ) {
        let mut single = checker(&config);
        let mut parts: Vec<SlaChecker> = (0..groups).map(|_| checker(&config)).collect();
        for it in &stream {
            feed(&mut single, it);
            feed(&mut parts[it.group], it);
        }
        let part_outliers: u64 = parts.iter().map(|p| outliers(p).outliers()).sum();

        let mut merged = checker(&config);
        for &g in &order {
            let json = serde_json::to_string(&parts[g]).expect("serialize");
            let shipped: SlaChecker = serde_json::from_str(&json).expect("deserialize");
            merged.merge(&shipped).expect("same config merges");
        }

        let (rows_single, rows_merged) = (single.results(), merged.results());
        prop_assert_eq!(rows_single.len(), rows_merged.len());
        for (s, m) in rows_single.iter().zip(&rows_merged) {
            if s.criterion != Outliers::NAME {
                prop_assert_eq!(s, m);
            }
        }

        let (os, om) = (outliers(&single), outliers(&merged));
        prop_assert_eq!(os.n(), om.n());
        prop_assert!(close(os.mean(), om.mean()), "mean {} vs {}", os.mean(), om.mean());
        match (os.variance(), om.variance()) {
            (Some(a), Some(b)) => prop_assert!(close(a, b), "variance {} vs {}", a, b),
            (a, b) => prop_assert_eq!(a, b),
        }
        match (os.threshold(), om.threshold()) {
            (Some(a), Some(b)) => prop_assert!(close(a, b), "threshold {} vs {}", a, b),
            (a, b) => prop_assert_eq!(a, b),
        }
        prop_assert_eq!(om.outliers(), part_outliers);
    }

    /// The counter-based verdict agrees with the values the detail prints,
    /// for arbitrary durations (bucket edges, saturation, zero, negatives).
    #[test]
    fn percentile_verdict_matches_values(
        limits in (1u32..10_000_000, 1u32..10_000_000, 1u32..10_000_000),
        durations in prop::collection::vec(
            prop_oneof![
                (-6.0f64..3.9).prop_map(|e| 10f64.powf(e)),
                Just(0.0),
                Just(-1.0),
                Just(5000.0),
            ],
            0..300,
        ),
        failed_every in 2usize..10,
    ) {
        let us = |x: u32| f64::from(x) / 1e6;
        let mut c = MaxPercentile::from_config(&json!({
            "p1": us(limits.0), "p75.5": us(limits.1), "p100": us(limits.2)
        })).expect("valid config");
        for (i, &duration) in durations.iter().enumerate() {
            let verdict = {
                c.add(&IterationSample {
                    duration,
                    failed: i % failed_every == 0,
                    top_level_actions: &[],
                });
                c.success()
            };
            let by_values = c.values().zip(c.limits()).all(|(v, l)| v <= l.limit);
            prop_assert_eq!(verdict, by_values, "after {} samples", i + 1);
        }
    }

    /// HDR percentiles stay within 1% of the exact nearest-rank percentile.
    #[test]
    fn percentile_accuracy(durations in prop::collection::vec(0.0001f64..100.0, 1..400)) {
        let mut c = MaxPercentile::from_config(&json!({"p50": 1, "p95": 1, "p99.9": 1}))
            .expect("valid config");
        for &duration in &durations {
            c.add(&IterationSample { duration, failed: false, top_level_actions: &[] });
        }
        let mut sorted = durations.clone();
        sorted.sort_by(f64::total_cmp);
        for (l, v) in c.limits().iter().zip(c.values()) {
            let rank = ((l.percentile / 100.0 * sorted.len() as f64).ceil() as usize).max(1);
            let exact = sorted[rank - 1];
            prop_assert!(
                (v - exact).abs() <= 0.01 * exact + 1e-6,
                "{}: hdr {} exact {}", l.key, v, exact
            );
        }
    }
}
