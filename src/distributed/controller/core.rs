//! The controller's state machine: the agents table and the running workload, driven by
//! events (hub messages, commands, timer ticks, storage progress) and answering with
//! [`Action`]s in an [`Outbox`] that the serving loop carries out. Nothing here touches a
//! socket, a channel or a timer, so its tests feed it events on paused tokio time and read
//! what it asked for.

use std::collections::HashMap;
use std::time::Duration;

use tokio::time::Instant;

use super::agents::Agent;
use super::workload::Active;
use super::{ControllerError, ControllerOptions, WorkloadOutcome};
use crate::chunk::Chunk;
use crate::clock::unix_now;
use crate::distributed::plan::Lease;
use crate::distributed::protocol::{ToAgent, ToController};
use crate::distributed::wire::hub::{ConnId, HubEvent};
use crate::events::{InstanceState, Level, Notice};
use crate::runner::InstanceStatus;

/// What the core asks of the world, in the order it must happen.
#[derive(Debug)]
pub(super) enum Action {
    /// A control message to one agent's session.
    Send {
        conn: ConnId,
        message: ToAgent,
    },
    /// Ask an agent for chunks on its results channel. The loop reports a pull that could not
    /// be queued with [`Core::pull_failed`].
    Pull {
        agent: usize,
        conn: ConnId,
        ids: Vec<u64>,
    },
    /// Refuse a registered session before its welcome, with a reason for its agent.
    Refuse {
        conn: ConnId,
        reason: String,
    },
    /// Forget a session (its agent is lost).
    Close {
        conn: ConnId,
    },
    /// Hand a chunk to storage (awaiting room: the storage channel's backpressure), then
    /// report it with [`Core::handed`].
    Store {
        chunk: Chunk,
        tag: u64,
    },
    /// Numbers just leased, for the engine's iteration listener.
    Issued(Lease),
    Notice(Notice),
    /// Live statuses of the workload's members (or of one that just reported).
    Live(Vec<InstanceStatus>),
    /// Agents registered and alive now.
    Registered(usize),
    /// The answer to a `wait_for`.
    Answer {
        waiter: u64,
        result: Result<(), ControllerError>,
    },
    /// The workload is over (or could not begin): its outcome goes to the engine.
    Finish(WorkloadOutcome),
}

/// Where the core's actions wait for the loop.
#[derive(Debug, Default)]
pub(super) struct Outbox(Vec<Action>);

impl Outbox {
    pub(super) fn push(&mut self, action: Action) {
        self.0.push(action);
    }

    pub(super) fn send(&mut self, conn: ConnId, message: ToAgent) {
        self.0.push(Action::Send { conn, message });
    }

    /// Front ends show notices (the headless printer prints them, the TUI logs them).
    pub(super) fn notice(&mut self, level: Level, message: String) {
        self.0.push(Action::Notice(Notice { level, message }));
    }
}

/// Someone waiting for `agents` agents until `deadline`.
struct Waiter {
    id: u64,
    agents: usize,
    deadline: Instant,
    waited: Duration,
}

pub(super) struct Core {
    pub(super) options: ControllerOptions,
    /// The hub's results port, for the welcome.
    pub(super) results_port: u16,
    pub(super) agents: Vec<Agent>,
    pub(super) by_conn: HashMap<ConnId, usize>,
    pub(super) active: Option<Active>,
    waiters: Vec<Waiter>,
    next_waiter: u64,
    /// Agents that may have chunks to ask for (something was announced or delivered): `pull`
    /// looks at these instead of every agent after every message, which with thousands of
    /// agents cost O(agents) per message. The housekeeping tick still sweeps them all.
    pub(super) to_pull: Vec<usize>,
    /// Something happened that may settle the workload (a report, a delivery, a loss, a
    /// stop): `settle`, O(agents), runs after such events and on the housekeeping tick, not
    /// after every heartbeat.
    pub(super) may_finish: bool,
    pub(super) out: Outbox,
}

impl Core {
    pub(super) fn new(options: ControllerOptions, results_port: u16) -> Core {
        Core {
            options,
            results_port,
            agents: Vec::new(),
            by_conn: HashMap::new(),
            active: None,
            waiters: Vec::new(),
            next_waiter: 0,
            to_pull: Vec::new(),
            may_finish: false,
            out: Outbox::default(),
        }
    }

    /// What the core asked for since the last call, in order.
    pub(super) fn take_actions(&mut self) -> Vec<Action> {
        std::mem::take(&mut self.out.0)
    }

    pub(super) fn live_count(&self) -> usize {
        self.agents.iter().filter(|a| a.alive()).count()
    }

    /// True while a workload runs whose stop has not been sent: the loop watches the
    /// engine's stop for it.
    pub(super) fn stop_pending(&self) -> bool {
        self.active.as_ref().is_some_and(|a| !a.stop_sent)
    }

    /// Whether `settle` should run now (something happened that may end the workload).
    pub(super) fn take_may_finish(&mut self) -> bool {
        std::mem::take(&mut self.may_finish)
    }

