//! Draws a [`TuiState`] with a [`Theme`] (SPEC §7 layout).
//!
//! Pure: everything on screen comes from the state (times from events, never a clock), so
//! the snapshot tests in `render_tests` pin whole screens. Every size from 80×24 up gets the
//! full layout (narrow tables drop their least useful columns first); smaller terminals get
//! what fits, and nothing indexes the buffer directly, so no size can panic.

use ratatui::Frame;
use ratatui::layout::{Alignment, Constraint, Flex, Layout, Rect};
use ratatui::style::{Color, Modifier, Style};
use ratatui::symbols::Marker;
use ratatui::text::{Line, Span};
use ratatui::widgets::{
    Axis, Block, Borders, Cell, Chart, Clear, Dataset, Gauge, GraphType, Paragraph, Row, Sparkline,
    Table, Wrap,
};

use super::state::{History, Overlay, PSEUDO_ROWS, Phase, Ring, SourceRow, TuiState, View};
use super::theme::{Palette, Theme};
use crate::runner::InstanceState;
use crate::sla::{ABORTED_MANUALLY, ABORTED_ON_SLA, CriterionStatus, SOMETHING_WENT_WRONG};

/// Criteria whose limit is a duration in seconds, drawn on the latency chart.
const LATENCY_CRITERIA: [&str; 4] = [
    "max_percentile",
    "max_seconds_per_iteration",
    "max_avg_duration",
    "max_avg_duration_per_atomic",
];
/// Criterion whose limit is a failure percentage, drawn on the failure-rate chart.
const FAILURE_CRITERION: &str = "failure_rate";
/// Width of the SLA panel next to the agent table; wide screens add the selected agent's
/// column.
const SLA_WIDTH: u16 = 33;
const SLA_WIDE_WIDTH: u16 = 40;
/// Screen width from which the SLA panel shows the selected agent's values too.
const WIDE_SCREEN: u16 = 140;
/// Chart area from which all three metrics are drawn at once instead of one view.
const GRID_WIDTH: u16 = 150;
const GRID_HEIGHT: u16 = 18;
/// A limit this many times above the data is named in the legend instead of drawn, so a
/// loose limit (1 s over 1 ms iterations) does not flatten the curves onto the axis.
const LIMIT_HEADROOM: f64 = 10.0;
/// An agent unheard of for longer than this is shown in the warning colour (heartbeats are
/// at most 1 s apart).
const HEARTBEAT_LATE: f64 = 2.0;

/// Draws the whole screen, then the help overlay or the stop confirmation over it.
/// The smallest screen the layout is made for.
pub const MIN_SIZE: (u16, u16) = (80, 24);

pub fn draw(frame: &mut Frame, state: &TuiState, theme: &Theme) {
    let c = &theme.colors;
    let area = frame.area();
    frame.render_widget(
        Block::new().style(Style::new().fg(c.text).bg(c.background)),
        area,
    );
    if area.width < MIN_SIZE.0 || area.height < MIN_SIZE.1 {
        draw_too_small(frame, area, state, c);
        return;
    }
    let log_height = (area.height / 6).clamp(4, 12);
    let [header, charts, tables, logs, footer] = Layout::vertical([
        Constraint::Length(3),
        Constraint::Fill(3),
        Constraint::Fill(2),
        Constraint::Length(log_height),
        Constraint::Length(1),
    ])
    .areas(area);
    draw_header(frame, header, state, c);
    match state.overlay {
        Overlay::None => draw_charts(frame, charts, state, c),
        Overlay::Workloads => draw_workloads(frame, charts, state, c),
        Overlay::Errors => draw_errors(frame, charts, state, c),
        Overlay::Statistics => draw_statistics(frame, charts, state, c),
        Overlay::Log => draw_log_overlay(frame, charts, state, c),
    }
    let sla_width = if area.width >= WIDE_SCREEN {
        SLA_WIDE_WIDTH
    } else {
        SLA_WIDTH
    };
    let [sla, agents] =
        Layout::horizontal([Constraint::Length(sla_width), Constraint::Fill(1)]).areas(tables);
    draw_sla(frame, sla, state, c);
    draw_agents(frame, agents, state, c);
    draw_logs(frame, logs, state, c);
    draw_footer(frame, footer, state, theme);
    if state.show_help {
        draw_help(frame, area, c);
    } else if state.confirm_stop {
        draw_confirm(frame, area, state, c);
    } else if state.confirm_leave {
        draw_confirm_leave(frame, area, c);
    }
}

/// Below [`MIN_SIZE`]: say so, with the run's state, rather than draw empty boxes.
fn draw_too_small(frame: &mut Frame, area: Rect, s: &TuiState, c: &Palette) {
    let lines = vec![
        Line::styled(
            format!(
                "terminal too small ({}×{}, needs {}×{})",
                area.width, area.height, MIN_SIZE.0, MIN_SIZE.1
            ),
            Style::new().fg(c.warn).bold(),
        ),
        Line::styled(
            format!("{} · {} iterations", s.phase.label(), s.all.iterations),
            phase_style(&s.phase, c),
        ),
        Line::styled(
            if s.phase.is_over() {
                "q quits"
            } else {
                "s stops · q quits (asks to stop)"
            },
            Style::new().fg(c.dim),
        ),
    ];
    let height = (lines.len() as u16).min(area.height);
    let top = area.y + area.height.saturating_sub(height) / 2;
    frame.render_widget(
        Paragraph::new(lines)
            .alignment(ratatui::layout::Alignment::Center)
            .wrap(ratatui::widgets::Wrap { trim: true }),
        Rect {
            y: top,
            height: area.bottom() - top,
            ..area
        },
    );
}

fn block<'a>(title: impl Into<Line<'a>>, c: &Palette) -> Block<'a> {
    Block::new()
        .borders(Borders::ALL)
        .border_style(Style::new().fg(c.border))
        .title(title.into().style(Style::new().fg(c.accent)))
}

fn phase_style(phase: &Phase, c: &Palette) -> Style {
    let fg = match phase {
        Phase::Waiting => c.dim,
        Phase::Running | Phase::Finished { pass_sla: true } => c.pass,
        Phase::Stopping { .. } => c.warn,
        _ => c.fail,
    };
    Style::new().fg(fg).add_modifier(Modifier::BOLD)
}

