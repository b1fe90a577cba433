//! Who may stay connected before proving the token: the controller's ports are on a real
//! network, and a peer that has not authenticated is nobody yet.
//!
//! Every connection starts *waiting*: it has until [`Bounds::deadline`] after the TCP accept
//! to authenticate (the hub then calls [`Admission::authenticated`]). At most
//! [`Bounds::waiting`] connections wait at once, and at most [`Bounds::per_address`] from one
//! address; a new connection past either cap evicts the oldest waiting one (of that address,
//! for the second), so a flood of idle or stalled connections costs the flood its own oldest
//! members, never a real agent's handshake, which takes a millisecond. The hub turns each
//! [`Evict`] into a disconnect and a rate-limited log line.
//!
//! Pure: time comes in as an argument, so the rules are unit-tested without sockets.

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::Duration;

use bytes::Bytes;
use tokio::time::Instant;

/// The limits on waiting connections.
#[derive(Debug, Clone, Copy)]
pub struct Bounds {
    pub deadline: Duration,
    pub waiting: usize,
    pub per_address: usize,
}

/// Why a waiting connection is dropped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EvictReason {
    Deadline,
    TooManyWaiting,
    TooManyFromAddress,
}

impl std::fmt::Display for EvictReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            EvictReason::Deadline => "did not authenticate in time",
            EvictReason::TooManyWaiting => "too many unauthenticated connections",
            EvictReason::TooManyFromAddress => {
                "too many unauthenticated connections from its address"
            }
        })
    }
}

/// Drop this connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Evict {
    pub peer: Bytes,
    pub address: Option<IpAddr>,
    pub reason: EvictReason,
}

#[derive(Debug)]
struct Waiting {
    address: Option<IpAddr>,
    since: Instant,
    order: u64,
}

#[derive(Debug)]
pub struct Admission {
    bounds: Bounds,
    /// By routing id (both ports' ids are unique: the results id is the control id + "/r").
    waiting: HashMap<Bytes, Waiting>,
    per_address: HashMap<IpAddr, usize>,
    next_order: u64,
}

impl Admission {
    pub fn new(bounds: Bounds) -> Admission {
        Admission {
            bounds,
            waiting: HashMap::new(),
            per_address: HashMap::new(),
            next_order: 0,
        }
    }

    pub fn waiting(&self) -> usize {
        self.waiting.len()
    }

    /// A connection finished the ZeroMQ handshake. Returns the connections to drop to make
    /// room (possibly this one, if its address is over its cap and it is the oldest).
    pub fn connected(&mut self, peer: Bytes, address: Option<IpAddr>, now: Instant) -> Vec<Evict> {
        if self.waiting.contains_key(&peer) {
            return Vec::new();
        }
        self.next_order += 1;
        self.waiting.insert(
            peer,
            Waiting {
                address,
                since: now,
                order: self.next_order,
            },
        );
        if let Some(a) = address {
            *self.per_address.entry(a).or_default() += 1;
        }
        let mut evict = Vec::new();
        if let Some(a) = address {
            while self.per_address.get(&a).copied().unwrap_or(0) > self.bounds.per_address {
                match self.oldest(|w| w.address == Some(a)) {
                    Some(p) => evict.push(self.remove(p, EvictReason::TooManyFromAddress)),
                    None => break,
                }
            }
        }
        while self.waiting.len() > self.bounds.waiting {
            match self.oldest(|_| true) {
                Some(p) => evict.push(self.remove(p, EvictReason::TooManyWaiting)),
                None => break,
            }
        }
        evict
    }

    /// A message came from `peer`: if nothing announced its connection (the socket monitor
    /// drops events under a flood), it starts waiting now.
    pub fn seen(&mut self, peer: &Bytes, authenticated: bool, now: Instant) -> Vec<Evict> {
        if authenticated || self.waiting.contains_key(peer) {
            return Vec::new();
        }
        self.connected(peer.clone(), None, now)
    }

    /// The peer proved the token: it no longer counts against any cap.
    pub fn authenticated(&mut self, peer: &Bytes) {
        if let Some(w) = self.waiting.remove(peer) {
            self.forget_address(w.address);
        }
    }

    /// The connection closed.
    pub fn gone(&mut self, peer: &Bytes) {
        self.authenticated(peer);
    }

