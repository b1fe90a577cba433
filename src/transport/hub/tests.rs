use bytes::Bytes;
use tokio::time::Instant;
use zeromq::{DealerSocket, SocketRecv, SocketSend};

use super::*;
use crate::transport::handshake::{CHALLENGE, Hello, REFUSE};
use crate::transport::link::LinkError;
use crate::transport::seal::{self, Direction, Sealer};
use crate::transport::testing::{Delivery, Down, Pull, Register, Test, Up};

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

/// The clear handshake by hand (hello, challenge), as an agent does it: the sealer for what
/// the agent sends next.
async fn handshake(d: &mut DealerSocket, secret: &Token, agent_nonce: [u8; 16]) -> Sealer {
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
    Sealer::new(&keys.to_controller, Direction::ToController)
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
    let mut sealer = handshake(&mut d, &secret, [7u8; 16]).await;
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

/// A session's first sealed message must be its registration: anything else (here a ping)
/// is refused in words, and no session is made of it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_first_sealed_message_that_is_not_a_registration_is_refused() {
    let secret = token("0123456789abcdef-good");
    let (hub, mut events) = Hub::bind("tcp://127.0.0.1:0", secret.clone())
        .await
        .unwrap();
    let mut d = dealer(hub.control_port, "rude/1/1").await;
    let mut sealer = handshake(&mut d, &secret, [9u8; 16]).await;
    let ping = sealer.seal(&Up::Ping { sent: 1.0 }.to_plain()).unwrap();
    d.send(ZmqMessage::from(ping)).await.unwrap();
    let refusal = d.recv().await.unwrap().into_vec();
    assert_eq!(refusal[0].as_ref(), REFUSE);
    let words = String::from_utf8_lossy(&refusal[1]).into_owned();
    assert!(words.contains("registration"), "{words}");
    match next_event(&mut events).await {
        HubEvent::Rejected { reason, .. } => assert!(reason.contains("registration"), "{reason}"),
        other => panic!("expected a rejection, got {other:?}"),
    }
}
