//! HyperDHT: dht-rpc plus peer discovery records and a small key/value store.
//!
//! [`HyperDht`] is a dht-rpc [`Node`](crate::rpc::Node) whose request handler is the
//! [`Storage`] of records and values, with the client operations on top: announce, lookup,
//! unannounce, find a peer, and mutable / immutable put and get.

mod addr;
mod cache;
mod client;
mod connect;
pub mod connect_messages;
mod connection;
mod discovery;
pub mod handshake;
mod holepunch;
pub mod keys;
pub mod namespaces;
pub mod records;
mod relay;
mod router;
mod server;
mod storage;
mod testnet;

pub use addr::{is_bogon, is_private, is_reserved};
pub use cache::{GenCache, RecordCache};
pub use client::{
    DhtError, HyperDht, ImmutablePut, LookupResult, LookupStream, MutableGet, MutablePutResult,
    MAX_VALUE_LEN,
};
pub use connect::{ConnectOptions, Dialled, PASSIVE_CONNECT_TIMEOUT};
pub use connection::{Connection, KEEPALIVE};
pub use keys::{hash, peer_target, verify, KeyPair};
pub use records::{Announce, LookupReply, MutablePut, MutableValue, PeerRecord, PluginRequest};
pub use relay::{BlindRelay, PAIRING_TIMEOUT};
pub use server::{FirewallFn, ListenOptions, Server, RELAYS};
pub use storage::{Forward, Storage, Stores};
pub use testnet::Testnet;

/// hyperdht's command numbers (user commands: the dht-rpc internal flag is clear).
pub mod commands {
    /// Noise handshake relaying.
    pub const PEER_HANDSHAKE: u64 = 0;
    /// Holepunch coordination.
    pub const PEER_HOLEPUNCH: u64 = 1;
    /// A server's own record, from the nodes relaying for it.
    pub const FIND_PEER: u64 = 2;
    /// Peers under a topic.
    pub const LOOKUP: u64 = 3;
    /// Store a peer record under a topic (token required).
    pub const ANNOUNCE: u64 = 4;
    /// Remove a peer record (token required).
    pub const UNANNOUNCE: u64 = 5;
    /// Store a signed value (token required).
    pub const MUTABLE_PUT: u64 = 6;
    /// Read a signed value.
    pub const MUTABLE_GET: u64 = 7;
    /// Store a hash-addressed value (token required).
    pub const IMMUTABLE_PUT: u64 = 8;
    /// Read a hash-addressed value.
    pub const IMMUTABLE_GET: u64 = 9;
    /// A registered plugin's command.
    pub const PLUGIN: u64 = 10;
}

/// hyperdht's error codes in responses (besides dht-rpc's own).
pub mod errors {
    /// A mutable put reused a seq with a different value.
    pub const SEQ_REUSED: u64 = 16;
    /// A mutable put's seq is lower than the stored one.
    pub const SEQ_TOO_LOW: u64 = 17;
}
