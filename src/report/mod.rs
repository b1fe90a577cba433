//! Reports of stored tasks: self-contained HTML with inline SVG charts (and, beside it, the
//! JUnit, CSV and Rally JSON exports).
//!
//! A report never holds every iteration in memory: the store streams a workload's records
//! through a [`series::SeriesBuilder`], which keeps only down-sampled time series and
//! histograms, so a ten-million-iteration task still renders in constant memory and gives a
//! small file.

pub mod export;
pub mod html;
pub mod import;
pub mod series;
mod svg;

use serde::Serialize;

use crate::hook::HookResult;
use crate::sla::CriterionStatus;
use crate::stats::{ErrorCount, StatsTable};

pub use series::{SeriesBuilder, WorkloadSeries};

/// One task as a report shows it.
#[derive(Debug, Clone, Serialize)]
pub struct ReportTask {
    pub uuid: String,
    pub title: String,
    pub description: String,
    /// init, running, finished, aborted, crashed …
    pub status: String,
    pub tags: Vec<String>,
    /// Unix seconds.
    pub created_at: f64,
    pub pass_sla: bool,
    /// The task file after template rendering.
    pub input_task: String,
    pub workloads: Vec<ReportWorkload>,
}

/// One workload as a report shows it.
#[derive(Debug, Clone, Serialize)]
pub struct ReportWorkload {
    pub subtask: String,
    /// Index within its subtask.
    pub position: usize,
    /// `Dummy.dummy`
    pub scenario: String,
    pub description: String,
    /// Scenario arguments as configured.
    pub args: serde_json::Value,
    /// Runner name (`constant`) and configuration body.
    pub runner: String,
    pub runner_config: serde_json::Value,
    /// The SLA section as configured.
    pub sla_config: serde_json::Value,
    pub contexts: serde_json::Value,
    /// Unix seconds of the first iteration.
    pub start_time: Option<f64>,
    pub load_duration: f64,
    pub full_duration: f64,
    pub iterations: u64,
    pub failures: u64,
    pub pass_sla: bool,
    pub sla: Vec<CriterionStatus>,
    pub stats: StatsTable,
    pub hooks: Vec<HookResult>,
    pub errors: Vec<ErrorCount>,
    /// Per runner instance (agent).
    pub sources: Vec<crate::events::SourceFigures>,
    /// For a workload run on agents: lost agents and what became of their work.
    pub distributed: Option<crate::events::DistributedSummary>,
    pub series: WorkloadSeries,
}

/// Gather what a report shows of a stored task, streaming its iterations once.
pub fn build(
    store: &crate::store::Store,
    task: &crate::store::StoredTask,
) -> Result<ReportTask, crate::store::StoreError> {
    let mut workloads = Vec::new();
    for w in &task.workloads {
        let Some(r) = &w.report else { continue };
        let names: std::sync::Arc<[String]> = w.action_names.clone().into();
        let mut builder = SeriesBuilder::new(
            r.start_time.unwrap_or(task.row.created_at),
            r.load_duration,
            names,
        );
        store.for_each_chunk(&w.uuid, |chunk| {
            for record in &chunk.records {
                builder.add(record, chunk.actions_of(record), &chunk.source);
            }
        })?;
        workloads.push(ReportWorkload {
            subtask: w.subtask.clone(),
            position: w.position,
            scenario: w.scenario.clone(),
            description: w.description.clone(),
            args: w.args.clone(),
            runner: w.runner_type.clone(),
            runner_config: w.runner.clone(),
            sla_config: w.sla.clone(),
            contexts: w.contexts.clone(),
            start_time: r.start_time,
            load_duration: r.load_duration,
            full_duration: r.full_duration,
            iterations: r.iterations,
            failures: r.failures,
            pass_sla: r.pass_sla,
            sla: r.sla.clone(),
            stats: r.stats.clone(),
            hooks: r.hooks.clone(),
            errors: r.errors.clone(),
            sources: r.sources.clone(),
            distributed: r.distributed.clone(),
            series: builder.finish(),
        });
    }
    Ok(ReportTask {
        uuid: task.row.uuid.clone(),
        title: task.row.title.clone(),
        description: task.description.clone(),
        status: task.row.status.clone(),
        tags: task.row.tags.clone(),
        created_at: task.row.created_at,
        pass_sla: task.row.pass_sla.unwrap_or(false),
        input_task: task.input_task.clone(),
        workloads,
    })
}
