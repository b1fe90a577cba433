//! Admission: who may become a session. A connection is tracked from the moment either
//! socket announces it (or it speaks) until it proves the token: a control connection by a
//! hello, the challenge and a registration that opens under the keys derived from the token;
//! a results connection by attaching with the token its session's welcome carried. What does
//! not authenticate within [`bounds::HANDSHAKE_DEADLINE`], or comes past the caps on waiting
//! connections, is dropped (see [`crate::transport::admission`]).

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;
use tokio::sync::mpsc;
use tokio::time::Instant;
use zeromq::util::PeerIdentity;
use zeromq::{SocketEvent, ZmqMessage};

use super::outbox::{message, refuse, spawn_outbox};
use super::state::{
    Pending, Port, Ports, Session, State, address_of, admission_key, describe, held_back, offence,
    port_label,
};
use super::{HubEvent, Inbound};
use crate::transport::bounds;
use crate::transport::handshake::{CHALLENGE, Hello};
use crate::transport::message::{Message, Protocol};
use crate::transport::seal::{self, Direction, Opener, Sealer};
use crate::transport::token::{Token, hex};

/// Half-open handshakes kept at once; more (a flood of hellos) evicts the oldest.
const MAX_PENDING: usize = 4096;
/// How often waiting connections are checked against the deadline.
const SWEEP: Duration = Duration::from_millis(250);

/// A control message from a peer without a session: a hello (answered with the challenge),
/// or the registration that answers the challenge (which makes the session).
pub(super) fn handshake<P: Protocol>(
    st: &mut State<P>,
    token: &Token,
    out: &mpsc::Sender<ZmqMessage>,
    ports: &Ports,
    id: &Bytes,
    body: &[&[u8]],
) -> Vec<HubEvent<P>> {
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
    admit(st, ports, Port::Control, id, bounds::CONTROL_MESSAGE);
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

/// `[ATTACH, token]` on the results port: the connection joins the session the token names.
pub(super) fn attach<P: Protocol>(
    st: &mut State<P>,
    out: &mpsc::Sender<ZmqMessage>,
    ports: &Ports,
    id: &Bytes,
    body: &[&[u8]],
) -> Vec<HubEvent<P>> {
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
    admit(st, ports, Port::Results, id, bounds::RESULTS_MESSAGE);
    vec![HubEvent::ResultsReady { conn }]
}

/// The peer proved the token: it leaves admission and may send full-size messages.
fn admit<P: Protocol>(st: &mut State<P>, ports: &Ports, port: Port, id: &Bytes, limit: usize) {
    st.admission.authenticated(&admission_key(port, id));
    if let Ok(peer) = PeerIdentity::try_from(id.clone()) {
        ports.of(port).set_max_message_size(&peer, limit);
    }
}

/// Follows one socket's connections: who connected from where (for admission and the log),
/// who left, and who was dropped by the socket for what it sent.
pub(super) async fn watch<P: Protocol>(
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
pub(super) async fn forward<P: Protocol>(
    events: &mpsc::Sender<Inbound<P>>,
    out: Vec<HubEvent<P>>,
) -> bool {
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

/// Drops connections that did not authenticate in time, including any the monitors did not
/// announce (their events are dropped under a flood).
pub(super) async fn sweep<P: Protocol>(
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
