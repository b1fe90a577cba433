//! Who carries how much of a distributed workload's concurrency, and how that changes when an
//! agent is lost or comes back (SPEC §6, lost shares).
//!
//! A closed runner's `concurrency` (and an `rps` runner's `max_concurrency`) is split among the
//! agents so that the shares sum to the configured figure. When an agent is lost, the
//! workload must go on honouring that figure: its share is dealt to the survivors. When it
//! comes back, the figure is split again with it included. Both moves change as few slots as
//! possible, so that an agent is not asked to retire slots only to have them added back.
//!
//! An `rps` workload's *rate* needs nothing here: the lease planner deals every window of the
//! schedule among the live agents, so the survivors carry a lost agent's part of the rate
//! from the next window on. What a [`Reshare`] says about the rate is only for the record.
//!
//! This module is pure bookkeeping: the controller sends the new shares, the agent's runner
//! follows them (`Feed::set_share`).

use std::fmt;

use serde::{Deserialize, Serialize};

/// Splits `concurrency` among `agents` exactly: the shares sum to `concurrency`, differ by at
/// most one, and earlier agents get the extra. With `concurrency < agents` the last agents
/// get 0: for `constant` such an agent runs nothing (leases it asked for would never be run),
/// so the caller should not give it work.
pub fn split_concurrency(concurrency: u64, agents: usize) -> Vec<u64> {
    let n = agents as u64;
    if n == 0 {
        return Vec::new();
    }
    let (base, extra) = (concurrency / n, concurrency % n);
    (0..n).map(|i| base + u64::from(i < extra)).collect()
}

/// Which figure of the runner config is shared.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ShareOf {
    /// `constant`, `constant_for_duration`: slots running iterations back to back.
    Concurrency,
    /// `rps`: the most iterations in flight; the rate itself is dealt by the lease planner.
    MaxConcurrency,
}

impl ShareOf {
    /// The runner config's key.
    pub fn key(self) -> &'static str {
        match self {
            ShareOf::Concurrency => "concurrency",
            ShareOf::MaxConcurrency => "max_concurrency",
        }
    }
}

/// One agent's share changing.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShareMove {
    pub agent: String,
    pub from: u64,
    pub to: u64,
}

/// Why shares moved.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReshareCause {
    Lost,
    Back,
}

/// A change of shares, for the log, the summary, the store and the report: "local-2 lost at
/// 9.4 s: its concurrency 2 went to local-1 (+1) and local-3 (+1)".
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Reshare {
    /// Seconds into the workload.
    pub at: f64,
    /// The agent lost or back.
    pub agent: String,
    pub cause: ReshareCause,
    pub of: ShareOf,
    /// Its share before (lost) or after (back).
    pub share: u64,
    /// The other agents' changes.
    pub moves: Vec<ShareMove>,
    /// Agents carrying an `rps` schedule after the change (the rate is dealt evenly).
    #[serde(default)]
    pub rate_agents: Option<usize>,
}

impl Reshare {
    /// What changed, without who and when: "its concurrency 2 went to a (+1) and c (+1)".
    pub fn change(&self) -> String {
        let moves = list(
            self.moves
                .iter()
                .map(|m| format!("{} ({:+})", m.agent, i128::from(m.to) - i128::from(m.from))),
        );
        let key = self.of.key();
        let rate = match (self.cause, self.rate_agents) {
            (ReshareCause::Lost, Some(n)) => {
                format!("its part of the rate went to the {n} others (1/{n} each); ")
            }
            (ReshareCause::Back, Some(n)) => {
                format!("the rate is dealt among {n} agents again (1/{n} each); ")
            }
            (_, None) => String::new(),
        };
        let share = self.share;
        let figure = match (self.cause, self.moves.is_empty()) {
            (ReshareCause::Lost, true) => {
                format!("its {key} {share} was not taken over (no agent left)")
            }
            (ReshareCause::Lost, false) => format!("its {key} {share} went to {moves}"),
            (ReshareCause::Back, true) => format!("it takes {key} {share}"),
            (ReshareCause::Back, false) => format!("it takes {key} {share} from {moves}"),
        };
        format!("{rate}{figure}")
    }
}

