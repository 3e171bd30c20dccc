//! Two UDX streams over a simulated link under virtual time: no sockets, no sleeps. The link
//! delays, drops, reorders and duplicates datagrams from a seeded RNG; every run must deliver
//! the bytes intact and close cleanly. Goodput is virtual-time goodput, printed, not asserted.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use hyperswarm::udx::{CloseReason, Config, Event, Stream};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

const MIB: usize = 1024 * 1024;
/// Pattern length: prime, so packet boundaries never line up with it.
const PATTERN: usize = 65521;

#[derive(Clone, Copy, Debug)]
struct Link {
    delay: Duration,
    loss: f64,
    reorder: f64,
    reorder_extra: Duration,
    duplicate: f64,
}

impl Link {
    fn clean() -> Self {
        Link {
            delay: Duration::from_millis(10),
            loss: 0.0,
            reorder: 0.0,
            reorder_extra: Duration::ZERO,
            duplicate: 0.0,
        }
    }

    fn lossy(loss: f64) -> Self {
        Link {
            loss,
            reorder: 0.05,
            reorder_extra: Duration::from_millis(8),
            duplicate: 0.01,
            ..Link::clean()
        }
    }
}

/// One side's application: writes `total` pattern bytes then ends; checks what it reads.
struct App {
    stream: Stream,
    addr: SocketAddr,
    to_send: usize,
    sent: usize,
    expect: usize,
    received: usize,
    remote_ended: bool,
    closed: Option<CloseReason>,
}

impl App {
    fn pump(&mut self, pattern: &[u8], buf: &mut [u8]) {
        while self.sent < self.to_send {
            let at = self.sent % PATTERN;
            let n = (PATTERN - at).min(self.to_send - self.sent);
            let w = self.stream.write(&pattern[at..at + n]);
            self.sent += w;
            if w < n {
                break;
            }
            if self.sent == self.to_send {
                self.stream.end();
            }
        }
        if self.to_send == 0 && self.sent == 0 {
            self.stream.end();
            self.sent = usize::MAX; // ended once
            self.to_send = usize::MAX;
        }
        loop {
            let n = self.stream.read(buf);
            if n == 0 {
                break;
            }
            let mut off = 0;
            while off < n {
                let at = self.received % PATTERN;
                let m = (PATTERN - at).min(n - off);
                assert_eq!(
                    &buf[off..off + m],
                    &pattern[at..at + m],
                    "corrupt at {}",
                    self.received
                );
                off += m;
                self.received += m;
            }
            assert!(self.received <= self.expect, "more bytes than sent");
        }
        while let Some(e) = self.stream.poll_event() {
            match e {
                Event::RemoteEnded => self.remote_ended = true,
                Event::Closed(r) => self.closed = Some(r),
                _ => {}
            }
        }
    }
}

/// A datagram on the wire: (arrival, tie-break counter, destination side, bytes).
type InFlight = (Instant, u64, usize, Vec<u8>);

struct Report {
    elapsed: Duration,
    stats: [hyperswarm::udx::Stats; 2],
}

fn run(name: &str, link: Link, a_to_b: usize, b_to_a: usize, seed: u64) -> Report {
    run_with(name, link, a_to_b, b_to_a, seed, Config::default())
}

