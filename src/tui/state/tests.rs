//! The state machine's tests: event sequences and key presses folded, and what they leave.

use crossterm::event::KeyCode;

use super::*;
use crate::events::InstanceState;
use crate::events::{AgentRow, SlaSnapshot, TaskStatus};
use crate::tui::fixtures::{agent_row, agents, figures, info, progress, started};

fn row(name: &str, success: bool, value: f64, limit: f64) -> CriterionStatus {
    CriterionStatus {
        criterion: name.into(),
        success,
        detail: String::new(),
        value,
        limit,
        parts: Vec::new(),
    }
}

/// The log pane's lines as `level message`.
fn log_lines(s: &TuiState) -> Vec<String> {
    s.logs
        .iter()
        .map(|l| format!("{} {}", l.level, l.message))
        .collect()
}

#[test]
fn folds_a_run() {
    let mut s = TuiState::new();
    assert_eq!(s.phase, Phase::Waiting);
    s.apply(&started());
    s.apply(&Event::WorkloadStarted(info(0, 2, Some(1000))));
    assert_eq!(s.phase, Phase::Running);
    assert_eq!(s.title, "smoke test");
    s.apply(&progress(
        1.0,
        1000,
        &[("local", figures(10, 1, 10.0, 0.1))],
    ));
    s.apply(&progress(
        2.0,
        1000,
        &[("local", figures(30, 1, 20.0, 0.2))],
    ));
    assert_eq!(s.elapsed, 2.0);
    assert_eq!(s.all.iterations, 30);
    assert_eq!(s.sources.len(), 1);
    let h = &s.sources[0].history;
    assert_eq!(h.throughput.to_vec(), vec![(1.0, 10.0), (2.0, 20.0)]);
    // 1 of the first 10 failed, none of the next 20.
    assert_eq!(h.failure_rate.to_vec(), vec![(1.0, 10.0), (2.0, 0.0)]);
    assert_eq!(s.history.p99.last(), Some((2.0, 0.2 * 1.8)));
    s.apply(&Event::Sla(SlaSnapshot {
        workload: 0,
        total: vec![row("failure_rate", true, 3.3, 5.0)],
        sources: vec![("local".into(), vec![row("failure_rate", true, 3.3, 5.0)])],
    }));
    assert_eq!(s.sla.len(), 1);
    assert_eq!(s.sources[0].sla.len(), 1);
    // A new workload restarts the graphs.
    s.apply(&Event::WorkloadStarted(info(1, 2, None)));
    assert!(s.history.throughput.is_empty());
    assert!(s.sources[0].history.throughput.is_empty());
    assert_eq!(s.total, None);
    s.apply(&Event::TaskFinished {
        uuid: s.uuid.clone(),
        status: TaskStatus::Finished,
        pass_sla: true,
    });
    assert_eq!(s.phase, Phase::Finished { pass_sla: true });
}

#[test]
fn sla_abort_is_told_apart_from_user_abort() {
    let finish = Event::TaskFinished {
        uuid: String::new(),
        status: TaskStatus::Aborted,
        pass_sla: false,
    };
    let mut s = TuiState::new();
    s.apply(&started());
    s.apply(&Event::Stopping {
        reason: crate::events::StopCause::SlaFailure,
    });
    assert!(matches!(s.phase, Phase::Stopping { .. }));
    s.apply(&finish);
    assert_eq!(s.phase, Phase::AbortedOnSla);
    let mut s = TuiState::new();
    s.apply(&started());
    s.apply(&Event::Stopping {
        reason: crate::events::StopCause::User,
    });
    s.apply(&finish);
    assert_eq!(s.phase, Phase::Aborted);
}

