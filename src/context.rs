//! Contexts: set up before a workload's iterations and cleaned up after them.
//!
//! Only Rally's `dummy_context` needs no cloud; it exists to exercise the machinery (a
//! failing setup fails the workload, a failing cleanup is logged).

use serde::Serialize;

use crate::clock::unix_now;
use crate::task::check::{self, Checked, PluginError, list};
use crate::task::node::Node;

pub const CONTEXTS: &[&str] = &["dummy_context"];

pub fn is_unknown(name: &str) -> bool {
    !CONTEXTS.contains(&name.split('@').next().unwrap_or(name))
}

#[derive(Debug, Clone, PartialEq)]
pub struct ContextSpec {
    pub name: String,
    pub config: serde_json::Value,
    pub kind: ContextKind,
}

#[derive(Debug, Clone, PartialEq)]
pub enum ContextKind {
    Dummy {
        fail_setup: bool,
        fail_cleanup: bool,
    },
}

/// What happened in one phase of a context (Rally's `contexts_results` entry half).
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct PhaseResult {
    pub started_at: f64,
    pub finished_at: f64,
    pub atomic_actions: Vec<serde_json::Value>,
    pub error: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ContextResult {
    pub plugin_name: String,
    pub plugin_cfg: serde_json::Value,
    pub setup: PhaseResult,
    pub cleanup: PhaseResult,
}

impl ContextSpec {
    pub fn from_config(name: &str, cfg: &Node) -> Checked<ContextSpec> {
        // Rally accepts platform-qualified names (`users@openstack`).
        let kind = match name.split('@').next().unwrap_or(name) {
            "dummy_context" => {
                check::mapping(cfg, &["fail_setup", "fail_cleanup"])?;
                ContextKind::Dummy {
                    fail_setup: check::boolean(cfg, "fail_setup")?.unwrap_or(false),
                    fail_cleanup: check::boolean(cfg, "fail_cleanup")?.unwrap_or(false),
                }
            }
            _ => {
                return Err(PluginError::new(
                    "",
                    format!("unknown context '{name}'; available: {}", list(CONTEXTS)),
                ));
            }
        };
        Ok(ContextSpec {
            name: name.to_string(),
            config: cfg.to_json(),
            kind,
        })
    }

    /// Rally's order value: contexts set up in ascending order, cleaned up in reverse.
    pub fn order(&self) -> u32 {
        match self.kind {
            ContextKind::Dummy { .. } => 750,
        }
    }

    pub fn setup(&self) -> PhaseResult {
        let ContextKind::Dummy { fail_setup, .. } = self.kind;
        phase(fail_setup.then_some("Oops...setup is failed"))
    }

    pub fn cleanup(&self) -> PhaseResult {
        let ContextKind::Dummy { fail_cleanup, .. } = self.kind;
        phase(fail_cleanup.then_some("Oops...cleanup is failed"))
    }
}

/// Time one phase of a context; `failure` is the error it raises, if any.
fn phase(failure: Option<&str>) -> PhaseResult {
    let started_at = unix_now();
    PhaseResult {
        started_at,
        finished_at: unix_now(),
        atomic_actions: Vec::new(),
        error: failure.map(str::to_string),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dummy_context_config_and_phases() {
        let c =
            ContextSpec::from_config("dummy_context", &Node::parse("{fail_setup: true}").unwrap())
                .unwrap();
        assert_eq!(c.setup().error.as_deref(), Some("Oops...setup is failed"));
        assert!(c.cleanup().error.is_none());
        assert_eq!(
            ContextSpec::from_config("dummy_context", &Node::parse("{fail_setup: 1}").unwrap())
                .unwrap_err()
                .subpath,
            "fail_setup"
        );
        assert!(ContextSpec::from_config("users", &Node::parse("{}").unwrap()).is_err());
        assert!(is_unknown("users@openstack"));
        assert!(!is_unknown("dummy_context@default"));
    }
}
