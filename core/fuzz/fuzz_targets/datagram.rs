//! Feeds arbitrary bytes to the dht-rpc datagram decoder and, through the sans-IO node, to
//! everything that handles a decoded datagram. Run: `cd core/fuzz && cargo +nightly fuzz run datagram`.
#![no_main]

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use hyperswarm::rpc::{Config, Message, RpcNode, SocketKind};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // Whatever decodes must re-encode and decode to the same message.
    if let Ok(msg) = Message::decode(data) {
        let bytes = match &msg {
            Message::Request(r) => r.encode(),
            Message::Response(r) => r.encode(),
        };
        if let Ok(bytes) = bytes {
            assert_eq!(Message::decode(&bytes).ok(), Some(msg));
        }
    }
    let now = Instant::now();
    let config = Config {
        seed: Some(0),
        bootstrap: vec![SocketAddr::from(([127, 0, 0, 1], 9))],
        ..Config::default()
    };
    let mut node = RpcNode::new(config, 4000, now);
    let from = SocketAddr::from(([127, 0, 0, 1], 5000));
    // The first byte picks the socket so both paths get covered.
    let socket = if data.first().is_some_and(|b| b & 1 == 1) {
        SocketKind::Server
    } else {
        SocketKind::Client
    };
    node.handle_datagram(now, socket, from, data);
    node.handle_timeout(now + Duration::from_secs(6));
    while node.poll_transmit().is_some() {}
    while node.poll_event().is_some() {}
});