    pub(super) fn on_event(&mut self, event: HubEvent) {
        match event {
            HubEvent::Registered {
                conn,
                register,
                session,
                peer,
            } => self.on_register(conn, *register, session, peer),
            HubEvent::ResultsReady { conn } => {
                if let Some(&i) = self.by_conn.get(&conn) {
                    self.agents[i].results_ready = true;
                    self.to_pull.push(i);
                }
            }
            HubEvent::Rejected { peer, reason } => {
                self.out.notice(
                    Level::Warning,
                    format!("refused a frame from {peer}: {reason}"),
                );
            }
            HubEvent::Control { conn, message } => {
                let Some(&i) = self.by_conn.get(&conn) else {
                    return;
                };
                self.agents[i].last_heard = Instant::now();
                self.on_control(i, message);
            }
            HubEvent::Delivery { conn, delivery } => {
                let Some(&i) = self.by_conn.get(&conn) else {
                    return;
                };
                self.agents[i].last_heard = Instant::now();
                self.on_delivery(i, delivery);
                self.to_pull.push(i);
                self.may_finish = true;
            }
        }
    }

    fn on_control(&mut self, i: usize, message: ToController) {
        match message {
            ToController::Register(_) => {}
            ToController::Ping { sent } => {
                self.out
                    .send(self.agents[i].conn, ToAgent::Pong { echo: sent });
            }
            ToController::Pong { echo, at } => {
                let now = unix_now();
                let rtt = (now - echo).max(0.0);
                let offset = at - (echo + rtt / 2.0);
                let a = &mut self.agents[i];
                // Keep the sample with the smallest round trip: its midpoint is the tightest.
                if a.offset.is_none_or(|(best, _)| rtt <= best * 1.5) {
                    a.offset = Some((rtt, offset));
                }
            }
            ToController::NeedWork { workload, want } => {
                if self.is_member(i, workload) {
                    self.agents[i].waiting = Some(want.max(1));
                    self.serve_waiting();
                }
            }
            ToController::Report(report) => {
                self.on_report(i, *report);
                self.to_pull.push(i);
                self.may_finish = true;
            }
            ToController::Failed { workload, error } => {
                if self.is_member(i, workload) {
                    let name = self.agents[i].name.clone();
                    self.out.notice(
                        Level::Error,
                        format!("agent {name} could not run workload {workload}: {error}"),
                    );
                    self.lose(i, &format!("workload failed to start: {error}"));
                }
            }
            ToController::Bye => {
                self.lose(i, "it left (interrupted)");
                self.may_finish = true;
            }
        }
    }

    /// Someone waits for `agents` live agents, for at most `timeout`; the answer comes as
    /// [`Action::Answer`] with the returned id (maybe at once).
    pub(super) fn wait_for(&mut self, agents: usize, timeout: Duration) -> u64 {
        self.next_waiter += 1;
        let id = self.next_waiter;
        self.waiters.push(Waiter {
            id,
            agents,
            deadline: Instant::now() + timeout,
            waited: timeout,
        });
        self.check_waiters();
        self.may_finish = true;
        id
    }

    pub(super) fn check_waiters(&mut self) {
        let live = self.live_count();
        let now = Instant::now();
        let mut keep = Vec::new();
        for w in self.waiters.drain(..) {
            if live >= w.agents {
                self.out.push(Action::Answer {
                    waiter: w.id,
                    result: Ok(()),
                });
            } else if now >= w.deadline {
                self.out.push(Action::Answer {
                    waiter: w.id,
                    result: Err(ControllerError::TooFewAgents {
                        came: live,
                        wanted: w.agents,
                        waited: w.waited,
                    }),
                });
            } else {
                keep.push(w);
            }
        }
        self.waiters = keep;
    }

    /// The heartbeat: lose the silent, ping the others.
    pub(super) fn heartbeat(&mut self) {
        let now = unix_now();
        self.lose_silent();
        for a in self.agents.iter().filter(|a| a.alive()) {
            self.out.send(a.conn, ToAgent::Ping { sent: now });
        }
    }

    /// The housekeeping tick (every 50 ms): answer waiters whose time is up, lose the
    /// silent, and look at every agent for chunks to pull and at the workload's end.
    pub(super) fn housekeeping(&mut self) {
        self.check_waiters();
        self.lose_silent();
        self.to_pull.extend(0..self.agents.len());
        self.may_finish = true;
    }

    /// The engine stopped the workload: every live member is told.
    pub(super) fn stop(&mut self) {
        self.may_finish = true;
        let Some(active) = &mut self.active else {
            return;
        };
        active.stop_sent = true;
        for &i in &active.members {
            let a = &mut self.agents[i];
            if a.alive() {
                self.out.send(
                    a.conn,
                    ToAgent::Stop {
                        workload: active.assignment.workload,
                    },
                );
                if !a.done {
                    a.state = InstanceState::Stopping;
                }
            }
        }
        self.publish_live();
    }

    /// The run is over: every live agent is told.
    pub(super) fn shutdown(&mut self) {
        for a in self.agents.iter().filter(|a| a.alive()) {
            self.out.send(a.conn, ToAgent::Shutdown);
        }
    }

    /// The members' live statuses, when the engine wants them.
    pub(super) fn publish_live(&mut self) {
        let Some(active) = &self.active else {
            return;
        };
        if active.live {
            let statuses = self.statuses(&active.members);
            self.out.push(Action::Live(statuses));
        }
    }

    /// The live statuses of `members`, in their order.
    pub(super) fn statuses(&self, members: &[usize]) -> Vec<InstanceStatus> {
        members.iter().map(|&i| self.agents[i].status()).collect()
    }
}