/// What the aggregate charts and figures are called: the sum of the agents, or of the one
/// local runner.
fn aggregate_name(s: &TuiState) -> &'static str {
    if s.distributed { "all agents" } else { "all" }
}

fn draw_header(frame: &mut Frame, area: Rect, s: &TuiState, c: &Palette) {
    let [top, info, gauge] = Layout::vertical([Constraint::Length(1); 3]).areas(area);
    draw_title_line(frame, top, s, c);
    draw_info_line(frame, info, s, c);
    draw_gauge(frame, gauge, s, c);
}

/// Task title and id, and the run's state on the right.
fn draw_title_line(frame: &mut Frame, area: Rect, s: &TuiState, c: &Palette) {
    let title = if s.title.is_empty() {
        "(no task yet)"
    } else {
        &s.title
    };
    let state_label = match &s.phase {
        Phase::Stopping { reason } => format!(" STOPPING: {reason} "),
        phase => format!(" {} ", phase.label().to_uppercase()),
    };
    // The task's verdict so far: the SLA panel below is the current workload's only.
    let (so_far, so_far_style) = match (s.workloads_done, s.workloads_failed) {
        (0, _) => (String::new(), Style::new()),
        (done, 0) => (
            format!(" task SLA so far PASS ({done}/{} done) ", s.workloads.len()),
            Style::new().fg(c.pass),
        ),
        (done, failed) => (
            format!(" task SLA so far FAIL ({failed} of {done} done) "),
            Style::new().fg(c.fail).bold(),
        ),
    };
    let [left, verdict_area, right] = Layout::horizontal([
        Constraint::Fill(1),
        Constraint::Length(width(&so_far)),
        Constraint::Length(width(&state_label)),
    ])
    .areas(area);
    frame.render_widget(Line::styled(so_far, so_far_style), verdict_area);
    frame.render_widget(
        Line::from(vec![
            Span::styled(" rally-tui ", Style::new().fg(c.accent).bold()),
            Span::styled(title.to_owned(), Style::new().bold()),
            Span::styled(format!("  task {}", s.uuid), Style::new().fg(c.dim)),
        ]),
        left,
    );
    frame.render_widget(
        Line::styled(
            state_label,
            phase_style(&s.phase, c).add_modifier(Modifier::REVERSED),
        ),
        right,
    );
}

/// Which workload runs where (left, cut to fit), and the live totals (right, always whole).
fn draw_info_line(frame: &mut Frame, area: Rect, s: &TuiState, c: &Palette) {
    let dim = Style::new().fg(c.dim);
    let sep = || Span::styled(" · ", dim);
    let mut left = vec![Span::raw(" "), Span::styled("workload ", dim)];
    match &s.workload {
        Some(w) => left.extend([
            Span::raw(format!("{}/{}", w.index + 1, w.count)),
            sep(),
            Span::styled(w.scenario.clone(), Style::new().bold()),
            sep(),
            Span::raw(w.runner.clone()),
        ]),
        None => left.push(Span::raw(format!("-/{}", s.workloads.len()))),
    }
    let mut right = vec![
        Span::styled("p95 (all) ", dim),
        Span::raw(secs(s.all.p95_total.or(s.all.p95))),
        sep(),
        Span::styled("failed ", dim),
        Span::styled(
            failed_share(s.all.failures, s.all.iterations),
            if s.all.failures > 0 {
                Style::new().fg(c.fail)
            } else {
                Style::new()
            },
        ),
    ];
    // An `rps` runner's slots in use, against its cap: at the cap, iterations start late.
    if let (Some(n), Some(max)) = (
        s.in_flight,
        s.workload.as_ref().and_then(|w| w.max_concurrency),
    ) {
        right.extend([
            sep(),
            Span::styled("in flight ", dim),
            Span::styled(
                format!("{n}/{max}"),
                if n >= max {
                    Style::new().fg(c.warn).bold()
                } else {
                    Style::new()
                },
            ),
        ]);
    }
    if let Some((alive, all)) = s.agents_alive() {
        let style = if alive < all {
            Style::new().fg(c.fail).bold()
        } else {
            Style::new()
        };
        right.extend([
            sep(),
            Span::styled("agents ", dim),
            Span::styled(format!("{alive}/{all}"), style),
        ]);
        let idle = s.agents_idle();
        if idle > 0 {
            right.push(Span::styled(format!(" +{idle} idle"), dim));
        }
    }
    right.push(Span::raw(" "));
    let right = Line::from(right);
    let [l, r] = Layout::horizontal([
        Constraint::Fill(1),
        Constraint::Length(right.width() as u16),
    ])
    .spacing(1)
    .areas(area);
    frame.render_widget(Line::from(clip(left, l.width as usize)), l);
    frame.render_widget(right, r);
}

