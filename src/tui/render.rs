//! Draws a [`TuiState`] with a [`Theme`] (SPEC §7 layout).
//!
//! Pure: everything on screen comes from the state (times from events, never a clock), so
//! the snapshot tests in `render_tests` pin whole screens. Every size from 80×24 up gets the
//! full layout; smaller terminals get what fits, and nothing indexes the buffer directly, so
//! no size can panic.

use ratatui::Frame;
use ratatui::layout::{Alignment, Constraint, Flex, Layout, Rect};
use ratatui::style::{Modifier, Style};
use ratatui::symbols::Marker;
use ratatui::text::{Line, Span};
use ratatui::widgets::{
    Axis, Block, Borders, Cell, Chart, Clear, Dataset, Gauge, GraphType, LegendPosition, Paragraph,
    Row, Sparkline, Table, Wrap,
};

use super::state::{History, Phase, Ring, TuiState, View};
use super::theme::{Palette, Theme};
use crate::sla::CriterionStatus;

/// Criteria whose limit is a duration in seconds, drawn on the latency chart.
const LATENCY_CRITERIA: [&str; 3] = [
    "max_percentile",
    "max_seconds_per_iteration",
    "max_avg_duration",
];
/// Criterion whose limit is a failure percentage, drawn on the failure-rate chart.
const FAILURE_CRITERION: &str = "failure_rate";
/// Width of the SLA panel next to the source table.
const SLA_WIDTH: u16 = 32;
/// Table width from which the agent columns (host, state, heartbeat, offset) are shown.
const WIDE_TABLE: u16 = 90;