impl fmt::Display for Reshare {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let what = match self.cause {
            ReshareCause::Lost => "lost",
            ReshareCause::Back => "back",
        };
        write!(
            f,
            "{} {what} at {:.1} s: {}",
            self.agent,
            self.at,
            self.change()
        )
    }
}

/// "a", "a and b", "a, b and c".
fn list(items: impl Iterator<Item = String>) -> String {
    let items: Vec<String> = items.collect();
    match items.as_slice() {
        [] => String::new(),
        [one] => one.clone(),
        [init @ .., last] => format!("{} and {last}", init.join(", ")),
    }
}

/// The live members' shares of one figure (`total` in all).
#[derive(Debug, Clone)]
pub struct Shares {
    pub of: ShareOf,
    total: u64,
    /// In member order.
    held: Vec<(String, u64)>,
}

impl Shares {
    pub fn new(of: ShareOf, total: u64, held: Vec<(String, u64)>) -> Shares {
        Shares { of, total, held }
    }

    pub fn get(&self, agent: &str) -> Option<u64> {
        self.held.iter().find(|(a, _)| a == agent).map(|(_, s)| *s)
    }

    /// How many agents hold a share.
    pub fn holders(&self) -> usize {
        self.held.len()
    }

    /// `agent` is lost: its share goes to the others. Returns its share and the others'
    /// changes (only increases: see [`rebalance`]); `None` if it held none.
    pub fn lose(&mut self, agent: &str) -> Option<(u64, Vec<ShareMove>)> {
        let at = self.held.iter().position(|(a, _)| a == agent)?;
        let (_, share) = self.held.remove(at);
        Some((share, rebalance(&mut self.held, self.total)))
    }

    /// `agent` is back: the figure is split again with it included. Returns its new share
    /// and the others' changes; `None`, and nothing changes, when the split leaves it nothing
    /// (fewer slots than agents), or it already holds one.
    pub fn join(&mut self, agent: &str) -> Option<(u64, Vec<ShareMove>)> {
        if self.get(agent).is_some() {
            return None;
        }
        let mut held = self.held.clone();
        held.push((agent.to_string(), 0));
        let mut moves = rebalance(&mut held, self.total);
        let share = held.last().map_or(0, |(_, s)| *s);
        if share == 0 {
            return None;
        }
        moves.retain(|m| m.agent != agent);
        self.held = held;
        Some((share, moves))
    }
}

