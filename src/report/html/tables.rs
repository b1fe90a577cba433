//! The report's plain tables: the task overview, the SLA criteria, Rally's statistics table
//! (total durations and atomic actions, also used for additive `StatsTable` output), the
//! errors and first failures of a workload, and its configuration.
//!
//! Kept apart from the charts because they read the exact aggregates (`StatsTable`, SLA,
//! error counts) rather than the down-sampled series, and are what a reader copies out.

use std::fmt::Write as _;

use serde_json::Value;

use super::{esc, fmt_time, opt_secs, secs, verdict};
use crate::report::{ReportTask, ReportWorkload};
use crate::sla::CriterionStatus;
use crate::stats::{StatsRow, StatsTable};

/// Rally's "Task overview" table.
pub(super) fn overview_table(out: &mut String, t: usize, task: &ReportTask, labels: &[String]) {
    out.push_str("<h3>Task overview</h3>");
    if task.workloads.is_empty() {
        out.push_str("<p class=\"muted\">No workloads.</p>");
        return;
    }
    out.push_str(
        "<table><thead><tr><th>Scenario</th><th>Load duration (s)</th><th>Full duration (s)</th>\
         <th>Iterations</th><th>Runner</th><th>Errors</th><th>Hooks</th><th>Success (SLA)</th>\
         </tr></thead><tbody>",
    );
    for (w, (workload, label)) in task.workloads.iter().zip(labels).enumerate() {
        let _ = write!(
            out,
            "<tr><td><a href=\"#t{t}-w{w}\">{}</a></td><td class=\"num\">{}</td>\
             <td class=\"num\">{}</td><td class=\"num\">{}</td><td>{}</td><td class=\"num\">{}</td>\
             <td class=\"num\">{}</td><td>{}</td></tr>",
            esc(label),
            secs(workload.load_duration),
            secs(workload.full_duration),
            workload.iterations,
            esc(&workload.runner),
            workload.failures,
            workload.hooks.len(),
            verdict(workload.pass_sla)
        );
    }
    out.push_str("</tbody></table>");
}

pub(super) fn sla_table(out: &mut String, sla: &[CriterionStatus]) {
    if sla.is_empty() {
        out.push_str("<p class=\"muted\">No SLA criteria.</p>");
        return;
    }
    out.push_str(
        "<table><thead><tr><th>Criterion</th><th>Detail</th><th>Status</th></tr></thead><tbody>",
    );
    for c in sla {
        let _ = write!(
            out,
            "<tr><td>{}</td><td>{}</td><td>{} {}</td></tr>",
            esc(&c.criterion),
            esc(&c.detail),
            verdict(c.success),
            if c.success { "Passed" } else { "Failed" }
        );
    }
    out.push_str("</tbody></table>");
}

/// Rally's MainStatsTable: atomic actions (nested ones indented), then `total`.
pub(super) fn stats_table(out: &mut String, table: &StatsTable) {
    stats_header(out, true);
    for row in &table.atomics {
        stats_rows(out, row, 0, true, false);
    }
    stats_rows(out, &table.total, 0, true, true);
    out.push_str("</tbody></table>");
}

/// Durations have a unit and a success column; additive output tables (any numbers) have
/// neither, as Rally's StatsTable.
pub(super) fn stats_header(out: &mut String, durations: bool) {
    let unit = if durations { " (s)" } else { "" };
    let _ = write!(out, "<table><thead><tr><th>Action</th>");
    for col in ["Min", "Median", "90%ile", "95%ile", "Max", "Avg"] {
        let _ = write!(out, "<th>{col}{unit}</th>");
    }
    let _ = write!(
        out,
        "{}<th>Count</th></tr></thead><tbody>",
        if durations { "<th>Success</th>" } else { "" }
    );
}

pub(super) fn stats_rows(
    out: &mut String,
    row: &StatsRow,
    depth: usize,
    success: bool,
    total: bool,
) {
    let cells = [row.min, row.median, row.p90, row.p95, row.max, row.avg];
    let _ = write!(
        out,
        "<tr{}><td class=\"d{}\">{}</td>",
        if total { " class=\"total\"" } else { "" },
        depth.min(3),
        esc(&row.name)
    );
    for v in cells {
        let _ = write!(out, "<td class=\"num\">{}</td>", opt_secs(v));
    }
    if success {
        let s = row
            .success
            .filter(|v| v.is_finite())
            .map_or_else(|| "n/a".to_string(), |v| format!("{v:.1}%"));
        let _ = write!(out, "<td class=\"num\">{s}</td>");
    }
    let _ = write!(out, "<td class=\"num\">{}</td></tr>", row.count);
    for child in &row.children {
        stats_rows(out, child, depth + 1, success, false);
    }
}

pub(super) fn error_counts(out: &mut String, w: &ReportWorkload) {
    if w.errors.is_empty() {
        return;
    }
    out.push_str(
        "<h4>Errors by kind</h4><table><thead><tr><th>Exception type</th>\
         <th>Exception message</th><th>Count</th></tr></thead><tbody>",
    );
    for e in &w.errors {
        let _ = write!(
            out,
            "<tr><td>{}</td><td>{}</td><td class=\"num\">{}</td></tr>",
            esc(&e.etype),
            esc(&e.message),
            e.count
        );
    }
    out.push_str("</tbody></table>");
}

pub(super) fn failure_samples(out: &mut String, w: &ReportWorkload) {
    let samples = &w.series.failure_samples;
    if samples.is_empty() {
        return;
    }
    let _ = write!(
        out,
        "<h4>Task failures</h4><p class=\"meta\">The first {} of {} failed iterations.</p>\
         <table><thead><tr><th>Timestamp</th><th>Iteration</th><th>Exception type</th>\
         <th>Exception message</th></tr></thead><tbody>",
        samples.len(),
        w.failures.max(samples.len() as u64)
    );
    for f in samples {
        let _ = write!(
            out,
            "<tr><td>{}</td><td class=\"num\">{}</td><td>{}</td><td>{}",
            fmt_time(f.timestamp),
            f.iteration,
            esc(&f.etype),
            esc(&f.message)
        );
        if !f.details.is_empty() {
            let _ = write!(
                out,
                "<details><summary>Traceback</summary><pre>{}</pre></details>",
                esc(&f.details)
            );
        }
        out.push_str("</td></tr>");
    }
    out.push_str("</tbody></table>");
}

/// The workload as a one-workload task (Rally's per-workload "Input task").
pub(super) fn configuration(out: &mut String, w: &ReportWorkload) {
    let hooks: Vec<&Value> = w.hooks.iter().map(|h| &h.config).collect();
    let config = serde_json::json!({
        "scenario": {w.scenario.clone(): w.args},
        "runner": {w.runner.clone(): w.runner_config},
        "contexts": w.contexts,
        "sla": w.sla_config,
        "hooks": hooks,
    });
    let _ = write!(
        out,
        "<details><summary>Configuration</summary><pre>{}</pre></details>",
        esc(&pretty(&config))
    );
}

fn pretty(v: &Value) -> String {
    serde_json::to_string_pretty(v).unwrap_or_default()
}
