//! The terminal UI with many agents (SPEC §7, §10): how long folding one interval's events
//! into the state takes, how long one frame takes to draw, and how long a key takes to show,
//! with 100 and 1,000 agents at 200×60 and 240×70 cells. Drawn into ratatui's `TestBackend`
//! (the same buffer diffing as a terminal, without the terminal's own write).
//!
//!   cargo bench --bench tui
//!
//! Targets (issue #17): input handled within 100 ms, at least 10 frames a second.

use std::hint::black_box;
use std::time::{Duration, Instant};

use crossterm::event::KeyCode;
use ratatui::Terminal;
use ratatui::backend::TestBackend;

use rally_tui::events::InstanceState;
use rally_tui::events::{
    AgentRow, AgentsSnapshot, Event, Figures, LiveStatistics, Progress, SlaSnapshot, WorkloadInfo,
};
use rally_tui::sla::CriterionStatus;
use rally_tui::tui::render::draw;
use rally_tui::tui::state::TuiState;
use rally_tui::tui::theme::Theme;

fn figures(i: u64, k: u64) -> Figures {
    let p = 0.05 + ((i * 13 + k * 3) % 17) as f64 / 400.0;
    Figures {
        iterations: i * 25 + k,
        failures: (i + k) / 6,
        rate: 20.0 + ((i * 7 + k * 5) % 23) as f64,
        p50: Some(p),
        p95: Some(p * 1.5),
        p99: Some(p * 1.8),
        max: Some(p * 2.0),
        p95_total: Some(p * 1.5),
    }
}

fn criteria(fail: f64) -> Vec<CriterionStatus> {
    let row = |name: &str, value: f64, limit: f64| CriterionStatus {
        success: value <= limit,
        value,
        limit,
        ..CriterionStatus::row(name, value <= limit, format!("{name} {value} <= {limit}"))
    };
    vec![
        row("failure_rate", fail, 5.0),
        row("max_seconds_per_iteration", 0.4, 1.0),
    ]
}

/// One interval's events for `agents` agents at step `i`.
fn interval(agents: u64, i: u64) -> Vec<Event> {
    let names: Vec<String> = (1..=agents).map(|k| format!("loadgen-{k}")).collect();
    let per: Vec<(String, Figures)> = names
        .iter()
        .zip(0..)
        .map(|(n, k)| (n.clone(), figures(i, k)))
        .collect();
    let mut all = Figures::default();
    for (_, f) in &per {
        all.iterations += f.iterations;
        all.failures += f.failures;
        all.rate += f.rate;
        all.p95 = f.p95;
        all.p95_total = f.p95_total;
    }
    vec![
        Event::Agents(AgentsSnapshot {
            workload: 0,
            agents: per
                .iter()
                .map(|(n, f)| AgentRow {
                    name: n.clone(),
                    host: format!("host-{}", n.len()),
                    state: InstanceState::Running,
                    iterations: f.iterations,
                    failures: f.failures,
                    rate: f.rate,
                    p95: f.p95,
                    heartbeat_age: Some(0.3),
                    clock_offset: Some(0.001),
                })
                .collect(),
        }),
        Event::Progress(Progress {
            workload: 0,
            elapsed: i as f64,
            total: None,
            all,
            sources: per.clone(),
            in_flight: None,
            stored: None,
        }),
        Event::Sla(SlaSnapshot {
            workload: 0,
            total: criteria(2.0),
            sources: names.iter().map(|n| (n.clone(), criteria(2.0))).collect(),
        }),
        Event::Statistics(Box::new(LiveStatistics {
            workload: 0,
            table: rally_tui::stats::WorkloadStats::new(Vec::new().into()).table(),
            errors: Vec::new(),
            by_source: Vec::new(),
            detail: None,
        })),
    ]
}

fn state(agents: u64, steps: u64) -> (TuiState, Duration) {
    let mut s = TuiState::new();
    s.apply(&Event::TaskStarted {
        uuid: "bench".into(),
        title: "tui bench".into(),
        workloads: Vec::new(),
    });
    s.apply(&Event::WorkloadStarted(WorkloadInfo {
        index: 0,
        count: 1,
        subtask: "bench".into(),
        position: 0,
        scenario: "Dummy.dummy".into(),
        runner: format!(
            "constant_for_duration (duration 600, concurrency {agents}) on {agents} agents"
        ),
        total: None,
        expected_duration: Some(600.0),
        target_rate: None,
        max_concurrency: None,
    }));
    let mut folding = Duration::ZERO;
    for i in 1..=steps {
        let events = interval(agents, i);
        let start = Instant::now();
        for e in &events {
            s.apply(e);
        }
        folding += start.elapsed();
    }
    (s, folding / steps as u32)
}

fn frame_time(s: &TuiState, theme: &Theme, w: u16, h: u16, frames: u32) -> Duration {
    let mut terminal = Terminal::new(TestBackend::new(w, h)).expect("TestBackend");
    let start = Instant::now();
    for _ in 0..frames {
        terminal
            .draw(|f| draw(f, black_box(s), theme))
            .expect("TestBackend");
    }
    start.elapsed() / frames
}

/// A key (the selection moves down the table, which scrolls) until its frame is drawn.
fn key_time(s: &mut TuiState, theme: &Theme, w: u16, h: u16, keys: u32) -> Duration {
    let mut terminal = Terminal::new(TestBackend::new(w, h)).expect("TestBackend");
    let mut worst = Duration::ZERO;
    for _ in 0..keys {
        let start = Instant::now();
        s.on_key(KeyCode::PageDown);
        terminal
            .draw(|f| draw(f, black_box(s), theme))
            .expect("TestBackend");
        worst = worst.max(start.elapsed());
    }
    worst
}

fn ms(d: Duration) -> String {
    format!("{:.2}", d.as_secs_f64() * 1e3)
}

fn main() {
    let quick = std::env::var("QUICK").is_ok_and(|v| v == "1");
    let (steps, frames) = if quick { (20, 5) } else { (300, 50) };
    let theme = Theme::default();
    println!(
        "| agents | screen | fold one interval's events (ms) | draw one frame (ms) | frames/s | worst key to frame (ms) |"
    );
    println!("|---:|---|---:|---:|---:|---:|");
    for agents in [100u64, 1000] {
        let (mut s, folding) = state(agents, steps);
        for (w, h) in [(200u16, 60u16), (240, 70)] {
            let frame = frame_time(&s, &theme, w, h, frames);
            let key = key_time(&mut s, &theme, w, h, 20);
            println!(
                "| {agents} | {w}×{h} | {} | {} | {:.0} | {} |",
                ms(folding),
                ms(frame),
                1.0 / frame.as_secs_f64(),
                ms(key)
            );
        }
    }
}
