//! The runners against real scenarios: exact counts, order, stops, and an agent's share.
use super::*;
use crate::chunk::IterationRecord;
use crate::scenario::{ScenarioKind, ScenarioSpec};
use std::time::Duration;

fn scenario(name: &str, args: &str) -> Arc<Scenario> {
    let spec = ScenarioSpec::from_config(name, &Node::parse(args).unwrap()).unwrap();
    Arc::new(Scenario::new(spec.kind))
}

/// Run a runner to completion and return every record, in arrival order.
async fn run(
    spec: RunnerSpec,
    scenario: Arc<Scenario>,
    stop: CancellationToken,
) -> Vec<IterationRecord> {
    let (tx, mut rx) = mpsc::channel(16);
    let job = RunJob {
        scenario,
        source: Arc::from("local"),
        chunks: tx,
        stop,
        on_iteration: None,
        limits: ChunkLimits::default(),
        clock: Clock::new(),
        feed: None,
        live: None,
        committed: None,
        in_flight: Default::default(),
    };
    let runner = LocalRunner { spec };
    let collect = async move {
        let mut all = Vec::new();
        while let Some(chunk) = rx.recv().await {
            assert!(
                chunk
                    .records
                    .windows(2)
                    .all(|w| w[0].timestamp <= w[1].timestamp),
                "chunks are sorted"
            );
            assert!(chunk.len() <= 1000);
            all.extend(chunk.records);
        }
        all
    };
    let (result, records) = tokio::join!(runner.run(job), collect);
    result.unwrap();
    records
}

