//! Task files: read, render as a template, parse, and validate into a [`TaskSpec`].
//!
//! Both of Rally's formats (v1: scenario names at the top; v2: `subtasks`) end up as the same
//! `TaskSpec`, in which every plugin's configuration is already checked and typed. Nothing runs
//! before the whole file is valid.

pub mod check;
mod error;
mod load;
pub mod node;
mod percent;
pub mod template;

use std::path::{Path, PathBuf};

pub use error::{ErrorSite, Path as KeyPath, TaskError};
pub use load::parse_task;

use crate::context::ContextSpec;
use crate::hook::HookSpec;
use crate::runner::RunnerSpec;
use crate::scenario::ScenarioSpec;

/// A whole task, valid and ready to run.
#[derive(Debug, Clone)]
pub struct TaskSpec {
    pub file: PathBuf,
    pub title: String,
    pub description: String,
    pub tags: Vec<String>,
    /// The task file's format version as written (1 or 2).
    pub version: u8,
    pub subtasks: Vec<SubtaskSpec>,
    /// The task after template rendering: what actually ran, kept for the record.
    pub rendered: String,
}

#[derive(Debug, Clone)]
pub struct SubtaskSpec {
    pub title: String,
    pub description: String,
    pub tags: Vec<String>,
    pub workloads: Vec<WorkloadSpec>,
}

/// One scenario, its runner, contexts, SLA and hooks.
#[derive(Debug, Clone)]
pub struct WorkloadSpec {
    /// Index within its subtask, as Rally numbers workloads.
    pub position: usize,
    pub description: String,
    pub scenario: ScenarioSpec,
    pub runner: RunnerSpec,
    pub contexts: Vec<ContextSpec>,
    /// The SLA section as configured (after Rally's default), in file order.
    pub sla: serde_json::Map<String, serde_json::Value>,
    pub hooks: Vec<HookSpec>,
}

impl TaskSpec {
    /// All workloads in run order, with their subtask.
    pub fn workloads(&self) -> impl Iterator<Item = (&SubtaskSpec, &WorkloadSpec)> {
        self.subtasks
            .iter()
            .flat_map(|s| s.workloads.iter().map(move |w| (s, w)))
    }
}

/// Everything `rally-tui` needs to turn a file on disk into a `TaskSpec`.
#[derive(Debug, Clone, Default)]
pub struct TaskSource {
    pub file: PathBuf,
    /// `--task-args`, YAML/JSON or `k=v,k=v`.
    pub args: Option<String>,
    pub args_file: Option<PathBuf>,
}

impl TaskSource {
    pub fn new(file: impl Into<PathBuf>) -> TaskSource {
        TaskSource {
            file: file.into(),
            ..TaskSource::default()
        }
    }

    /// Read, render and validate. Every failure is a `TaskError` naming the file.
    pub fn load(&self) -> Result<TaskSpec, TaskError> {
        let site = ErrorSite {
            file: self.file.clone(),
        };
        let root = KeyPath::root();
        let args = template::collect_args(self.args.as_deref(), self.args_file.as_deref())
            .map_err(|e| site.unlocated(&root, e.to_string()))?;
        let source = read_source(&self.file).map_err(|e| site.unlocated(&root, e))?;
        let rendered = template::render(&source, &self.file, &args).map_err(|e| TaskError {
            file: self.file.clone(),
            mark: match &e {
                template::TemplateError::Render { mark, .. } => *mark,
                _ => None,
            },
            path: String::new(),
            message: e.to_string(),
        })?;
        parse_task(&self.file, &rendered)
    }
}

fn read_source(file: &Path) -> Result<String, String> {
    if file == Path::new("-") {
        let mut text = String::new();
        std::io::Read::read_to_string(&mut std::io::stdin(), &mut text)
            .map_err(|e| format!("cannot read the task from stdin: {e}"))?;
        return Ok(text);
    }
    std::fs::read_to_string(file).map_err(|e| format!("cannot read the task file: {e}"))
}
