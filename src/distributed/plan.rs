//! The controller's iteration lease planner: which global iteration numbers each agent runs.
//!
//! A distributed workload must honour its runner's config as a whole (SPEC §6): `times: 1000`
//! over three agents runs iterations 1..=1000 once each, an `rps` schedule is kept by the sum of
//! the agents, and a lost agent's unfinished share is run by the others. This module is the pure
//! bookkeeping behind that; it does no I/O and knows nothing of sockets or clocks.
//!
//! **Why leases.** Iterations carry global 1-based numbers. Instead of splitting `1..=total` up
//! front, the controller hands out *leases*, strided sets of numbers (`first, first+step, …`),
//! a little at a time: an agent asks for the next one when it is about to run out (about 0.25 s
//! of its own work). A fast agent therefore runs more, a slow one less, and at any moment an
//! agent holds only a little unfinished work, which is what must be re-issued when it is lost.
//! An agent reports a lease complete once all its results are in its on-disk cache; until then
//! the lease is *outstanding*. When an agent is lost, the numbers of its outstanding leases that
//! the store does not already hold are compacted back into leases and handed out again before
//! anything new — so nothing is left undone, and no number is handed out twice except those.
//! A lease is a handful of integers whatever its size, so memory does not grow with `total`
//! (10^10 is fine): no list of numbers is ever built.
//!
//! **Why interleaved strides for `rps`.** Iteration `k` is due at [`Rate::start_of`]`(k)`. If
//! each agent took contiguous blocks, the agents would take turns carrying the whole rate, and a
//! lost agent would leave a hole in the schedule. Instead the schedule is cut into time windows
//! and each window is dealt round-robin: with `n` live agents an agent's share is every `n`-th
//! number, so each agent carries `1/n` of the rate at every instant, shares of a window differ by
//! at most one iteration, and the sum is the exact schedule. The deal continues across windows
//! (the agent after the one that took a window's last number takes the next window's first), so
//! the odd iteration of an uneven window goes to each agent in turn rather than always to the
//! first, and an agent's consecutive shares form one arithmetic progression — its queue of
//! shares collapses into a single lease however far behind it falls.
//!
//! **Why steal only unsent leases.** Shares are dealt into per-agent *pending* queues that are
//! handed out one window at a time. An agent that has received a lease may already be running
//! any of its numbers, so moving a sent lease could run a number twice. A pending share has never
//! left the controller, so moving it is free: when the schedule is exhausted, an agent that has
//! nothing left takes (half of, interleaved) the largest pending share of another agent. When an
//! agent is lost, its pending queue is dealt among the survivors the same interleaved way.
//!
//! `serial` runs everything on the first live agent (the next one takes over if it is lost), and
//! `constant_for_duration` only needs unique numbers: agents stop by their own clock and nothing
//! is re-issued.

use std::collections::{BTreeMap, VecDeque};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::runner::Rate;

pub type AgentId = u32;

/// The largest `total` the planner accepts; larger ones are clamped (it keeps `total + 1`
/// representable as "one past the last number").
const MAX_TOTAL: u64 = u64::MAX - 1;

/// Rates whose due times would exceed this many seconds are treated as degenerate.
const MAX_SCHEDULE_SECS: f64 = 1e15;

/// Iteration numbers `first, first+step, …, first+(count-1)*step`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Lease {
    pub id: u64,
    pub first: u64,
    pub step: u64,
    pub count: u64,
}

impl Lease {
    /// The lease's numbers in increasing order (it stops early rather than overflow).
    pub fn iter(&self) -> impl Iterator<Item = u64> + use<> {
        self.span().iter()
    }

    /// The last number (`first` for an empty lease; saturates rather than overflow).
    pub fn last(&self) -> u64 {
        self.span().last()
    }

    pub fn contains(&self, n: u64) -> bool {
        self.span().contains(n)
    }

    fn span(&self) -> Span {
        Span {
            first: self.first,
            step: self.step,
            count: self.count,
        }
    }
}

