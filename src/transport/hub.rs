//! The controller's end: two bound ROUTER sockets, the handshake, and one sealed session per
//! agent connection.
//!
//! Everything that arrives is checked before anything else sees it: a frame from a peer
//! without a session must be a well-formed hello; the first sealed frame must open under the
//! keys derived from the token (otherwise the peer holds another token and is refused); later
//! frames must open with strictly increasing sequence numbers. What fails is dropped and
//! reported as [`HubEvent::Rejected`] for the log (one line per address per
//! [`COMPLAINT_WINDOW`], with the count held back), and the run goes on.
//!
//! What a peer can make the hub hold is bounded ([`super::bounds`]): message sizes on the
//! length field (small until the peer authenticates, then raised for its session), the time
//! and number of unauthenticated connections ([`super::admission`]), results only as answers
//! to pulls, and the decoded messages waiting for the controller ([`Credit`]).
//!
//! Sending never blocks the controller: each session has a small outbox drained by its own
//! task, so a stuck agent fills only its own outbox (then its messages are dropped and it will
//! be declared lost by the heartbeat check), never the controller's loop or memory.

use std::collections::{HashMap, HashSet};
use std::marker::PhantomData;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc};
use tokio::time::Instant;
use zeromq::util::PeerIdentity;
use zeromq::{
    RouterSendHalf, RouterSocket, Socket, SocketEvent, SocketOptions, SocketRecv, SocketSend,
    ZmqMessage,
};

use super::admission::{Admission, Bounds, Evict};
use super::bounds;
use super::handshake::{ATTACH, CHALLENGE, Hello, REFUSE};
use super::message::{Message, Protocol};
use super::ratelimit::LogLimiter;
use super::seal::{self, Direction, Opener, Sealer};
use super::token::{Token, hex};

/// One agent connection (a session); a reconnecting agent gets a new one.
pub type ConnId = u64;

/// Messages waiting to go to one agent; beyond this the agent is not reading.
const OUTBOX: usize = 1024;
/// Half-open handshakes kept at once; more (a flood of hellos) evicts the oldest.
const MAX_PENDING: usize = 4096;
/// One log line per offending address per window.
pub const COMPLAINT_WINDOW: Duration = Duration::from_secs(10);
/// How often waiting connections are checked against the deadline.
const SWEEP: Duration = Duration::from_millis(250);

#[derive(Debug)]
pub enum HubEvent<P: Protocol> {
    Registered {
        conn: ConnId,
        register: Box<P::Register>,
        /// For the welcome: the results channel's ATTACH token.
        session: String,
        peer: String,
    },
    Control {
        conn: ConnId,
        message: P::Up,
    },
    Delivery {
        conn: ConnId,
        delivery: P::Delivery,
    },
    /// The session's results connection is attached.
    ResultsReady {
        conn: ConnId,
    },
    /// Something was refused or dropped; for the log (already rate-limited per address).
    Rejected {
        peer: String,
        reason: String,
    },
}

/// A hub event and the share of [`bounds::INBOUND_BUDGET`] its message holds, given back when
/// the controller has handled it (drops it).
#[derive(Debug)]
pub struct Inbound<P: Protocol> {
    pub event: HubEvent<P>,
    _credit: Option<OwnedSemaphorePermit>,
}

#[derive(Debug, thiserror::Error)]
pub enum TransportError {
    #[error("cannot listen on {endpoint}: {source}")]
    Bind {
        endpoint: String,
        source: zeromq::ZmqError,
    },
    #[error("{0}")]
    Endpoint(String),
}

struct Session {
    conn: ConnId,
    control_opener: Opener,
    control_out: mpsc::Sender<Vec<u8>>,
    results_id: Option<Bytes>,
    results_opener: Opener,
    results_out: Option<mpsc::Sender<Vec<u8>>>,
    results_sealer: Option<Sealer>,
    attach: String,
    /// Chunks pulled and not yet delivered: a delivery of anything else is refused, so an
    /// agent cannot push results the controller did not ask for.
    expected: HashSet<u64>,
}

struct Pending {
    controller_nonce: [u8; 16],
    agent_nonce: [u8; 16],
    order: u64,
}

