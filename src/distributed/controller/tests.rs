//! The controller's core driven by events on paused tokio time: no sockets, no processes,
//! no sleeps. Each test reads the actions the core asked for.

use std::sync::Arc;
use std::time::Duration;

use serde_json::{Map, json};
use tokio::time::advance;

use super::core::{Action, Core};
use super::workload::Begin;
use super::{Assignment, ControllerError, ControllerOptions};
use crate::chunk::cache::{ChunkKey, ChunkMeta};
use crate::chunk::{Chunk, IterationRecord, codec};
use crate::distributed::plan::Lease;
use crate::distributed::protocol::{AgentReport, Delivery, Register, ToAgent, ToController};
use crate::distributed::wire::hub::{ConnId, HubEvent};
use crate::events::InstanceState;
use crate::runner::RunnerSpec;

const RUN: &str = "run-1";
const WORKLOAD: u32 = 0;

fn options() -> ControllerOptions {
    ControllerOptions {
        liveness: Duration::from_secs(3),
        ..ControllerOptions::default()
    }
}

/// `constant` with `times` iterations, `concurrency` of them at once, on `agents` agents.
fn begin_times(core: &mut Core, agents: usize, times: u64, concurrency: u64) {
    core.begin(Begin {
        assignment: Assignment {
            run: RUN.into(),
            workload: WORKLOAD,
            scenario: "Dummy.dummy".into(),
            args: json!({}),
            inner: RunnerSpec::Constant {
                times,
                concurrency,
                timeout: None,
            },
            agents,
            sla: Map::new(),
        },
        live: false,
        listens: false,
        tracks_commits: true,
    });
}

fn begin(core: &mut Core, agents: usize, concurrency: u64) {
    begin_times(core, agents, 100, concurrency);
}

/// Agent `name` (its cache `cache`) registers on session `conn`, its results channel ready.
fn register(core: &mut Core, conn: ConnId, name: &str, cache: &str, cached: Vec<ChunkMeta>) {
    core.on_event(HubEvent::Registered {
        conn,
        register: Box::new(Register {
            name: name.into(),
            host: "host".into(),
            cores: 2,
            pid: 100 + conn as u32,
            boot: format!("boot-{conn}"),
            cache: cache.into(),
            version: "test".into(),
            cached,
        }),
        session: format!("session-{conn}"),
        peer: "127.0.0.1".into(),
    });
    core.on_event(HubEvent::ResultsReady { conn });
}

fn control(core: &mut Core, conn: ConnId, message: ToController) {
    core.on_event(HubEvent::Control { conn, message });
}

fn heard(core: &mut Core, conn: ConnId) {
    control(core, conn, ToController::Ping { sent: 0.0 });
}

fn meta(id: u64) -> ChunkMeta {
    ChunkMeta {
        id,
        key: ChunkKey {
            run: RUN.into(),
            workload: WORKLOAD,
        },
        records: 3,
        failures: 0,
        first_timestamp: 10.0,
        last_timestamp: 12.0,
        bytes: 0,
    }
}

fn report(chunks: Vec<ChunkMeta>, completed: Vec<u64>, done: bool) -> ToController {
    ToController::Report(Box::new(AgentReport {
        workload: WORKLOAD,
        iterations: 0,
        failures: 0,
        recent: Arc::default(),
        recent_seconds: 1.0,
        sla: None,
        completed,
        chunks,
        watermark: 1e9,
        done,
        paused: None,
        in_flight: 0,
    }))
}

/// A chunk of iterations `numbers`, one a second from t = 10 s.
fn chunk_bytes(numbers: &[u64]) -> Vec<u8> {
    let mut chunk = Chunk::new(Arc::from("agent"));
    for (k, &iteration) in numbers.iter().enumerate() {
        chunk
            .records
            .push(IterationRecord::passed(iteration, 10.0 + k as f64, 0.1));
    }
    codec::encode(&chunk)
}

fn sent(actions: &[Action]) -> Vec<(ConnId, &ToAgent)> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::Send { conn, message } => Some((*conn, message)),
            _ => None,
        })
        .collect()
}

fn leases(actions: &[Action]) -> Vec<(ConnId, Lease)> {
    sent(actions)
        .into_iter()
        .filter_map(|(conn, m)| match m {
            ToAgent::Lease { lease, .. } => Some((conn, lease.clone())),
            _ => None,
        })
        .collect()
}

