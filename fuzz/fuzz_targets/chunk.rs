//! Chunks as they come from an agent or from disk (the cache, the store): checksummed and
//! decoded without panicking; what decodes, encodes and decodes to the same chunk (compared
//! as bytes: a NaN from the input is a fine value that is not equal to itself).
#![no_main]

use libfuzzer_sys::fuzz_target;
use rally_tui::chunk::codec;

fuzz_target!(|data: &[u8]| {
    let _ = codec::verify(data);
    if let Ok(chunk) = codec::decode(data) {
        let bytes = codec::encode(&chunk);
        let again = codec::decode(&bytes).expect("re-decodes");
        assert_eq!(codec::encode(&again), bytes);
    }
});