/// What the planner has to hand out for one workload.
#[derive(Debug, Clone, PartialEq)]
pub enum Workload {
    /// `constant`: closed model, `total` iterations.
    Times { total: u64 },
    /// `serial`: `total` iterations, all on one agent at a time (the first live agent; if it is
    /// lost, the next takes over).
    Serial { total: u64 },
    /// `rps`: iteration `k` is due at `rate.start_of(k)` after the workload start; the schedule
    /// is dealt window by window (iterations due in `[w*window, (w+1)*window)`) among the live
    /// agents as interleaved strides.
    Rate {
        total: u64,
        rate: Rate,
        window: Duration,
    },
    /// `constant_for_duration`: unbounded numbers; agents stop by their own clock.
    Duration,
}

/// A lease without an id: pending shares and re-issued numbers before they are handed out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Span {
    first: u64,
    step: u64,
    count: u64,
}

impl Span {
    fn contiguous(first: u64, count: u64) -> Span {
        Span {
            first,
            step: 1,
            count,
        }
    }

    /// The `j`-th number (0-based), if representable.
    fn nth(&self, j: u64) -> Option<u64> {
        j.checked_mul(self.step)?.checked_add(self.first)
    }

    fn last(&self) -> u64 {
        self.nth(self.count.saturating_sub(1)).unwrap_or(u64::MAX)
    }

    /// The number that would follow the last one.
    fn next(&self) -> Option<u64> {
        self.nth(self.count)
    }

    fn iter(self) -> impl Iterator<Item = u64> {
        (0..self.count).map_while(move |j| self.nth(j))
    }

    fn contains(&self, n: u64) -> bool {
        let Some(offset) = n.checked_sub(self.first) else {
            return false;
        };
        match offset.checked_div(self.step) {
            Some(j) => offset % self.step == 0 && j < self.count,
            None => offset == 0 && self.count > 0,
        }
    }

    /// Removes and returns the first `n` numbers (all of them if there are fewer).
    fn take_front(&mut self, n: u64) -> Span {
        let n = n.min(self.count);
        let head = Span { count: n, ..*self };
        self.first = self.nth(n).unwrap_or(u64::MAX);
        self.count -= n;
        head
    }

    /// Every `parts`-th number starting at index `q`, or None if that selects nothing.
    fn stride(&self, q: u64, parts: u64) -> Option<Span> {
        let parts = parts.max(1);
        if q >= self.count {
            return None;
        }
        Some(Span {
            first: self.nth(q)?,
            step: self.step.saturating_mul(parts),
            count: (self.count - q - 1) / parts + 1,
        })
    }
}

/// Builds as few strided spans as reasonable from increasing numbers: a run grows while the
/// numbers keep the step its first two set.
#[derive(Default)]
struct RunBuilder {
    run: Option<Span>,
}

impl RunBuilder {
    fn push(&mut self, n: u64, out: &mut VecDeque<Span>) {
        match &mut self.run {
            Some(run) if run.count == 1 && n > run.first => {
                run.step = n - run.first;
                run.count = 2;
            }
            Some(run) if run.next() == Some(n) => run.count += 1,
            _ => {
                self.finish(out);
                self.run = Some(Span::contiguous(n, 1));
            }
        }
    }

    fn finish(&mut self, out: &mut VecDeque<Span>) {
        out.extend(self.run.take());
    }
}

#[derive(Debug, Clone)]
enum Kind {
    Times,
    Serial,
    /// `rate` is None when it would not give finite due times (never from a validated config):
    /// then the whole schedule is one window.
    Rate {
        rate: Option<Rate>,
        window_ns: u128,
    },
    Duration,
}

/// Where a handed-out lease came from (for tests and traces).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Origin {
    Reissue,
    Fresh,
    Pending,
    Stolen,
}

#[derive(Debug, Clone, Default)]
struct AgentState {
    /// Handed out, not complete.
    sent: Vec<Lease>,
    /// Rate only: dealt shares not yet handed out, ordered by first number.
    pending: VecDeque<Span>,
}

