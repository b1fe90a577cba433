//! The planner's tests: worked examples, and a property-test model that applies random
//! requests, completions, losses, joins and bogus reports to a plan and checks that every
//! iteration is done exactly once.

use std::cell::RefCell;
use std::collections::{BTreeSet, HashMap, HashSet};

use proptest::prelude::*;

use super::*;

fn fixed(total: u64) -> Workload {
    Workload::Rate {
        total,
        // 5/64 s windows of a 64/s rate: 5 numbers each, with exact due times.
        rate: Rate::Fixed(64.0),
        window: Duration::from_nanos(78_125_000),
    }
}

fn ramp(total: u64) -> Workload {
    Workload::Rate {
        total,
        rate: Rate::Ramp {
            start: 1.0,
            end: 40.0,
            step: 5.0,
            duration: 1.0,
        },
        window: Duration::from_millis(250),
    }
}

fn workload(kind: u8, total: u64) -> Workload {
    match kind % 5 {
        0 => Workload::Times { total },
        1 => Workload::Serial { total },
        2 => fixed(total),
        3 => ramp(total),
        _ => Workload::Duration,
    }
}

#[derive(Debug, Clone)]
enum Op {
    Request(usize, u64),
    Complete(usize, usize),
    Lost(usize, u64),
    Join,
    Bogus(usize, u64),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => (0..8usize, 0..40u64).prop_map(|(a, w)| Op::Request(a, w)),
        6 => (0..8usize, 0..4usize).prop_map(|(a, i)| Op::Complete(a, i)),
        1 => (0..8usize, any::<u64>()).prop_map(|(a, s)| Op::Lost(a, s)),
        1 => Just(Op::Join),
        1 => (0..8usize, any::<u64>()).prop_map(|(a, l)| Op::Bogus(a, l)),
    ]
}

/// The test's own view of a run, checking the plan against it step by step.
struct Model {
    plan: LeasePlan,
    total: u64,
    rate: bool,
    agents: Vec<AgentId>,
    held: HashMap<AgentId, Vec<Lease>>,
    /// Numbers handed to a live agent, completed, or stored: never handed out again.
    taken: HashSet<u64>,
    completed: Vec<u64>,
    stored: Vec<u64>,
    /// Rate: the last first number of each agent's scheduled leases, while checkable.
    last_first: HashMap<AgentId, u64>,
    unordered: HashSet<AgentId>,
    any_lost: bool,
    scheduled: HashMap<AgentId, u64>,
    next_agent: AgentId,
}

impl Model {
    fn new(kind: u8, total: u64, agents: usize) -> Model {
        let ids: Vec<AgentId> = (0..agents as AgentId).map(|i| i * 7 + 3).collect();
        let workload = workload(kind, total);
        let rate = matches!(workload, Workload::Rate { .. });
        let total = if matches!(workload, Workload::Duration) {
            0
        } else {
            total
        };
        Model {
            plan: LeasePlan::new(workload, &ids),
            total,
            rate,
            held: ids.iter().map(|&a| (a, Vec::new())).collect(),
            next_agent: 1000,
            agents: ids,
            taken: HashSet::new(),
            completed: Vec::new(),
            stored: Vec::new(),
            last_first: HashMap::new(),
            unordered: HashSet::new(),
            any_lost: false,
            scheduled: HashMap::new(),
        }
    }

    fn pick(&self, i: usize) -> AgentId {
        self.agents[i % self.agents.len()]
    }

    fn apply(&mut self, op: &Op) {
        match *op {
            Op::Request(a, want) => {
                let agent = self.pick(a);
                self.request(agent, want);
            }
            Op::Complete(a, i) => {
                let agent = self.pick(a);
                self.complete(agent, i);
            }
            Op::Lost(a, seed) if self.agents.len() > 1 => self.lose(self.pick(a), seed),
            Op::Lost(..) => {}
            Op::Join => {
                let agent = self.next_agent;
                self.next_agent += 1;
                self.plan.join(agent);
                self.plan.join(agent);
                self.agents.push(agent);
                self.held.insert(agent, Vec::new());
            }
            Op::Bogus(a, lease) => {
                self.plan.complete(self.pick(a), lease | (1 << 40));
                self.plan.complete(999_999, lease);
                assert_eq!(self.plan.request(999_999, lease), None);
                assert_eq!(self.plan.lost(999_999, |_| true), 0);
            }
        }
        self.check_invariants();
    }

