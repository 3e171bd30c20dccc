//! The native half of the `hyperswarm-rs` npm package: thin napi classes over
//! `hyperswarm-bindings`. `lib/` (JS) builds the `hyperswarm`-compatible API on top —
//! EventEmitter, `stream.Duplex` sockets, argument checks — so this layer stays small.
//!
//! Errors reach JS as `Error`s whose message starts with the stable code
//! (`ERR_DESTROYED: …`); the JS layer moves the code into `err.code`.

use std::sync::Arc;
use std::time::Duration;

use hyperswarm_bindings as b;
use napi::bindgen_prelude::*;
use napi::threadsafe_function::{ThreadsafeFunction, ThreadsafeFunctionCallMode};
use napi_derive::napi;

/// How long a connection waits for the JS firewall before refusing the peer.
const FIREWALL_TIMEOUT: Duration = Duration::from_secs(10);

fn err(e: b::Error) -> Error {
    let status = if e.code.is_argument_error() {
        Status::InvalidArg
    } else {
        Status::GenericFailure
    };
    Error::new(status, format!("{}: {}", e.code.as_str(), e.message))
}

/// A key pair as JS sees it.
#[napi(object)]
pub struct NativeKeyPair {
    /// 32 bytes.
    pub public_key: Buffer,
    /// 64 bytes.
    pub secret_key: Buffer,
}

/// `Hyperswarm.keyPair(seed)`: from a 32-byte seed, or random.
#[napi]
pub fn key_pair(seed: Option<Buffer>) -> Result<NativeKeyPair> {
    let kp = b::key_pair(seed.as_deref()).map_err(err)?;
    Ok(NativeKeyPair {
        public_key: kp.public_key.to_vec().into(),
        secret_key: kp.secret_key.to_vec().into(),
    })
}

/// Swarm options as the JS layer passes them (already validated there).
#[napi(object)]
pub struct NativeSwarmOptions {
    /// 64-byte secret key.
    pub secret_key: Option<Buffer>,
    /// `host:port` strings.
    pub bootstrap: Option<Vec<String>>,
    /// IP address to bind.
    pub host: Option<String>,
    /// UDP port to prefer.
    pub port: Option<u32>,
    /// JS `maxPeers`.
    pub max_peers: Option<u32>,
    /// JS `maxClientConnections`.
    pub max_client_connections: Option<u32>,
    /// JS `maxServerConnections`.
    pub max_server_connections: Option<u32>,
    /// JS `maxParallel`.
    pub max_parallel: Option<u32>,
}

/// Asks a JS function (remote public key as hex → refuse?) from a runtime thread.
struct JsFirewall {
    tsfn: ThreadsafeFunction<String, bool, String, Status, false, true>,
}

impl b::Firewall for JsFirewall {
    fn refuse(&self, remote_public_key: &[u8; 32]) -> bool {
        let (tx, rx) = std::sync::mpsc::channel();
        let status = self.tsfn.call_with_return_value(
            hex(remote_public_key),
            ThreadsafeFunctionCallMode::Blocking,
            move |r: Result<bool>, _| {
                // A firewall that throws refuses, as failing closed is the safe side.
                let _ = tx.send(r.unwrap_or(true));
                Ok(())
            },
        );
        if status != Status::Ok {
            return true;
        }
        rx.recv_timeout(FIREWALL_TIMEOUT).unwrap_or(true)
    }
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// What the swarm knows about a peer.
#[napi(object)]
pub struct NativePeerInfo {
    /// Hex public key.
    pub public_key: String,
    /// `host:port` strings.
    pub relay_addresses: Vec<String>,
    /// Hex topics.
    pub topics: Vec<String>,
    /// 0 (very low) to 4 (very high).
    pub priority: u32,
    /// Whether its priority is at least normal.
    pub prioritized: bool,
    /// Whether it is banned.
    pub banned: bool,
    /// Whether it was joined with joinPeer.
    pub explicit: bool,
    /// Whether our latest connection to it was dialled by us.
    pub client: bool,
    /// Failed attempts since the last good connection.
    pub attempts: u32,
}

impl From<b::PeerInfo> for NativePeerInfo {
    fn from(p: b::PeerInfo) -> Self {
        NativePeerInfo {
            public_key: hex(&p.public_key),
            relay_addresses: p.relay_addresses.iter().map(|a| a.to_string()).collect(),
            topics: p.topics.iter().map(|t| hex(t)).collect(),
            priority: p.priority as u32,
            prioritized: p.prioritized,
            banned: p.banned,
            explicit: p.explicit,
            client: p.client,
            attempts: p.attempts,
        }
    }
}

/// The swarm's counters.
#[napi(object)]
pub struct NativeStats {
    /// Updates so far.
    pub updates: f64,
    /// Open connections.
    pub connections: u32,
    /// Outgoing connections, pending included.
    pub client_connections: u32,
    /// Incoming connections.
    pub server_connections: u32,
    /// Dials in flight.
    pub connecting: u32,
    /// Peers waiting to be dialled.
    pub queued: u32,
    /// Peers remembered.
    pub peers: u32,
    /// Times a peer was banned.
    pub banned_peers: f64,
    /// Outgoing connections opened / closed / attempted.
    pub client_opened: f64,
    /// Outgoing connections closed.
    pub client_closed: f64,
    /// Dials started.
    pub client_attempted: f64,
    /// Incoming connections opened.
    pub server_opened: f64,
    /// Incoming connections closed.
    pub server_closed: f64,
}

impl From<b::SwarmStats> for NativeStats {
    fn from(s: b::SwarmStats) -> Self {
        NativeStats {
            updates: s.updates as f64,
            connections: s.connections as u32,
            client_connections: s.client_connections as u32,
            server_connections: s.server_connections as u32,
            connecting: s.connecting as u32,
            queued: s.queued as u32,
            peers: s.peers as u32,
            banned_peers: s.banned_peers as f64,
            client_opened: s.client.opened as f64,
            client_closed: s.client.closed as f64,
            client_attempted: s.client.attempted as f64,
            server_opened: s.server.opened as f64,
            server_closed: s.server.closed as f64,
        }
    }
}

/// One swarm event: `kind` is `"connection"` (with `connection` and `peer`) or
/// `"update"` (with `stats`).
#[napi]
pub struct NativeEvent {
    kind: String,
    connection: Option<Arc<b::ConnectionHandle>>,
    peer: Option<b::PeerInfo>,
    stats: Option<b::SwarmStats>,
}

#[napi]
impl NativeEvent {
    /// `"connection"` or `"update"`.
    #[napi(getter)]
    pub fn kind(&self) -> String {
        self.kind.clone()
    }

