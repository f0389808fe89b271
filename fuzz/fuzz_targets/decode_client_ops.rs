//! Fuzzes the NATS client-op decoder: any bytes, cut into chunks at points
//! taken from the input itself, must neither panic nor make the decoder hold
//! more than its limits allow.
#![no_main]

use flagbase_bus::codec::{Decoder, Limits};
use libfuzzer_sys::fuzz_target;

// Small limits so that the fuzzer reaches both refusals quickly.
const LIMITS: Limits = Limits {
    max_control_line: 256,
    max_payload: 1024,
};

fuzz_target!(|data: &[u8]| {
    // The first byte chooses the chunk size, so one input explores both
    // byte-at-a-time decoding and large reads.
    let Some((&first, input)) = data.split_first() else {
        return;
    };
    let chunk = usize::from(first) + 1;
    let mut decoder = Decoder::new(LIMITS);
    let mut out = Vec::new();
    for piece in input.chunks(chunk) {
        let result = decoder.decode(piece, &mut out);
        assert!(decoder.buffered() <= LIMITS.max_payload + 2);
        if result.is_err() {
            assert!(decoder.decode(b"PING\r\n", &mut out).is_err());
            break;
        }
        out.clear();
    }
});
