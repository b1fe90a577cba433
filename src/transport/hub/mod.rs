//! The controller's end: two bound ROUTER sockets, the handshake, and one sealed session per
//! agent connection. It carries any application's messages, generic over their
//! [`Protocol`]: it knows of them only what it enforces (see [`super::message`]).
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
//!
//! The hub's parts follow a message's way in: [`admit`] lets a connection become a session
//! (handshake, admission, eviction), [`session`] reads each session's sealed frames,
//! [`outbox`] takes what the controller sends; [`state`] is what they share under one lock.

mod admit;
mod outbox;
mod session;
mod state;
#[cfg(test)]
mod tests;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc};
use zeromq::{RouterSocket, Socket, SocketOptions, ZmqMessage};

use self::admit::{sweep, watch};
use self::outbox::{refuse, writer};
use self::session::{on_control, on_results, reader};
use self::state::{Port, Ports, State};
use super::bounds;
use super::message::{Message, Protocol};
use super::token::Token;

/// One agent connection (a session); a reconnecting agent gets a new one.
pub type ConnId = u64;
/// One log line per offending address per window.
pub const COMPLAINT_WINDOW: Duration = Duration::from_secs(10);

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
