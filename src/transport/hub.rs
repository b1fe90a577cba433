//! The controller's end: two bound ROUTER sockets, the handshake, and one sealed session per
//! agent connection.
//!
//! Everything that arrives is checked before anything else sees it: a frame from a peer
//! without a session must be a well-formed hello; the first sealed frame must open under the
//! keys derived from the token (otherwise the peer holds another token and is refused); later
//! frames must open with strictly increasing sequence numbers. What fails is dropped and
//! reported as [`HubEvent::Rejected`] for the log, and the run goes on.
//!
//! Sending never blocks the controller: each session has a small outbox drained by its own
//! task, so a stuck agent fills only its own outbox (then its messages are dropped and it will
//! be declared lost by the heartbeat check), never the controller's loop or memory.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use tokio::sync::mpsc;
use zeromq::{RouterSocket, Socket, SocketRecv, SocketSend, ZmqMessage};

use super::seal::{self, Direction, Opener, Sealer};
use super::token::{Token, hex};
use crate::distributed::protocol::{
    self, ATTACH, CHALLENGE, Delivery, Hello, PROTOCOL_VERSION, Pull, REFUSE, Register, ToAgent,
    ToController,
};

/// One agent connection (a session); a reconnecting agent gets a new one.
pub type ConnId = u64;

/// Messages waiting to go to one agent; beyond this the agent is not reading.
const OUTBOX: usize = 1024;
/// Half-open handshakes kept at once; more (a flood of hellos) evicts the oldest.
const MAX_PENDING: usize = 4096;

#[derive(Debug)]
pub enum HubEvent {
    Registered {
        conn: ConnId,
        register: Box<Register>,
        /// For the welcome: the results channel's ATTACH token.
        session: String,
        peer: String,
    },
    Control {
        conn: ConnId,
        message: ToController,
    },
    Delivery {
        conn: ConnId,
        delivery: Delivery,
    },
    /// The session's results connection is attached.
    ResultsReady {
        conn: ConnId,
    },
    /// Something was refused or dropped; for the log.
    Rejected {
        peer: String,
        reason: String,
    },
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
    control_id: Bytes,
    control_opener: Opener,
    control_out: mpsc::Sender<Vec<u8>>,
    results_id: Option<Bytes>,
    results_opener: Opener,
    results_out: Option<mpsc::Sender<Vec<u8>>>,
    results_sealer: Option<Sealer>,
    results_keys: seal::SessionKeys,
    attach: String,
}

struct Pending {
    controller_nonce: [u8; 16],
    agent_nonce: [u8; 16],
    order: u64,
}

#[derive(Default)]
struct State {
    next_conn: ConnId,
    /// By control routing id.
    sessions: HashMap<Bytes, Session>,
    by_conn: HashMap<ConnId, Bytes>,
    by_attach: HashMap<String, Bytes>,
    by_results_id: HashMap<Bytes, Bytes>,
    pending: HashMap<Bytes, Pending>,
    pending_order: u64,
}

