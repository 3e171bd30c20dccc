//! What a punch socket learns about its NAT from the addresses other nodes see it at:
//! hyperdht's classification (consistent, random, unknown) and the addresses to advertise.

use std::net::SocketAddr;

use crate::dht::handshake::firewall;

/// Samples before a verdict is trusted, and the pings sent to collect them.
pub(crate) const MIN_SAMPLES: usize = 4;

/// One observed address and how often it was seen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Sample {
    addr: SocketAddr,
    hits: u32,
}

/// The NAT view of one socket. Sans-IO: feed it (our address as seen, who saw it).
#[derive(Debug, Clone)]
pub(crate) struct Nat {
    /// The node is not firewalled: every socket is reachable as is.
    open: bool,
    /// Per host (port 0), most hits first.
    hosts: Vec<Sample>,
    /// Per host:port, most hits first.
    full: Vec<Sample>,
    seen_from: Vec<SocketAddr>,
    sampled: usize,
    frozen: bool,
    firewall: u64,
    addresses: Option<Vec<SocketAddr>>,
}

/// Moves the sample for `addr` up (or adds it), keeping the list sorted by hits.
fn add_sample(samples: &mut Vec<Sample>, addr: SocketAddr) {
    if let Some(i) = samples.iter().position(|s| s.addr == addr) {
        samples[i].hits += 1;
        let mut i = i;
        while i > 0 && samples[i - 1].hits < samples[i].hits {
            samples.swap(i - 1, i);
            i -= 1;
        }
    } else {
        samples.push(Sample { addr, hits: 1 });
    }
}

impl Nat {
    /// A fresh view; `open` when the node itself is not firewalled.
    pub(crate) fn new(open: bool) -> Self {
        Nat {
            open,
            hosts: Vec::new(),
            full: Vec::new(),
            seen_from: Vec::new(),
            sampled: 0,
            frozen: false,
            firewall: if open {
                firewall::OPEN
            } else {
                firewall::UNKNOWN
            },
            addresses: None,
        }
    }

    /// Records that `from` saw us at `seen`. Each sampler counts once.
    pub(crate) fn add(&mut self, seen: SocketAddr, from: SocketAddr) {
        if self.seen_from.contains(&from) || self.seen_from.len() >= 64 {
            return;
        }
        self.seen_from.push(from);
        add_sample(&mut self.hosts, SocketAddr::new(seen.ip(), 0));
        add_sample(&mut self.full, seen);
        self.sampled += 1;
        if (self.sampled >= 3 || self.open) && !self.frozen {
            self.update();
        }
    }

    /// Samples taken so far.
    pub(crate) fn sampled(&self) -> usize {
        self.sampled
    }

    /// Whether the analysis has reached what hyperdht waits for.
    pub(crate) fn is_settled(&self) -> bool {
        self.firewall == firewall::CONSISTENT
            || self.firewall == firewall::OPEN
            || self.sampled >= MIN_SAMPLES
    }

    /// Stops updating: the verdict has been told to the peer.
    pub(crate) fn freeze(&mut self) {
        self.frozen = true;
    }

    /// The class: one of [`firewall`]'s constants.
    pub(crate) fn firewall(&self) -> u64 {
        self.firewall
    }

    /// What to advertise: for RANDOM the host only (port 0), for CONSISTENT the host:ports
    /// seen twice or more (at least the top two).
    pub(crate) fn addresses(&self) -> Option<Vec<SocketAddr>> {
        self.addresses.clone()
    }

    /// Whether `addr` is one of the addresses we advertise.
    pub(crate) fn has_address(&self, addr: &SocketAddr) -> bool {
        self.addresses
            .as_ref()
            .is_some_and(|a| a.iter().any(|x| x == addr))
    }

    fn update(&mut self) {
        self.update_firewall();
        self.update_addresses();
    }

    fn update_firewall(&mut self) {
        if self.open {
            self.firewall = firewall::OPEN;
            return;
        }
        if self.sampled < 3 {
            return;
        }
        let max = self.full[0].hits;
        self.firewall = if max >= 3 {
            firewall::CONSISTENT
        } else if max == 1 || (self.hosts.len() == 1 && self.sampled > 3) {
            firewall::RANDOM
        } else if self.hosts.len() > 1 && self.full.get(1).is_some_and(|s| s.hits > 1) {
            firewall::CONSISTENT
        } else if self.sampled > 4 {
            firewall::RANDOM
        } else {
            self.firewall
        };
    }

    fn update_addresses(&mut self) {
        self.addresses = match self.firewall {
            firewall::RANDOM => Some(vec![self.hosts[0].addr]),
            firewall::CONSISTENT => {
                let mut out = Vec::new();
                for s in &self.full {
                    if s.hits >= 2 || out.len() < 2 {
                        out.push(s.addr);
                    }
                }
                Some(out)
            }
            _ => self.addresses.take(),
        };
    }
}

/// OPEN punches like CONSISTENT.
pub(crate) fn coerce(fw: u64) -> u64 {
    if fw == firewall::OPEN {
        firewall::CONSISTENT
    } else {
        fw
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn a(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    #[test]
    fn three_equal_mappings_are_consistent() {
        let mut n = Nat::new(false);
        for i in 1..=3 {
            n.add(a("198.18.1.1:4000"), a(&format!("198.18.0.{i}:49737")));
        }
        assert_eq!(n.firewall(), firewall::CONSISTENT);
        assert_eq!(n.addresses(), Some(vec![a("198.18.1.1:4000")]));
        assert!(n.is_settled());
    }

    #[test]
    fn different_ports_are_random_and_advertise_the_host() {
        let mut n = Nat::new(false);
        for i in 1..=4 {
            n.add(
                a(&format!("198.18.1.1:{}", 4000 + i)),
                a(&format!("198.18.0.{i}:1")),
            );
        }
        assert_eq!(n.firewall(), firewall::RANDOM);
        assert_eq!(n.addresses(), Some(vec![a("198.18.1.1:0")]));
    }

    #[test]
    fn a_sampler_counts_once_and_frozen_views_do_not_change() {
        let mut n = Nat::new(false);
        for _ in 0..5 {
            n.add(a("198.18.1.1:4000"), a("198.18.0.1:1"));
        }
        assert_eq!(n.firewall(), firewall::UNKNOWN);
        n.add(a("198.18.1.1:4000"), a("198.18.0.2:1"));
        n.freeze();
        n.add(a("198.18.1.1:4000"), a("198.18.0.3:1"));
        assert_eq!(n.firewall(), firewall::UNKNOWN);
    }
}
