//! Snapshot tests of whole screens: fixed event sequences rendered into ratatui's
//! `TestBackend` and compared with the `.snap` files in `snapshots/` (`cargo insta review`
//! after an intended change). Each screen is taken at 80×24 (the smallest supported, one
//! view at a time, narrow table) and 160×48 (all charts at once, every column).

use crossterm::event::KeyCode;
use ratatui::Terminal;
use ratatui::backend::TestBackend;

use super::fixtures::{agent_row, agents, figures, info, progress, started};
use super::render::draw;
use super::state::{TuiState, View};
use super::theme::{BUILTIN, Theme};
use crate::events::InstanceState;
use crate::events::{DistributedSummary, Event, Figures, SlaSnapshot, TaskStatus, WorkloadReport};
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

/// A criterion's row, with a detail in Rally's manner.
fn row(criterion: &str, value: f64, limit: f64) -> CriterionStatus {
    let success = value <= limit;
    CriterionStatus {
        criterion: criterion.into(),
        success,
        detail: format!(
            "{criterion} {value:.3} <= {limit} - {}",
            if success { "Passed" } else { "Failed" }
        ),
        value,
        limit,
        parts: Vec::new(),
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

/// How a scripted run goes.
#[derive(Clone, Copy)]
struct Script {
    /// Number of runner instances.
    sources: u64,
    /// Agents (with `Agents` events) rather than the one local runner.
    distributed: bool,
    /// Progress events (one per second).
    steps: u64,
    /// Scales every latency.
    slow: f64,
    /// The percentile criterion's limit, seconds.
    limit: f64,
    /// `(agent, step)`: that agent is lost from that step on.
    lost: Option<(u64, u64)>,
}

impl Script {
    fn local(steps: u64) -> Script {
        Script {
            sources: 1,
            distributed: false,
            steps,
            slow: 1.0,
            limit: 0.5,
            lost: None,
        }
    }

    fn agents(n: u64, steps: u64) -> Script {
        Script {
            sources: n,
            distributed: true,
            ..Script::local(steps)
        }
    }

    fn names(&self) -> Vec<String> {
        (1..=self.sources)
            .map(|k| {
                if self.distributed {
                    format!("local-{k}")
                } else {
                    "local".into()
                }
            })
            .collect()
    }

    fn state_of(&self, k: u64, i: u64) -> InstanceState {
        match self.lost {
            Some((agent, at)) if agent == k && i >= at => InstanceState::Lost,
            _ => InstanceState::Running,
        }
    }

    /// Agent `k`'s figures at step `i`: a lost agent's stay as it last reported them,
    /// as the controller keeps them.
    fn figures(&self, k: u64, i: u64) -> Figures {
        let at = match self.lost {
            Some((agent, at)) if agent == k => i.min(at.saturating_sub(1)),
            _ => i,
        };
        // A distributed run's totals come from the stored results, as a local run's.
        wave(at, k, self.slow)
    }

    /// The state after all steps, with SLA rows on the totals and per source.
    fn run(&self) -> TuiState {
        let mut s = TuiState::new();
        s.apply(&started());
        s.apply(&Event::WorkloadStarted(info(
            0,
            2,
            Some(2000 * self.sources),
        )));
        let names = self.names();
        for i in 1..=self.steps {
            let figs: Vec<(&str, Figures)> = names
                .iter()
                .zip(0..)
                .map(|(name, k)| (name.as_str(), self.figures(k, i)))
                .collect();
            if self.distributed {
                let rows = figs
                    .iter()
                    .zip(0..)
                    .map(|((name, f), k)| {
                        let state = self.state_of(k, i);
                        let age = match (state, self.lost) {
                            (InstanceState::Lost, Some((_, at))) => (i - at) as f64 + 3.2,
                            _ => 0.1 * ((i + k) % 9) as f64,
                        };
                        agent_row(name, state, f, age)
                    })
                    .collect();
                s.apply(&agents(rows));
            }
            s.apply(&progress(i as f64, 2000 * self.sources, &figs));
            if let Some((k, at)) = self.lost
                && i == at
            {
                s.apply(&Event::Log {
                    level: crate::events::Level::Warning,
                    message: format!(
                        "agent {} lost: nothing heard for 3.2 s; 260 unfinished iterations \
                         handed to the other agents",
                        names[k as usize]
                    ),
                });
            }
            if i % 10 == 0 {
                s.apply(&Event::Log {
                    level: if i % 20 == 0 {
                        crate::events::Level::Warning
                    } else {
                        crate::events::Level::Info
                    },
                    message: format!("{i} progress events in"),
                });
            }
        }
        let p95 = s.all.p95.unwrap_or(0.0);
        let rows = |fail: f64| {
            vec![
                row("failure_rate", fail, 5.0),
                row("max_percentile", p95, self.limit),
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
}

#[test]
fn one_local_source_running() {
    snapshot("one_source", &Script::local(40).run());
}

#[test]
fn one_agent_running() {
    snapshot("one_agent", &Script::agents(1, 40).run());
}

#[test]
fn sla_failing() {
    let mut s = Script {
        slow: 4.0,
        limit: 0.3,
        ..Script::agents(2, 40)
    }
    .run();
    s.view = View::Latency;
    assert!(s.sla.iter().any(|r| !r.success));
    snapshot("sla_failing", &s);
}

#[test]
fn many_agents() {
    let mut s = Script::agents(10, 30).run();
    s.selected = 3;
    s.view = View::Failures;
    snapshot("many_sources", &s);
}

#[test]
fn lost_agent() {
    let mut s = Script {
        lost: Some((1, 25)),
        ..Script::agents(4, 40)
    }
    .run();
    s.selected = 1;
    let screen = render(&s, &Theme::default(), 160, 48).backend().to_string();
    assert!(screen.contains("lost"), "{screen}");
    assert!(screen.contains("agents 3/4"), "{screen}");
    snapshot("lost_agent", &s);
}

/// After a stop, each agent's state shows until the workload is over; then the final
/// screen settles every agent (done or lost) and logs the outcome.
#[test]
fn stopping_then_aborted() {
    let script = Script {
        lost: Some((2, 20)),
        ..Script::agents(3, 30)
    };
    let mut s = script.run();
    s.on_key(KeyCode::Char('s'));
    s.on_key(KeyCode::Char('y'));
    let rows = (0..3u64)
        .map(|k| {
            let state = match k {
                0 => InstanceState::Done,
                1 => InstanceState::Stopping,
                _ => InstanceState::Lost,
            };
            agent_row(
                &format!("local-{}", k + 1),
                state,
                &script.figures(k, 31),
                0.2,
            )
        })
        .collect();
    s.apply(&agents(rows));
    snapshot("stopping", &s);
    s.apply(&Event::WorkloadFinished(Box::new(report(&s, true))));
    s.apply(&Event::TaskFinished {
        uuid: s.uuid.clone(),
        status: TaskStatus::Aborted,
        pass_sla: false,
    });
    snapshot("aborted_by_user", &s);
}

/// A workload's report as the engine sends it, with `local-3` lost.
fn report(s: &TuiState, aborted: bool) -> WorkloadReport {
    let mut sla = s.sla.clone();
    if aborted {
        sla.push(crate::sla::aborted_manually());
    }
    WorkloadReport {
        connections: None,
        runner_error: None,
        info: info(0, 2, Some(6000)),
        stats: crate::stats::WorkloadStats::new(Vec::new().into()).table(),
        pass_sla: sla.iter().all(|r| r.success),
        sla,
        iterations: s.all.iterations,
        failures: s.all.failures,
        load_duration: 30.0,
        full_duration: 31.0,
        start_time: None,
        hooks: Vec::new(),
        sources: s
            .sources
            .iter()
            .map(|r| crate::events::SourceFigures {
                name: r.name.clone(),
                iterations: r.iterations,
                failures: r.failures,
                p50: r.p95,
                p95: r.p95,
                p99: r.p95,
                lost: r.name == "local-3",
            })
            .collect(),
        errors: Vec::new(),
        distributed: Some(DistributedSummary {
            agents: s.sources.iter().map(|r| r.name.clone()).collect(),
            lost: vec!["local-3".into()],
            reissued: 260,
            duplicates: 0,
            missing: Vec::new(),
            returned: Vec::new(),
            reshares: Vec::new(),
        }),
    }
}

#[test]
fn stopping_confirmation() {
    let mut s = Script::agents(2, 20).run();
    s.on_key(KeyCode::Char('s'));
    snapshot("stop_confirm", &s);
}

#[test]
fn help_overlay() {
    let mut s = Script::local(20).run();
    s.on_key(KeyCode::Char('?'));
    snapshot("help", &s);
}

#[test]
fn finished() {
    let mut s = Script::local(40).run();
    s.apply(&Event::TaskFinished {
        uuid: s.uuid.clone(),
        status: TaskStatus::Finished,
        pass_sla: true,
    });
    snapshot("finished", &s);
}

#[test]
fn aborted_on_sla() {
    let mut s = Script {
        slow: 4.0,
        limit: 0.3,
        ..Script::agents(2, 40)
    }
    .run();
    s.apply(&Event::Stopping {
        reason: crate::events::StopCause::SlaFailure,
    });
    s.apply(&Event::TaskFinished {
        uuid: s.uuid.clone(),
        status: TaskStatus::Aborted,
        pass_sla: false,
    });
    snapshot("aborted_on_sla", &s);
}

/// The light theme's colours (the text snapshots carry none): every cell gets the palette's
/// text colour or a role colour, never the dark theme's white.
#[test]
fn light_theme_colours_every_cell() {
    let s = Script::agents(3, 20).run();
    let light = Theme::load("light").expect("built-in theme");
    let terminal = render(&s, &light, 80, 24);
    let white = ratatui::style::Color::White;
    assert!(
        terminal
            .backend()
            .buffer()
            .content()
            .iter()
            .all(|cell| cell.fg != white)
    );
}

/// Every theme, many sizes (including below the supported minimum), empty and crowded states:
/// drawing must never panic.
#[test]
fn never_panics() {
    let crowded = {
        let mut s = Script {
            lost: Some((7, 20)),
            ..Script::agents(100, 50)
        }
        .run();
        s.selected = 99;
        for _ in 0..300 {
            s.apply(&Event::Log {
                level: crate::events::Level::Error,
                message: "y".repeat(400),
            });
        }
        s
    };
    let mut popup = crowded.clone();
    popup.on_key(KeyCode::Char('s'));
    let states = [TuiState::new(), Script::local(3).run(), crowded, popup];
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

/// The selected agent stays visible when the table scrolls.
#[test]
fn selected_row_is_visible() {
    let mut s = Script::agents(100, 5).run();
    s.selected = 99;
    let terminal = render(&s, &Theme::default(), 200, 60);
    assert!(terminal.backend().to_string().contains("›local-100"));
}

/// The SLA panel shows every real criterion's value, 0 included (issue #6: the failure
/// rate at 0 % was blank).
#[test]
fn sla_values_at_zero_are_shown() {
    let mut s = Script::local(3).run();
    s.apply(&Event::Sla(SlaSnapshot {
        workload: 0,
        total: vec![row("failure_rate", 0.0, 0.0)],
        sources: Vec::new(),
    }));
    let screen = render(&s, &Theme::default(), 80, 24).backend().to_string();
    let line = screen
        .lines()
        .find(|l| l.contains("fail rate"))
        .unwrap_or_default();
    let words: Vec<&str> = line
        .split(['│', ' ', '"'])
        .filter(|w| !w.is_empty())
        .collect();
    assert_eq!(words[..5], ["fail", "rate", "0%", "0%", "PASS"], "{line}");
}

/// A live statistics table and errors, as the engine sends them every interval.
fn live_statistics(s: &mut TuiState) {
    let mut stats =
        crate::stats::WorkloadStats::new(vec!["foo".to_string(), "bar".to_string()].into());
    for i in 0..200u64 {
        let failed = i % 9 == 0;
        let mut chunk = crate::chunk::Chunk::new("local".into());
        chunk.actions.push(crate::chunk::ActionSpan {
            name: 0,
            depth: 0,
            failed: false,
            started_at: 0.0,
            finished_at: 0.05 + (i % 7) as f64 / 100.0,
        });
        chunk.actions.push(crate::chunk::ActionSpan {
            name: 1,
            depth: 1,
            failed,
            started_at: 0.0,
            finished_at: 0.02 + (i % 5) as f64 / 100.0,
        });
        chunk.records.push(crate::chunk::IterationRecord {
            iteration: i + 1,
            timestamp: i as f64,
            duration: 0.1 + (i % 11) as f64 / 100.0,
            idle_duration: 0.0,
            lateness: 0.0,
            error: failed.then(|| {
                Box::new(crate::chunk::IterationError::new(
                    if i % 2 == 0 {
                        "ConnectionError"
                    } else {
                        "Timeout"
                    },
                    "no response within 30s",
                ))
            }),
            output: None,
            actions: 0..2,
            dials: Default::default(),
        });
        stats.add_chunk(&chunk);
    }
    let mut errors = stats.errors.clone();
    errors.sort_by_key(|e| std::cmp::Reverse(e.count));
    s.apply(&Event::Statistics(Box::new(
        crate::events::LiveStatistics {
            workload: 0,
            table: stats.table(),
            by_source: vec![("local".into(), errors.clone())],
            errors,
            detail: None,
        },
    )));
}

#[test]
fn statistics_errors_and_workloads_panels() {
    let mut s = Script::local(20).run();
    live_statistics(&mut s);
    s.on_key(KeyCode::Char('v'));
    snapshot("statistics", &s);
    s.on_key(KeyCode::Char('e'));
    snapshot("errors", &s);
    // Workload 1 finished (SLA failed), workload 2 running: the list says both, and the
    // header carries the task's verdict so far while the SLA panel is workload 2's.
    let mut first = report(&s, false);
    first.pass_sla = false;
    s.apply(&Event::WorkloadFinished(Box::new(first)));
    let mut second = info(1, 2, Some(500));
    second.subtask = "second subtask".into();
    s.apply(&Event::WorkloadStarted(second));
    s.apply(&progress(1.0, 500, &[("local", figures(40, 0, 40.0, 0.1))]));
    s.on_key(KeyCode::Char('w'));
    snapshot("workloads", &s);
    // Enter on workload 1 shows its final charts and SLA panel again, and its statistics
    // behind `v`; Esc goes back to the live workload.
    s.on_key(KeyCode::Up);
    s.on_key(KeyCode::Enter);
    snapshot("inspected_workload", &s);
    s.on_key(KeyCode::Char('v'));
    let screen = render(&s, &Theme::default(), 160, 48).backend().to_string();
    assert!(
        screen.contains("Response Times · workload 1/2 (final)"),
        "{screen}"
    );
    s.on_key(KeyCode::Esc);
    let screen = render(&s, &Theme::default(), 160, 48).backend().to_string();
    assert!(
        screen.contains("task SLA so far FAIL (1 of 1 done)"),
        "{screen}"
    );
    assert!(screen.contains("workload 2/2"), "{screen}");
}

#[test]
fn below_80x24_says_the_terminal_is_too_small() {
    let s = Script::local(5).run();
    let terminal = render(&s, &Theme::default(), 60, 20);
    let screen = terminal.backend().to_string();
    assert!(
        screen.contains("terminal too small (60×20, needs 80×24)"),
        "{screen}"
    );
    insta::assert_snapshot!("too_small_60x20", terminal.backend());
}

/// An `rps` ramp: the throughput chart draws the schedule's target; the failure chart draws
/// the cumulative rate the SLA judges and the interval's under it.
#[test]
fn rps_target_and_cumulative_failure_rate() {
    let mut w = info(0, 1, Some(400));
    w.runner = "rps (times 400, rps 5→40/s, +5/s every 1 s, max_concurrency 200)".into();
    w.target_rate = Some(crate::runner::Rate::Ramp {
        start: 5.0,
        end: 40.0,
        step: 5.0,
        duration: 1.0,
    });
    w.expected_duration = Some(11.5);
    w.max_concurrency = Some(200);
    let mut s = TuiState::new();
    s.apply(&started());
    s.apply(&Event::WorkloadStarted(w));
    let mut done = 0;
    let mut failed = 0;
    for i in 1..=10u64 {
        let rate = (5.0 + 10.0 * i as f64).min(40.0) - 2.0;
        done += rate as u64;
        failed += u64::from(i == 4) * 8;
        s.apply(&progress(
            i as f64,
            400,
            &[("local", figures(done, failed, rate, 0.05))],
        ));
    }
    let mut last = progress(10.0, 400, &[("local", figures(done, failed, 38.0, 0.05))]);
    if let Event::Progress(p) = &mut last {
        p.in_flight = Some(37);
    }
    s.apply(&last);
    let screen = render(&s, &Theme::default(), 160, 48).backend().to_string();
    assert!(screen.contains("in flight 37/200"), "{screen}");
    assert_eq!(s.history.target.len(), 11);
    assert_eq!(s.history.failure_total.len(), 11);
    snapshot("rps_ramp", &s);
}

/// `max_percentile` with two percentiles: a row for each in the SLA panel, a line for each
/// on the latency chart, named in its legend; at 80×24 the legend is shortened, never cut.
#[test]
fn max_percentile_shows_a_row_and_a_line_per_percentile() {
    let mut s = Script {
        slow: 4.0,
        ..Script::local(30)
    }
    .run();
    s.view = View::Latency;
    let part = |name: &str, value: f64, limit: f64| crate::sla::CriterionPart {
        name: name.into(),
        value,
        limit,
        success: value <= limit,
    };
    let percentiles = CriterionStatus {
        parts: vec![part("p95", 0.354, 0.3), part("p99", 0.37, 0.38)],
        ..row("max_percentile", 0.354, 0.3)
    };
    s.apply(&Event::Sla(SlaSnapshot {
        workload: 0,
        total: vec![row("failure_rate", 3.1, 30.0), percentiles.clone()],
        sources: vec![("local".into(), vec![percentiles])],
    }));
    let wide = render(&s, &Theme::default(), 160, 48).backend().to_string();
    let row_of = |name: &str| {
        wide.lines()
            .find(|l| l.contains(&format!("│{name} ")))
            .unwrap_or_default()
            .to_owned()
    };
    assert!(row_of("p95").contains("354ms  300ms  FAIL"), "{wide}");
    assert!(row_of("p99").contains("370ms  380ms  PASS"), "{wide}");
    assert!(
        wide.contains("┄p95 300ms") && wide.contains("┄p99 380ms"),
        "{wide}"
    );
    snapshot("max_percentile_parts", &s);
}

/// With agents, `e` shows the selected agent's errors beside everyone's.
#[test]
fn errors_of_the_selected_agent_beside_everyones() {
    let mut s = Script::agents(2, 10).run();
    let error = |etype: &str, count| crate::stats::ErrorCount {
        etype: etype.into(),
        message: "boom".into(),
        count,
    };
    s.apply(&Event::Statistics(Box::new(
        crate::events::LiveStatistics {
            workload: 0,
            table: crate::stats::WorkloadStats::new(Vec::new().into()).table(),
            errors: vec![error("ValueError", 7), error("KeyError", 2)],
            by_source: vec![
                ("local-1".into(), vec![error("ValueError", 7)]),
                ("local-2".into(), vec![error("KeyError", 2)]),
            ],
            detail: None,
        },
    )));
    s.on_key(KeyCode::Char('e'));
    s.on_key(KeyCode::Down);
    let screen = render(&s, &Theme::default(), 160, 48).backend().to_string();
    assert!(screen.contains("errors · local-2"), "{screen}");
    // Everyone's first row beside local-2's only one.
    let first = screen
        .lines()
        .find(|l| l.contains("7        ValueError"))
        .unwrap_or_default();
    assert!(first.contains("2        KeyError"), "{screen}");
}

/// The header's p95 is the workload's (`p95 (all)`); when no total is known it shows the
/// last interval's under its own name, never under "(all)".
#[test]
fn header_p95_says_which_it_is() {
    let mut s = Script::local(3).run();
    let screen = render(&s, &Theme::default(), 160, 48).backend().to_string();
    assert!(screen.contains("p95 (all)"), "{screen}");
    s.all.p95_total = None;
    // The longer label fits the smallest full layout.
    let screen = render(&s, &Theme::default(), 80, 24).backend().to_string();
    assert!(!screen.contains("p95 (all)"), "{screen}");
    assert!(screen.contains("p95 (interval)"), "{screen}");
}

/// The workload list keeps its cursor on screen: 12 workloads at 80×24 (issue: the cursor
/// moved onto rows that were not drawn).
#[test]
fn workload_list_scrolls_to_the_cursor() {
    let mut s = Script::local(3).run();
    s.workloads = (0..12)
        .map(|i| {
            let mut w = info(i, 12, Some(10));
            w.subtask = format!("wl-{}", i + 1);
            w
        })
        .collect();
    s.on_key(KeyCode::Char('w'));
    for _ in 0..11 {
        s.on_key(KeyCode::Down);
    }
    assert_eq!(s.workload_cursor, 11);
    let screen = render(&s, &Theme::default(), 80, 24).backend().to_string();
    assert!(screen.contains("wl-12"), "{screen}");
    s.on_key(KeyCode::Home);
    let screen = render(&s, &Theme::default(), 80, 24).backend().to_string();
    assert!(screen.contains("wl-1 "), "{screen}");
}

/// The errors and Response Times panels scroll (↓ PgDn End … Home) when their rows do
/// not fit, and say which rows they show.
#[test]
fn errors_and_statistics_scroll() {
    let mut s = Script::local(3).run();
    let errors: Vec<crate::stats::ErrorCount> = (0..40)
        .map(|i| crate::stats::ErrorCount {
            etype: format!("Error{i:02}"),
            message: "boom".into(),
            count: 100 - i,
        })
        .collect();
    s.apply(&Event::Statistics(Box::new(
        crate::events::LiveStatistics {
            workload: 0,
            table: crate::stats::WorkloadStats::new(Vec::<String>::new().into()).table(),
            by_source: Vec::new(),
            errors,
            detail: None,
        },
    )));
    s.on_key(KeyCode::Char('e'));
    let screen = render(&s, &Theme::default(), 80, 24).backend().to_string();
    assert!(
        screen.contains("Error00") && !screen.contains("Error39"),
        "{screen}"
    );
    assert!(screen.contains("rows 1–"), "{screen}");
    s.on_key(KeyCode::End);
    let screen = render(&s, &Theme::default(), 80, 24).backend().to_string();
    assert!(
        screen.contains("Error39") && !screen.contains("Error00"),
        "{screen}"
    );
    assert!(screen.contains("of 40"), "{screen}");
    s.on_key(KeyCode::Home);
    let screen = render(&s, &Theme::default(), 80, 24).backend().to_string();
    assert!(screen.contains("Error00"), "{screen}");
    // Closing and opening again starts at the top.
    s.on_key(KeyCode::PageDown);
    s.on_key(KeyCode::Char('e'));
    s.on_key(KeyCode::Char('v'));
    assert_eq!(s.overlay_scroll, 0);
}

#[test]
fn the_header_says_results_are_being_stored_once_the_load_is_over() {
    let mut s = TuiState::new();
    s.apply(&started());
    s.apply(&Event::WorkloadStarted(info(0, 2, None)));
    s.storing = Some((1500, 2000));
    let terminal = render(&s, &Theme::default(), 160, 48);
    let text = format!("{}", terminal.backend());
    assert!(
        text.contains("load done, storing results 1500/2000"),
        "{text}"
    );
}
