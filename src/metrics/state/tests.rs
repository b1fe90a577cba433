use super::*;
use crate::events::{AgentsSnapshot, LiveStatistics, Progress, StatisticsDetail, TaskStatus};

fn info(index: usize) -> WorkloadInfo {
    WorkloadInfo {
        index,
        count: 2,
        subtask: "sub".into(),
        position: index,
        scenario: "Dummy.dummy".into(),
        runner: "constant (times 10, concurrency 2)".into(),
        total: Some(10),
        expected_duration: None,
        target_rate: None,
        max_concurrency: None,
    }
}

fn started() -> RunMetrics {
    let mut m = RunMetrics::default();
    m.apply(&Event::TaskStarted {
        uuid: "u".into(),
        title: "t".into(),
        workloads: vec![info(0), info(1)],
    });
    m
}

fn figures(iterations: u64, failures: u64, rate: f64) -> Figures {
    Figures {
        iterations,
        failures,
        rate,
        ..Figures::default()
    }
}

fn row(name: &str, iterations: u64, state: InstanceState) -> AgentRow {
    AgentRow {
        name: name.into(),
        host: "h".into(),
        state,
        iterations,
        failures: 1,
        rate: 2.0,
        p95: None,
        heartbeat_age: None,
        clock_offset: None,
    }
}

fn buckets(values: &[f64]) -> DurationBuckets {
    let mut m = crate::stats::Metric::default();
    for v in values {
        m.add(*v, true);
    }
    DurationBuckets::from_metric(&m)
}

#[test]
fn run_state_follows_the_task() {
    let mut m = RunMetrics::default();
    assert_eq!(m.state, RunState::Starting);
    m = started();
    assert_eq!((m.state, m.task.as_str()), (RunState::Running, "u"));
    m.apply(&Event::Stopping {
        reason: crate::events::StopCause::SlaFailure,
    });
    assert_eq!(m.state, RunState::Stopping);
    m.apply(&Event::TaskFinished {
        uuid: "u".into(),
        status: TaskStatus::Aborted,
        pass_sla: false,
    });
    assert_eq!(m.state, RunState::Aborted);
}

#[test]
fn counters_take_totals_and_never_go_down() {
    let mut m = started();
    m.apply(&Event::Count {
        workload: 1,
        elapsed: 1.0,
        iterations: 7,
        failures: 2,
    });
    // An older, lower figure (the stored count lagging the agents' reports).
    m.apply(&Event::Progress(Progress {
        workload: 1,
        elapsed: 1.0,
        total: Some(10),
        all: figures(5, 1, 3.5),
        sources: vec![("local".into(), figures(5, 1, 3.5))],
        in_flight: Some(3),
        stored: None,
    }));
    let w = &m.workloads[1];
    assert_eq!((w.finished, w.failed, w.started), (7, 2, 10));
    assert_eq!((w.rate, w.in_flight), (3.5, Some(3)));
    assert_eq!(m.workloads[0].finished, 0);
    // Events for a workload nobody announced are ignored, not a panic.
    m.apply(&Event::Count {
        workload: 9,
        elapsed: 1.0,
        iterations: 1,
        failures: 0,
    });
}

#[test]
fn agents_beyond_the_cap_are_summed_as_other() {
    let mut m = started();
    let rows: Vec<AgentRow> = (0..AGENT_SERIES + 3)
        .rev()
        .map(|i| {
            let state = if i == 0 {
                InstanceState::Lost
            } else {
                InstanceState::Running
            };
            row(&format!("agent-{i:04}"), 10, state)
        })
        .collect();
    m.apply(&Event::Agents(AgentsSnapshot {
        workload: 0,
        agents: rows,
    }));
    let w = &m.workloads[0];
    let series = w.agent_series();
    assert_eq!(series.len(), AGENT_SERIES + 1);
    // The first by name get their own series, whatever order they came in.
    assert_eq!(series[0].0, "agent-0000");
    assert_eq!(
        series[AGENT_SERIES - 1].0,
        format!("agent-{:04}", AGENT_SERIES - 1)
    );
    let (name, other) = &series[AGENT_SERIES];
    assert_eq!(*name, OTHER_AGENT);
    assert_eq!((other.finished, other.failed, other.rate), (30, 3, 6.0));
    let states = w.agent_states.as_ref().unwrap();
    assert_eq!(states.get("running"), Some(&(AGENT_SERIES as u64 + 2)));
    assert_eq!(states.get("lost"), Some(&1));
}