    /// Waiting connections past the deadline.
    pub fn expired(&mut self, now: Instant) -> Vec<Evict> {
        let late: Vec<Bytes> = self
            .waiting
            .iter()
            .filter(|(_, w)| now.saturating_duration_since(w.since) >= self.bounds.deadline)
            .map(|(p, _)| p.clone())
            .collect();
        late.into_iter()
            .map(|p| self.remove(p, EvictReason::Deadline))
            .collect()
    }

    fn oldest(&self, which: impl Fn(&Waiting) -> bool) -> Option<Bytes> {
        self.waiting
            .iter()
            .filter(|(_, w)| which(w))
            .min_by_key(|(_, w)| w.order)
            .map(|(p, _)| p.clone())
    }

    fn remove(&mut self, peer: Bytes, reason: EvictReason) -> Evict {
        let address = self.waiting.remove(&peer).and_then(|w| w.address);
        self.forget_address(address);
        Evict {
            peer,
            address,
            reason,
        }
    }

    fn forget_address(&mut self, address: Option<IpAddr>) {
        if let Some(a) = address
            && let Some(n) = self.per_address.get_mut(&a)
        {
            *n -= 1;
            if *n == 0 {
                self.per_address.remove(&a);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bounds() -> Bounds {
        Bounds {
            deadline: Duration::from_secs(5),
            waiting: 4,
            per_address: 2,
        }
    }

    fn ip(last: u8) -> Option<IpAddr> {
        Some(IpAddr::from([10, 0, 0, last]))
    }

    fn id(s: &str) -> Bytes {
        Bytes::copy_from_slice(s.as_bytes())
    }

    #[tokio::test(start_paused = true)]
    async fn a_connection_that_does_not_authenticate_in_time_is_evicted() {
        let mut a = Admission::new(bounds());
        let t0 = Instant::now();
        assert!(a.connected(id("slow"), ip(1), t0).is_empty());
        assert!(a.connected(id("quick"), ip(2), t0).is_empty());
        a.authenticated(&id("quick"));
        tokio::time::advance(Duration::from_millis(4999)).await;
        assert!(a.expired(Instant::now()).is_empty());
        tokio::time::advance(Duration::from_millis(1)).await;
        let evicted = a.expired(Instant::now());
        assert_eq!(
            evicted,
            vec![Evict {
                peer: id("slow"),
                address: ip(1),
                reason: EvictReason::Deadline
            }]
        );
        assert_eq!(a.waiting(), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn past_the_per_address_cap_the_oldest_of_that_address_goes() {
        let mut a = Admission::new(bounds());
        let now = Instant::now();
        a.connected(id("x1"), ip(9), now);
        a.connected(id("other"), ip(1), now);
        a.connected(id("x2"), ip(9), now);
        let evicted = a.connected(id("x3"), ip(9), now);
        assert_eq!(evicted.len(), 1);
        assert_eq!(evicted[0].peer, id("x1"));
        assert_eq!(evicted[0].reason, EvictReason::TooManyFromAddress);
        // A real agent from the flooding address still gets in, evicting the flood's oldest.
        let evicted = a.connected(id("agent"), ip(9), now);
        assert_eq!(evicted[0].peer, id("x2"));
        a.authenticated(&id("agent"));
        assert_eq!(a.waiting(), 2);
    }

    #[tokio::test(start_paused = true)]
    async fn past_the_global_cap_the_oldest_waiting_goes() {
        let mut a = Admission::new(bounds());
        let now = Instant::now();
        for i in 0..4u8 {
            assert!(a.connected(id(&format!("p{i}")), ip(i), now).is_empty());
        }
        let evicted = a.connected(id("p4"), ip(4), now);
        assert_eq!(evicted.len(), 1);
        assert_eq!(evicted[0].peer, id("p0"));
        assert_eq!(evicted[0].reason, EvictReason::TooManyWaiting);
        assert_eq!(a.waiting(), 4);
    }

    #[tokio::test(start_paused = true)]
    async fn unannounced_peers_are_tracked_from_their_first_message() {
        let mut a = Admission::new(bounds());
        let t0 = Instant::now();
        assert!(a.seen(&id("ghost"), false, t0).is_empty());
        assert!(a.seen(&id("agent"), true, t0).is_empty());
        assert_eq!(a.waiting(), 1);
        tokio::time::advance(Duration::from_secs(5)).await;
        let evicted = a.expired(Instant::now());
        assert_eq!(evicted.len(), 1);
        assert_eq!(evicted[0].address, None);
        // Closing is idempotent.
        a.gone(&id("ghost"));
        a.gone(&id("never-seen"));
        assert_eq!(a.waiting(), 0);
    }
}
