//! The header: task title and state, the run's figures, and the progress gauge.

use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::Gauge;

use super::format::{clock, count, num, pct, secs, width};
use super::phase_style;
use crate::tui::state::{Phase, TuiState};
use crate::tui::theme::Palette;

pub(super) fn draw_header(frame: &mut Frame, area: Rect, s: &TuiState, c: &Palette) {
    let [top, info, gauge] = Layout::vertical([Constraint::Length(1); 3]).areas(area);
    draw_title_line(frame, top, s, c);
    draw_info_line(frame, info, s, c);
    draw_gauge(frame, gauge, s, c);
}

/// Task title and id, and the run's state on the right.
pub(super) fn draw_title_line(frame: &mut Frame, area: Rect, s: &TuiState, c: &Palette) {
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
pub(super) fn draw_info_line(frame: &mut Frame, area: Rect, s: &TuiState, c: &Palette) {
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
    // The workload's p95 so far; the last interval's is never shown under "(all)".
    let (p95_label, p95) = match (s.all.p95_total, s.all.p95) {
        (None, Some(v)) => ("p95 (interval) ", Some(v)),
        (total, _) => ("p95 (all) ", total),
    };
    let mut right = vec![
        Span::styled(p95_label, dim),
        Span::raw(secs(p95)),
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
pub(super) fn clip(spans: Vec<Span<'static>>, max: usize) -> Vec<Span<'static>> {
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
pub(super) fn failed_share(failures: u64, iterations: u64) -> String {
    if iterations == 0 {
        return count(failures);
    }
    let p = 100.0 * failures as f64 / iterations as f64;
    format!("{} ({})", count(failures), pct(p))
}

/// Progress: by iterations when the runner has a total, else by time when it has a
/// duration; the label says both elapsed / expected time and the iteration count.
pub(super) fn draw_gauge(frame: &mut Frame, area: Rect, s: &TuiState, c: &Palette) {
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
    } else if let Some((stored, run)) = s.storing {
        // The load is over; a run that made results faster than they travel waits for them.
        format!("{time} · {iterations} · load done, storing results {stored}/{run}")
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
pub(super) fn gauge_area(area: Rect) -> Rect {
    Rect {
        x: area.x.saturating_add(1).min(area.right()),
        width: area.width.saturating_sub(2),
        ..area
    }
}
