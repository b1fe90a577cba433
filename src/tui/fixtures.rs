//! Event fixtures shared by the state and render tests.

use crate::events::InstanceState;
use crate::events::{AgentRow, AgentsSnapshot, Event, Figures, Progress, WorkloadInfo};

pub fn info(index: usize, count: usize, total: Option<u64>) -> WorkloadInfo {
    WorkloadInfo {
        index,
        count,
        subtask: "subtask".into(),
        position: index,
        scenario: "Dummy.dummy".into(),
        runner: "constant".into(),
        total,
        expected_duration: None,
        target_rate: None,
        max_concurrency: None,
    }
}

pub fn figures(iterations: u64, failures: u64, rate: f64, p: f64) -> Figures {
    Figures {
        iterations,
        failures,
        rate,
        p50: Some(p),
        p95: Some(p * 1.5),
        p99: Some(p * 1.8),
        max: Some(p * 2.0),
        p95_total: Some(p * 1.5),
    }
}

pub fn started() -> Event {
    Event::TaskStarted {
        uuid: "6f1c2d3e-0000-4000-8000-000000000001".into(),
        title: "smoke test".into(),
        workloads: vec![info(0, 2, Some(1000)), info(1, 2, None)],
    }
}

fn omax(a: Option<f64>, b: Option<f64>) -> Option<f64> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.max(b)),
        (a, b) => a.or(b),
    }
}

pub fn progress(t: f64, total: u64, sources: &[(&str, Figures)]) -> Event {
    let mut all = Figures::default();
    for (_, f) in sources {
        all.iterations += f.iterations;
        all.failures += f.failures;
        all.rate += f.rate;
        all.p50 = omax(all.p50, f.p50);
        all.p95 = omax(all.p95, f.p95);
        all.p99 = omax(all.p99, f.p99);
        all.max = omax(all.max, f.max);
        all.p95_total = omax(all.p95_total, f.p95_total);
    }
    Event::Progress(Progress {
        workload: 0,
        elapsed: t,
        total: Some(total),
        all,
        sources: sources
            .iter()
            .map(|(n, f)| ((*n).to_owned(), f.clone()))
            .collect(),
        in_flight: None,
        stored: None,
    })
}

/// An agent's row as the controller reports it.
pub fn agent_row(name: &str, state: InstanceState, f: &Figures, heartbeat_age: f64) -> AgentRow {
    AgentRow {
        name: name.to_owned(),
        host: "loadgen-a".into(),
        state,
        iterations: f.iterations,
        failures: f.failures,
        rate: f.rate,
        p95: f.p95,
        heartbeat_age: Some(heartbeat_age),
        clock_offset: Some(0.0015),
    }
}

pub fn agents(rows: Vec<AgentRow>) -> Event {
    Event::Agents(AgentsSnapshot {
        workload: 0,
        agents: rows,
    })
}