/// The controller's record of which numbers are where, for one workload.
#[derive(Debug, Clone)]
pub struct LeasePlan {
    kind: Kind,
    total: u64,
    /// The next number never handed out nor dealt; `total + 1` once the schedule is exhausted.
    cursor: u64,
    next_id: u64,
    /// Live agents in join order (serial hands everything to the first; rate deals in order).
    order: Vec<AgentId>,
    agents: BTreeMap<AgentId, AgentState>,
    /// Numbers of lost agents' unfinished leases, handed out before anything else.
    orphans: VecDeque<Span>,
    /// Rate: the position in `order` of the agent that gets the next dealt number.
    rotation: usize,
}

impl LeasePlan {
    pub fn new(workload: Workload, agents: &[AgentId]) -> LeasePlan {
        let (kind, total) = match workload {
            Workload::Times { total } => (Kind::Times, total),
            Workload::Serial { total } => (Kind::Serial, total),
            Workload::Rate {
                total,
                rate,
                window,
            } => {
                let total = total.min(MAX_TOTAL);
                let rate = usable_rate(&rate, total).then_some(rate);
                let window_ns = window.as_nanos().max(1);
                (Kind::Rate { rate, window_ns }, total)
            }
            Workload::Duration => (Kind::Duration, MAX_TOTAL),
        };
        let mut plan = LeasePlan {
            kind,
            total: total.min(MAX_TOTAL),
            cursor: 1,
            next_id: 1,
            order: Vec::new(),
            agents: BTreeMap::new(),
            orphans: VecDeque::new(),
            rotation: 0,
        };
        for &agent in agents {
            plan.join(agent);
        }
        plan
    }

    /// The next lease for `agent`, of at most `want` iterations (0 counts as 1). Re-issued
    /// numbers go first; `constant` also caps a lease at an equal share of what is left, and
    /// `rps` hands out one window of the agent's pending share whatever `want` says (only
    /// re-issued numbers heed it). None: nothing to hand out now, or an unknown agent.
    pub fn request(&mut self, agent: AgentId, want: u64) -> Option<Lease> {
        let (span, _) = self.next_span(agent, want)?;
        Some(self.send(agent, span))
    }

    /// The agent finished every iteration of the lease and its results are in its cache.
    /// Unknown agents (including lost ones) and unknown leases are ignored.
    pub fn complete(&mut self, agent: AgentId, lease: u64) {
        if let Some(state) = self.agents.get_mut(&agent)
            && let Some(i) = state.sent.iter().position(|l| l.id == lease)
        {
            state.sent.swap_remove(i);
        }
    }

    /// A new agent joined (or a lost one came back, as a new agent): it takes part in later
    /// windows and in stealing. Joining twice is ignored.
    pub fn join(&mut self, agent: AgentId) {
        if self.agents.contains_key(&agent) {
            return;
        }
        self.agents.insert(agent, AgentState::default());
        self.order.push(agent);
        self.rotation = 0;
    }

    /// The agent is gone. Its outstanding leases are re-issued minus the numbers `is_stored`
    /// says are already stored (it is called once per outstanding number), compacted into few
    /// strided leases; for `rps` its pending queue is dealt among the survivors. Returns how
    /// many iterations were re-issued (pending shares were never issued, so they do not count).
    /// `constant_for_duration` re-issues nothing. Unknown agents: 0.
    pub fn lost(&mut self, agent: AgentId, is_stored: impl Fn(u64) -> bool) -> u64 {
        let Some(mut state) = self.agents.remove(&agent) else {
            return 0;
        };
        self.order.retain(|&a| a != agent);
        self.rotation = 0;
        if matches!(self.kind, Kind::Duration) {
            return 0;
        }
        state.sent.sort_by_key(|l| l.first);
        let reissued = self.orphan(&state.sent, is_stored);
        for span in state.pending {
            self.deal(span);
        }
        reissued
    }

