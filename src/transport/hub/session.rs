//! An authenticated session's frames: each socket's reader hands every message to its
//! port's handler, whose verdicts go to the controller with the message's share of the
//! inbound budget. A session's frames must open under its keys in sequence; results are
//! taken only as answers to the session's pulls.

use std::sync::{Arc, Mutex};

use bytes::Bytes;
use tokio::sync::{Semaphore, mpsc};
use tokio::time::Instant;
use zeromq::{SocketRecv, ZmqMessage};

use super::admit;
use super::state::{Port, Ports, State};
use super::{HubEvent, Inbound};
use crate::transport::bounds;
use crate::transport::handshake::ATTACH;
use crate::transport::message::{Message, Protocol};
use crate::transport::token::Token;

/// Reads one socket: each message is split into the peer's routing id and its frames and
/// handed to `handle`, whose verdicts go to the controller. A message's bytes count against
/// the shared budget until the controller has handled its event; with the budget spent, this
/// stops reading and TCP pushes back on the senders.
pub(super) async fn reader<P: Protocol>(
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

/// One control message; returns what the controller should hear about it.
pub(super) fn on_control<P: Protocol>(
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
    admit::handshake(&mut st, token, out, ports, id, body)
}

pub(super) fn on_results<P: Protocol>(
    state: &Mutex<State<P>>,
    out: &mpsc::Sender<ZmqMessage>,
    ports: &Ports,
    id: &Bytes,
    body: &[&[u8]],
) -> Vec<HubEvent<P>> {
    let mut st = state.lock().unwrap_or_else(|e| e.into_inner());
    st.learn_address(ports, Port::Results, id);
    if body.first() == Some(&ATTACH) {
        return admit::attach(&mut st, out, ports, id, body);
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
