//! What the engine hands to the store, in order, to record a task as it runs. The store owns
//! the type (the engine only sends), so that SQLite's needs are said where they are met.

use std::sync::Arc;

use tokio::sync::watch;

use crate::chunk::Chunk;
use crate::events::{TaskStatus, WorkloadInfo, WorkloadReport};
use crate::task::{SubtaskSpec, TaskSpec, WorkloadSpec};

/// Everything needed to record the task as it runs (the store consumes these; the engine
/// knows nothing of SQLite).
#[derive(Debug)]
pub enum Record {
    TaskStarted {
        uuid: String,
        spec: Box<TaskSpec>,
    },
    WorkloadStarted {
        info: WorkloadInfo,
        subtask_index: usize,
        subtask: Box<SubtaskSpec>,
        workload: Box<WorkloadSpec>,
        action_names: Arc<[String]>,
        /// Told how many of the workload's chunks are committed to storage, so that agents
        /// delete their cached copies only then.
        committed: Option<watch::Sender<u64>>,
    },
    Chunk {
        index: usize,
        chunk: Chunk,
    },
    WorkloadFinished(Box<WorkloadReport>),
    /// The task is stopping: Rally's `soft_aborting` (SLA abort) or `aborting` (user).
    Stopping {
        status: &'static str,
    },
    TaskFinished {
        status: TaskStatus,
        pass_sla: bool,
    },
}
