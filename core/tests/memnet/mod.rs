//! An in-memory network for swarm tests: listeners and topic records in one shared hub,
//! connections as tokio duplex pipes, a fixed latency per operation (virtual time).

use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use hyperswarm::dht::{DhtError, KeyPair, PeerRecord};
use hyperswarm::swarm::{Closed, Listener, Network, NetworkError, PeerSink, Refuse, SecureStream};
use tokio::io::{AsyncRead, AsyncWrite, DuplexStream, ReadBuf};
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;

/// One end of a connection.
pub struct MemStream {
    io: DuplexStream,
    remote: [u8; 32],
    /// Set when either end is dropped: the pipe is then closed for both.
    gone: Arc<watch::Sender<bool>>,
    keepalive: Option<Duration>,
}

impl MemStream {
    fn pair(a: [u8; 32], b: [u8; 32], keepalive: Option<Duration>) -> (MemStream, MemStream) {
        let (x, y) = tokio::io::duplex(64 * 1024);
        let gone = Arc::new(watch::channel(false).0);
        let at_a = MemStream {
            io: x,
            remote: b,
            gone: gone.clone(),
            keepalive,
        };
        let at_b = MemStream {
            io: y,
            remote: a,
            gone,
            keepalive,
        };
        (at_a, at_b)
    }
}

impl Drop for MemStream {
    fn drop(&mut self) {
        self.gone.send_replace(true);
    }
}

impl SecureStream for MemStream {
    fn remote_public_key(&self) -> [u8; 32] {
        self.remote
    }

    fn keepalive(&self) -> Option<Duration> {
        self.keepalive
    }

    fn closed(&self) -> Closed {
        let mut rx = self.gone.subscribe();
        Box::pin(async move {
            let _ = rx.wait_for(|g| *g).await;
        })
    }
}

impl AsyncRead for MemStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_read(cx, buf)
    }
}

impl AsyncWrite for MemStream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write(cx, buf)
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

/// What happened on the network, for assertions.
#[derive(Default)]
pub struct Log {
    /// (from, to, when) of every dial.
    pub dials: Vec<([u8; 32], [u8; 32], Instant)>,
    /// The blind relay each dial asked for, in dial order.
    pub relayed: Vec<Option<[u8; 32]>>,
    /// (topic, who, when) of every completed announce.
    pub announces: Vec<([u8; 32], [u8; 32], Instant)>,
    /// (topic, when) of every completed lookup.
    pub lookups: Vec<([u8; 32], Instant)>,
    /// (topic, who) of every unannounce.
    pub unannounces: Vec<([u8; 32], [u8; 32])>,
}

#[derive(Default)]
struct Hub {
    listeners: HashMap<[u8; 32], (Arc<Refuse>, mpsc::UnboundedSender<MemStream>)>,
    records: HashMap<[u8; 32], Vec<PeerRecord>>,
    log: Log,
}

/// A handle on the shared hub; every swarm of a test gets a clone.
#[derive(Clone)]
pub struct MemNet {
    hub: Arc<Mutex<Hub>>,
    latency: Duration,
    /// What the streams report as their keepalive interval.
    pub keepalive: Option<Duration>,
    /// Peers can only reach each other through a blind relay (holepunching fails).
    pub needs_relay: bool,
    /// What every peer's NAT looks like: random when set.
    pub randomized: bool,
}

impl MemNet {
    pub fn new(latency: Duration) -> Self {
        MemNet {
            hub: Arc::default(),
            latency,
            keepalive: None,
            needs_relay: false,
            randomized: false,
        }
    }

    pub fn log<R>(&self, f: impl FnOnce(&Log) -> R) -> R {
        f(&self.hub.lock().unwrap().log)
    }

    /// Puts a record under `topic` as if `public_key` had announced it.
    pub fn add_record(&self, topic: [u8; 32], public_key: [u8; 32]) {
        let mut hub = self.hub.lock().unwrap();
        hub.records.entry(topic).or_default().push(PeerRecord {
            public_key,
            relay_addresses: vec!["10.0.0.1:49737".parse().unwrap()],
        });
    }

    pub fn records(&self, topic: [u8; 32]) -> Vec<[u8; 32]> {
        let hub = self.hub.lock().unwrap();
        let recs = hub.records.get(&topic).cloned().unwrap_or_default();
        recs.into_iter().map(|r| r.public_key).collect()
    }
}

