//! Arbitrary bytes into the UDX packet decoder: errors, never panics.
#![no_main]

use hyperswarm::udx::packet::Packet;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = hyperswarm::udx::packet::is_udx(data);
    let _ = Packet::decode(data);
});
