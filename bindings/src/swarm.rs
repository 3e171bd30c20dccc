//! [`SwarmHandle`] and [`DiscoveryHandle`]: a swarm on its own HyperDHT node, with its
//! events (connections, updates) pulled one at a time or pushed to a listener.

use std::net::IpAddr;
use std::sync::{Arc, Mutex as StdMutex, Weak};

use hyperswarm::dht::{HyperDht, KeyPair};
use hyperswarm::swarm::{
    Discovery, JoinOptions, PeerInfo, Refuse, Swarm, SwarmConfig, SwarmOptions, SwarmStats,
};
use tokio::sync::{mpsc, watch, Mutex};

use crate::connection::ConnectionHandle;
use crate::error::{self, Error, ErrorCode, Result};
use crate::keys::{self, KeyPairBytes};
use crate::runtime::{block_on, run, runtime};

/// New connections waiting for the host to take them. When it falls behind, the swarm's
/// accepted connections wait in the swarm instead of piling up here.
pub const EVENT_QUEUE: usize = 16;

/// Decides whether to refuse a remote public key (`true` refuses), as JS Hyperswarm's
/// `firewall` option. Called on a runtime thread; it may block briefly (e.g. to ask a
/// host-language callback).
pub trait Firewall: Send + Sync + 'static {
    /// `true` to refuse `remote_public_key`, incoming or outgoing.
    fn refuse(&self, remote_public_key: &[u8; 32]) -> bool;
}

/// How to start a swarm. Every field is optional; the defaults are JS Hyperswarm's.
#[derive(Default, Clone)]
pub struct SwarmSettings {
    /// The identity's 64-byte secret key (seed, then public key).
    pub secret_key: Option<Vec<u8>>,
    /// 32-byte seed of the identity when no secret key is given.
    pub seed: Option<Vec<u8>>,
    /// Bootstrap nodes as `host:port`; `None` means the public HyperDHT bootstrap nodes.
    pub bootstrap: Option<Vec<String>>,
    /// Address to bind the DHT node to (default all interfaces).
    pub host: Option<String>,
    /// Preferred UDP port (0 picks one).
    pub port: u16,
    /// JS `maxPeers`.
    pub max_peers: Option<u32>,
    /// JS `maxClientConnections`.
    pub max_client_connections: Option<u32>,
    /// JS `maxServerConnections`.
    pub max_server_connections: Option<u32>,
    /// JS `maxParallel`.
    pub max_parallel: Option<u32>,
    /// JS `firewall`.
    pub firewall: Option<Arc<dyn Firewall>>,
}

impl std::fmt::Debug for SwarmSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SwarmSettings")
            .field("bootstrap", &self.bootstrap)
            .field("host", &self.host)
            .field("port", &self.port)
            .field("max_peers", &self.max_peers)
            .field("firewall", &self.firewall.is_some())
            .finish()
    }
}

/// Something the swarm tells its host.
#[derive(Debug)]
pub enum SwarmEvent {
    /// A new connection (JS `'connection'`).
    Connection {
        /// The connection.
        connection: Arc<ConnectionHandle>,
        /// What the swarm knows about the peer.
        peer: PeerInfo,
    },
    /// The counters changed (JS `'update'`). Changes that come faster than the host takes
    /// them are merged into one.
    Update(SwarmStats),
}

/// Receives a swarm's events, one at a time, on a runtime thread. While it runs no
/// further event is delivered, so a slow listener slows the swarm's hand-over of new
/// connections rather than queueing them without bound.
pub trait SwarmListener: Send + Sync + 'static {
    /// One event.
    fn on_event(&self, event: SwarmEvent);
}

struct Events {
    connections: mpsc::Receiver<(Arc<ConnectionHandle>, PeerInfo)>,
    updates: watch::Receiver<SwarmStats>,
}

type Inner = Arc<Swarm<HyperDht>>;

/// A running swarm. Every method may be called from any thread; async ones run on the
/// binding's runtime. After [`destroy`](Self::destroy) they fail with `ERR_DESTROYED`.
pub struct SwarmHandle {
    inner: StdMutex<Option<Inner>>,
    key_pair: KeyPairBytes,
    events: Mutex<Events>,
}