/// `spans` cut to `max` cells with a trailing `…` when they do not fit, so a long runner
/// description reads as cut rather than running into the figures beside it.
fn clip(spans: Vec<Span<'static>>, max: usize) -> Vec<Span<'static>> {
    if spans.iter().map(Span::width).sum::<usize>() <= max {
        return spans;
    }
    let mut room = max.saturating_sub(1);
    let mut out = Vec::new();
    for span in spans {
        let w = span.width();
        if w <= room {
            room -= w;
            out.push(span);
            continue;
        }
        let cut: String = span.content.chars().take(room).collect();
        out.push(Span::styled(cut, span.style));
        break;
    }
    if max > 0 {
        out.push(Span::raw("…"));
    }
    out
}

/// `12 (0.41%)`: failures, and their share of the iterations.
fn failed_share(failures: u64, iterations: u64) -> String {
    if iterations == 0 {
        return count(failures);
    }
    let p = 100.0 * failures as f64 / iterations as f64;
    format!("{} ({})", count(failures), pct(p))
}

/// Progress: by iterations when the runner has a total, else by time when it has a
/// duration; the label says both elapsed / expected time and the iteration count.
fn draw_gauge(frame: &mut Frame, area: Rect, s: &TuiState, c: &Palette) {
    let done = s.all.iterations;
    let expected = s.expected();
    let time = match expected {
        Some((e, estimate)) => format!(
            "{} / {}{}",
            clock(s.elapsed),
            if estimate { "~" } else { "" },
            clock(e)
        ),
        None => clock(s.elapsed),
    };
    let (ratio, iterations) = match (s.total, expected) {
        (Some(total), _) if total > 0 => {
            let r = (done as f64 / total as f64).clamp(0.0, 1.0);
            (r, format!("{done}/{total} iterations ({:.0}%)", r * 100.0))
        }
        (_, Some((e, _))) if e > 0.0 => (
            (s.elapsed / e).clamp(0.0, 1.0),
            format!("{done} iterations"),
        ),
        _ => (0.0, format!("{done} iterations")),
    };
    // The workload's average rate; while it runs, the last interval's too, said as such.
    let avg = s.average_rate().map_or_else(|| "-".to_owned(), num);
    let label = if s.final_rate.is_some() || s.phase.is_over() {
        format!("{time} · {iterations} · avg {avg} it/s")
    } else {
        format!(
            "{time} · {iterations} · avg {avg} it/s · now {} it/s",
            num(s.all.rate)
        )
    };
    frame.render_widget(
        Gauge::default()
            .gauge_style(Style::new().fg(c.gauge))
            .ratio(ratio)
            .label(Span::styled(label, Style::new().fg(c.text).bold())),
        gauge_area(area),
    );
}

/// The gauge, one cell in from each side so it lines up with the panels below.
fn gauge_area(area: Rect) -> Rect {
    Rect {
        x: area.x.saturating_add(1).min(area.right()),
        width: area.width.saturating_sub(2),
        ..area
    }
}

/// One chart to draw: whose figures, which metric.
struct Panel<'a> {
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
fn chart_panels(s: &TuiState, grid: bool) -> Vec<Vec<Panel<'_>>> {
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
fn agent_label(src: &SourceRow) -> String {
    match src.state {
        Some(state) if state != InstanceState::Running => {
            format!("{} ({})", src.name, state.as_str())
        }
        _ => src.name.clone(),
    }
}

fn draw_charts(frame: &mut Frame, area: Rect, s: &TuiState, c: &Palette) {
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
fn series<'a>(h: &'a History, view: View, c: &Palette) -> Vec<(&'static str, &'a Ring, Color)> {
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
struct LimitLine {
    name: String,
    limit: f64,
}

/// The SLA limits in the unit of `view`'s y axis: one per criterion, or one per part of a
/// criterion that has several (each of `max_percentile`'s percentiles).
fn limits(sla: &[CriterionStatus], view: View) -> Vec<LimitLine> {
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
fn axis_value(view: View, v: f64) -> String {
    match view {
        View::Throughput => num(v),
        View::Latency => dur(v),
        View::Failures => pct(v),
    }
}

/// One time-series chart, with each applicable SLA limit as a dotted horizontal line; the
/// legend sits in the bottom border so it never covers the curves.
fn chart(frame: &mut Frame, area: Rect, p: &Panel, c: &Palette) {
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
fn chart_legend(
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
fn seconds_label(t: f64) -> String {
    if t < 100.0 {
        format!("{t:.0}s")
    } else {
        clock(t)
    }
}

fn draw_sla(frame: &mut Frame, area: Rect, s: &TuiState, c: &Palette) {
    let (_, sla, _) = s.shown_charts();
    let failed = sla.iter().filter(|r| !r.success).count();
    let mut title = vec![Span::raw(" SLA ")];
    match (sla.is_empty(), failed) {
        (true, _) => {}
        (false, 0) => title.push(Span::styled("PASS ", Style::new().fg(c.pass).bold())),
        (false, n) => title.push(Span::styled(
            format!("{n} FAIL "),
            Style::new().fg(c.fail).bold(),
        )),
    }
    let which = match (s.inspected_charts(), &s.workload) {
        (Some(i), _) => format!("#{}/{} ", i + 1, s.workloads.len()),
        (None, Some(w)) => format!("#{}/{} ", w.index + 1, w.count),
        (None, None) => String::new(),
    };
    title.push(Span::raw(format!("· {which}· {} ", aggregate_name(s))));
    let outer = block(Line::from(title), c);
    // The selected agent's own values, where there is room and it has any.
    let agent = s.selected_source().filter(|src| {
        s.inspected_charts().is_none()
            && s.distributed
            && !src.sla.is_empty()
            && area.width >= SLA_WIDE_WIDTH
    });
    // A criterion with several limits shows a row for each (`p95 354ms 300ms FAIL`).
    let lines = sla.iter().flat_map(|r| {
        if r.parts.is_empty() {
            vec![(
                short_criterion(&r.criterion).to_owned(),
                r.criterion.as_str(),
                r.value,
                r.limit,
                r.success,
                None,
            )]
        } else {
            r.parts
                .iter()
                .map(|p| {
                    (
                        p.name.clone(),
                        r.criterion.as_str(),
                        p.value,
                        p.limit,
                        p.success,
                        Some(p.name.as_str()),
                    )
                })
                .collect()
        }
    });
    let rows = lines.map(|(label, criterion, value, limit, success, part)| {
        let mut cells = vec![
            Cell::from(label),
            Cell::from(criterion_value(criterion, value)),
            Cell::from(criterion_value(criterion, limit)),
            Cell::from(verdict(success, c)),
        ];
        if let Some(src) = agent {
            let mine = src.sla.iter().find(|x| x.criterion == criterion).map(|m| {
                match part.and_then(|p| m.parts.iter().find(|x| x.name == p)) {
                    Some(p) => (p.value, p.success),
                    None => (m.value, m.success),
                }
            });
            cells.push(Cell::from(mine.map_or_else(Span::default, |(v, ok)| {
                Span::styled(
                    criterion_value(criterion, v),
                    Style::new().fg(if ok { c.text } else { c.fail }),
                )
            })));
        }
        Row::new(cells)
    });
    let mut widths = vec![
        Constraint::Fill(1),
        Constraint::Length(6),
        Constraint::Length(6),
        Constraint::Length(4),
    ];
    let mut header = vec![
        "criterion".to_owned(),
        "value".into(),
        "limit".into(),
        String::new(),
    ];
    if let Some(src) = agent {
        widths.push(Constraint::Length(7));
        header.push(src.name.chars().take(7).collect());
    }
    let table = Table::new(rows, widths)
        .header(Row::new(header).style(Style::new().fg(c.dim)))
        .block(outer);
    frame.render_widget(table, area);
}

fn verdict(success: bool, c: &Palette) -> Span<'static> {
    if success {
        Span::styled("PASS", Style::new().fg(c.pass).bold())
    } else {
        Span::styled("FAIL", Style::new().fg(c.fail).bold())
    }
}

/// A criterion's value or limit in its unit; blank for the pseudo rows, which have none
/// (a real criterion at 0, e.g. no failures yet, shows its 0).
fn criterion_value(criterion: &str, v: f64) -> String {
    if PSEUDO_ROWS.contains(&criterion) {
        return String::new();
    }
    match criterion {
        "failure_rate" | "performance_degradation" => pct(v),
        "outliers" => format!("{v:.0}"),
        c if LATENCY_CRITERIA.contains(&c) => dur(v),
        _ => num(v),
    }
}

/// A column of the agent table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Col {
    Name,
    Host,
    State,
    Iterations,
    Rate,
    P95,
    Failures,
    Heartbeat,
    Offset,
    Trend,
}

impl Col {
    /// Display order.
    const ORDER: [Col; 10] = [
        Col::Name,
        Col::Host,
        Col::State,
        Col::Iterations,
        Col::Rate,
        Col::P95,
        Col::Failures,
        Col::Heartbeat,
        Col::Offset,
        Col::Trend,
    ];
    /// The order columns are given room in; what does not fit is left out.
    const PRIORITY: [Col; 10] = [
        Col::Name,
        Col::State,
        Col::Iterations,
        Col::Rate,
        Col::Failures,
        Col::P95,
        Col::Trend,
        Col::Heartbeat,
        Col::Offset,
        Col::Host,
    ];
    /// Narrowest useful sparkline.
    const TREND_MIN: u16 = 5;

    fn title(self) -> &'static str {
        match self {
            Col::Name => "name",
            Col::Host => "host",
            Col::State => "state",
            Col::Iterations => "iter",
            // The last interval's rate; the workload's p95 so far (as the SLA judges).
            Col::Rate => "now/s",
            Col::P95 => "Σ p95",
            Col::Failures => "fail",
            Col::Heartbeat => "hb",
            Col::Offset => "offset",
            Col::Trend => "trend",
        }
    }

    /// Only agents have these.
    fn agent_only(self) -> bool {
        matches!(self, Col::Host | Col::State | Col::Heartbeat | Col::Offset)
    }
}

/// Column widths fitted to the rows and to `room`, in display order.
fn fit_columns(s: &TuiState, room: u16, compact_state: bool) -> Vec<(Col, u16)> {
    let longest = |f: &dyn Fn(&SourceRow) -> usize, floor: usize, cap: usize| {
        s.sources.iter().map(f).max().unwrap_or(0).clamp(floor, cap) as u16
    };
    let width_of = |col: Col| match col {
        // One more for the selection marker.
        Col::Name => longest(&|r| r.name.chars().count(), 4, 20) + 1,
        Col::Host => longest(
            &|r| r.host.as_deref().map_or(1, |h| h.chars().count()),
            4,
            20,
        ),
        Col::State if compact_state => 5,
        Col::State => longest(&|r| r.state.map_or(1, |st| st.as_str().len()), 5, 10),
        Col::Iterations => 6,
        Col::Rate => 5,
        Col::P95 => 6,
        Col::Failures => 5,
        Col::Heartbeat => 4,
        Col::Offset => 7,
        Col::Trend => Col::TREND_MIN,
    };
    let mut used = 0u16;
    let mut chosen = Vec::new();
    for col in Col::PRIORITY {
        if col.agent_only() && !s.distributed {
            continue;
        }
        let w = width_of(col);
        let need = w + u16::from(!chosen.is_empty());
        if used + need <= room {
            used += need;
            chosen.push((col, w));
        }
    }
    let spare = room - used;
    let mut out: Vec<(Col, u16)> = Col::ORDER
        .iter()
        .filter_map(|col| chosen.iter().find(|(c, _)| c == col).copied())
        .collect();
    // The sparkline takes what is left.
    if let Some(t) = out.iter_mut().find(|(c, _)| *c == Col::Trend) {
        t.1 += spare;
    }
    out
}

fn state_word(state: InstanceState, compact: bool) -> &'static str {
    if !compact {
        return state.as_str();
    }
    match state {
        InstanceState::Connecting => "conn",
        InstanceState::Running => "run",
        InstanceState::Stopping => "stop",
        InstanceState::Done => "done",
        InstanceState::Lost => "LOST",
    }
}

fn state_style(state: Option<InstanceState>, c: &Palette) -> Style {
    match state {
        Some(InstanceState::Lost) => Style::new().fg(c.fail).bold(),
        Some(InstanceState::Stopping | InstanceState::Connecting) => Style::new().fg(c.warn),
        Some(InstanceState::Done) => Style::new().fg(c.dim),
        Some(InstanceState::Running) => Style::new().fg(c.pass),
        None => Style::new(),
    }
}

fn agent_cell(
    col: Col,
    r: &SourceRow,
    selected: bool,
    compact: bool,
    c: &Palette,
) -> Cell<'static> {
    let lost = r.state == Some(InstanceState::Lost);
    let failing = lost || r.sla.iter().any(|x| !x.success);
    match col {
        // A marker as well as the highlight, for terminals (and readers) without colour.
        Col::Name => Cell::from(Span::styled(
            format!("{}{}", if selected { "›" } else { " " }, r.name),
            if failing {
                Style::new().fg(c.fail)
            } else {
                Style::new()
            },
        )),
        Col::Host => Cell::from(r.host.clone().unwrap_or_else(|| "-".into())),
        Col::State if r.idle => Cell::from(Span::styled("idle", Style::new().fg(c.dim))),
        Col::State => Cell::from(Span::styled(
            r.state.map_or("-", |st| state_word(st, compact)),
            state_style(r.state, c),
        )),
        Col::Iterations => Cell::from(count(r.iterations)),
        Col::Rate if lost => Cell::from("-"),
        Col::Rate => Cell::from(num(r.rate)),
        Col::P95 => Cell::from(secs(r.p95)),
        Col::Failures => Cell::from(Span::styled(
            count(r.failures),
            if r.failures > 0 {
                Style::new().fg(c.fail)
            } else {
                Style::new()
            },
        )),
        Col::Heartbeat => Cell::from(r.heartbeat_age.map_or_else(
            || Span::raw("-"),
            |a| {
                let late = a > HEARTBEAT_LATE && !matches!(r.state, Some(InstanceState::Done));
                Span::styled(
                    short_age(a),
                    if late {
                        Style::new().fg(c.warn)
                    } else {
                        Style::new()
                    },
                )
            },
        )),
        Col::Offset => Cell::from(r.clock_offset.map_or_else(|| "-".into(), signed_dur)),
        Col::Trend => Cell::from(""),
    }
}