/// Iterations running at `t` (wall seconds).
fn running_at(records: &[IterationRecord], t: f64) -> usize {
    records
        .iter()
        .filter(|r| r.timestamp <= t && t < r.timestamp + r.duration)
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_closed_runner_on_an_agent_follows_its_share() {
    // An agent's share of the concurrency grows (another agent was lost) and shrinks
    // (it came back) while the workload runs: slots are added and retire, and a retiring
    // slot's unrun numbers are run by the others, each exactly once.
    let feed = Arc::new(feed::Feed::new(std::time::Instant::now()));
    feed.set_share(2);
    // Slots take 32 numbers at a time: enough are queued for the added ones.
    feed.push(1, 1, 1, 300);
    feed.end();
    let (tx, mut rx) = mpsc::channel(16);
    let job = RunJob {
        scenario: scenario("Dummy.dummy", "{sleep: 0.01}"),
        source: Arc::from("agent"),
        chunks: tx,
        stop: CancellationToken::new(),
        on_iteration: None,
        limits: ChunkLimits::default(),
        clock: Clock::new(),
        feed: Some(feed.clone()),
        live: None,
        committed: None,
        in_flight: Default::default(),
    };
    let runner = LocalRunner {
        spec: RunnerSpec::Constant {
            times: 300,
            concurrency: 2,
            timeout: None,
        },
    };
    let started = crate::clock::unix_now();
    let reshare = async {
        tokio::time::sleep(Duration::from_millis(150)).await;
        feed.set_share(4);
        tokio::time::sleep(Duration::from_millis(300)).await;
        feed.set_share(1);
    };
    let collect = async move {
        let mut all = Vec::new();
        while let Some(chunk) = rx.recv().await {
            all.extend(chunk.records);
        }
        all
    };
    let (result, (), records) = tokio::join!(runner.run(job), reshare, collect);
    result.unwrap();
    assert_eq!(numbers(&records), (1..=300).collect::<Vec<_>>());
    let most = records
        .iter()
        .map(|r| running_at(&records, r.timestamp))
        .max();
    assert_eq!(most, Some(4), "the share grew to 4");
    // Well after the share went down to 1 (a retiring slot ends its iteration first).
    let late: Vec<usize> = records
        .iter()
        .filter(|r| r.timestamp > started + 0.7)
        .map(|r| running_at(&records, r.timestamp))
        .collect();
    assert!(!late.is_empty() && late.iter().all(|&n| n == 1), "{late:?}");
}

fn numbers(records: &[IterationRecord]) -> Vec<u64> {
    let mut n: Vec<u64> = records.iter().map(|r| r.iteration).collect();
    n.sort_unstable();
    n
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn closed_runners_run_exactly_times_iterations_numbered_from_one() {
    let noop = scenario("Dummy.dummy", "{}");
    for spec in [
        RunnerSpec::Constant {
            times: 2500,
            concurrency: 7,
            timeout: None,
        },
        RunnerSpec::Serial { times: 17 },
        RunnerSpec::Constant {
            times: 3,
            concurrency: 3,
            timeout: Some(5.0),
        },
    ] {
        let times = spec.total_iterations().unwrap();
        let records = run(spec, noop.clone(), CancellationToken::new()).await;
        assert_eq!(numbers(&records), (1..=times).collect::<Vec<_>>());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn constant_for_duration_starts_at_least_one_per_slot() {
    let s = scenario("Dummy.dummy", "{sleep: 0.05}");
    let started = std::time::Instant::now();
    let records = run(
        RunnerSpec::ConstantForDuration {
            duration: 0.0,
            concurrency: 3,
            timeout: Some(600.0),
        },
        s.clone(),
        CancellationToken::new(),
    )
    .await;
    assert_eq!(numbers(&records), vec![1, 2, 3]);
    let records = run(
        RunnerSpec::ConstantForDuration {
            duration: 0.3,
            concurrency: 2,
            timeout: Some(600.0),
        },
        s,
        CancellationToken::new(),
    )
    .await;
    assert!(
        records.len() >= 6 && records.len() <= 16,
        "{}",
        records.len()
    );
    assert!(started.elapsed().as_secs_f64() < 2.0);
    assert_eq!(
        numbers(&records),
        (1..=records.len() as u64).collect::<Vec<_>>()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rps_follows_its_schedule_and_records_lateness() {
    let noop = scenario("Dummy.dummy", "{}");
    let records = run(
        RunnerSpec::Rps {
            times: 40,
            rate: Rate::Fixed(200.0),
            timeout: None,
            max_concurrency: 40,
        },
        noop,
        CancellationToken::new(),
    )
    .await;
    assert_eq!(numbers(&records), (1..=40).collect::<Vec<_>>());
    let mut by_number = records.clone();
    by_number.sort_by_key(|r| r.iteration);
    // The schedule's origin: iteration 1 was due then, and started `lateness` after it.
    let t0 = by_number[0].timestamp - by_number[0].lateness;
    for r in &by_number {
        // Never before its time (1 ms slack for clock reads).
        let due = t0 + (r.iteration - 1) as f64 / 200.0;
        assert!(
            r.timestamp >= due - 0.001,
            "iteration {} started {:.4}s early",
            r.iteration,
            due - r.timestamp
        );
        assert!(
            (r.timestamp - r.lateness - due).abs() < 0.001,
            "lateness is measured from the schedule"
        );
    }
    // One slot, 50 ms iterations, 100/s: the slot cannot keep up, so starts are late.
    let slow = scenario("Dummy.dummy", "{sleep: 0.05}");
    let records = run(
        RunnerSpec::Rps {
            times: 8,
            rate: Rate::Fixed(100.0),
            timeout: None,
            max_concurrency: 1,
        },
        slow,
        CancellationToken::new(),
    )
    .await;
    let last = records.iter().max_by_key(|r| r.iteration).unwrap();
    assert!(last.lateness > 0.2, "lateness {}", last.lateness);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_iteration_starts_after_stop() {
    let s = scenario("Dummy.dummy", "{sleep: 0.02}");
    for spec in [
        RunnerSpec::Constant {
            times: 1_000_000,
            concurrency: 4,
            timeout: None,
        },
        RunnerSpec::Rps {
            times: 1_000_000,
            rate: Rate::Fixed(500.0),
            timeout: None,
            max_concurrency: 100,
        },
    ] {
        let stop = CancellationToken::new();
        let stopper = stop.clone();
        let stopped_at = tokio::spawn(async move {
            tokio::time::sleep(std::time::Duration::from_millis(200)).await;
            stopper.cancel();
            crate::clock::unix_now()
        });
        let records = run(spec, s.clone(), stop).await;
        let stopped_at = stopped_at.await.unwrap();
        assert!(!records.is_empty());
        let last_start = records.iter().map(|r| r.timestamp).fold(0.0, f64::max);
        assert!(
            last_start <= stopped_at + 0.005,
            "started {:.4}s after the stop",
            last_start - stopped_at
        );
        assert!(
            records.iter().all(|r| r.error.is_none()),
            "in-flight iterations finish normally"
        );
    }
}

#[test]
fn scenario_kinds_know_when_they_wait() {
    let fast = ScenarioSpec::from_config("Dummy.dummy", &Node::parse("{}").unwrap()).unwrap();
    assert!(matches!(fast.kind, ScenarioKind::Dummy(_)) && !fast.kind.may_wait());
}

fn spec(name: &str, yaml: &str) -> Checked<RunnerSpec> {
    RunnerSpec::from_config(name, &Node::parse(yaml).unwrap(), false)
}

#[test]
fn rally_defaults_and_limits() {
    assert_eq!(
        spec("constant", "{}").unwrap(),
        RunnerSpec::Constant {
            times: 1,
            concurrency: 1,
            timeout: None
        }
    );
    let e = spec("constant", "{times: 2, concurrency: 3}").unwrap_err();
    assert!(
        e.message.starts_with("Parameter 'concurrency' means"),
        "{e}"
    );
    assert_eq!(spec("constant", "{times: 0}").unwrap_err().subpath, "times");
    assert_eq!(
        spec("constant", "{times: 1.5}").unwrap_err().subpath,
        "times"
    );
    assert_eq!(
        spec("constant", "{times: true}").unwrap_err().subpath,
        "times"
    );
    assert_eq!(spec("constant", "{foo: 1}").unwrap_err().subpath, "foo");
    assert_eq!(
        spec("constant_for_duration", "{duration: 1}").unwrap(),
        RunnerSpec::ConstantForDuration {
            duration: 1.0,
            concurrency: 1,
            timeout: Some(600.0)
        }
    );
    assert_eq!(
        spec("constant_for_duration", "{}").unwrap_err().subpath,
        "duration"
    );
    assert_eq!(
        spec("serial", "{times: 3, concurrency: 9}").unwrap(),
        RunnerSpec::Serial { times: 3 }
    );
    assert!(
        spec("nope", "{}")
            .unwrap_err()
            .message
            .contains("unknown runner 'nope'")
    );
    assert!(
        RunnerSpec::from_config(
            "constant",
            &Node::parse("{type: constant, times: 2}").unwrap(),
            true
        )
        .is_ok()
    );
}

#[test]
fn rps_validation_vectors_from_rally() {
    for ok in [
        "{times: 6, rps: {start: 1, end: 3, step: 1}}",
        "{times: 55, rps: {start: 1, end: 10, step: 1}}",
        "{times: 1, rps: {start: 1, end: 2, step: 1}}",
        "{times: 1, rps: 100, max_concurrency: 50, max_cpu_count: 8, timeout: 1}",
    ] {
        assert!(spec("rps", ok).is_ok(), "{ok}");
    }
    for (bad, path) in [
        ("{times: 1, rps: {start: 2, end: 1, step: 1}}", "rps.end"),
        ("{times: 1, rps: {start: 2, end: 1, step: 3}}", "rps.end"),
        ("{rps: 0.000001}", "times"),
        ("{times: 1, rps: 0}", "rps"),
        ("{times: 1, rps: 1, foo: 1}", "foo"),
    ] {
        assert_eq!(spec("rps", bad).unwrap_err().subpath, path, "{bad}");
    }
}
