//! What a peer controls once a connection is up: Protomux frames, blind-relay messages and
//! SecretStream bytes (cut anywhere), and the hyperdht holepunch and handshake wrappers.
//! Errors, never panics, and state stays bounded.
#![no_main]

use hyperswarm::crypto::noise::HandshakeOutcome;
use hyperswarm::crypto::secretstream::SecretStream;
use hyperswarm::dht::connect_messages::{HandshakeMessage, HolepunchMessage, SecurePayload};
use hyperswarm::protomux::{blind_relay, Mux};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut mux = Mux::new();
    let _ = mux.open(blind_relay::PROTOCOL, None, &[]);
    for frame in data.split(|b| *b == 0xff) {
        let _ = mux.receive(frame);
        let _ = blind_relay::Pair::decode(frame);
        let _ = HandshakeMessage::decode(frame);
        let _ = HolepunchMessage::decode(frame);
        let _ = SecurePayload::new([7; 32]).open(frame);
    }
    let outcome = HandshakeOutcome {
        is_initiator: false,
        tx: [1; 32],
        rx: [2; 32],
        hash: [3; 64],
        remote_public_key: [0; 32],
    };
    let (mut s, _) = SecretStream::new(&outcome, [4; 24]);
    for chunk in data.chunks(7) {
        if s.decrypt(chunk).is_err() {
            break;
        }
    }
});
