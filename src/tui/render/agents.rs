//! The source table: one row per agent (or the local runner), with as many columns as fit.

use ratatui::Frame;
use ratatui::layout::{Constraint, Flex, Layout, Rect};
use ratatui::style::Style;
use ratatui::text::Span;
use ratatui::widgets::{Cell, Row, Sparkline, Table};

use super::block;
use super::format::{count, num, secs, short_age, signed_dur};
use crate::events::InstanceState;
use crate::tui::state::{Ring, SourceRow, TuiState};
use crate::tui::theme::Palette;

/// An agent unheard of for longer than this is shown in the warning colour (heartbeats are
/// at most 1 s apart).
pub(super) const HEARTBEAT_LATE: f64 = 2.0;

/// A column of the agent table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Col {
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
pub(super) fn fit_columns(s: &TuiState, room: u16, compact_state: bool) -> Vec<(Col, u16)> {
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

pub(super) fn state_word(state: InstanceState, compact: bool) -> &'static str {
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

pub(super) fn state_style(state: Option<InstanceState>, c: &Palette) -> Style {
    match state {
        Some(InstanceState::Lost) => Style::new().fg(c.fail).bold(),
        Some(InstanceState::Stopping | InstanceState::Connecting) => Style::new().fg(c.warn),
        Some(InstanceState::Done) => Style::new().fg(c.dim),
        Some(InstanceState::Running) => Style::new().fg(c.pass),
        None => Style::new(),
    }
}

pub(super) fn agent_cell(
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

pub(super) fn draw_agents(frame: &mut Frame, area: Rect, s: &TuiState, c: &Palette) {
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
pub(super) fn draw_sparkline(frame: &mut Frame, area: Rect, ring: &Ring, c: &Palette) {
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