fn draw_agents(frame: &mut Frame, area: Rect, s: &TuiState, c: &Palette) {
    let what = if s.distributed { "agents" } else { "sources" };
    let inner_height = area.height.saturating_sub(3) as usize;
    // Scroll by hand so the selected row stays visible and the sparklines line up.
    let visible = inner_height.max(1);
    let offset = (s.selected + 1).saturating_sub(visible);
    let mut title = format!(" {what} ({})", s.sources.len());
    if s.sources.len() > inner_height && inner_height > 0 {
        let last = (offset + inner_height).min(s.sources.len());
        title.push_str(&format!(" · {}-{last}", offset + 1));
    }
    title.push_str(" · Tab selects ");
    let outer = block(title, c);
    let inner = outer.inner(area);
    frame.render_widget(outer, area);
    let compact = inner.width < 64;
    let cols = fit_columns(s, inner.width, compact);
    let widths: Vec<Constraint> = cols.iter().map(|(_, w)| Constraint::Length(*w)).collect();
    let header: Vec<&str> = cols.iter().map(|(col, _)| col.title()).collect();
    let shown = s.sources.iter().enumerate().skip(offset).take(inner_height);
    let rows: Vec<Row> = shown
        .clone()
        .map(|(i, r)| {
            let selected = i == s.selected;
            let row = Row::new(
                cols.iter()
                    .map(|(col, _)| agent_cell(*col, r, selected, compact, c))
                    .collect::<Vec<_>>(),
            );
            if selected {
                row.style(Style::new().bg(c.highlight).fg(c.accent).bold())
            } else {
                row
            }
        })
        .collect();
    let table = Table::new(rows, widths.clone())
        .column_spacing(1)
        .flex(Flex::Start)
        .header(Row::new(header).style(Style::new().fg(c.dim)));
    frame.render_widget(table, inner);

    // The trend column's rectangle, computed as the table lays it out.
    let Some(trend_index) = cols.iter().position(|(col, _)| *col == Col::Trend) else {
        return;
    };
    let columns = Layout::horizontal(widths)
        .flex(Flex::Start)
        .spacing(1)
        .split(inner);
    let Some(trend) = columns.get(trend_index).copied() else {
        return;
    };
    for (line, (_, r)) in shown.enumerate() {
        let y = inner.y + 1 + line as u16;
        let cell = Rect::new(trend.x, y, trend.width, 1).intersection(inner);
        draw_sparkline(frame, cell, &r.history.throughput, c);
    }
}

