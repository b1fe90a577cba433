//! What arrives on the wire, in the order it is read: the ZMTP decoder (greeting, commands,
//! frames, with the message limit the controller uses before authentication), then the seal
//! on each frame it yields.
#![no_main]

use std::sync::LazyLock;

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use rally_tui::transport::bounds;
use rally_tui::transport::seal::{self, Direction, Opener, SessionKeys};
use zeromq::fuzzing::{Decoder, Message, ZmqCodec};

/// Derived once: HKDF per input would be most of the time spent.
static KEYS: LazyLock<SessionKeys> =
    LazyLock::new(|| seal::derive(b"0123456789abcdef-fuzz", &[1; 16], &[2; 16]).expect("keys"));

fuzz_target!(|data: &[u8]| {
    let keys = &*KEYS;
    let mut opener = Opener::new(&keys.to_controller, Direction::ToController)
        .with_limit(bounds::CONTROL_MESSAGE);
    let mut codec = ZmqCodec::with_max_message_size(bounds::CONTROL_BEFORE_AUTH);
    // Fed in pieces, as reads come, so that partial headers are exercised too.
    let mut buffer = BytesMut::new();
    for piece in data.chunks(97) {
        buffer.extend_from_slice(piece);
        loop {
            match codec.decode(&mut buffer) {
                Ok(Some(Message::Message(m))) => {
                    for frame in m.into_vec() {
                        let _ = opener.open(&frame);
                    }
                }
                Ok(Some(_)) => {}
                Ok(None) => break,
                Err(_) => return,
            }
            // Nothing a peer sends may make the decoder hold more than the limit.
            assert!(buffer.capacity() <= 2 * bounds::CONTROL_BEFORE_AUTH + 4096);
        }
    }
});
