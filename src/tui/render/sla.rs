//! The SLA panel: each criterion's value, limit and verdict, for the aggregate and, on wide
//! screens, for the selected source.

use ratatui::Frame;
use ratatui::layout::{Constraint, Rect};
use ratatui::style::Style;
use ratatui::text::{Line, Span};
use ratatui::widgets::{Cell, Row, Table};

use super::format::{dur, num, pct};
use super::{SLA_WIDE_WIDTH, aggregate_name, block};
use crate::sla::{ABORTED_MANUALLY, ABORTED_ON_SLA, SOMETHING_WENT_WRONG};
use crate::tui::state::{PSEUDO_ROWS, TuiState};
use crate::tui::theme::Palette;

/// Criteria whose limit is a duration in seconds, drawn on the latency chart.
pub(super) const LATENCY_CRITERIA: [&str; 4] = [
    "max_percentile",
    "max_seconds_per_iteration",
    "max_avg_duration",
    "max_avg_duration_per_atomic",
];
/// Criterion whose limit is a failure percentage, drawn on the failure-rate chart.
pub(super) const FAILURE_CRITERION: &str = "failure_rate";

pub(super) fn draw_sla(frame: &mut Frame, area: Rect, s: &TuiState, c: &Palette) {
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

pub(super) fn verdict(success: bool, c: &Palette) -> Span<'static> {
    if success {
        Span::styled("PASS", Style::new().fg(c.pass).bold())
    } else {
        Span::styled("FAIL", Style::new().fg(c.fail).bold())
    }
}

/// A criterion's value or limit in its unit; blank for the pseudo rows, which have none
/// (a real criterion at 0, e.g. no failures yet, shows its 0).
pub(super) fn criterion_value(criterion: &str, v: f64) -> String {
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

/// Short labels (at most 10 characters), so the SLA panel fits next to the agent table at
/// 80 columns; the values carry the unit.
pub(super) fn short_criterion(name: &str) -> &str {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sla::{ABORTED_ON_SLA, SOMETHING_WENT_WRONG};

    #[test]
    fn real_criteria_at_zero_show_their_value() {
        // The bug of issue #6: a passing failure rate of 0 % with `max: 0` was blank.
        assert_eq!(criterion_value("failure_rate", 0.0), "0%");
        assert_eq!(criterion_value("max_percentile", 0.0), "0s");
        assert_eq!(criterion_value("outliers", 0.0), "0");
        assert_eq!(criterion_value(ABORTED_ON_SLA, 0.0), "");
        assert_eq!(criterion_value(SOMETHING_WENT_WRONG, 0.0), "");
    }
}
