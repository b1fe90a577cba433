//! Everything the hub sends leaves through one writer task per socket, in queue order; each
//! session's sealed messages wait in its own small outbox, drained by its own task, so an
//! agent that does not read fills only its own outbox, never the controller's loop.

use bytes::Bytes;
use tokio::sync::mpsc;
use zeromq::{RouterSendHalf, SocketSend, ZmqMessage};

use crate::transport::handshake::REFUSE;
use crate::transport::seal::Sealer;

/// Messages waiting to go to one agent; beyond this the agent is not reading.
const OUTBOX: usize = 1024;

/// Owns a socket's send half: everything leaves through here in queue order.
pub(super) async fn writer(mut socket: RouterSendHalf, mut queue: mpsc::Receiver<ZmqMessage>) {
    while let Some(message) = queue.recv().await {
        // A peer that went away: its session times out through the heartbeat check.
        let _ = socket.send(message).await;
    }
}

pub(super) fn message(frames: Vec<Bytes>) -> Option<ZmqMessage> {
    ZmqMessage::try_from(frames).ok()
}

/// Seals each message of one session's outbox and hands it to the socket's writer.
pub(super) fn spawn_outbox(
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

/// A refusal in the clear, which the agent prints before it exits.
pub(super) fn refuse(out: &mpsc::Sender<ZmqMessage>, id: &Bytes, reason: &str) {
    if let Some(m) = message(vec![
        id.clone(),
        Bytes::from_static(REFUSE),
        Bytes::from(reason.to_string()),
    ]) {
        let _ = out.try_send(m);
    }
}
