//! Hostile and edge-case input to a UDX stream: arbitrary bytes and arbitrary header fields
//! must never panic or grow memory past the configured bounds; timeouts and resets close the
//! stream with the right reason.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use hyperswarm::udx::packet::{self, Header, SackBlock, DATA, DESTROY, HEARTBEAT};
use hyperswarm::udx::{CloseReason, Config, Event, Stream, MAX_RTO_TIMEOUTS};
use rand::rngs::StdRng;
use rand::{Rng, RngCore, SeedableRng};

fn addr() -> SocketAddr {
    "10.0.0.9:9".parse().unwrap()
}

fn drain(s: &mut Stream, now: Instant) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    while let Some(t) = s.poll_transmit(now) {
        out.push(t.payload);
        assert!(out.len() < 100_000, "poll_transmit never ends");
    }
    out
}

#[test]
fn arbitrary_bytes_and_headers_never_panic_and_stay_bounded() {
    let config = Config {
        recv_buffer: 64 * 1024,
        send_buffer: 64 * 1024,
        ..Config::default()
    };
    let mut rng = StdRng::seed_from_u64(77);
    let mut now = Instant::now();
    for round in 0..40 {
        let mut s = Stream::new(5, config.clone());
        s.connect(6, addr());
        // Half the rounds never forge DESTROY, so the stream lives through all 5000 steps.
        let ignore_destroy = round % 2 == 0;
        for step in 0..5000 {
            let len = rng.gen_range(0..1600);
            let mut bytes = vec![0u8; len];
            rng.fill_bytes(&mut bytes);
            if rng.gen_bool(0.8) && len >= 20 {
                // A plausible header: right magic, version and id; everything else arbitrary,
                // with seq and ack often close to the live values so the deep paths run.
                let mut flags: u8 = rng.gen();
                if ignore_destroy {
                    flags &= !DESTROY;
                }
                let h = Header {
                    flags,
                    data_offset: if rng.gen_bool(0.8) { 0 } else { rng.gen() },
                    stream_id: 5,
                    recv_window: rng.gen(),
                    seq: if rng.gen_bool(0.7) {
                        rng.gen_range(0..200)
                    } else {
                        rng.gen()
                    },
                    ack: if rng.gen_bool(0.7) {
                        rng.gen_range(0..200)
                    } else {
                        rng.gen()
                    },
                };
                let sacks: Vec<SackBlock> = (0..rng.gen_range(0..4))
                    .map(|_| SackBlock {
                        start: rng.gen_range(0..300),
                        end: rng.gen_range(0..300),
                    })
                    .collect();
                bytes = packet::encode(&h, &sacks, &bytes[20..]);
            }
            s.handle_datagram(now, &bytes);
            if step % 7 == 0 {
                let data = vec![7u8; rng.gen_range(0..5000)];
                s.write(&data);
            }
            if step % 11 == 0 {
                let mut buf = vec![0u8; rng.gen_range(0..9000)];
                s.read(&mut buf);
            }
            if step % 13 == 0 {
                let _ = s.send_message(&[1, 2, 3]);
            }
            now += Duration::from_millis(rng.gen_range(0..50));
            if s.poll_timeout().is_some_and(|t| t <= now) {
                s.handle_timeout(now);
            }
            drain(&mut s, now);
            let mut events = 0;
            while s.poll_event().is_some() {
                events += 1;
            }
            assert!(events <= 1100);
            assert!(s.recv_buffered() <= config.recv_buffer);
            assert!(s.out_of_order_bytes() <= config.recv_buffer);
            assert!(s.send_buffered() <= config.send_buffer);
            assert!(s.outstanding() <= 2 * 8192);
            if s.is_closed().is_some() && step > 2500 {
                break;
            }
        }
    }
}

#[test]
fn black_hole_times_out_on_the_seventh_expiry() {
    let start = Instant::now();
    let mut now = start;
    let mut s = Stream::new(1, Config::default());
    s.connect(2, addr());
    s.write(b"into the void");
    assert_eq!(drain(&mut s, now).len(), 1);
    let mut closed = None;
    while closed.is_none() {
        now = s
            .poll_timeout()
            .expect("a timer while data is unacknowledged");
        s.handle_timeout(now);
        drain(&mut s, now);
        while let Some(e) = s.poll_event() {
            if let Event::Closed(r) = e {
                closed = Some(r);
            }
        }
    }
    assert_eq!(closed, Some(CloseReason::TimedOut));
    assert_eq!(s.stats().rto_expiries, MAX_RTO_TIMEOUTS as u64 + 1);
    // 1 s, then every 2 s: the 7th expiry is 13 s after the send (PROTOCOL.md §5.4).
    assert_eq!(now - start, Duration::from_secs(13));
}

fn peer_packet(flags: u8, seq: u32, ack: u32, payload: &[u8]) -> Vec<u8> {
    let h = Header {
        flags,
        data_offset: 0,
        stream_id: 1,
        recv_window: 4 << 20,
        seq,
        ack,
    };
    packet::encode(&h, &[], payload)
}

#[test]
fn heartbeat_is_answered_and_destroy_resets() {
    let now = Instant::now();
    let mut s = Stream::new(1, Config::default());
    // Unconnected: processed but answered only once connected.
    s.handle_datagram(now, &peer_packet(DATA, 0, 0, b"early"));
    assert!(s.poll_transmit(now).is_none());
    s.connect(2, addr());
    let ack = packet::Packet::decode(&drain(&mut s, now)[0])
        .unwrap()
        .header;
    assert_eq!((ack.flags, ack.ack, ack.stream_id), (0, 1, 2));

    s.handle_datagram(now, &peer_packet(HEARTBEAT, 1, 0, b""));
    let out = drain(&mut s, now);
    assert_eq!(out.len(), 1);
    assert_eq!(out[0][2], 0, "pure ACK");

    s.handle_datagram(now, &peer_packet(DESTROY, 1, 0, b""));
    assert_eq!(s.is_closed(), Some(CloseReason::Reset));
    assert!(drain(&mut s, now).is_empty());
}

#[test]
fn zero_window_is_probed_with_heartbeats() {
    let start = Instant::now();
    let mut s = Stream::new(1, Config::default());
    s.connect(2, addr());
    // The peer shuts its window before we send anything.
    let h = Header {
        flags: 0,
        data_offset: 0,
        stream_id: 1,
        recv_window: 0,
        seq: 1,
        ack: 0,
    };
    s.handle_datagram(start, &packet::encode(&h, &[], &[]));
    s.write(b"waiting");
    let out = drain(&mut s, start);
    assert_eq!(out.len(), 1);
    assert_eq!(out[0][2], HEARTBEAT);
    let t = s.poll_timeout().unwrap();
    assert_eq!(t - start, Duration::from_secs(1));
    s.handle_timeout(t);
    assert_eq!(drain(&mut s, t)[0][2], HEARTBEAT);
    assert_eq!(s.poll_timeout().unwrap() - t, Duration::from_secs(2));
    // The window opens: data flows.
    let h = Header {
        recv_window: 1 << 20,
        seq: 2,
        ..h
    };
    s.handle_datagram(t, &packet::encode(&h, &[], &[]));
    let out = drain(&mut s, t);
    assert_eq!(out.len(), 1);
    assert_eq!(out[0][2], DATA);
}