/// Draws the whole screen, then the help overlay or the stop confirmation over it.
pub fn draw(frame: &mut Frame, state: &TuiState, theme: &Theme) {
    let c = &theme.colors;
    let area = frame.area();
    frame.render_widget(Block::new().style(Style::new().fg(c.text)), area);
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
    draw_charts(frame, charts, state, c);
    let [sla, sources] =
        Layout::horizontal([Constraint::Length(SLA_WIDTH), Constraint::Fill(1)]).areas(tables);
    draw_sla(frame, sla, state, c);
    draw_sources(frame, sources, state, c);
    draw_logs(frame, logs, state, c);
    draw_footer(frame, footer, state, theme);
    if state.show_help {
        draw_help(frame, area, c);
    } else if state.confirm_stop {
        draw_confirm(frame, area, c);
    }
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

fn draw_header(frame: &mut Frame, area: Rect, s: &TuiState, c: &Palette) {
    let [top, info, gauge] = Layout::vertical([Constraint::Length(1); 3]).areas(area);
    let dim = Style::new().fg(c.dim);
    let title = if s.title.is_empty() {
        "(no task yet)"
    } else {
        &s.title
    };
    let mut state_label = format!(" {} ", s.phase.label().to_uppercase());
    if let Phase::Stopping { reason } = &s.phase {
        state_label = format!(" STOPPING: {reason} ");
    }
    let [left, right] = Layout::horizontal([
        Constraint::Fill(1),
        Constraint::Length(state_label.chars().count() as u16),
    ])
    .areas(top);
    frame.render_widget(
        Line::from(vec![
            Span::styled(" rally-tui ", Style::new().fg(c.accent).bold()),
            Span::styled(title.to_owned(), Style::new().bold()),
            Span::styled(format!("  {}", s.uuid), dim),
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

    // Labels only where the value alone is ambiguous, so the line fits 80 columns.
    let sep = || Span::styled(" · ", dim);
    let mut spans = vec![Span::raw(" ")];
    match &s.workload {
        Some(w) => spans.extend([
            Span::styled("workload ", dim),
            Span::raw(format!("{}/{}", w.index + 1, w.count)),
            sep(),
            Span::raw(w.scenario.clone()),
            sep(),
            Span::raw(w.runner.clone()),
            sep(),
        ]),
        None => spans.extend([
            Span::styled("workload ", dim),
            Span::raw(format!("-/{}", s.workloads.len())),
            sep(),
        ]),
    }
    spans.extend([
        Span::raw(clock(s.elapsed)),
        sep(),
        Span::raw(format!("{} it/s", num(s.all.rate))),
        sep(),
        Span::styled("p95 ", dim),
        Span::raw(secs(s.all.p95_total)),
        sep(),
        Span::styled("fail ", dim),
        Span::raw(count(s.all.failures)),
    ]);
    frame.render_widget(Line::from(spans), info);

    let done = s.all.iterations;
    let (ratio, label) = match s.total {
        Some(total) if total > 0 => {
            let r = (done as f64 / total as f64).clamp(0.0, 1.0);
            (r, format!("{done}/{total} iterations ({:.0}%)", r * 100.0))
        }
        _ => (0.0, format!("{done} iterations (no fixed total)")),
    };
    frame.render_widget(
        Gauge::default()
            .gauge_style(Style::new().fg(c.gauge))
            .ratio(ratio)
            .label(Span::styled(label, Style::new().fg(c.text).bold())),
        gauge,
    );
}

fn draw_charts(frame: &mut Frame, area: Rect, s: &TuiState, c: &Palette) {
    let [all, one] = Layout::horizontal([Constraint::Fill(1); 2]).areas(area);
    chart(frame, all, "all sources", &s.history, &s.sla, s.view, c);
    match s.selected_source() {
        Some(src) => chart(frame, one, &src.name, &src.history, &src.sla, s.view, c),
        None => frame.render_widget(
            Paragraph::new("no sources yet")
                .style(Style::new().fg(c.dim))
                .block(block(format!(" source · {} ", s.view.title()), c)),
            one,
        ),
    }
}

/// One time-series chart of `view`, with each applicable SLA limit as a horizontal line.
fn chart(
    frame: &mut Frame,
    area: Rect,
    who: &str,
    h: &History,
    sla: &[CriterionStatus],
    view: View,
    c: &Palette,
) {
    let series: Vec<(&str, &Ring, ratatui::style::Color)> = match view {
        View::Throughput => vec![("it/s", &h.throughput, c.throughput)],
        View::Latency => vec![
            ("p50", &h.p50, c.p50),
            ("p95", &h.p95, c.p95),
            ("p99", &h.p99, c.p99),
            ("max", &h.max, c.max),
        ],
        View::Failures => vec![("fail %", &h.failure_rate, c.failures)],
    };
    let limits: Vec<&CriterionStatus> = sla
        .iter()
        .filter(|r| r.limit > 0.0)
        .filter(|r| match view {
            View::Throughput => false,
            View::Latency => LATENCY_CRITERIA.contains(&r.criterion.as_str()),
            View::Failures => r.criterion == FAILURE_CRITERION,
        })
        .collect();

    let data: Vec<Vec<(f64, f64)>> = series.iter().map(|(_, r, _)| r.to_vec()).collect();
    let xs = data.iter().flatten().map(|p| p.0);
    let x0 = xs.clone().fold(f64::INFINITY, f64::min);
    let x1 = xs.fold(f64::NEG_INFINITY, f64::max);
    let (x0, x1) = if x0.is_finite() {
        (x0, x1.max(x0 + 1.0))
    } else {
        (0.0, 1.0)
    };
    let ys = data.iter().flatten().map(|p| p.1);
    let y_top = ys
        .chain(limits.iter().map(|r| r.limit))
        .fold(0.0_f64, f64::max);
    let y1 = if y_top > 0.0 { y_top * 1.1 } else { 1.0 };
    let limit_lines: Vec<[(f64, f64); 2]> = limits
        .iter()
        .map(|r| [(x0, r.limit), (x1, r.limit)])
        .collect();

    let mut datasets: Vec<Dataset> = series
        .iter()
        .zip(&data)
        .map(|((name, _, colour), points)| {
            Dataset::default()
                .name(*name)
                .marker(Marker::Braille)
                .graph_type(GraphType::Line)
                .style(Style::new().fg(*colour))
                .data(points)
        })
        .collect();
    for (row, line) in limits.iter().zip(&limit_lines) {
        datasets.push(
            Dataset::default()
                .name(format!("SLA {}", short_criterion(&row.criterion)))
                .marker(Marker::Dot)
                .graph_type(GraphType::Line)
                .style(Style::new().fg(c.limit))
                .data(line),
        );
    }
    let dim = Style::new().fg(c.dim);
    let chart = Chart::new(datasets)
        .block(block(format!(" {who} · {} ", view.title()), c))
        .legend_position(Some(LegendPosition::TopLeft))
        .hidden_legend_constraints((Constraint::Ratio(1, 2), Constraint::Ratio(1, 2)))
        .x_axis(
            Axis::default()
                .style(dim)
                .bounds([x0, x1])
                .labels([format!("{x0:.0}s"), format!("{x1:.0}s")]),
        )
        .y_axis(Axis::default().style(dim).bounds([0.0, y1]).labels([
            "0".to_owned(),
            num(y1 / 2.0),
            num(y1),
        ]));
    frame.render_widget(chart, area);
}

fn draw_sla(frame: &mut Frame, area: Rect, s: &TuiState, c: &Palette) {
    let failed = s.sla.iter().filter(|r| !r.success).count();
    let title = match (s.sla.is_empty(), failed) {
        (true, _) => Line::from(" SLA "),
        (false, 0) => Line::from(vec![" SLA ".into(), Span::styled("PASS ", c.pass)]),
        (false, n) => Line::from(vec![
            " SLA ".into(),
            Span::styled(format!("{n} FAIL "), c.fail),
        ]),
    };
    let rows = s.sla.iter().map(|r| {
        let (word, colour) = if r.success {
            ("PASS", c.pass)
        } else {
            ("FAIL", c.fail)
        };
        let pseudo = r.value == 0.0 && r.limit == 0.0;
        Row::new([
            Cell::from(short_criterion(&r.criterion)),
            Cell::from(if pseudo { String::new() } else { num(r.value) }),
            Cell::from(if pseudo { String::new() } else { num(r.limit) }),
            Cell::from(Span::styled(word, Style::new().fg(colour).bold())),
        ])
    });
    let table = Table::new(
        rows,
        [
            Constraint::Fill(1),
            Constraint::Length(6),
            Constraint::Length(6),
            Constraint::Length(4),
        ],
    )
    .header(Row::new(["criterion", "value", "limit", ""]).style(Style::new().fg(c.dim)))
    .block(block(title, c));
    frame.render_widget(table, area);
}

fn draw_sources(frame: &mut Frame, area: Rect, s: &TuiState, c: &Palette) {
    let outer = block(format!(" sources ({}) · Tab selects ", s.sources.len()), c);
    let inner = outer.inner(area);
    frame.render_widget(outer, area);
    let wide = inner.width >= WIDE_TABLE;
    let name_width = s
        .sources
        .iter()
        .map(|r| r.name.chars().count())
        .max()
        .unwrap_or(4)
        .clamp(4, 16) as u16
        + 1;
    let mut widths = vec![
        Constraint::Length(name_width),
        Constraint::Length(7),
        Constraint::Length(7),
        Constraint::Length(6),
        Constraint::Length(5),
    ];
    let mut header = vec!["name", "iter", "it/s", "p95", "fail"];
    if wide {
        widths.extend([
            Constraint::Length(14),
            Constraint::Length(8),
            Constraint::Length(5),
            Constraint::Length(7),
        ]);
        header.extend(["host", "state", "hb", "offset"]);
    }
    widths.push(Constraint::Fill(1));
    header.push("trend");

    // Scroll by hand so the selected row stays visible and the sparklines line up.
    let visible = inner.height.saturating_sub(1) as usize;
    let offset = (s.selected + 1).saturating_sub(visible.max(1));
    let shown = s.sources.iter().enumerate().skip(offset).take(visible);
    let rows: Vec<Row> = shown
        .clone()
        .map(|(i, r)| {
            let failing = r.sla.iter().any(|x| !x.success);
            let mut cells = vec![
                // A marker as well as the highlight, for terminals (and readers) without colour.
                Cell::from(Span::styled(
                    format!("{}{}", if i == s.selected { "›" } else { " " }, r.name),
                    if failing {
                        Style::new().fg(c.fail)
                    } else {
                        Style::new()
                    },
                )),
                Cell::from(count(r.iterations)),
                Cell::from(num(r.rate)),
                Cell::from(secs(r.p95)),
                Cell::from(Span::styled(
                    count(r.failures),
                    if r.failures > 0 {
                        Style::new().fg(c.fail)
                    } else {
                        Style::new()
                    },
                )),
            ];
            if wide {
                cells.extend([
                    Cell::from(r.host.clone().unwrap_or_else(|| "-".into())),
                    Cell::from(r.state.clone().unwrap_or_else(|| "-".into())),
                    Cell::from(r.heartbeat_age.map_or("-".into(), |a| format!("{a:.0}s"))),
                    Cell::from(
                        r.clock_offset
                            .map_or("-".into(), |o| format!("{:+.0}ms", o * 1e3)),
                    ),
                ]);
            }
            cells.push(Cell::from(""));
            let row = Row::new(cells);
            if i == s.selected {
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

    // The last column's rectangle, computed as the table lays it out.
    let columns = Layout::horizontal(widths)
        .flex(Flex::Start)
        .spacing(1)
        .split(inner);
    let Some(trend) = columns.last().copied() else {
        return;
    };
    for (line, (_, r)) in shown.enumerate() {
        let y = inner.y + 1 + line as u16;
        let cell = Rect::new(trend.x, y, trend.width, 1).intersection(inner);
        let points: Vec<u64> = r
            .history
            .throughput
            .iter()
            .rev()
            .take(cell.width as usize)
            .rev()
            .map(|p| p.1.max(0.0).round() as u64)
            .collect();
        frame.render_widget(
            Sparkline::default()
                .data(points)
                .style(Style::new().fg(c.throughput)),
            cell,
        );
    }
}

fn draw_logs(frame: &mut Frame, area: Rect, s: &TuiState, c: &Palette) {
    let outer = block(" log ", c);
    let height = outer.inner(area).height as usize;
    let lines: Vec<Line> = s
        .logs
        .iter()
        .skip(s.logs.len().saturating_sub(height))
        .map(|l| {
            let colour = match l.level.to_ascii_lowercase().as_str() {
                "error" => c.fail,
                "warn" | "warning" => c.warn,
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
    let quit = if s.phase.is_over() { "quit" } else { "stop" };
    for (k, what) in [
        ("s", "stop"),
        ("q", quit),
        ("←→", s.view.title()),
        ("Tab", "source"),
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

fn draw_help(frame: &mut Frame, area: Rect, c: &Palette) {
    let key = Style::new().fg(c.accent).bold();
    let lines: Vec<Line> = [
        (
            "s",
            "stop the run (asks first; in-flight iterations finish)",
        ),
        ("y / s", "confirm the stop"),
        ("n / Esc", "cancel the stop"),
        ("Tab ↓ / ⇧Tab ↑", "select the next / previous source"),
        ("← →", "throughput / latency / failure-rate charts"),
        ("t", "next colour theme"),
        ("?", "this help (Esc closes)"),
        ("q", "quit once the task is over"),
    ]
    .into_iter()
    .map(|(k, what)| Line::from(vec![Span::styled(format!("{k:>15}  "), key), what.into()]))
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

fn draw_confirm(frame: &mut Frame, area: Rect, c: &Palette) {
    let popup = centred(area, 48, 6);
    frame.render_widget(Clear, popup);
    let key = Style::new().fg(c.accent).bold();
    let text = vec![
        Line::styled("Stop the run?", Style::new().fg(c.warn).bold()),
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

/// Short labels, so the SLA panel fits next to the source table at 80 columns.
fn short_criterion(name: &str) -> &str {
    match name {
        "failure_rate" => "failure %",
        "max_seconds_per_iteration" => "max s/iter",
        "max_avg_duration" => "avg s",
        "max_avg_duration_per_atomic" => "avg s/atomic",
        "max_percentile" => "percentile s",
        "performance_degradation" => "degradation %",
        "aborted_on_sla" => "aborted (SLA)",
        "aborted_manually" => "aborted",
        "something_went_wrong" => "crashed",
        other => other,
    }
}

/// `h:mm:ss` (or `m:ss`) of a duration in seconds.
fn clock(seconds: f64) -> String {
    let t = seconds.max(0.0) as u64;
    let (h, m, s) = (t / 3600, t / 60 % 60, t % 60);
    if h > 0 {
        format!("{h}:{m:02}:{s:02}")
    } else {
        format!("{m}:{s:02}")
    }
}

/// A figure in at most ~5 characters (3 significant digits, k/M suffixes).
fn num(v: f64) -> String {
    let a = v.abs();
    if !v.is_finite() {
        "-".into()
    } else if a >= 1e6 {
        format!("{:.1}M", v / 1e6)
    } else if a >= 1e4 {
        format!("{:.0}k", v / 1e3)
    } else if a >= 100.0 {
        format!("{v:.0}")
    } else if a >= 10.0 {
        format!("{v:.1}")
    } else if a >= 0.01 || a == 0.0 {
        format!("{v:.2}")
    } else {
        format!("{v:.4}")
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
    v.map_or_else(|| "-".into(), |v| format!("{}s", num(v)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_fit() {
        assert_eq!(clock(3725.9), "1:02:05");
        assert_eq!(clock(65.0), "1:05");
        assert_eq!(num(0.0), "0.00");
        assert_eq!(num(0.1234), "0.12");
        assert_eq!(num(0.001234), "0.0012");
        assert_eq!(num(12.34), "12.3");
        assert_eq!(num(123_456.0), "123k");
        assert_eq!(num(f64::NAN), "-");
        assert_eq!(count(1_234_567), "1.2M");
        assert_eq!(secs(None), "-");
    }

    #[test]
    fn centred_never_exceeds_area() {
        let r = centred(Rect::new(0, 0, 10, 4), 48, 6);
        assert_eq!(r, Rect::new(0, 0, 10, 4));
    }
}
