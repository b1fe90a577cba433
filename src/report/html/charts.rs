//! The charts of a workload drawn from its down-sampled [`WorkloadSeries`]: the overview
//! (load profile, durations over time, histogram, success share), throughput per agent,
//! atomic action durations and failures over time, each in its folding section.
//!
//! Every time chart shares one X axis (seconds since the first iteration) and the bucket
//! layout of [`crate::report::series`], so the helpers that turn buckets into points live here.

use std::fmt::Write as _;

use super::esc;
use super::tables::{error_counts, failure_samples, sla_table, stats_table};
use crate::report::ReportWorkload;
use crate::report::series::{DurationPoint, FINE_PER_COARSE, WorkloadSeries};
use crate::report::svg::{self, Series, Style, XyChart};

/// SLA, total durations, load profile, durations over time, histogram and success share.
pub(super) fn overview(out: &mut String, w: &ReportWorkload) {
    out.push_str("<details open><summary>Overview</summary><h4>Service-level agreement</h4>");
    sla_table(out, &w.sla);
    out.push_str("<h4>Total durations</h4>");
    stats_table(out, &w.stats);
    let s = &w.series;
    out.push_str("<div class=\"charts\">");
    out.push_str(&load_profile(s));
    out.push_str(&durations_over_time(s));
    let bins: Vec<(f64, f64, f64)> = s
        .histogram
        .iter()
        .map(|b| (b.from, b.to, b.count as f64))
        .collect();
    out.push_str(&svg::bars(
        "Histogram of durations",
        "duration (s)",
        "iterations",
        &bins,
    ));
    out.push_str(&svg::pie(
        "Success and errors",
        &[
            (
                "success".to_string(),
                w.iterations.saturating_sub(w.failures) as f64,
            ),
            ("errors".to_string(), w.failures as f64),
        ],
    ));
    out.push_str("</div></details>");
}

/// Whether the workload has a time axis to draw on.
fn has_axis(s: &WorkloadSeries) -> bool {
    s.bucket_seconds > 0.0 && s.bucket_seconds.is_finite() && s.iterations > 0
}

fn time_range(s: &WorkloadSeries) -> Option<(f64, f64)> {
    Some((0.0, s.bucket_seconds * s.started.len() as f64))
}

/// A time chart, or a note when the workload has no time axis.
fn time_chart(
    s: &WorkloadSeries,
    title: &str,
    y_label: &str,
    style: Style,
    series: Vec<Series>,
) -> String {
    if !has_axis(s) {
        return svg::empty(title);
    }
    svg::xy(&XyChart {
        title,
        x_label: "seconds since the first iteration",
        y_label,
        style,
        series,
        x_range: time_range(s),
    })
}

/// (x, y) of the buckets with a value; bucket `i` sits at its middle, `(i + 0.5) * step`.
fn bucket_points(values: impl Iterator<Item = Option<f64>>, step: f64) -> Vec<(f64, f64)> {
    values
        .enumerate()
        .filter_map(|(i, v)| v.map(|v| ((i as f64 + 0.5) * step, v)))
        .collect()
}

pub(super) fn named(name: &str, points: Vec<(f64, f64)>) -> Series {
    Series {
        name: name.to_string(),
        points,
    }
}

fn load_profile(s: &WorkloadSeries) -> String {
    let points = bucket_points(s.load.iter().map(|&v| Some(v)), s.bucket_seconds);
    time_chart(
        s,
        "Load profile",
        "iterations in flight",
        Style::Area,
        vec![named("iterations in flight", points)],
    )
}

fn durations_over_time(s: &WorkloadSeries) -> String {
    type Pick = fn(&DurationPoint) -> Option<f64>;
    let lines: [(&str, Pick); 4] = [
        ("median", |d| d.median),
        ("90%ile", |d| d.p90),
        ("95%ile", |d| d.p95),
        ("max", |d| d.max),
    ];
    let series = lines
        .iter()
        .map(|(name, pick)| {
            named(
                name,
                bucket_points(s.durations.iter().map(pick), s.coarse_seconds),
            )
        })
        .collect();
    time_chart(s, "Durations over time", "seconds", Style::Lines, series)
}

/// Fine-bucket counts summed per coarse bucket, as a rate per second.
fn coarse_rate(counts: &[u64], coarse_seconds: f64) -> Vec<Option<f64>> {
    counts
        .chunks(FINE_PER_COARSE)
        .map(|c| Some(c.iter().sum::<u64>() as f64 / coarse_seconds))
        .collect()
}