#[test]
fn memory_is_bounded() {
    let mut s = TuiState::new();
    s.apply(&started());
    for i in 0..10_000u64 {
        let t = i as f64;
        s.apply(&progress(
            t,
            1000,
            &[
                ("a", figures(i, 0, 1.0, 0.1)),
                ("b", figures(i, 0, 1.0, 0.1)),
            ],
        ));
        s.apply(&Event::Log {
            level: crate::events::Level::Info,
            message: "x".repeat(2 * LOG_MESSAGE_CHARS),
        });
    }
    // Downsampled, not cut: the charts still start near the workload's start.
    let first = s.history.throughput.iter().next().copied();
    assert!(first.is_some_and(|(x, _)| x < 100.0), "{first:?}");
    for i in 0..(MAX_SOURCES as u64 + 50) {
        s.apply(&progress(
            10_000.0,
            1000,
            &[(&format!("agent-{i}"), figures(1, 0, 1.0, 0.1))],
        ));
    }
    assert!(s.history.throughput.len() <= HISTORY + 1);
    assert!(s.history.failure_rate.len() <= HISTORY + 1);
    assert!(s.sources[0].history.p95.len() <= HISTORY + 1);
    assert_eq!(s.logs.len(), LOG_LINES);
    assert!(
        s.logs
            .iter()
            .all(|l| l.message.chars().count() <= LOG_MESSAGE_CHARS + 1)
    );
    assert_eq!(s.sources.len(), MAX_SOURCES);
    // A gauge of the latest snapshot's untracked names, not a count of look-ups.
    assert_eq!(s.dropped_sources, 1);
}

/// 1,100 agents: the table keeps 1,024 rows, the footer says 76 are not shown (however
/// many events name them), and the header counts all 1,100 from the snapshot.
#[test]
fn agents_over_the_table_cap_are_counted_not_accumulated() {
    let mut s = TuiState::new();
    s.apply(&started());
    let f = figures(10, 0, 1.0, 0.1);
    let names: Vec<String> = (0..1100).map(|i| format!("agent-{i}")).collect();
    for t in 1..=3 {
        let mut rows: Vec<AgentRow> = names
            .iter()
            .map(|n| agent_row(n, InstanceState::Running, &f, 0.1))
            .collect();
        rows[1099].state = InstanceState::Lost;
        s.apply(&agents(rows));
        let figs: Vec<(&str, Figures)> = names.iter().map(|n| (n.as_str(), f.clone())).collect();
        s.apply(&progress(f64::from(t), 1000, &figs));
        s.apply(&Event::Sla(SlaSnapshot {
            workload: 0,
            total: Vec::new(),
            sources: names.iter().map(|n| (n.clone(), Vec::new())).collect(),
        }));
    }
    assert_eq!(s.sources.len(), MAX_SOURCES);
    assert_eq!(s.dropped_sources, 1100 - MAX_SOURCES as u64);
    assert_eq!(s.agents_alive(), Some((1099, 1100)));
}

#[test]
fn stop_needs_confirmation() {
    let mut s = TuiState::new();
    s.apply(&started());
    assert_eq!(s.on_key(KeyCode::Char('s')), Action::AskStop);
    assert!(s.confirm_stop);
    // Other keys do nothing while the popup is open.
    assert_eq!(s.on_key(KeyCode::Char('t')), Action::None);
    assert_eq!(s.on_key(KeyCode::Esc), Action::None);
    assert!(!s.confirm_stop);
    assert_eq!(s.on_key(KeyCode::Char('s')), Action::AskStop);
    assert_eq!(s.on_key(KeyCode::Char('n')), Action::None);
    assert_eq!(s.on_key(KeyCode::Char('s')), Action::AskStop);
    assert_eq!(s.on_key(KeyCode::Char('s')), Action::ConfirmStop);
    // Asking again after a confirmed stop is a no-op with a hint.
    assert_eq!(s.on_key(KeyCode::Char('s')), Action::None);
    assert!(s.notice.is_some());
    let mut s = TuiState::new();
    s.apply(&started());
    s.on_key(KeyCode::Char('s'));
    assert_eq!(s.on_key(KeyCode::Char('y')), Action::ConfirmStop);
}