impl std::fmt::Debug for SwarmHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SwarmHandle")
            .field("key_pair", &self.key_pair)
            .field("destroyed", &self.is_destroyed())
            .finish()
    }
}

/// Live swarms, for [`destroy_all`].
static LIVE: StdMutex<Vec<Weak<SwarmHandle>>> = StdMutex::new(Vec::new());

fn settings_to_config(s: SwarmSettings) -> Result<SwarmConfig> {
    let key_pair = match (&s.secret_key, &s.seed) {
        (Some(sk), _) => Some(keys::from_secret_key(sk, None)?),
        (None, Some(seed)) => Some(KeyPair::from_seed(keys::seed_bytes(seed)?)),
        (None, None) => None,
    };
    let host = match &s.host {
        Some(h) => Some(h.parse::<IpAddr>().map_err(|_| {
            Error::new(
                ErrorCode::InvalidArgument,
                format!("host `{h}` is not an IP address"),
            )
        })?),
        None => None,
    };
    let mut options = SwarmOptions::default();
    let limit = |v: Option<u32>, default: usize| v.map_or(default, |v| v as usize);
    options.max_peers = limit(s.max_peers, options.max_peers);
    options.max_client_connections = limit(s.max_client_connections, usize::MAX);
    options.max_server_connections = limit(s.max_server_connections, usize::MAX);
    options.max_parallel = limit(s.max_parallel, options.max_parallel).max(1);
    if let Some(fw) = s.firewall {
        let refuse: Arc<Refuse> = Arc::new(move |key: &[u8; 32]| blocking(|| fw.refuse(key)));
        options.firewall = Some(refuse);
    }
    Ok(SwarmConfig {
        key_pair,
        seed: None,
        bootstrap: s.bootstrap,
        host,
        port: s.port,
        options,
    })
}

/// Runs `f`, which may block, without stalling the runtime thread's other tasks.
fn blocking<R>(f: impl FnOnce() -> R) -> R {
    use tokio::runtime::{Handle, RuntimeFlavor};
    match Handle::try_current() {
        Ok(h) if h.runtime_flavor() == RuntimeFlavor::MultiThread => tokio::task::block_in_place(f),
        _ => f(),
    }
}

impl SwarmHandle {
    /// Starts a swarm (binds its DHT node; bootstrapping goes on in the background).
    pub async fn new(settings: SwarmSettings) -> Result<Arc<SwarmHandle>> {
        let config = settings_to_config(settings)?;
        run(async move {
            let swarm = Arc::new(Swarm::new(config).await?);
            Ok(Self::start(swarm))
        })
        .await
    }

    /// [`SwarmHandle::new`] for hosts whose constructors are synchronous. Must not be
    /// called from a runtime thread.
    pub fn new_blocking(settings: SwarmSettings) -> Result<Arc<SwarmHandle>> {
        let config = settings_to_config(settings)?;
        block_on(async move {
            let swarm = Arc::new(Swarm::new(config).await?);
            Ok(Self::start(swarm))
        })
    }

    fn start(swarm: Inner) -> Arc<SwarmHandle> {
        let (tx, rx) = mpsc::channel(EVENT_QUEUE);
        let updates = swarm.updates();
        let key_pair = KeyPairBytes::from(swarm.key_pair());
        let pump = swarm.clone();
        runtime().spawn(async move {
            // Ends when the swarm is destroyed (accept yields None) or nobody listens.
            while let Some((conn, peer)) = pump.accept().await {
                let (hash, watch) = conn
                    .with_stream(|s| (s.handshake_hash().to_vec(), Some(s.watch())))
                    .unwrap_or_default();
                let gone = watch.map(|w| {
                    Box::pin(async move {
                        w.closed().await;
                    }) as _
                });
                let key = conn.remote_public_key();
                let initiator = conn.is_initiator();
                let handle = Arc::new(ConnectionHandle::new(conn, key, hash, initiator, gone));
                if tx.send((handle, peer)).await.is_err() {
                    break;
                }
            }
        });
        let handle = Arc::new(SwarmHandle {
            inner: StdMutex::new(Some(swarm)),
            key_pair,
            events: Mutex::new(Events {
                connections: rx,
                updates,
            }),
        });
        let mut live = LIVE.lock().unwrap_or_else(|e| e.into_inner());
        live.retain(|w| w.strong_count() > 0);
        live.push(Arc::downgrade(&handle));
        handle
    }

