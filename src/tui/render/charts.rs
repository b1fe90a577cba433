//! The charts: one metric of the aggregate and of the selected source over time, with the
//! SLA limits drawn as lines (or named in the legend when far above the data).

use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Color, Style};
use ratatui::symbols::Marker;
use ratatui::text::{Line, Span};
use ratatui::widgets::{Axis, Chart, Dataset, GraphType};

use super::format::{clock, dur, num, pct};
use super::sla::{FAILURE_CRITERION, LATENCY_CRITERIA, short_criterion};
use super::{aggregate_name, block};
use crate::events::InstanceState;
use crate::sla::CriterionStatus;
use crate::tui::state::{History, Ring, SourceRow, TuiState, View};
use crate::tui::theme::Palette;

/// Chart area from which all three metrics are drawn at once instead of one view.
pub(super) const GRID_WIDTH: u16 = 150;
pub(super) const GRID_HEIGHT: u16 = 18;
/// A limit this many times above the data is named in the legend instead of drawn, so a
/// loose limit (1 s over 1 ms iterations) does not flatten the curves onto the axis.
pub(super) const LIMIT_HEADROOM: f64 = 10.0;

/// One chart to draw: whose figures, which metric.
pub(super) struct Panel<'a> {
    who: String,
    history: &'a History,
    sla: &'a [CriterionStatus],
    view: View,
    /// The workload's elapsed time: every chart's x axis ends there, so a series that
    /// stopped (a lost agent) shows where it stopped.
    until: f64,
}

/// The charts: the aggregate and the selected agent, each in the chosen view; on a large
/// screen all three views at once. With one local runner the "selected agent" would repeat
/// the aggregate, so its place goes to more views of the aggregate.
pub(super) fn chart_panels(s: &TuiState, grid: bool) -> Vec<Vec<Panel<'_>>> {
    let (history, sla, until) = s.shown_charts();
    let who = match s.inspected_charts() {
        Some(i) => format!("workload {}/{} (final)", i + 1, s.workloads.len()),
        None => aggregate_name(s).to_owned(),
    };
    let all = |view| Panel {
        who: who.clone(),
        history,
        sla,
        view,
        until,
    };
    // A finished workload's agents are gone from the table: its aggregate only.
    let per_agent = s.inspected_charts().is_none() && (s.distributed || s.sources.len() > 1);
    let one = |view| match s.selected_source() {
        Some(src) => Panel {
            who: agent_label(src),
            history: &src.history,
            sla: &src.sla,
            view,
            until: s.elapsed,
        },
        None => all(view),
    };
    match (grid, per_agent) {
        (true, true) => vec![
            View::ALL.map(all).into_iter().collect(),
            View::ALL.map(one).into_iter().collect(),
        ],
        (true, false) => vec![View::ALL.map(all).into_iter().collect()],
        (false, true) => vec![vec![all(s.view), one(s.view)]],
        (false, false) => vec![vec![all(s.view), all(s.view.next())]],
    }
}

/// An agent's name, with its state when that is news (not running).
pub(super) fn agent_label(src: &SourceRow) -> String {
    match src.state {
        Some(state) if state != InstanceState::Running => {
            format!("{} ({})", src.name, state.as_str())
        }
        _ => src.name.clone(),
    }
}

pub(super) fn draw_charts(frame: &mut Frame, area: Rect, s: &TuiState, c: &Palette) {
    let grid = area.width >= GRID_WIDTH && area.height >= GRID_HEIGHT;
    let rows = chart_panels(s, grid);
    let row_areas = Layout::vertical(vec![Constraint::Fill(1); rows.len()]).split(area);
    for (panels, row) in rows.iter().zip(row_areas.iter()) {
        let cells = Layout::horizontal(vec![Constraint::Fill(1); panels.len()]).split(*row);
        for (p, cell) in panels.iter().zip(cells.iter()) {
            chart(frame, *cell, p, c);
        }
    }
}

/// The series of `view`: label, points, colour.
pub(super) fn series<'a>(
    h: &'a History,
    view: View,
    c: &Palette,
) -> Vec<(&'static str, &'a Ring, Color)> {
    match view {
        View::Throughput if !h.target.is_empty() => vec![
            ("it/s", &h.throughput, c.throughput),
            ("target", &h.target, c.dim),
        ],
        View::Throughput => vec![("it/s", &h.throughput, c.throughput)],
        View::Latency => vec![
            ("p50", &h.p50, c.p50),
            ("p95", &h.p95, c.p95),
            ("p99", &h.p99, c.p99),
            ("max", &h.max, c.max),
        ],
        // What the `failure_rate` criterion judges, and the interval's rate behind it.
        View::Failures => vec![
            ("failed (all)", &h.failure_total, c.failures),
            ("interval", &h.failure_rate, c.dim),
        ],
    }
}

/// An SLA limit drawn across a chart: what it is called in the legend, and where.
pub(super) struct LimitLine {
    name: String,
    limit: f64,
}

