//! [`Swarm`]: the application's handle on a running swarm.

use tokio::sync::{mpsc, oneshot, watch, Mutex};

use super::actor::{Accepted, Actor, Cmd, Reply};
use super::config::{JoinOptions, SwarmError, SwarmOptions, SwarmStats};
use super::connection::Connection;
use super::discovery::Discovery;
use super::network::Network;
use super::peer::PeerInfo;
use crate::dht::KeyPair;

/// A Hyperswarm swarm: joins topics, finds their peers through the network, and keeps one
/// encrypted connection to each peer, as JS Hyperswarm does. Dropping it destroys it.
pub struct Swarm<N: Network> {
    net: N,
    key_pair: KeyPair,
    cmd: mpsc::UnboundedSender<Cmd>,
    accept: Mutex<mpsc::UnboundedReceiver<Accepted<N::Stream>>>,
    stats: watch::Receiver<SwarmStats>,
}

impl<N: Network> std::fmt::Debug for Swarm<N> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Swarm")
            .field("key_pair", &self.key_pair)
            .field("stats", &*self.stats.borrow())
            .finish()
    }
}

impl<N: Network> Swarm<N> {
    /// Starts a swarm on `net` as `key_pair`. Needs a tokio runtime.
    pub fn with_network(net: N, key_pair: KeyPair, options: SwarmOptions) -> Self {
        let handles = Actor::spawn(net.clone(), key_pair.clone(), options);
        Swarm {
            net,
            key_pair,
            cmd: handles.cmd,
            accept: Mutex::new(handles.accept),
            stats: handles.stats,
        }
    }

    /// Our identity.
    pub fn key_pair(&self) -> &KeyPair {
        &self.key_pair
    }

    /// Our public key: what peers see and dial.
    pub fn public_key(&self) -> [u8; 32] {
        self.key_pair.public_key()
    }

    /// The network underneath.
    pub fn network(&self) -> &N {
        &self.net
    }

    fn send(&self, cmd: Cmd) -> Result<(), SwarmError> {
        self.cmd.send(cmd).map_err(|_| SwarmError::Destroyed)
    }

    async fn ask(&self, make: impl FnOnce(Reply) -> Cmd) -> Result<bool, SwarmError> {
        let (tx, rx) = oneshot::channel();
        self.send(make(tx))?;
        rx.await.map_err(|_| SwarmError::Destroyed)?
    }

    /// Joins `topic`: announces us under it (server) and/or looks it up and dials the
    /// peers found (client). Returns at once; [`Discovery::flushed`] waits for the first
    /// round.
    pub async fn join(
        &self,
        topic: [u8; 32],
        options: JoinOptions,
    ) -> Result<Discovery, SwarmError> {
        let (tx, rx) = oneshot::channel();
        self.send(Cmd::Join {
            topic,
            options,
            reply: tx,
        })?;
        let (gen, session) = rx.await.map_err(|_| SwarmError::Destroyed)??;
        Ok(Discovery::new(topic, gen, session, self.cmd.clone()))
    }

    /// Leaves `topic` (every session of it), removing our announcement if we made one.
    /// Connections stay open.
    pub async fn leave(&self, topic: [u8; 32]) -> Result<(), SwarmError> {
        self.ask(|reply| Cmd::Leave { topic, reply })
            .await
            .map(drop)
    }

    /// Waits until every topic's current round is done and then every peer queued so far
    /// has been tried (or the swarm is at its connection limits). `false` if the swarm was
    /// destroyed meanwhile.
    pub async fn flush(&self) -> bool {
        let (tx, rx) = oneshot::channel();
        if self.send(Cmd::AllFlushed { reply: tx }).is_err() {
            return false;
        }
        let Ok(waits) = rx.await else {
            return false;
        };
        for w in waits {
            // A failed round does not stop the flush, as in JS.
            if w.await.is_err() {
                return false;
            }
        }
        self.ask(|reply| Cmd::Flush { reply })
            .await
            .unwrap_or(false)
    }