#[test]
fn q_quits_only_when_over() {
    let mut s = TuiState::new();
    s.apply(&started());
    assert_eq!(s.on_key(KeyCode::Char('q')), Action::AskStop);
    assert_eq!(s.on_key(KeyCode::Esc), Action::None);
    s.apply(&Event::TaskFinished {
        uuid: String::new(),
        status: TaskStatus::Crashed,
        pass_sla: false,
    });
    assert_eq!(s.on_key(KeyCode::Char('s')), Action::None);
    assert_eq!(s.on_key(KeyCode::Char('q')), Action::Quit);
}

#[test]
fn navigation_theme_and_help() {
    let mut s = TuiState::new();
    s.apply(&started());
    s.on_key(KeyCode::Tab);
    assert_eq!(s.selected, 0, "no sources: nothing to select");
    s.apply(&progress(
        1.0,
        1000,
        &[
            ("a", figures(1, 0, 1.0, 0.1)),
            ("b", figures(1, 0, 1.0, 0.1)),
            ("c", figures(1, 0, 1.0, 0.1)),
        ],
    ));
    s.on_key(KeyCode::Tab);
    s.on_key(KeyCode::Down);
    assert_eq!(s.selected_source().map(|r| r.name.as_str()), Some("c"));
    s.on_key(KeyCode::Tab);
    assert_eq!(s.selected, 0, "wraps around");
    s.on_key(KeyCode::Up);
    assert_eq!(s.selected, 2);
    s.on_key(KeyCode::BackTab);
    assert_eq!(s.selected, 1);
    assert_eq!(s.view, View::Throughput);
    s.on_key(KeyCode::Right);
    assert_eq!(s.view, View::Latency);
    s.on_key(KeyCode::Left);
    s.on_key(KeyCode::Left);
    assert_eq!(s.view, View::Failures);
    assert_eq!(s.on_key(KeyCode::Char('t')), Action::CycleTheme);
    assert_eq!(s.on_key(KeyCode::Char('?')), Action::ToggleHelp);
    assert!(s.show_help);
    // Help swallows keys, and q closes it instead of quitting.
    assert_eq!(s.on_key(KeyCode::Char('s')), Action::None);
    assert_eq!(s.on_key(KeyCode::Char('q')), Action::ToggleHelp);
    assert!(!s.show_help);
}

/// The agent table comes from `Agents` events; a lost agent's stale figures (the
/// controller keeps its last report) draw as zero throughput, not a flat line.
#[test]
fn agents_fill_the_table_and_a_lost_agent_goes_flat() {
    let mut s = TuiState::new();
    s.apply(&started());
    s.apply(&Event::WorkloadStarted(info(0, 1, Some(1000))));
    let f = figures(10, 1, 50.0, 0.1);
    let step = |s: &mut TuiState, t: f64, second: InstanceState| {
        s.apply(&agents(vec![
            agent_row("local-1", InstanceState::Running, &f, 0.2),
            agent_row("local-2", second, &f, 3.5),
        ]));
        s.apply(&progress(
            t,
            1000,
            &[("local-1", f.clone()), ("local-2", f.clone())],
        ));
    };
    step(&mut s, 1.0, InstanceState::Running);
    assert!(s.distributed);
    assert_eq!(s.agents_alive(), Some((2, 2)));
    let row = &s.sources[1];
    assert_eq!(row.host.as_deref(), Some("loadgen-a"));
    assert_eq!(row.heartbeat_age, Some(3.5));
    assert_eq!(row.clock_offset, Some(0.0015));
    assert_eq!(row.p95, f.p95);
    step(&mut s, 2.0, InstanceState::Lost);
    assert_eq!(s.agents_alive(), Some((1, 2)));
    let lost = &s.sources[1];
    assert_eq!(lost.state, Some(InstanceState::Lost));
    assert_eq!(lost.rate, 0.0);
    assert_eq!(
        lost.history.throughput.to_vec(),
        vec![(1.0, 50.0), (2.0, 0.0)]
    );
    assert_eq!(lost.history.p95.len(), 1, "no latency point once lost");
    assert_eq!(s.sources[0].history.throughput.len(), 2);
}

