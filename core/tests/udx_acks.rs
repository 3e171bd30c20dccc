//! When a UDX stream acknowledges: one pure ACK answers a whole receive batch, a DATA packet
//! leaving in the same poll carries the ack instead, and SACK blocks still get their own
//! pure ACK. Also: a retransmission carries the same payload as the original.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use hyperswarm::udx::packet::{self, Header, Packet, DATA, SACK};
use hyperswarm::udx::{Config, Stream, DEFAULT_MAX_PAYLOAD};

fn addr() -> SocketAddr {
    "10.0.0.2:2".parse().unwrap()
}

fn stream() -> Stream {
    let mut s = Stream::new(1, Config::default());
    s.connect(2, addr());
    s
}

/// DATA from the peer (stream id 2 → our 1) with sequence number `seq`.
fn data(seq: u32, payload: &[u8]) -> Vec<u8> {
    let h = Header {
        flags: DATA,
        data_offset: 0,
        stream_id: 1,
        recv_window: 4 * 1024 * 1024,
        seq,
        ack: 0,
    };
    packet::encode(&h, &[], payload)
}

fn drain(s: &mut Stream, now: Instant) -> Vec<Vec<u8>> {
    std::iter::from_fn(|| s.poll_transmit(now).map(|t| t.payload)).collect()
}

#[test]
fn one_pure_ack_per_receive_batch() {
    let mut s = stream();
    let now = Instant::now();
    for seq in 0..10 {
        s.handle_datagram(now, &data(seq, b"x"));
    }
    let out = drain(&mut s, now);
    assert_eq!(out.len(), 1, "ten DATA packets, one ACK");
    let ack = Packet::decode(&out[0]).unwrap();
    assert_eq!((ack.header.flags, ack.header.ack), (0, 10));
    assert!(drain(&mut s, now).is_empty(), "nothing more is owed");
}

#[test]
fn outgoing_data_carries_the_ack_unless_sacks_are_due() {
    let mut s = stream();
    let now = Instant::now();
    s.handle_datagram(now, &data(0, b"a"));
    s.write(b"reply");
    let out = drain(&mut s, now);
    assert_eq!(out.len(), 1, "the reply carries the ack");
    let p = Packet::decode(&out[0]).unwrap();
    assert_eq!((p.header.flags, p.header.ack), (DATA, 1));

    // A gap: seq 2 arrives without 1. The reply cannot carry SACK blocks, so a pure ACK
    // with them follows it.
    // A millisecond later, so the pacer has room for the next packet too.
    let now = now + Duration::from_millis(1);
    s.handle_datagram(now, &data(2, b"c"));
    s.write(b"more");
    let out: Vec<_> = drain(&mut s, now);
    let kinds: Vec<u8> = out
        .iter()
        .map(|b| Packet::decode(b).unwrap().header.flags)
        .collect();
    assert_eq!(kinds, [DATA, SACK]);
    let sack = Packet::decode(&out[1]).unwrap();
    let blocks: Vec<_> = sack.sacks().map(|b| (b.start, b.end)).collect();
    assert_eq!(blocks, [(2, 3)]);
}

#[test]
fn retransmission_resends_the_same_payload_with_a_fresh_ack() {
    let mut s = stream();
    let mut now = Instant::now();
    let bytes: Vec<u8> = (0..2 * DEFAULT_MAX_PAYLOAD + 5).map(|i| i as u8).collect();
    s.write(&bytes);
    let first = drain(&mut s, now);
    assert_eq!(first.len(), 3);
    // Meanwhile the peer's data moves our ack to 1.
    s.handle_datagram(now, &data(0, b"z"));
    let _ = drain(&mut s, now);
    // No ACK ever comes back: the timers resend the first packet.
    let mut resent = Vec::new();
    for _ in 0..100 {
        now = s
            .poll_timeout()
            .expect("a timer while data is unacknowledged");
        s.handle_timeout(now);
        resent = drain(&mut s, now);
        if !resent.is_empty() {
            break;
        }
    }
    assert!(!resent.is_empty(), "a timer resends");
    let again = Packet::decode(&resent[0]).unwrap();
    let orig = Packet::decode(&first[again.header.seq as usize]).unwrap();
    assert_eq!(again.payload, orig.payload);
    assert_eq!(
        again.header.ack, 1,
        "the retransmission acks what arrived since"
    );
}

/// A reader that frees half of a nearly full receive buffer tells the sender at once, with
/// no packet from the sender to answer: libudx does not probe a window that is small but not
/// zero, so without this update the two sides wait for each other forever.
#[test]
fn reading_reopens_a_small_window_with_a_pure_ack() {
    let config = Config {
        recv_buffer: 64 * 1024,
        ..Config::default()
    };
    let mut s = Stream::new(1, config);
    s.connect(2, addr());
    let now = Instant::now();
    let chunk = vec![7u8; DEFAULT_MAX_PAYLOAD];
    let mut seq = 0;
    // Fill until the advertised window is under half the buffer but above one packet.
    while s.recv_buffered() < 40 * 1024 {
        s.handle_datagram(now, &data(seq, &chunk));
        seq += 1;
    }
    let acks = drain(&mut s, now);
    let last = Packet::decode(acks.last().unwrap()).unwrap();
    assert!((last.header.recv_window as usize) < 32 * 1024);
    assert!((last.header.recv_window as usize) > DEFAULT_MAX_PAYLOAD);
    let mut buf = vec![0u8; 32 * 1024];
    assert_eq!(s.read(&mut buf), buf.len());
    let update = drain(&mut s, now);
    assert_eq!(
        update.len(),
        1,
        "the window update goes out without new input"
    );
    let p = Packet::decode(&update[0]).unwrap();
    assert!(p.header.recv_window as usize >= 32 * 1024);
}
