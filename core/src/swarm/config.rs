//! Options, errors and counters of a swarm.

use std::net::IpAddr;
use std::sync::Arc;

use super::network::{NetworkError, Refuse};
use super::retry::Backoffs;
use crate::dht::KeyPair;

/// JS Hyperswarm's default connection budget.
pub const MAX_PEERS: usize = 64;
/// Connection attempts in flight at once.
pub const MAX_PARALLEL: usize = 3;

/// The public HyperDHT bootstrap nodes, as `suggested-ip@host:port` (JS's defaults).
pub const PUBLIC_BOOTSTRAP: &[&str] = &[
    "88.99.3.86@node1.hyperdht.org:49737",
    "142.93.90.113@node2.hyperdht.org:49737",
    "138.68.147.8@node3.hyperdht.org:49737",
];

/// The connection policy of a swarm, whatever network it runs on.
#[derive(Clone)]
pub struct SwarmOptions {
    /// Connections (of both kinds) above which no more peers are dialled; explicit peers
    /// shrink it (JS's factor of 1 to 4). Default [`MAX_PEERS`].
    pub max_peers: usize,
    /// Outgoing connections at most. Default unlimited.
    pub max_client_connections: usize,
    /// Incoming connections at most; more are closed on arrival. Default unlimited.
    pub max_server_connections: usize,
    /// Connection attempts in flight at once. Default [`MAX_PARALLEL`].
    pub max_parallel: usize,
    /// Refuses (returns `true` for) remote public keys, incoming and outgoing; a refused
    /// peer is banned.
    pub firewall: Option<Arc<Refuse>>,
    /// A blind relay to dial peers through once holepunching them failed (JS's
    /// `relayThrough`, as a key). JS also relays everything when its NAT is randomized;
    /// our DHT does not tell yet, so that case is not covered.
    pub relay_through: Option<[u8; 32]>,
    /// Retry delays; `None` draws JS's defaults with their jitter.
    pub backoffs: Option<Backoffs>,
    /// Seeds the swarm's randomness (jitter, queue shuffling) for reproducible runs.
    pub rng_seed: Option<u64>,
}

impl Default for SwarmOptions {
    fn default() -> Self {
        SwarmOptions {
            max_peers: MAX_PEERS,
            max_client_connections: usize::MAX,
            max_server_connections: usize::MAX,
            max_parallel: MAX_PARALLEL,
            firewall: None,
            relay_through: None,
            backoffs: None,
            rng_seed: None,
        }
    }
}

impl std::fmt::Debug for SwarmOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SwarmOptions")
            .field("max_peers", &self.max_peers)
            .field("max_client_connections", &self.max_client_connections)
            .field("max_server_connections", &self.max_server_connections)
            .field("max_parallel", &self.max_parallel)
            .field("firewall", &self.firewall.is_some())
            .field("relay_through", &self.relay_through.is_some())
            .field("backoffs", &self.backoffs)
            .finish()
    }
}

/// How to build a swarm on its own HyperDHT node ([`Swarm::new`](super::Swarm::new)).
#[derive(Debug, Clone, Default)]
pub struct SwarmConfig {
    /// Our identity; else derived from `seed`; else random.
    pub key_pair: Option<KeyPair>,
    /// Seed of the identity when no `key_pair` is given.
    pub seed: Option<[u8; 32]>,
    /// Bootstrap nodes (`host:port` or `suggested-ip@host:port`); `None` means
    /// [`PUBLIC_BOOTSTRAP`].
    pub bootstrap: Option<Vec<String>>,
    /// Address to bind the DHT node to; `None` means all interfaces.
    pub host: Option<IpAddr>,
    /// Preferred UDP port of the DHT node; 0 picks one.
    pub port: u16,
    /// The connection policy.
    pub options: SwarmOptions,
}

impl SwarmConfig {
    /// The key pair this config describes.
    pub fn identity(&self) -> KeyPair {
        match (&self.key_pair, self.seed) {
            (Some(kp), _) => kp.clone(),
            (None, Some(seed)) => KeyPair::from_seed(seed),
            (None, None) => KeyPair::generate(),
        }
    }
}

/// How a topic is joined.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct JoinOptions {
    /// Announce ourselves so peers of the topic dial us.
    pub server: bool,
    /// Look the topic up and dial the peers found.
    pub client: bool,
    /// Dial at most this many of the topic's peers per lookup; `None` is unlimited.
    pub limit: Option<usize>,
}

impl Default for JoinOptions {
    fn default() -> Self {
        JoinOptions {
            server: true,
            client: true,
            limit: None,
        }
    }
}

/// Why a swarm operation failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SwarmError {
    /// The swarm was destroyed.
    #[error("swarm has been destroyed")]
    Destroyed,
    /// A topic must be joined as a server, a client, or both.
    #[error("join needs server or client mode")]
    NoMode,
    /// This discovery session was destroyed.
    #[error("discovery session has been destroyed")]
    SessionDestroyed,
    /// The network failed.
    #[error(transparent)]
    Network(#[from] NetworkError),
    /// Binding the DHT node failed.
    #[error("binding the DHT node: {0}")]
    Bind(String),
}

/// Outgoing connection counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ClientStats {
    /// Connections that opened.
    pub opened: u64,
    /// Attempts and connections that ended.
    pub closed: u64,
    /// Dials started.
    pub attempted: u64,
}

/// Incoming connection counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ServerStats {
    /// Connections accepted.
    pub opened: u64,
    /// Accepted connections that ended.
    pub closed: u64,
}

/// A swarm's counters and current state, published on every change.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SwarmStats {
    /// Changes so far (JS's `update` events).
    pub updates: u64,
    /// Outgoing connections.
    pub client: ClientStats,
    /// Incoming connections.
    pub server: ServerStats,
    /// Times a peer was banned.
    pub banned_peers: u64,
    /// Open connections.
    pub connections: usize,
    /// Outgoing connections, pending ones included.
    pub client_connections: usize,
    /// Incoming connections.
    pub server_connections: usize,
    /// Dials in flight.
    pub connecting: usize,
    /// Peers waiting in the dial queue.
    pub queued: usize,
    /// Peers the swarm remembers.
    pub peers: usize,
}