/// Splits `total` among `held` (shares differing by at most one, summing to `total`) while
/// moving as little as possible: the extra ones go to those that hold the most now. Returns
/// the changes. When every share was within one of the others and an agent left, no one's
/// share goes down; when one joined with nothing, no one's goes up.
fn rebalance(held: &mut [(String, u64)], total: u64) -> Vec<ShareMove> {
    let n = held.len() as u64;
    if n == 0 {
        return Vec::new();
    }
    let (base, extra) = (total / n, total % n);
    let mut order: Vec<usize> = (0..held.len()).collect();
    // Stable: among equal shares, member order decides.
    order.sort_by_key(|&i| std::cmp::Reverse(held[i].1));
    let mut moves = Vec::new();
    let mut new = vec![0; held.len()];
    for (rank, &i) in order.iter().enumerate() {
        new[i] = base + u64::from((rank as u64) < extra);
    }
    for (i, (agent, share)) in held.iter_mut().enumerate() {
        if *share != new[i] {
            moves.push(ShareMove {
                agent: agent.clone(),
                from: *share,
                to: new[i],
            });
            *share = new[i];
        }
    }
    // By name, so that the same change always reads the same.
    moves.sort_by(|a, b| a.agent.cmp(&b.agent));
    moves
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn shares(of: ShareOf, list: &[(&str, u64)]) -> Shares {
        let total = list.iter().map(|(_, s)| s).sum();
        Shares::new(
            of,
            total,
            list.iter().map(|(a, s)| (a.to_string(), *s)).collect(),
        )
    }

    #[test]
    fn a_lost_share_goes_to_the_survivors_and_says_so() {
        let mut s = shares(ShareOf::Concurrency, &[("a", 2), ("b", 2), ("c", 2)]);
        let (share, moves) = s.lose("b").unwrap();
        assert_eq!(share, 2);
        assert_eq!(
            (s.get("a"), s.get("c"), s.get("b")),
            (Some(3), Some(3), None)
        );
        let r = Reshare {
            at: 9.44,
            agent: "b".into(),
            cause: ReshareCause::Lost,
            of: ShareOf::Concurrency,
            share,
            moves,
            rate_agents: None,
        };
        assert_eq!(
            r.to_string(),
            "b lost at 9.4 s: its concurrency 2 went to a (+1) and c (+1)"
        );
    }

    #[test]
    fn a_returning_agent_takes_back_from_the_biggest() {
        let mut s = shares(ShareOf::MaxConcurrency, &[("a", 4), ("c", 3)]);
        let (share, moves) = s.join("b").unwrap();
        assert_eq!(share, 2);
        assert_eq!(
            moves,
            vec![
                ShareMove {
                    agent: "a".into(),
                    from: 4,
                    to: 3
                },
                ShareMove {
                    agent: "c".into(),
                    from: 3,
                    to: 2
                }
            ]
        );
        let r = Reshare {
            at: 12.0,
            agent: "b".into(),
            cause: ReshareCause::Back,
            of: ShareOf::MaxConcurrency,
            share,
            moves,
            rate_agents: Some(3),
        };
        assert_eq!(
            r.to_string(),
            "b back at 12.0 s: the rate is dealt among 3 agents again (1/3 each); it takes \
             max_concurrency 2 from a (-1) and c (-1)"
        );
        // Already in: nothing changes.
        assert_eq!(s.join("b"), None);
    }

    #[test]
    fn a_returning_agent_with_no_slot_left_stays_out() {
        let mut s = shares(ShareOf::Concurrency, &[("a", 1), ("c", 1)]);
        assert_eq!(s.join("b"), None);
        assert_eq!(s.holders(), 2);
        let mut s = shares(ShareOf::Concurrency, &[("a", 1)]);
        assert_eq!(s.lose("a"), Some((1, Vec::new())));
        assert_eq!(s.lose("a"), None);
    }

    proptest! {
        #[test]
        fn shares_always_sum_to_the_total_and_differ_by_at_most_one(
            total in 1u64..200,
            agents in 1usize..12,
            ops in proptest::collection::vec((any::<bool>(), 0usize..12), 0..30),
        ) {
            let names: Vec<String> = (0..12).map(|i| format!("agent-{i}")).collect();
            let split = split_concurrency(total, agents);
            let held = names.iter().cloned().zip(split).filter(|(_, s)| *s > 0).collect();
            let mut s = Shares::new(ShareOf::Concurrency, total, held);
            for (lose, who) in ops {
                let name = &names[who];
                let before = s.held.clone();
                if lose && s.holders() > 1 {
                    if let Some((_, moves)) = s.lose(name) {
                        // Nobody's share goes down when someone leaves.
                        prop_assert!(moves.iter().all(|m| m.to > m.from));
                    }
                } else if !lose && let Some((share, moves)) = s.join(name) {
                    prop_assert!(share > 0);
                    prop_assert!(moves.iter().all(|m| m.to < m.from));
                }
                let sum: u64 = s.held.iter().map(|(_, x)| x).sum();
                prop_assert_eq!(sum, total, "{:?} -> {:?}", before, s.held);
                let min = s.held.iter().map(|(_, x)| *x).min().unwrap_or(0);
                let max = s.held.iter().map(|(_, x)| *x).max().unwrap_or(0);
                prop_assert!(max - min <= 1, "{:?}", s.held);
                prop_assert!(s.held.iter().all(|(_, x)| *x > 0));
            }
        }

        #[test]
        fn split_concurrency_is_exact(concurrency in 0u64..10_000, agents in 0usize..50) {
            let shares = split_concurrency(concurrency, agents);
            prop_assert_eq!(shares.len(), agents);
            if agents > 0 {
                prop_assert_eq!(shares.iter().sum::<u64>(), concurrency);
                let (min, max) = (shares.iter().min().unwrap(), shares.iter().max().unwrap());
                prop_assert!(max - min <= 1);
                prop_assert!(shares.windows(2).all(|w| w[0] >= w[1]));
            }
        }
    }
}
