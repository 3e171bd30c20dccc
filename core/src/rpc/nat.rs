//! Public address voting (nat-sampler): the `to` fields other nodes report decide what our
//! public host and port are, and whether the NAT keeps ports consistent.

use std::net::IpAddr;

#[derive(Debug, Clone)]
struct Sample {
    host: IpAddr,
    port: u16,
    hits: u32,
}

/// Votes over the most recent 16 reports of our public address.
#[derive(Debug, Clone, Default)]
pub struct NatSampler {
    host: Option<IpAddr>,
    port: u16,
    size: usize,
    threshold: usize,
    top: usize,
    // Two entries per report: (host, port) at even slots, (host, 0) at odd slots. Entries are
    // indexes into `pool` so repeated reports share one counter, as in the JS sampler.
    ring: Vec<usize>,
    pool: Vec<Sample>,
    best_pair: Option<usize>,
    best_host: Option<usize>,
}

const RING: usize = 32;

impl NatSampler {
    /// An empty sampler.
    pub fn new() -> Self {
        Self::default()
    }

    /// The agreed public host, if any.
    pub fn host(&self) -> Option<IpAddr> {
        self.host
    }

    /// The agreed public port; 0 when unknown or when the NAT randomises ports.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Number of reports counted (at most 16).
    pub fn size(&self) -> usize {
        self.size
    }

    /// Records one report and returns how many recent reports agree on this exact address.
    pub fn add(&mut self, host: IpAddr, port: u16) -> u32 {
        let mut a = self.bump(host, port, 2);
        let mut b = self.bump(host, 0, 1);

        if self.ring.len() < RING {
            self.size += 1;
            self.threshold = self.size
                - match self.size {
                    0..=3 => 0,
                    4..=7 => 1,
                    8..=11 => 2,
                    _ => 3,
                };
            self.ring.push(a);
            self.ring.push(b);
            self.top += 2;
        } else {
            if self.top == RING {
                self.top = 0;
            }
            let slot = self.top;
            let old_a = std::mem::replace(&mut self.ring[slot], a);
            self.pool[old_a].hits -= 1;
            let old_b = std::mem::replace(&mut self.ring[slot + 1], b);
            self.pool[old_b].hits -= 1;
            self.top += 2;
            self.compact();
            // Compaction renumbers the pool; the ring holds the new indexes.
            (a, b) = (self.ring[slot], self.ring[slot + 1]);
        }

        let (a_hits, b_hits) = (self.pool[a].hits, self.pool[b].hits);
        if self.best_pair.is_none_or(|i| self.pool[i].hits < a_hits) {
            self.best_pair = Some(a);
        }
        if self.best_host.is_none_or(|i| self.pool[i].hits < b_hits) {
            self.best_host = Some(b);
        }
        let pair = &self.pool[self.best_pair.unwrap_or(a)];
        let host_only = &self.pool[self.best_host.unwrap_or(b)];
        if pair.hits as usize >= self.threshold {
            self.host = Some(pair.host);
            self.port = pair.port;
        } else if host_only.hits as usize >= self.threshold {
            self.host = Some(host_only.host);
            self.port = 0;
        } else {
            self.host = None;
            self.port = 0;
        }
        a_hits
    }

    /// Finds a matching entry among the last four of the same kind, or starts a new one.
    fn bump(&mut self, host: IpAddr, port: u16, back: usize) -> usize {
        for i in 0..4 {
            let j = (self.top.wrapping_sub(back + 2 * i)) & (RING - 1);
            if j >= self.ring.len() {
                break;
            }
            let s = self.ring[j];
            if self.pool[s].port == port && self.pool[s].host == host {
                self.pool[s].hits += 1;
                return s;
            }
        }
        self.pool.push(Sample {
            host,
            port,
            hits: 1,
        });
        self.pool.len() - 1
    }

    /// Drops pool entries nothing refers to any more, so the pool stays bounded.
    fn compact(&mut self) {
        if self.pool.len() < 4 * RING {
            return;
        }
        let mut keep: Vec<usize> = self.ring.clone();
        keep.extend(self.best_pair);
        keep.extend(self.best_host);
        keep.sort_unstable();
        keep.dedup();
        let mut remap = vec![usize::MAX; self.pool.len()];
        let mut pool = Vec::with_capacity(keep.len());
        for (new, old) in keep.into_iter().enumerate() {
            remap[old] = new;
            pool.push(self.pool[old].clone());
        }
        self.pool = pool;
        for r in &mut self.ring {
            *r = remap[*r];
        }
        self.best_pair = self.best_pair.map(|i| remap[i]);
        self.best_host = self.best_host.map(|i| remap[i]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn consistent_reports_give_host_and_port() {
        let mut s = NatSampler::new();
        s.add(ip("1.2.3.4"), 1000);
        assert_eq!((s.host(), s.port()), (Some(ip("1.2.3.4")), 1000));
        s.add(ip("1.2.3.4"), 1000);
        s.add(ip("1.2.3.4"), 1000);
        assert_eq!(s.port(), 1000);
    }

    #[test]
    fn changing_ports_mean_a_randomising_nat() {
        let mut s = NatSampler::new();
        for p in 1000..1010 {
            s.add(ip("1.2.3.4"), p);
        }
        assert_eq!((s.host(), s.port()), (Some(ip("1.2.3.4")), 0));
    }

    #[test]
    fn disagreement_means_unknown_and_memory_stays_bounded() {
        let mut s = NatSampler::new();
        for i in 0..10_000u32 {
            s.add(IpAddr::from((i + 1).to_be_bytes()), 1);
        }
        assert_eq!(s.host(), None);
        assert!(s.pool.len() <= 4 * RING);
    }
}
