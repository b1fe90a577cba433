//! What the hub knows, shared by its tasks under one lock: the sessions and their routing
//! ids on both ports, the handshakes under way, admission's view of who has not yet
//! authenticated, where each peer connected from, and the log's rate limit (complaints).

use std::collections::{HashMap, HashSet};
use std::marker::PhantomData;
use std::net::IpAddr;

use bytes::Bytes;
use tokio::sync::mpsc;
use tokio::time::Instant;
use zeromq::RouterSendHalf;
use zeromq::util::PeerIdentity;

use super::{COMPLAINT_WINDOW, ConnId, HubEvent};
use crate::transport::admission::{Admission, Bounds, Evict};
use crate::transport::bounds;
use crate::transport::message::Protocol;
use crate::transport::ratelimit::LogLimiter;
use crate::transport::seal::{Opener, Sealer};

pub(super) struct Session {
    pub(super) conn: ConnId,
    pub(super) control_opener: Opener,
    pub(super) control_out: mpsc::Sender<Vec<u8>>,
    pub(super) results_id: Option<Bytes>,
    pub(super) results_opener: Opener,
    pub(super) results_out: Option<mpsc::Sender<Vec<u8>>>,
    pub(super) results_sealer: Option<Sealer>,
    pub(super) attach: String,
    /// Chunks pulled and not yet delivered: a delivery of anything else is refused, so an
    /// agent cannot push results the controller did not ask for.
    pub(super) expected: HashSet<u64>,
}

pub(super) struct Pending {
    pub(super) controller_nonce: [u8; 16],
    pub(super) agent_nonce: [u8; 16],
    pub(super) order: u64,
}

/// The two sockets' send halves, for replies and for dropping peers.
#[derive(Clone)]
pub(super) struct Ports {
    pub(super) control: RouterSendHalf,
    pub(super) results: RouterSendHalf,
}

#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum Port {
    Control = 0,
    Results = 1,
}

impl Ports {
    pub(super) fn of(&self, port: Port) -> &RouterSendHalf {
        match port {
            Port::Control => &self.control,
            Port::Results => &self.results,
        }
    }
}

pub(super) struct State<P> {
    pub(super) next_conn: ConnId,
    /// By control routing id.
    pub(super) sessions: HashMap<Bytes, Session>,
    pub(super) by_conn: HashMap<ConnId, Bytes>,
    pub(super) by_attach: HashMap<String, Bytes>,
    pub(super) by_results_id: HashMap<Bytes, Bytes>,
    pub(super) pending: HashMap<Bytes, Pending>,
    pub(super) pending_order: u64,
    pub(super) admission: Admission,
    /// Remote address of each connected peer (from the socket monitors), for the log.
    pub(super) addresses: HashMap<Bytes, IpAddr>,
    pub(super) complaints: LogLimiter,
    pub(super) protocol: PhantomData<fn() -> P>,
}

impl<P: Protocol> State<P> {
    pub(super) fn new() -> State<P> {
        State {
            next_conn: 0,
            sessions: HashMap::new(),
            by_conn: HashMap::new(),
            by_attach: HashMap::new(),
            by_results_id: HashMap::new(),
            pending: HashMap::new(),
            pending_order: 0,
            admission: Admission::new(Bounds {
                deadline: bounds::HANDSHAKE_DEADLINE,
                waiting: bounds::WAITING,
                per_address: bounds::WAITING_PER_ADDRESS,
            }),
            addresses: HashMap::new(),
            complaints: LogLimiter::new(COMPLAINT_WINDOW),
            protocol: PhantomData,
        }
    }

    pub(super) fn authenticated(&self, port: Port, id: &Bytes) -> bool {
        match port {
            Port::Control => self.sessions.contains_key(id),
            Port::Results => self.by_results_id.contains_key(id),
        }
    }

    /// Where `id` connected from, asked of the socket when the monitor has not said it yet
    /// (its events and the messages travel apart).
    pub(super) fn learn_address(&mut self, ports: &Ports, port: Port, id: &Bytes) {
        if self.addresses.contains_key(id) {
            return;
        }
        if let Ok(peer) = PeerIdentity::try_from(id.clone())
            && let Some(a) = ports
                .of(port)
                .peer_address(&peer)
                .as_ref()
                .and_then(address_of)
        {
            self.addresses.insert(id.clone(), a);
        }
    }

