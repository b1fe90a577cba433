//! The agents table: one record per session, registration (a restart, a name taken twice, a
//! lost member coming back), and liveness (silence, chunks that never come, loss).

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use super::core::{Action, Core};
use crate::chunk::cache::ChunkMeta;
use crate::chunk::merge::{IterationSet, SourceId};
use crate::distributed::plan::{AgentId, Lease};
use crate::distributed::protocol::{AgentReport, Register, ToAgent};
use crate::distributed::wire::hub::ConnId;
use crate::events::{InstanceState, Level};
use crate::runner::InstanceStatus;

/// How long a chunk asked for may take to arrive before its agent is taken for lost (a
/// chunk is at most a few MiB; this allows a slow link).
const DELIVERY_DEADLINE: Duration = Duration::from_secs(60);

pub(super) struct Agent {
    pub(super) id: AgentId,
    pub(super) conn: ConnId,
    pub(super) name: String,
    pub(super) host: String,
    pub(super) pid: u32,
    /// Its chunk cache's id: the same on each of its sessions and across its restarts.
    pub(super) cache: String,
    pub(super) state: InstanceState,
    pub(super) last_heard: Instant,
    /// Best (lowest round trip) clock offset sample: (rtt, offset).
    pub(super) offset: Option<(f64, f64)>,
    pub(super) results_ready: bool,
    /// Chunks it announced for the active workload and we have not asked for yet.
    pub(super) announced: VecDeque<ChunkMeta>,
    /// Chunks asked for and not yet delivered, with when they were asked for.
    pub(super) in_flight: HashMap<u64, Instant>,
    /// Chunks it cached in an earlier session (a restarted agent).
    pub(super) cached: Vec<ChunkMeta>,
    /// Its latest report, shared with the live statuses made from it (never copied).
    pub(super) report: Option<Arc<AgentReport>>,
    /// `report.recent`'s quantiles, worked out once when it arrived.
    pub(super) quantiles: Option<[f64; 4]>,
    pub(super) waiting: Option<u64>,
    /// Leases it says it has run, until all their numbers are stored.
    pub(super) ran: Vec<RanLease>,
    pub(super) leases: HashMap<u64, Lease>,
    pub(super) done: bool,
    pub(super) source: Option<SourceId>,
}

impl Agent {
    /// Ready for a share of a new workload (or of the running one, coming back).
    pub(super) fn enlist(&mut self, source: SourceId) {
        self.state = InstanceState::Running;
        self.done = false;
        self.report = None;
        self.waiting = None;
        self.ran.clear();
        self.leases.clear();
        self.announced.clear();
        self.source = Some(source);
    }

    pub(super) fn alive(&self) -> bool {
        self.state != InstanceState::Lost
    }

    pub(super) fn offset(&self) -> f64 {
        self.offset.map_or(0.0, |(_, o)| o)
    }

    pub(super) fn status(&self) -> InstanceStatus {
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

/// A lease an agent says it has run, until every number of it is stored.
pub(super) struct RanLease {
    pub(super) lease: Lease,
    /// Its first numbers known to be stored: results arrive roughly in order, so each
    /// check goes on from here instead of starting over (which cost O(numbers) per chunk).
    pub(super) stored: u64,
}

impl RanLease {
    /// True once every number is stored.
    pub(super) fn advance(&mut self, stored: &IterationSet) -> bool {
        let Lease {
            first, step, count, ..
        } = self.lease;
        while self.stored < count && stored.contains(first + self.stored * step) {
            self.stored += 1;
        }
        self.stored == count
    }
}

impl Core {
    /// A session registered: welcome it (or refuse a second process under a live agent's
    /// name), take the chunks it cached for the running workload, and give a returning
    /// member its share back.
    pub(super) fn on_register(
        &mut self,
        conn: ConnId,
        register: Register,
        session: String,
        peer: String,
    ) {
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
                self.out.notice(
                    Level::Warning,
                    format!(
                        "refused agent {} from {} (pid {}): the name is taken by the agent on {} (pid {})",
                        register.name, register.host, register.pid, holder.host, holder.pid
                    ),
                );
                self.out.push(Action::Refuse { conn, reason });
                return;
            }
        }
        let id = self.agents.len() as AgentId;
        let index = self.agents.len();
        let welcome = ToAgent::Welcome {
            agent: id,
            session,
            results_port: self.results_port,
            heartbeat_ms: self.options.heartbeat.as_millis() as u64,
            liveness_ms: self.options.liveness.as_millis() as u64,
            sla_interval_ms: self.options.sla_interval.as_millis() as u64,
        };
        self.out.send(conn, welcome);
        self.out.notice(
            Level::Info,
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
            let (run, workload) = (&active.assignment.run, active.assignment.workload);
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
            self.out.notice(
                Level::Warning,
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
        self.out.push(Action::Registered(self.live_count()));
        self.check_waiters();
    }

    /// Agents not heard from for the liveness timeout are lost. Checked on every
    /// housekeeping tick (50 ms), not only per heartbeat, so that silence is caught within
    /// the timeout plus a tick. So is an agent that heartbeats but does not deliver a chunk
    /// it was asked for within [`DELIVERY_DEADLINE`] (or ten liveness timeouts, if longer):
    /// no wait for a chunk is without end. Its unfinished numbers go to the others, and if it
    /// comes back it delivers what it holds then.
    pub(super) fn lose_silent(&mut self) {
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

    /// Mark an agent lost: its session is closed, and if it was a member of the running
    /// workload its unfinished numbers and its share go to the others.
    pub(super) fn lose(&mut self, i: usize, why: &str) {
        self.may_finish = true;
        let agent = &mut self.agents[i];
        if !agent.alive() {
            return;
        }
        agent.state = InstanceState::Lost;
        agent.in_flight.clear();
        agent.waiting = None;
        self.out.push(Action::Close { conn: agent.conn });
        let mut message = format!("agent {} lost: {why}", agent.name);
        self.lose_member(i, &mut message);
        self.out.push(Action::Registered(self.live_count()));
        self.out.notice(Level::Warning, message);
        self.serve_waiting();
    }
}