    /// Every number `1..=total` has been handed out and every lease is complete.
    /// `constant_for_duration`: never (the caller ends it).
    pub fn finished(&self) -> bool {
        !matches!(self.kind, Kind::Duration)
            && self.cursor > self.total
            && self.orphans.is_empty()
            && self
                .agents
                .values()
                .all(|a| a.sent.is_empty() && a.pending.is_empty())
    }

    /// Iterations handed out to `agent` and not complete.
    pub fn outstanding(&self, agent: AgentId) -> u64 {
        self.agents.get(&agent).map_or(0, |a| {
            a.sent.iter().fold(0, |sum, l| sum.saturating_add(l.count))
        })
    }

    /// Number of live agents.
    pub fn live(&self) -> usize {
        self.order.len()
    }

    fn next_span(&mut self, agent: AgentId, want: u64) -> Option<(Span, Origin)> {
        if !self.agents.contains_key(&agent) {
            return None;
        }
        if matches!(self.kind, Kind::Serial) && self.order.first() != Some(&agent) {
            return None;
        }
        let want = want.max(1);
        if let Some(span) = self.take_orphans(want) {
            return Some((span, Origin::Reissue));
        }
        match self.kind {
            Kind::Times => {
                let cap = self.remaining().div_ceil(self.live().max(1) as u64);
                self.take_fresh(want.min(cap))
            }
            Kind::Serial | Kind::Duration => self.take_fresh(want),
            Kind::Rate { .. } => self.next_scheduled(agent),
        }
    }

    fn send(&mut self, agent: AgentId, span: Span) -> Lease {
        let lease = Lease {
            id: self.next_id,
            first: span.first,
            step: span.step,
            count: span.count,
        };
        self.next_id = self.next_id.saturating_add(1);
        if let Some(state) = self.agents.get_mut(&agent) {
            state.sent.push(lease.clone());
        }
        lease
    }

    /// Numbers never handed out nor dealt.
    fn remaining(&self) -> u64 {
        (self.total + 1).saturating_sub(self.cursor)
    }

    fn take_fresh(&mut self, n: u64) -> Option<(Span, Origin)> {
        let count = n.min(self.remaining());
        if count == 0 {
            return None;
        }
        let span = Span::contiguous(self.cursor, count);
        self.cursor += count;
        Some((span, Origin::Fresh))
    }

    fn take_orphans(&mut self, want: u64) -> Option<Span> {
        let front = self.orphans.front_mut()?;
        let span = front.take_front(want);
        if front.count == 0 {
            self.orphans.pop_front();
        }
        Some(span)
    }

    /// Queues the unstored numbers of `leases` as orphans; returns how many.
    fn orphan(&mut self, leases: &[Lease], is_stored: impl Fn(u64) -> bool) -> u64 {
        let mut builder = RunBuilder::default();
        let mut count = 0u64;
        for n in leases.iter().flat_map(Lease::iter) {
            if !is_stored(n) {
                count = count.saturating_add(1);
                builder.push(n, &mut self.orphans);
            }
        }
        builder.finish(&mut self.orphans);
        count
    }

    /// Rate: the agent's next window of its pending queue, dealing new windows into the queues
    /// or stealing when it is empty.
    fn next_scheduled(&mut self, agent: AgentId) -> Option<(Span, Origin)> {
        let mut origin = Origin::Pending;
        while self.pending_is_empty(agent) && self.cursor <= self.total {
            self.deal_window();
        }
        if self.pending_is_empty(agent) {
            let stolen = self.steal(agent)?;
            self.push_pending(agent, stolen);
            origin = Origin::Stolen;
        }
        let front = *self.agents.get(&agent)?.pending.front()?;
        let end = self.window_end(front.first);
        let in_window = (end - front.first).div_ceil(front.step.max(1));
        let queue = &mut self.agents.get_mut(&agent)?.pending;
        let head = queue.front_mut()?;
        let span = head.take_front(in_window.max(1));
        if head.count == 0 {
            queue.pop_front();
        }
        Some((span, origin))
    }

    fn pending_is_empty(&self, agent: AgentId) -> bool {
        self.agents.get(&agent).is_none_or(|a| a.pending.is_empty())
    }

