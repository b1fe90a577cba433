//! The concurrency's shares as members are lost and come back (SPEC §6 lost shares): what a
//! lost member leaves to the others (its unfinished numbers, its share), what a returning one
//! takes again, and what each agent is told ([`ToAgent::Share`]). Also what of the inner
//! runner is shared at all, and in which figures.

use std::time::Duration;

use serde_json::{Value, json};

use super::core::Core;
use super::workload::START_DELAY;
use crate::distributed::plan::Workload;
use crate::distributed::protocol::ToAgent;
use crate::distributed::shares::{Reshare, ReshareCause, ShareMove, ShareOf};
use crate::events::Level;
use crate::runner::RunnerSpec;

/// The `rps` schedule is dealt in windows of this length.
const RATE_WINDOW: Duration = Duration::from_millis(250);
/// Numbers an agent holds queued per slot of its share (closed runners).
const PER_SLOT: u64 = 32;

impl Core {
    /// A member of the running workload is lost (agent `i`, already marked): its unfinished
    /// numbers go to the others, and its share of the concurrency too. Says so in `message`.
    pub(super) fn lose_member(&mut self, i: usize, message: &mut String) {
        let agent = &self.agents[i];
        let name = agent.name.clone();
        let (id, source) = (agent.id, agent.source);
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
            let inner = &active.assignment.inner;
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
                    agent: name,
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
    }

    /// A lost member came back: it gets a share of the running workload again, on the
    /// workload's own clock (its schedule and duration end with the others'), and the others
    /// give up what it takes.
    pub(super) fn rejoin(&mut self, i: usize) {
        let Some(active) = &mut self.active else {
            return;
        };
        let name = self.agents[i].name.clone();
        let Some(lost_at) = active.lost_at.remove(&name) else {
            return;
        };
        let back_at = active.begun.elapsed().as_secs_f64();
        let inner = active.assignment.inner.clone();
        let (share, moves) = match &mut active.portion {
            None => (1, Vec::new()),
            Some(portion) => match portion.join(&name) {
                Some(joined) => joined,
                None => {
                    let message = format!(
                        "agent {name} is back (lost at {lost_at:.1} s), but every slot of the \
                         workload's concurrency is taken: it stays idle until the next workload"
                    );
                    self.out.notice(Level::Info, message);
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
        let order = active.assignment.order(
            runner_for(&inner, of, share),
            low_water(&inner, share, live),
            START_DELAY - back_at,
        );
        self.out
            .send(self.agents[i].conn, ToAgent::Workload(Box::new(order)));
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
        self.out.notice(Level::Info, message);
    }

    /// Tells each live member its share now (and, for `rps`, how much to hold queued: its
    /// part of the rate changed with the number of agents, even where its share did not).
    fn send_shares(&mut self, moves: &[ShareMove]) {
        let Some(active) = &self.active else {
            return;
        };
        let inner = &active.assignment.inner;
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
            self.out.send(
                a.conn,
                ToAgent::Share {
                    workload: active.assignment.workload,
                    share,
                    low_water: low_water(inner, share, live.len()),
                },
            );
        }
    }
}

/// What is shared of the inner runner: the lease plan's workload, and which figure of the
/// config is split among the agents, with its total (none for `serial`, which runs on one
/// agent at a time).
pub(super) fn plan_of(inner: &RunnerSpec) -> (Workload, Option<(ShareOf, u64)>) {
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
pub(super) fn runner_for(inner: &RunnerSpec, of: Option<ShareOf>, share: u64) -> Value {
    let mut body = inner.config_json();
    if let Some(of) = of {
        body[of.key()] = json!(share);
    }
    json!({ inner.name(): body })
}

/// How many numbers an agent with `share` holds queued before asking for more, when `agents`
/// share the workload: about half a second of its part of an `rps` schedule, or a few per
/// slot.
pub(super) fn low_water(inner: &RunnerSpec, share: u64, agents: usize) -> u64 {
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
