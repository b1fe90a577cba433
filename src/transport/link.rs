//! The agent's end: two DEALER connections to the controller, the handshake, sealed frames.
//!
//! The `zeromq` crate never reconnects a DEALER, so a link is disposable: when it breaks
//! (the monitor reports a disconnect, a send fails, or the controller falls silent) the agent
//! drops it and builds a new one with a new identity and new session keys — the ZeroMQ
//! guide's Paranoid Pirate pattern. Identities are `name/boot/attempt`, so a stale
//! connection can never take over a live one's routing id.

use std::marker::PhantomData;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;
use tokio::sync::{Mutex, mpsc};
use zeromq::{
    DealerSocket, Socket, SocketEvent, SocketOptions, SocketRecv, SocketSend, ZmqMessage,
};

use zeromq::util::PeerIdentity;

use super::bounds;
use super::handshake::{ATTACH, CHALLENGE, Hello, REFUSE};
use super::message::{Message, Protocol};
use super::seal::{self, Direction, Opener, Sealer};
use super::token::Token;

/// How long the controller has to answer each handshake step.
const HANDSHAKE: Duration = Duration::from_secs(5);

#[derive(Debug, thiserror::Error)]
pub enum LinkError {
    #[error("cannot reach the controller at {endpoint}: {reason}")]
    Connect { endpoint: String, reason: String },
    #[error("the controller refused this agent: {0}")]
    Refused(String),
    #[error("handshake with the controller failed: {0}")]
    Handshake(String),
    #[error("the link to the controller is closed")]
    Closed,
}

impl LinkError {
    /// Refusals do not get better by retrying with the same token and version.
    pub fn is_permanent(&self) -> bool {
        matches!(self, LinkError::Refused(_))
    }
}

/// What arrives from the controller.
#[derive(Debug)]
pub enum Inbound<P: Protocol> {
    Control(P::Down),
    Pull(P::Pull),
    /// A frame was dropped (failed to open or parse); for the log.
    Dropped(String),
    /// The connection broke.
    Closed(String),
}

struct Half {
    socket: zeromq::DealerSendHalf,
    sealer: Sealer,
}

/// Sends on both channels; cheap to share.
pub struct LinkSender<P> {
    control: Mutex<Half>,
    results: Mutex<Half>,
    protocol: PhantomData<fn() -> P>,
}

impl<P: Protocol> LinkSender<P> {
    async fn send_on(half: &Mutex<Half>, plain: Vec<u8>) -> Result<(), LinkError> {
        let mut h = half.lock().await;
        let frame = h.sealer.seal(&plain).map_err(|_| LinkError::Closed)?;
        h.socket
            .send(ZmqMessage::from(frame))
            .await
            .map_err(|_| LinkError::Closed)
    }

    pub async fn send(&self, message: &P::Up) -> Result<(), LinkError> {
        Self::send_on(&self.control, message.to_plain()).await
    }

    pub async fn deliver(&self, delivery: &P::Delivery) -> Result<(), LinkError> {
        Self::send_on(&self.results, delivery.to_plain()).await
    }
}

