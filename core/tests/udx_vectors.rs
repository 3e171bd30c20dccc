//! UDX packets captured from libudx (udx-native 1.21.3): each `udx/*` vector must decode and
//! re-encode byte-exact, and the stream state machine must produce the same bytes when it
//! replays the captured exchange (local id 1 talking to remote id 2).

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use hyperswarm::udx::packet::{self, Header, Packet, DATA, HEARTBEAT};
use hyperswarm::udx::{is_udx, stream_id, Config, Event, Stream};
use serde_json::Value;

fn vector(name: &str) -> Vec<u8> {
    let doc: Value =
        serde_json::from_str(include_str!("vectors/vectors.json")).expect("vectors parse");
    let v = doc["vectors"]
        .as_array()
        .expect("array")
        .iter()
        .find(|v| v["name"] == name)
        .unwrap_or_else(|| panic!("vector {name} missing"));
    hex::decode(v["expected"]["bytes"].as_str().expect("hex")).expect("valid hex")
}

fn all_udx_names() -> Vec<String> {
    let doc: Value =
        serde_json::from_str(include_str!("vectors/vectors.json")).expect("vectors parse");
    doc["vectors"]
        .as_array()
        .expect("array")
        .iter()
        .filter_map(|v| v["name"].as_str())
        .filter(|n| n.starts_with("udx/"))
        .map(str::to_string)
        .collect()
}

const KNOWN: &[&str] = &[
    "udx/data",
    "udx/message",
    "udx/ack",
    "udx/sack",
    "udx/ack-after-gap",
    "udx/heartbeat-reply",
    "udx/heartbeat",
    "udx/end",
    "udx/destroy",
];

#[test]
fn every_udx_vector_round_trips() {
    let names = all_udx_names();
    for name in &names {
        assert!(KNOWN.contains(&name.as_str()), "unchecked vector {name}");
        let bytes = vector(name);
        assert!(is_udx(&bytes), "{name}");
        assert_eq!(stream_id(&bytes), Some(2), "{name}");
        let p = Packet::decode(&bytes).unwrap_or_else(|e| panic!("{name}: {e}"));
        let sacks: Vec<_> = p.sacks().collect();
        let again = packet::encode(&p.header, &sacks, p.payload);
        assert_eq!(again, bytes, "{name} re-encodes");
        assert_eq!(p.header.recv_window, 4 * 1024 * 1024, "{name}");
    }
    assert_eq!(names.len(), KNOWN.len());

    let sack_bytes = vector("udx/sack");
    let sack = Packet::decode(&sack_bytes).unwrap();
    let blocks: Vec<_> = sack.sacks().collect();
    assert_eq!(blocks.len(), 1);
    assert_eq!((blocks[0].start, blocks[0].end), (2, 3));
    assert_eq!(sack.header.ack, 1);
}

/// A packet the JS peer (stream id 2) would send to our stream 1.
fn from_peer(flags: u8, seq: u32, ack: u32, payload: &[u8]) -> Vec<u8> {
    let h = Header {
        flags,
        data_offset: 0,
        stream_id: 1,
        recv_window: 4 * 1024 * 1024,
        seq,
        ack,
    };
    packet::encode(&h, &[], payload)
}

fn next(s: &mut Stream, now: Instant) -> Vec<u8> {
    s.poll_transmit(now).expect("a packet").payload
}

#[test]
fn stream_replays_the_captured_exchange() {
    let addr: SocketAddr = "127.0.0.1:4000".parse().unwrap();
    let mut now = Instant::now();
    let mut s = Stream::new(1, Config::default());
    s.connect(2, addr);

    assert_eq!(s.write(b"hello"), 5);
    let t = s.poll_transmit(now).expect("data");
    assert_eq!(t.dest, addr);
    assert_eq!(t.payload, vector("udx/data"));
    assert!(s.poll_transmit(now).is_none());

    s.send_message(b"msg").unwrap();
    assert_eq!(next(&mut s, now), vector("udx/message"));

    now += Duration::from_millis(1);
    s.handle_datagram(now, &from_peer(DATA, 0, 1, b"world"));
    let mut buf = [0u8; 16];
    assert_eq!(s.read(&mut buf), 5);
    assert_eq!(&buf[..5], b"world");
    assert_eq!(next(&mut s, now), vector("udx/ack"));
    assert_eq!(s.outstanding(), 0, "our hello was acknowledged");

    s.handle_datagram(now, &from_peer(DATA, 2, 1, b"!"));
    assert_eq!(next(&mut s, now), vector("udx/sack"));

    s.handle_datagram(now, &from_peer(DATA, 1, 1, b", "));
    // udx-native hands data to the reader before the ACK leaves, so the window is full.
    assert_eq!(s.read(&mut buf), 3);
    assert_eq!(&buf[..3], b", !");
    assert_eq!(next(&mut s, now), vector("udx/ack-after-gap"));

    s.handle_datagram(now, &from_peer(HEARTBEAT, 3, 1, b""));
    assert_eq!(next(&mut s, now), vector("udx/heartbeat-reply"));

    s.heartbeat();
    assert_eq!(next(&mut s, now), vector("udx/heartbeat"));

    s.end();
    assert_eq!(next(&mut s, now), vector("udx/end"));

    s.destroy();
    assert_eq!(next(&mut s, now), vector("udx/destroy"));
    assert!(s.poll_transmit(now).is_none());
    let events: Vec<_> = std::iter::from_fn(|| s.poll_event()).collect();
    assert!(events.contains(&Event::Readable));
    assert_eq!(s.is_closed(), Some(hyperswarm::udx::CloseReason::Destroyed));
}
