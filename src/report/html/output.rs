//! Scenario and hook output in the report: additive charts aggregated over iterations (or hook
//! runs), complete charts of sampled iterations, and the hooks section with its runs.
//!
//! This is the part that reads Rally's free-form output JSON (its §4.4 chart plugins), so its
//! caps on rows and raw bytes live here; anything it cannot draw is shown as escaped text.

use std::fmt::Write as _;

use serde_json::Value;

use super::charts::named;
use super::tables::{stats_header, stats_rows};
use super::{esc, fmt_time, secs};
use crate::hook::{HookResult, HookRun};
use crate::report::series::{
    AdditiveChart, AdditiveData, COARSE_BUCKETS, CompleteSample, NamedSeries, OutputAggregator,
    WorkloadSeries,
};
use crate::report::svg::{self, Series, Style, XyChart};

/// Hook runs listed per hook; the summary still counts all of them.
const MAX_HOOK_RUNS: usize = 200;
/// Hook runs whose complete output is shown.
const MAX_HOOK_OUTPUTS: usize = 5;
/// Rows of a complete `Table` output shown.
const MAX_TABLE_ROWS: usize = 500;
/// Bytes of raw JSON shown for an output chart of an unknown kind.
const MAX_RAW_JSON: usize = 10_000;

/// Rally's "Scenario Data": additive charts aggregated, complete ones of sampled iterations.
pub(super) fn scenario_output(out: &mut String, s: &WorkloadSeries) {
    if s.additive.is_empty() && s.complete.is_empty() {
        return;
    }
    out.push_str("<details open><summary>Scenario output</summary>");
    if !s.additive.is_empty() {
        out.push_str(
            "<h4>Aggregated</h4><p class=\"meta\">Additive output of all iterations: tables \
             over all values, lines as the mean per time bucket, pies as sums.</p>",
        );
        additive_charts(out, &s.additive, "seconds since the first iteration");
    }
    if !s.complete.is_empty() {
        out.push_str(
            "<h4>Per iteration</h4><p class=\"meta\">Complete output of sampled iterations \
             (the first ones, then spread over the run).</p>",
        );
        for sample in &s.complete {
            complete_sample(out, sample);
        }
    }
    out.push_str("</details>");
}

fn complete_sample(out: &mut String, sample: &CompleteSample) {
    let _ = write!(
        out,
        "<details><summary>Iteration {} <span class=\"muted\">({})</span></summary>",
        sample.iteration,
        fmt_time(sample.timestamp)
    );
    complete_charts(out, &sample.charts);
    out.push_str("</details>");
}

fn additive_charts(out: &mut String, charts: &[AdditiveChart], default_x: &str) {
    out.push_str("<div class=\"charts\">");
    for c in charts {
        out.push_str("<div>");
        additive_chart(out, c, default_x);
        out.push_str("</div>");
    }
    out.push_str("</div>");
}

fn additive_chart(out: &mut String, c: &AdditiveChart, default_x: &str) {
    let x_label = if c.axis_label.is_empty() {
        default_x
    } else {
        &c.axis_label
    };
    match &c.data {
        AdditiveData::Table { rows } => {
            let _ = write!(out, "<h4>{}</h4>", esc(&c.title));
            stats_header(out, false);
            for row in rows {
                stats_rows(out, row, 0, false, false);
            }
            out.push_str("</tbody></table>");
        }
        AdditiveData::Series {
            origin,
            step,
            series,
        } => {
            let stacked = c.plugin == "StackedArea";
            let lines = bucketed_series(series, *origin, *step, stacked);
            out.push_str(&svg::xy(&XyChart {
                title: &c.title,
                x_label,
                y_label: &c.label,
                style: if stacked {
                    Style::Stacked
                } else {
                    Style::Lines
                },
                series: lines,
                x_range: None,
            }));
        }
        AdditiveData::Pie { slices } => out.push_str(&svg::pie(&c.title, slices)),
    }
    if !c.description.is_empty() {
        let _ = write!(out, "<p class=\"meta\">{}</p>", esc(&c.description));
    }
}

/// Series of bucket means as points. Stacked series must share their X values, so every
/// bucket where any series has data is kept, a missing value counting as 0.
fn bucketed_series(series: &[NamedSeries], origin: f64, step: f64, stacked: bool) -> Vec<Series> {
    let step = if step > 0.0 && step.is_finite() {
        step
    } else {
        1.0
    };
    let x = |i: usize| origin + (i as f64 + 0.5) * step;
    let len = series.iter().map(|s| s.values.len()).max().unwrap_or(0);
    let used: Vec<usize> = (0..len)
        .filter(|&i| {
            series
                .iter()
                .any(|s| s.values.get(i).copied().flatten().is_some())
        })
        .collect();
    series
        .iter()
        .map(|s| {
            let value = |i: usize| s.values.get(i).copied().flatten();
            let points = used
                .iter()
                .filter_map(|&i| match value(i) {
                    Some(v) => Some((x(i), v)),
                    None if stacked => Some((x(i), 0.0)),
                    None => None,
                })
                .collect();
            named(&s.name, points)
        })
        .collect()
}