    fn request(&mut self, agent: AgentId, want: u64) -> bool {
        let Some((span, origin)) = self.plan.next_span(agent, want) else {
            return false;
        };
        let lease = self.plan.send(agent, span);
        assert!(lease.count >= 1 && lease.step >= 1, "{lease:?}");
        if !self.rate {
            assert!(lease.count <= want.max(1), "{lease:?} want {want}");
        }
        if self.rate {
            self.check_rate_order(agent, &lease, origin);
        }
        for n in lease.iter() {
            assert!(n >= 1, "{lease:?}");
            assert!(self.total == 0 || n <= self.total, "{lease:?}");
            assert!(self.taken.insert(n), "{n} handed out twice: {lease:?}");
        }
        self.held.get_mut(&agent).unwrap().push(lease);
        true
    }

    fn check_rate_order(&mut self, agent: AgentId, lease: &Lease, origin: Origin) {
        if origin == Origin::Stolen {
            self.unordered.insert(agent);
        }
        if origin != Origin::Pending || self.any_lost || self.unordered.contains(&agent) {
            return;
        }
        if let Some(&prev) = self.last_first.get(&agent) {
            assert!(lease.first > prev, "{agent}: {lease:?} after {prev}");
        }
        self.last_first.insert(agent, lease.last());
        *self.scheduled.entry(agent).or_default() += lease.count;
    }

    fn complete(&mut self, agent: AgentId, i: usize) {
        let held = self.held.get_mut(&agent).unwrap();
        if held.is_empty() {
            return;
        }
        let lease = held.remove(i % held.len());
        self.plan.complete(agent, lease.id);
        self.plan.complete(agent, lease.id);
        self.completed.extend(lease.iter());
    }

    fn lose(&mut self, agent: AgentId, seed: u64) {
        let held = self.held.remove(&agent).unwrap();
        self.agents.retain(|&a| a != agent);
        let before = self.plan.outstanding(agent);
        assert_eq!(before, held.iter().map(|l| l.count).sum::<u64>());
        let stored = RefCell::new(Vec::new());
        let reissued = self.plan.lost(agent, |n| {
            let yes = (n ^ seed).wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 62 == 0;
            if yes {
                stored.borrow_mut().push(n);
            }
            yes
        });
        let stored = stored.into_inner();
        let held_numbers: BTreeSet<u64> = held.iter().flat_map(Lease::iter).collect();
        if matches!(self.plan.kind, Kind::Duration) {
            assert_eq!(reissued, 0);
        } else {
            assert!(stored.iter().all(|n| held_numbers.contains(n)));
            assert_eq!(reissued, held_numbers.len() as u64 - stored.len() as u64);
            for n in held_numbers {
                if !stored.contains(&n) {
                    self.taken.remove(&n);
                }
            }
            self.stored.extend(stored);
        }
        self.any_lost = true;
        // A completion from the lost agent arriving late is ignored.
        for lease in &held {
            self.plan.complete(agent, lease.id);
        }
        assert_eq!(self.plan.outstanding(agent), 0);
    }

    fn check_invariants(&self) {
        assert_eq!(self.plan.live(), self.agents.len());
        for (agent, held) in &self.held {
            let count: u64 = held.iter().map(|l| l.count).sum();
            assert_eq!(self.plan.outstanding(*agent), count);
        }
        if matches!(self.plan.kind, Kind::Serial) {
            let busy = self.held.values().filter(|h| !h.is_empty()).count();
            assert!(busy <= 1, "serial: {busy} agents hold leases");
        }
        if self.rate && !self.any_lost && self.unordered.is_empty() {
            // Every agent present from the start has been dealt the same share, give or
            // take one iteration.
            let dealt: Vec<u64> = self
                .agents
                .iter()
                .filter(|a| **a < 1000)
                .map(|a| {
                    let pending: u64 = self.plan.agents[a].pending.iter().map(|s| s.count).sum();
                    self.scheduled.get(a).copied().unwrap_or(0) + pending
                })
                .collect();
            let joined = self.agents.iter().any(|a| *a >= 1000);
            if !joined && let (Some(lo), Some(hi)) = (dealt.iter().min(), dealt.iter().max()) {
                assert!(hi - lo <= 1, "dealt {dealt:?}");
            }
        }
    }