/// The last `area.width` throughput points, scaled to the agent's own peak so each row
/// shows its shape (a lost agent's drop to zero included).
fn draw_sparkline(frame: &mut Frame, area: Rect, ring: &Ring, c: &Palette) {
    let points: Vec<u64> = ring
        .iter()
        .rev()
        .take(area.width as usize)
        .rev()
        .map(|p| p.1.max(0.0).round() as u64)
        .collect();
    // An all-zero series would be drawn full height with a zero maximum.
    let peak = points.iter().copied().max().unwrap_or(0).max(1);
    frame.render_widget(
        Sparkline::default()
            .data(points)
            .max(peak)
            .style(Style::new().fg(c.throughput)),
        area,
    );
}

fn draw_logs(frame: &mut Frame, area: Rect, s: &TuiState, c: &Palette) {
    draw_log_lines(frame, area, s, c, block(" log · l enlarges ", c), 0);
}

/// `l`: the log over the charts, scrolled back `s.log_scroll` lines from the newest.
fn draw_log_overlay(frame: &mut Frame, area: Rect, s: &TuiState, c: &Palette) {
    let title = if s.log_scroll > 0 {
        format!(
            " log · {} lines back · ↑↓ PgUp PgDn Home End scroll · l closes ",
            s.log_scroll
        )
    } else {
        " log · ↑↓ PgUp PgDn Home End scroll · l closes ".to_owned()
    };
    draw_log_lines(frame, area, s, c, block(title, c), s.log_scroll);
}

fn draw_log_lines(
    frame: &mut Frame,
    area: Rect,
    s: &TuiState,
    c: &Palette,
    outer: Block,
    back: usize,
) {
    let height = outer.inner(area).height as usize;
    // Scrolled back at most to a full first page.
    let back = back.min(s.logs.len().saturating_sub(height));
    let end = s.logs.len().saturating_sub(back);
    let lines: Vec<Line> = s
        .logs
        .iter()
        .take(end)
        .skip(end.saturating_sub(height))
        .map(|l| {
            let colour = match l.level.as_str() {
                "error" => c.fail,
                "warn" => c.warn,
                _ => c.dim,
            };
            Line::from(vec![
                Span::styled(format!("{:<5} ", l.level), Style::new().fg(colour)),
                Span::raw(l.message.clone()),
            ])
        })
        .collect();
    frame.render_widget(Paragraph::new(lines).block(outer), area);
}

fn draw_footer(frame: &mut Frame, area: Rect, s: &TuiState, theme: &Theme) {
    let c = &theme.colors;
    let key = Style::new().fg(c.accent).bold();
    let dim = Style::new().fg(c.dim);
    let mut spans = Vec::new();
    if let Some(i) = s.inspected {
        // First, so a narrow screen keeps it: the charts are not the live ones.
        spans.push(Span::styled(" Esc ", key));
        spans.push(Span::styled(
            format!("back (showing workload {}, final)", i + 1),
            Style::new().fg(c.warn),
        ));
    }
    let q = if s.phase.is_over() {
        "quit"
    } else {
        "quit (asks to stop)"
    };
    let select = if s.distributed { "agent" } else { "source" };
    for (k, what) in [
        ("s", "stop"),
        ("q", q),
        ("←→", s.view.title()),
        ("Tab", select),
        ("t", theme.name.as_str()),
        ("?", "help"),
    ] {
        spans.push(Span::styled(format!(" {k} "), key));
        spans.push(Span::styled(what.to_owned(), dim));
    }
    if let Some(n) = &s.notice {
        spans.push(Span::styled(format!("  {n}"), Style::new().fg(c.warn)));
    }
    if s.dropped_sources > 0 {
        spans.push(Span::styled(
            format!("  {} sources over the limit not shown", s.dropped_sources),
            Style::new().fg(c.warn),
        ));
    }
    frame.render_widget(Line::from(spans), area);
}

