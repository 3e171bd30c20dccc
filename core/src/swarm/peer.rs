//! What the swarm remembers about each peer, and how failed attempts lower its priority
//! (JS Hyperswarm's `PeerInfo`).

use std::net::SocketAddr;
use std::time::Duration;

use tokio::time::Instant;

/// A connection that lasted this long was fine: its peer is retried quickly.
pub(crate) const MIN_CONNECTION_TIME: Duration = Duration::from_secs(15);

/// How soon a queued peer is dialled relative to others (higher first).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Priority {
    /// Failed more than three times.
    VeryLow = 0,
    /// Failed three times.
    Low = 1,
    /// Never failed.
    Normal = 2,
    /// Failed twice.
    High = 3,
    /// Failed once: probably a blip, retry first.
    VeryHigh = 4,
}

/// A snapshot of what the swarm knows about a peer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerInfo {
    /// The peer's public key.
    pub public_key: [u8; 32],
    /// Where the peer said it can be reached (from the last lookup that found it).
    pub relay_addresses: Vec<SocketAddr>,
    /// The topics we found the peer under.
    pub topics: Vec<[u8; 32]>,
    /// Its queue priority.
    pub priority: Priority,
    /// Whether its priority is at least [`Priority::Normal`].
    pub prioritized: bool,
    /// Whether it is banned: never dialled or accepted again.
    pub banned: bool,
    /// Whether it was added with [`Swarm::join_peer`](super::Swarm::join_peer).
    pub explicit: bool,
    /// Whether our latest connection to it was dialled by us.
    pub client: bool,
    /// Failed connection attempts since the last good connection.
    pub attempts: u32,
}

#[derive(Debug)]
pub(crate) struct Peer {
    pub public_key: [u8; 32],
    pub relay_addresses: Vec<SocketAddr>,
    pub reconnecting: bool,
    pub proven: bool,
    pub connected_time: Option<Instant>,
    pub disconnected_time: Option<Instant>,
    pub banned: bool,
    pub explicit: bool,
    pub waiting: bool,
    pub queued: bool,
    pub client: bool,
    pub topics: Vec<[u8; 32]>,
    pub attempts: u32,
    pub priority: Priority,
    pub flush_tick: u64,
    /// Holepunching it failed: dial through the blind relay, if one is configured.
    pub force_relaying: bool,
}

impl Peer {
    pub fn new(public_key: [u8; 32], relay_addresses: Vec<SocketAddr>) -> Self {
        Peer {
            public_key,
            relay_addresses,
            reconnecting: true,
            proven: false,
            connected_time: None,
            disconnected_time: None,
            banned: false,
            explicit: false,
            waiting: false,
            queued: false,
            client: false,
            topics: Vec::new(),
            attempts: 0,
            priority: Priority::Normal,
            flush_tick: 0,
            force_relaying: false,
        }
    }

    pub fn prioritized(&self) -> bool {
        self.priority >= Priority::Normal
    }

    /// JS calls a peer "server" unless our latest connection to it was outgoing.
    pub fn is_server(&self) -> bool {
        !self.client
    }

    fn current_priority(&self) -> Priority {
        match self.attempts {
            0 => Priority::Normal,
            1 => Priority::VeryHigh,
            2 => Priority::High,
            3 => Priority::Low,
            _ => Priority::VeryLow,
        }
    }

    pub fn connected(&mut self, now: Instant) {
        self.proven = true;
        self.connected_time = Some(now);
    }

    pub fn disconnected(&mut self, now: Instant) {
        self.disconnected_time = Some(now);
        if let Some(t) = self.connected_time.take() {
            if now.duration_since(t) >= MIN_CONNECTION_TIME {
                self.attempts = 0;
            }
        }
        self.attempts += 1;
    }

    pub fn reset(&mut self) {
        self.client = false;
        self.proven = false;
        self.attempts = 0;
    }

    /// Recomputes the priority; `false` means the peer must not be queued now.
    pub fn update_priority(&mut self) -> bool {
        if self.explicit && self.attempts > 3 {
            // Explicit peers are never dropped, only moved to the back.
            self.attempts = 3;
        }
        if self.banned || self.queued || self.attempts > 3 {
            return false;
        }
        self.priority = self.current_priority();
        true
    }

    pub fn add_topic(&mut self, topic: [u8; 32]) {
        if !self.topics.contains(&topic) {
            self.topics.push(topic);
        }
    }

    pub fn should_gc(&self) -> bool {
        !(self.banned || self.queued || self.explicit || self.waiting)
    }

    pub fn info(&self) -> PeerInfo {
        PeerInfo {
            public_key: self.public_key,
            relay_addresses: self.relay_addresses.clone(),
            topics: self.topics.clone(),
            priority: self.priority,
            prioritized: self.prioritized(),
            banned: self.banned,
            explicit: self.explicit,
            client: self.client,
            attempts: self.attempts,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn priority_follows_failed_attempts() {
        let mut p = Peer::new([1; 32], Vec::new());
        let now = Instant::now();
        let mut seen = Vec::new();
        for _ in 0..5 {
            assert_eq!(p.update_priority(), p.attempts <= 3);
            seen.push((p.attempts, p.priority));
            p.disconnected(now);
        }
        assert_eq!(
            seen,
            vec![
                (0, Priority::Normal),
                (1, Priority::VeryHigh),
                (2, Priority::High),
                (3, Priority::Low),
                (4, Priority::Low)
            ]
        );
    }

    #[test]
    fn long_connection_resets_attempts_to_one() {
        let mut p = Peer::new([1; 32], Vec::new());
        let t0 = Instant::now();
        p.attempts = 3;
        p.connected(t0);
        p.disconnected(t0 + MIN_CONNECTION_TIME);
        assert_eq!(p.attempts, 1);
        p.attempts = 3;
        p.connected(t0);
        p.disconnected(t0 + MIN_CONNECTION_TIME - Duration::from_millis(1));
        assert_eq!(p.attempts, 4);
    }

    #[test]
    fn explicit_peers_fall_back_to_low_instead_of_dropping() {
        let mut p = Peer::new([1; 32], Vec::new());
        p.attempts = 7;
        assert!(!p.update_priority());
        p.explicit = true;
        assert!(p.update_priority());
        assert_eq!(p.priority, Priority::Low);
    }
}
