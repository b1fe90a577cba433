//! The session's protocol in paused time: no sockets, no processes, no sleeps.

use std::time::Duration;

use tokio::time::{Instant, advance};

use super::*;

const LIVENESS: Duration = Duration::from_secs(3);

fn timing() -> Timing {
    Timing {
        heartbeat: Duration::from_secs(1),
        liveness: LIVENESS,
        sla_interval: Duration::from_secs(1),
    }
}

fn now() -> Now {
    Now {
        at: Instant::now(),
        unix: 1_000.0,
    }
}

/// A session running workload 1 with a low-water mark of 4.
fn running() -> Core {
    let mut core = Core::new(timing(), Instant::now());
    // Before it runs, orders about it do nothing (not even move a lifeline).
    let stop = Event::Message(ToAgent::Stop { workload: 1 });
    assert!(core.on(stop, now()).is_empty());
    let started = Event::Started {
        workload: 1,
        low_water: 4,
    };
    assert!(core.on(started, now()).is_empty());
    core
}

fn stop(why: &str) -> Action {
    Action::Stop {
        why: Some(why.to_string()),
    }
}

#[tokio::test(start_paused = true)]
async fn a_silent_controller_is_given_up_exactly_at_the_liveness_timeout() {
    let mut core = running();
    let born = Instant::now();
    assert_eq!(core.deadline(), born + LIVENESS);
    // A millisecond before the deadline: heartbeats go on, nothing is given up.
    advance(LIVENESS - Duration::from_millis(1)).await;
    assert!(core.on(Event::Silence, now()).is_empty());
    assert!(matches!(
        core.on(Event::Heartbeat, now()).as_slice(),
        [Action::Send {
            message: ToController::Ping { .. },
            vital: true
        }]
    ));
    // At the deadline: the load stops and the session ends (the agent dials again).
    advance(Duration::from_millis(1)).await;
    assert_eq!(
        core.on(Event::Silence, now()),
        vec![stop(SILENT), Action::Exit(None)]
    );
}

#[tokio::test(start_paused = true)]
async fn hearing_the_controller_moves_the_deadline_and_the_runners_lifeline() {
    let mut core = running();
    advance(Duration::from_secs(2)).await;
    let ping = ToAgent::Ping { sent: 5.0 };
    assert_eq!(
        core.on(Event::Message(ping), now()),
        vec![
            Action::Heard,
            Action::Send {
                message: ToController::Pong {
                    echo: 5.0,
                    at: 1_000.0
                },
                vital: false
            }
        ]
    );
    assert_eq!(core.deadline(), Instant::now() + LIVENESS);
    // The old deadline passes quietly.
    advance(Duration::from_secs(2)).await;
    assert!(core.on(Event::Silence, now()).is_empty());
    assert!(core.on(Event::Heartbeat, now()).len() == 1);
}

#[tokio::test(start_paused = true)]
async fn a_frozen_agent_gives_up_on_waking_whatever_wakes_it() {
    for wake in [
        Event::Message(ToAgent::Ping { sent: 1.0 }),
        Event::Pull(vec![1]),
        Event::ReportDue,
        Event::Finished,
    ] {
        let mut core = running();
        advance(LIVENESS + Duration::from_millis(1)).await;
        // The backlog does not count as hearing the controller: no pong, no chunks.
        assert_eq!(
            core.on(wake, now()),
            vec![stop(RESUMED), Action::Exit(None)]
        );
    }
    // A heartbeat late past the deadline says the controller was silent.
    let mut core = running();
    advance(LIVENESS + Duration::from_millis(1)).await;
    assert_eq!(
        core.on(Event::Heartbeat, now()),
        vec![stop(SILENT), Action::Exit(None)]
    );
}

#[tokio::test(start_paused = true)]
async fn a_share_message_grows_and_shrinks_the_feeds_share() {
    let mut core = running();
    let share = |share, low_water| {
        Event::Message(ToAgent::Share {
            workload: 1,
            share,
            low_water,
        })
    };
    assert_eq!(
        core.on(share(8, 16), now()),
        vec![
            Action::Heard,
            Action::Share {
                share: 8,
                low_water: 16
            }
        ]
    );
    assert_eq!(
        core.on(share(2, 4), now()),
        vec![
            Action::Heard,
            Action::Share {
                share: 2,
                low_water: 4
            }
        ]
    );
    // Never to nothing: a share of 0 is 1.
    assert_eq!(
        core.on(share(0, 0), now()),
        vec![
            Action::Heard,
            Action::Share {
                share: 1,
                low_water: 1
            }
        ]
    );
    // Another workload's share is not this one's.
    let other = Event::Message(ToAgent::Share {
        workload: 2,
        share: 9,
        low_water: 9,
    });
    assert_eq!(core.on(other, now()), vec![Action::Heard]);
}

