//! The controller's task: it only moves things between the [`Core`] and the world. Hub
//! events, the engine's commands, the timers and storage's progress go in; the core's
//! actions come out and are carried out here (messages to agents through the hub, chunks to
//! storage, statuses and notices to the engine, replies).
//!
//! Handing a chunk to storage awaits room in its bounded channel: a slow store holds the
//! controller back (and so the pulls), as it should.

use std::collections::HashMap;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot, watch};
use tokio_util::sync::CancellationToken;

use super::core::{Action, Core};
use super::workload::Begin;
use super::{Command, ControllerError, ControllerOptions, Notice, WorkloadOutcome};
use crate::chunk::Chunk;
use crate::distributed::protocol::Pull;
use crate::distributed::wire::hub::{Hub, Inbound};
use crate::runner::{InstanceStatus, IterationListener};

/// The running workload's ends towards the engine.
struct Engine {
    chunks: mpsc::Sender<Chunk>,
    live: Option<mpsc::UnboundedSender<Vec<InstanceStatus>>>,
    stop: CancellationToken,
    on_iteration: Option<IterationListener>,
    committed: Option<watch::Receiver<u64>>,
    reply: oneshot::Sender<WorkloadOutcome>,
}

pub(super) struct Serve {
    core: Core,
    hub: Hub,
    registered: watch::Sender<usize>,
    notices: mpsc::UnboundedSender<Notice>,
    waiters: HashMap<u64, oneshot::Sender<Result<(), ControllerError>>>,
    engine: Option<Engine>,
}

impl Serve {
    pub(super) fn new(
        hub: Hub,
        options: ControllerOptions,
        registered: watch::Sender<usize>,
        notices: mpsc::UnboundedSender<Notice>,
    ) -> Serve {
        Serve {
            core: Core::new(options, hub.results_port),
            hub,
            registered,
            notices,
            waiters: HashMap::new(),
            engine: None,
        }
    }

    pub(super) async fn run(
        mut self,
        mut events: mpsc::Receiver<Inbound>,
        mut commands: mpsc::Receiver<Command>,
    ) {
        let options = &self.core.options;
        let mut heartbeat = tokio::time::interval(options.heartbeat);
        let mut report = tokio::time::interval(options.sla_interval);
        report.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut housekeeping = tokio::time::interval(Duration::from_millis(50));
        housekeeping.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let stop = match &self.engine {
                Some(e) if self.core.stop_pending() => Some(e.stop.clone()),
                _ => None,
            };
            let stopped = async {
                match stop {
                    Some(stop) => stop.cancelled().await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                event = events.recv() => match event {
                    // The message's credit is given back when `inbound` drops, after this.
                    Some(inbound) => {
                        self.core.on_event(inbound.event);
                        self.carry_out().await;
                    }
                    None => return,
                },
                command = commands.recv() => match command {
                    Some(Command::Shutdown { reply }) => {
                        self.core.shutdown();
                        self.carry_out().await;
                        // Give the outboxes a moment to flush.
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        let _ = reply.send(());
                        return;
                    }
                    Some(command) => self.on_command(command).await,
                    None => return,
                },
                () = stopped => self.core.stop(),
                _ = heartbeat.tick() => self.core.heartbeat(),
                _ = report.tick() => self.core.publish_live(),
                _ = housekeeping.tick() => self.core.housekeeping(),
            }
            self.carry_out().await;
            self.core.pull();
            self.core.release();
            self.carry_out().await;
            // Confirm to agents what storage has committed since (the housekeeping tick makes
            // sure that happens within 50 ms when nothing else is going on).
            self.storage_progress();
            self.core.confirm();
            if self.core.take_may_finish() && self.core.settle() {
                self.carry_out().await;
                self.storage_progress();
                let closed = self.engine.as_ref().is_none_or(|e| e.chunks.is_closed());
                self.core.conclude(closed);
            }
            self.carry_out().await;
        }
    }

    async fn on_command(&mut self, command: Command) {
        match command {
            Command::WaitFor {
                agents,
                timeout,
                reply,
            } => {
                let id = self.core.wait_for(agents, timeout);
                self.waiters.insert(id, reply);
            }
            Command::Run { request, reply } => {
                // One workload at a time: a second one while the first is still settling
                // (its caller gone) is refused, so the first keeps its storage and its stop.
                if self.core.active.is_some() {
                    let _ = reply.send(WorkloadOutcome {
                        error: Some("another workload is still running on the agents".into()),
                        ..Default::default()
                    });
                    return;
                }
                let request = *request;
                let begin = Begin {
                    assignment: request.assignment,
                    live: request.live.is_some(),
                    listens: request.on_iteration.is_some(),
                    tracks_commits: request.committed.is_some(),
                };
                self.engine = Some(Engine {
                    chunks: request.chunks,
                    live: request.live,
                    stop: request.stop,
                    on_iteration: request.on_iteration,
                    committed: request.committed,
                    reply,
                });
                self.core.begin(begin);
            }
            Command::Shutdown { .. } => {}
        }
        self.carry_out().await;
    }

    /// Tells the core how far storage has committed, when it says.
    fn storage_progress(&mut self) {
        if let Some(committed) = self.engine.as_ref().and_then(|e| e.committed.as_ref()) {
            let chunks = *committed.borrow();
            self.core.storage_committed(chunks);
        }
    }

    /// Carries out what the core asked for, in order.
    async fn carry_out(&mut self) {
        for action in self.core.take_actions() {
            match action {
                Action::Send { conn, message } => {
                    self.hub.send(conn, &message);
                }
                Action::Pull { agent, conn, ids } => {
                    let pull = Pull::Chunks { ids };
                    if !self.hub.pull(conn, &pull) {
                        let Pull::Chunks { ids } = pull;
                        self.core.pull_failed(agent, &ids);
                    }
                }
                Action::Refuse { conn, reason } => self.hub.refuse(conn, &reason),
                Action::Close { conn } => self.hub.close(conn),
                Action::Store { chunk, tag } => {
                    // Without the engine (its workload's caller has gone) the chunk has
                    // nowhere to go; it stays unconfirmed in its agent's cache.
                    let Some(engine) = &self.engine else {
                        tracing::warn!("a chunk of a workload whose caller has gone is not stored");
                        continue;
                    };
                    if engine.chunks.send(chunk).await.is_ok() {
                        self.core.handed(tag);
                    }
                }
                Action::Issued(lease) => {
                    if let Some(listener) =
                        self.engine.as_ref().and_then(|e| e.on_iteration.as_ref())
                    {
                        for n in lease.iter() {
                            listener(n);
                        }
                    }
                }
                Action::Notice(notice) => {
                    let _ = self.notices.send(notice);
                }
                Action::Live(statuses) => {
                    if let Some(live) = self.engine.as_ref().and_then(|e| e.live.as_ref()) {
                        let _ = live.send(statuses);
                    }
                }
                Action::Registered(count) => {
                    let _ = self.registered.send(count);
                }
                Action::Answer { waiter, result } => {
                    if let Some(reply) = self.waiters.remove(&waiter) {
                        let _ = reply.send(result);
                    }
                }
                Action::Finish(outcome) => {
                    if let Some(engine) = self.engine.take() {
                        let _ = engine.reply.send(outcome);
                    }
                }
            }
        }
    }
}
