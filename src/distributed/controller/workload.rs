//! One workload on some agents, from the order to the outcome: who takes part with which
//! share, leases handed out on request, the agents' reports, and the end (every number
//! stored or the stop through, every live member done and delivered, storage caught up).

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Arc;

use tokio::time::Instant;

use super::agents::RanLease;
use super::core::{Action, Core};
use super::reshare::{low_water, plan_of, runner_for};
use super::{Assignment, WorkloadOutcome};
use crate::chunk::merge::{ChunkMerger, IterationSet};
use crate::distributed::plan::{AgentId, LeasePlan};
use crate::distributed::protocol::{AgentReport, ToAgent};
use crate::distributed::shares::{ShareOf, Shares, split_concurrency};
use crate::events::{InstanceState, Level};

/// Records held back to put chunks from all agents in time order.
const MERGE_BUFFER: usize = 200_000;
/// How long after the order the workload's time zero is, so every agent has it in time.
pub(super) const START_DELAY: f64 = 0.2;

/// What the engine asked for, as far as the core needs to know it.
pub(super) struct Begin {
    pub(super) assignment: Assignment,
    /// The engine wants live statuses.
    pub(super) live: bool,
    /// The engine listens to every number handed out.
    pub(super) listens: bool,
    /// Storage says how far it has committed (else a chunk handed to it counts as committed).
    pub(super) tracks_commits: bool,
}

pub(super) struct Active {
    pub(super) assignment: Assignment,
    pub(super) live: bool,
    listens: bool,
    pub(super) plan: LeasePlan,
    pub(super) members: Vec<usize>,
    pub(super) stored: IterationSet,
    pub(super) merger: ChunkMerger,
    pub(super) outcome: WorkloadOutcome,
    pub(super) stop_sent: bool,
    pub(super) end_sent: bool,
    /// The merger has been emptied into storage (the workload is settled).
    drained: bool,
    /// Buffered chunks by merger tag: which agent's which cached chunk, to confirm it once
    /// it is released to storage.
    pub(super) tags: HashMap<u64, (usize, u64)>,
    pub(super) next_tag: u64,
    /// Chunks released to storage so far, and the released ones not yet confirmed to their
    /// agents: (release number, agent, chunk id).
    pub(super) released: u64,
    pub(super) unconfirmed: VecDeque<(u64, usize, u64)>,
    /// Chunks committed to storage as it last said (`None`: it does not say, and a chunk
    /// handed to it counts as committed).
    pub(super) committed: Option<u64>,
    /// Chunks delivered, by agent name and chunk id (a restarted agent keeps its ids): what
    /// a lost agent announced and no one delivered is reported missing at the end.
    pub(super) delivered: HashSet<(String, u64)>,
    /// The highest number handed out: anything above is not ours (a corrupt or foreign chunk).
    pub(super) max_number: u64,
    /// When the workload began, and who took part (by name): a member that comes back after
    /// being lost takes a share again.
    pub(super) begun: Instant,
    pub(super) enlisted: HashSet<String>,
    /// The live members' shares of the concurrency (`None` for `serial`).
    pub(super) portion: Option<Shares>,
    /// Members lost and not back, with when (seconds into the workload).
    pub(super) lost_at: HashMap<String, f64>,
}