    fn swarm(&self) -> Result<Inner> {
        self.inner
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
            .ok_or_else(Error::destroyed)
    }

    /// Our identity.
    pub fn key_pair(&self) -> &KeyPairBytes {
        &self.key_pair
    }

    /// Whether [`destroy`](Self::destroy) was called.
    pub fn is_destroyed(&self) -> bool {
        self.inner
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .is_none()
    }

    /// Joins a 32-byte topic as server and/or client (JS `swarm.join`).
    pub async fn join(
        &self,
        topic: &[u8],
        server: bool,
        client: bool,
        limit: Option<u32>,
    ) -> Result<Arc<DiscoveryHandle>> {
        let topic = error::topic(topic)?;
        let swarm = self.swarm()?;
        let options = JoinOptions {
            server,
            client,
            limit: limit.map(|l| l as usize),
        };
        let discovery = run(async move { Ok(swarm.join(topic, options).await?) }).await?;
        Ok(Arc::new(DiscoveryHandle {
            inner: discovery,
            mode: StdMutex::new((server, client)),
            destroyed: StdMutex::new(false),
        }))
    }

    /// Leaves a topic (JS `swarm.leave`); connections stay.
    pub async fn leave(&self, topic: &[u8]) -> Result<()> {
        let topic = error::topic(topic)?;
        let swarm = self.swarm()?;
        run(async move { Ok(swarm.leave(topic).await?) }).await
    }

    /// Waits until every topic's first round is done and every queued peer has been
    /// tried (JS `swarm.flush()`); `false` if the swarm was destroyed meanwhile.
    pub async fn flush(&self) -> Result<bool> {
        let swarm = self.swarm()?;
        run(async move { Ok(swarm.flush().await) }).await
    }

    /// Starts answering connections before any server join (JS `swarm.listen()`).
    pub async fn listen(&self) -> Result<()> {
        let swarm = self.swarm()?;
        run(async move { Ok(swarm.listen().await?) }).await
    }

    /// Keeps a connection to a peer whatever the topics (JS `swarm.joinPeer`).
    pub fn join_peer(&self, public_key: &[u8]) -> Result<()> {
        let key = error::public_key(public_key)?;
        Ok(self.swarm()?.join_peer(key)?)
    }

    /// Stops insisting on a peer (JS `swarm.leavePeer`).
    pub fn leave_peer(&self, public_key: &[u8]) -> Result<()> {
        let key = error::public_key(public_key)?;
        Ok(self.swarm()?.leave_peer(key)?)
    }

    /// Bans (or with `false` unbans) a peer: never dialled or accepted again.
    pub fn ban(&self, public_key: &[u8], banned: bool) -> Result<()> {
        let key = error::public_key(public_key)?;
        let swarm = self.swarm()?;
        if banned {
            swarm.ban(key)?;
        } else {
            swarm.unban(key)?;
        }
        Ok(())
    }

    /// What the swarm knows about a peer.
    pub async fn peer(&self, public_key: &[u8]) -> Result<Option<PeerInfo>> {
        let key = error::public_key(public_key)?;
        let swarm = self.swarm()?;
        run(async move { Ok(swarm.peer(key).await) }).await
    }

    /// Stops discovery and closes every connection until [`resume`](Self::resume).
    pub async fn suspend(&self) -> Result<()> {
        let swarm = self.swarm()?;
        run(async move { Ok(swarm.suspend().await?) }).await
    }

    /// Undoes [`suspend`](Self::suspend).
    pub async fn resume(&self) -> Result<()> {
        let swarm = self.swarm()?;
        run(async move { Ok(swarm.resume().await?) }).await
    }

    /// The counters now.
    pub fn stats(&self) -> Result<SwarmStats> {
        Ok(self.swarm()?.stats())
    }

    /// Leaves every topic, closes every connection and the DHT node. Idempotent; later
    /// calls (other than this one) fail with `ERR_DESTROYED`, and
    /// [`next_event`](Self::next_event) yields `None` once the queued events are taken.
    pub async fn destroy(&self) -> Result<()> {
        let taken = self.inner.lock().unwrap_or_else(|e| e.into_inner()).take();
        let Some(swarm) = taken else {
            return Ok(());
        };
        run(async move {
            swarm.destroy().await?;
            Ok(())
        })
        .await
    }

