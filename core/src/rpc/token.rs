//! Round-trip tokens: proof that a requester can receive packets at the IP it claims.

use std::net::IpAddr;

use crate::crypto::hash::{blake2b_256, blake2b_256_keyed};

/// Drain ticks (750 ms each) between secret rotations.
const ROTATE_EVERY: u32 = 10;

/// The two secrets tokens are made from; a token stays valid for one to two rotations.
#[derive(Debug)]
pub struct TokenSecrets {
    previous: [u8; 32],
    current: [u8; 32],
    countdown: u32,
}

impl TokenSecrets {
    /// Fresh random secrets.
    pub fn new(rng: &mut impl rand::RngCore) -> Self {
        let mut s = TokenSecrets {
            previous: [0; 32],
            current: [0; 32],
            countdown: ROTATE_EVERY,
        };
        rng.fill_bytes(&mut s.previous);
        rng.fill_bytes(&mut s.current);
        s
    }

    /// Secrets given explicitly (tests and vectors).
    pub fn from_secrets(previous: [u8; 32], current: [u8; 32]) -> Self {
        TokenSecrets {
            previous,
            current,
            countdown: ROTATE_EVERY,
        }
    }

    /// The token for `ip` under the current secret.
    pub fn token(&self, ip: &IpAddr) -> [u8; 32] {
        make(&self.current, ip)
    }

    /// Whether `token` was made for `ip` by either secret.
    pub fn verify(&self, ip: &IpAddr, token: &[u8; 32]) -> bool {
        make(&self.current, ip) == *token || make(&self.previous, ip) == *token
    }

    /// Called every 750 ms; every tenth call the current secret becomes the previous one
    /// and the new current one is derived from the old previous one.
    pub fn on_drain_tick(&mut self) {
        self.countdown -= 1;
        if self.countdown == 0 {
            self.countdown = ROTATE_EVERY;
            let next = blake2b_256(&[&self.previous]);
            self.previous = self.current;
            self.current = next;
        }
    }
}

fn make(secret: &[u8; 32], ip: &IpAddr) -> [u8; 32] {
    // The key input is the textual IP, port excluded, as dht-rpc hashes it.
    let text = match ip {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => v4.to_string(),
            None => v6.to_string(),
        },
        IpAddr::V4(v4) => v4.to_string(),
    };
    blake2b_256_keyed(secret, text.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_survive_one_rotation_but_not_two() {
        let mut s = TokenSecrets::new(&mut rand::thread_rng());
        let ip: IpAddr = "5.6.7.8".parse().unwrap();
        let t = s.token(&ip);
        assert!(s.verify(&ip, &t));
        assert!(!s.verify(&"5.6.7.9".parse().unwrap(), &t));
        (0..10).for_each(|_| s.on_drain_tick());
        assert!(s.verify(&ip, &t));
        (0..10).for_each(|_| s.on_drain_tick());
        assert!(!s.verify(&ip, &t));
    }
}