/// The report settles each agent (no `Agents` event follows a workload) and the log
/// keeps the outcome.
#[test]
fn workload_end_settles_agent_states() {
    use crate::events::{DistributedSummary, SourceFigures, WorkloadReport};
    let mut s = TuiState::new();
    s.apply(&started());
    let f = figures(10, 0, 5.0, 0.1);
    s.apply(&agents(vec![
        agent_row("a", InstanceState::Stopping, &f, 0.1),
        agent_row("b", InstanceState::Running, &f, 0.1),
    ]));
    let source = |name: &str, lost| SourceFigures {
        lost,
        ..SourceFigures::from_metric(name, &crate::stats::Metric::default(), 0)
    };
    let report = WorkloadReport {
        connections: None,
        runner_error: None,
        info: info(0, 1, None),
        stats: crate::stats::WorkloadStats::new(Vec::new().into()).table(),
        sla: vec![crate::sla::aborted_manually()],
        pass_sla: false,
        iterations: 20,
        failures: 0,
        load_duration: 1.0,
        full_duration: 1.0,
        start_time: None,
        hooks: Vec::new(),
        sources: vec![source("a", false), source("b", true)],
        errors: Vec::new(),
        distributed: Some(DistributedSummary {
            agents: vec!["a".into(), "b".into()],
            lost: vec!["b".into()],
            reissued: 7,
            duplicates: 0,
            missing: vec!["3 chunks of agent b".into()],
            returned: vec!["c lost at 1.0 s, back at 2.5 s".into()],
            reshares: Vec::new(),
        }),
    };
    s.apply(&Event::WorkloadFinished(Box::new(report)));
    assert_eq!(s.sources[0].state, Some(InstanceState::Done));
    assert_eq!(s.sources[1].state, Some(InstanceState::Lost));
    let log = log_lines(&s);
    assert_eq!(
        log,
        [
            "error workload 1/1 Dummy.dummy: 20 iterations, 0 failed, SLA passed; \
             stopped by user",
            "warn agents lost: b; 7 of their iterations re-run by the others",
            "info agent back: c lost at 1.0 s, back at 2.5 s",
            "warn missing results: 3 chunks of agent b",
        ]
    );
}

/// A new workload keeps the rows its first figures name; agents it does not name stay,
/// said idle (not `done` from the last workload); the selection stays on its agent.
#[test]
fn next_workload_keeps_only_its_own_rows() {
    let mut s = TuiState::new();
    s.apply(&started());
    let f = figures(1, 0, 1.0, 0.1);
    s.apply(&progress(1.0, 10, &[("local", f.clone())]));
    s.apply(&Event::WorkloadStarted(info(1, 2, None)));
    assert_eq!(s.sources.len(), 1, "rows stay until new figures arrive");
    s.apply(&agents(vec![
        agent_row("x", InstanceState::Running, &f, 0.1),
        agent_row("y", InstanceState::Running, &f, 0.1),
    ]));
    s.on_key(KeyCode::End);
    assert_eq!(s.selected_source().map(|r| r.name.as_str()), Some("y"));
    s.apply(&Event::WorkloadStarted(info(1, 2, None)));
    s.apply(&agents(vec![
        agent_row("y", InstanceState::Connecting, &f, 0.1),
        agent_row("z", InstanceState::Running, &f, 0.1),
    ]));
    let names: Vec<&str> = s.sources.iter().map(|r| r.name.as_str()).collect();
    assert_eq!(names, ["x", "y", "z"]);
    let idle: Vec<bool> = s.sources.iter().map(|r| r.idle).collect();
    assert_eq!(idle, [true, false, false]);
    assert_eq!(s.agents_alive(), Some((2, 2)));
    assert_eq!(s.agents_idle(), 1);
    assert_eq!(s.selected_source().map(|r| r.name.as_str()), Some("y"));
}