    /// Runs every live agent to the end: complete everything, ask again, until finished.
    fn drain(&mut self) {
        for _ in 0..100_000 {
            if self.plan.finished() {
                break;
            }
            let mut progress = false;
            for agent in self.agents.clone() {
                while !self.held[&agent].is_empty() {
                    self.complete(agent, 0);
                    progress = true;
                }
                progress |= self.request(agent, 3);
            }
            self.check_invariants();
            assert!(progress || self.plan.finished(), "stuck: {:?}", self.plan);
        }
        assert!(self.plan.finished());
        assert_eq!(self.plan.request(self.agents[0], 5), None);
    }

    fn check_coverage(&self) {
        let mut seen = vec![0u32; self.total as usize + 1];
        for &n in self.completed.iter().chain(&self.stored) {
            seen[n as usize] += 1;
        }
        assert_eq!(seen[0], 0);
        for (n, &times) in seen.iter().enumerate().skip(1) {
            assert_eq!(times, 1, "iteration {n} done {times} times");
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(400))]

    #[test]
    fn every_iteration_is_done_exactly_once(
        kind in 0u8..4,
        total in 0u64..300,
        agents in 1usize..=5,
        ops in proptest::collection::vec(op(), 0..120),
    ) {
        let mut model = Model::new(kind, total, agents);
        for op in &ops {
            model.apply(op);
        }
        model.drain();
        model.check_coverage();
    }

    #[test]
    fn duration_numbers_are_unique(
        agents in 1usize..=5,
        ops in proptest::collection::vec(op(), 0..200),
    ) {
        let mut model = Model::new(4, 0, agents);
        for op in &ops {
            model.apply(op);
        }
        prop_assert!(!model.plan.finished());
    }

    #[test]
    fn a_window_is_dealt_evenly(
        first in 1u64..1_000_000,
        count in 1u64..10_000,
        agents in 1usize..=7,
        rotation in 0usize..7,
    ) {
        let ids: Vec<AgentId> = (0..agents as AgentId).collect();
        let mut plan = LeasePlan::new(fixed(0), &ids);
        plan.rotation = rotation;
        plan.deal(Span::contiguous(first, count));
        let shares: Vec<u64> = ids
            .iter()
            .map(|a| plan.agents[a].pending.iter().map(|s| s.count).sum())
            .collect();
        prop_assert_eq!(shares.iter().sum::<u64>(), count);
        prop_assert!(shares.iter().max().unwrap() - shares.iter().min().unwrap() <= 1);
        let mut all: Vec<u64> = ids
            .iter()
            .flat_map(|a| plan.agents[a].pending.iter().flat_map(|s| s.iter()).collect::<Vec<_>>())
            .collect();
        all.sort_unstable();
        prop_assert_eq!(all, (first..first + count).collect::<Vec<_>>());
    }

    #[test]
    fn compaction_keeps_exactly_the_unstored_numbers(
        leases in proptest::collection::vec((1u64..500, 1u64..5, 1u64..40), 1..5),
        seed in any::<u64>(),
    ) {
        let mut plan = LeasePlan::new(Workload::Times { total: 0 }, &[1]);
        let leases: Vec<Lease> = leases
            .into_iter()
            .enumerate()
            .map(|(i, (first, step, count))| Lease { id: i as u64, first, step, count })
            .collect();
        let stored = |n: u64| (n ^ seed).is_multiple_of(3);
        let count = plan.orphan(&leases, stored);
        let mut want: Vec<u64> = leases.iter().flat_map(Lease::iter).filter(|&n| !stored(n)).collect();
        let mut got: Vec<u64> = plan.orphans.iter().flat_map(|s| s.iter()).collect();
        want.sort_unstable();
        got.sort_unstable();
        prop_assert_eq!(count, want.len() as u64);
        prop_assert_eq!(got, want);
    }
}

