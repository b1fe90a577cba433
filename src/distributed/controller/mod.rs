//! The controller side of a distributed run: the pool of registered agents, and the
//! DistributedRunner that runs a workload on some of them.
//!
//! One task owns every agent's state and the transport hub, and lives for the whole task run
//! (heartbeats must flow between workloads too). The engine talks to it through commands;
//! the [`DistributedRunner`] is the engine's ordinary [`Runner`] face of it.
//!
//! During a workload the controller:
//! * hands out iteration leases on request ([`LeasePlan`](super::plan::LeasePlan)) and gives a lost agent's unfinished
//!   numbers to the others;
//! * merges the agents' SLA states and figures every interval and forwards them live;
//! * pulls announced chunks a few at a time per agent (credits), corrects their timestamps by
//!   the agent's clock offset, drops iterations it already has, releases them to storage in
//!   time order, and then tells the agent it may delete them;
//! * ends the workload when every number is stored (or the stop is through) and every live
//!   agent has reported done and delivered everything.
//!
//! Logic apart from I/O: `core::Core` is the state machine (events in, `core::Action`s
//! out), with no socket, channel or timer; `serve` is the task that moves bytes between it
//! and the hub, the engine and the clock. The core's parts follow the data flow: `agents`
//! (the table: registration, liveness, loss), `workload` (one workload: begin, leases,
//! reports, the end), `delivery` (chunks: pull, merge, storage, confirm) and `reshare` (the
//! concurrency's shares as agents are lost and come back).

mod agents;
mod core;
mod delivery;
mod reshare;
mod serve;
#[cfg(test)]
mod tests;
mod workload;

use std::sync::Arc;
use std::time::Duration;

use serde_json::{Map, Value};
use tokio::sync::{mpsc, oneshot, watch};
use tokio_util::sync::CancellationToken;

use super::protocol::WorkloadOrder;
use super::shares::Reshare;
use crate::chunk::Chunk;
use crate::distributed::wire::hub::{Hub, TransportError};
use crate::runner::{
    InstanceStatus, IterationListener, RunFuture, RunJob, Runner, RunnerError, RunnerSpec,
};
use crate::transport::token::Token;

#[derive(Debug, Clone)]
pub struct ControllerOptions {
    /// Where to listen: `tcp://HOST:PORT` (port 0: any free port).
    pub listen: String,
    pub heartbeat: Duration,
    /// Silence after which an agent is declared lost (and after which agents stop by
    /// themselves when they hear nothing).
    pub liveness: Duration,
    pub sla_interval: Duration,
    /// Chunks in flight per agent.
    pub credits: usize,
}