fn stored(actions: &[Action]) -> Vec<(ConnId, Vec<u64>)> {
    sent(actions)
        .into_iter()
        .filter_map(|(conn, m)| match m {
            ToAgent::Stored { ids } => Some((conn, ids.clone())),
            _ => None,
        })
        .collect()
}

fn shares(actions: &[Action]) -> Vec<(ConnId, u64)> {
    sent(actions)
        .into_iter()
        .filter_map(|(conn, m)| match m {
            ToAgent::Share { share, .. } => Some((conn, *share)),
            _ => None,
        })
        .collect()
}

fn closed(actions: &[Action]) -> Vec<ConnId> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::Close { conn } => Some(*conn),
            _ => None,
        })
        .collect()
}

/// Carries out the core's storage actions as the loop would, storage taking every chunk;
/// returns the chunks handed over.
fn store_all(core: &mut Core, actions: Vec<Action>) -> Vec<Chunk> {
    let mut chunks = Vec::new();
    for action in actions {
        if let Action::Store { chunk, tag } = action {
            core.handed(tag);
            chunks.push(chunk);
        }
    }
    chunks
}

#[tokio::test(start_paused = true)]
async fn a_silent_agent_is_lost_just_past_the_liveness_timeout_and_its_lease_goes_to_another() {
    let mut core = Core::new(options(), 5556);
    register(&mut core, 1, "a", "cache-a", vec![]);
    register(&mut core, 2, "b", "cache-b", vec![]);
    begin(&mut core, 2, 2);
    control(
        &mut core,
        1,
        ToController::NeedWork {
            workload: WORKLOAD,
            want: 10,
        },
    );
    let given = leases(&core.take_actions());
    assert_eq!(given.len(), 1);
    let (conn, lease_a) = &given[0];
    assert_eq!(*conn, 1);

    // b keeps talking; a says nothing from now on.
    advance(Duration::from_millis(2999)).await;
    heard(&mut core, 2);
    core.housekeeping();
    advance(Duration::from_millis(1)).await;
    heard(&mut core, 2);
    core.housekeeping();
    core.heartbeat();
    let actions = core.take_actions();
    assert!(closed(&actions).is_empty(), "lost before the timeout");
    assert_eq!(core.live_count(), 2);

    advance(Duration::from_millis(1)).await;
    heard(&mut core, 2);
    core.housekeeping();
    let actions = core.take_actions();
    assert_eq!(
        closed(&actions),
        vec![1],
        "not lost once the timeout has passed"
    );
    assert!(actions.iter().any(|a| matches!(a, Action::Registered(1))));
    assert_eq!(core.live_count(), 1);

    control(
        &mut core,
        2,
        ToController::NeedWork {
            workload: WORKLOAD,
            want: 10,
        },
    );
    let given = leases(&core.take_actions());
    assert_eq!(given.len(), 1);
    let (conn, lease_b) = &given[0];
    assert_eq!(*conn, 2);
    assert_eq!(
        lease_b.iter().collect::<Vec<_>>(),
        lease_a.iter().collect::<Vec<_>>(),
        "a's unfinished numbers go first to b"
    );
    let active = core.active.as_ref().expect("the workload runs on");
    assert_eq!(active.outcome.reissued, 10);
    assert_eq!(active.outcome.lost, vec!["a".to_string()]);
}

