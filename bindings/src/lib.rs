//! A language-neutral facade over hyperswarm-rs for host-language bindings (Node, Python,
//! Swift/Kotlin): reference-counted handles, one process-wide tokio runtime, plain-data
//! arguments (byte slices, strings, integers), and one [`Error`] type with a stable
//! [`ErrorCode`]. No host-language types appear here; each binding wraps this crate.
//!
//! - [`SwarmHandle`]: a swarm on its own DHT node; its events come from
//!   [`SwarmHandle::next_event`] or a [`SwarmListener`], through a bounded queue.
//! - [`DiscoveryHandle`]: a joined topic.
//! - [`ConnectionHandle`]: an encrypted connection (chunked reads and writes).
//! - [`DhtHandle`] / [`ServerHandle`]: HyperDHT without a swarm.
//! - [`TestnetHandle`]: a local DHT for tests.
//!
//! Async methods run on the binding's runtime whatever executor awaits them, so a host
//! may poll them from its own loop. [`destroy_all`] shuts every live swarm down.

mod connection;
mod dht;
mod error;
mod keys;
mod runtime;
mod swarm;

pub use connection::{ConnectionHandle, Stream, LINGER, MAX_READ};
pub use dht::{DhtHandle, ServerHandle, TestnetHandle};
pub use error::{Error, ErrorCode, Result};
pub use hyperswarm::swarm::{PeerInfo, Priority, SwarmStats};
pub use keys::{from_secret_key, key_pair, KeyPairBytes};
pub use runtime::{block_on, run, runtime};
pub use swarm::{
    destroy_all, DiscoveryHandle, Firewall, SwarmEvent, SwarmHandle, SwarmListener, SwarmSettings,
    EVENT_QUEUE,
};
