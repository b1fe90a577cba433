//! Iteration numbers handed to a runner from outside.
//!
//! A local runner counts its own iterations. A runner on an agent runs only the numbers the
//! controller leases to it, so that the workload as a whole runs each number once however many
//! agents share it. The agent pushes leases in; slots take small blocks out (one lock per
//! block, not per iteration) and say when they have run them, so the agent can tell the
//! controller which leases are done. When the queue runs low the agent is woken to ask for
//! more before the slots go idle.
//!
//! The feed also carries the agent's **share** of the workload's concurrency (closed runners)
//! or `max_concurrency` (`rps`): the controller changes it while the workload runs when
//! another agent is lost or comes back (SPEC §6 lost shares), and the runner follows it.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use tokio::sync::{Notify, watch};

/// Consecutive numbers of one lease: `first, first + step, ...`, `count` of them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Block {
    pub lease: u64,
    pub first: u64,
    pub step: u64,
    pub count: u64,
}

impl Block {
    pub fn nth(&self, i: u64) -> u64 {
        self.first + i * self.step
    }

    /// Split off the first `n` numbers (all of them if fewer).
    pub fn split_front(&mut self, n: u64) -> Block {
        let n = n.min(self.count);
        let front = Block { count: n, ..*self };
        self.first += n * self.step;
        self.count -= n;
        front
    }
}

#[derive(Default)]
struct State {
    queue: VecDeque<Block>,
    queued: u64,
    /// Per lease, numbers not yet run.
    unrun: HashMap<u64, u64>,
    completed: Vec<u64>,
    ended: bool,
    low_water: u64,
}

pub struct Feed {
    state: Mutex<State>,
    /// Wakes slots waiting for numbers.
    more: Notify,
    /// Wakes the agent when the queue drops below the low-water mark.
    low: Notify,
    /// When the workload's schedule starts (the `rps` runner's time zero on every agent).
    pub start: Instant,
    /// The lifeline: until when (nanoseconds after `born`) numbers may still be handed out,
    /// moved forward each time the controller is heard. An agent that was frozen (SIGSTOP,
    /// a stalled VM) longer than the liveness timeout finds it passed when it resumes, before
    /// any of its tasks can start an iteration from a lease the controller has given away.
    deadline: AtomicU64,
    born: Instant,
    /// This agent's share of the concurrency (or `max_concurrency`); 0 until the agent sets
    /// it from its order, which a runner reads as "what the runner config says".
    share: watch::Sender<u64>,
}

impl Feed {
    pub fn new(start: Instant) -> Feed {
        Feed {
            state: Mutex::new(State::default()),
            more: Notify::new(),
            low: Notify::new(),
            start,
            deadline: AtomicU64::new(u64::MAX),
            born: Instant::now(),
            share: watch::Sender::new(0),
        }
    }

    /// Set this agent's share of the concurrency (or `max_concurrency`).
    pub fn set_share(&self, share: u64) {
        self.share.send_replace(share);
    }

    /// This agent's share now, or `configured` when none was set.
    pub fn share_or(&self, configured: u64) -> u64 {
        match *self.share.borrow() {
            0 => configured,
            share => share,
        }
    }

    /// Follows changes of the share (a closed runner adds or retires slots).
    pub fn watch_share(&self) -> watch::Receiver<u64> {
        self.share.subscribe()
    }

    /// The controller was heard now: numbers may be handed out for `liveness` more.
    pub fn heard(&self, liveness: Duration) {
        let until = self.born.elapsed().saturating_add(liveness);
        self.deadline.store(
            u64::try_from(until.as_nanos()).unwrap_or(u64::MAX),
            Ordering::Release,
        );
    }

    /// Whether the controller has been silent past the lifeline (read from the clock now,
    /// so that a freeze counts).
    pub fn expired(&self) -> bool {
        self.expired_at(Instant::now())
    }

