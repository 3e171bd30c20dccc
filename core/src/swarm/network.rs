//! What the swarm needs from the network underneath: dial a public key, accept dialled
//! connections, and announce / look up / unannounce a topic. [`HyperDht`](crate::dht::HyperDht)
//! is the real implementation; tests use an in-memory one.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite};

use crate::dht::{DhtError, KeyPair, PeerRecord};

/// Decides at handshake time whether to refuse a remote public key: `true` refuses (the
/// same sense as JS Hyperswarm's `firewall` option).
pub type Refuse = dyn Fn(&[u8; 32]) -> bool + Send + Sync;

/// Receives the peer records a lookup or announce walk finds, one storing node's answer at
/// a time.
pub type PeerSink = dyn Fn(Vec<PeerRecord>) + Send + Sync;

/// Resolves when a connection has closed.
pub type Closed = Pin<Box<dyn Future<Output = ()> + Send + 'static>>;

/// An established, authenticated byte stream to a peer.
pub trait SecureStream: AsyncRead + AsyncWrite + Unpin + Send + 'static {
    /// The peer's static public key, as proven by the handshake.
    fn remote_public_key(&self) -> [u8; 32];

    /// Resolves once the connection has closed underneath, whoever closed it; the swarm
    /// then stops counting it even while the application still holds it.
    fn closed(&self) -> Closed;

    /// How often the stream sends keepalives when idle, if it does. It tells the swarm
    /// that an older connection has carried messages both ways, as JS's byte counts do.
    fn keepalive(&self) -> Option<Duration> {
        None
    }
}

/// A running server: hands out connections dialled to our key pair. Dropping it stops
/// answering handshakes.
pub trait Listener: Send + 'static {
    /// The connections it produces.
    type Stream: SecureStream;

    /// The next connection a peer dialled; `None` once the listener is closed.
    fn accept(&mut self) -> impl Future<Output = Option<Self::Stream>> + Send;

    /// The addresses peers reach us through; they go into topic announces.
    fn relay_addresses(&self) -> Vec<SocketAddr>;
}

/// Why a network operation failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NetworkError {
    /// The DHT failed.
    #[error(transparent)]
    Dht(#[from] DhtError),
    /// Nobody answered for that public key.
    #[error("peer unreachable")]
    Unreachable,
    /// The peer refused us.
    #[error("refused by the peer")]
    Refused,
    /// The operation is not available on this network yet.
    #[error("not supported: {0}")]
    Unsupported(&'static str),
}

impl NetworkError {
    /// Whether the failure means no direct or holepunched path can work, so the next try
    /// should go through a blind relay (JS's HOLEPUNCH_ABORTED, CANNOT_HOLEPUNCH and kin).
    pub fn needs_relay(&self) -> bool {
        matches!(
            self,
            NetworkError::Dht(DhtError::CannotHolepunch | DhtError::HolepunchAborted(_))
        )
    }
}

/// The network operations the swarm runs on. Cloned into the tasks the swarm spawns.
pub trait Network: Clone + Send + Sync + 'static {
    /// Connections, both dialled and accepted.
    type Stream: SecureStream;
    /// A server listening on a key pair.
    type Listener: Listener<Stream = Self::Stream>;

    /// Dials `remote_public_key` as `key_pair`, trying `relay_addresses` (from a lookup,
    /// possibly empty) first, and pairing through the blind relay `relay_through` if given.
    fn connect(
        &self,
        key_pair: &KeyPair,
        remote_public_key: [u8; 32],
        relay_addresses: Vec<SocketAddr>,
        relay_through: Option<[u8; 32]>,
    ) -> impl Future<Output = Result<Self::Stream, NetworkError>> + Send;

    /// Whether our own NAT gives every destination a different port (dht-rpc's
    /// `randomized`): holepunches from here are slow or impossible, so JS hyperswarm pairs
    /// through its blind relay at once.
    fn randomized(&self) -> bool {
        false
    }

    /// Starts answering handshakes for `key_pair`; `refuse` is asked about each client.
    fn listen(
        &self,
        key_pair: &KeyPair,
        refuse: Arc<Refuse>,
    ) -> impl Future<Output = Result<Self::Listener, NetworkError>> + Send;

    /// Announces `key_pair` under `topic` reachable through `relay_addresses`, passing the
    /// peers the walk finds to `found`. With `clear`, stale records of ours are removed first.
    fn announce(
        &self,
        topic: [u8; 32],
        key_pair: &KeyPair,
        relay_addresses: Vec<SocketAddr>,
        clear: bool,
        found: Arc<PeerSink>,
    ) -> impl Future<Output = Result<(), NetworkError>> + Send;

    /// Looks `topic` up, passing the peers found to `found`. With `unannounce`, our record
    /// is removed from the nodes holding it on the way.
    fn lookup(
        &self,
        topic: [u8; 32],
        unannounce: Option<&KeyPair>,
        found: Arc<PeerSink>,
    ) -> impl Future<Output = Result<(), NetworkError>> + Send;

    /// Removes `key_pair`'s record under `topic`.
    fn unannounce(
        &self,
        topic: [u8; 32],
        key_pair: &KeyPair,
    ) -> impl Future<Output = Result<(), NetworkError>> + Send;
}