#[test]
fn expected_duration_from_the_runner_or_the_pace() {
    let mut s = TuiState::new();
    s.apply(&started());
    assert_eq!(s.expected(), None);
    s.apply(&Event::WorkloadStarted(info(0, 1, Some(1000))));
    s.apply(&progress(
        10.0,
        1000,
        &[("local", figures(250, 0, 25.0, 0.1))],
    ));
    assert_eq!(s.expected(), Some((40.0, true)));
    let mut w = info(0, 1, None);
    w.expected_duration = Some(90.0);
    s.apply(&Event::WorkloadStarted(w));
    assert_eq!(s.expected(), Some((90.0, false)));
}

/// An `rps` ramp's expected end comes from its schedule, not from the pace so far (which
/// a ramp makes wrong: slow at first), and its target rate is drawn from the schedule.
#[test]
fn rps_schedules_give_the_expected_end_and_the_target_rate() {
    use crate::runner::RunnerSpec;
    let runner = RunnerSpec::from_config(
        "rps",
        &crate::task::node::Node::parse(
            "{times: 400, rps: {start: 5, end: 40, step: 5, duration: 1}, max_concurrency: 200}",
        )
        .unwrap(),
        false,
    )
    .unwrap();
    assert_eq!(
        runner.describe(),
        "rps (times 400, rps 5→40/s, +5/s every 1 s, max_concurrency 200)"
    );
    let mut w = info(0, 1, Some(400));
    w.expected_duration = runner.expected_duration();
    w.target_rate = runner.target_rate().cloned();
    w.max_concurrency = runner.max_concurrency();
    assert_eq!(w.max_concurrency, Some(200));
    let mut s = TuiState::new();
    s.apply(&started());
    s.apply(&Event::WorkloadStarted(w));
    for (t, done) in [(1.0, 10), (2.0, 40), (3.0, 90)] {
        s.apply(&progress(t, 400, &[("local", figures(done, 0, 30.0, 0.1))]));
    }
    let (end, estimate) = s.expected().unwrap();
    assert!(!estimate);
    // 5→40/s over 7 s is 157.5 iterations; the other 241.5 at 40/s.
    assert!((end - (7.0 + (399.0 - 157.5) / 40.0)).abs() < 1e-6, "{end}");
    assert_eq!(
        s.history.target.to_vec(),
        vec![(1.0, 10.0), (2.0, 15.0), (3.0, 20.0)]
    );
}

/// Ctrl-C and signals stop without the popup and show `stopping` at once (the engine
/// announces only its own SLA stops); after the end they do nothing.
#[test]
fn request_stop_is_immediate_and_idempotent() {
    let mut s = TuiState::new();
    s.apply(&started());
    assert_eq!(s.request_stop(), Action::ConfirmStop);
    assert!(matches!(s.phase, Phase::Stopping { .. }));
    assert_eq!(s.request_stop(), Action::ConfirmStop);
    assert_eq!(
        s.logs
            .iter()
            .filter(|l| l.message.starts_with("stop"))
            .count(),
        1
    );
    s.apply(&Event::TaskFinished {
        uuid: String::new(),
        status: TaskStatus::Aborted,
        pass_sla: true,
    });
    assert_eq!(s.phase, Phase::Aborted, "a user stop is no SLA abort");
    assert_eq!(s.request_stop(), Action::None);
}

#[test]
fn paging_clamps_to_the_table() {
    let mut s = TuiState::new();
    s.apply(&started());
    let names: Vec<String> = (0..25).map(|i| format!("a{i}")).collect();
    let figs: Vec<(&str, Figures)> = names
        .iter()
        .map(|n| (n.as_str(), figures(1, 0, 1.0, 0.1)))
        .collect();
    s.apply(&progress(1.0, 10, &figs));
    s.on_key(KeyCode::PageDown);
    assert_eq!(s.selected, PAGE);
    s.on_key(KeyCode::End);
    assert_eq!(s.selected, 24);
    s.on_key(KeyCode::PageDown);
    assert_eq!(s.selected, 24);
    s.on_key(KeyCode::Home);
    assert_eq!(s.selected, 0);
    s.on_key(KeyCode::PageUp);
    assert_eq!(s.selected, 0);
}

