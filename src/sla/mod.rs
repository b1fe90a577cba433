//! SLA criteria: Rally's six success criteria plus `max_percentile`.
//!
//! Semantics, config schemas and `detail` strings follow OpenStack Rally
//! (`rally/plugins/task/sla/*`) character for character, because users compare
//! our reports with Rally's and script against the text. Two things differ on
//! purpose, both listed in the README of the main crate:
//!
//! * every criterion state is a plain serde value that can be [`merged`]
//!   (`a.merge(b)` behaves like one instance fed both streams), so agents of a
//!   distributed run can evaluate locally and the controller can combine;
//!   Rally's per-atomic merge bug (atoms seen only by `other` dropped, atoms
//!   missing from `self` raising `KeyError`) is fixed;
//! * a successful iteration with a duration `<= 0` does not crash
//!   `performance_degradation` (Rally raises `ValueError` in its consumer
//!   thread); it is ignored there, see [`PerformanceDegradation`].
//!
//! `add` is on the hot path (up to ~10^6 calls per second), so it never
//! allocates, formats or hashes strings: strings are only built by `detail`.
//!
//! [`merged`]: Criterion::merge

mod checker;
mod config;
mod criterion;
mod error;
mod failure_rate;
mod format;
pub mod histogram;
mod max_avg_duration;
mod max_avg_duration_per_atomic;
mod max_percentile;
mod max_seconds_per_iteration;
mod outliers;
mod performance_degradation;
pub mod running;
mod serde_f64;
mod status;

#[cfg(test)]
mod merge_props;

pub use checker::SlaChecker;
pub use criterion::{Criterion, KNOWN_CRITERIA};
pub use error::{SlaConfigError, SlaError};
pub use failure_rate::{FailureRate, FailureRateConfig};
pub use max_avg_duration::MaxAvgDuration;
pub use max_avg_duration_per_atomic::{AtomLimit, MaxAvgDurationPerAtomic};
pub use max_percentile::{MaxPercentile, PercentileLimit};
pub use max_seconds_per_iteration::MaxSecondsPerIteration;
pub use outliers::{Outliers, OutliersConfig};
pub use performance_degradation::PerformanceDegradation;
pub use status::{
    ABORTED_MANUALLY, ABORTED_ON_SLA, CriterionPart, CriterionStatus, SOMETHING_WENT_WRONG,
    aborted_manually, aborted_on_sla, something_went_wrong,
};

/// One finished iteration as the SLA sees it.
pub struct IterationSample<'a> {
    /// Seconds, excluding idle time (Rally's `duration`).
    pub duration: f64,
    /// True when the iteration recorded an error.
    pub failed: bool,
    /// Top-level atomic actions of the iteration: (name, finished_at - started_at in seconds).
    pub top_level_actions: &'a [(&'a str, f64)],
}
