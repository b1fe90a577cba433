//! What a finished workload leaves behind: its report and final charts for the workload
//! list, its outcome in the log, and the task's verdict so far.

use super::history::History;
use super::{PSEUDO_ROWS, Phase, TuiState};
use crate::events::InstanceState;
use crate::events::Level;
use crate::events::{LiveStatistics, TaskStatus, WorkloadReport};
use crate::sla::{ABORTED_MANUALLY, ABORTED_ON_SLA, CriterionStatus, SOMETHING_WENT_WRONG};

/// Finished workloads whose charts are kept for the workload list (about 40 KB each).
pub const KEPT_HISTORIES: usize = 64;

impl TuiState {
    pub(super) fn workload_finished(&mut self, report: &WorkloadReport) {
        self.sla.clone_from(&report.sla);
        if report.sla.iter().any(|c| c.criterion == ABORTED_ON_SLA) {
            self.sla_abort_seen = true;
        }
        for f in &report.sources {
            if let Some(src) = self.source_mut(&f.name) {
                src.iterations = f.iterations;
                src.failures = f.failures;
                src.p95 = f.p95.or(src.p95);
                src.rate = 0.0;
                // No `Agents` event follows the workload's end: settle each agent's state
                // here, or the table would keep its last live one ("stopping").
                if f.lost {
                    src.state = Some(InstanceState::Lost);
                } else if src.state.is_some() {
                    src.state = Some(InstanceState::Done);
                }
            }
        }
        self.all.iterations = report.iterations;
        self.all.failures = report.failures;
        self.all.rate = 0.0;
        self.in_flight = None;
        // The whole workload's figures, from the merged data: the last interval's are gone.
        self.all.p95_total = report.stats.total.p95.or(self.all.p95_total);
        self.final_rate =
            (report.load_duration > 0.0).then(|| report.iterations as f64 / report.load_duration);
        self.workloads_done += 1;
        if !report.pass_sla {
            self.workloads_failed += 1;
        }
        // The report has the whole workload's table and errors; the per-agent errors are
        // the last interval's (published as the workload ended).
        let by_source = self.live.take().map(|l| l.by_source).unwrap_or_default();
        self.live = Some(LiveStatistics {
            workload: report.info.index,
            table: report.stats.clone(),
            errors: report.errors.clone(),
            by_source,
            detail: None,
        });
        self.finished.retain(|r| r.info.index != report.info.index);
        self.finished.push(report.clone());
        self.histories.retain(|(i, _, _)| *i != report.info.index);
        if self.histories.len() == KEPT_HISTORIES {
            self.histories.pop_front();
        }
        self.histories
            .push_back((report.info.index, self.history.clone(), self.elapsed));
        self.log_report(report);
    }

    /// The workload's outcome in the log pane, so it stays readable after the next
    /// workload replaced the charts and the SLA panel.
    pub(super) fn log_report(&mut self, r: &WorkloadReport) {
        let level = if r.pass_sla {
            Level::Info
        } else {
            Level::Error
        };
        let verdict = verdict(&r.sla);
        let message = format!(
            "workload {}/{} {}: {} iterations, {} failed, {verdict}",
            r.info.index + 1,
            r.info.count,
            r.info.scenario,
            r.iterations,
            r.failures,
        );
        self.log(level, &message);
        let Some(d) = &r.distributed else {
            return;
        };
        if !d.lost.is_empty() {
            // A duration workload re-runs nothing; the others carried its concurrency.
            let rerun = match d.reissued {
                0 => String::new(),
                n => format!("; {n} of their iterations re-run by the others"),
            };
            let message = format!("agents lost: {}{rerun}", d.lost.join(", "));
            self.log(Level::Warning, &message);
        }
        for moved in &d.reshares {
            let message = format!("shares moved: {moved}");
            self.log(Level::Info, &message);
        }
        for back in &d.returned {
            let message = format!("agent back: {back}");
            self.log(Level::Info, &message);
        }
        if d.duplicates > 0 {
            let message = format!("{} duplicate records dropped", d.duplicates);
            self.log(Level::Info, &message);
        }
        for m in &d.missing {
            let message = format!("missing results: {m}");
            self.log(Level::Warning, &message);
        }
    }

    pub(super) fn task_finished(&mut self, uuid: &str, status: TaskStatus, pass_sla: bool) {
        self.phase = match status {
            TaskStatus::Running | TaskStatus::Finished => Phase::Finished { pass_sla },
            TaskStatus::Aborted if self.sla_abort_seen => Phase::AbortedOnSla,
            TaskStatus::Aborted => Phase::Aborted,
            TaskStatus::Crashed => Phase::Crashed,
        };
        self.confirm_stop = false;
        self.confirm_leave = false;
        self.notice = Some("task over: q quits".into());
        // A user's stop fails Rally's SLA (its `aborted_manually` row) but is no alarm.
        let level = match self.phase {
            Phase::Finished { pass_sla: true } => Level::Info,
            Phase::Aborted => Level::Warning,
            _ => Level::Error,
        };
        let message = format!("task {uuid} {}", self.phase.label());
        self.log(level, &message);
    }

    /// What the charts and the SLA panel show: the inspected finished workload's final
    /// ones, else the current workload's.
    /// The finished workload whose final charts are on screen, if its charts are kept.
    pub fn inspected_charts(&self) -> Option<usize> {
        self.inspected
            .filter(|i| self.histories.iter().any(|(j, _, _)| j == i))
    }

    pub fn shown_charts(&self) -> (&History, &[CriterionStatus], f64) {
        let inspected = self.inspected.and_then(|i| {
            let report = self.finished_report(i)?;
            let (_, history, until) = self.histories.iter().find(|(j, _, _)| *j == i)?;
            Some((history, report.sla.as_slice(), *until))
        });
        inspected.unwrap_or((&self.history, &self.sla, self.elapsed))
    }

    /// The report of workload `index`, if it finished.
    pub fn finished_report(&self, index: usize) -> Option<&WorkloadReport> {
        self.finished.iter().find(|r| r.info.index == index)
    }

    /// What the statistics and errors panels show: the inspected finished workload's
    /// figures, else the current workload's latest.
    pub fn shown_statistics(
        &self,
    ) -> Option<(
        usize,
        &crate::stats::StatsTable,
        &[crate::stats::ErrorCount],
    )> {
        if let Some(r) = self.inspected.and_then(|i| self.finished_report(i)) {
            return Some((r.info.index, &r.stats, &r.errors));
        }
        self.live
            .as_ref()
            .map(|l| (l.workload, &l.table, l.errors.as_slice()))
    }
}

/// A workload's SLA outcome in words: the failed criteria by name, and how it ended when
/// it did not end by itself (Rally's pseudo rows).
pub(super) fn verdict(rows: &[CriterionStatus]) -> String {
    let failed: Vec<&str> = rows
        .iter()
        .filter(|c| !c.success && !PSEUDO_ROWS.contains(&c.criterion.as_str()))
        .map(|c| c.criterion.as_str())
        .collect();
    let mut out = if failed.is_empty() {
        "SLA passed".to_owned()
    } else {
        format!("SLA failed ({})", failed.join(", "))
    };
    for c in rows {
        match c.criterion.as_str() {
            ABORTED_ON_SLA => out.push_str("; aborted on SLA failure"),
            ABORTED_MANUALLY => out.push_str("; stopped by user"),
            SOMETHING_WENT_WRONG => out.push_str(&format!("; crashed: {}", c.detail)),
            _ => {}
        }
    }
    out
}