fn complete_charts(out: &mut String, charts: &[Value]) {
    out.push_str("<div class=\"charts\">");
    for c in charts {
        out.push_str("<div>");
        complete_chart(out, c);
        out.push_str("</div>");
    }
    out.push_str("</div>");
}

/// One complete output chart (Rally's §4.4 plugins). Embedded HTML or external charts are
/// shown as text: running them would break the no-network promise.
fn complete_chart(out: &mut String, item: &Value) {
    let text = |key: &str| item.get(key).and_then(Value::as_str).unwrap_or("");
    let (title, plugin) = (text("title"), text("chart_plugin"));
    let data = item.get("data").unwrap_or(&Value::Null);
    match plugin {
        "Lines" | "StackedArea" => out.push_str(&svg::xy(&XyChart {
            title,
            x_label: text("axis_label"),
            y_label: text("label"),
            style: if plugin == "Lines" {
                Style::Lines
            } else {
                Style::Stacked
            },
            series: xy_series(data),
            x_range: None,
        })),
        "Pie" => out.push_str(&svg::pie(title, &pairs(data))),
        "Table" => output_table(out, title, data),
        "TextArea" => {
            let _ = write!(out, "<h4>{}</h4>", esc(title));
            for line in data.as_array().into_iter().flatten() {
                let _ = write!(out, "<p>{}</p>", esc(&value_text(line)));
            }
        }
        _ => {
            let mut raw = serde_json::to_string_pretty(data).unwrap_or_default();
            cut(&mut raw, MAX_RAW_JSON);
            let _ = write!(
                out,
                "<h4>{} <span class=\"muted\">({})</span></h4><pre>{}</pre>",
                esc(title),
                esc(plugin),
                esc(&raw)
            );
        }
    }
    let description = text("description");
    if !description.is_empty() {
        let _ = write!(out, "<p class=\"meta\">{}</p>", esc(description));
    }
}

/// `[[name, [[x, y], …]], …]`; non-numeric points are skipped.
fn xy_series(data: &Value) -> Vec<Series> {
    data.as_array()
        .into_iter()
        .flatten()
        .filter_map(|s| {
            let name = s.get(0).map(value_text)?;
            let points = s
                .get(1)?
                .as_array()?
                .iter()
                .filter_map(|p| Some((p.get(0)?.as_f64()?, p.get(1)?.as_f64()?)))
                .collect();
            Some(Series { name, points })
        })
        .collect()
}

/// `[[name, number], …]`.
fn pairs(data: &Value) -> Vec<(String, f64)> {
    data.as_array()
        .into_iter()
        .flatten()
        .filter_map(|p| Some((p.get(0).map(value_text)?, p.get(1)?.as_f64()?)))
        .collect()
}

/// `{"cols": [...], "rows": [[...], ...]}`.
fn output_table(out: &mut String, title: &str, data: &Value) {
    let _ = write!(out, "<h4>{}</h4><table><thead><tr>", esc(title));
    for col in data
        .get("cols")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let _ = write!(out, "<th>{}</th>", esc(&value_text(col)));
    }
    out.push_str("</tr></thead><tbody>");
    let rows = data.get("rows").and_then(Value::as_array);
    for row in rows.into_iter().flatten().take(MAX_TABLE_ROWS) {
        out.push_str("<tr>");
        for cell in row.as_array().into_iter().flatten() {
            let class = if cell.is_number() {
                " class=\"num\""
            } else {
                ""
            };
            let _ = write!(out, "<td{class}>{}</td>", esc(&value_text(cell)));
        }
        out.push_str("</tr>");
    }
    out.push_str("</tbody></table>");
    let total = rows.map_or(0, Vec::len);
    if total > MAX_TABLE_ROWS {
        let _ = write!(
            out,
            "<p class=\"meta\">The first {MAX_TABLE_ROWS} of {total} rows.</p>"
        );
    }
}

/// A JSON value as text: strings bare, the rest as JSON.
fn value_text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// Per hook: configuration, runs (trigger, status, times, error) and their output.
pub(super) fn hooks(out: &mut String, hooks: &[HookResult]) {
    if hooks.is_empty() {
        return;
    }
    out.push_str("<details open><summary>Hooks</summary>");
    for (i, hook) in hooks.iter().enumerate() {
        hook_section(out, i + 1, hook);
    }
    out.push_str("</details>");
}