#[test]
fn statistics_detail_fills_histograms_and_failure_types() {
    let mut m = started();
    let detail = StatisticsDetail {
        duration: buckets(&[0.002, 0.2, 3.0]),
        actions: vec![("a".into(), buckets(&[0.2]))],
        sources: vec![
            SourceDetail {
                name: "b".into(),
                duration: buckets(&[0.002]),
                failures_by_type: vec![("HTTPError".into(), 2)],
                in_flight: Some(4),
            },
            SourceDetail {
                name: "a".into(),
                duration: buckets(&[0.2, 3.0]),
                failures_by_type: vec![("HTTPError".into(), 1), ("Timeout".into(), 5)],
                in_flight: None,
            },
        ],
    };
    m.apply(&Event::Statistics(Box::new(LiveStatistics {
        workload: 0,
        table: crate::stats::WorkloadStats::new(Vec::new().into()).table(),
        errors: Vec::new(),
        by_source: Vec::new(),
        detail: Some(Box::new(detail)),
    })));
    let w = &m.workloads[0];
    assert_eq!(w.duration.count, 3);
    assert_eq!(w.actions["a"].count, 1);
    let types = w.failures_by_type();
    assert_eq!((types["HTTPError"], types["Timeout"]), (3, 5));
    assert_eq!(w.named, vec!["a".to_string(), "b".to_string()]);
    assert_eq!((w.agents["b"].in_flight, w.agents["b"].started), (4, 4));
    // Statistics without detail (no --metrics-listen) change nothing.
    let before = m.clone();
    m.apply(&Event::Statistics(Box::new(LiveStatistics {
        workload: 0,
        table: crate::stats::WorkloadStats::new(Vec::new().into()).table(),
        errors: Vec::new(),
        by_source: Vec::new(),
        detail: None,
    })));
    assert_eq!(m, before);
}

#[test]
fn buckets_are_cumulative_with_bounds_inclusive() {
    let b = buckets(&[0.001, 0.0011, 0.3, 400.0]);
    assert_eq!(b.count, 4);
    let at = |bound: f64| b.buckets.iter().find(|(le, _)| *le == bound).unwrap().1;
    assert_eq!(at(0.001), 1);
    assert_eq!(at(0.0025), 2);
    assert_eq!(at(0.25), 2);
    assert_eq!(at(0.5), 3);
    // Longer than the last bound: only in +Inf (the count).
    assert_eq!(at(300.0), 3);
    assert!((b.sum - 400.3021).abs() < 1e-9);
}

#[test]
fn sla_parts_become_one_gauge_each() {
    let mut m = started();
    let part = |name: &str, value: f64, success: bool| crate::sla::CriterionPart {
        name: name.into(),
        value,
        limit: 1.0,
        success,
    };
    m.apply(&Event::Sla(SlaSnapshot {
        workload: 0,
        total: vec![
            CriterionStatus {
                criterion: "failure_rate".into(),
                success: true,
                detail: String::new(),
                value: 2.0,
                limit: 10.0,
                parts: Vec::new(),
            },
            CriterionStatus {
                criterion: "max_percentile".into(),
                success: false,
                detail: String::new(),
                value: 1.5,
                limit: 1.0,
                parts: vec![part("p50", 0.5, true), part("p99", 1.5, false)],
            },
        ],
        sources: Vec::new(),
    }));
    let sla = &m.workloads[0].sla;
    assert_eq!(sla.len(), 3);
    assert_eq!((sla[0].part.as_str(), sla[0].value), ("", 2.0));
    assert_eq!((sla[2].part.as_str(), sla[2].success), ("p99", false));
}