#[test]
fn times_leases_shrink_near_the_end() {
    let mut plan = LeasePlan::new(Workload::Times { total: 1000 }, &[1, 2, 3, 4]);
    let mut sizes = Vec::new();
    let mut handed = 0;
    while let Some(lease) = plan.request(sizes.len() as u32 % 4 + 1, 100) {
        let remaining: u64 = 1000 - handed;
        assert!(lease.count <= remaining.div_ceil(4));
        assert_eq!(lease.first, handed + 1);
        handed += lease.count;
        sizes.push(lease.count);
    }
    assert_eq!(handed, 1000);
    assert_eq!(sizes[0], 100);
    assert!(sizes.len() > 10 && sizes.last() < Some(&10), "{sizes:?}");
    assert!(sizes.windows(2).skip(7).all(|w| w[1] <= w[0]), "{sizes:?}");
}

#[test]
fn serial_runs_on_the_first_live_agent_only() {
    let mut plan = LeasePlan::new(Workload::Serial { total: 10 }, &[5, 6, 7]);
    assert_eq!(plan.request(6, 3), None);
    let a = plan.request(5, 3).unwrap();
    assert_eq!((a.first, a.count), (1, 3));
    assert_eq!(plan.lost(5, |n| n == 1), 2);
    let b = plan.request(6, 10).unwrap();
    assert_eq!((b.first, b.step, b.count), (2, 1, 2));
    assert_eq!(plan.request(7, 3), None);
    let c = plan.request(6, 100).unwrap();
    assert_eq!((c.first, c.count), (4, 7));
    plan.complete(6, b.id);
    assert!(!plan.finished());
    plan.complete(6, c.id);
    assert!(plan.finished());
}

#[test]
fn rate_shares_interleave_and_continue_across_windows() {
    // 5 numbers per window, 3 agents.
    let mut plan = LeasePlan::new(fixed(30), &[1, 2, 3]);
    let a = plan.request(1, 0).unwrap();
    assert_eq!((a.first, a.step, a.count), (1, 3, 2));
    // Window 2 (6..=10) continues the deal where window 1 stopped: agent 3 took 3, so
    // agent 1 takes 7 and agent 3 takes 6 and 9.
    let a2 = plan.request(1, 0).unwrap();
    assert_eq!((a2.first, a2.step, a2.count), (7, 3, 2));
    let b = plan.request(2, 0).unwrap();
    assert_eq!((b.first, b.step, b.count), (2, 3, 2));
    // Agent 3 was dealt 3 and 6, 9 as one progression; it gets them window by window.
    let c = plan.request(3, 0).unwrap();
    assert_eq!((c.first, c.step, c.count), (3, 3, 1));
    let c2 = plan.request(3, 0).unwrap();
    assert_eq!((c2.first, c2.step, c2.count), (6, 3, 2));
    assert_eq!(plan.agents[&3].pending.len(), 0);
}

#[test]
fn rate_lost_agent_pending_is_dealt_to_survivors() {
    let mut plan = LeasePlan::new(fixed(10), &[1, 2, 3]);
    let a = plan.request(1, 0).unwrap(); // 1, 4
    let _ = plan.request(1, 0).unwrap(); // window 2 dealt; agent 2 holds 2,5 and 8
    let b = plan.request(2, 0).unwrap();
    assert_eq!((b.first, b.count), (2, 2));
    assert_eq!(plan.lost(2, |n| n == 2), 1);
    // The unsent 8 went to a survivor's queue; the re-issued 5 goes out first.
    let r = plan.request(3, 7).unwrap();
    assert_eq!((r.first, r.count), (5, 1));
    let pending: u64 = plan
        .agents
        .values()
        .flat_map(|a| &a.pending)
        .map(|s| s.count)
        .sum();
    assert_eq!(pending, 4); // 3, 6, 9 of agent 3 and the 8
    assert!(
        plan.agents
            .values()
            .any(|a| a.pending.iter().any(|s| s.contains(8)))
    );
    plan.complete(1, a.id);
}

#[test]
fn rate_steals_only_pending_shares_after_the_schedule() {
    let mut plan = LeasePlan::new(fixed(20), &[1, 2]);
    // Window 1 deals 1, 3, 5 to agent 1 and 2, 4 to agent 2, which takes them and stalls.
    let held = plan.request(2, 0).unwrap();
    assert_eq!((held.first, held.step, held.count), (2, 2, 2));
    // Agent 1 runs through the schedule, then takes agent 2's unsent shares, never its lease.
    let mut got = Vec::new();
    while let Some(lease) = plan.request(1, 0) {
        plan.complete(1, lease.id);
        got.extend(lease.iter());
    }
    assert_eq!(got.len() as u64, 20 - held.count);
    assert!(got.iter().all(|&n| !held.contains(n)));
    assert!(plan.pending_is_empty(2));
    assert!(!plan.finished());
    assert_eq!(plan.request(2, 0), None);
    plan.complete(2, held.id);
    assert!(plan.finished());
}

