//! The one error a task file can produce: what is wrong, and exactly where.

use std::fmt;
use std::path::PathBuf;

use super::node::{Mark, Node};

/// A task file that cannot run. Its `Display` is the whole message the user sees:
/// `FILE:LINE:COL: KEY.PATH: what is wrong (what is allowed)`.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub struct TaskError {
    pub file: PathBuf,
    pub mark: Option<Mark>,
    /// Key path in the task as written, e.g. `subtasks[0].workloads[1].runner.constant.times`.
    pub path: String,
    pub message: String,
}

impl fmt::Display for TaskError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file.display())?;
        if let Some(m) = self.mark {
            write!(f, ":{}:{}", m.line, m.col)?;
        }
        if !self.path.is_empty() {
            write!(f, ": {}", self.path)?;
        }
        write!(f, ": {}", self.message)
    }
}

/// Collects the context needed to build `TaskError`s while walking a task tree.
#[derive(Debug, Clone)]
pub struct ErrorSite {
    pub file: PathBuf,
}

impl ErrorSite {
    pub fn at(&self, node: &Node, path: &Path, message: impl Into<String>) -> TaskError {
        TaskError {
            file: self.file.clone(),
            mark: Some(node.mark),
            path: path.to_string(),
            message: message.into(),
        }
    }

    pub fn unlocated(&self, path: &Path, message: impl Into<String>) -> TaskError {
        TaskError {
            file: self.file.clone(),
            mark: None,
            path: path.to_string(),
            message: message.into(),
        }
    }
}

/// A key path such as `subtasks[0].workloads[1].runner`, built while descending.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Path(String);

impl Path {
    pub fn root() -> Path {
        Path(String::new())
    }

    pub fn key(&self, key: &str) -> Path {
        if self.0.is_empty() {
            Path(key.to_string())
        } else {
            Path(format!("{}.{}", self.0, key))
        }
    }

    pub fn index(&self, i: usize) -> Path {
        Path(format!("{}[{}]", self.0, i))
    }

    /// Append a dotted sub-path reported by a plugin's own validation (`max`, `rps.start`).
    pub fn join(&self, subpath: &str) -> Path {
        if subpath.is_empty() {
            self.clone()
        } else {
            self.key(subpath)
        }
    }
}

impl fmt::Display for Path {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}
