//! Snapshot tests of whole screens: fixed event sequences rendered into ratatui's
//! `TestBackend` and compared with the `.snap` files in `snapshots/` (`cargo insta review`
//! after an intended change). Each screen is taken at 80×24 (the smallest supported) and
//! 160×48.

use crossterm::event::KeyCode;
use ratatui::Terminal;
use ratatui::backend::TestBackend;

use super::fixtures::{figures, info, progress, started};
use super::render::draw;
use super::state::{TuiState, View};
use super::theme::{BUILTIN, Theme};
use crate::events::{Event, Figures, SlaSnapshot, TaskStatus};
use crate::sla::CriterionStatus;

const SIZES: [(u16, u16); 2] = [(80, 24), (160, 48)];

fn render(state: &TuiState, theme: &Theme, w: u16, h: u16) -> Terminal<TestBackend> {
    let mut terminal = Terminal::new(TestBackend::new(w, h)).expect("TestBackend never fails");
    terminal
        .draw(|f| draw(f, state, theme))
        .expect("TestBackend never fails");
    terminal
}

fn snapshot(name: &str, state: &TuiState) {
    let theme = Theme::default();
    for (w, h) in SIZES {
        let terminal = render(state, &theme, w, h);
        insta::assert_snapshot!(format!("{name}_{w}x{h}"), terminal.backend());
    }
}

fn row(criterion: &str, value: f64, limit: f64) -> CriterionStatus {
    CriterionStatus {
        criterion: criterion.into(),
        success: value <= limit,
        detail: String::new(),
        value,
        limit,
    }
}

/// Deterministic, wavy figures for source `k` at step `i` (integer arithmetic only, so no
/// libm differences between machines).
fn wave(i: u64, k: u64, slow: f64) -> Figures {
    let rate = 20.0 + ((i * 7 + k * 5) % 23) as f64;
    let p = slow * (0.05 + ((i * 13 + k * 3) % 17) as f64 / 400.0);
    let iterations = i * 25 + k;
    let failures = (i + k) / 6;
    figures(iterations, failures, rate, p)
}

/// A run with `n` sources after `steps` progress events, SLA on the totals and per source.
fn run(n: u64, steps: u64, slow: f64, limit: f64) -> TuiState {
    let mut s = TuiState::new();
    s.apply(&started());
    s.apply(&Event::WorkloadStarted(info(0, 2, Some(2000 * n))));
    let names: Vec<String> = (0..n)
        .map(|k| {
            if n == 1 {
                "local".into()
            } else {
                format!("agent-{k:02}")
            }
        })
        .collect();
    for i in 1..=steps {
        let figs: Vec<(&str, Figures)> = names
            .iter()
            .enumerate()
            .map(|(k, name)| (name.as_str(), wave(i, k as u64, slow)))
            .collect();
        s.apply(&progress(i as f64, 2000 * n, &figs));
        if i % 10 == 0 {
            s.apply(&Event::Log {
                level: if i % 20 == 0 { "warn" } else { "info" }.into(),
                message: format!("{i} progress events in"),
            });
        }
    }
    let p95 = s.all.p95.unwrap_or(0.0);
    let rows = |fail: f64| {
        vec![
            row("failure_rate", fail, 5.0),
            row("max_percentile", p95, limit),
        ]
    };
    s.apply(&Event::Sla(SlaSnapshot {
        workload: 0,
        total: rows(3.1),
        sources: names
            .iter()
            .enumerate()
            .map(|(k, name)| (name.clone(), rows(if k == 3 { 7.5 } else { 2.0 })))
            .collect(),
    }));
    s
}

#[test]
fn one_source_running() {
    snapshot("one_source", &run(1, 40, 1.0, 0.5));
}

#[test]
fn sla_failing() {
    let mut s = run(1, 40, 4.0, 0.3);
    s.view = View::Latency;
    assert!(s.sla.iter().any(|r| !r.success));
    snapshot("sla_failing", &s);
}

#[test]
fn many_sources() {
    let mut s = run(10, 30, 1.0, 0.5);
    s.selected = 3;
    s.view = View::Failures;
    snapshot("many_sources", &s);
}

#[test]
fn stopping_confirmation() {
    let mut s = run(1, 20, 1.0, 0.5);
    s.on_key(KeyCode::Char('s'));
    snapshot("stop_confirm", &s);
}

#[test]
fn help_overlay() {
    let mut s = run(1, 20, 1.0, 0.5);
    s.on_key(KeyCode::Char('?'));
    snapshot("help", &s);
}

#[test]
fn finished() {
    let mut s = run(1, 40, 1.0, 0.5);
    s.apply(&Event::TaskFinished {
        uuid: s.uuid.clone(),
        status: TaskStatus::Finished,
        pass_sla: true,
    });
    snapshot("finished", &s);
}

#[test]
fn aborted_on_sla() {
    let mut s = run(1, 40, 4.0, 0.3);
    s.apply(&Event::Stopping {
        reason: "SLA failure".into(),
    });
    s.apply(&Event::TaskFinished {
        uuid: s.uuid.clone(),
        status: TaskStatus::Aborted,
        pass_sla: false,
    });
    snapshot("aborted_on_sla", &s);
}

/// Every theme, many sizes (including below the supported minimum), empty and crowded states:
/// drawing must never panic.
#[test]
fn never_panics() {
    let crowded = {
        let mut s = run(100, 50, 1.0, 0.5);
        s.selected = 99;
        for _ in 0..300 {
            s.apply(&Event::Log {
                level: "error".into(),
                message: "y".repeat(400),
            });
        }
        s
    };
    let mut popup = crowded.clone();
    popup.on_key(KeyCode::Char('s'));
    let states = [TuiState::new(), crowded, popup];
    for name in BUILTIN {
        let theme = Theme::load(name).expect("built-in theme");
        for state in &states {
            for view in View::ALL {
                let mut state = state.clone();
                state.view = view;
                for (w, h) in [(80, 24), (200, 60), (1, 1), (20, 5), (79, 23), (300, 100)] {
                    render(&state, &theme, w, h);
                }
            }
        }
    }
}

#[test]
fn empty_state() {
    snapshot("empty", &TuiState::new());
}

/// The selected source stays visible when the table scrolls.
#[test]
fn selected_row_is_visible() {
    let mut s = run(100, 5, 1.0, 0.5);
    s.selected = 99;
    let terminal = render(&s, &Theme::default(), 200, 60);
    assert!(terminal.backend().to_string().contains("agent-99"));
}