/// The SLA limits in the unit of `view`'s y axis: one per criterion, or one per part of a
/// criterion that has several (each of `max_percentile`'s percentiles).
pub(super) fn limits(sla: &[CriterionStatus], view: View) -> Vec<LimitLine> {
    sla.iter()
        .filter(|r| match view {
            View::Throughput => false,
            View::Latency => LATENCY_CRITERIA.contains(&r.criterion.as_str()),
            View::Failures => r.criterion == FAILURE_CRITERION,
        })
        .flat_map(|r| {
            if r.parts.is_empty() {
                vec![LimitLine {
                    name: short_criterion(&r.criterion).to_owned(),
                    limit: r.limit,
                }]
            } else {
                r.parts
                    .iter()
                    .map(|p| LimitLine {
                        name: p.name.clone(),
                        limit: p.limit,
                    })
                    .collect()
            }
        })
        .filter(|l| l.limit > 0.0 && l.limit.is_finite())
        .collect()
}

/// A value on `view`'s y axis, in its unit.
pub(super) fn axis_value(view: View, v: f64) -> String {
    match view {
        View::Throughput => num(v),
        View::Latency => dur(v),
        View::Failures => pct(v),
    }
}

/// One time-series chart, with each applicable SLA limit as a dotted horizontal line; the
/// legend sits in the bottom border so it never covers the curves.
pub(super) fn chart(frame: &mut Frame, area: Rect, p: &Panel, c: &Palette) {
    let series = series(p.history, p.view, c);
    let limits = limits(p.sla, p.view);
    let data: Vec<Vec<(f64, f64)>> = series.iter().map(|(_, r, _)| r.to_vec()).collect();
    let xs = data.iter().flatten().map(|p| p.0);
    let x0 = xs.clone().fold(f64::INFINITY, f64::min);
    let x1 = xs.fold(f64::NEG_INFINITY, f64::max);
    let (x0, x1) = if x0.is_finite() {
        (x0, x1.max(p.until).max(x0 + 1.0))
    } else {
        (0.0, 1.0)
    };
    let data_top = data.iter().flatten().map(|p| p.1).fold(0.0_f64, f64::max);
    let (drawn, above): (Vec<LimitLine>, Vec<LimitLine>) = limits
        .into_iter()
        .partition(|r| data_top == 0.0 || r.limit <= data_top * LIMIT_HEADROOM);
    let y_top = drawn.iter().map(|r| r.limit).fold(data_top, f64::max);
    let y1 = if y_top > 0.0 { y_top * 1.1 } else { 1.0 };
    let limit_lines: Vec<[(f64, f64); 2]> = drawn
        .iter()
        .map(|r| [(x0, r.limit), (x1, r.limit)])
        .collect();

    let mut datasets: Vec<Dataset> = series
        .iter()
        .zip(&data)
        .map(|((_, _, colour), points)| {
            Dataset::default()
                .marker(Marker::Braille)
                .graph_type(GraphType::Line)
                .style(Style::new().fg(*colour))
                .data(points)
        })
        .collect();
    for line in &limit_lines {
        datasets.push(
            Dataset::default()
                .marker(Marker::Dot)
                .graph_type(GraphType::Line)
                .style(Style::new().fg(c.limit))
                .data(line),
        );
    }

    // The longest legend that fits in the border, never a cut one: limits named, then
    // called `SLA` (the SLA panel names them), then the series by colour alone.
    let room = (area.width as usize).saturating_sub(2);
    let legend = [(true, true), (false, true), (false, false)]
        .into_iter()
        .map(|(named, labelled)| chart_legend(&series, &drawn, &above, p.view, c, named, labelled))
        .find(|l| Line::from(l.clone()).width() <= room)
        .unwrap_or_default();
    let title = format!(" {} · {} ", p.who, p.view.title());
    let dim = Style::new().fg(c.dim);
    let chart = Chart::new(datasets)
        .block(block(title, c).title_bottom(Line::from(legend)))
        .legend_position(None)
        .x_axis(
            Axis::default()
                .style(dim)
                .bounds([x0, x1])
                .labels([seconds_label(x0), seconds_label(x1)]),
        )
        .y_axis(Axis::default().style(dim).bounds([0.0, y1]).labels([
            "0".to_owned(),
            axis_value(p.view, y1 / 2.0),
            axis_value(p.view, y1),
        ]));
    frame.render_widget(chart, area);
}

/// The legend for a chart's bottom border: each series in its colour, then each SLA limit
/// (`┄` drawn, `↑` above the chart), named by its criterion when `named`.
pub(super) fn chart_legend(
    series: &[(&'static str, &Ring, Color)],
    drawn: &[LimitLine],
    above: &[LimitLine],
    view: View,
    c: &Palette,
    named: bool,
    labelled: bool,
) -> Vec<Span<'static>> {
    let mut legend: Vec<Span> = series
        .iter()
        .flat_map(|(name, _, colour)| {
            [
                Span::styled("━", Style::new().fg(*colour)),
                Span::styled(
                    if labelled {
                        format!("{name} ")
                    } else {
                        String::new()
                    },
                    Style::new().fg(c.dim),
                ),
            ]
        })
        .collect();
    let marked = drawn
        .iter()
        .map(|r| (r, "┄"))
        .chain(above.iter().map(|r| (r, "↑")));
    for (r, mark) in marked {
        let name = if named { r.name.as_str() } else { "SLA" };
        legend.push(Span::styled(
            format!("{mark}{name} {} ", axis_value(view, r.limit)),
            Style::new().fg(c.limit),
        ));
    }
    legend
}

/// Time since the workload started, for the x axis.
pub(super) fn seconds_label(t: f64) -> String {
    if t < 100.0 {
        format!("{t:.0}s")
    } else {
        clock(t)
    }
}