    /// The new connection, for `"connection"`.
    #[napi]
    pub fn connection(&self) -> Option<NativeConnection> {
        self.connection
            .clone()
            .map(|inner| NativeConnection { inner })
    }

    /// The peer, for `"connection"`.
    #[napi]
    pub fn peer(&self) -> Option<NativePeerInfo> {
        self.peer.clone().map(Into::into)
    }

    /// The counters, for `"update"`.
    #[napi]
    pub fn stats(&self) -> Option<NativeStats> {
        self.stats.map(Into::into)
    }
}

/// A swarm.
#[napi]
pub struct NativeSwarm {
    inner: Arc<b::SwarmHandle>,
}

#[napi]
impl NativeSwarm {
    /// Starts a swarm; `firewall(hexPublicKey) → refuse` is optional.
    #[napi(constructor)]
    pub fn new(
        options: NativeSwarmOptions,
        firewall: Option<ThreadsafeFunction<String, bool, String, Status, false, true>>,
    ) -> Result<Self> {
        let port = match options.port {
            None => 0,
            Some(p) => u16::try_from(p).map_err(|_| {
                err(b::Error::new(
                    b::ErrorCode::InvalidArgument,
                    format!("port {p} is out of range"),
                ))
            })?,
        };
        let settings = b::SwarmSettings {
            secret_key: options.secret_key.map(|k| k.to_vec()),
            seed: None,
            bootstrap: options.bootstrap,
            host: options.host,
            port,
            max_peers: options.max_peers,
            max_client_connections: options.max_client_connections,
            max_server_connections: options.max_server_connections,
            max_parallel: options.max_parallel,
            firewall: firewall.map(|tsfn| Arc::new(JsFirewall { tsfn }) as Arc<dyn b::Firewall>),
        };
        let inner = b::SwarmHandle::new_blocking(settings).map_err(err)?;
        Ok(NativeSwarm { inner })
    }

    /// Our public key.
    #[napi(getter)]
    pub fn public_key(&self) -> Buffer {
        self.inner.key_pair().public_key.to_vec().into()
    }

    /// Our secret key.
    #[napi(getter)]
    pub fn secret_key(&self) -> Buffer {
        self.inner.key_pair().secret_key.to_vec().into()
    }

    /// Joins a topic.
    #[napi]
    pub async fn join(
        &self,
        topic: Buffer,
        server: bool,
        client: bool,
        limit: Option<u32>,
    ) -> Result<NativeDiscovery> {
        let topic = topic.to_vec();
        let inner = self
            .inner
            .join(&topic, server, client, limit)
            .await
            .map_err(err)?;
        Ok(NativeDiscovery { inner })
    }

    /// Leaves a topic.
    #[napi]
    pub async fn leave(&self, topic: Buffer) -> Result<()> {
        let topic = topic.to_vec();
        self.inner.leave(&topic).await.map_err(err)
    }

    /// Waits for every topic's round and every queued peer.
    #[napi]
    pub async fn flush(&self) -> Result<bool> {
        self.inner.flush().await.map_err(err)
    }

    /// Starts answering connections.
    #[napi]
    pub async fn listen(&self) -> Result<()> {
        self.inner.listen().await.map_err(err)
    }

    /// Keeps a connection to a peer.
    #[napi]
    pub fn join_peer(&self, public_key: Buffer) -> Result<()> {
        self.inner.join_peer(&public_key).map_err(err)
    }

    /// Stops insisting on a peer.
    #[napi]
    pub fn leave_peer(&self, public_key: Buffer) -> Result<()> {
        self.inner.leave_peer(&public_key).map_err(err)
    }