pub struct Link<P: Protocol> {
    pub sender: Arc<LinkSender<P>>,
    pub inbox: mpsc::Receiver<Inbound<P>>,
    pub welcome: P::Down,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl<P: Protocol> Drop for Link<P> {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

fn options(identity: &str) -> SocketOptions {
    let mut o = SocketOptions::default();
    let id: String = identity.chars().take(200).collect();
    if let Ok(id) = PeerIdentity::try_from(Bytes::from(id)) {
        o.peer_identity(id);
    }
    o.connect_timeout(HANDSHAKE);
    // The agent retries with its own backoff; a refusal is reported as one.
    o.no_connect_retry();
    // Whatever answers at the controller's address is bounded like any peer (SPEC §6).
    o.max_message_size(bounds::TO_AGENT_MESSAGE);
    o
}

async fn dial(endpoint: &str, identity: &str) -> Result<DealerSocket, LinkError> {
    let mut socket = DealerSocket::with_options(options(identity));
    tokio::time::timeout(HANDSHAKE + Duration::from_secs(1), socket.connect(endpoint))
        .await
        .map_err(|_| LinkError::Connect {
            endpoint: endpoint.to_string(),
            reason: "timed out".into(),
        })?
        .map_err(|e| LinkError::Connect {
            endpoint: endpoint.to_string(),
            reason: e.to_string(),
        })?;
    Ok(socket)
}

async fn recv_clear(socket: &mut DealerSocket) -> Result<Vec<Bytes>, LinkError> {
    match tokio::time::timeout(HANDSHAKE, socket.recv()).await {
        Err(_) => Err(LinkError::Handshake("no answer from the controller".into())),
        Ok(Err(e)) => Err(LinkError::Handshake(e.to_string())),
        Ok(Ok(m)) => Ok(m.into_vec()),
    }
}

impl<P: Protocol> Link<P> {
    /// Connects, authenticates and registers. `identity` must be unique per attempt.
    pub async fn connect(
        endpoint: &str,
        identity: &str,
        token: &Token,
        register: &P::Register,
    ) -> Result<Link<P>, LinkError> {
        let mut control = dial(endpoint, identity).await?;
        let agent_nonce = seal::new_nonce();
        let hello = Hello {
            version: P::VERSION,
            nonce: agent_nonce,
        };
        let frames: Vec<Bytes> = hello.frames().into_iter().map(Bytes::from).collect();
        let hello = ZmqMessage::try_from(frames).map_err(|_| LinkError::Closed)?;
        control.send(hello).await.map_err(|_| LinkError::Closed)?;
        let answer = recv_clear(&mut control).await?;
        let controller_nonce: [u8; 16] = match answer.as_slice() {
            [tag, nonce] if tag.as_ref() == CHALLENGE => nonce
                .as_ref()
                .try_into()
                .map_err(|_| LinkError::Handshake("malformed challenge".into()))?,
            [tag, reason] if tag.as_ref() == REFUSE => {
                return Err(LinkError::Refused(
                    String::from_utf8_lossy(reason).into_owned(),
                ));
            }
            _ => return Err(LinkError::Handshake("unexpected answer to hello".into())),
        };
        let keys = seal::derive(token.as_bytes(), &controller_nonce, &agent_nonce)
            .map_err(|e| LinkError::Handshake(e.to_string()))?;
        let results_keys =
            seal::derive_channel(token.as_bytes(), &controller_nonce, &agent_nonce, "results")
                .map_err(|e| LinkError::Handshake(e.to_string()))?;
        let mut sealer = Sealer::new(&keys.to_controller, Direction::ToController);
        let mut opener =
            Opener::new(&keys.to_agent, Direction::ToAgent).with_limit(bounds::TO_AGENT_MESSAGE);
        let reg = sealer
            .seal(&P::register(register).to_plain())
            .map_err(|e| LinkError::Handshake(e.to_string()))?;
        control
            .send(ZmqMessage::from(reg))
            .await
            .map_err(|_| LinkError::Closed)?;
        let answer = recv_clear(&mut control).await?;
        let welcome = match answer.as_slice() {
            [tag, reason] if tag.as_ref() == REFUSE => {
                return Err(LinkError::Refused(
                    String::from_utf8_lossy(reason).into_owned(),
                ));
            }
            [frame] => {
                let plain = opener
                    .open(frame)
                    .map_err(|e| LinkError::Handshake(format!("welcome: {e}")))?;
                P::Down::from_plain(&plain)
                    .map_err(|e| LinkError::Handshake(format!("welcome: {e}")))?
            }
            _ => return Err(LinkError::Handshake("unexpected answer to register".into())),
        };
        let Some((results_port, session)) = P::welcome(&welcome) else {
            return Err(LinkError::Handshake("expected a welcome".into()));
        };
        let results_endpoint = match endpoint.rsplit_once(':') {
            Some((host, _)) => format!("{host}:{results_port}"),
            None => return Err(LinkError::Handshake("bad endpoint".into())),
        };
        let mut results = dial(&results_endpoint, &format!("{identity}/r")).await?;
        let attach = ZmqMessage::try_from(vec![
            Bytes::from_static(ATTACH),
            Bytes::copy_from_slice(session.as_bytes()),
        ])
        .map_err(|_| LinkError::Closed)?;
        results.send(attach).await.map_err(|_| LinkError::Closed)?;

        let (inbox_tx, inbox) = mpsc::channel(1024);
        let control_events = control.monitor();
        let results_events = results.monitor();
        let (control_send, control_recv) = control.split();
        let (results_send, results_recv) = results.split();
        let results_opener = Opener::new(&results_keys.to_agent, Direction::ToAgent)
            .with_limit(bounds::TO_AGENT_MESSAGE);
        let tasks = vec![
            tokio::spawn(read(
                control_recv,
                opener,
                inbox_tx.clone(),
                "control",
                Inbound::Control,
            )),
            tokio::spawn(read(
                results_recv,
                results_opener,
                inbox_tx.clone(),
                "results",
                Inbound::Pull,
            )),
            tokio::spawn(watch(control_events, inbox_tx.clone(), "control")),
            tokio::spawn(watch(results_events, inbox_tx, "results")),
        ];
        let sender = Arc::new(LinkSender {
            control: Mutex::new(Half {
                socket: control_send,
                sealer,
            }),
            results: Mutex::new(Half {
                socket: results_send,
                sealer: Sealer::new(&results_keys.to_controller, Direction::ToController),
            }),
            protocol: PhantomData,
        });
        Ok(Link {
            sender,
            inbox,
            welcome,
            tasks,
        })
    }
}

/// Reads one channel: opens each sealed frame and decodes it as a `T`, which `wrap` turns
/// into what the agent hears. Ends when the connection breaks or the agent stops listening.
async fn read<P: Protocol, T: Message>(
    mut socket: zeromq::DealerRecvHalf,
    mut opener: Opener,
    inbox: mpsc::Sender<Inbound<P>>,
    channel: &'static str,
    wrap: fn(T) -> Inbound<P>,
) {
    loop {
        let inbound = match socket.recv().await {
            Err(e) => Inbound::Closed(e.to_string()),
            Ok(m) => match m.into_vec().as_slice() {
                [frame] => match opener.open(frame) {
                    Ok(plain) => match T::from_plain(&plain) {
                        Ok(message) => wrap(message),
                        Err(e) => Inbound::Dropped(format!("{channel} message: {e}")),
                    },
                    Err(e) => Inbound::Dropped(format!("{channel} frame: {e}")),
                },
                other => Inbound::Dropped(format!("{} frames on {channel}", other.len())),
            },
        };
        let closed = matches!(inbound, Inbound::Closed(_));
        if inbox.send(inbound).await.is_err() || closed {
            return;
        }
    }
}

async fn watch<P: Protocol>(
    mut events: futures::channel::mpsc::Receiver<SocketEvent>,
    inbox: mpsc::Sender<Inbound<P>>,
    channel: &'static str,
) {
    while let Some(event) = events.next().await {
        if let SocketEvent::Disconnected(_) = event {
            let _ = inbox
                .send(Inbound::Closed(format!("{channel} connection lost")))
                .await;
            return;
        }
    }
}