fn hook_section(out: &mut String, n: usize, hook: &HookResult) {
    let description = hook
        .config
        .get("description")
        .and_then(Value::as_str)
        .unwrap_or("");
    let summary: Vec<String> = hook
        .summary
        .iter()
        .map(|(status, count)| format!("{status}: {count}"))
        .collect();
    let _ = write!(
        out,
        "<h4>Hook {n}{}{}</h4><p class=\"meta\">{} runs{}{}</p><pre>{}</pre>",
        if description.is_empty() { "" } else { ": " },
        esc(description),
        hook.results.len(),
        if summary.is_empty() { "" } else { " · " },
        esc(&summary.join(", ")),
        esc(&hook.config.to_string())
    );
    if hook.results.is_empty() {
        return;
    }
    hook_runs_table(out, &hook.results);
    hook_outputs(out, &hook.results);
}

fn hook_runs_table(out: &mut String, runs: &[HookRun]) {
    out.push_str(
        "<table><thead><tr><th>#</th><th>Triggered by</th><th>Status</th><th>Started</th>\
         <th>Finished</th><th>Duration (s)</th><th>Error</th></tr></thead><tbody>",
    );
    for (i, run) in runs.iter().take(MAX_HOOK_RUNS).enumerate() {
        let status_class = if run.status == "success" {
            "pass"
        } else {
            "fail"
        };
        let _ = write!(
            out,
            "<tr><td class=\"num\">{}</td><td>{}</td><td class=\"{status_class}\">{}</td><td>{}</td>\
             <td>{}</td><td class=\"num\">{}</td><td>",
            i + 1,
            esc(&triggered_by(&run.triggered_by)),
            esc(&run.status),
            fmt_time(run.started_at),
            fmt_time(run.finished_at),
            secs(run.finished_at - run.started_at)
        );
        if let Some(error) = &run.error {
            hook_error(out, error);
        }
        out.push_str("</td></tr>");
    }
    out.push_str("</tbody></table>");
    if runs.len() > MAX_HOOK_RUNS {
        let _ = write!(
            out,
            "<p class=\"meta\">The first {MAX_HOOK_RUNS} of {} runs.</p>",
            runs.len()
        );
    }
}

/// `{"event_type": "iteration", "value": 5}` → `iteration 5`.
fn triggered_by(v: &Value) -> String {
    match (v.get("event_type").and_then(Value::as_str), v.get("value")) {
        (Some(kind), Some(value)) => format!("{kind} {}", value_text(value)),
        _ => value_text(v),
    }
}

/// `{"etype", "msg", "details"}`, the details folded.
fn hook_error(out: &mut String, error: &Value) {
    let text = |key: &str| error.get(key).map(value_text).unwrap_or_default();
    let (etype, msg, details) = (text("etype"), text("msg"), text("details"));
    if etype.is_empty() && msg.is_empty() {
        let _ = write!(out, "{}", esc(&value_text(error)));
        return;
    }
    let _ = write!(out, "{}: {}", esc(&etype), esc(&msg));
    if !details.is_empty() {
        let _ = write!(
            out,
            "<details><summary>Details</summary><pre>{}</pre></details>",
            esc(&details)
        );
    }
}

/// Additive output aggregated over the runs (X = run number), complete output of the first
/// runs that have some.
fn hook_outputs(out: &mut String, runs: &[HookRun]) {
    let buckets = runs.len().min(COARSE_BUCKETS);
    let step = runs.len() as f64 / buckets as f64;
    // Bucket i holds runs i·step … (i+1)·step (0-based): centred on run numbers from 1.
    let mut agg = OutputAggregator::new(buckets, 0.5, step);
    for (i, run) in runs.iter().enumerate() {
        agg.add(i * buckets / runs.len(), &run.output.additive);
    }
    let additive = agg.finish();
    if !additive.is_empty() {
        additive_charts(out, &additive, "hook run");
    }
    let with_output = runs
        .iter()
        .enumerate()
        .filter(|(_, r)| !r.output.complete.is_empty())
        .take(MAX_HOOK_OUTPUTS);
    for (i, run) in with_output {
        let _ = write!(
            out,
            "<details><summary>Output of run {} <span class=\"muted\">({}, {})</span></summary>",
            i + 1,
            esc(&triggered_by(&run.triggered_by)),
            esc(&run.status)
        );
        complete_charts(out, &run.output.complete);
        out.push_str("</details>");
    }
}

/// Cuts `s` to at most `max` bytes at a character boundary, marking the cut.
fn cut(s: &mut String, max: usize) {
    if s.len() <= max {
        return;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s.truncate(end);
    s.push_str("\n…");
}