#[tokio::test(start_paused = true)]
async fn a_chunk_is_confirmed_to_its_agent_only_once_storage_has_committed_it() {
    let mut core = Core::new(options(), 5556);
    register(&mut core, 1, "a", "cache-a", vec![]);
    begin(&mut core, 1, 1);
    control(
        &mut core,
        1,
        ToController::NeedWork {
            workload: WORKLOAD,
            want: 10,
        },
    );
    control(&mut core, 1, report(vec![meta(7)], vec![], false));
    core.pull();
    let actions = core.take_actions();
    let pulls: Vec<_> = actions
        .iter()
        .filter_map(|a| match a {
            Action::Pull { conn, ids, .. } => Some((*conn, ids.clone())),
            _ => None,
        })
        .collect();
    assert_eq!(pulls, vec![(1, vec![7])]);

    core.on_event(HubEvent::Delivery {
        conn: 1,
        delivery: Delivery::Chunk {
            id: 7,
            bytes: chunk_bytes(&[1, 2, 3]),
        },
    });
    core.release();
    let actions = core.take_actions();
    let handed = store_all(&mut core, actions);
    assert_eq!(handed.len(), 1);
    assert_eq!(handed[0].len(), 3);

    // Handed to storage, not committed yet: the agent must keep it.
    core.storage_committed(0);
    core.confirm();
    assert!(stored(&core.take_actions()).is_empty());

    core.storage_committed(1);
    core.confirm();
    assert_eq!(stored(&core.take_actions()), vec![(1, vec![7])]);
    // Once only.
    core.confirm();
    assert!(stored(&core.take_actions()).is_empty());
}

#[tokio::test(start_paused = true)]
async fn a_stop_reaches_every_live_member() {
    let mut core = Core::new(options(), 5556);
    for (conn, name) in [(1, "a"), (2, "b"), (3, "c")] {
        register(&mut core, conn, name, &format!("cache-{name}"), vec![]);
    }
    begin(&mut core, 3, 3);
    control(&mut core, 2, ToController::Bye);
    core.take_actions();
    assert!(core.stop_pending());

    core.stop();
    let actions = core.take_actions();
    let stops: Vec<ConnId> = sent(&actions)
        .into_iter()
        .filter(|(_, m)| matches!(m, ToAgent::Stop { workload: WORKLOAD }))
        .map(|(conn, _)| conn)
        .collect();
    assert_eq!(stops, vec![1, 3]);
    assert!(!core.stop_pending());
    let states: Vec<_> = core.agents.iter().map(|a| a.state).collect();
    assert_eq!(
        states,
        vec![
            InstanceState::Stopping,
            InstanceState::Lost,
            InstanceState::Stopping
        ]
    );
}

#[tokio::test(start_paused = true)]
async fn a_restarted_agents_cached_chunk_is_merged_once() {
    let mut core = Core::new(options(), 5556);
    register(&mut core, 1, "a", "cache-a", vec![]);
    begin(&mut core, 1, 1);
    control(
        &mut core,
        1,
        ToController::NeedWork {
            workload: WORKLOAD,
            want: 10,
        },
    );
    control(&mut core, 1, report(vec![meta(5)], vec![], false));
    core.pull();
    core.take_actions();
    core.on_event(HubEvent::Delivery {
        conn: 1,
        delivery: Delivery::Chunk {
            id: 5,
            bytes: chunk_bytes(&[1, 2, 3]),
        },
    });
    core.release();
    let actions = core.take_actions();
    let first = store_all(&mut core, actions);
    assert_eq!(first.len(), 1);

    // It restarts on the same cache before storage committed chunk 5, so it still holds it
    // and offers it again; its old session is over.
    register(&mut core, 2, "a", "cache-a", vec![meta(5)]);
    let actions = core.take_actions();
    assert_eq!(closed(&actions), vec![1]);
    assert!(
        sent(&actions)
            .iter()
            .any(|(conn, m)| *conn == 2 && matches!(m, ToAgent::Workload(_))),
        "it takes its share again"
    );
    core.pull();
    core.take_actions();
    core.on_event(HubEvent::Delivery {
        conn: 2,
        delivery: Delivery::Chunk {
            id: 5,
            bytes: chunk_bytes(&[1, 2, 3]),
        },
    });
    core.release();
    let actions = core.take_actions();
    // Nothing new in it: nothing more for storage, and the agent may delete it at once.
    assert_eq!(stored(&actions), vec![(2, vec![5])]);
    assert!(store_all(&mut core, actions).is_empty());
    let active = core.active.as_ref().expect("the workload runs on");
    assert_eq!(active.outcome.duplicates, 3);
    assert_eq!(active.released, 1);
}

