//! Address classes hyperdht reasons with (the `bogon` package's private and reserved
//! ranges) and the matching of local addresses across a LAN.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

/// Private-use, carrier-grade NAT, loopback and link-local IPv4 ranges.
pub fn is_private(ip: &IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            let o = v4.octets();
            o[0] == 10
                || (o[0] == 100 && (64..=127).contains(&o[1]))
                || o[0] == 127
                || (o[0] == 169 && o[1] == 254)
                || (o[0] == 172 && (16..=31).contains(&o[1]))
                || (o[0] == 192 && o[1] == 168)
        }
        IpAddr::V6(_) => false,
    }
}

/// Ranges that are never a peer's address: "this" network, documentation, benchmarking,
/// multicast and future use (and IPv6 unspecified/loopback).
pub fn is_reserved(ip: &IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            let o = v4.octets();
            o[0] == 0
                || (o[0] == 192 && o[1] == 0 && (o[2] == 0 || o[2] == 2))
                || (o[0] == 198 && (18..=19).contains(&o[1]))
                || (o[0] == 198 && o[1] == 51 && o[2] == 100)
                || (o[0] == 203 && o[1] == 0 && o[2] == 113)
                || o[0] >= 224
        }
        IpAddr::V6(v6) => v6.is_unspecified() || v6.is_loopback(),
    }
}

/// Private or reserved: not reachable across the internet.
pub fn is_bogon(ip: &IpAddr) -> bool {
    is_private(ip) || is_reserved(ip)
}

/// The addresses we can be reached at on our LAN with the DHT server socket bound to
/// `bound`: just that when it is loopback, else every non-loopback IPv4 interface.
pub fn local_addresses(bound: SocketAddr) -> Vec<SocketAddr> {
    let port = bound.port();
    if bound.ip() == IpAddr::V4(Ipv4Addr::LOCALHOST) {
        return vec![bound];
    }
    if !bound.ip().is_unspecified() {
        return vec![bound];
    }
    let mut out: Vec<SocketAddr> = interfaces()
        .into_iter()
        .filter(|ip| !ip.is_loopback())
        .map(|ip| SocketAddr::new(IpAddr::V4(ip), port))
        .collect();
    if out.is_empty() {
        out.push(SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), port));
    }
    out
}

/// IPv4 addresses of the up interfaces.
fn interfaces() -> Vec<Ipv4Addr> {
    let mut out = Vec::new();
    let mut head: *mut libc::ifaddrs = std::ptr::null_mut();
    // SAFETY: getifaddrs fills `head` with a list we free below; we only read entries whose
    // address family says they hold a sockaddr_in.
    unsafe {
        if libc::getifaddrs(&mut head) != 0 {
            return out;
        }
        let mut cur = head;
        while !cur.is_null() {
            let ifa = &*cur;
            let up = ifa.ifa_flags & libc::IFF_UP as u32 != 0;
            if up && !ifa.ifa_addr.is_null() && (*ifa.ifa_addr).sa_family as i32 == libc::AF_INET {
                let sin = &*(ifa.ifa_addr as *const libc::sockaddr_in);
                out.push(Ipv4Addr::from(u32::from_be(sin.sin_addr.s_addr)));
            }
            cur = ifa.ifa_next;
        }
        libc::freeifaddrs(head);
    }
    out
}

/// The remote LAN address sharing the most leading octets with one of ours (at least the
/// first), as hyperdht's holepuncher picks it.
pub fn match_address(ours: &[SocketAddr], theirs: &[SocketAddr]) -> Option<SocketAddr> {
    let mut best: Option<(usize, SocketAddr)> = None;
    for a in ours {
        let IpAddr::V4(a4) = a.ip() else { continue };
        for b in theirs {
            let IpAddr::V4(b4) = b.ip() else { continue };
            let shared = a4
                .octets()
                .iter()
                .zip(b4.octets())
                .take(3)
                .take_while(|(x, y)| **x == *y)
                .count();
            if shared > 0 && best.is_none_or(|(n, _)| shared > n) {
                best = Some((shared, *b));
            }
        }
    }
    best.map(|(_, b)| b)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn a(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    #[test]
    fn classes() {
        for p in [
            "10.1.2.3",
            "127.0.0.1",
            "192.168.1.1",
            "172.20.0.1",
            "100.64.0.1",
        ] {
            assert!(is_private(&p.parse().unwrap()), "{p}");
        }
        for r in ["0.1.2.3", "203.0.113.7", "224.0.0.1", "255.255.255.255"] {
            assert!(is_reserved(&r.parse().unwrap()), "{r}");
            assert!(!is_private(&r.parse().unwrap()), "{r}");
        }
        assert!(!is_bogon(&"8.8.8.8".parse().unwrap()));
    }

    #[test]
    fn best_match_shares_most_octets() {
        let ours = [a("192.168.122.238:1")];
        let theirs = [a("10.0.0.2:5"), a("192.168.0.23:5"), a("192.168.122.1:5")];
        assert_eq!(match_address(&ours, &theirs), Some(a("192.168.122.1:5")));
        assert_eq!(match_address(&ours, &[a("10.0.0.2:5")]), None);
    }
}
