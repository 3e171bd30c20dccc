//! Hyperswarm: join topics, find their peers, keep one connection per peer.
//!
//! [`Swarm`] applies JS Hyperswarm 4's policy — the dial queue and its priorities,
//! connection limits, retry backoffs, the duplicate-connection rule, topic refreshes and
//! flushes — on top of a [`Network`]: what it needs to dial, accept, announce and look up.
//! The policy runs as one task; [`Network`] lets tests drive it over an in-memory network
//! under virtual time.

mod actor;
mod config;
mod connection;
mod dht;
mod discovery;
mod handle;
mod network;
mod peer;
mod queue;
mod retry;

pub use config::{
    ClientStats, JoinOptions, ServerStats, SwarmConfig, SwarmError, SwarmOptions, SwarmStats,
    MAX_PARALLEL, MAX_PEERS, PUBLIC_BOOTSTRAP,
};
pub use connection::Connection;
pub use dht::DhtListener;
pub use discovery::{Discovery, REFRESH_INTERVAL, REFRESH_JITTER};
pub use handle::Swarm;
pub use network::{Closed, Listener, Network, NetworkError, PeerSink, Refuse, SecureStream};
pub use peer::{PeerInfo, Priority};
pub use retry::Backoffs;
