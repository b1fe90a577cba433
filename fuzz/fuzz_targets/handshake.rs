//! The controller's and the agent's messages once a frame is open: the clear hello, the JSON
//! control messages both ways, pulls, and deliveries.
#![no_main]

use libfuzzer_sys::fuzz_target;
use rally_tui::distributed::protocol::{self, Delivery, Hello, Pull, ToAgent, ToController};

fuzz_target!(|data: &[u8]| {
    // The hello is the only multi-frame message: split the input on 0xFF bytes into frames.
    let frames: Vec<&[u8]> = data.split(|b| *b == 0xFF).collect();
    let _ = Hello::parse(&frames);
    let _ = protocol::decode_json::<ToController>(data);
    let _ = protocol::decode_json::<ToAgent>(data);
    let _ = protocol::decode_json::<Pull>(data);
    if let Ok(delivery) = Delivery::decode(data) {
        // What decodes, encodes to the same bytes.
        let again = Delivery::decode(&delivery.encode()).expect("re-decodes");
        assert_eq!(again, delivery);
    }
});
