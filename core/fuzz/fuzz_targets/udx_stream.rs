//! A connected UDX stream fed arbitrary datagrams (split at 0xFE bytes) with time moving on:
//! no panic, and its buffers stay within their limits.
#![no_main]

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use hyperswarm::udx::{Config, Stream};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let start = Instant::now();
    let mut s = Stream::new(1, Config::default());
    s.connect(2, SocketAddr::from(([127, 0, 0, 1], 9)));
    s.write(&[7u8; 3000]);
    let mut buf = [0u8; 4096];
    for (i, chunk) in data.split(|b| *b == 0xfe).enumerate() {
        let now = start + Duration::from_millis(i as u64 * 37);
        s.handle_datagram(now, chunk);
        s.handle_timeout(now);
        while s.poll_transmit(now).is_some() {}
        while s.poll_event().is_some() {}
        s.read(&mut buf);
    }
});