/// A `w`×`h` rectangle centred in `area`, shrunk to fit.
fn centred(area: Rect, w: u16, h: u16) -> Rect {
    let w = w.min(area.width);
    let h = h.min(area.height);
    Rect::new(
        area.x + (area.width - w) / 2,
        area.y + (area.height - h) / 2,
        w,
        h,
    )
}

/// `w`: every workload of the task, with its state and, once finished, its figures and
/// verdict; Enter shows a finished one's statistics again.
fn draw_workloads(frame: &mut Frame, area: Rect, s: &TuiState, c: &Palette) {
    let current = s.workload.as_ref().map(|w| w.index);
    let rows = s.workloads.iter().map(|w| {
        let report = s.finished_report(w.index);
        let (state, style) = match (report, Some(w.index) == current) {
            (Some(r), _) if r.pass_sla => ("done", Style::new().fg(c.pass)),
            (Some(_), _) => ("done", Style::new().fg(c.fail)),
            (None, true) => (s.phase.label(), phase_style(&s.phase, c)),
            (None, false) => ("pending", Style::new().fg(c.dim)),
        };
        let (iterations, failures, duration, verdict_cell) = match report {
            Some(r) => (
                count(r.iterations),
                count(r.failures),
                clock(r.load_duration),
                Cell::from(verdict(r.pass_sla, c)),
            ),
            None if Some(w.index) == current => (
                count(s.all.iterations),
                count(s.all.failures),
                clock(s.elapsed),
                Cell::from(""),
            ),
            None => (String::new(), String::new(), String::new(), Cell::from("")),
        };
        let mut row = Row::new(vec![
            Cell::from(format!("{}", w.index + 1)),
            Cell::from(w.subtask.clone()),
            Cell::from(w.scenario.clone()),
            Cell::from(w.runner.clone()),
            Cell::from(Span::styled(state, style)),
            Cell::from(iterations),
            Cell::from(failures),
            Cell::from(duration),
            verdict_cell,
        ]);
        if w.index == s.workload_cursor {
            row = row.style(Style::new().bg(c.highlight));
        }
        row
    });
    let widths = [
        Constraint::Length(3),
        Constraint::Fill(2),
        Constraint::Fill(2),
        Constraint::Fill(3),
        Constraint::Length(9),
        Constraint::Length(6),
        Constraint::Length(6),
        Constraint::Length(7),
        Constraint::Length(4),
    ];
    let header = Row::new(vec![
        "#", "title", "scenario", "runner", "state", "iter", "fail", "time", "SLA",
    ])
    .style(Style::new().fg(c.dim));
    let table = Table::new(rows, widths).header(header).block(block(
        " workloads · ↑↓ select · Enter shows a finished one · w closes ",
        c,
    ));
    frame.render_widget(table, area);
}

/// Which workload the statistics and errors panels speak of.
fn shown_title(s: &TuiState, what: &str, index: usize) -> String {
    let count = s.workloads.len().max(1);
    let done = s.finished_report(index).is_some();
    format!(
        " {what} · workload {}/{count}{} ",
        index + 1,
        if done { " (final)" } else { " (so far)" }
    )
}

/// `e`: errors by type and message, with counts, for all agents.
fn draw_errors(frame: &mut Frame, area: Rect, s: &TuiState, c: &Palette) {
    let Some((index, _, errors)) = s.shown_statistics() else {
        frame.render_widget(
            Paragraph::new(" no figures yet").block(block(" errors · e closes ", c)),
            area,
        );
        return;
    };
    // With agents, the selected one's errors beside everyone's.
    let selected = s
        .selected_source()
        .filter(|_| s.inspected.is_none() && (s.distributed || s.sources.len() > 1));
    let area = match selected {
        Some(src) => {
            let [all, mine] =
                Layout::horizontal([Constraint::Fill(1), Constraint::Fill(1)]).areas(area);
            let theirs = s
                .live
                .as_ref()
                .and_then(|l| l.by_source.iter().find(|(n, _)| *n == src.name))
                .map_or(&[][..], |(_, e)| e.as_slice());
            error_table(frame, mine, c, format!(" errors · {} ", src.name), theirs);
            all
        }
        None => area,
    };
    let title = format!("{}· all · e closes ", shown_title(s, "errors", index));
    error_table(frame, area, c, title, errors);
}

fn error_table(
    frame: &mut Frame,
    area: Rect,
    c: &Palette,
    title: String,
    errors: &[crate::stats::ErrorCount],
) {
    if errors.is_empty() {
        frame.render_widget(
            Paragraph::new(Span::styled(" no errors", Style::new().fg(c.pass)))
                .block(block(title, c)),
            area,
        );
        return;
    }
    let rows = errors.iter().map(|e| {
        Row::new(vec![
            Cell::from(count(e.count)),
            Cell::from(Span::styled(e.etype.clone(), Style::new().fg(c.fail))),
            Cell::from(e.message.replace('\n', " ")),
        ])
    });
    let widths = [
        Constraint::Length(8),
        Constraint::Length(24),
        Constraint::Fill(1),
    ];
    let table = Table::new(rows, widths)
        .header(Row::new(vec!["count", "type", "message"]).style(Style::new().fg(c.dim)))
        .block(block(title, c));
    frame.render_widget(table, area);
}