#[test]
fn huge_totals_stay_small() {
    let total = 10_000_000_000;
    let mut plan = LeasePlan::new(Workload::Times { total }, &[1, 2]);
    let lease = plan.request(1, u64::MAX).unwrap();
    assert_eq!(lease.count, total / 2);
    assert_eq!(lease.last(), total / 2);
    let mut plan = LeasePlan::new(
        Workload::Rate {
            total,
            rate: Rate::Fixed(1e6),
            window: Duration::from_millis(250),
        },
        &[1, 2, 3],
    );
    for _ in 0..10 {
        let lease = plan.request(1, 1).unwrap();
        assert_eq!(lease.step, 3);
        assert!((83_333..=83_334).contains(&lease.count));
    }
    // Agents 2 and 3 fell ten windows behind: still one pending lease each.
    assert_eq!(plan.agents[&2].pending.len(), 1);
    let r = plan.request(2, 1).unwrap();
    assert!((83_333..=83_334).contains(&r.count));
    let mut plan = LeasePlan::new(ramp(total), &[1]);
    assert!(plan.request(1, 1).is_some());
}

#[test]
fn degenerate_inputs_do_not_panic() {
    for kind in 0..5 {
        let mut plan = LeasePlan::new(workload(kind, 0), &[]);
        assert_eq!(plan.request(1, 0), None);
        assert_eq!(plan.lost(1, |_| false), 0);
        assert_eq!(plan.live(), 0);
        let mut plan = LeasePlan::new(workload(kind, 0), &[1, 1]);
        assert_eq!(plan.live(), 1);
        assert_eq!(plan.finished(), kind != 4);
        assert_eq!(plan.request(1, 0).is_some(), kind == 4);
        // Losing the last agent keeps its work until someone joins.
        let mut plan = LeasePlan::new(workload(kind, 5), &[1]);
        let lease = plan.request(1, 2).unwrap();
        let reissued = plan.lost(1, |_| false);
        plan.join(2);
        if kind == 4 {
            assert_eq!(reissued, 0);
            continue;
        }
        assert_eq!(reissued, lease.count);
        let mut done = 0;
        while let Some(lease) = plan.request(2, 0) {
            done += lease.count;
            plan.complete(2, lease.id);
        }
        assert_eq!(done, 5);
        assert!(plan.finished());
    }
    let rates = [
        Rate::Fixed(0.0),
        Rate::Fixed(f64::NAN),
        Rate::Fixed(f64::INFINITY),
        Rate::Fixed(1e-300),
        Rate::Ramp {
            start: 5.0,
            end: 1.0,
            step: 0.0,
            duration: 0.0,
        },
    ];
    for rate in rates {
        let workload = Workload::Rate {
            total: u64::MAX,
            rate,
            window: Duration::ZERO,
        };
        let mut plan = LeasePlan::new(workload, &[1, 2]);
        let lease = plan.request(1, 0).unwrap();
        assert_eq!((lease.first, lease.step), (1, 2));
    }
    let odd = Lease {
        id: 0,
        first: u64::MAX - 1,
        step: u64::MAX,
        count: u64::MAX,
    };
    assert_eq!(odd.iter().count(), 1);
    assert_eq!(odd.last(), u64::MAX);
    assert!(odd.contains(u64::MAX - 1) && !odd.contains(u64::MAX));
    let zero = Lease {
        id: 0,
        first: 4,
        step: 0,
        count: 0,
    };
    assert!(!zero.contains(4));
    assert_eq!(zero.last(), 4);
}

#[test]
fn lease_helpers() {
    let lease = Lease {
        id: 9,
        first: 3,
        step: 4,
        count: 3,
    };
    assert_eq!(lease.iter().collect::<Vec<_>>(), vec![3, 7, 11]);
    assert_eq!(lease.last(), 11);
    assert!(lease.contains(7) && !lease.contains(15) && !lease.contains(5) && !lease.contains(1));
    let json = serde_json::to_string(&lease).unwrap();
    assert_eq!(serde_json::from_str::<Lease>(&json).unwrap(), lease);
}
