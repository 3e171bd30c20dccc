//! hyperswarm-rs: the Hyperswarm peer-to-peer stack, wire-compatible with the JS packages.
//!
//! Layers, bottom up: [`encoding`] (compact-encoding), [`crypto`] (hashes and keys),
//! [`rpc`] (dht-rpc: the UDP request/response and Kademlia layer every HyperDHT node runs),
//! [`dht`] (HyperDHT: announce/lookup records and the key/value store), [`udx`] (the
//! reliable UDP stream transport), [`protomux`] (channels over one connection), [`swarm`]
//! (Hyperswarm: topics and connection management).

#![deny(missing_docs)]

pub mod crypto;
pub mod dht;
pub mod encoding;
pub mod protomux;
pub mod rpc;
pub mod swarm;
pub mod udx;