    /// The next event; `None` once the swarm is destroyed and its queue drained.
    pub async fn next_event(self: &Arc<Self>) -> Option<SwarmEvent> {
        let this = self.clone();
        run(async move { Ok(this.next_event_here().await) })
            .await
            .ok()
            .flatten()
    }

    async fn next_event_here(&self) -> Option<SwarmEvent> {
        let mut events = self.events.lock().await;
        let Events {
            connections,
            updates,
        } = &mut *events;
        let mut watching = true;
        loop {
            tokio::select! {
                biased;
                c = connections.recv() => {
                    return c.map(|(connection, peer)| SwarmEvent::Connection { connection, peer });
                }
                r = updates.changed(), if watching => match r {
                    Ok(()) => return Some(SwarmEvent::Update(*updates.borrow_and_update())),
                    Err(_) => watching = false,
                },
            }
        }
    }

    /// Delivers every event to `listener` (instead of [`next_event`](Self::next_event)),
    /// one at a time, until the swarm is destroyed.
    pub fn set_listener(self: &Arc<Self>, listener: Arc<dyn SwarmListener>) {
        let this = self.clone();
        runtime().spawn(async move {
            while let Some(ev) = this.next_event_here().await {
                let l = listener.clone();
                if tokio::task::spawn_blocking(move || l.on_event(ev))
                    .await
                    .is_err()
                {
                    // The listener panicked: stop calling it rather than abort the host.
                    break;
                }
            }
        });
    }
}

/// Destroys every swarm still alive: an orderly shutdown before the host exits.
pub async fn destroy_all() {
    let live: Vec<_> = LIVE
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .drain(..)
        .filter_map(|w| w.upgrade())
        .collect();
    for s in live {
        let _ = s.destroy().await;
    }
}

/// A joined topic (JS `PeerDiscovery`).
#[derive(Debug)]
pub struct DiscoveryHandle {
    inner: Discovery,
    /// This session's (server, client) mode.
    mode: StdMutex<(bool, bool)>,
    destroyed: StdMutex<bool>,
}

impl DiscoveryHandle {
    /// The topic.
    pub fn topic(&self) -> [u8; 32] {
        self.inner.topic()
    }

    /// Waits for the topic's current announce/lookup round; `true` if it succeeded.
    pub async fn flushed(self: &Arc<Self>) -> Result<bool> {
        let this = self.clone();
        run(async move { Ok(this.inner.flushed().await) }).await
    }

    /// Announces / looks up again now, first switching modes that are given (JS
    /// `discovery.refresh({ server, client })`); `false` when that round failed.
    pub async fn refresh(
        self: &Arc<Self>,
        server: Option<bool>,
        client: Option<bool>,
    ) -> Result<bool> {
        self.check()?;
        let this = self.clone();
        run(async move {
            Ok(match (server, client) {
                (None, None) => this.inner.refresh().await?,
                (s, c) => {
                    let (server, client) = {
                        let mut m = this.mode.lock().unwrap_or_else(|e| e.into_inner());
                        *m = (s.unwrap_or(m.0), c.unwrap_or(m.1));
                        *m
                    };
                    this.inner
                        .reconfigure(JoinOptions {
                            server,
                            client,
                            limit: None,
                        })
                        .await?
                }
            })
        })
        .await
    }

    /// Ends this session; the topic is left when it was the last one. Idempotent.
    pub async fn destroy(self: &Arc<Self>) -> Result<()> {
        {
            let mut d = self.destroyed.lock().unwrap_or_else(|e| e.into_inner());
            if *d {
                return Ok(());
            }
            *d = true;
        }
        let this = self.clone();
        run(async move {
            match this.inner.destroy().await {
                // The swarm went first: nothing is left to leave.
                Ok(()) | Err(hyperswarm::swarm::SwarmError::Destroyed) => Ok(()),
                Err(e) => Err(e.into()),
            }
        })
        .await
    }

    fn check(&self) -> Result<()> {
        if *self.destroyed.lock().unwrap_or_else(|e| e.into_inner()) {
            return Err(Error::new(
                ErrorCode::SessionDestroyed,
                "discovery session has been destroyed",
            ));
        }
        Ok(())
    }
}