    /// Deals the next window of the schedule (at least one number) into the pending queues.
    fn deal_window(&mut self) {
        let first = self.cursor;
        let end = self.window_end(first);
        self.cursor = end;
        self.deal(Span::contiguous(first, end - first));
    }

    /// Deals `span` round-robin among the live agents' pending queues, continuing the rotation;
    /// with no live agent it becomes orphaned.
    fn deal(&mut self, span: Span) {
        let n = self.order.len();
        if n == 0 {
            self.orphans.push_back(span);
            return;
        }
        let rotation = self.rotation % n;
        for position in 0..n {
            let offset = ((position + n - rotation) % n) as u64;
            if let Some(share) = span.stride(offset, n as u64) {
                self.push_pending(self.order[position], share);
            }
        }
        self.rotation = (rotation + (span.count % n as u64) as usize) % n;
    }

    /// Adds a share to a pending queue, keeping it ordered and merging it into the last share
    /// when it continues its progression.
    fn push_pending(&mut self, agent: AgentId, share: Span) {
        let Some(state) = self.agents.get_mut(&agent) else {
            return;
        };
        let queue = &mut state.pending;
        match queue.back_mut() {
            Some(back) if back.step == share.step && back.next() == Some(share.first) => {
                back.count += share.count;
            }
            Some(back) if back.first > share.first => {
                let at = queue.partition_point(|s| s.first < share.first);
                queue.insert(at, share);
            }
            _ => queue.push_back(share),
        }
    }

    /// Takes half (interleaved) of the largest pending share of another live agent, or all of
    /// it if it holds one number.
    fn steal(&mut self, thief: AgentId) -> Option<Span> {
        let (victim, index) = self
            .agents
            .iter()
            .filter(|(id, _)| **id != thief)
            .flat_map(|(id, a)| a.pending.iter().enumerate().map(move |(i, s)| (*id, i, s)))
            .max_by_key(|(_, _, s)| s.count)
            .map(|(id, i, _)| (id, i))?;
        let queue = &mut self.agents.get_mut(&victim)?.pending;
        let share = queue.get_mut(index)?;
        match (share.stride(0, 2), share.stride(1, 2)) {
            (Some(keep), Some(take)) => {
                *share = keep;
                Some(take)
            }
            _ => queue.remove(index),
        }
    }

    /// One past the last number of the window that holds `k` (at most `total + 1`).
    fn window_end(&self, k: u64) -> u64 {
        let limit = self.total + 1;
        let Kind::Rate {
            rate: Some(rate),
            window_ns,
        } = &self.kind
        else {
            return limit.max(k.saturating_add(1));
        };
        let due = |j: u64| rate.start_of(j).as_nanos();
        let boundary = (due(k) / window_ns + 1).saturating_mul(*window_ns);
        // The first j > k due at or after the boundary (start_of is non-decreasing).
        let (mut lo, mut hi) = (k.saturating_add(1), limit.max(k.saturating_add(1)));
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            if due(mid) >= boundary {
                hi = mid;
            } else {
                lo = mid + 1;
            }
        }
        lo
    }
}

/// Whether `start_of(k)` is finite and representable for every `k <= total` (a validated
/// config always is; `Duration::from_secs_f64` would panic otherwise). The rate says whether
/// its shape is sane and how slow it gets; how long a schedule may be is the planner's call.
fn usable_rate(rate: &Rate, total: u64) -> bool {
    rate.slowest()
        .is_some_and(|slowest| (total as f64 / slowest) < MAX_SCHEDULE_SECS)
}

#[cfg(test)]
mod tests {
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
                        let pending: u64 =
                            self.plan.agents[a].pending.iter().map(|s| s.count).sum();
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
        assert!(
            lease.contains(7) && !lease.contains(15) && !lease.contains(5) && !lease.contains(1)
        );
        let json = serde_json::to_string(&lease).unwrap();
        assert_eq!(serde_json::from_str::<Lease>(&json).unwrap(), lease);
    }
}