    /// The next new connection and what we know about its peer; `None` once destroyed.
    pub async fn accept(&self) -> Option<(Connection<N::Stream>, PeerInfo)> {
        self.accept.lock().await.recv().await
    }

    /// Starts answering connections now rather than at the first server join.
    pub async fn listen(&self) -> Result<(), SwarmError> {
        match self.ask(|reply| Cmd::Listen { reply }).await? {
            true => Ok(()),
            false => Err(SwarmError::Destroyed),
        }
    }

    /// Keeps a connection to `public_key` whatever the topics, retrying for as long as it
    /// stays joined.
    pub fn join_peer(&self, public_key: [u8; 32]) -> Result<(), SwarmError> {
        self.send(Cmd::JoinPeer(public_key))
    }

    /// Stops insisting on `public_key` (an open connection stays).
    pub fn leave_peer(&self, public_key: [u8; 32]) -> Result<(), SwarmError> {
        self.send(Cmd::LeavePeer(public_key))
    }

    /// Never dials or accepts `public_key` again. An open connection to it stays; drop it
    /// to end it.
    pub fn ban(&self, public_key: [u8; 32]) -> Result<(), SwarmError> {
        self.send(Cmd::Ban(public_key, true))
    }

    /// Lifts a ban.
    pub fn unban(&self, public_key: [u8; 32]) -> Result<(), SwarmError> {
        self.send(Cmd::Ban(public_key, false))
    }

    /// Whether to retry `public_key` after its connection ends (default yes; JS's
    /// `peerInfo.reconnect(false)` stops it).
    pub fn reconnect(&self, public_key: [u8; 32], reconnect: bool) -> Result<(), SwarmError> {
        self.send(Cmd::Reconnect(public_key, reconnect))
    }

    /// The topics joined now.
    pub async fn topics(&self) -> Vec<[u8; 32]> {
        let (tx, rx) = oneshot::channel();
        if self.send(Cmd::Topics { reply: tx }).is_err() {
            return Vec::new();
        }
        rx.await.unwrap_or_default()
    }

    /// Leaves every topic, unannouncing where we announced. Connections stay open.
    pub async fn clear(&self) -> Result<(), SwarmError> {
        self.ask(|reply| Cmd::Clear { reply }).await.map(drop)
    }

    /// What the swarm knows about `public_key`, if anything.
    pub async fn peer(&self, public_key: [u8; 32]) -> Option<PeerInfo> {
        let (tx, rx) = oneshot::channel();
        self.send(Cmd::Peer {
            key: public_key,
            reply: tx,
        })
        .ok()?;
        rx.await.ok().flatten()
    }

    /// Stops discovery (unannouncing), stops listening and closes every connection, until
    /// [`Swarm::resume`].
    pub async fn suspend(&self) -> Result<(), SwarmError> {
        self.ask(|reply| Cmd::Suspend { reply }).await.map(drop)
    }

    /// Restarts what [`Swarm::suspend`] stopped: every topic refreshes.
    pub async fn resume(&self) -> Result<(), SwarmError> {
        self.ask(|reply| Cmd::Resume { reply }).await.map(drop)
    }

    /// Leaves every topic (unannouncing), stops listening and closes every connection.
    pub async fn destroy(&self) -> Result<(), SwarmError> {
        match self.ask(|reply| Cmd::Destroy { reply: Some(reply) }).await {
            Ok(_) | Err(SwarmError::Destroyed) => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// The counters now.
    pub fn stats(&self) -> SwarmStats {
        *self.stats.borrow()
    }

    /// Changes as they happen (JS's `update` event): a watch of the counters.
    pub fn updates(&self) -> watch::Receiver<SwarmStats> {
        self.stats.clone()
    }
}

impl<N: Network> Drop for Swarm<N> {
    fn drop(&mut self) {
        let _ = self.cmd.send(Cmd::Destroy { reply: None });
    }
}
