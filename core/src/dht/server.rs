//! Listening on a key pair: the server registers with its own node (so PEER_HANDSHAKEs for
//! hash(public key) are answered here), announces itself to the closest nodes (which become
//! its relays), and hands out each completed handshake.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use tokio::sync::mpsc;

use super::connect_messages::NoisePayload;
use super::handshake::{firewall, payload_for, HandshakeCache, Handshaken};
use super::keys::KeyPair;
use super::records::{announce_signable, Announce, PeerRecord};
use super::{commands, peer_target, DhtError, HyperDht};
use crate::crypto::noise::HandshakeOutcome;
use crate::rpc::{NodeId, QueryOptions, UserRequest};

/// Relays a server announces itself to.
pub const RELAYS: usize = 3;
/// Completed handshakes waiting for the application; more are refused until it catches up.
const PENDING: usize = 256;

/// Decides whether to accept a client: its public key, payload and address.
pub type FirewallFn = dyn Fn(&[u8; 32], &NoisePayload, SocketAddr) -> bool + Send + Sync;

/// A client that completed the handshake with a listening server.
#[derive(Debug, Clone)]
pub struct Incoming {
    /// The client's static public key.
    pub remote_public_key: [u8; 32],
    /// What the client said about itself (addresses, UDX stream id).
    pub remote: NoisePayload,
    /// Session keys.
    pub outcome: HandshakeOutcome,
    /// The client's address as the relay (or we) saw it.
    pub client_address: SocketAddr,
}

/// What a node keeps for each server listening on it.
pub(crate) struct LocalServer {
    seed: [u8; 32],
    cache: HandshakeCache,
    firewall: Option<Arc<FirewallFn>>,
    relays: Vec<SocketAddr>,
    next_udx_id: u32,
    incoming: mpsc::Sender<Incoming>,
}

impl LocalServer {
    /// Answers a message 1 from `client`; `None` means stay silent.
    pub(crate) fn respond(
        &mut self,
        now: Instant,
        message1: &[u8],
        client: SocketAddr,
    ) -> Option<Vec<u8>> {
        let firewall_fn = self.firewall.clone();
        self.next_udx_id = self.next_udx_id.wrapping_add(1);
        let udx_id = self.next_udx_id;
        let relays = self.relays.clone();
        let (message2, session) =
            self.cache
                .respond(now, &self.seed, message1, |key, remote| {
                    if let Some(f) = &firewall_fn {
                        if !f(key, remote, client) {
                            return None;
                        }
                    }
                    let mut p = payload_for(udx_id, firewall::UNKNOWN, Vec::new());
                    p.relay_addresses = Some(relays);
                    Some(p)
                })?;
        if let Some(Handshaken { outcome, remote }) = session {
            let incoming = Incoming {
                remote_public_key: outcome.remote_public_key,
                remote,
                outcome,
                client_address: client,
            };
            // A full queue means the application is not accepting: refuse by silence.
            self.incoming.try_send(incoming).ok()?;
        }
        Some(message2)
    }
}

/// A server listening on a key pair. Dropping it stops answering handshakes.
#[derive(Debug)]
pub struct Server {
    dht: HyperDht,
    target: NodeId,
    public_key: [u8; 32],
    relays: Vec<SocketAddr>,
    incoming: mpsc::Receiver<Incoming>,
}

impl Server {
    /// The key clients dial.
    pub fn public_key(&self) -> [u8; 32] {
        self.public_key
    }

    /// The nodes relaying handshakes to us.
    pub fn relays(&self) -> &[SocketAddr] {
        &self.relays
    }

    /// The next client that completed a handshake.
    pub async fn accept(&mut self) -> Option<Incoming> {
        self.incoming.recv().await
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.dht.storage().stores().servers.remove(&self.target.0);
    }
}

impl HyperDht {
    /// Listens on `key_pair`: answers handshakes and announces itself to the closest nodes.
    /// `firewall` may refuse clients (they get no answer at all).
    pub async fn listen(
        &self,
        key_pair: &KeyPair,
        firewall: Option<Arc<FirewallFn>>,
    ) -> Result<Server, DhtError> {
        let public_key = key_pair.public_key();
        let target = peer_target(&public_key);
        let (tx, rx) = mpsc::channel(PENDING);
        let seed: [u8; 32] = key_pair.secret_key()[..32]
            .try_into()
            .expect("32-byte seed");
        self.storage().stores().servers.insert(
            target.0,
            LocalServer {
                seed,
                cache: HandshakeCache::default(),
                firewall,
                relays: Vec::new(),
                next_udx_id: rand::random(),
                incoming: tx,
            },
        );
        let relays = self.announce_self(key_pair, target).await?;
        if let Some(s) = self.storage().stores().servers.get_mut(&target.0) {
            s.relays = relays.clone();
        }
        Ok(Server {
            dht: self.clone(),
            target,
            public_key,
            relays,
            incoming: rx,
        })
    }

    /// Announces the server's own record (no relay addresses) to the first [`RELAYS`]
    /// closest nodes of hash(public key). Returns the nodes that accepted.
    async fn announce_self(
        &self,
        key_pair: &KeyPair,
        target: NodeId,
    ) -> Result<Vec<SocketAddr>, DhtError> {
        let closest = self
            .node()
            .query(target, commands::FIND_PEER, None, QueryOptions::default())
            .closest()
            .await;
        let peer = PeerRecord {
            public_key: key_pair.public_key(),
            relay_addresses: Vec::new(),
        };
        let mut accepted = Vec::new();
        for reply in closest.iter().take(RELAYS) {
            let (Some(id), Some(token)) = (reply.from_id, reply.token) else {
                continue;
            };
            let Ok(signable) = announce_signable(false, &target, &id, &token, &peer, None) else {
                continue;
            };
            let value = Announce {
                peer: Some(peer.clone()),
                refresh: None,
                signature: Some(key_pair.sign(&signable)),
                bump: 0,
            }
            .encode();
            let Ok(value) = value else { continue };
            let req = UserRequest {
                token: Some(token),
                command: commands::ANNOUNCE,
                target: Some(target),
                value: Some(value),
                ..UserRequest::default()
            };
            if let Ok(r) = self.node().request(req, reply.from).await {
                if r.error == 0 {
                    accepted.push(reply.from);
                }
            }
        }
        if accepted.is_empty() {
            return Err(DhtError::TooFewNodes);
        }
        Ok(accepted)
    }
}