/// A registered listener; dropping it unregisters.
pub struct MemListener {
    key: [u8; 32],
    rx: mpsc::UnboundedReceiver<MemStream>,
    hub: Arc<Mutex<Hub>>,
}

impl Listener for MemListener {
    type Stream = MemStream;

    async fn accept(&mut self) -> Option<MemStream> {
        self.rx.recv().await
    }

    fn relay_addresses(&self) -> Vec<SocketAddr> {
        vec!["10.0.0.1:49737".parse().unwrap()]
    }
}

impl Drop for MemListener {
    fn drop(&mut self) {
        self.hub.lock().unwrap().listeners.remove(&self.key);
    }
}

impl Network for MemNet {
    type Stream = MemStream;
    type Listener = MemListener;

    fn randomized(&self) -> bool {
        self.randomized
    }

    async fn connect(
        &self,
        key_pair: &KeyPair,
        remote: [u8; 32],
        _relay_addresses: Vec<SocketAddr>,
        relay_through: Option<[u8; 32]>,
    ) -> Result<MemStream, NetworkError> {
        let me = key_pair.public_key();
        {
            let mut hub = self.hub.lock().unwrap();
            hub.log.dials.push((me, remote, Instant::now()));
            hub.log.relayed.push(relay_through);
        }
        tokio::time::sleep(self.latency).await;
        if self.needs_relay && relay_through.is_none() {
            return Err(NetworkError::Dht(DhtError::CannotHolepunch));
        }
        let hub = self.hub.lock().unwrap();
        let (refuse, tx) = hub
            .listeners
            .get(&remote)
            .ok_or(NetworkError::Unreachable)?;
        if refuse(&me) {
            return Err(NetworkError::Refused);
        }
        let (ours, theirs) = MemStream::pair(me, remote, self.keepalive);
        tx.send(theirs).map_err(|_| NetworkError::Unreachable)?;
        Ok(ours)
    }

    async fn listen(
        &self,
        key_pair: &KeyPair,
        refuse: Arc<Refuse>,
    ) -> Result<MemListener, NetworkError> {
        tokio::time::sleep(self.latency).await;
        let key = key_pair.public_key();
        let (tx, rx) = mpsc::unbounded_channel();
        self.hub.lock().unwrap().listeners.insert(key, (refuse, tx));
        Ok(MemListener {
            key,
            rx,
            hub: self.hub.clone(),
        })
    }

    async fn announce(
        &self,
        topic: [u8; 32],
        key_pair: &KeyPair,
        relay_addresses: Vec<SocketAddr>,
        _clear: bool,
        found: Arc<PeerSink>,
    ) -> Result<(), NetworkError> {
        tokio::time::sleep(self.latency).await;
        let me = key_pair.public_key();
        let peers = {
            let mut hub = self.hub.lock().unwrap();
            let recs = hub.records.entry(topic).or_default();
            let peers = recs.clone();
            recs.retain(|r| r.public_key != me);
            recs.push(PeerRecord {
                public_key: me,
                relay_addresses,
            });
            hub.log.announces.push((topic, me, Instant::now()));
            peers
        };
        if !peers.is_empty() {
            found(peers);
        }
        Ok(())
    }

    async fn lookup(
        &self,
        topic: [u8; 32],
        unannounce: Option<&KeyPair>,
        found: Arc<PeerSink>,
    ) -> Result<(), NetworkError> {
        tokio::time::sleep(self.latency).await;
        let peers = {
            let mut hub = self.hub.lock().unwrap();
            let recs = hub.records.entry(topic).or_default();
            let peers = recs.clone();
            if let Some(kp) = unannounce {
                recs.retain(|r| r.public_key != kp.public_key());
            }
            hub.log.lookups.push((topic, Instant::now()));
            peers
        };
        if !peers.is_empty() {
            found(peers);
        }
        Ok(())
    }

    async fn unannounce(&self, topic: [u8; 32], key_pair: &KeyPair) -> Result<(), NetworkError> {
        tokio::time::sleep(self.latency).await;
        let me = key_pair.public_key();
        let mut hub = self.hub.lock().unwrap();
        if let Some(recs) = hub.records.get_mut(&topic) {
            recs.retain(|r| r.public_key != me);
        }
        hub.log.unannounces.push((topic, me));
        Ok(())
    }
}