pub struct Hub {
    state: Arc<Mutex<State>>,
    pub control_port: u16,
    pub results_port: u16,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Drop for Hub {
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

async fn bind(endpoint: &str) -> Result<(RouterSocket, u16), TransportError> {
    let mut socket = RouterSocket::new();
    let bound = socket
        .bind(endpoint)
        .await
        .map_err(|source| TransportError::Bind {
            endpoint: endpoint.to_string(),
            source,
        })?;
    Ok((socket, port_of(&bound)))
}

impl Hub {
    /// Listens on `endpoint` (`tcp://HOST:PORT`, port 0 for any) for control, and on the next
    /// port (or any, with port 0) for results.
    pub async fn bind(
        endpoint: &str,
        token: Token,
    ) -> Result<(Hub, mpsc::Receiver<HubEvent>), TransportError> {
        let (host, port) = split_endpoint(endpoint)?;
        let (control, control_port) = bind(endpoint).await?;
        let results_endpoint = format!(
            "tcp://{host}:{}",
            if port == 0 { 0 } else { port.saturating_add(1) }
        );
        let (results, results_port) = bind(&results_endpoint).await?;
        let (events_tx, events) = mpsc::channel(8192);
        let state = Arc::new(Mutex::new(State::default()));
        let (control_send, control_recv) = control.split();
        let (results_send, results_recv) = results.split();
        let (control_tx, control_rx) = mpsc::channel(8192);
        let (results_tx, results_rx) = mpsc::channel(8192);
        let tasks = vec![
            tokio::spawn(writer(control_send, control_rx)),
            tokio::spawn(writer(results_send, results_rx)),
            tokio::spawn({
                let (state, out) = (state.clone(), control_tx.clone());
                reader(control_recv, events_tx.clone(), move |id, body| {
                    on_control(&state, &token, &out, id, body)
                })
            }),
            tokio::spawn({
                let (state, out) = (state.clone(), results_tx.clone());
                reader(results_recv, events_tx, move |id, body| {
                    on_results(&state, &out, id, body)
                })
            }),
        ];
        Ok((
            Hub {
                state,
                control_port,
                results_port,
                tasks,
            },
            events,
        ))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Queue a control message for an agent. False when the session is gone or its outbox is
    /// full (the agent is not reading).
    pub fn send(&self, conn: ConnId, message: &ToAgent) -> bool {
        let state = self.lock();
        let Some(session) = state
            .by_conn
            .get(&conn)
            .and_then(|id| state.sessions.get(id))
        else {
            return false;
        };
        session
            .control_out
            .try_send(protocol::encode_json(message))
            .is_ok()
    }

    /// Ask for chunks on the results channel.
    pub fn pull(&self, conn: ConnId, pull: &Pull) -> bool {
        let state = self.lock();
        let Some(out) = state
            .by_conn
            .get(&conn)
            .and_then(|id| state.sessions.get(id))
            .and_then(|s| s.results_out.as_ref())
        else {
            return false;
        };
        out.try_send(protocol::encode_json(pull)).is_ok()
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
async fn writer(mut socket: zeromq::RouterSendHalf, mut queue: mpsc::Receiver<ZmqMessage>) {
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
/// handed to `handle`, whose verdicts go to the controller.
async fn reader(
    mut socket: zeromq::RouterRecvHalf,
    events: mpsc::Sender<HubEvent>,
    handle: impl Fn(&Bytes, &[&[u8]]) -> Vec<HubEvent>,
) {
    loop {
        let Ok(m) = socket.recv().await else {
            // The crate drops broken peers itself; a receive error is not fatal for the hub.
            tokio::task::yield_now().await;
            continue;
        };
        let frames = m.into_vec();
        let Some((id, body)) = frames.split_first() else {
            continue;
        };
        let body: Vec<&[u8]> = body.iter().map(|b| b.as_ref()).collect();
        for event in handle(id, &body) {
            if events.send(event).await.is_err() {
                return;
            }
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

fn rejected(id: &[u8], reason: impl Into<String>) -> Vec<HubEvent> {
    vec![HubEvent::Rejected {
        peer: peer_name(id),
        reason: reason.into(),
    }]
}

/// One control message; returns what the controller should hear about it.
fn on_control(
    state: &Mutex<State>,
    token: &Token,
    out: &mpsc::Sender<ZmqMessage>,
    id: &Bytes,
    body: &[&[u8]],
) -> Vec<HubEvent> {
    let mut st = state.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(session) = st.sessions.get_mut(id) {
        let [frame] = body else {
            return rejected(id, format!("{} frames in a sealed message", body.len()));
        };
        let conn = session.conn;
        return match session.control_opener.open(frame) {
            Err(e) => rejected(id, format!("control frame dropped: {e}")),
            Ok(plain) => match protocol::decode_json::<ToController>(&plain) {
                Ok(message) => vec![HubEvent::Control { conn, message }],
                Err(e) => rejected(id, format!("control message dropped: {e}")),
            },
        };
    }
    match Hello::parse(body) {
        Some(Err(e)) => {
            refuse(out, id, &e);
            return rejected(id, e);
        }
        Some(Ok(hello)) => {
            if hello.version != PROTOCOL_VERSION {
                let reason = format!(
                    "protocol version {} is not supported (this controller speaks {PROTOCOL_VERSION})",
                    hello.version
                );
                refuse(out, id, &reason);
                return rejected(id, reason);
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
            return Vec::new();
        }
        None => {}
    }
    let Some(pending) = st.pending.remove(id) else {
        return rejected(id, "message from a peer without a session (not a hello)");
    };
    let [frame] = body else {
        return rejected(id, "registration is not one sealed frame");
    };
    let keys = match seal::derive(
        token.as_bytes(),
        &pending.controller_nonce,
        &pending.agent_nonce,
    ) {
        Ok(k) => k,
        Err(e) => return rejected(id, format!("key derivation: {e}")),
    };
    let mut opener = Opener::new(&keys.to_controller, Direction::ToController);
    let register = match opener
        .open(frame)
        .map_err(|e| e.to_string())
        .and_then(|plain| protocol::decode_json::<ToController>(&plain).map_err(|e| e.to_string()))
    {
        Ok(ToController::Register(r)) => r,
        Ok(_) => {
            refuse(out, id, "expected a registration");
            return rejected(id, "first sealed message is not a registration");
        }
        Err(e) => {
            refuse(
                out,
                id,
                "authentication failed (is the token the same on both sides?)",
            );
            return rejected(
                id,
                format!("authentication failed ({e}): the agent's token differs"),
            );
        }
    };
    let results_keys = match seal::derive_channel(
        token.as_bytes(),
        &pending.controller_nonce,
        &pending.agent_nonce,
        "results",
    ) {
        Ok(k) => k,
        Err(e) => return rejected(id, format!("key derivation: {e}")),
    };
    st.next_conn += 1;
    let conn = st.next_conn;
    let attach = hex(&seal::new_nonce());
    let sealer = Sealer::new(&keys.to_agent, Direction::ToAgent);
    let session = Session {
        conn,
        control_id: id.clone(),
        control_opener: opener,
        control_out: spawn_outbox(sealer, id.clone(), out.clone()),
        results_id: None,
        results_opener: Opener::new(&results_keys.to_controller, Direction::ToController),
        results_out: None,
        results_sealer: Some(Sealer::new(&results_keys.to_agent, Direction::ToAgent)),
        results_keys,
        attach: attach.clone(),
    };
    st.by_conn.insert(conn, id.clone());
    st.by_attach.insert(attach.clone(), id.clone());
    st.sessions.insert(id.clone(), session);
    vec![HubEvent::Registered {
        conn,
        register,
        session: attach,
        peer: peer_name(id),
    }]
}

fn on_results(
    state: &Mutex<State>,
    out: &mpsc::Sender<ZmqMessage>,
    id: &Bytes,
    body: &[&[u8]],
) -> Vec<HubEvent> {
    let mut st = state.lock().unwrap_or_else(|e| e.into_inner());
    if body.first() == Some(&ATTACH) {
        let [_, attach] = body else {
            return rejected(id, "malformed attach");
        };
        let attach = String::from_utf8_lossy(attach).into_owned();
        let Some(control_id) = st.by_attach.get(&attach).cloned() else {
            return rejected(id, "attach to an unknown session");
        };
        let Some(session) = st.sessions.get_mut(&control_id) else {
            return rejected(id, "attach to a closed session");
        };
        if session.results_id.is_some() {
            return rejected(id, "session already has a results connection");
        }
        // The attach token travelled sealed, but the binding is only trusted once a sealed
        // frame opens under the session's results keys (see below).
        session.results_id = Some(id.clone());
        if let Some(sealer) = session.results_sealer.take() {
            session.results_out = Some(spawn_outbox(sealer, id.clone(), out.clone()));
        }
        let _ = &session.results_keys;
        let conn = session.conn;
        st.by_results_id.insert(id.clone(), control_id);
        return vec![HubEvent::ResultsReady { conn }];
    }
    let Some(control_id) = st.by_results_id.get(id).cloned() else {
        return rejected(id, "results frame from a peer without a session");
    };
    let Some(session) = st.sessions.get_mut(&control_id) else {
        return rejected(id, "results frame for a closed session");
    };
    let [frame] = body else {
        return rejected(id, "results message is not one sealed frame");
    };
    let conn = session.conn;
    let _ = &session.control_id;
    match session.results_opener.open(frame) {
        Err(e) => rejected(id, format!("results frame dropped: {e}")),
        Ok(plain) => match Delivery::decode(&plain) {
            Ok(delivery) => vec![HubEvent::Delivery { conn, delivery }],
            Err(e) => rejected(id, format!("results message dropped: {e}")),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::transport::link::{Link, LinkError};
    use zeromq::{DealerSocket, SocketOptions};

    fn register(name: &str) -> Register {
        Register {
            name: name.into(),
            host: "test".into(),
            cores: 1,
            pid: 1,
            boot: "b".into(),
            version: "0".into(),
            cached: Vec::new(),
        }
    }

    fn token(t: &str) -> Token {
        Token::from_bytes(t.as_bytes().to_vec(), "").unwrap()
    }

    async fn next_event(events: &mut mpsc::Receiver<HubEvent>) -> HubEvent {
        tokio::time::timeout(std::time::Duration::from_secs(5), events.recv())
            .await
            .expect("an event within 5 s")
            .expect("hub running")
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
        // The hub is unharmed: a good agent registers next (the controller's part, the
        // welcome, is played here).
        let good = tokio::spawn(async move {
            Link::connect(
                &endpoint,
                "good/1/1",
                &token("0123456789abcdef-good"),
                &register("good"),
            )
            .await
        });
        match next_event(&mut events).await {
            HubEvent::Registered {
                conn,
                register,
                session,
                ..
            } => {
                assert_eq!(register.name, "good");
                assert!(hub.send(
                    conn,
                    &ToAgent::Welcome {
                        agent: 0,
                        session,
                        results_port: hub.results_port,
                        heartbeat_ms: 1000,
                        liveness_ms: 3000,
                        sla_interval_ms: 1000,
                    }
                ));
            }
            other => panic!("expected a registration, got {other:?}"),
        }
        let link = good.await.unwrap().unwrap();
        assert!(matches!(link.welcome, ToAgent::Welcome { .. }));
        assert!(matches!(
            next_event(&mut events).await,
            HubEvent::ResultsReady { .. }
        ));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn replayed_forged_and_garbage_frames_are_dropped() {
        let secret = token("0123456789abcdef-good");
        let (hub, mut events) = Hub::bind("tcp://127.0.0.1:0", secret.clone())
            .await
            .unwrap();
        let mut d = dealer(hub.control_port, "hand/1/1").await;
        // Garbage before any session, and a hello of another protocol version.
        d.send(frames(vec![b"GET / HTTP/1.1\r\n\r\n".to_vec()]))
            .await
            .unwrap();
        assert!(matches!(
            next_event(&mut events).await,
            HubEvent::Rejected { .. }
        ));
        d.send(frames(
            Hello {
                version: 99,
                nonce: [1; 16],
            }
            .frames(),
        ))
        .await
        .unwrap();
        match next_event(&mut events).await {
            HubEvent::Rejected { reason, .. } => assert!(reason.contains("version 99"), "{reason}"),
            other => panic!("{other:?}"),
        }
        let refusal = d.recv().await.unwrap().into_vec();
        assert_eq!(refusal[0].as_ref(), REFUSE);

        // A real handshake by hand, so that we hold a sealed frame to replay.
        let agent_nonce = [7u8; 16];
        d.send(frames(
            Hello {
                version: PROTOCOL_VERSION,
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
            .seal(&protocol::encode_json(&ToController::Register(Box::new(
                register("hand"),
            ))))
            .unwrap();
        d.send(ZmqMessage::from(reg)).await.unwrap();
        let conn = match next_event(&mut events).await {
            HubEvent::Registered { conn, .. } => conn,
            other => panic!("{other:?}"),
        };
        let ping = sealer
            .seal(&protocol::encode_json(&ToController::Ping { sent: 1.0 }))
            .unwrap();
        d.send(ZmqMessage::from(ping.clone())).await.unwrap();
        assert!(matches!(
            next_event(&mut events).await,
            HubEvent::Control { conn: c, message: ToController::Ping { .. } } if c == conn
        ));
        // The same frame again: a replay.
        d.send(ZmqMessage::from(ping.clone())).await.unwrap();
        match next_event(&mut events).await {
            HubEvent::Rejected { reason, .. } => assert!(reason.contains("replay"), "{reason}"),
            other => panic!("{other:?}"),
        }
        // A forged frame: one bit flipped in the ciphertext.
        let mut forged = sealer
            .seal(&protocol::encode_json(&ToController::Bye))
            .unwrap();
        let last = forged.len() - 1;
        forged[last] ^= 1;
        d.send(ZmqMessage::from(forged)).await.unwrap();
        match next_event(&mut events).await {
            HubEvent::Rejected { reason, .. } => assert!(reason.contains("tag"), "{reason}"),
            other => panic!("{other:?}"),
        }
        // Random bytes inside the session, and the session still works afterwards.
        d.send(ZmqMessage::from(vec![0u8, 1, 2, 3])).await.unwrap();
        assert!(matches!(
            next_event(&mut events).await,
            HubEvent::Rejected { .. }
        ));
        let ok = sealer
            .seal(&protocol::encode_json(&ToController::Ping { sent: 2.0 }))
            .unwrap();
        d.send(ZmqMessage::from(ok)).await.unwrap();
        assert!(matches!(
            next_event(&mut events).await,
            HubEvent::Control {
                message: ToController::Ping { .. },
                ..
            }
        ));
        assert!(hub.send(conn, &ToAgent::Shutdown));
    }
}
