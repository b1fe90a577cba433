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
mod tests;
