//! The controller side of a distributed run: the pool of registered agents, and the
//! DistributedRunner that runs a workload on some of them.
//!
//! One task owns every agent's state and the transport hub, and lives for the whole task run
//! (heartbeats must flow between workloads too). The engine talks to it through commands;
//! the [`DistributedRunner`] is the engine's ordinary [`Runner`] face of it.
//!
//! During a workload the controller:
//! * hands out iteration leases on request ([`LeasePlan`]) and gives a lost agent's unfinished
//!   numbers to the others;
//! * merges the agents' SLA states and figures every interval and forwards them live;
//! * pulls announced chunks a few at a time per agent (credits), corrects their timestamps by
//!   the agent's clock offset, drops iterations it already has, releases them to storage in
//!   time order, and then tells the agent it may delete them;
//! * ends the workload when every number is stored (or the stop is through) and every live
//!   agent has reported done and delivered everything.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{Map, Value, json};
use tokio::sync::{mpsc, oneshot, watch};
use tokio_util::sync::CancellationToken;

use super::plan::{AgentId, Lease, LeasePlan, Workload};
use super::protocol::{
    AgentReport, Delivery, Pull, Register, ToAgent, ToController, WorkloadOrder,
};
use super::shares::{Reshare, ReshareCause, ShareMove, ShareOf, Shares, split_concurrency};
use super::wire::hub::{ConnId, Hub, HubEvent, Inbound, TransportError};
use crate::chunk::cache::ChunkMeta;
use crate::chunk::merge::{ChunkMerger, IterationSet, SourceId, retain_new, shift_clock};
use crate::chunk::{Chunk, codec};
use crate::clock::unix_now;
use crate::runner::{
    InstanceState, InstanceStatus, IterationListener, RunFuture, RunJob, Runner, RunnerError,
    RunnerSpec,
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

/// Records held back to put chunks from all agents in time order.
const MERGE_BUFFER: usize = 200_000;
/// How long after the order the workload's time zero is, so every agent has it in time.
const START_DELAY: f64 = 0.2;
/// The `rps` schedule is dealt in windows of this length.
const RATE_WINDOW: Duration = Duration::from_millis(250);

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

/// How long a chunk asked for may take to arrive before its agent is taken for lost (a
/// chunk is at most a few MiB; this allows a slow link).
const DELIVERY_DEADLINE: Duration = Duration::from_secs(60);

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
        let state = State {
            hub,
            options,
            agents: Vec::new(),
            by_conn: HashMap::new(),
            active: None,
            waiters: Vec::new(),
            registered: registered_tx,
            notices,
            to_pull: Vec::new(),
            may_finish: false,
        };
        let task = tokio::spawn(state.serve(events, rx));
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

struct Agent {
    id: AgentId,
    conn: ConnId,
    name: String,
    host: String,
    pid: u32,
    /// Its chunk cache's id: the same on each of its sessions and across its restarts.
    cache: String,
    state: InstanceState,
    last_heard: Instant,
    /// Best (lowest round trip) clock offset sample: (rtt, offset).
    offset: Option<(f64, f64)>,
    results_ready: bool,
    /// Chunks it announced for the active workload and we have not asked for yet.
    announced: VecDeque<ChunkMeta>,
    /// Chunks asked for and not yet delivered, with when they were asked for.
    in_flight: HashMap<u64, Instant>,
    /// Chunks it cached in an earlier session (a restarted agent).
    cached: Vec<ChunkMeta>,
    /// Its latest report, shared with the live statuses made from it (never copied).
    report: Option<Arc<AgentReport>>,
    /// `report.recent`'s quantiles, worked out once when it arrived.
    quantiles: Option<[f64; 4]>,
    waiting: Option<u64>,
    /// Leases it says it has run, until all their numbers are stored.
    ran: Vec<RanLease>,
    leases: HashMap<u64, Lease>,
    done: bool,
    source: Option<SourceId>,
}

impl Agent {
    /// Ready for a share of a new workload (or of the running one, coming back).
    fn enlist(&mut self, source: SourceId) {
        self.state = InstanceState::Running;
        self.done = false;
        self.report = None;
        self.waiting = None;
        self.ran.clear();
        self.leases.clear();
        self.announced.clear();
        self.source = Some(source);
    }

    fn alive(&self) -> bool {
        self.state != InstanceState::Lost
    }

    fn offset(&self) -> f64 {
        self.offset.map_or(0.0, |(_, o)| o)
    }

    fn status(&self) -> InstanceStatus {
        let (iterations, failures, recent, recent_seconds, sla) = match &self.report {
            Some(r) => (
                r.iterations,
                r.failures,
                r.recent.clone(),
                r.recent_seconds,
                r.sla.clone(),
            ),
            None => (0, 0, Arc::default(), 0.0, None),
        };
        InstanceStatus {
            name: self.name.clone(),
            host: self.host.clone(),
            state: self.state,
            iterations,
            failures,
            recent,
            quantiles: self.quantiles,
            recent_seconds,
            sla,
            heartbeat_age: Some(self.last_heard.elapsed().as_secs_f64()),
            clock_offset: self.offset.map(|(_, o)| o),
            in_flight: self.report.as_ref().map_or(0, |r| r.in_flight),
        }
    }
}

impl Active {
    /// Send a released chunk to the engine (and so to storage), and remember to confirm it to
    /// its agent once storage has committed it. False when the engine has gone.
    async fn hand_to_storage(&mut self, chunk: Chunk, tag: u64) -> bool {
        if self.request.chunks.send(chunk).await.is_err() {
            return false;
        }
        self.released += 1;
        if let Some((i, id)) = self.tags.remove(&tag) {
            self.unconfirmed.push_back((self.released, i, id));
        }
        true
    }
}

/// A lease an agent says it has run, until every number of it is stored.
struct RanLease {
    lease: Lease,
    /// Its first numbers known to be stored: results arrive roughly in order, so each
    /// check goes on from here instead of starting over (which cost O(numbers) per chunk).
    stored: u64,
}

impl RanLease {
    /// True once every number is stored.
    fn advance(&mut self, stored: &IterationSet) -> bool {
        let Lease {
            first, step, count, ..
        } = self.lease;
        while self.stored < count && stored.contains(first + self.stored * step) {
            self.stored += 1;
        }
        self.stored == count
    }
}

struct Active {
    request: Box<WorkloadRequest>,
    reply: oneshot::Sender<WorkloadOutcome>,
    plan: LeasePlan,
    members: Vec<usize>,
    stored: IterationSet,
    merger: ChunkMerger,
    outcome: WorkloadOutcome,
    stop_sent: bool,
    end_sent: bool,
    /// The merger has been emptied into storage (the workload is settled).
    drained: bool,
    /// Buffered chunks by merger tag: which agent's which cached chunk, to confirm it once
    /// it is released to storage.
    tags: HashMap<u64, (usize, u64)>,
    next_tag: u64,
    /// Chunks released to storage so far, and the released ones not yet confirmed to their
    /// agents: (release number, agent, chunk id).
    released: u64,
    unconfirmed: VecDeque<(u64, usize, u64)>,
    /// Chunks delivered, by agent name and chunk id (a restarted agent keeps its ids): what
    /// a lost agent announced and no one delivered is reported missing at the end.
    delivered: HashSet<(String, u64)>,
    /// The highest number handed out: anything above is not ours (a corrupt or foreign chunk).
    max_number: u64,
    /// When the workload began, and who took part (by name): a member that comes back after
    /// being lost takes a share again.
    begun: Instant,
    enlisted: HashSet<String>,
    /// The live members' shares of the concurrency (`None` for `serial`).
    portion: Option<Shares>,
    /// Members lost and not back, with when (seconds into the workload).
    lost_at: HashMap<String, f64>,
}

/// Someone waiting for `agents` agents until `deadline`.
struct Waiter {
    agents: usize,
    deadline: Instant,
    waited: Duration,
    reply: oneshot::Sender<Result<(), ControllerError>>,
}

struct State {
    hub: Hub,
    options: ControllerOptions,
    agents: Vec<Agent>,
    by_conn: HashMap<ConnId, usize>,
    active: Option<Active>,
    waiters: Vec<Waiter>,
    registered: watch::Sender<usize>,
    notices: mpsc::UnboundedSender<Notice>,
    /// Agents that may have chunks to ask for (something was announced or delivered): `pull`
    /// looks at these instead of every agent after every message, which with thousands of
    /// agents cost O(agents) per message. The housekeeping tick still sweeps them all.
    to_pull: Vec<usize>,
    /// Something happened that may settle the workload (a report, a delivery, a loss, a
    /// stop): `finish_if_done`, O(agents), runs after such events and on the housekeeping
    /// tick, not after every heartbeat.
    may_finish: bool,
}

impl State {
    /// Front ends show notices (the headless printer prints them, the TUI logs them).
    fn notice(&self, level: &'static str, message: String) {
        let _ = self.notices.send(Notice { level, message });
    }

    fn live_count(&self) -> usize {
        self.agents.iter().filter(|a| a.alive()).count()
    }

    async fn serve(
        mut self,
        mut events: mpsc::Receiver<Inbound>,
        mut commands: mpsc::Receiver<Command>,
    ) {
        let mut heartbeat = tokio::time::interval(self.options.heartbeat);
        let mut report = tokio::time::interval(self.options.sla_interval);
        report.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut housekeeping = tokio::time::interval(Duration::from_millis(50));
        housekeeping.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let stopped = async {
                match &self.active {
                    Some(a) if !a.stop_sent => a.request.stop.cancelled().await,
                    _ => std::future::pending().await,
                }
            };
            tokio::select! {
                event = events.recv() => match event {
                    // The message's credit is given back when `inbound` drops, after this.
                    Some(inbound) => self.on_event(inbound.event).await,
                    None => return,
                },
                command = commands.recv() => match command {
                    Some(Command::Shutdown { reply }) => {
                        for a in self.agents.iter().filter(|a| a.alive()) {
                            self.hub.send(a.conn, &ToAgent::Shutdown);
                        }
                        // Give the outboxes a moment to flush.
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        let _ = reply.send(());
                        return;
                    }
                    Some(command) => {
                        self.on_command(command);
                        self.may_finish = true;
                    }
                    None => return,
                },
                () = stopped => self.send_stop(),
                _ = heartbeat.tick() => self.on_heartbeat(),
                _ = report.tick() => self.publish_live(),
                _ = housekeeping.tick() => {
                    self.check_waiters();
                    self.lose_silent();
                    self.to_pull.extend(0..self.agents.len());
                    self.may_finish = true;
                }
            }
            self.pull().await;
            // Also confirms to agents what storage has committed since (the housekeeping
            // tick makes sure that happens within 50 ms when nothing else is going on).
            self.release().await;
            if std::mem::take(&mut self.may_finish) {
                self.finish_if_done().await;
            }
        }
    }

    fn on_command(&mut self, command: Command) {
        match command {
            Command::WaitFor {
                agents,
                timeout,
                reply,
            } => {
                self.waiters.push(Waiter {
                    agents,
                    deadline: Instant::now() + timeout,
                    waited: timeout,
                    reply,
                });
                self.check_waiters();
            }
            Command::Run { request, reply } => self.begin(request, reply),
            Command::Shutdown { .. } => {}
        }
    }

    fn check_waiters(&mut self) {
        let live = self.live_count();
        let now = Instant::now();
        let mut keep = Vec::new();
        for w in self.waiters.drain(..) {
            if live >= w.agents {
                let _ = w.reply.send(Ok(()));
            } else if now >= w.deadline {
                let _ = w.reply.send(Err(ControllerError::TooFewAgents {
                    came: live,
                    wanted: w.agents,
                    waited: w.waited,
                }));
            } else {
                keep.push(w);
            }
        }
        self.waiters = keep;
    }

    async fn on_event(&mut self, event: HubEvent) {
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
                self.notice("warning", format!("refused a frame from {peer}: {reason}"));
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

    fn on_register(&mut self, conn: ConnId, register: Register, session: String, peer: String) {
        if let Some(old) = self
            .agents
            .iter()
            .position(|a| a.alive() && a.name == register.name)
        {
            if self.agents[old].cache == register.cache {
                // The same agent on a new session: it reconnected, or restarted on the same
                // cache (which one process at a time can hold), so the old session is dead.
                self.lose(old, "it registered again (restart or reconnect)");
            } else {
                // Another process under a live agent's name: two agents would evict each
                // other for ever. The newcomer is refused and told who holds the name.
                let holder = &self.agents[old];
                let reason = format!(
                    "an agent named {} is already registered (host {}, pid {}); give each agent \
                     its own --name",
                    register.name, holder.host, holder.pid
                );
                self.notice(
                    "warning",
                    format!(
                        "refused agent {} from {} (pid {}): the name is taken by the agent on {} (pid {})",
                        register.name, register.host, register.pid, holder.host, holder.pid
                    ),
                );
                self.hub.refuse(conn, &reason);
                return;
            }
        }
        let id = self.agents.len() as AgentId;
        let index = self.agents.len();
        let welcome = ToAgent::Welcome {
            agent: id,
            session,
            results_port: self.hub.results_port,
            heartbeat_ms: self.options.heartbeat.as_millis() as u64,
            liveness_ms: self.options.liveness.as_millis() as u64,
            sla_interval_ms: self.options.sla_interval.as_millis() as u64,
        };
        self.hub.send(conn, &welcome);
        self.notice(
            "info",
            format!(
                "agent {} registered from {} ({peer}, {} cores, pid {}, version {}){}",
                register.name,
                register.host,
                register.cores,
                register.pid,
                register.version,
                if register.cached.is_empty() {
                    String::new()
                } else {
                    format!(", {} cached chunks", register.cached.len())
                }
            ),
        );
        let mut agent = Agent {
            id,
            conn,
            name: register.name,
            host: register.host,
            pid: register.pid,
            cache: register.cache,
            state: InstanceState::Connecting,
            last_heard: Instant::now(),
            offset: None,
            results_ready: false,
            announced: VecDeque::new(),
            in_flight: HashMap::new(),
            cached: register.cached,
            report: None,
            quantiles: None,
            waiting: None,
            ran: Vec::new(),
            leases: HashMap::new(),
            done: true,
            source: None,
        };
        // A member of the running workload that was lost and comes back (a partition, a
        // freeze, a restart) takes its share again.
        let returning = self.active.as_ref().is_some_and(|a| {
            !a.stop_sent
                && !a.end_sent
                && a.lost_at.contains_key(&agent.name)
                && a.enlisted.contains(&agent.name)
        });
        // Cached chunks of the workload now running can still be stored.
        if let Some(active) = &mut self.active {
            let (run, workload) = (
                &active.request.assignment.run,
                active.request.assignment.workload,
            );
            let (now, later): (Vec<_>, Vec<_>) = agent
                .cached
                .drain(..)
                .partition(|m| &m.key.run == run && m.key.workload == workload);
            agent.cached = later;
            if returning {
                // A live source: it will make more, and its reports say how far it has got.
                let source = active.merger.add_source(agent.name.as_str());
                agent.enlist(source);
                agent.announced.extend(now);
            } else if !now.is_empty() {
                // Everything it will deliver is already made: it holds nothing back.
                let source = active.merger.add_source(agent.name.as_str());
                active.merger.remove_source(source);
                agent.source = Some(source);
                agent.announced.extend(now);
            }
        }
        if !agent.cached.is_empty() {
            self.notice(
                "warning",
                format!(
                    "agent {} holds {} chunks of other runs; they stay in its cache",
                    agent.name,
                    agent.cached.len()
                ),
            );
        }
        self.by_conn.insert(conn, index);
        self.agents.push(agent);
        if returning {
            self.rejoin(index);
        }
        let _ = self.registered.send(self.live_count());
        self.check_waiters();
    }

    /// A lost member came back: it gets a share of the running workload again, on the
    /// workload's own clock (its schedule and duration end with the others'), and the others
    /// give up what it takes.
    fn rejoin(&mut self, i: usize) {
        let Some(active) = &mut self.active else {
            return;
        };
        let name = self.agents[i].name.clone();
        let Some(lost_at) = active.lost_at.remove(&name) else {
            return;
        };
        let back_at = active.begun.elapsed().as_secs_f64();
        let inner = active.request.assignment.inner.clone();
        let (share, moves) = match &mut active.portion {
            None => (1, Vec::new()),
            Some(portion) => match portion.join(&name) {
                Some(joined) => joined,
                None => {
                    let message = format!(
                        "agent {name} is back (lost at {lost_at:.1} s), but every slot of the \
                         workload's concurrency is taken: it stays idle until the next workload"
                    );
                    self.notice("info", message);
                    return;
                }
            },
        };
        active.plan.join(self.agents[i].id);
        // Its lost session leaves the members: one status per name, so the live SLA merge
        // (keyed by name) sees the new session replace the old one, not the two alternate.
        let agents = &self.agents;
        active
            .members
            .retain(|&m| agents[m].alive() || agents[m].name != name);
        active.members.push(i);
        active.outcome.lost.retain(|n| n != &name);
        active.outcome.returned.push(format!(
            "{name} lost at {lost_at:.1} s, back at {back_at:.1} s"
        ));
        let of = active.portion.as_ref().map(|p| p.of);
        let live = active
            .members
            .iter()
            .filter(|&&m| self.agents[m].alive())
            .count();
        let order = active.request.assignment.order(
            runner_for(&inner, of, share),
            low_water(&inner, share, live),
            START_DELAY - back_at,
        );
        self.hub
            .send(self.agents[i].conn, &ToAgent::Workload(Box::new(order)));
        let mut message =
            format!("agent {name} is back (lost at {lost_at:.1} s): it takes a share again");
        if let Some(of) = of {
            let reshare = Reshare {
                at: back_at,
                agent: name,
                cause: ReshareCause::Back,
                of,
                share,
                moves,
                rate_agents: is_rps(&inner).then_some(live),
            };
            message = format!(
                "agent {} is back (lost at {lost_at:.1} s): {}",
                reshare.agent,
                reshare.change()
            );
            self.send_shares(&reshare.moves);
            if let Some(active) = &mut self.active {
                active.outcome.reshares.push(reshare);
            }
        }
        self.notice("info", message);
    }

    /// Tells each live member its share now (and, for `rps`, how much to hold queued: its
    /// part of the rate changed with the number of agents, even where its share did not).
    fn send_shares(&mut self, moves: &[ShareMove]) {
        let Some(active) = &self.active else {
            return;
        };
        let inner = &active.request.assignment.inner;
        let Some(portion) = &active.portion else {
            return;
        };
        let live: Vec<usize> = active
            .members
            .iter()
            .copied()
            .filter(|&m| self.agents[m].alive())
            .collect();
        for &m in &live {
            let a = &self.agents[m];
            let moved = moves.iter().any(|mv| mv.agent == a.name);
            if !(moved || is_rps(inner)) {
                continue;
            }
            let Some(share) = portion.get(&a.name) else {
                continue;
            };
            self.hub.send(
                a.conn,
                &ToAgent::Share {
                    workload: active.request.assignment.workload,
                    share,
                    low_water: low_water(inner, share, live.len()),
                },
            );
        }
    }

    fn on_control(&mut self, i: usize, message: ToController) {
        match message {
            ToController::Register(_) => {}
            ToController::Ping { sent } => {
                let _ = sent;
                self.hub
                    .send(self.agents[i].conn, &ToAgent::Pong { echo: sent });
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
                    self.notice(
                        "error",
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

    fn is_member(&self, i: usize, workload: u32) -> bool {
        self.active
            .as_ref()
            .is_some_and(|a| a.request.assignment.workload == workload && a.members.contains(&i))
    }

    /// Says when an agent pauses its load (its cache cannot write) and when it resumes.
    fn note_pause(&self, i: usize, report: &AgentReport) {
        let agent = &self.agents[i];
        let was_paused = agent.report.as_ref().and_then(|r| r.paused.as_ref());
        if report.paused.as_ref() != was_paused {
            let (level, message) = match &report.paused {
                Some(why) => (
                    "warning",
                    format!("agent {} paused its load: {why}", agent.name),
                ),
                None => ("info", format!("agent {} resumed its load", agent.name)),
            };
            self.notice(level, message);
        }
    }

    fn on_report(&mut self, i: usize, report: AgentReport) {
        if self
            .active
            .as_ref()
            .is_some_and(|a| a.request.assignment.workload == report.workload)
        {
            self.note_pause(i, &report);
        }
        let Some(active) = &mut self.active else {
            return;
        };
        if report.workload != active.request.assignment.workload {
            return;
        }
        let agent = &mut self.agents[i];
        for id in &report.completed {
            if let Some(lease) = agent.leases.get(id) {
                agent.ran.push(RanLease {
                    lease: lease.clone(),
                    stored: 0,
                });
            }
        }
        agent.announced.extend(report.chunks.iter().cloned());
        if let Some(source) = agent.source {
            active
                .merger
                .advance(source, report.watermark - agent.offset());
        }
        if report.done && agent.alive() {
            agent.done = true;
            agent.state = InstanceState::Done;
        }
        agent.quantiles = report.recent.quantiles_secs();
        agent.report = Some(Arc::new(report));
        // Forward it at once (just this agent): the live SLA verdict, and so an abort, must
        // not wait for the next interval.
        if let Some(live) = &active.request.live {
            let _ = live.send(vec![agent.status()]);
        }
    }

    fn on_delivery(&mut self, i: usize, delivery: Delivery) {
        let Some(active) = &mut self.active else {
            return;
        };
        let agent = &mut self.agents[i];
        match delivery {
            Delivery::Missing { id, reason } => {
                agent.in_flight.remove(&id);
                active
                    .outcome
                    .missing
                    .push(format!("chunk {id} of agent {}: {reason}", agent.name));
                let msg = format!("agent {} cannot deliver chunk {id}: {reason}", agent.name);
                let _ = self.notices.send(Notice {
                    level: "error",
                    message: msg,
                });
            }
            Delivery::Chunk { id, bytes } => {
                if agent.in_flight.remove(&id).is_none() {
                    return;
                }
                active.delivered.insert((agent.name.clone(), id));
                match codec::decode(&bytes) {
                    Err(e) => {
                        active
                            .outcome
                            .missing
                            .push(format!("chunk {id} of agent {}: {e}", agent.name));
                    }
                    Ok(mut chunk) => {
                        chunk.source = Arc::from(agent.name.as_str());
                        shift_clock(&mut chunk, agent.offset());
                        // Numbers we never handed out cannot be ours; they would also make the
                        // stored-number set as large as the number.
                        let max = active.max_number;
                        let before = chunk.len();
                        chunk
                            .records
                            .retain(|r| r.iteration >= 1 && r.iteration <= max);
                        if chunk.len() < before {
                            active.outcome.missing.push(format!(
                                "chunk {id} of agent {}: {} records with iteration numbers never handed out were dropped",
                                agent.name,
                                before - chunk.len()
                            ));
                        }
                        active.outcome.duplicates +=
                            retain_new(&mut chunk, &mut active.stored) as u64;
                        let source = *agent
                            .source
                            .get_or_insert_with(|| active.merger.add_source(agent.name.as_str()));
                        if chunk.is_empty() {
                            // Nothing new in it: the agent may delete it now.
                            self.hub
                                .send(agent.conn, &ToAgent::Stored { ids: vec![id] });
                        } else {
                            active.next_tag += 1;
                            active.tags.insert(active.next_tag, (i, id));
                            active.merger.push_tagged(source, chunk, active.next_tag);
                        }
                    }
                }
                // Leases run whose numbers are now all stored are complete.
                let stored = &active.stored;
                let plan = &mut active.plan;
                let agent_id = agent.id;
                agent.ran.retain_mut(|ran| {
                    if ran.advance(stored) {
                        plan.complete(agent_id, ran.lease.id);
                        false
                    } else {
                        true
                    }
                });
            }
        }
        self.serve_waiting();
    }

    /// Ask agents for announced chunks, within each agent's credit.
    async fn pull(&mut self) {
        if self.active.is_none() {
            return;
        }
        let credits = self.options.credits;
        let mut queued = std::mem::take(&mut self.to_pull);
        queued.sort_unstable();
        queued.dedup();
        for i in queued {
            let Some(agent) = self.agents.get_mut(i) else {
                continue;
            };
            if !(agent.alive() && agent.results_ready) {
                continue;
            }
            let room = credits.saturating_sub(agent.in_flight.len());
            if room == 0 || agent.announced.is_empty() {
                continue;
            }
            let ids: Vec<u64> = (0..room)
                .filter_map(|_| agent.announced.pop_front())
                .map(|m| m.id)
                .collect();
            if self
                .hub
                .pull(agent.conn, &Pull::Chunks { ids: ids.clone() })
            {
                let now = Instant::now();
                agent.in_flight.extend(ids.iter().map(|&id| (id, now)));
            }
        }
    }

    /// Hand chunks that are in time order to storage, and confirm them to their agents.
    async fn release(&mut self) {
        let Some(active) = &mut self.active else {
            return;
        };
        while let Some((chunk, tag)) = active.merger.pop_ready_tagged() {
            if !active.hand_to_storage(chunk, tag).await {
                break;
            }
        }
        self.confirm();
    }

    /// Tell agents which of their chunks are committed to storage: they may delete them.
    fn confirm(&mut self) {
        let Some(active) = &mut self.active else {
            return;
        };
        let committed = match &active.request.committed {
            Some(c) => *c.borrow(),
            None => active.released,
        };
        let mut confirm: HashMap<usize, Vec<u64>> = HashMap::new();
        while let Some(&(seq, i, id)) = active.unconfirmed.front() {
            if seq > committed {
                break;
            }
            active.unconfirmed.pop_front();
            confirm.entry(i).or_default().push(id);
        }
        for (i, ids) in confirm {
            self.hub.send(self.agents[i].conn, &ToAgent::Stored { ids });
        }
    }

    fn serve_waiting(&mut self) {
        let Some(active) = &mut self.active else {
            return;
        };
        if active.stop_sent {
            return;
        }
        for &i in &active.members {
            let agent = &mut self.agents[i];
            let Some(want) = agent.waiting else { continue };
            if !agent.alive() {
                continue;
            }
            let Some(lease) = active.plan.request(agent.id, want) else {
                continue;
            };
            agent.waiting = None;
            active.max_number = active.max_number.max(lease.last());
            if let Some(listener) = &active.request.on_iteration {
                for n in lease.iter() {
                    listener(n);
                }
            }
            agent.leases.insert(lease.id, lease.clone());
            self.hub.send(
                agent.conn,
                &ToAgent::Lease {
                    workload: active.request.assignment.workload,
                    lease,
                },
            );
        }
    }

    fn send_stop(&mut self) {
        self.may_finish = true;
        let Some(active) = &mut self.active else {
            return;
        };
        active.stop_sent = true;
        for &i in &active.members {
            let a = &mut self.agents[i];
            if a.alive() {
                self.hub.send(
                    a.conn,
                    &ToAgent::Stop {
                        workload: active.request.assignment.workload,
                    },
                );
                if !a.done {
                    a.state = InstanceState::Stopping;
                }
            }
        }
        self.publish_live();
    }

    fn on_heartbeat(&mut self) {
        let now = unix_now();
        self.lose_silent();
        for a in self.agents.iter().filter(|a| a.alive()) {
            self.hub.send(a.conn, &ToAgent::Ping { sent: now });
        }
    }

    /// Agents not heard from for the liveness timeout are lost. Checked on every
    /// housekeeping tick (50 ms), not only per heartbeat, so that silence is caught within
    /// the timeout plus a tick. So is an agent that heartbeats but does not deliver a chunk
    /// it was asked for within [`DELIVERY_DEADLINE`] (or ten liveness timeouts, if longer):
    /// no wait for a chunk is without end. Its unfinished numbers go to the others, and if it
    /// comes back it delivers what it holds then.
    fn lose_silent(&mut self) {
        let deadline = DELIVERY_DEADLINE.max(self.options.liveness * 10);
        let silent: Vec<usize> = (0..self.agents.len())
            .filter(|&i| {
                let a = &self.agents[i];
                a.alive()
                    && (a.last_heard.elapsed() > self.options.liveness
                        || a.in_flight.values().any(|t| t.elapsed() > deadline))
            })
            .collect();
        for i in silent {
            let a = &self.agents[i];
            let why = if a.last_heard.elapsed() > self.options.liveness {
                format!(
                    "nothing heard for {:.1} s",
                    a.last_heard.elapsed().as_secs_f64()
                )
            } else {
                format!(
                    "a chunk it was asked for {:.0} s ago never came",
                    a.in_flight
                        .values()
                        .map(|t| t.elapsed().as_secs_f64())
                        .fold(0.0, f64::max)
                )
            };
            self.lose(i, &why);
        }
    }

    /// Mark an agent lost: its unfinished numbers go to the others.
    fn lose(&mut self, i: usize, why: &str) {
        self.may_finish = true;
        let agent = &mut self.agents[i];
        if !agent.alive() {
            return;
        }
        agent.state = InstanceState::Lost;
        agent.in_flight.clear();
        agent.waiting = None;
        self.hub.close(agent.conn);
        let name = agent.name.clone();
        let (id, source) = (agent.id, agent.source);
        let mut message = format!("agent {name} lost: {why}");
        let mut reshared = None;
        if let Some(active) = &mut self.active
            && active.members.contains(&i)
        {
            let stored = &active.stored;
            let reissued = if active.stop_sent {
                0
            } else {
                active.plan.lost(id, |n| stored.contains(n))
            };
            active.outcome.reissued += reissued;
            active.outcome.lost.push(name.clone());
            let at = active.begun.elapsed().as_secs_f64();
            active.lost_at.insert(name.clone(), at);
            if let Some(s) = source {
                active.merger.remove_source(s);
            }
            let inner = &active.request.assignment.inner;
            // Where its share went, in the runner's terms.
            match inner.inner() {
                RunnerSpec::ConstantForDuration { .. } => {}
                RunnerSpec::Rps { .. } => message.push_str(&format!(
                    "; {reissued} of its scheduled iterations handed to the other agents, \
                     which run them at once"
                )),
                _ => message.push_str(&format!(
                    "; {reissued} unfinished iterations handed to the other agents"
                )),
            }
            if !active.stop_sent
                && let Some(portion) = &mut active.portion
                && let Some((share, moves)) = portion.lose(&name)
            {
                let reshare = Reshare {
                    at,
                    agent: name.clone(),
                    cause: ReshareCause::Lost,
                    of: portion.of,
                    share,
                    moves,
                    rate_agents: is_rps(inner).then_some(portion.holders()),
                };
                message.push_str(&format!("; {}", reshare.change()));
                reshared = Some(reshare);
            }
        }
        if let Some(reshare) = reshared {
            self.send_shares(&reshare.moves);
            if let Some(active) = &mut self.active {
                active.outcome.reshares.push(reshare);
            }
        }
        let _ = self.registered.send(self.live_count());
        self.notice("warning", message);
        self.serve_waiting();
    }

    fn begin(&mut self, request: Box<WorkloadRequest>, reply: oneshot::Sender<WorkloadOutcome>) {
        let live: Vec<usize> = (0..self.agents.len())
            .filter(|&i| self.agents[i].alive())
            .collect();
        if live.is_empty() {
            let _ = reply.send(WorkloadOutcome {
                error: Some("no agent is alive".into()),
                ..Default::default()
            });
            return;
        }
        let assignment = &request.assignment;
        let members: Vec<usize> = live.into_iter().take(assignment.agents.max(1)).collect();
        if members.len() < assignment.agents {
            self.notice(
                "warning",
                format!(
                    "workload {} asked for {} agents; {} are alive",
                    assignment.workload,
                    assignment.agents,
                    members.len()
                ),
            );
        }
        let (workload, figure) = plan_of(&assignment.inner);
        let split = match figure {
            Some((ShareOf::Concurrency, total)) => split_concurrency(total, members.len()),
            // Every `rps` agent carries part of the rate, so it needs a slot at least.
            Some((ShareOf::MaxConcurrency, total)) => split_concurrency(total, members.len())
                .into_iter()
                .map(|c| c.max(1))
                .collect(),
            None => vec![1; members.len()],
        };
        // An agent with no share of the concurrency would hold leases it never runs.
        let (members, split): (Vec<usize>, Vec<u64>) = members
            .into_iter()
            .zip(split)
            .filter(|(_, share)| *share > 0)
            .unzip();
        let ids: Vec<AgentId> = members.iter().map(|&i| self.agents[i].id).collect();
        let plan = LeasePlan::new(workload, &ids);
        let mut merger = ChunkMerger::new(MERGE_BUFFER);
        let mut enlisted = HashSet::new();
        let mut held = Vec::new();
        let of = figure.map(|(of, _)| of);
        for (&i, &share) in members.iter().zip(&split) {
            let a = &mut self.agents[i];
            a.enlist(merger.add_source(a.name.as_str()));
            enlisted.insert(a.name.clone());
            held.push((a.name.clone(), share));
            let order = assignment.order(
                runner_for(&assignment.inner, of, share),
                low_water(&assignment.inner, share, members.len()),
                START_DELAY,
            );
            self.hub.send(a.conn, &ToAgent::Workload(Box::new(order)));
        }
        let portion = of.map(|of| Shares::new(of, split.iter().sum(), held));
        let names = members
            .iter()
            .map(|&i| self.agents[i].name.clone())
            .collect();
        self.active = Some(Active {
            request,
            reply,
            plan,
            members,
            stored: IterationSet::new(),
            merger,
            outcome: WorkloadOutcome {
                agents: names,
                ..Default::default()
            },
            stop_sent: false,
            end_sent: false,
            drained: false,
            tags: HashMap::new(),
            next_tag: 0,
            released: 0,
            unconfirmed: VecDeque::new(),
            delivered: HashSet::new(),
            max_number: 0,
            begun: Instant::now(),
            enlisted,
            portion,
            lost_at: HashMap::new(),
        });
        self.publish_live();
    }

    fn publish_live(&self) {
        let Some(active) = &self.active else {
            return;
        };
        if let Some(live) = &active.request.live {
            let statuses = active
                .members
                .iter()
                .map(|&i| self.agents[i].status())
                .collect();
            let _ = live.send(statuses);
        }
    }

    async fn finish_if_done(&mut self) {
        let Some(active) = &mut self.active else {
            return;
        };
        let members = active.members.clone();
        let live: Vec<usize> = members
            .iter()
            .copied()
            .filter(|&i| self.agents[i].alive())
            .collect();
        if live.is_empty() {
            active.outcome.error = Some(format!(
                "every agent of the workload was lost ({})",
                active.outcome.lost.join(", ")
            ));
        } else {
            if !active.end_sent && !active.stop_sent && active.plan.finished() {
                active.end_sent = true;
                for &i in &live {
                    self.hub.send(
                        self.agents[i].conn,
                        &ToAgent::End {
                            workload: active.request.assignment.workload,
                        },
                    );
                }
            }
            let settled = live.iter().all(|&i| {
                let a = &self.agents[i];
                a.done && a.announced.is_empty() && a.in_flight.is_empty()
            });
            // Chunks of agents that are not members (a restarted agent's cache) count too.
            let others_settled = self
                .agents
                .iter()
                .filter(|a| a.alive())
                .all(|a| a.announced.is_empty() && a.in_flight.is_empty());
            if !(settled && others_settled) {
                return;
            }
        }
        if let Some(active) = &mut self.active
            && !active.drained
        {
            active.drained = true;
            for (chunk, tag) in active.merger.drain_tagged().collect::<Vec<_>>() {
                active.hand_to_storage(chunk, tag).await;
            }
        }
        self.confirm();
        // Agents keep a chunk until it is committed: wait for storage to catch up, unless
        // the consumer has gone (then nothing more will be committed).
        if let Some(active) = &self.active
            && !active.unconfirmed.is_empty()
            && !active.request.chunks.is_closed()
        {
            return;
        }
        let Some(mut active) = self.active.take() else {
            return;
        };
        for a in self.agents.iter().filter(|a| !a.alive()) {
            let lost = a
                .announced
                .iter()
                .filter(|m| {
                    m.key.run == active.request.assignment.run
                        && m.key.workload == active.request.assignment.workload
                        && !active.delivered.contains(&(a.name.clone(), m.id))
                })
                .count();
            if lost > 0 {
                active.outcome.missing.push(format!(
                    "{lost} chunks of agent {} were never fetched (it was lost; they stay in its cache)",
                    a.name
                ));
            }
        }
        for &i in &members {
            let a = &mut self.agents[i];
            if a.alive() {
                a.state = InstanceState::Done;
            }
        }
        if let Some(live) = &active.request.live {
            let statuses = members.iter().map(|&i| self.agents[i].status()).collect();
            let _ = live.send(statuses);
        }
        let _ = active.reply.send(active.outcome);
    }
}

/// Numbers an agent holds queued per slot of its share (closed runners).
const PER_SLOT: u64 = 32;

/// What is shared of the inner runner: the lease plan's workload, and which figure of the
/// config is split among the agents, with its total (none for `serial`, which runs on one
/// agent at a time).
fn plan_of(inner: &RunnerSpec) -> (Workload, Option<(ShareOf, u64)>) {
    match inner {
        RunnerSpec::Constant {
            times, concurrency, ..
        } => (
            Workload::Times { total: *times },
            Some((ShareOf::Concurrency, *concurrency)),
        ),
        RunnerSpec::ConstantForDuration { concurrency, .. } => (
            Workload::Duration,
            Some((ShareOf::Concurrency, *concurrency)),
        ),
        RunnerSpec::Serial { times } => (Workload::Serial { total: *times }, None),
        RunnerSpec::Rps {
            times,
            rate,
            max_concurrency,
            ..
        } => (
            Workload::Rate {
                total: *times,
                rate: rate.clone(),
                window: RATE_WINDOW,
            },
            Some((ShareOf::MaxConcurrency, *max_concurrency)),
        ),
        RunnerSpec::Distributed { inner, .. } => plan_of(inner),
    }
}

fn is_rps(inner: &RunnerSpec) -> bool {
    matches!(inner.inner(), RunnerSpec::Rps { .. })
}

/// The inner runner's config as in a task file, with this agent's share.
fn runner_for(inner: &RunnerSpec, of: Option<ShareOf>, share: u64) -> Value {
    let mut body = inner.config_json();
    if let Some(of) = of {
        body[of.key()] = json!(share);
    }
    json!({ inner.name(): body })
}

/// How many numbers an agent with `share` holds queued before asking for more, when `agents`
/// share the workload: about half a second of its part of an `rps` schedule, or a few per
/// slot.
fn low_water(inner: &RunnerSpec, share: u64, agents: usize) -> u64 {
    match inner.inner() {
        RunnerSpec::Rps { rate, .. } => {
            let peak = match rate {
                crate::runner::Rate::Fixed(r) => *r,
                crate::runner::Rate::Ramp { start, end, .. } => start.max(*end),
            };
            ((peak / agents.max(1) as f64) * 0.5).ceil().max(1.0) as u64
        }
        _ => share.max(1) * PER_SLOT,
    }
}
