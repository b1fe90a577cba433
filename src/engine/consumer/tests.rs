//! The consumer's published figures.

use super::*;
use crate::chunk::IterationRecord;
use crate::events::InstanceState;

fn record(i: u64, duration: f64) -> IterationRecord {
    IterationRecord::passed(i, i as f64, duration)
}

fn agent(name: &str) -> InstanceStatus {
    InstanceStatus {
        name: name.into(),
        host: "host".into(),
        state: InstanceState::Running,
        iterations: 100,
        failures: 0,
        recent: Arc::new(crate::sla::histogram::DurationHistogram::new()),
        // The last interval's: far from the workload's p95 (0.95 s).
        quantiles: Some([0.01, 0.02, 0.03, 0.04]),
        recent_seconds: 1.0,
        sla: None,
        heartbeat_age: None,
        clock_offset: None,
        in_flight: 0,
    }
}

/// A distributed workload's progress carries the p95 over the stored results, for all
/// agents and for each one, not just the last interval's.
#[test]
fn distributed_progress_has_the_stored_p95() {
    let info = WorkloadInfo {
        index: 0,
        count: 1,
        subtask: "subtask".into(),
        position: 0,
        scenario: "Dummy.dummy".into(),
        runner: "constant".into(),
        total: Some(100),
        expected_duration: None,
        target_rate: None,
        max_concurrency: None,
    };
    let mut c = Consumer::new(
        &EngineOptions::default(),
        &info,
        Arc::from(Vec::<String>::new()),
        &serde_json::Map::new(),
    );
    let mut chunk = Chunk::new(Arc::from("agent-1"));
    chunk.records = (1..=100).map(|i| record(i, i as f64 / 100.0)).collect();
    c.ingest(&chunk);
    c.upsert(vec![agent("agent-1"), agent("agent-2")]);
    let events = std::sync::Mutex::new(Vec::new());
    c.publish_figures(1.0, 1.0, &|e| events.lock().unwrap().push(e));
    let events = events.into_inner().unwrap();
    let Some(Event::Progress(p)) = events.iter().find(|e| matches!(e, Event::Progress(_))) else {
        panic!("no progress in {events:?}");
    };
    let near = |v: Option<f64>| v.is_some_and(|v| (v - 0.95).abs() < 0.01);
    assert!(near(p.all.p95_total), "{:?}", p.all.p95_total);
    assert_eq!(p.all.p95, None, "the interval's stays the merged reports'");
    assert!(near(p.sources[0].1.p95_total), "{:?}", p.sources);
    // No stored result yet for agent-2: no total, rather than its interval's.
    assert_eq!(p.sources[1].1.p95_total, None);
}

/// A finished or lost agent's last report is history: it adds nothing to the rate now.
#[test]
fn done_and_lost_agents_have_no_rate_now() {
    let mut a = agent("agent-1");
    let mut hist = crate::sla::histogram::DurationHistogram::new();
    for _ in 0..50 {
        hist.record_micros(10_000);
    }
    a.recent = Arc::new(hist);
    assert_eq!(Figures::from_instance(&a).rate, 50.0);
    a.state = InstanceState::Done;
    assert_eq!(Figures::from_instance(&a).rate, 0.0);
    a.state = InstanceState::Lost;
    assert_eq!(Figures::from_instance(&a).rate, 0.0);
}
