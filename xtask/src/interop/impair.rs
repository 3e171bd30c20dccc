//! A UDP impairment relay for the loss scenarios: this kernel has no netem, so the two peers
//! talk through two relay ports that drop, duplicate, delay and reorder datagrams. Runs on
//! threads inside the scenario's namespace; deterministic for a given seed.

use std::collections::BinaryHeap;
use std::net::{SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// What happens to datagrams on the way.
#[derive(Clone, Copy, Debug)]
pub struct Impairment {
    /// Percent dropped.
    pub drop_pct: u32,
    /// Percent delayed further, so they arrive after later ones.
    pub reorder_pct: u32,
    /// Percent sent twice.
    pub duplicate_pct: u32,
    /// Delay every datagram gets.
    pub delay: Duration,
}

/// Counters, for the scenario's report.
#[derive(Default, Debug)]
pub struct Counts {
    /// Datagrams received by the relay.
    pub seen: AtomicU64,
    /// Dropped on purpose.
    pub dropped: AtomicU64,
    /// Sent out of order.
    pub reordered: AtomicU64,
    /// Sent twice.
    pub duplicated: AtomicU64,
}

struct Due {
    at: Instant,
    seq: u64,
    out: usize,
    to: SocketAddr,
    bytes: Vec<u8>,
}

impl PartialEq for Due {
    fn eq(&self, o: &Self) -> bool {
        (self.at, self.seq) == (o.at, o.seq)
    }
}
impl Eq for Due {}
impl PartialOrd for Due {
    fn partial_cmp(&self, o: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(o))
    }
}
impl Ord for Due {
    fn cmp(&self, o: &Self) -> std::cmp::Ordering {
        // Earliest first in a max-heap.
        (o.at, o.seq).cmp(&(self.at, self.seq))
    }
}

/// A running relay between `a` and `b`: `a` sends to [`Relay::port_for_a`], `b` to
/// [`Relay::port_for_b`].
pub struct Relay {
    ports: [u16; 2],
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
    /// What the relay did.
    pub counts: Arc<Counts>,
}

type Queue = Arc<(Mutex<BinaryHeap<Due>>, Condvar)>;

impl Relay {
    /// Starts relaying between peers at `a` and `b` (both on loopback).
    pub fn start(
        a: SocketAddr,
        b: SocketAddr,
        imp: Impairment,
        seed: u64,
    ) -> Result<Relay, String> {
        let bind = || UdpSocket::bind("127.0.0.1:0").map_err(|e| format!("relay bind: {e}"));
        let sockets = [Arc::new(bind()?), Arc::new(bind()?)];
        let ports = [
            sockets[0].local_addr().map_err(|e| e.to_string())?.port(),
            sockets[1].local_addr().map_err(|e| e.to_string())?.port(),
        ];
        let stop = Arc::new(AtomicBool::new(false));
        let counts = Arc::new(Counts::default());
        let queue: Queue = Arc::new((Mutex::new(BinaryHeap::new()), Condvar::new()));
        let mut threads = Vec::new();
        // Socket 0 faces `a` and forwards to `b` out of socket 1, and the other way round.
        for (i, peer) in [(0usize, b), (1usize, a)] {
            let sock = sockets[i].clone();
            sock.set_read_timeout(Some(Duration::from_millis(50)))
                .map_err(|e| e.to_string())?;
            let (stop, counts, queue) = (stop.clone(), counts.clone(), queue.clone());
            let mut rng = seed ^ (i as u64 + 1).wrapping_mul(0x9e37_79b9_7f4a_7c15);
            threads.push(std::thread::spawn(move || {
                let mut buf = vec![0u8; 65536];
                let mut seq = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    let Ok((n, _)) = sock.recv_from(&mut buf) else {
                        continue;
                    };
                    counts.seen.fetch_add(1, Ordering::Relaxed);
                    if roll(&mut rng) < imp.drop_pct {
                        counts.dropped.fetch_add(1, Ordering::Relaxed);
                        continue;
                    }
                    let mut at = Instant::now() + imp.delay;
                    if roll(&mut rng) < imp.reorder_pct {
                        counts.reordered.fetch_add(1, Ordering::Relaxed);
                        at += imp.delay / 2 + Duration::from_micros(next(&mut rng) % 10_000);
                    }
                    let copies = if roll(&mut rng) < imp.duplicate_pct {
                        counts.duplicated.fetch_add(1, Ordering::Relaxed);
                        2
                    } else {
                        1
                    };
                    let (lock, cv) = &*queue;
                    let mut q = lock.lock().unwrap_or_else(|p| p.into_inner());
                    for _ in 0..copies {
                        seq += 1;
                        q.push(Due {
                            at,
                            seq: seq * 2 + i as u64,
                            out: 1 - i,
                            to: peer,
                            bytes: buf[..n].to_vec(),
                        });
                    }
                    cv.notify_one();
                }
            }));
        }
        let (stop2, queue2) = (stop.clone(), queue.clone());
        threads.push(std::thread::spawn(move || {
            let (lock, cv) = &*queue2;
            let mut q = lock.lock().unwrap_or_else(|p| p.into_inner());
            while !stop2.load(Ordering::Relaxed) {
                let now = Instant::now();
                match q.peek().map(|d| d.at) {
                    Some(at) if at <= now => {
                        let d = q.pop().expect("peeked");
                        let _ = sockets[d.out].send_to(&d.bytes, d.to);
                    }
                    Some(at) => {
                        q = cv
                            .wait_timeout(q, at - now)
                            .unwrap_or_else(|p| p.into_inner())
                            .0;
                    }
                    None => {
                        q = cv
                            .wait_timeout(q, Duration::from_millis(50))
                            .unwrap_or_else(|p| p.into_inner())
                            .0;
                    }
                }
            }
        }));
        Ok(Relay {
            ports,
            stop,
            threads,
            counts,
        })
    }

    /// The port peer `a` must send to.
    pub fn port_for_a(&self) -> u16 {
        self.ports[0]
    }

    /// The port peer `b` must send to.
    pub fn port_for_b(&self) -> u16 {
        self.ports[1]
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

/// xorshift64*: enough randomness for impairments, and reproducible.
fn next(s: &mut u64) -> u64 {
    *s ^= *s >> 12;
    *s ^= *s << 25;
    *s ^= *s >> 27;
    s.wrapping_mul(0x2545_f491_4f6c_dd1d)
}

fn roll(s: &mut u64) -> u32 {
    (next(s) % 100) as u32
}