/// `v`: Rally's Response Times table, atomic actions indented under their parents.
fn draw_statistics(frame: &mut Frame, area: Rect, s: &TuiState, c: &Palette) {
    let Some((index, table, _)) = s.shown_statistics() else {
        frame.render_widget(
            Paragraph::new(" no figures yet").block(block(" Response Times · v closes ", c)),
            area,
        );
        return;
    };
    fn rows<'a>(r: &crate::stats::StatsRow, depth: usize, out: &mut Vec<Row<'a>>) {
        let cell =
            |v: Option<f64>| Cell::from(v.map_or_else(|| "n/a".to_owned(), |v| format!("{v:.3}")));
        out.push(Row::new(vec![
            Cell::from(format!("{}{}", "  ".repeat(depth), r.name)),
            cell(r.min),
            cell(r.median),
            cell(r.p90),
            cell(r.p95),
            cell(r.max),
            cell(r.avg),
            Cell::from(
                r.success
                    .map_or_else(|| "n/a".to_owned(), |p| format!("{p:.1}%")),
            ),
            Cell::from(r.count.to_string()),
        ]));
        for child in &r.children {
            rows(child, depth + 1, out);
        }
    }
    let mut body = Vec::new();
    for a in &table.atomics {
        rows(a, 0, &mut body);
    }
    rows(&table.total, 0, &mut body);
    let widths = [
        Constraint::Fill(1),
        Constraint::Length(7),
        Constraint::Length(7),
        Constraint::Length(7),
        Constraint::Length(7),
        Constraint::Length(7),
        Constraint::Length(7),
        Constraint::Length(7),
        Constraint::Length(7),
    ];
    let header = Row::new(vec![
        "action", "min", "median", "90%ile", "95%ile", "max", "avg", "success", "count",
    ])
    .style(Style::new().fg(c.dim));
    let title = format!(
        "{}· seconds · v closes ",
        shown_title(s, "Response Times", index)
    );
    frame.render_widget(
        Table::new(body, widths)
            .header(header)
            .block(block(title, c)),
        area,
    );
}

fn draw_help(frame: &mut Frame, area: Rect, c: &Palette) {
    let key = Style::new().fg(c.accent).bold();
    let lines: Vec<Line> = [
        ("s", "stop the run on every agent (asks first)"),
        ("y / s", "confirm the stop; in-flight iterations finish"),
        ("n / Esc", "cancel the stop"),
        ("Ctrl-C", "stop at once (no question); again: leave now"),
        ("Tab ↓ / ⇧Tab ↑", "select the next / previous agent"),
        ("PgDn PgUp Home End", "move the selection faster"),
        ("← →", "throughput / latency / failure-rate charts"),
        ("w", "every workload: state, figures, verdict"),
        ("e", "errors with counts"),
        ("v", "Response Times table (Rally's statistics)"),
        ("l", "the log, enlarged and scrollable"),
        ("t", "next colour theme"),
        ("?", "this help (Esc closes)"),
        ("q", "quit once the task is over (asks to stop before)"),
    ]
    .into_iter()
    .map(|(k, what)| Line::from(vec![Span::styled(format!("{k:>18}  "), key), what.into()]))
    .collect();
    let popup = centred(area, 76, lines.len() as u16 + 2);
    frame.render_widget(Clear, popup);
    frame.render_widget(
        Paragraph::new(lines)
            .style(Style::new().fg(c.text))
            .block(block(" keys ", c)),
        popup,
    );
}

/// `q` while stopping: leave without waiting for in-flight iterations?
fn draw_confirm_leave(frame: &mut Frame, area: Rect, c: &Palette) {
    let popup = centred(area, 56, 6);
    frame.render_widget(Clear, popup);
    let key = Style::new().fg(c.accent).bold();
    let text = vec![
        Line::styled("Leave now?", Style::new().fg(c.warn).bold()),
        Line::from("In-flight iterations are abandoned; the rest is stored."),
        Line::from(vec![
            Span::styled("y", key),
            " leave now    ".into(),
            Span::styled("n", key),
            " / ".into(),
            Span::styled("Esc", key),
            " wait for them".into(),
        ]),
    ];
    frame.render_widget(
        Paragraph::new(text)
            .alignment(Alignment::Center)
            .wrap(Wrap { trim: true })
            .style(Style::new().fg(c.text))
            .block(block(" leave ", c).border_style(Style::new().fg(c.warn))),
        popup,
    );
}

fn draw_confirm(frame: &mut Frame, area: Rect, s: &TuiState, c: &Palette) {
    let popup = centred(area, 50, 6);
    frame.render_widget(Clear, popup);
    let key = Style::new().fg(c.accent).bold();
    let whom = match s.agents_alive() {
        Some((alive, _)) => format!("Stop the run on {alive} agents?"),
        None => "Stop the run?".to_owned(),
    };
    let text = vec![
        Line::styled(whom, Style::new().fg(c.warn).bold()),
        Line::from("In-flight iterations finish; results are kept."),
        Line::from(vec![
            Span::styled("y", key),
            " / ".into(),
            Span::styled("s", key),
            " stop    ".into(),
            Span::styled("n", key),
            " / ".into(),
            Span::styled("Esc", key),
            " keep running".into(),
        ]),
    ];
    frame.render_widget(
        Paragraph::new(text)
            .alignment(Alignment::Center)
            .wrap(Wrap { trim: true })
            .style(Style::new().fg(c.text))
            .block(block(" stop ", c).border_style(Style::new().fg(c.warn))),
        popup,
    );
}

/// Short labels (at most 10 characters), so the SLA panel fits next to the agent table at
/// 80 columns; the values carry the unit.
fn short_criterion(name: &str) -> &str {
    match name {
        "failure_rate" => "fail rate",
        "max_seconds_per_iteration" => "max iter",
        "max_avg_duration" => "avg iter",
        "max_avg_duration_per_atomic" => "avg atomic",
        "max_percentile" => "percentile",
        "performance_degradation" => "degrade",
        ABORTED_ON_SLA => "SLA abort",
        ABORTED_MANUALLY => "aborted",
        SOMETHING_WENT_WRONG => "crashed",
        other => other,
    }
}

/// Display width of a short, single-line string.
fn width(s: &str) -> u16 {
    s.chars().count().min(u16::MAX as usize) as u16
}

/// `h:mm:ss` (or `m:ss`) of a duration in seconds.
fn clock(seconds: f64) -> String {
    let t = if seconds.is_finite() {
        seconds.max(0.0) as u64
    } else {
        0
    };
    let (h, m, s) = (t / 3600, t / 60 % 60, t % 60);
    if h > 0 {
        format!("{h}:{m:02}:{s:02}")
    } else {
        format!("{m}:{s:02}")
    }
}