    fn expired_at(&self, now: Instant) -> bool {
        let now = now.saturating_duration_since(self.born).as_nanos();
        u64::try_from(now).unwrap_or(u64::MAX) > self.deadline.load(Ordering::Acquire)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // A slot that panicked mid-update leaves counters that are still usable.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Queue a lease's numbers.
    pub fn push(&self, lease: u64, first: u64, step: u64, count: u64) {
        if count == 0 {
            return;
        }
        let mut s = self.lock();
        s.queue.push_back(Block {
            lease,
            first,
            step: step.max(1),
            count,
        });
        s.queued += count;
        *s.unrun.entry(lease).or_default() += count;
        drop(s);
        self.more.notify_waiters();
    }

    /// A slot that retires gives back the numbers of a block it took and did not run; they
    /// are handed out first.
    pub fn put_back(&self, block: Block) {
        if block.count == 0 {
            return;
        }
        let mut s = self.lock();
        s.queued += block.count;
        s.queue.push_front(block);
        drop(s);
        self.more.notify_waiters();
    }

    /// No more leases will come: slots drain the queue and stop.
    pub fn end(&self) {
        self.lock().ended = true;
        self.more.notify_waiters();
    }

    /// Ask to be woken (see [`Feed::wait_low`]) when fewer than `n` numbers are queued.
    pub fn set_low_water(&self, n: u64) {
        self.lock().low_water = n;
    }

    /// Numbers queued and not yet taken by a slot.
    pub fn queued(&self) -> u64 {
        self.lock().queued
    }

    /// Resolves once the queue has dropped below the low-water mark (at once if it is);
    /// never once the feed has ended (no more leases will come, so none should be asked for).
    pub async fn wait_low(&self) {
        loop {
            let notified = self.low.notified();
            let (ended, low) = {
                let s = self.lock();
                (s.ended, s.queued < s.low_water)
            };
            if ended {
                return std::future::pending().await;
            }
            if low {
                return;
            }
            notified.await;
        }
    }

    /// Up to `max` numbers, waiting for a lease if none is queued; `None` once ended and empty,
    /// or past the lifeline.
    pub async fn take(&self, max: u64) -> Option<Block> {
        loop {
            if self.expired() {
                return None;
            }
            let notified = self.more.notified();
            {
                let mut s = self.lock();
                if let Some(block) = Self::take_locked(&mut s, max) {
                    let low = s.queued < s.low_water;
                    drop(s);
                    if low {
                        self.low.notify_waiters();
                    }
                    return Some(block);
                }
                if s.ended {
                    return None;
                }
            }
            self.low.notify_waiters();
            notified.await;
        }
    }

    /// Up to `max` numbers if any are queued (and the lifeline holds), without waiting.
    pub fn try_take(&self, max: u64) -> Option<Block> {
        if self.expired() {
            return None;
        }
        let mut s = self.lock();
        let block = Self::take_locked(&mut s, max)?;
        let low = s.queued < s.low_water;
        drop(s);
        if low {
            self.low.notify_waiters();
        }
        Some(block)
    }

    fn take_locked(s: &mut State, max: u64) -> Option<Block> {
        let front = s.queue.front_mut()?;
        let block = front.split_front(max.max(1));
        if front.count == 0 {
            s.queue.pop_front();
        }
        s.queued -= block.count;
        Some(block)
    }

    /// A slot ran `count` numbers of `lease` (their records are in its batch).
    pub fn ran(&self, lease: u64, count: u64) {
        let mut s = self.lock();
        if let Some(left) = s.unrun.get_mut(&lease) {
            *left = left.saturating_sub(count);
            if *left == 0 {
                s.unrun.remove(&lease);
                s.completed.push(lease);
            }
        }
    }

    /// Leases whose every number has run since the last call.
    pub fn take_completed(&self) -> Vec<u64> {
        std::mem::take(&mut self.lock().completed)
    }

    /// Numbers taken by slots but not yet run, plus numbers queued.
    pub fn unrun(&self) -> u64 {
        self.lock().unrun.values().sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn a_lease_is_good_only_while_the_controller_is_heard() {
        let feed = Feed::new(Instant::now());
        feed.push(1, 1, 1, 100);
        // Never heard yet (a local run): no lifeline.
        assert!(!feed.expired_at(Instant::now() + Duration::from_secs(3600)));
        feed.heard(Duration::from_secs(3));
        let now = Instant::now();
        assert!(!feed.expired_at(now + Duration::from_millis(2900)));
        // Resumed after a freeze longer than the liveness timeout: nothing more is handed out.
        assert!(feed.expired_at(now + Duration::from_millis(3100)));
        assert!(feed.try_take(10).is_some());
        feed.deadline.store(0, Ordering::Release);
        assert!(feed.expired());
        assert!(feed.try_take(10).is_none());
    }

    #[tokio::test]
    async fn blocks_split_leases_and_completion_is_per_lease() {
        let feed = Feed::new(Instant::now());
        feed.push(7, 1, 1, 5);
        feed.push(8, 10, 3, 2);
        let a = feed.take(3).await.unwrap();
        assert_eq!((a.lease, a.first, a.count), (7, 1, 3));
        let b = feed.take(3).await.unwrap();
        assert_eq!((b.lease, b.first, b.count), (7, 4, 2));
        let c = feed.take(3).await.unwrap();
        assert_eq!((c.lease, c.nth(0), c.nth(1)), (8, 10, 13));
        feed.ran(7, 3);
        assert!(feed.take_completed().is_empty());
        feed.ran(7, 2);
        feed.ran(8, 2);
        assert_eq!(feed.take_completed(), vec![7, 8]);
        feed.end();
        assert_eq!(feed.take(1).await, None);
    }

    #[tokio::test]
    async fn a_waiting_slot_wakes_on_push_and_on_end() {
        let feed = Arc::new(Feed::new(Instant::now()));
        let f = feed.clone();
        let waiter = tokio::spawn(async move { f.take(10).await });
        tokio::task::yield_now().await;
        feed.push(1, 100, 1, 1);
        assert_eq!(waiter.await.unwrap().map(|b| b.first), Some(100));
        let f = feed.clone();
        let waiter = tokio::spawn(async move { f.take(10).await });
        tokio::task::yield_now().await;
        feed.end();
        assert_eq!(waiter.await.unwrap(), None);
    }

    #[tokio::test]
    async fn low_water_wakes_the_agent() {
        let feed = Feed::new(Instant::now());
        feed.set_low_water(3);
        feed.push(1, 1, 1, 4);
        assert!(
            tokio::time::timeout(std::time::Duration::from_millis(20), feed.wait_low())
                .await
                .is_err()
        );
        feed.take(2).await.unwrap();
        feed.wait_low().await;
    }
}