#[test]
fn agents_sort_by_name_with_numbers_as_numbers() {
    let mut s = TuiState::new();
    s.apply(&started());
    let f = figures(1, 0, 1.0, 0.1);
    let row = |n: &str| agent_row(n, InstanceState::Running, &f, 0.1);
    s.apply(&agents(vec![
        row("local-10"),
        row("local-2"),
        row("local-1"),
    ]));
    s.on_key(KeyCode::Down);
    assert_eq!(
        s.selected_source().map(|r| r.name.as_str()),
        Some("local-2")
    );
    s.apply(&agents(vec![row("b"), row("local-3")]));
    let names: Vec<&str> = s.sources.iter().map(|r| r.name.as_str()).collect();
    assert_eq!(names, ["b", "local-1", "local-2", "local-3", "local-10"]);
    assert_eq!(
        s.selected_source().map(|r| r.name.as_str()),
        Some("local-2"),
        "the selection follows its agent"
    );
}

/// The moment a criterion starts (or stops) failing stays in the log pane.
#[test]
fn sla_changes_are_logged() {
    let mut s = TuiState::new();
    s.apply(&started());
    let sla = |ok: bool| {
        Event::Sla(SlaSnapshot {
            workload: 0,
            total: vec![CriterionStatus {
                detail: format!("detail {ok}"),
                ..row("failure_rate", ok, 1.0, 2.0)
            }],
            sources: Vec::new(),
        })
    };
    s.apply(&sla(true));
    s.apply(&sla(true));
    assert!(s.logs.is_empty());
    s.apply(&sla(false));
    s.apply(&sla(false));
    s.apply(&sla(true));
    let log = log_lines(&s);
    assert_eq!(
        log,
        ["warn FAIL: detail false", "info PASS again: detail true"]
    );
}

/// `l` enlarges the log; ↑ PgUp Home scroll back, and lines arriving meanwhile do not
/// move what is on screen; `l` again closes it at the newest line.
#[test]
fn the_enlarged_log_scrolls_back_and_stays_put() {
    let mut s = TuiState::new();
    for i in 0..30 {
        s.log(Level::Info, &format!("line {i}"));
    }
    s.on_key(KeyCode::Char('l'));
    assert_eq!(s.overlay, Overlay::Log);
    s.on_key(KeyCode::PageUp);
    s.on_key(KeyCode::Up);
    assert_eq!(s.log_scroll, PAGE + 1);
    s.log(Level::Info, "new");
    assert_eq!(s.log_scroll, PAGE + 2, "the view stays on the same lines");
    s.on_key(KeyCode::Home);
    assert_eq!(s.log_scroll, 30);
    s.on_key(KeyCode::End);
    assert_eq!(s.log_scroll, 0);
    s.on_key(KeyCode::Char('l'));
    assert_eq!(s.overlay, Overlay::None);
}

/// While stopping, `q` asks whether to leave without waiting for in-flight iterations;
/// `y` says so, anything else keeps waiting.
#[test]
fn q_while_stopping_asks_to_leave_now() {
    let mut s = TuiState::new();
    s.apply(&started());
    assert_eq!(s.on_key(KeyCode::Char('q')), Action::AskStop);
    assert_eq!(s.on_key(KeyCode::Char('y')), Action::ConfirmStop);
    assert_eq!(s.on_key(KeyCode::Char('q')), Action::AskStop);
    assert!(s.confirm_leave);
    assert_eq!(s.on_key(KeyCode::Char('n')), Action::None);
    assert!(!s.confirm_leave);
    s.on_key(KeyCode::Char('q'));
    assert_eq!(s.on_key(KeyCode::Char('y')), Action::LeaveNow);
}

