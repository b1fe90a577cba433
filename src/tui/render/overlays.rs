//! What covers the charts for a moment: the workload list, the errors and statistics of a
//! workload, the enlarged log, and the help and confirmation dialogs over the whole screen.

use ratatui::Frame;
use ratatui::layout::{Alignment, Constraint, Layout, Rect};
use ratatui::style::Style;
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Cell, Clear, Paragraph, Row, Table, TableState, Wrap};

use super::format::{clock, count};
use super::sla::verdict;
use super::{block, centred, phase_style};
use crate::tui::state::TuiState;
use crate::tui::theme::Palette;

/// `l`: the log over the charts, scrolled back `s.log_scroll` lines from the newest.
pub(super) fn draw_log_overlay(frame: &mut Frame, area: Rect, s: &TuiState, c: &Palette) {
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

pub(super) fn draw_log_lines(
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

/// `w`: every workload of the task, with its state and, once finished, its figures and
/// verdict; Enter shows a finished one's statistics again.
pub(super) fn draw_workloads(frame: &mut Frame, area: Rect, s: &TuiState, c: &Palette) {
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
    // Selected, so the table scrolls to keep the cursor's row on screen.
    let mut state = TableState::default().with_selected(Some(s.workload_cursor));
    frame.render_stateful_widget(table, area, &mut state);
}

/// Where a panel of `rows` one-line rows (under a header) starts when scrolled to
/// `scroll`, never past a full last page; and the title's words saying so when it
/// does not fit.
fn scrolled(area: Rect, rows: usize, scroll: usize, keys: &str) -> (usize, String) {
    // Borders and the header row.
    let visible = (area.height as usize).saturating_sub(3).max(1);
    let first = scroll.min(rows.saturating_sub(visible));
    let hint = if rows > visible {
        format!(
            "· rows {}–{} of {rows} {keys} ",
            first + 1,
            (first + visible).min(rows)
        )
    } else {
        String::new()
    };
    (first, hint)
}

/// Which workload the statistics and errors panels speak of.
pub(super) fn shown_title(s: &TuiState, what: &str, index: usize) -> String {
    let count = s.workloads.len().max(1);
    let done = s.finished_report(index).is_some();
    format!(
        " {what} · workload {}/{count}{} ",
        index + 1,
        if done { " (final)" } else { " (so far)" }
    )
}

/// `e`: errors by type and message, with counts, for all agents.
pub(super) fn draw_errors(frame: &mut Frame, area: Rect, s: &TuiState, c: &Palette) {
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
            let title = format!(" errors · {} ", src.name);
            error_table(frame, mine, c, (title, ""), theirs, s.overlay_scroll);
            all
        }
        None => area,
    };
    let title = format!("{}· all ", shown_title(s, "errors", index));
    error_table(
        frame,
        area,
        c,
        (title, "· e closes "),
        errors,
        s.overlay_scroll,
    );
}

/// Errors with their counts; `title` is (what, closing words), with the scroll position
/// between them when the rows do not fit.
pub(super) fn error_table(
    frame: &mut Frame,
    area: Rect,
    c: &Palette,
    title: (String, &str),
    errors: &[crate::stats::ErrorCount],
    scroll: usize,
) {
    let (first, hint) = scrolled(area, errors.len(), scroll, "PgUp PgDn");
    let title = format!("{}{hint}{}", title.0, title.1);
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
    frame.render_stateful_widget(table, area, &mut TableState::default().with_offset(first));
}

/// `v`: Rally's Response Times table, atomic actions indented under their parents.
pub(super) fn draw_statistics(frame: &mut Frame, area: Rect, s: &TuiState, c: &Palette) {
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
    let (first, hint) = scrolled(area, body.len(), s.overlay_scroll, "↑↓ PgUp PgDn");
    let title = format!(
        "{}· seconds {hint}· v closes ",
        shown_title(s, "Response Times", index)
    );
    frame.render_stateful_widget(
        Table::new(body, widths)
            .header(header)
            .block(block(title, c)),
        area,
        &mut TableState::default().with_offset(first),
    );
}

pub(super) fn draw_help(frame: &mut Frame, area: Rect, c: &Palette) {
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
        ("e", "errors with counts (PgUp PgDn Home End scroll)"),
        ("v", "Response Times table (↑↓ PgUp PgDn Home End scroll)"),
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
pub(super) fn draw_confirm_leave(frame: &mut Frame, area: Rect, c: &Palette) {
    let question = Question {
        title: " leave ",
        width: 56,
        question: "Leave now?".to_owned(),
        consequence: "In-flight iterations are abandoned; the rest is stored.",
        answers: &[
            ("y", " leave now    "),
            ("n", " / "),
            ("Esc", " wait for them"),
        ],
    };
    question.draw(frame, area, c);
}

/// `s`: stop the run?
pub(super) fn draw_confirm(frame: &mut Frame, area: Rect, s: &TuiState, c: &Palette) {
    let question = Question {
        title: " stop ",
        width: 50,
        question: match s.agents_alive() {
            Some((alive, _)) => format!("Stop the run on {alive} agents?"),
            None => "Stop the run?".to_owned(),
        },
        consequence: "In-flight iterations finish; results are kept.",
        answers: &[
            ("y", " / "),
            ("s", " stop    "),
            ("n", " / "),
            ("Esc", " keep running"),
        ],
    };
    question.draw(frame, area, c);
}

/// A yes/no question over the whole screen, in the warning colour.
struct Question<'a> {
    title: &'a str,
    width: u16,
    question: String,
    /// What answering yes does.
    consequence: &'a str,
    /// Each key, then the words after it.
    answers: &'a [(&'a str, &'a str)],
}

impl Question<'_> {
    fn draw(self, frame: &mut Frame, area: Rect, c: &Palette) {
        let popup = centred(area, self.width, 6);
        frame.render_widget(Clear, popup);
        let key = Style::new().fg(c.accent).bold();
        let answers: Vec<Span> = self
            .answers
            .iter()
            .flat_map(|(k, words)| [Span::styled(*k, key), (*words).into()])
            .collect();
        let text = vec![
            Line::styled(self.question, Style::new().fg(c.warn).bold()),
            Line::from(self.consequence),
            Line::from(answers),
        ];
        frame.render_widget(
            Paragraph::new(text)
                .alignment(Alignment::Center)
                .wrap(Wrap { trim: true })
                .style(Style::new().fg(c.text))
                .block(block(self.title, c).border_style(Style::new().fg(c.warn))),
            popup,
        );
    }
}