/// A figure in at most ~5 characters (3 significant digits, k/M suffixes).
fn num(v: f64) -> String {
    // Judged on the rounded value, as `dur`: 9.996 is `10.0`, not `10.00`.
    let rounded = |decimals: i32| {
        let scale = 10f64.powi(decimals);
        (v.abs() * scale).round() / scale
    };
    let a = v.abs();
    if !v.is_finite() {
        "-".into()
    } else if (a / 1e3).round() >= 1000.0 {
        format!("{:.1}M", v / 1e6)
    } else if rounded(0) >= 1e4 {
        format!("{:.0}k", v / 1e3)
    } else if rounded(1) >= 100.0 {
        format!("{v:.0}")
    } else if rounded(2) >= 10.0 {
        format!("{v:.1}")
    } else if a >= 0.01 || a == 0.0 {
        format!("{v:.2}")
    } else {
        format!("{v:.4}")
    }
}

/// A duration in at most 6 characters, in the unit that keeps 3 digits: `250µs`,
/// `12.3ms`, `1.25s`.
fn dur(v: f64) -> String {
    // Each unit is judged on the value as it will be rounded, so 0.09996 s is `100ms`, not
    // `100.0ms`: figures keep their column width at the boundaries.
    let rounds_below = |x: f64, decimals: i32, limit: f64| {
        let scale = 10f64.powi(decimals);
        (x.abs() * scale).round() / scale < limit
    };
    if !v.is_finite() {
        "-".into()
    } else if v == 0.0 {
        "0s".into()
    } else if rounds_below(v * 1e6, 0, 1000.0) {
        format!("{:.0}µs", v * 1e6)
    } else if rounds_below(v * 1e3, 2, 10.0) {
        format!("{:.2}ms", v * 1e3)
    } else if rounds_below(v * 1e3, 1, 100.0) {
        format!("{:.1}ms", v * 1e3)
    } else if rounds_below(v * 1e3, 0, 1000.0) {
        format!("{:.0}ms", v * 1e3)
    } else {
        format!("{}s", num(v))
    }
}

/// A clock offset: always signed, so "ahead" and "behind" read at a glance.
fn signed_dur(v: f64) -> String {
    if v < 0.0 {
        format!("-{}", dur(-v))
    } else {
        format!("+{}", dur(v))
    }
}

/// A heartbeat age in at most 4 characters.
fn short_age(v: f64) -> String {
    if v < 10.0 {
        format!("{v:.1}s")
    } else if v < 1000.0 {
        format!("{v:.0}s")
    } else {
        "old".into()
    }
}

/// A percentage in at most 6 characters.
fn pct(v: f64) -> String {
    let a = v.abs();
    if !v.is_finite() {
        "-".into()
    } else if a >= 99.995 || a == 0.0 {
        format!("{v:.0}%")
    } else if a >= 10.0 {
        format!("{v:.1}%")
    } else {
        format!("{v:.2}%")
    }
}

fn count(n: u64) -> String {
    if n >= 1_000_000 {
        format!("{:.1}M", n as f64 / 1e6)
    } else if n >= 100_000 {
        format!("{}k", n / 1000)
    } else {
        n.to_string()
    }
}

fn secs(v: Option<f64>) -> String {
    v.map_or_else(|| "-".into(), dur)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_fit() {
        assert_eq!(clock(3725.9), "1:02:05");
        assert_eq!(clock(65.0), "1:05");
        assert_eq!(clock(f64::NAN), "0:00");
        assert_eq!(num(0.0), "0.00");
        assert_eq!(num(0.1234), "0.12");
        assert_eq!(num(0.001234), "0.0012");
        assert_eq!(num(12.34), "12.3");
        assert_eq!(num(123_456.0), "123k");
        assert_eq!(num(f64::NAN), "-");
        assert_eq!(count(1_234_567), "1.2M");
        assert_eq!(secs(None), "-");
        assert_eq!(dur(0.000_25), "250µs");
        assert_eq!(dur(0.001_234), "1.23ms");
        assert_eq!(dur(0.0123), "12.3ms");
        assert_eq!(dur(0.25), "250ms");
        assert_eq!(dur(1.25), "1.25s");
        assert_eq!(dur(0.0), "0s");
        assert_eq!(signed_dur(-0.0015), "-1.50ms");
        assert_eq!(signed_dur(0.0), "+0s");
        assert_eq!(pct(0.0), "0%");
        assert_eq!(pct(1.984), "1.98%");
        assert_eq!(pct(12.34), "12.3%");
        assert_eq!(pct(100.0), "100%");
        assert_eq!(short_age(0.31), "0.3s");
        assert_eq!(short_age(42.0), "42s");
    }

    /// At a unit's boundary the rounded value picks the unit, so widths stay put.
    #[test]
    fn formats_keep_their_width_at_rounding_boundaries() {
        assert_eq!(dur(0.099_96), "100ms");
        assert_eq!(dur(0.009_996), "10.0ms");
        assert_eq!(dur(0.000_999_7), "1.00ms");
        assert_eq!(dur(0.999_7), "1.00s");
        assert_eq!(num(9.996), "10.0");
        assert_eq!(num(99.96), "100");
        assert_eq!(num(9_999.7), "10k");
        assert_eq!(num(999_700.0), "1.0M");
        for v in [0.0999, 0.099_96, 0.1, 0.009_96, 0.0101] {
            assert!(dur(v).chars().count() <= 6, "{v}: {}", dur(v));
        }
    }

    #[test]
    fn real_criteria_at_zero_show_their_value() {
        // The bug of issue #6: a passing failure rate of 0 % with `max: 0` was blank.
        assert_eq!(criterion_value("failure_rate", 0.0), "0%");
        assert_eq!(criterion_value("max_percentile", 0.0), "0s");
        assert_eq!(criterion_value("outliers", 0.0), "0");
        assert_eq!(criterion_value(ABORTED_ON_SLA, 0.0), "");
        assert_eq!(criterion_value(SOMETHING_WENT_WRONG, 0.0), "");
    }

    #[test]
    fn centred_never_exceeds_area() {
        let r = centred(Rect::new(0, 0, 10, 4), 48, 6);
        assert_eq!(r, Rect::new(0, 0, 10, 4));
    }
}