impl Core {
    /// A workload begins on the first live agents (as many as asked for that have a share):
    /// each is sent its order. With no agent alive it ends at once with an error.
    pub(super) fn begin(&mut self, begin: Begin) {
        self.may_finish = true;
        let Begin {
            assignment,
            live,
            listens,
            tracks_commits,
        } = begin;
        let alive: Vec<usize> = (0..self.agents.len())
            .filter(|&i| self.agents[i].alive())
            .collect();
        if alive.is_empty() {
            self.out.push(Action::Finish(WorkloadOutcome {
                error: Some("no agent is alive".into()),
                ..Default::default()
            }));
            return;
        }
        let members: Vec<usize> = alive.into_iter().take(assignment.agents.max(1)).collect();
        if members.len() < assignment.agents {
            self.out.notice(
                Level::Warning,
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
            self.out.send(a.conn, ToAgent::Workload(Box::new(order)));
        }
        let portion = of.map(|of| Shares::new(of, split.iter().sum(), held));
        let names = members
            .iter()
            .map(|&i| self.agents[i].name.clone())
            .collect();
        self.active = Some(Active {
            assignment,
            live,
            listens,
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
            committed: tracks_commits.then_some(0),
            delivered: HashSet::new(),
            max_number: 0,
            begun: Instant::now(),
            enlisted,
            portion,
            lost_at: HashMap::new(),
        });
        self.publish_live();
    }

    pub(super) fn is_member(&self, i: usize, workload: u32) -> bool {
        self.active
            .as_ref()
            .is_some_and(|a| a.assignment.workload == workload && a.members.contains(&i))
    }

    /// Members waiting for numbers get a lease each, while the plan has some.
    pub(super) fn serve_waiting(&mut self) {
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
            if active.listens {
                self.out.push(Action::Issued(lease.clone()));
            }
            agent.leases.insert(lease.id, lease.clone());
            self.out.send(
                agent.conn,
                ToAgent::Lease {
                    workload: active.assignment.workload,
                    lease,
                },
            );
        }
    }

    /// Says when an agent pauses its load (its cache cannot write) and when it resumes.
    fn note_pause(&mut self, i: usize, report: &AgentReport) {
        let agent = &self.agents[i];
        let was_paused = agent.report.as_ref().and_then(|r| r.paused.as_ref());
        if report.paused.as_ref() != was_paused {
            let (level, message) = match &report.paused {
                Some(why) => (
                    Level::Warning,
                    format!("agent {} paused its load: {why}", agent.name),
                ),
                None => (
                    Level::Info,
                    format!("agent {} resumed its load", agent.name),
                ),
            };
            self.out.notice(level, message);
        }
    }

    /// An agent's report on the running workload: leases it has run, chunks it has made,
    /// how far its results have got, whether it is done; forwarded live at once.
    pub(super) fn on_report(&mut self, i: usize, report: AgentReport) {
        if self
            .active
            .as_ref()
            .is_some_and(|a| a.assignment.workload == report.workload)
        {
            self.note_pause(i, &report);
        }
        let Some(active) = &mut self.active else {
            return;
        };
        if report.workload != active.assignment.workload {
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
        if active.live {
            self.out.push(Action::Live(vec![agent.status()]));
        }
    }

    /// The first half of the end: true once the workload is settled (every live member
    /// done, everything announced delivered; or every member lost), with what the merger
    /// still holds handed to storage (as [`Action::Store`]s, once). The loop carries those
    /// out, then calls [`Core::conclude`].
    pub(super) fn settle(&mut self) -> bool {
        let Some(active) = &mut self.active else {
            return false;
        };
        let live: Vec<usize> = active
            .members
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
                    self.out.send(
                        self.agents[i].conn,
                        ToAgent::End {
                            workload: active.assignment.workload,
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
                return false;
            }
        }
        if !active.drained {
            active.drained = true;
            for (chunk, tag) in active.merger.drain_tagged().collect::<Vec<_>>() {
                self.out.push(Action::Store { chunk, tag });
            }
        }
        true
    }

    /// The second half of the end, once the settled workload's chunks are handed to
    /// storage: confirm what is committed, and finish once everything is (or storage has
    /// gone: then nothing more will be committed).
    pub(super) fn conclude(&mut self, storage_closed: bool) {
        self.confirm();
        // Agents keep a chunk until it is committed: wait for storage to catch up.
        if let Some(active) = &self.active
            && !active.unconfirmed.is_empty()
            && !storage_closed
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
                    m.key.run == active.assignment.run
                        && m.key.workload == active.assignment.workload
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
        for &i in &active.members {
            let a = &mut self.agents[i];
            if a.alive() {
                a.state = InstanceState::Done;
            }
        }
        if active.live {
            let statuses = self.statuses(&active.members);
            self.out.push(Action::Live(statuses));
        }
        self.out.push(Action::Finish(active.outcome));
    }
}