/// Throughput per runner instance, and in total when there are several.
pub(super) fn agents(out: &mut String, w: &ReportWorkload) {
    let s = &w.series;
    out.push_str("<details open><summary>Agents and throughput</summary><div class=\"charts\">");
    let mut series: Vec<Series> = s
        .sources
        .iter()
        .map(|src| {
            let rate = src.values.iter().map(|v| v.map(|n| n / s.coarse_seconds));
            named(&src.name, bucket_points(rate, s.coarse_seconds))
        })
        .collect();
    if series.len() > 1 {
        let total = coarse_rate(&s.started, s.coarse_seconds);
        series.insert(
            0,
            named("all", bucket_points(total.into_iter(), s.coarse_seconds)),
        );
    }
    out.push_str(&time_chart(
        s,
        "Throughput per agent",
        "iterations started per second",
        Style::Lines,
        series,
    ));
    out.push_str("</div>");
    if !w.sources.is_empty() {
        out.push_str(
            "<table><thead><tr><th>Agent</th><th>State</th><th>Iterations</th><th>Failures</th>\
             <th>Share</th><th>p95 (s)</th></tr></thead><tbody>",
        );
        let all: u64 = w.sources.iter().map(|s| s.iterations).sum();
        for src in &w.sources {
            let share = if all > 0 {
                format!("{:.1}%", src.iterations as f64 * 100.0 / all as f64)
            } else {
                "n/a".to_string()
            };
            let state = if src.lost {
                "<td class=\"fail\">lost</td>"
            } else {
                "<td>done</td>"
            };
            let _ = write!(
                out,
                "<tr><td>{}</td>{state}<td class=\"num\">{}</td><td class=\"num\">{}</td>\
                 <td class=\"num\">{share}</td><td class=\"num\">{}</td></tr>",
                esc(&src.name),
                src.iterations,
                src.failures,
                src.p95
                    .map_or_else(|| "n/a".to_string(), |p| format!("{p:.3}")),
            );
        }
        out.push_str("</tbody></table>");
    }
    if let Some(d) = &w.distributed {
        if !d.lost.is_empty() {
            let rerun = match d.reissued {
                0 => String::new(),
                n => format!(" {n} of their unfinished iterations were run by the other agents."),
            };
            let _ = write!(
                out,
                "<p class=\"fail\">Lost during the workload: {}.{rerun}</p>",
                esc(&d.lost.join(", ")),
            );
        }
        for back in &d.returned {
            let _ = write!(out, "<p>Back after being lost: {}.</p>", esc(back));
        }
        for moved in &d.reshares {
            let _ = write!(out, "<p>Shares moved: {}.</p>", esc(&moved.to_string()));
        }
        if d.duplicates > 0 {
            let _ = write!(
                out,
                "<p>{} duplicate results (iterations already stored) were dropped.</p>",
                d.duplicates
            );
        }
        for m in &d.missing {
            let _ = write!(out, "<p class=\"fail\">Missing results: {}</p>", esc(m));
        }
    }
    out.push_str("</details>");
}

pub(super) fn atomic_actions(out: &mut String, w: &ReportWorkload) {
    let s = &w.series;
    if s.actions.is_empty() {
        return;
    }
    out.push_str("<details open><summary>Atomic actions</summary><div class=\"charts\">");
    let series = s
        .actions
        .iter()
        .map(|a| {
            named(
                &a.name,
                bucket_points(a.values.iter().copied(), s.coarse_seconds),
            )
        })
        .collect();
    out.push_str(&time_chart(
        s,
        "Atomic action durations over time (mean of each run)",
        "seconds",
        Style::Lines,
        series,
    ));
    out.push_str("</div></details>");
}

pub(super) fn failures(out: &mut String, w: &ReportWorkload) {
    let s = &w.series;
    let _ = write!(
        out,
        "<details{}><summary>Failures ({} iterations failed)</summary>",
        if w.failures > 0 { " open" } else { "" },
        w.failures
    );
    if w.failures == 0 && s.failure_samples.is_empty() {
        out.push_str("<p class=\"muted\">No iteration failed.</p></details>");
        return;
    }
    let rate = coarse_rate(&s.failed, s.coarse_seconds);
    out.push_str("<div class=\"charts\">");
    out.push_str(&time_chart(
        s,
        "Failures over time",
        "failed iterations per second",
        Style::Area,
        vec![named(
            "failures",
            bucket_points(rate.into_iter(), s.coarse_seconds),
        )],
    ));
    out.push_str("</div>");
    error_counts(out, w);
    failure_samples(out, w);
    out.push_str("</details>");
}