#[tokio::test(start_paused = true)]
async fn shares_move_to_the_others_on_a_loss_and_back_on_a_return() {
    let mut core = Core::new(options(), 5556);
    for (conn, name) in [(1, "a"), (2, "b"), (3, "c")] {
        register(&mut core, conn, name, &format!("cache-{name}"), vec![]);
    }
    begin(&mut core, 3, 6);
    let orders: Vec<(ConnId, serde_json::Value)> = sent(&core.take_actions())
        .into_iter()
        .filter_map(|(conn, m)| match m {
            ToAgent::Workload(order) => Some((conn, order.runner.clone())),
            _ => None,
        })
        .collect();
    let shares_of = |runner: &serde_json::Value| runner["constant"]["concurrency"].as_u64();
    assert_eq!(orders.len(), 3);
    assert!(orders.iter().all(|(_, r)| shares_of(r) == Some(2)));

    // c is lost: its 2 slots go to a and b, one each.
    advance(Duration::from_secs(1)).await;
    control(&mut core, 3, ToController::Bye);
    let mut given = shares(&core.take_actions());
    given.sort();
    assert_eq!(given, vec![(1, 3), (2, 3)]);

    // c comes back on a new session: it takes 2 slots again, a and b go back to 2.
    advance(Duration::from_secs(1)).await;
    register(&mut core, 4, "c", "cache-c", vec![]);
    let actions = core.take_actions();
    let mut given = shares(&actions);
    given.sort();
    assert_eq!(given, vec![(1, 2), (2, 2)]);
    let back: Vec<_> = sent(&actions)
        .into_iter()
        .filter_map(|(conn, m)| match m {
            ToAgent::Workload(order) => Some((conn, shares_of(&order.runner), order.start_in)),
            _ => None,
        })
        .collect();
    assert_eq!(back.len(), 1);
    let (conn, share, start_in) = back[0];
    assert_eq!((conn, share), (4, Some(2)));
    // On the workload's clock: it began 2 s ago.
    assert!((start_in - (0.2 - 2.0)).abs() < 1e-6, "start_in {start_in}");

    let active = core.active.as_ref().expect("the workload runs on");
    assert!(active.outcome.lost.is_empty());
    assert_eq!(active.outcome.returned.len(), 1);
    assert_eq!(active.outcome.reshares.len(), 2);
}

#[tokio::test(start_paused = true)]
async fn a_workload_finishes_once_storage_has_committed_everything() {
    let mut core = Core::new(options(), 5556);
    register(&mut core, 1, "a", "cache-a", vec![]);
    begin_times(&mut core, 1, 3, 1);
    control(
        &mut core,
        1,
        ToController::NeedWork {
            workload: WORKLOAD,
            want: 10,
        },
    );
    let given = leases(&core.take_actions());
    assert_eq!(given.len(), 1);
    let lease = given[0].1.clone();
    assert_eq!(lease.iter().collect::<Vec<_>>(), vec![1, 2, 3]);
    control(&mut core, 1, report(vec![meta(1)], vec![lease.id], true));
    core.pull();
    core.take_actions();
    core.on_event(HubEvent::Delivery {
        conn: 1,
        delivery: Delivery::Chunk {
            id: 1,
            bytes: chunk_bytes(&[1, 2, 3]),
        },
    });
    assert!(core.take_may_finish());
    assert!(core.settle(), "done and delivered: settled");
    let actions = core.take_actions();
    assert!(
        sent(&actions)
            .iter()
            .any(|(conn, m)| *conn == 1 && matches!(m, ToAgent::End { workload: WORKLOAD })),
        "every number is stored: the agent is told the workload is over"
    );
    assert_eq!(store_all(&mut core, actions).len(), 1);

    // Storage has not committed it: the workload waits (the agent still holds the chunk).
    core.storage_committed(0);
    core.conclude(false);
    let actions = core.take_actions();
    assert!(!actions.iter().any(|a| matches!(a, Action::Finish(_))));
    assert!(core.active.is_some());

    core.storage_committed(1);
    core.conclude(false);
    let actions = core.take_actions();
    assert_eq!(stored(&actions), vec![(1, vec![1])]);
    let outcome = actions
        .into_iter()
        .find_map(|a| match a {
            Action::Finish(outcome) => Some(outcome),
            _ => None,
        })
        .expect("the workload is over");
    assert_eq!(outcome.agents, vec!["a".to_string()]);
    assert!(outcome.error.is_none() && outcome.lost.is_empty() && outcome.missing.is_empty());
    assert!(core.active.is_none());
    assert_eq!(core.agents[0].state, InstanceState::Done);
}