fn source(name: &str, lost: bool) -> crate::events::SourceFigures {
    crate::events::SourceFigures {
        name: name.into(),
        iterations: 10,
        failures: 1,
        p50: None,
        p95: None,
        p99: None,
        lost,
    }
}

/// No agents snapshot follows a workload's end: its agents settle to done, or lost as
/// the report says, rather than stay `running` / `stopping` on /metrics.
#[test]
fn agents_settle_when_the_workload_ends() {
    let mut m = started();
    m.apply(&Event::Agents(AgentsSnapshot {
        workload: 0,
        agents: vec![
            row("a", 10, InstanceState::Running),
            row("b", 10, InstanceState::Stopping),
            row("c", 10, InstanceState::Running),
        ],
    }));
    m.apply(&Event::WorkloadFinished(Box::new(
        crate::events::WorkloadReport {
            connections: None,
            info: info(0),
            stats: crate::stats::WorkloadStats::new(Vec::new().into()).table(),
            pass_sla: true,
            sla: Vec::new(),
            iterations: 30,
            failures: 3,
            load_duration: 1.0,
            full_duration: 1.0,
            start_time: None,
            hooks: Vec::new(),
            sources: vec![source("a", false), source("b", false), source("c", true)],
            errors: Vec::new(),
            distributed: None,
            runner_error: None,
        },
    )));
    let w = &m.workloads[0];
    let states = w.agent_states.as_ref().unwrap();
    assert_eq!(states.get("done"), Some(&2), "{states:?}");
    assert_eq!(states.get("lost"), Some(&1), "{states:?}");
    assert_eq!(states.get("running"), None, "{states:?}");
    assert_eq!(states.get("stopping"), None, "{states:?}");
    assert_eq!(w.agents["c"].state, Some(InstanceState::Lost));
}

/// Each agent keeps its first 20 error types, but 30 agents with different ones must
/// not make 30 series: the union is capped the same way, the rest under `other`, in the
/// workload's family and the per-agent one.
#[test]
fn failure_types_are_capped_over_all_agents() {
    let mut m = started();
    let sources: Vec<SourceDetail> = (0..30)
        .map(|i| SourceDetail {
            name: format!("agent-{i:02}"),
            duration: buckets(&[0.1]),
            failures_by_type: vec![(format!("Error{i:02}"), 2)],
            in_flight: None,
        })
        .collect();
    m.apply(&Event::Statistics(Box::new(LiveStatistics {
        workload: 0,
        table: crate::stats::WorkloadStats::new(Vec::new().into()).table(),
        errors: Vec::new(),
        by_source: Vec::new(),
        detail: Some(Box::new(StatisticsDetail {
            duration: buckets(&[0.1]),
            actions: Vec::new(),
            sources,
        })),
    })));
    let w = &m.workloads[0];
    let types = w.failures_by_type();
    let limit = crate::stats::ERROR_KINDS;
    assert_eq!(types.len(), limit + 1, "{types:?}");
    assert_eq!(types.get("Error00"), Some(&2));
    assert_eq!(types.get("Error29"), None);
    assert_eq!(
        types.get(crate::engine::OTHER_TYPE),
        Some(&(2 * (30 - limit as u64)))
    );
    assert_eq!(types.values().sum::<u64>(), 60);
    let per_agent: std::collections::BTreeSet<String> = w
        .agent_series()
        .into_iter()
        .flat_map(|(_, v)| v.failures_by_type.into_keys())
        .collect();
    assert_eq!(per_agent.len(), limit + 1, "{per_agent:?}");
}