    /// A connection was seen on `port` (announced, or by a message): admission tracks it
    /// until it authenticates.
    pub(super) fn seen(
        &mut self,
        ports: &Ports,
        port: Port,
        id: &Bytes,
        now: Instant,
    ) -> Vec<HubEvent<P>> {
        let authenticated = self.authenticated(port, id);
        let evicted = self
            .admission
            .seen(&admission_key(port, id), authenticated, now);
        self.evict(ports, evicted)
    }

    /// A rejection for the log, unless this offender has already been logged within the
    /// window (then it is only counted). An authenticated connection is its own offender; a
    /// stranger is its address, since a flood comes with ever new identities.
    pub(super) fn complain(&mut self, id: &[u8], reason: impl Into<String>) -> Vec<HubEvent<P>> {
        let reason = reason.into();
        let address = self.addresses.get(id).copied();
        let id_bytes = Bytes::copy_from_slice(id);
        let known = self.authenticated(Port::Control, &id_bytes)
            || self.authenticated(Port::Results, &id_bytes);
        let who = match address {
            Some(a) if !known => a.to_string(),
            _ => describe(id, address),
        };
        let key = format!("{who} {}", offence(&reason, "protocol"));
        match self.complaints.allow(&key, Instant::now()) {
            None => Vec::new(),
            Some(held) => vec![HubEvent::Rejected {
                peer: describe(id, address),
                reason: held_back(reason, held),
            }],
        }
    }

    /// Drops what admission evicted; the reasons go to the log.
    pub(super) fn evict(&mut self, ports: &Ports, evicted: Vec<Evict>) -> Vec<HubEvent<P>> {
        let mut events = Vec::new();
        for e in evicted {
            let (port, id) = split_admission_key(&e.peer);
            if port == Port::Control {
                self.pending.remove(&id);
            }
            if let Ok(peer) = PeerIdentity::try_from(id.clone()) {
                ports.of(port).disconnect(&peer);
            }
            events.extend(self.complain(&id, format!("disconnected: {}", e.reason)));
        }
        events
    }
}

/// Admission tracks connections of both ports; a peer may use the same routing id on each.
pub(super) fn admission_key(port: Port, id: &Bytes) -> Bytes {
    let mut key = Vec::with_capacity(id.len() + 1);
    key.push(port as u8);
    key.extend_from_slice(id);
    Bytes::from(key)
}

pub(super) fn split_admission_key(key: &Bytes) -> (Port, Bytes) {
    let port = if key.first() == Some(&(Port::Results as u8)) {
        Port::Results
    } else {
        Port::Control
    };
    (port, key.slice(1.min(key.len())..))
}

pub(super) fn describe(id: &[u8], address: Option<IpAddr>) -> String {
    match address {
        Some(a) => format!("{a} ({})", peer_name(id)),
        None => peer_name(id),
    }
}

pub(super) fn address_of(endpoint: &zeromq::Endpoint) -> Option<IpAddr> {
    match endpoint {
        zeromq::Endpoint::Tcp(zeromq::Host::Ipv4(a), _) => Some(IpAddr::V4(*a)),
        zeromq::Endpoint::Tcp(zeromq::Host::Ipv6(a), _) => Some(IpAddr::V6(*a)),
        _ => None,
    }
}

pub(super) fn peer_name(id: &[u8]) -> String {
    String::from_utf8_lossy(id).chars().take(80).collect()
}

pub(super) fn port_label(port: Port) -> &'static str {
    match port {
        Port::Control => "control",
        Port::Results => "results",
    }
}

/// The kind of offence, for rate-limiting the log per kind: oversize is the one that costs
/// memory, so it is never hidden behind a lesser one; everything else is `otherwise`.
pub(super) fn offence(reason: &str, otherwise: &'static str) -> &'static str {
    if reason.contains("exceeds the limit") {
        "size"
    } else {
        otherwise
    }
}

pub(super) fn held_back(mut reason: String, held: u64) -> String {
    if held > 0 {
        reason.push_str(&format!(
            " (and {held} more in the last {} s)",
            COMPLAINT_WINDOW.as_secs()
        ));
    }
    reason
}
