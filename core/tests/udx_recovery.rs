//! Loss-recovery behaviour of one UDX stream, driven by hand: the tail-loss probe repairs a
//! lost last packet long before the RTO, and a reordered (not lost) packet that RACK marked
//! lost widens the reordering window instead of being retransmitted forever.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use hyperswarm::udx::{Config, Stream, DEFAULT_MAX_PAYLOAD};

fn pair() -> (Stream, Stream) {
    let a_addr: SocketAddr = "10.0.0.1:1".parse().unwrap();
    let b_addr: SocketAddr = "10.0.0.2:2".parse().unwrap();
    let mut a = Stream::new(1, Config::default());
    let mut b = Stream::new(2, Config::default());
    a.connect(2, b_addr);
    b.connect(1, a_addr);
    (a, b)
}

/// Everything `s` sends from `now` on, following the pacer for up to 20 ms (one burst).
fn drain(s: &mut Stream, now: Instant) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    let mut t = now;
    loop {
        while let Some(tx) = s.poll_transmit(t) {
            out.push(tx.payload);
        }
        match s.poll_timeout() {
            Some(next) if next > t && next <= now + Duration::from_millis(20) => t = next,
            _ => return out,
        }
    }
}

/// Sends every packet from `from` to `to` after `delay`, dropping those `drop` rejects.
fn hop(
    from: &mut Stream,
    to: &mut Stream,
    now: &mut Instant,
    delay: Duration,
    drop: impl Fn(usize) -> bool,
) -> usize {
    let packets = drain(from, *now);
    *now += delay;
    for (i, p) in packets.iter().enumerate() {
        if !drop(i) {
            to.handle_datagram(*now, p);
        }
    }
    packets.len()
}

#[test]
fn tail_loss_probe_repairs_the_last_packet_before_the_rto() {
    let (mut a, mut b) = pair();
    let one_way = Duration::from_millis(10);
    let mut now = Instant::now();
    // Warm up: one round trip for an RTT sample.
    a.write(&[1u8; 100]);
    hop(&mut a, &mut b, &mut now, one_way, |_| false);
    hop(&mut b, &mut a, &mut now, one_way, |_| false);
    assert_eq!(a.srtt(), Some(Duration::from_millis(20)));

    // Three packets; the last is lost, so no ACK will ever reveal a hole.
    a.write(&vec![2u8; 3 * DEFAULT_MAX_PAYLOAD]);
    let sent_at = now;
    assert_eq!(hop(&mut a, &mut b, &mut now, one_way, |i| i == 2), 3);
    hop(&mut b, &mut a, &mut now, one_way, |_| false);
    assert_eq!(a.outstanding(), 1);

    let pto = a.poll_timeout().expect("a probe is scheduled");
    assert!(
        pto < sent_at + Duration::from_millis(100),
        "probe at 2·SRTT, not the RTO"
    );
    now = now.max(pto);
    a.handle_timeout(now);
    assert_eq!(hop(&mut a, &mut b, &mut now, one_way, |_| false), 1);
    hop(&mut b, &mut a, &mut now, one_way, |_| false);
    assert_eq!(a.outstanding(), 0);
    let s = a.stats();
    assert_eq!((s.tlp_probes, s.rto_expiries, s.retransmits), (1, 0, 1));
    let mut buf = vec![0u8; 8192];
    assert_eq!(b.read(&mut buf), 100 + 3 * DEFAULT_MAX_PAYLOAD);
}

#[test]
fn spurious_loss_mark_is_counted_and_not_resent() {
    let (mut a, mut b) = pair();
    let one_way = Duration::from_millis(40);
    let mut now = Instant::now();
    a.write(&[1u8; 100]);
    hop(&mut a, &mut b, &mut now, one_way, |_| false);
    hop(&mut b, &mut a, &mut now, one_way, |_| false);

    // Four packets; the first is held back (reordered), the rest arrive and are SACKed.
    a.write(&vec![2u8; 4 * DEFAULT_MAX_PAYLOAD]);
    let packets = drain(&mut a, now);
    assert_eq!(packets.len(), 4);
    now += one_way;
    for p in &packets[1..] {
        b.handle_datagram(now, p);
    }
    hop(&mut b, &mut a, &mut now, one_way, |_| false);
    // RACK marks the first lost once the reordering window (minRTT/4 = 20 ms) has passed.
    let t = a.poll_timeout().unwrap();
    assert!(t <= now + Duration::from_millis(20));
    a.handle_timeout(t);
    assert_eq!(a.stats().fast_lost, 1);
    // The original arrives and is acknowledged before the retransmission is paced out.
    b.handle_datagram(t, &packets[0]);
    for p in drain(&mut b, t) {
        a.handle_datagram(t, &p);
    }
    let s = a.stats();
    assert_eq!((s.spurious, s.retransmits), (1, 0));
    assert_eq!(a.outstanding(), 0);
}