#[tokio::test(start_paused = true)]
async fn a_waiter_is_answered_when_enough_agents_came_or_its_time_is_up() {
    let mut core = Core::new(options(), 5556);
    let two = core.wait_for(2, Duration::from_secs(5));
    let three = core.wait_for(3, Duration::from_secs(5));
    register(&mut core, 1, "a", "cache-a", vec![]);
    assert!(
        !core
            .take_actions()
            .iter()
            .any(|a| matches!(a, Action::Answer { .. }))
    );
    advance(Duration::from_secs(1)).await;
    register(&mut core, 2, "b", "cache-b", vec![]);
    let answers: Vec<(u64, bool)> = core
        .take_actions()
        .into_iter()
        .filter_map(|a| match a {
            Action::Answer { waiter, result } => Some((waiter, result.is_ok())),
            _ => None,
        })
        .collect();
    assert_eq!(answers, vec![(two, true)]);

    advance(Duration::from_millis(3999)).await;
    heard(&mut core, 1);
    heard(&mut core, 2);
    core.housekeeping();
    assert!(
        !core
            .take_actions()
            .iter()
            .any(|a| matches!(a, Action::Answer { .. }))
    );
    advance(Duration::from_millis(1)).await;
    heard(&mut core, 1);
    heard(&mut core, 2);
    core.housekeeping();
    let answers: Vec<_> = core
        .take_actions()
        .into_iter()
        .filter_map(|a| match a {
            Action::Answer { waiter, result } => Some((waiter, result)),
            _ => None,
        })
        .collect();
    assert_eq!(answers.len(), 1);
    assert_eq!(answers[0].0, three);
    assert!(matches!(
        answers[0].1,
        Err(ControllerError::TooFewAgents {
            came: 2,
            wanted: 3,
            ..
        })
    ));
}

#[tokio::test(start_paused = true)]
async fn a_second_process_under_a_live_agents_name_is_refused() {
    let mut core = Core::new(options(), 5556);
    register(&mut core, 1, "a", "cache-a", vec![]);
    core.take_actions();
    register(&mut core, 2, "a", "cache-other", vec![]);
    let actions = core.take_actions();
    assert!(actions.iter().any(
        |a| matches!(a, Action::Refuse { conn: 2, reason } if reason.contains("already registered"))
    ));
    assert!(sent(&actions).is_empty(), "no welcome");
    assert!(closed(&actions).is_empty(), "the holder keeps its session");
    assert_eq!(core.live_count(), 1);
    assert_eq!(core.agents.len(), 1);
}

#[tokio::test(start_paused = true)]
async fn a_pull_that_could_not_be_queued_is_not_in_flight() {
    let mut core = Core::new(options(), 5556);
    register(&mut core, 1, "a", "cache-a", vec![]);
    begin(&mut core, 1, 1);
    control(&mut core, 1, report(vec![meta(1), meta(2)], vec![], false));
    core.pull();
    assert_eq!(core.agents[0].in_flight.len(), 2);
    core.pull_failed(0, &[1, 2]);
    assert!(core.agents[0].in_flight.is_empty());
    // No chunk is waited for any more, so none can make the agent lost.
    advance(Duration::from_secs(120)).await;
    heard(&mut core, 1);
    core.housekeeping();
    assert_eq!(core.live_count(), 1);
}

/// A chunk announced twice is asked for once: a failed second pull must not take the first,
/// still answerable, out of flight (its delivery would then be thrown away).
#[tokio::test(start_paused = true)]
async fn a_chunk_announced_twice_is_pulled_once() {
    let mut core = Core::new(options(), 5556);
    register(&mut core, 1, "a", "cache-a", vec![]);
    begin(&mut core, 1, 1);
    control(&mut core, 1, report(vec![meta(1)], vec![], false));
    core.pull();
    control(&mut core, 1, report(vec![meta(1)], vec![], false));
    core.pull();
    let pulled: Vec<Vec<u64>> = core
        .take_actions()
        .into_iter()
        .filter_map(|a| match a {
            Action::Pull { ids, .. } => Some(ids),
            _ => None,
        })
        .collect();
    assert_eq!(pulled, vec![vec![1]]);
    assert!(core.agents[0].in_flight.contains_key(&1));
}