#[tokio::test(start_paused = true)]
async fn a_stop_reaches_the_runner_once() {
    let mut core = running();
    assert_eq!(
        core.on(Event::Message(ToAgent::Stop { workload: 2 }), now()),
        vec![Action::Heard],
        "another workload's stop"
    );
    assert_eq!(
        core.on(Event::Message(ToAgent::Stop { workload: 1 }), now()),
        vec![Action::Heard, Action::Stop { why: None }]
    );
    // Stopped already: the broken link stops nothing more.
    assert_eq!(core.on(Event::Closed, now()), vec![Action::Exit(None)]);
}

#[tokio::test(start_paused = true)]
async fn a_pull_is_answered_from_the_cache() {
    let mut core = Core::new(timing(), Instant::now());
    assert_eq!(
        core.on(Event::Pull(vec![3, 4]), now()),
        vec![Action::Serve(vec![3, 4])]
    );
    // Stored chunks leave the cache.
    assert_eq!(
        core.on(Event::Message(ToAgent::Stored { ids: vec![3] }), now()),
        vec![Action::Forget(vec![3])]
    );
}

#[tokio::test(start_paused = true)]
async fn work_is_asked_for_in_growing_leases_and_asked_again_when_unanswered() {
    let mut core = running();
    assert!(core.wants_work());
    let need = |want| Action::Send {
        message: ToController::NeedWork { workload: 1, want },
        vital: false,
    };
    // From the low-water mark, doubling, up to half a second of this agent's pace.
    assert_eq!(core.on(Event::Low { pace: 20.0 }, now()), vec![need(4)]);
    assert!(!core.wants_work(), "one request at a time");
    let lease = Lease {
        id: 1,
        first: 0,
        step: 1,
        count: 4,
    };
    core.on(Event::Message(ToAgent::Lease { workload: 1, lease }), now());
    assert!(core.wants_work(), "answered");
    assert_eq!(core.on(Event::Low { pace: 20.0 }, now()), vec![need(8)]);
    // Unanswered for a while: asked again at the next event.
    advance(ASK_AGAIN).await;
    core.on(Event::Heartbeat, now());
    assert!(!core.wants_work(), "not yet");
    advance(Duration::from_millis(1)).await;
    core.on(Event::Heartbeat, now());
    assert!(core.wants_work());
    assert_eq!(core.on(Event::Low { pace: 20.0 }, now()), vec![need(10)]);
}

#[tokio::test(start_paused = true)]
async fn reports_go_while_a_workload_runs_and_its_last_one_ends_it() {
    let mut core = Core::new(timing(), Instant::now());
    assert!(core.on(Event::ReportDue, now()).is_empty(), "nothing runs");
    let mut core = running();
    advance(Duration::from_millis(500)).await;
    assert_eq!(
        core.on(Event::ReportDue, now()),
        vec![Action::Report { vital: true }]
    );
    assert_eq!(core.last_report(), Instant::now());
    assert_eq!(
        core.on(Event::Finished, now()),
        vec![Action::Report { vital: true }]
    );
    core.on(Event::Reported { done: true }, now());
    assert!(!core.running());
    assert!(core.on(Event::ReportDue, now()).is_empty());
}

#[tokio::test(start_paused = true)]
async fn a_new_workload_stops_the_old_and_a_failed_one_is_reported() {
    let mut core = running();
    let order = WorkloadOrder {
        run: "r".into(),
        workload: 2,
        scenario: "Dummy.dummy".into(),
        args: serde_json::json!({}),
        runner: serde_json::json!({"constant": {"times": 1}}),
        sla: Default::default(),
        start_in: 0.0,
        low_water: 1,
    };
    assert_eq!(
        core.on(
            Event::Message(ToAgent::Workload(Box::new(order.clone()))),
            now()
        ),
        vec![
            Action::Heard,
            Action::Stop { why: None },
            Action::Start(Box::new(order))
        ]
    );
    let failed = Event::StartFailed {
        workload: 2,
        error: "no such scenario".into(),
    };
    assert_eq!(
        core.on(failed, now()),
        vec![Action::Send {
            message: ToController::Failed {
                workload: 2,
                error: "no such scenario".into()
            },
            vital: false
        }]
    );
}

#[tokio::test(start_paused = true)]
async fn shutdown_and_interrupt_end_the_agent() {
    let mut core = running();
    assert_eq!(
        core.on(Event::Message(ToAgent::Shutdown), now()),
        vec![
            Action::Heard,
            stop("the controller shut the run down"),
            Action::Exit(Some(AgentExit::Shutdown))
        ]
    );
    let mut core = running();
    assert_eq!(
        core.on(Event::Interrupted, now()),
        vec![
            stop("interrupted"),
            Action::Report { vital: false },
            Action::Send {
                message: ToController::Bye,
                vital: false
            },
            Action::Exit(Some(AgentExit::Interrupted))
        ]
    );
}
