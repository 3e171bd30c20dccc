//! When to retry a peer whose connection failed or closed: four batched timers (short,
//! medium, long, extra long) as in JS Hyperswarm's RetryTimer and BulkTimer.

use std::time::Duration;

use rand::Rng;
use tokio::time::Instant;

use super::peer::Peer;

/// The four retry delays and the jitter each timer adds once, at creation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoffs {
    /// Short, medium, long and extra-long delays.
    pub delays: [Duration; 4],
    /// Up to this much is added to each delay.
    pub jitter: Duration,
}

impl Backoffs {
    /// JS's defaults, each with its own random part: 1 s + ≤0.5 s, 5 s + ≤1 s,
    /// 15 s + ≤2 s, 10 min + ≤2 min; jitter 0.5 s.
    pub fn random(rng: &mut impl Rng) -> Self {
        let jitter = 500.0;
        let mut ms = |base: f64, spread: f64| {
            Duration::from_millis((base + (spread * rng.gen::<f64>()).round()) as u64)
        };
        Backoffs {
            delays: [
                ms(1000.0, jitter),
                ms(5000.0, 2.0 * jitter),
                ms(15000.0, 4.0 * jitter),
                ms(600_000.0, 240.0 * jitter),
            ],
            jitter: Duration::from_millis(jitter as u64),
        }
    }
}

/// Collects peers and releases them in batches on a fixed interval of two thirds of its
/// delay; a peer added between ticks waits one to two intervals.
#[derive(Debug)]
struct BulkTimer {
    interval: Duration,
    next_tick: Option<Instant>,
    next: Vec<[u8; 32]>,
    pending: Vec<[u8; 32]>,
}

impl BulkTimer {
    fn new(delay: Duration) -> Self {
        BulkTimer {
            interval: Duration::from_millis((delay.as_millis() as f64 * 0.66).floor() as u64)
                .max(Duration::from_millis(1)),
            next_tick: None,
            next: Vec::new(),
            pending: Vec::new(),
        }
    }

    fn add(&mut self, now: Instant, key: [u8; 32]) {
        // The interval starts with the first peer and then keeps its phase, like setInterval.
        self.next_tick.get_or_insert(now + self.interval);
        self.pending.push(key);
    }

    fn fire(&mut self, now: Instant, out: &mut Vec<[u8; 32]>) {
        let Some(tick) = self.next_tick.filter(|t| *t <= now) else {
            return;
        };
        let mut next = tick + self.interval;
        if next <= now {
            next = now + self.interval;
        }
        self.next_tick = Some(next);
        out.append(&mut self.next);
        std::mem::swap(&mut self.next, &mut self.pending);
    }
}

#[derive(Debug)]
pub(crate) struct RetryTimer {
    timers: [BulkTimer; 4],
    destroyed: bool,
}

impl RetryTimer {
    pub fn new(backoffs: &Backoffs, rng: &mut impl Rng) -> Self {
        let jitter = backoffs.jitter.as_millis() as f64;
        let timers = backoffs.delays.map(|d| {
            let extra = (jitter * rng.gen::<f64>()).round() as u64;
            BulkTimer::new(d + Duration::from_millis(extra))
        });
        RetryTimer {
            timers,
            destroyed: false,
        }
    }

    fn select(peer: &Peer) -> Option<usize> {
        if peer.banned || !peer.reconnecting {
            return None;
        }
        match (peer.attempts, peer.proven) {
            (0, _) | (1, true) => Some(0),
            (1, false) | (2, true) => Some(1),
            (2, false) | (3, _) => Some(2),
            _ if peer.explicit => Some(3),
            _ => None,
        }
    }

    /// Schedules a retry of `peer`; `false` when it is not to be retried.
    pub fn add(&mut self, now: Instant, peer: &Peer) -> bool {
        if self.destroyed {
            return false;
        }
        match Self::select(peer) {
            Some(i) => {
                self.timers[i].add(now, peer.public_key);
                true
            }
            None => false,
        }
    }

    pub fn deadline(&self) -> Option<Instant> {
        self.timers.iter().filter_map(|t| t.next_tick).min()
    }

    /// The peers whose retry is due.
    pub fn fire(&mut self, now: Instant) -> Vec<[u8; 32]> {
        let mut out = Vec::new();
        for t in &mut self.timers {
            t.fire(now, &mut out);
        }
        out
    }

    pub fn destroy(&mut self) {
        self.destroyed = true;
        for t in &mut self.timers {
            t.next_tick = None;
            t.next.clear();
            t.pending.clear();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::rngs::StdRng;
    use rand::SeedableRng;

    fn fixed() -> Backoffs {
        Backoffs {
            delays: [1000, 5000, 15000, 600_000].map(Duration::from_millis),
            jitter: Duration::ZERO,
        }
    }

    #[test]
    fn default_backoffs_stay_in_js_ranges() {
        for seed in 0..50 {
            let b = Backoffs::random(&mut StdRng::seed_from_u64(seed));
            let ms = b.delays.map(|d| d.as_millis());
            assert!((1000..=1500).contains(&ms[0]), "{ms:?}");
            assert!((5000..=6000).contains(&ms[1]), "{ms:?}");
            assert!((15000..=17000).contains(&ms[2]), "{ms:?}");
            assert!((600_000..=720_000).contains(&ms[3]), "{ms:?}");
        }
    }

    #[test]
    fn timer_choice_depends_on_attempts_and_proof() {
        let mut p = Peer::new([1; 32], Vec::new());
        let mut pick = |attempts, proven, explicit| {
            p.attempts = attempts;
            p.proven = proven;
            p.explicit = explicit;
            RetryTimer::select(&p)
        };
        assert_eq!(pick(0, false, false), Some(0));
        assert_eq!(pick(1, true, false), Some(0));
        assert_eq!(pick(1, false, false), Some(1));
        assert_eq!(pick(2, true, false), Some(1));
        assert_eq!(pick(2, false, false), Some(2));
        assert_eq!(pick(3, true, false), Some(2));
        assert_eq!(pick(4, true, false), None);
        assert_eq!(pick(4, false, true), Some(3));
    }

    #[test]
    fn batches_release_after_one_to_two_intervals() {
        let mut rng = StdRng::seed_from_u64(1);
        let mut t = RetryTimer::new(&fixed(), &mut rng);
        let t0 = Instant::now();
        let mut p = Peer::new([9; 32], Vec::new());
        assert!(t.add(t0, &p));
        // Interval of the short timer: floor(1000 * 0.66) ms.
        assert_eq!(t.deadline(), Some(t0 + Duration::from_millis(660)));
        assert!(t.fire(t0 + Duration::from_millis(660)).is_empty());
        assert_eq!(t.fire(t0 + Duration::from_millis(1320)), vec![[9; 32]]);
        p.banned = true;
        assert!(!t.add(t0, &p));
        t.destroy();
        assert_eq!(t.deadline(), None);
    }
}