/// The two sockets' send halves, for replies and for dropping peers.
#[derive(Clone)]
struct Ports {
    control: RouterSendHalf,
    results: RouterSendHalf,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Port {
    Control = 0,
    Results = 1,
}

impl Ports {
    fn of(&self, port: Port) -> &RouterSendHalf {
        match port {
            Port::Control => &self.control,
            Port::Results => &self.results,
        }
    }
}

struct State<P> {
    next_conn: ConnId,
    /// By control routing id.
    sessions: HashMap<Bytes, Session>,
    by_conn: HashMap<ConnId, Bytes>,
    by_attach: HashMap<String, Bytes>,
    by_results_id: HashMap<Bytes, Bytes>,
    pending: HashMap<Bytes, Pending>,
    pending_order: u64,
    admission: Admission,
    /// Remote address of each connected peer (from the socket monitors), for the log.
    addresses: HashMap<Bytes, IpAddr>,
    complaints: LogLimiter,
    protocol: PhantomData<fn() -> P>,
}

impl<P: Protocol> State<P> {
    fn new() -> State<P> {
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

    fn authenticated(&self, port: Port, id: &Bytes) -> bool {
        match port {
            Port::Control => self.sessions.contains_key(id),
            Port::Results => self.by_results_id.contains_key(id),
        }
    }

    /// Where `id` connected from, asked of the socket when the monitor has not said it yet
    /// (its events and the messages travel apart).
    fn learn_address(&mut self, ports: &Ports, port: Port, id: &Bytes) {
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
    fn seen(&mut self, ports: &Ports, port: Port, id: &Bytes, now: Instant) -> Vec<HubEvent<P>> {
        let authenticated = self.authenticated(port, id);
        let evicted = self
            .admission
            .seen(&admission_key(port, id), authenticated, now);
        self.evict(ports, evicted)
    }

    /// A rejection for the log, unless this offender has already been logged within the
    /// window (then it is only counted). An authenticated connection is its own offender; a
    /// stranger is its address, since a flood comes with ever new identities.
    fn complain(&mut self, id: &[u8], reason: impl Into<String>) -> Vec<HubEvent<P>> {
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
    fn evict(&mut self, ports: &Ports, evicted: Vec<Evict>) -> Vec<HubEvent<P>> {
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
fn admission_key(port: Port, id: &Bytes) -> Bytes {
    let mut key = Vec::with_capacity(id.len() + 1);
    key.push(port as u8);
    key.extend_from_slice(id);
    Bytes::from(key)
}

fn split_admission_key(key: &Bytes) -> (Port, Bytes) {
    let port = if key.first() == Some(&(Port::Results as u8)) {
        Port::Results
    } else {
        Port::Control
    };
    (port, key.slice(1.min(key.len())..))
}

fn describe(id: &[u8], address: Option<IpAddr>) -> String {
    match address {
        Some(a) => format!("{a} ({})", peer_name(id)),
        None => peer_name(id),
    }
}

pub struct Hub<P: Protocol> {
    state: Arc<Mutex<State<P>>>,
    /// The control socket's writer, for refusals in the clear.
    control_out: mpsc::Sender<ZmqMessage>,
    pub control_port: u16,
    pub results_port: u16,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl<P: Protocol> Drop for Hub<P> {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

fn port_of(endpoint: &zeromq::Endpoint) -> u16 {
    match endpoint {
        zeromq::Endpoint::Tcp(_, port) => *port,
        _ => 0,
    }
}

fn address_of(endpoint: &zeromq::Endpoint) -> Option<IpAddr> {
    match endpoint {
        zeromq::Endpoint::Tcp(zeromq::Host::Ipv4(a), _) => Some(IpAddr::V4(*a)),
        zeromq::Endpoint::Tcp(zeromq::Host::Ipv6(a), _) => Some(IpAddr::V6(*a)),
        _ => None,
    }
}

/// `tcp://host:port` -> `(host, port)`.
pub fn split_endpoint(endpoint: &str) -> Result<(String, u16), TransportError> {
    let rest = endpoint
        .strip_prefix("tcp://")
        .ok_or_else(|| TransportError::Endpoint(format!("{endpoint}: expected tcp://HOST:PORT")))?;
    let (host, port) = rest
        .rsplit_once(':')
        .ok_or_else(|| TransportError::Endpoint(format!("{endpoint}: expected tcp://HOST:PORT")))?;
    let port = port
        .parse()
        .map_err(|_| TransportError::Endpoint(format!("{endpoint}: bad port '{port}'")))?;
    Ok((host.to_string(), port))
}

/// A ROUTER socket whose peers start with `before_auth` as their message limit.
async fn bind(endpoint: &str, before_auth: usize) -> Result<(RouterSocket, u16), TransportError> {
    let mut options = SocketOptions::default();
    options
        .max_message_size(before_auth)
        .handshake_timeout(bounds::HANDSHAKE_DEADLINE)
        .max_handshakes(bounds::ZMTP_HANDSHAKES);
    let mut socket = RouterSocket::with_options(options);
    let bound = socket
        .bind(endpoint)
        .await
        .map_err(|source| TransportError::Bind {
            endpoint: endpoint.to_string(),
            source,
        })?;
    Ok((socket, port_of(&bound)))
}

impl<P: Protocol> Hub<P> {
    /// Listens on `endpoint` (`tcp://HOST:PORT`, port 0 for any) for control, and on the next
    /// port (or any, with port 0) for results.
    pub async fn bind(
        endpoint: &str,
        token: Token,
    ) -> Result<(Hub<P>, mpsc::Receiver<Inbound<P>>), TransportError> {
        let (host, port) = split_endpoint(endpoint)?;
        let (mut control, control_port) = bind(endpoint, bounds::CONTROL_BEFORE_AUTH).await?;
        let results_endpoint = format!(
            "tcp://{host}:{}",
            if port == 0 { 0 } else { port.saturating_add(1) }
        );
        let (mut results, results_port) =
            bind(&results_endpoint, bounds::RESULTS_BEFORE_AUTH).await?;
        let (events_tx, events) = mpsc::channel(8192);
        let state = Arc::new(Mutex::new(State::new()));
        let control_monitor = control.monitor();
        let results_monitor = results.monitor();
        let (control_send, control_recv) = control.split();
        let (results_send, results_recv) = results.split();
        let ports = Ports {
            control: control_send.clone(),
            results: results_send.clone(),
        };
        let budget = Arc::new(Semaphore::new(bounds::INBOUND_BUDGET));
        let (control_tx, control_rx) = mpsc::channel(8192);
        let (results_tx, results_rx) = mpsc::channel(8192);
        let tasks = vec![
            tokio::spawn(writer(control_send, control_rx)),
            tokio::spawn(writer(results_send, results_rx)),
            tokio::spawn({
                let (state, out, ports) = (state.clone(), control_tx.clone(), ports.clone());
                reader(
                    control_recv,
                    events_tx.clone(),
                    budget.clone(),
                    move |id, body| on_control(&state, &token, &out, &ports, id, body),
                )
            }),
            tokio::spawn({
                let (state, out, ports) = (state.clone(), results_tx.clone(), ports.clone());
                reader(results_recv, events_tx.clone(), budget, move |id, body| {
                    on_results(&state, &out, &ports, id, body)
                })
            }),
            tokio::spawn(watch(
                control_monitor,
                Port::Control,
                state.clone(),
                ports.clone(),
                events_tx.clone(),
            )),
            tokio::spawn(watch(
                results_monitor,
                Port::Results,
                state.clone(),
                ports.clone(),
                events_tx.clone(),
            )),
            tokio::spawn(sweep(state.clone(), ports, events_tx)),
        ];
        Ok((
            Hub {
                state,
                control_out: control_tx,
                control_port,
                results_port,
                tasks,
            },
            events,
        ))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State<P>> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Queue a control message for an agent. False when the session is gone or its outbox is
    /// full (the agent is not reading).
    pub fn send(&self, conn: ConnId, message: &P::Down) -> bool {
        let state = self.lock();
        let Some(session) = state
            .by_conn
            .get(&conn)
            .and_then(|id| state.sessions.get(id))
        else {
            return false;
        };
        session.control_out.try_send(message.to_plain()).is_ok()
    }

    /// Ask for chunks on the results channel.
    pub fn pull(&self, conn: ConnId, pull: &P::Pull) -> bool {
        let mut state = self.lock();
        let Some(session) = state
            .by_conn
            .get(&conn)
            .cloned()
            .and_then(|id| state.sessions.get_mut(&id))
        else {
            return false;
        };
        let Some(out) = session.results_out.as_ref() else {
            return false;
        };
        if out.try_send(pull.to_plain()).is_err() {
            return false;
        }
        session.expected.extend(P::pulled(pull).iter().copied());
        true
    }

    /// Refuse a registered session before its welcome, in the clear (as a wrong token is
    /// refused), with a reason the agent prints before it exits; the session is forgotten.
    pub fn refuse(&self, conn: ConnId, reason: &str) {
        let id = self.lock().by_conn.get(&conn).cloned();
        if let Some(id) = id {
            refuse(&self.control_out, &id, reason);
        }
        self.close(conn);
    }

    /// Forget a session (lost or finished agent); later frames from it are rejected.
    pub fn close(&self, conn: ConnId) {
        let mut state = self.lock();
        if let Some(id) = state.by_conn.remove(&conn)
            && let Some(s) = state.sessions.remove(&id)
        {
            state.by_attach.remove(&s.attach);
            if let Some(r) = s.results_id {
                state.by_results_id.remove(&r);
            }
        }
    }
}

/// Owns a socket's send half: everything leaves through here in queue order.
async fn writer(mut socket: RouterSendHalf, mut queue: mpsc::Receiver<ZmqMessage>) {
    while let Some(message) = queue.recv().await {
        // A peer that went away: its session times out through the heartbeat check.
        let _ = socket.send(message).await;
    }
}

fn message(frames: Vec<Bytes>) -> Option<ZmqMessage> {
    ZmqMessage::try_from(frames).ok()
}

/// Seals each message of one session's outbox and hands it to the socket's writer.
fn spawn_outbox(
    mut sealer: Sealer,
    routing_id: Bytes,
    socket: mpsc::Sender<ZmqMessage>,
) -> mpsc::Sender<Vec<u8>> {
    let (tx, mut rx) = mpsc::channel::<Vec<u8>>(OUTBOX);
    tokio::spawn(async move {
        while let Some(plain) = rx.recv().await {
            let Ok(frame) = sealer.seal(&plain) else {
                return;
            };
            let Some(m) = message(vec![routing_id.clone(), Bytes::from(frame)]) else {
                return;
            };
            if socket.send(m).await.is_err() {
                return;
            }
        }
    });
    tx
}

fn peer_name(id: &[u8]) -> String {
    String::from_utf8_lossy(id).chars().take(80).collect()
}

/// Reads one socket: each message is split into the peer's routing id and its frames and
/// handed to `handle`, whose verdicts go to the controller. A message's bytes count against
/// the shared budget until the controller has handled its event; with the budget spent, this
/// stops reading and TCP pushes back on the senders.
async fn reader<P: Protocol>(
    mut socket: zeromq::RouterRecvHalf,
    events: mpsc::Sender<Inbound<P>>,
    budget: Arc<Semaphore>,
    handle: impl Fn(&Bytes, &[&[u8]]) -> Vec<HubEvent<P>>,
) {
    loop {
        let Ok(m) = socket.recv().await else {
            // The crate drops broken peers itself; a receive error is not fatal for the hub.
            tokio::task::yield_now().await;
            continue;
        };
        let size: usize = m.iter().map(|f| f.len()).sum();
        let Ok(credit) = budget
            .clone()
            .acquire_many_owned(size.clamp(1, bounds::INBOUND_BUDGET) as u32)
            .await
        else {
            return;
        };
        let frames = m.into_vec();
        let Some((id, body)) = frames.split_first() else {
            continue;
        };
        let body: Vec<&[u8]> = body.iter().map(|b| b.as_ref()).collect();
        let mut credit = Some(credit);
        for event in handle(id, &body) {
            // The message's bytes live on in the first event that carries them.
            let carries = matches!(event, HubEvent::Control { .. } | HubEvent::Delivery { .. });
            let inbound = Inbound {
                event,
                _credit: if carries { credit.take() } else { None },
            };
            if events.send(inbound).await.is_err() {
                return;
            }
        }
    }
}

/// Follows one socket's connections: who connected from where (for admission and the log),
/// who left, and who was dropped by the socket for what it sent.
async fn watch<P: Protocol>(
    mut monitor: futures::channel::mpsc::Receiver<SocketEvent>,
    port: Port,
    state: Arc<Mutex<State<P>>>,
    ports: Ports,
    events: mpsc::Sender<Inbound<P>>,
) {
    while let Some(event) = monitor.next().await {
        let out = {
            let mut st = state.lock().unwrap_or_else(|e| e.into_inner());
            match event {
                SocketEvent::Accepted(endpoint, id) => {
                    let id = Bytes::from(id);
                    let address = address_of(&endpoint);
                    if let Some(a) = address {
                        st.addresses.insert(id.clone(), a);
                    }
                    if st.authenticated(port, &id) {
                        Vec::new()
                    } else {
                        let key = admission_key(port, &id);
                        let evicted = st.admission.connected(key, address, Instant::now());
                        st.evict(&ports, evicted)
                    }
                }
                SocketEvent::Disconnected(id) => {
                    let id = Bytes::from(id);
                    st.admission.gone(&admission_key(port, &id));
                    st.addresses.remove(&id);
                    if port == Port::Control {
                        st.pending.remove(&id);
                    }
                    Vec::new()
                }
                SocketEvent::PeerError(id, reason) => {
                    let id = Bytes::from(id);
                    st.complain(&id, format!("disconnected: {reason}"))
                }
                SocketEvent::HandshakeFailed(endpoint, error) => {
                    let who = address_of(&endpoint)
                        .map(|a| a.to_string())
                        .unwrap_or_else(|| endpoint.to_string());
                    let key = format!("{who} {}", offence(&error.to_string(), "handshake"));
                    match st.complaints.allow(&key, Instant::now()) {
                        None => Vec::new(),
                        Some(held) => vec![HubEvent::Rejected {
                            peer: endpoint.to_string(),
                            reason: held_back(format!("ZeroMQ handshake failed: {error}"), held),
                        }],
                    }
                }
                SocketEvent::AcceptFailed(error) => {
                    match st.complaints.allow("accept", Instant::now()) {
                        None => Vec::new(),
                        Some(held) => vec![HubEvent::Rejected {
                            peer: format!("{} port", port_label(port)),
                            reason: held_back(
                                format!("cannot accept connections ({error}); backing off"),
                                held,
                            ),
                        }],
                    }
                }
                _ => Vec::new(),
            }
        };
        if !forward(&events, out).await {
            return;
        }
    }
}

/// Hands events that carry no message bytes to the controller; false once it is gone.
async fn forward<P: Protocol>(events: &mpsc::Sender<Inbound<P>>, out: Vec<HubEvent<P>>) -> bool {
    for event in out {
        let inbound = Inbound {
            event,
            _credit: None,
        };
        if events.send(inbound).await.is_err() {
            return false;
        }
    }
    true
}

fn port_label(port: Port) -> &'static str {
    match port {
        Port::Control => "control",
        Port::Results => "results",
    }
}

/// The kind of offence, for rate-limiting the log per kind: oversize is the one that costs
/// memory, so it is never hidden behind a lesser one; everything else is `otherwise`.
fn offence(reason: &str, otherwise: &'static str) -> &'static str {
    if reason.contains("exceeds the limit") {
        "size"
    } else {
        otherwise
    }
}

fn held_back(mut reason: String, held: u64) -> String {
    if held > 0 {
        reason.push_str(&format!(
            " (and {held} more in the last {} s)",
            COMPLAINT_WINDOW.as_secs()
        ));
    }
    reason
}

/// Drops connections that did not authenticate in time, including any the monitors did not
/// announce (their events are dropped under a flood).
async fn sweep<P: Protocol>(
    state: Arc<Mutex<State<P>>>,
    ports: Ports,
    events: mpsc::Sender<Inbound<P>>,
) {
    let mut tick = tokio::time::interval(SWEEP);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let out = {
            let mut st = state.lock().unwrap_or_else(|e| e.into_inner());
            let now = Instant::now();
            let mut out = Vec::new();
            for port in [Port::Control, Port::Results] {
                for id in ports.of(port).peers() {
                    out.extend(st.seen(&ports, port, &Bytes::from(id), now));
                }
            }
            let expired = st.admission.expired(now);
            out.extend(st.evict(&ports, expired));
            out
        };
        if !forward(&events, out).await {
            return;
        }
    }
}

fn refuse(out: &mpsc::Sender<ZmqMessage>, id: &Bytes, reason: &str) {
    if let Some(m) = message(vec![
        id.clone(),
        Bytes::from_static(REFUSE),
        Bytes::from(reason.to_string()),
    ]) {
        let _ = out.try_send(m);
    }
}

/// The peer proved the token: it leaves admission and may send full-size messages.
fn admit<P: Protocol>(st: &mut State<P>, ports: &Ports, port: Port, id: &Bytes, limit: usize) {
    st.admission.authenticated(&admission_key(port, id));
    if let Ok(peer) = PeerIdentity::try_from(id.clone()) {
        ports.of(port).set_max_message_size(&peer, limit);
    }
}

/// One control message; returns what the controller should hear about it.
fn on_control<P: Protocol>(
    state: &Mutex<State<P>>,
    token: &Token,
    out: &mpsc::Sender<ZmqMessage>,
    ports: &Ports,
    id: &Bytes,
    body: &[&[u8]],
) -> Vec<HubEvent<P>> {
    let mut st = state.lock().unwrap_or_else(|e| e.into_inner());
    st.learn_address(ports, Port::Control, id);
    if let Some(session) = st.sessions.get_mut(id) {
        let [frame] = body else {
            let reason = format!("{} frames in a sealed message", body.len());
            return st.complain(id, reason);
        };
        let conn = session.conn;
        return match session.control_opener.open(frame) {
            Err(e) => st.complain(id, format!("control frame dropped: {e}")),
            Ok(plain) => match P::Up::from_plain(&plain) {
                Ok(message) => vec![HubEvent::Control { conn, message }],
                Err(e) => st.complain(id, format!("control message dropped: {e}")),
            },
        };
    }
    let mut events = st.seen(ports, Port::Control, id, Instant::now());
    match Hello::parse(body) {
        Some(Err(e)) => {
            refuse(out, id, &e);
            events.extend(st.complain(id, e));
            return events;
        }
        Some(Ok(hello)) => {
            if hello.version != P::VERSION {
                let reason = format!(
                    "protocol version {} is not supported (this controller speaks {})",
                    hello.version,
                    P::VERSION
                );
                refuse(out, id, &reason);
                events.extend(st.complain(id, reason));
                return events;
            }
            let controller_nonce = seal::new_nonce();
            if st.pending.len() >= MAX_PENDING
                && let Some(oldest) = st
                    .pending
                    .iter()
                    .min_by_key(|(_, p)| p.order)
                    .map(|(k, _)| k.clone())
            {
                st.pending.remove(&oldest);
            }
            st.pending_order += 1;
            let order = st.pending_order;
            st.pending.insert(
                id.clone(),
                Pending {
                    controller_nonce,
                    agent_nonce: hello.nonce,
                    order,
                },
            );
            if let Some(m) = message(vec![
                id.clone(),
                Bytes::from_static(CHALLENGE),
                Bytes::copy_from_slice(&controller_nonce),
            ]) {
                let _ = out.try_send(m);
            }
            return events;
        }
        None => {}
    }
    let Some(pending) = st.pending.remove(id) else {
        events.extend(st.complain(id, "message from a peer without a session (not a hello)"));
        return events;
    };
    let [frame] = body else {
        events.extend(st.complain(id, "registration is not one sealed frame"));
        return events;
    };
    let keys = match seal::derive(
        token.as_bytes(),
        &pending.controller_nonce,
        &pending.agent_nonce,
    ) {
        Ok(k) => k,
        Err(e) => {
            events.extend(st.complain(id, format!("key derivation: {e}")));
            return events;
        }
    };
    let mut opener = Opener::new(&keys.to_controller, Direction::ToController)
        .with_limit(bounds::CONTROL_MESSAGE);
    let register = match opener
        .open(frame)
        .map_err(|e| e.to_string())
        .and_then(|plain| P::Up::from_plain(&plain).map_err(|e| e.to_string()))
        .map(P::registration)
    {
        Ok(Some(r)) => r,
        Ok(None) => {
            refuse(out, id, "expected a registration");
            events.extend(st.complain(id, "first sealed message is not a registration"));
            return events;
        }
        Err(e) => {
            refuse(
                out,
                id,
                "authentication failed (is the token the same on both sides?)",
            );
            events.extend(st.complain(
                id,
                format!("authentication failed ({e}): the agent's token differs"),
            ));
            return events;
        }
    };
    let results_keys = match seal::derive_channel(
        token.as_bytes(),
        &pending.controller_nonce,
        &pending.agent_nonce,
        "results",
    ) {
        Ok(k) => k,
        Err(e) => {
            events.extend(st.complain(id, format!("key derivation: {e}")));
            return events;
        }
    };
    admit(&mut st, ports, Port::Control, id, bounds::CONTROL_MESSAGE);
    st.next_conn += 1;
    let conn = st.next_conn;
    let attach = hex(&seal::new_nonce());
    let sealer = Sealer::new(&keys.to_agent, Direction::ToAgent);
    let session = Session {
        conn,
        control_opener: opener,
        control_out: spawn_outbox(sealer, id.clone(), out.clone()),
        results_id: None,
        results_opener: Opener::new(&results_keys.to_controller, Direction::ToController)
            .with_limit(bounds::RESULTS_MESSAGE),
        results_out: None,
        results_sealer: Some(Sealer::new(&results_keys.to_agent, Direction::ToAgent)),
        attach: attach.clone(),
        expected: HashSet::new(),
    };
    st.by_conn.insert(conn, id.clone());
    st.by_attach.insert(attach.clone(), id.clone());
    st.sessions.insert(id.clone(), session);
    let peer = describe(id, st.addresses.get(id).copied());
    events.push(HubEvent::Registered {
        conn,
        register,
        session: attach,
        peer,
    });
    events
}

fn on_results<P: Protocol>(
    state: &Mutex<State<P>>,
    out: &mpsc::Sender<ZmqMessage>,
    ports: &Ports,
    id: &Bytes,
    body: &[&[u8]],
) -> Vec<HubEvent<P>> {
    let mut st = state.lock().unwrap_or_else(|e| e.into_inner());
    st.learn_address(ports, Port::Results, id);
    if body.first() == Some(&ATTACH) {
        let [_, attach] = body else {
            return st.complain(id, "malformed attach");
        };
        let attach = String::from_utf8_lossy(attach).into_owned();
        let Some(control_id) = st.by_attach.get(&attach).cloned() else {
            return st.complain(id, "attach to an unknown session");
        };
        let Some(session) = st.sessions.get_mut(&control_id) else {
            return st.complain(id, "attach to a closed session");
        };
        if session.results_id.is_some() {
            return st.complain(id, "session already has a results connection");
        }
        // The attach token travelled sealed to the agent that proved the token, so knowing it
        // authenticates this connection; its frames must still open under the session's
        // results keys (see below).
        session.results_id = Some(id.clone());
        if let Some(sealer) = session.results_sealer.take() {
            session.results_out = Some(spawn_outbox(sealer, id.clone(), out.clone()));
        }
        let conn = session.conn;
        st.by_results_id.insert(id.clone(), control_id);
        admit(&mut st, ports, Port::Results, id, bounds::RESULTS_MESSAGE);
        return vec![HubEvent::ResultsReady { conn }];
    }
    let Some(control_id) = st.by_results_id.get(id).cloned() else {
        let mut events = st.seen(ports, Port::Results, id, Instant::now());
        events.extend(st.complain(id, "results frame from a peer without a session"));
        return events;
    };
    let Some(session) = st.sessions.get_mut(&control_id) else {
        return st.complain(id, "results frame for a closed session");
    };
    let [frame] = body else {
        return st.complain(id, "results message is not one sealed frame");
    };
    let conn = session.conn;
    let delivery = match session.results_opener.open(frame) {
        Err(e) => return st.complain(id, format!("results frame dropped: {e}")),
        Ok(plain) => match P::Delivery::from_plain(&plain) {
            Ok(delivery) => delivery,
            Err(e) => return st.complain(id, format!("results message dropped: {e}")),
        },
    };
    let chunk = P::delivered(&delivery);
    if !session.expected.remove(&chunk) {
        return st.complain(id, format!("chunk {chunk} was delivered but not asked for"));
    }
    vec![HubEvent::Delivery { conn, delivery }]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::transport::link::LinkError;
    use crate::transport::testing::{Delivery, Down, Pull, Register, Test, Up};
    use zeromq::{DealerSocket, SocketOptions};

    type Hub = super::Hub<Test>;
    type HubEvent = super::HubEvent<Test>;
    type Inbound = super::Inbound<Test>;
    type Link = crate::transport::link::Link<Test>;

    fn register(name: &str) -> Register {
        Register { name: name.into() }
    }

    fn token(t: &str) -> Token {
        Token::from_bytes(t.as_bytes().to_vec(), "").unwrap()
    }

    async fn next_event(events: &mut mpsc::Receiver<Inbound>) -> HubEvent {
        tokio::time::timeout(std::time::Duration::from_secs(5), events.recv())
            .await
            .expect("an event within 5 s")
            .expect("hub running")
            .event
    }

    async fn dealer(port: u16, id: &str) -> DealerSocket {
        let mut o = SocketOptions::default();
        o.peer_identity(id.parse().unwrap());
        let mut d = DealerSocket::with_options(o);
        d.connect(&format!("tcp://127.0.0.1:{port}")).await.unwrap();
        d
    }

    fn frames(parts: Vec<Vec<u8>>) -> ZmqMessage {
        ZmqMessage::try_from(parts.into_iter().map(Bytes::from).collect::<Vec<_>>()).unwrap()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_right_token_registers_and_a_wrong_one_is_refused() {
        let (hub, mut events) = Hub::bind("tcp://127.0.0.1:0", token("0123456789abcdef-good"))
            .await
            .unwrap();
        let endpoint = format!("tcp://127.0.0.1:{}", hub.control_port);
        let bad = Link::connect(
            &endpoint,
            "bad/1/1",
            &token("0123456789abcdef-evil"),
            &register("bad"),
        )
        .await;
        assert!(matches!(bad, Err(LinkError::Refused(_))), "{:?}", bad.err());
        match next_event(&mut events).await {
            HubEvent::Rejected { reason, .. } => {
                assert!(reason.contains("authentication"), "{reason}")
            }
            other => panic!("expected a rejection, got {other:?}"),
        }
        // The hub is unharmed: a good agent registers next.
        let (_, link) = linked(&hub, &mut events, "good").await;
        assert!(matches!(link.welcome, Down::Welcome { .. }));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn replayed_forged_and_garbage_frames_are_dropped_and_logged_once_per_window() {
        let secret = token("0123456789abcdef-good");
        let (hub, mut events) = Hub::bind("tcp://127.0.0.1:0", secret.clone())
            .await
            .unwrap();
        let mut d = dealer(hub.control_port, "hand/1/1").await;
        // Garbage before any session: logged, with the peer's address.
        d.send(frames(vec![b"GET / HTTP/1.1\r\n\r\n".to_vec()]))
            .await
            .unwrap();
        match next_event(&mut events).await {
            HubEvent::Rejected { peer, reason } => {
                assert!(peer.starts_with("127.0.0.1"), "{peer}");
                assert!(reason.contains("not a hello"), "{reason}");
            }
            other => panic!("{other:?}"),
        }
        // A hello of another protocol version is refused in words the agent can print (the
        // log line is held back: same address, same window).
        d.send(frames(
            Hello {
                version: 99,
                nonce: [1; 16],
            }
            .frames(),
        ))
        .await
        .unwrap();
        let refusal = d.recv().await.unwrap().into_vec();
        assert_eq!(refusal[0].as_ref(), REFUSE);
        assert!(String::from_utf8_lossy(&refusal[1]).contains("version 99"));

        // A real handshake by hand, so that we hold a sealed frame to replay.
        let agent_nonce = [7u8; 16];
        d.send(frames(
            Hello {
                version: Test::VERSION,
                nonce: agent_nonce,
            }
            .frames(),
        ))
        .await
        .unwrap();
        let challenge = d.recv().await.unwrap().into_vec();
        assert_eq!(challenge[0].as_ref(), CHALLENGE);
        let controller_nonce: [u8; 16] = challenge[1].as_ref().try_into().unwrap();
        let keys = seal::derive(secret.as_bytes(), &controller_nonce, &agent_nonce).unwrap();
        let mut sealer = Sealer::new(&keys.to_controller, Direction::ToController);
        let reg = sealer
            .seal(&Up::Register(Box::new(register("hand"))).to_plain())
            .unwrap();
        d.send(ZmqMessage::from(reg)).await.unwrap();
        let conn = match next_event(&mut events).await {
            HubEvent::Registered { conn, .. } => conn,
            other => panic!("{other:?}"),
        };
        let ping = sealer.seal(&Up::Ping { sent: 1.0 }.to_plain()).unwrap();
        d.send(ZmqMessage::from(ping.clone())).await.unwrap();
        assert!(matches!(
            next_event(&mut events).await,
            HubEvent::Control { conn: c, message: Up::Ping { sent } } if c == conn && sent == 1.0
        ));
        // The same frame again (a replay), a forged frame (one bit flipped) and random bytes
        // inside the session: all dropped; the session is an offender of its own, logged
        // once (the replay) and then held back within the window...
        d.send(ZmqMessage::from(ping.clone())).await.unwrap();
        match next_event(&mut events).await {
            HubEvent::Rejected { peer, reason } => {
                assert!(peer.contains("hand/1/1"), "{peer}");
                assert!(reason.contains("replay"), "{reason}");
            }
            other => panic!("{other:?}"),
        }
        let mut forged = sealer.seal(&Up::Bye.to_plain()).unwrap();
        let last = forged.len() - 1;
        forged[last] ^= 1;
        d.send(ZmqMessage::from(forged)).await.unwrap();
        d.send(ZmqMessage::from(vec![0u8, 1, 2, 3])).await.unwrap();
        // ...and the session still works: the next event is this ping, not the replayed one
        // nor the forged bye.
        let ok = sealer.seal(&Up::Ping { sent: 2.0 }.to_plain()).unwrap();
        d.send(ZmqMessage::from(ok)).await.unwrap();
        match next_event(&mut events).await {
            HubEvent::Control {
                message: Up::Ping { sent },
                ..
            } => assert_eq!(sent, 2.0),
            other => panic!("{other:?}"),
        }
        assert!(hub.send(conn, &Down::Shutdown));
    }

    /// Registers a `Link` with the hub, playing the controller's part (the welcome).
    async fn linked(hub: &Hub, events: &mut mpsc::Receiver<Inbound>, name: &str) -> (ConnId, Link) {
        let endpoint = format!("tcp://127.0.0.1:{}", hub.control_port);
        let identity = format!("{name}/1/1");
        let register = register(name);
        let link = tokio::spawn(async move {
            Link::connect(
                &endpoint,
                &identity,
                &token("0123456789abcdef-good"),
                &register,
            )
            .await
        });
        let conn = match next_event(events).await {
            HubEvent::Registered {
                conn,
                session,
                register,
                ..
            } => {
                assert_eq!(register.name, name);
                assert!(hub.send(
                    conn,
                    &Down::Welcome {
                        session,
                        results_port: hub.results_port,
                    }
                ));
                conn
            }
            other => panic!("expected a registration, got {other:?}"),
        };
        let link = link.await.unwrap().unwrap();
        assert!(matches!(
            next_event(events).await,
            HubEvent::ResultsReady { .. }
        ));
        (conn, link)
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn results_come_only_as_answers_to_pulls_and_within_the_limit() {
        let (hub, mut events) = Hub::bind("tcp://127.0.0.1:0", token("0123456789abcdef-good"))
            .await
            .unwrap();
        let (conn, link) = linked(&hub, &mut events, "pushy").await;
        // Not asked for: refused.
        let unasked = Delivery {
            id: 7,
            bytes: vec![1; 1000],
        };
        link.sender.deliver(&unasked).await.unwrap();
        match next_event(&mut events).await {
            HubEvent::Rejected { reason, .. } => {
                assert!(reason.contains("not asked for"), "{reason}")
            }
            other => panic!("{other:?}"),
        }
        // Asked for: delivered, once.
        assert!(hub.pull(conn, &Pull { ids: vec![7] }));
        link.sender.deliver(&unasked).await.unwrap();
        link.sender.deliver(&unasked).await.unwrap();
        assert!(matches!(
            next_event(&mut events).await,
            HubEvent::Delivery {
                delivery: Delivery { id: 7, .. },
                ..
            }
        ));
        // The second copy is refused quietly (the same offence by the same session within
        // the window); a frame over the limit cuts the connection, and says so: oversize is
        // never held back behind a lesser offence.
        let huge = Delivery {
            id: 8,
            bytes: vec![2; bounds::RESULTS_MESSAGE + 1],
        };
        assert!(hub.pull(conn, &Pull { ids: vec![8] }));
        let _ = link.sender.deliver(&huge).await;
        match next_event(&mut events).await {
            HubEvent::Rejected { reason, .. } => {
                assert!(reason.contains("exceeds the limit"), "{reason}")
            }
            other => panic!("{other:?}"),
        }
        // The results connection is dropped (its disconnect comes through the monitor).
        let deadline = Instant::now() + std::time::Duration::from_secs(5);
        while hub.lock().addresses.len() > 1 && Instant::now() < deadline {
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        assert_eq!(
            hub.lock().addresses.len(),
            1,
            "the results connection was dropped"
        );
    }
}