    /// Bans or unbans a peer.
    #[napi]
    pub fn ban(&self, public_key: Buffer, banned: bool) -> Result<()> {
        self.inner.ban(&public_key, banned).map_err(err)
    }

    /// What the swarm knows about a peer.
    #[napi]
    pub async fn peer(&self, public_key: Buffer) -> Result<Option<NativePeerInfo>> {
        let key = public_key.to_vec();
        Ok(self.inner.peer(&key).await.map_err(err)?.map(Into::into))
    }

    /// Stops discovery and closes connections.
    #[napi]
    pub async fn suspend(&self) -> Result<()> {
        self.inner.suspend().await.map_err(err)
    }

    /// Undoes suspend.
    #[napi]
    pub async fn resume(&self) -> Result<()> {
        self.inner.resume().await.map_err(err)
    }

    /// The counters now.
    #[napi]
    pub fn stats(&self) -> Result<NativeStats> {
        Ok(self.inner.stats().map_err(err)?.into())
    }

    /// Destroys the swarm.
    #[napi]
    pub async fn destroy(&self) -> Result<()> {
        self.inner.destroy().await.map_err(err)
    }

    /// The next event; `null` once destroyed. The pending promise is what keeps Node's
    /// loop alive while the swarm runs, as JS Hyperswarm's sockets do.
    #[napi]
    pub async fn next_event(&self) -> Option<NativeEvent> {
        Some(match self.inner.next_event().await? {
            b::SwarmEvent::Connection { connection, peer } => NativeEvent {
                kind: "connection".into(),
                connection: Some(connection),
                peer: Some(peer),
                stats: None,
            },
            b::SwarmEvent::Update(s) => NativeEvent {
                kind: "update".into(),
                connection: None,
                peer: None,
                stats: Some(s),
            },
        })
    }
}

/// A joined topic.
#[napi]
pub struct NativeDiscovery {
    inner: Arc<b::DiscoveryHandle>,
}

#[napi]
impl NativeDiscovery {
    /// Waits for the current round.
    #[napi]
    pub async fn flushed(&self) -> Result<bool> {
        self.inner.flushed().await.map_err(err)
    }

    /// Runs a round now, switching modes first when given.
    #[napi]
    pub async fn refresh(&self, server: Option<bool>, client: Option<bool>) -> Result<bool> {
        self.inner.refresh(server, client).await.map_err(err)
    }

    /// Ends this session.
    #[napi]
    pub async fn destroy(&self) -> Result<()> {
        self.inner.destroy().await.map_err(err)
    }
}

/// An encrypted connection.
#[napi]
pub struct NativeConnection {
    inner: Arc<b::ConnectionHandle>,
}

#[napi]
impl NativeConnection {
    /// The peer's public key.
    #[napi(getter)]
    pub fn remote_public_key(&self) -> Buffer {
        self.inner.remote_public_key().to_vec().into()
    }

    /// The Noise handshake hash.
    #[napi(getter)]
    pub fn handshake_hash(&self) -> Buffer {
        self.inner.handshake_hash().to_vec().into()
    }

    /// Whether we dialled.
    #[napi(getter)]
    pub fn is_initiator(&self) -> bool {
        self.inner.is_initiator()
    }

    /// The next chunk, `null` at the end of the stream.
    #[napi]
    pub async fn read(&self, max: u32) -> Result<Option<Buffer>> {
        Ok(self
            .inner
            .read(max as usize)
            .await
            .map_err(err)?
            .map(Buffer::from))
    }

    /// Writes a chunk; resolves once the stream took it.
    #[napi]
    pub async fn write(&self, data: Buffer) -> Result<()> {
        let data = data.to_vec();
        self.inner.write(data).await.map_err(err)
    }

    /// Ends our side.
    #[napi]
    pub async fn end(&self) -> Result<()> {
        self.inner.end().await.map_err(err)
    }

    /// Resolves once the connection closed underneath (or was destroyed).
    #[napi]
    pub async fn closed(&self) {
        self.inner.closed().await
    }

    /// Closes once the stream finished closing cleanly (both sides ended).
    #[napi]
    pub fn release(&self) {
        self.inner.release();
    }

    /// Closes now.
    #[napi]
    pub fn destroy(&self) {
        self.inner.destroy();
    }
}

/// A HyperDHT testnet inside this process.
#[napi]
pub struct NativeTestnet {
    inner: Arc<b::TestnetHandle>,
}

#[napi]
impl NativeTestnet {
    /// Bootstrap addresses, `host:port`.
    #[napi(getter)]
    pub fn bootstrap(&self) -> Vec<String> {
        self.inner.bootstrap().to_vec()
    }

    /// Stops its nodes.
    #[napi]
    pub fn destroy(&self) {
        self.inner.destroy();
    }
}

/// Starts a testnet of `size` nodes on `host` (default 127.0.0.1).
#[napi]
pub async fn create_testnet(size: u32, host: Option<String>) -> Result<NativeTestnet> {
    let inner = b::TestnetHandle::new(size, host).await.map_err(err)?;
    Ok(NativeTestnet { inner })
}
