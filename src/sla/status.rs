//! One row of a workload's SLA results, as stored and shown (Rally's
//! `{"criterion", "success", "detail"}` plus two numbers for live graphs).

use serde::{Deserialize, Serialize};

/// Criterion name of the row added when `--abort-on-sla-failure` stopped the run.
pub const ABORTED_ON_SLA: &str = "aborted_on_sla";
/// Criterion name of the row added when the run was aborted by the user.
pub const ABORTED_MANUALLY: &str = "aborted_manually";
/// Criterion name of the row added when the workload crashed.
pub const SOMETHING_WENT_WRONG: &str = "something_went_wrong";

/// A criterion's result row.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CriterionStatus {
    /// Criterion name (`failure_rate`, ..., or a pseudo row name).
    pub criterion: String,
    /// Verdict on the data seen so far.
    pub success: bool,
    /// Rally's detail text.
    pub detail: String,
    /// Headline current value for live graphs (unit depends on the criterion,
    /// see [`crate::sla::Criterion::status`]); 0 for pseudo rows.
    pub value: f64,
    /// The limit `value` is compared with; 0 for pseudo rows.
    pub limit: f64,
    /// For a criterion with several limits (`max_percentile`'s percentiles), each one's
    /// value, limit and verdict, in config order, so a screen can show and draw them all.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub parts: Vec<CriterionPart>,
}

/// One limit of a criterion that has several.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CriterionPart {
    /// As configured (`p99.9`).
    pub name: String,
    pub value: f64,
    pub limit: f64,
    pub success: bool,
}

impl CriterionStatus {
    /// A row without graphable numbers (`value` and `limit` are 0), e.g. the
    /// pseudo rows or rows loaded from Rally results.
    pub fn row(criterion: impl Into<String>, success: bool, detail: impl Into<String>) -> Self {
        Self {
            criterion: criterion.into(),
            success,
            detail: detail.into(),
            value: 0.0,
            limit: 0.0,
            parts: Vec::new(),
        }
    }
}

/// Rally's row for a run stopped by `--abort-on-sla-failure`.
pub fn aborted_on_sla() -> CriterionStatus {
    CriterionStatus::row(
        ABORTED_ON_SLA,
        false,
        "Task was aborted due to SLA failure(s).",
    )
}

/// Rally's row for a run aborted by the user (`rally task abort`).
pub fn aborted_manually() -> CriterionStatus {
    CriterionStatus::row(
        ABORTED_MANUALLY,
        false,
        "Task was aborted due to abort signal.",
    )
}

/// Rally's row for a workload that crashed (e.g. context setup failure).
pub fn something_went_wrong(message: &str) -> CriterionStatus {
    CriterionStatus::row(
        SOMETHING_WENT_WRONG,
        false,
        format!("Unexpected error: {message}"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pseudo_rows() {
        let r = aborted_on_sla();
        assert_eq!(
            (r.criterion.as_str(), r.success, r.detail.as_str()),
            (
                "aborted_on_sla",
                false,
                "Task was aborted due to SLA failure(s)."
            )
        );
        let r = aborted_manually();
        assert_eq!(r.criterion, "aborted_manually");
        assert_eq!(r.detail, "Task was aborted due to abort signal.");
        let r = something_went_wrong("boom");
        assert_eq!(r.criterion, "something_went_wrong");
        assert_eq!(r.detail, "Unexpected error: boom");
        assert!(!r.success);
        assert_eq!((r.value, r.limit), (0.0, 0.0));
    }
}
