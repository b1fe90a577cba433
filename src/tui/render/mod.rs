//! Draws a [`TuiState`] with a [`Theme`] (SPEC §7 layout).
//!
//! Pure: everything on screen comes from the state (times from events, never a clock), so
//! the snapshot tests in `render_tests` pin whole screens. Every size from 80×24 up gets the
//! full layout (narrow tables drop their least useful columns first); smaller terminals get
//! what fits, and nothing indexes the buffer directly, so no size can panic.
//!
//! The screen is drawn top to bottom, one module per region:
//! - [`header`]: title, run figures and the progress gauge;
//! - [`charts`]: the throughput, latency and failure-rate charts with their SLA limits;
//! - [`sla`]: the SLA panel;
//! - [`agents`]: the per-source table with its sparklines;
//! - [`overlays`]: the panels that cover the charts (workload list, errors, statistics,
//!   enlarged log) and the dialogs (help, stop and leave confirmations);
//! - [`format`]: the fixed-width number, duration and percentage formats they all share.
//!
//! This module lays the regions out and draws the log pane and the footer.

use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Borders, Paragraph};

use crate::tui::state::{Overlay, Phase, TuiState};
use crate::tui::theme::{Palette, Theme};
mod agents;
mod charts;
mod format;
mod header;
mod overlays;
mod sla;

use agents::draw_agents;
use charts::draw_charts;
use header::draw_header;
use overlays::{
    draw_confirm, draw_confirm_leave, draw_errors, draw_help, draw_log_lines, draw_log_overlay,
    draw_statistics, draw_workloads,
};
use sla::draw_sla;

/// Width of the SLA panel next to the agent table; wide screens add the selected agent's
/// column.
const SLA_WIDTH: u16 = 33;
const SLA_WIDE_WIDTH: u16 = 40;
/// Screen width from which the SLA panel shows the selected agent's values too.
const WIDE_SCREEN: u16 = 140;

/// The smallest screen the layout is made for.
pub const MIN_SIZE: (u16, u16) = (80, 24);

/// Draws the whole screen, then the help overlay or the stop confirmation over it.
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

fn draw_logs(frame: &mut Frame, area: Rect, s: &TuiState, c: &Palette) {
    draw_log_lines(frame, area, s, c, block(" log · l enlarges ", c), 0);
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn centred_never_exceeds_area() {
        let r = centred(Rect::new(0, 0, 10, 4), 48, 6);
        assert_eq!(r, Rect::new(0, 0, 10, 4));
    }
}