/// A long run is downsampled, never cut: 10,000 points keep the run's start and end within
/// the same memory, means stay means and a max series keeps its spike.
#[test]
fn history_covers_the_whole_run() {
    let mut rate = Ring::new(HISTORY);
    let mut max = Ring::with_merge(HISTORY, Merge::Max);
    for i in 0..10_000u32 {
        let t = f64::from(i + 1);
        rate.push(t, 10.0);
        max.push(t, if i == 1234 { 9.0 } else { 0.5 });
        assert!(rate.len() <= HISTORY + 1, "{} points at {i}", rate.len());
    }
    let points = rate.to_vec();
    let (x0, _) = points[0];
    assert!(
        x0 < 100.0,
        "first point at {x0}: the run's start was dropped"
    );
    assert_eq!(rate.last(), Some((10_000.0, 10.0)));
    assert!(points.iter().all(|p| (p.1 - 10.0).abs() < 1e-9));
    assert!(points.windows(2).all(|w| w[0].0 < w[1].0), "x ascends");
    assert!(rate.stride() > 1);
    let spike = max.iter().map(|p| p.1).fold(0.0, f64::max);
    assert_eq!(spike, 9.0, "the spike's max survives downsampling");
    // Through the state too: the aggregate's charts start at the workload's start.
    let mut s = TuiState::new();
    s.apply(&started());
    for i in 1..=2_000u64 {
        s.apply(&progress(
            i as f64,
            1000,
            &[("local", figures(i, 0, 1.0, 0.1))],
        ));
    }
    let first = s.history.p95.iter().next().copied();
    assert!(first.is_some_and(|(x, _)| x < 10.0), "{first:?}");
    assert_eq!(s.history.p95.last().map(|p| p.0), Some(2_000.0));
}

/// The `Σ p95` column is the agent's p95 over the workload, never its last interval's:
/// without a total it stays empty, and the agents' rows (interval figures) leave it alone.
#[test]
fn agent_p95_is_never_an_interval_one() {
    let mut s = TuiState::new();
    s.apply(&started());
    let mut f = figures(10, 0, 10.0, 0.1);
    f.p95_total = None;
    s.apply(&progress(1.0, 1000, &[("agent-1", f.clone())]));
    assert_eq!(s.sources[0].p95, None);
    f.p95_total = Some(0.9);
    s.apply(&progress(2.0, 1000, &[("agent-1", f.clone())]));
    assert_eq!(s.sources[0].p95, Some(0.9));
    s.apply(&agents(vec![agent_row(
        "agent-1",
        InstanceState::Running,
        &figures(20, 0, 10.0, 0.01),
        0.1,
    )]));
    assert_eq!(s.sources[0].p95, Some(0.9));
}

/// Once every agent's load is over, results still on their way are said as such (not as a
/// stale "now" rate): the agents' last reports count for nothing per second any more.
#[test]
fn finished_agents_waiting_on_their_results_are_storing_not_running() {
    let mut s = TuiState::new();
    s.apply(&started());
    s.apply(&Event::WorkloadStarted(info(0, 1, None)));
    let f = figures(1000, 0, 500.0, 0.1);
    let step = |s: &mut TuiState, state: InstanceState, stored: u64| {
        s.apply(&agents(vec![
            agent_row("local-1", state, &f, 0.2),
            agent_row("local-2", state, &f, 0.2),
        ]));
        let Event::Progress(mut p) =
            progress(5.0, 2000, &[("local-1", f.clone()), ("local-2", f.clone())])
        else {
            unreachable!("a progress event");
        };
        p.stored = Some(stored);
        s.apply(&Event::Progress(p));
    };
    // Running: the stored count trails the agents' by a fetch; that is not "storing".
    step(&mut s, InstanceState::Running, 1500);
    assert_eq!(s.storing, None);
    step(&mut s, InstanceState::Done, 1500);
    assert_eq!(s.storing, Some((1500, 2000)));
    step(&mut s, InstanceState::Done, 2000);
    assert_eq!(s.storing, None);
}