impl Default for ControllerOptions {
    fn default() -> ControllerOptions {
        ControllerOptions {
            listen: "tcp://127.0.0.1:0".into(),
            heartbeat: Duration::from_secs(1),
            liveness: Duration::from_secs(3),
            sla_interval: Duration::from_secs(1),
            credits: 8,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ControllerError {
    #[error(transparent)]
    Transport(#[from] TransportError),
    #[error("only {came} of {wanted} agents registered within {} s", waited.as_secs_f64())]
    TooFewAgents {
        came: usize,
        wanted: usize,
        waited: Duration,
    },
    #[error("the controller has stopped")]
    Gone,
}

/// What one workload asks of the agents: which run and workload it is, what to run and how,
/// on how many agents, under which SLA. Declared once so the engine's [`DistributedRunner`]
/// and the [`WorkloadRequest`] it sends the controller cannot drift apart.
#[derive(Debug, Clone)]
pub struct Assignment {
    /// The task's uuid: agents file cached chunks under it.
    pub run: String,
    /// Index of the workload in the task.
    pub workload: u32,
    pub scenario: String,
    pub args: Value,
    /// The runner each agent runs its share of (not the `distributed` wrapper).
    pub inner: RunnerSpec,
    /// How many agents to spread the workload over.
    pub agents: usize,
    pub sla: Map<String, Value>,
}

impl Assignment {
    /// An agent's order for its share, whose schedule starts `start_in` seconds from now
    /// (negative for an agent joining a workload under way).
    fn order(&self, runner: Value, low_water: u64, start_in: f64) -> WorkloadOrder {
        WorkloadOrder {
            run: self.run.clone(),
            workload: self.workload,
            scenario: self.scenario.clone(),
            args: self.args.clone(),
            runner,
            sla: self.sla.clone(),
            start_in,
            low_water,
        }
    }
}

/// What the engine asks for: one workload on some agents, and where its results go.
pub struct WorkloadRequest {
    pub assignment: Assignment,
    pub chunks: mpsc::Sender<Chunk>,
    pub live: Option<mpsc::UnboundedSender<Vec<InstanceStatus>>>,
    pub stop: CancellationToken,
    pub on_iteration: Option<IterationListener>,
    /// Chunks committed to storage so far; agents delete a chunk only once it is.
    pub committed: Option<watch::Receiver<u64>>,
}

/// How a distributed workload went, beyond its records.
#[derive(Debug, Clone, Default)]
pub struct WorkloadOutcome {
    pub agents: Vec<String>,
    pub lost: Vec<String>,
    /// Numbers handed to other agents after their first agent was lost.
    pub reissued: u64,
    /// Records dropped because their iteration was already stored.
    pub duplicates: u64,
    /// Chunks that could not be fetched (agent lost, corrupt file): their iterations are
    /// missing unless re-run elsewhere.
    pub missing: Vec<String>,
    /// Set when the workload could not run at all.
    pub error: Option<String>,
    /// Lost agents that came back: "NAME lost at 2.1 s, back at 4.3 s".
    pub returned: Vec<String>,
    /// Shares of the concurrency moved between agents as they were lost and came back.
    pub reshares: Vec<Reshare>,
}

enum Command {
    WaitFor {
        agents: usize,
        timeout: Duration,
        reply: oneshot::Sender<Result<(), ControllerError>>,
    },
    Run {
        request: Box<WorkloadRequest>,
        reply: oneshot::Sender<WorkloadOutcome>,
    },
    Shutdown {
        reply: oneshot::Sender<()>,
    },
}

pub use crate::events::Notice;

/// Handle to the controller task.
pub struct Controller {
    commands: mpsc::Sender<Command>,
    pub control_port: u16,
    pub results_port: u16,
    registered: watch::Receiver<usize>,
    task: tokio::task::JoinHandle<()>,
}

impl Controller {
    /// Binds the sockets and starts serving agents.
    pub async fn start(
        options: ControllerOptions,
        token: Token,
        notices: mpsc::UnboundedSender<Notice>,
    ) -> Result<Controller, ControllerError> {
        let (hub, events) = Hub::bind(&options.listen, token).await?;
        let (commands, rx) = mpsc::channel(16);
        let (registered_tx, registered) = watch::channel(0);
        let (control_port, results_port) = (hub.control_port, hub.results_port);
        let serve = serve::Serve::new(hub, options, registered_tx, notices);
        let task = tokio::spawn(serve.run(events, rx));
        Ok(Controller {
            commands,
            control_port,
            results_port,
            registered,
            task,
        })
    }

    /// Agents registered and alive now.
    pub fn registered(&self) -> usize {
        *self.registered.borrow()
    }

    /// Waits until `agents` agents are registered.
    pub async fn wait_for(&self, agents: usize, timeout: Duration) -> Result<(), ControllerError> {
        let (reply, rx) = oneshot::channel();
        self.commands
            .send(Command::WaitFor {
                agents,
                timeout,
                reply,
            })
            .await
            .map_err(|_| ControllerError::Gone)?;
        rx.await.map_err(|_| ControllerError::Gone)?
    }

    pub async fn run(&self, request: WorkloadRequest) -> WorkloadOutcome {
        let (reply, rx) = oneshot::channel();
        if self
            .commands
            .send(Command::Run {
                request: Box::new(request),
                reply,
            })
            .await
            .is_err()
        {
            return WorkloadOutcome {
                error: Some("the controller has stopped".into()),
                ..Default::default()
            };
        }
        rx.await.unwrap_or_else(|_| WorkloadOutcome {
            error: Some("the controller has stopped".into()),
            ..Default::default()
        })
    }

    /// Tells every agent the run is over.
    pub async fn shutdown(&self) {
        let (reply, rx) = oneshot::channel();
        if self
            .commands
            .send(Command::Shutdown { reply })
            .await
            .is_ok()
        {
            let _ = rx.await;
        }
    }
}

impl Drop for Controller {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The engine's face of a distributed workload.
pub struct DistributedRunner {
    pub controller: Arc<Controller>,
    pub assignment: Assignment,
    /// What happened, for the workload's report.
    pub outcome: std::sync::Mutex<Option<WorkloadOutcome>>,
}

impl Runner for DistributedRunner {
    fn run(&self, job: RunJob) -> RunFuture<'_> {
        Box::pin(async move {
            let outcome = self
                .controller
                .run(WorkloadRequest {
                    assignment: self.assignment.clone(),
                    chunks: job.chunks,
                    live: job.live,
                    stop: job.stop,
                    on_iteration: job.on_iteration,
                    committed: job.committed,
                })
                .await;
            let error = outcome.error.clone();
            *self.outcome.lock().unwrap_or_else(|e| e.into_inner()) = Some(outcome);
            match error {
                Some(e) => Err(RunnerError::Distributed(e)),
                None => Ok(()),
            }
        })
    }
}