fn run_with(
    name: &str,
    link: Link,
    a_to_b: usize,
    b_to_a: usize,
    seed: u64,
    config: Config,
) -> Report {
    let mut rng = StdRng::seed_from_u64(seed);
    let pattern: Vec<u8> = (0..PATTERN).map(|_| rng.gen()).collect();
    let start = Instant::now();
    let mut now = start;
    let addrs: [SocketAddr; 2] = [
        "10.0.0.1:1000".parse().unwrap(),
        "10.0.0.2:2000".parse().unwrap(),
    ];
    let mut apps = [0usize, 1].map(|i| {
        let mut stream = Stream::new(10 + i as u32, config.clone());
        stream.connect(10 + (1 - i) as u32, addrs[1 - i]);
        App {
            stream,
            addr: addrs[i],
            to_send: if i == 0 { a_to_b } else { b_to_a },
            sent: 0,
            expect: if i == 0 { b_to_a } else { a_to_b },
            received: 0,
            remote_ended: false,
            closed: None,
        }
    });
    let mut wire: BinaryHeap<Reverse<InFlight>> = BinaryHeap::new();
    let mut counter = 0u64;
    let mut buf = vec![0u8; 256 * 1024];
    let deadline = start + Duration::from_secs(4 * 3600);
    loop {
        for i in 0..2 {
            apps[i].pump(&pattern, &mut buf);
            while let Some(t) = apps[i].stream.poll_transmit(now) {
                assert_eq!(t.dest, apps[1 - i].addr);
                let copies = if rng.gen_bool(link.duplicate) { 2 } else { 1 };
                for _ in 0..copies {
                    if rng.gen_bool(link.loss) {
                        continue;
                    }
                    let mut at = now + link.delay;
                    if rng.gen_bool(link.reorder) {
                        at += link.reorder_extra.mul_f64(rng.gen::<f64>());
                    }
                    counter += 1;
                    wire.push(Reverse((at, counter, 1 - i, t.payload.clone())));
                }
            }
        }
        if apps.iter().all(|a| a.closed.is_some()) {
            break;
        }
        let mut next = wire.peek().map(|Reverse((at, ..))| *at);
        for a in &apps {
            if let Some(t) = a.stream.poll_timeout() {
                next = Some(next.map_or(t, |n| n.min(t)));
            }
        }
        let next = next.unwrap_or_else(|| {
            for a in &apps {
                eprintln!(
                    "{:?} out={} cwnd={} sendbuf={} recvbuf={} ooo={} sent={} recv={} ended={} {:?}",
                    a.stream.is_closed(),
                    a.stream.outstanding(),
                    a.stream.cwnd(),
                    a.stream.send_buffered(),
                    a.stream.recv_buffered(),
                    a.stream.out_of_order_bytes(),
                    a.sent,
                    a.received,
                    a.remote_ended,
                    a.stream.stats()
                );
            }
            panic!("{name}: stalled at {:?}", now - start)
        });
        now = now.max(next);
        assert!(now < deadline, "{name}: no progress in virtual time");
        while wire.peek().is_some_and(|Reverse((at, ..))| *at <= now) {
            let Reverse((_, _, to, bytes)) = wire.pop().unwrap();
            apps[to].stream.handle_datagram(now, &bytes);
        }
        for a in &mut apps {
            if a.stream.poll_timeout().is_some_and(|t| t <= now) {
                a.stream.handle_timeout(now);
            }
        }
    }
    for (i, a) in apps.iter().enumerate() {
        assert_eq!(a.closed, Some(CloseReason::Ended), "{name}: side {i}");
        assert_eq!(a.received, a.expect, "{name}: side {i} bytes");
        assert!(a.remote_ended, "{name}: side {i} saw END");
    }
    let elapsed = now - start;
    let total = (a_to_b + b_to_a) as f64;
    let stats = [apps[0].stream.stats(), apps[1].stream.stats()];
    println!(
        "{name}: {:.1} MiB in {:.2} s virtual = {:.2} MiB/s; retransmits {}+{}, rto {}+{}, fast {}+{}, spurious {}+{}, tlp {}+{}",
        total / MIB as f64,
        elapsed.as_secs_f64(),
        total / MIB as f64 / elapsed.as_secs_f64(),
        stats[0].retransmits,
        stats[1].retransmits,
        stats[0].rto_expiries,
        stats[1].rto_expiries,
        stats[0].fast_lost,
        stats[1].fast_lost,
        stats[0].spurious,
        stats[1].spurious,
        stats[0].tlp_probes,
        stats[1].tlp_probes,
    );
    Report { elapsed, stats }
}

#[test]
fn one_way_100mib_clean() {
    let r = run("100MiB 0% loss", Link::clean(), 100 * MIB, 0, 1);
    assert_eq!(r.stats[0].retransmits, 0);
    assert!(r.elapsed > Duration::ZERO);
}

#[test]
fn one_way_100mib_1pct() {
    run(
        "100MiB 1% loss+reorder+dup",
        Link::lossy(0.01),
        100 * MIB,
        0,
        2,
    );
}

#[test]
fn one_way_100mib_10pct() {
    run(
        "100MiB 10% loss+reorder+dup",
        Link::lossy(0.10),
        100 * MIB,
        0,
        3,
    );
}

#[test]
fn both_ways_at_once() {
    run("2x8MiB both ways 0%", Link::clean(), 8 * MIB, 8 * MIB, 4);
    run(
        "2x8MiB both ways 1%",
        Link::lossy(0.01),
        8 * MIB,
        8 * MIB,
        5,
    );
    run(
        "2x4MiB both ways 10%",
        Link::lossy(0.10),
        4 * MIB,
        4 * MIB,
        6,
    );
}

#[test]
fn sequence_numbers_wrap() {
    // Both directions start a few packets below 2^32 and cross zero mid-transfer.
    run_with(
        "wrap 4MiB both ways 1%",
        Link::lossy(0.01),
        4 * MIB,
        4 * MIB,
        7,
        Config {
            initial_seq: u32::MAX - 100,
            initial_remote_seq: u32::MAX - 100,
            ..Config::default()
        },
    );
}
