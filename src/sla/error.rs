//! Error types: config validation errors point at the offending key so the
//! task validator can print `sla.failure_rate.max: ...`; merge errors exist
//! because merging states of different criteria or configs would silently
//! produce a verdict for a configuration nobody asked for.

/// An invalid SLA configuration value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}", display_config_error(.subpath, .message))]
pub struct SlaConfigError {
    /// Key path below the criterion (`"max"` for `failure_rate: {max: 200}`),
    /// empty when the criterion's value itself is wrong. [`crate::sla::SlaChecker`]
    /// prefixes it with the criterion name (`"failure_rate.max"`).
    pub subpath: String,
    /// What is wrong and what is allowed.
    pub message: String,
}

fn display_config_error(subpath: &str, message: &str) -> String {
    if subpath.is_empty() {
        message.to_owned()
    } else {
        format!("{subpath}: {message}")
    }
}

impl SlaConfigError {
    /// Builds an error for `subpath` (may be empty).
    pub fn new(subpath: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            subpath: subpath.into(),
            message: message.into(),
        }
    }

    /// Prefixes the subpath with `prefix` (a criterion name), dot-separated.
    pub fn prefixed(mut self, prefix: &str) -> Self {
        self.subpath = if self.subpath.is_empty() {
            prefix.to_owned()
        } else {
            format!("{prefix}.{}", self.subpath)
        };
        self
    }
}

/// Why two SLA states could not be merged.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SlaError {
    /// The two states belong to different criteria (Rally: `TypeError`).
    #[error("error merging SLAs of types {left} and {right}")]
    KindMismatch {
        left: &'static str,
        right: &'static str,
    },
    /// Same criterion, different configuration (limits, atoms, percentiles...).
    #[error("error merging SLA {criterion}: configs differ ({left} vs {right})")]
    ConfigMismatch {
        criterion: &'static str,
        left: String,
        right: String,
    },
    /// Two checkers with a different number of criteria.
    #[error("error merging SLA checkers: {left} criteria vs {right} criteria")]
    CriteriaCountMismatch { left: usize, right: usize },
    /// The state is internally inconsistent (e.g. a deserialized histogram
    /// with foreign bounds).
    #[error("error merging SLA {criterion}: {message}")]
    InvalidState {
        criterion: &'static str,
        message: String,
    },
}

/// Checks that two configs are equal before a merge.
pub(crate) fn ensure_same_config<C: PartialEq + std::fmt::Debug>(
    criterion: &'static str,
    left: &C,
    right: &C,
) -> Result<(), SlaError> {
    if left == right {
        Ok(())
    } else {
        Err(SlaError::ConfigMismatch {
            criterion,
            left: format!("{left:?}"),
            right: format!("{right:?}"),
        })
    }
}
