//! Listening on a key pair: the server registers with its own node (so PEER_HANDSHAKEs for
//! hash(public key) are answered here), announces itself to the closest nodes (which become
//! its relays), and hands out each completed handshake.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use tokio::sync::mpsc;

use super::addr::local_addresses;
use super::connect::{race_relay, wait_connected, RelayPlan, PASSIVE_CONNECT_TIMEOUT};
use super::connect_messages::{HolepunchInfo, NoisePayload, RelayInfo, RelayThrough};
use super::connection::Connection;
use super::handshake::{firewall, payload_for, HandshakeCache, Handshaken};
use super::holepunch::{HolepunchRelayed, PunchSocket, ServerPunch, ServerPunchSetup};
use super::keys::KeyPair;
use super::records::{announce_signable, Announce, PeerRecord};
use super::relay::pair_through;
use super::{commands, peer_target, DhtError, HyperDht};
use crate::rpc::{Node, NodeId, QueryOptions, UserRequest};
use crate::udx::Config;
use std::collections::HashMap;

/// Relays a server announces itself to.
pub const RELAYS: usize = 3;
/// Connections waiting for the application; more are refused until it catches up.
const PENDING: usize = 256;
/// Holepunches a server runs at once; handshakes beyond this get no punch offer.
const MAX_PUNCHES: usize = 256;

/// Decides whether to accept a client: its public key, payload and address.
pub type FirewallFn = dyn Fn(&[u8; 32], &NoisePayload, SocketAddr) -> bool + Send + Sync;

/// How [`HyperDht::listen_with`] serves clients.
#[derive(Clone)]
pub struct ListenOptions {
    /// Decides whether to accept a client (no answer at all when it refuses).
    pub firewall: Option<Arc<FirewallFn>>,
    /// A blind relay to pair every relayed client through (hyperdht's server
    /// `relayThrough`); it wins over a client's own choice.
    pub relay_through: Option<[u8; 32]>,
    /// Holepunch with clients that cannot reach us directly. When false, holepunching is
    /// still offered (as JS does, so clients do not try a direct path) but refused when the
    /// client asks to punch.
    pub holepunch: bool,
}

impl Default for ListenOptions {
    fn default() -> Self {
        ListenOptions {
            firewall: None,
            relay_through: None,
            holepunch: true,
        }
    }
}

impl std::fmt::Debug for ListenOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ListenOptions")
            .field("firewall", &self.firewall.is_some())
            .field("relay_through", &self.relay_through.map(hex::encode))
            .field("holepunch", &self.holepunch)
            .finish()
    }
}

/// What a node keeps for each server listening on it.
pub(crate) struct LocalServer {
    seed: [u8; 32],
    public_key: [u8; 32],
    cache: HandshakeCache,
    firewall: Option<Arc<FirewallFn>>,
    /// Our own blind relay for clients, and whether we holepunch at all.
    relay_through: Option<[u8; 32]>,
    holepunch: bool,
    relays: Vec<RelayInfo>,
    /// Running holepunches by the id handed to the client.
    punches: HashMap<u64, ServerPunch>,
    next_punch: u64,
    target: NodeId,
    /// The node the server listens on; removed (breaking the cycle through the node's
    /// handler) when the [`Server`] is dropped.
    dht: HyperDht,
    incoming: mpsc::Sender<Connection>,
}

impl LocalServer {
    /// Answers a message 1 from `client` (`direct` when it reached us without a relay);
    /// `None` means stay silent. With a punch socket, message 2 must leave from it.
    pub(crate) fn respond(
        &mut self,
        now: Instant,
        message1: &[u8],
        client: SocketAddr,
        direct: bool,
    ) -> Option<(Vec<u8>, Option<Arc<PunchSocket>>)> {
        // Nobody would take the connection: refuse by silence, as a rejecting firewall does.
        if self.incoming.capacity() == 0 {
            return None;
        }
        self.punches.retain(|_, p| !p.is_done());
        let firewall_fn = self.firewall.clone();
        let relays = self.relays.clone();
        let public = self.dht.remote_address();
        let node: &Node = self.dht.node();
        let punch_id = self.next_punch;
        let can_punch = self.punches.len() < MAX_PUNCHES;
        let our_relay = self.relay_through.map(|public_key| RelayThrough {
            version: 1,
            flags: 0,
            public_key,
            token: rand::random(),
        });
        let mut stream = None;
        let mut offered_punch = false;
        let (message2, session) =
            self.cache
                .respond(now, &self.seed, message1, |key, remote| {
                    if let Some(f) = &firewall_fn {
                        if !f(key, remote, client) {
                            return None;
                        }
                    }
                    let s = node.udx().create_stream(Config::default());
                    let mut addresses = Vec::new();
                    addresses.extend(public);
                    addresses.extend(local_addresses(node.local_addr()));
                    let fw = if public.is_some() {
                        firewall::OPEN
                    } else {
                        firewall::UNKNOWN
                    };
                    let mut p = payload_for(s.id(), fw, addresses);
                    p.relay_addresses = Some(relays.iter().map(|r| r.relay_address).collect());
                    p.relay_through = our_relay;
                    // Offered whenever we are not public, as hyperdht does: an open client
                    // then waits for us to connect instead of dialling an address of ours
                    // that only a relay can reach.
                    if public.is_none() && can_punch && !relays.is_empty() {
                        p.holepunch = Some(HolepunchInfo {
                            id: punch_id,
                            relays: relays.clone(),
                        });
                        offered_punch = true;
                    }
                    stream = Some(s);
                    Some(p)
                })?;
        // A repeated message 1 (the client resends when the reply was lost) gets the cached
        // reply from the same punch socket, so the relay reports the same address again.
        let mut reply_socket = self
            .punches
            .values()
            .find(|p| p.replies_with(&message2))
            .map(|p| p.socket().clone());
        let mut punch_ended = None;
        if let (Some(Handshaken { outcome, remote }), Some(stream)) = (session, stream) {
            let remote_id = remote.udx.as_ref().map(|u| u.id as u32)?;
            // Whichever path the client opens, its first stream packet connects us there.
            stream.accept_first(remote_id).ok()?;
            if remote.firewall == firewall::OPEN || direct {
                // We speak first: the client is reachable where we saw it.
                let socket = node.socket().clone();
                stream.connect(&socket, remote_id, client).ok()?;
            } else if offered_punch {
                let setup = ServerPunchSetup {
                    node: node.clone(),
                    target: self.target,
                    random_punches: self.dht.random_punches().clone(),
                    relays: self.relays.iter().map(|r| r.relay_address).collect(),
                    allowed: self.holepunch,
                };
                if let Ok(mut p) =
                    ServerPunch::start(setup, &outcome.hash, remote.firewall, stream.watch())
                {
                    p.set_reply(&message2);
                    reply_socket = Some(p.socket().clone());
                    punch_ended = Some(p.ended());
                    self.punches.insert(punch_id, p);
                    self.next_punch = self.next_punch.wrapping_add(1);
                }
            }
            let connected_at_once = remote.firewall == firewall::OPEN || direct;
            // Our relay wins over the client's; whoever chose it leads the pairing.
            let relay = match (our_relay, remote.relay_through) {
                _ if connected_at_once => None,
                (Some(ours), _) => Some(RelayPlan {
                    public_key: ours.public_key,
                    token: ours.token,
                    is_initiator: true,
                }),
                (None, Some(theirs)) => Some(RelayPlan {
                    public_key: theirs.public_key,
                    token: theirs.token,
                    is_initiator: false,
                }),
                (None, None) => None,
            };
            let incoming = self.incoming.clone();
            let public_key = self.public_key;
            let dht = self.dht.clone();
            tokio::spawn(async move {
                // While a holepunch runs (random punches can take half a minute) the path may
                // still open; without one, the client has the usual time to reach us.
                let watch = stream.watch();
                let waited = async {
                    match punch_ended {
                        None => wait_connected(&watch).await,
                        Some(ended) => {
                            tokio::select! {
                                r = watch.direct() => r.map(|_| ()).map_err(|_| DhtError::Timeout),
                                () = ended => match stream.socket() {
                                    Some(_) => Ok(()),
                                    None => Err(DhtError::Timeout),
                                },
                            }
                        }
                    }
                };
                let relay_conn = match relay {
                    None => match waited.await {
                        Ok(()) => None,
                        Err(_) => return,
                    },
                    Some(plan) => {
                        let keys = KeyPair::generate();
                        let relayed = pair_through(
                            &dht,
                            &keys,
                            &plan.public_key,
                            plan.token,
                            plan.is_initiator,
                            &stream,
                            remote_id,
                        );
                        match race_relay(waited, relayed).await {
                            Ok(c) => c,
                            Err(_) => return,
                        }
                    }
                };
                let mut conn = Connection::new(stream, outcome, public_key);
                if let Some(r) = relay_conn {
                    conn.keep_relay(r);
                }
                // Only a peer that holds the session keys gets handed out: a replayed
                // message 1 opens no stream that sends a valid header.
                let opened = tokio::time::timeout(PASSIVE_CONNECT_TIMEOUT, conn.opened()).await;
                if matches!(opened, Ok(Ok(()))) {
                    // A full queue drops the connection, which resets it for the client.
                    let _ = incoming.try_send(conn);
                }
            });
        }
        Some((message2, reply_socket))
    }

    /// A PEER_HOLEPUNCH for one of our handshakes, forwarded by `relay`.
    pub(crate) fn on_holepunch(
        &mut self,
        id: u64,
        tid: u16,
        relay: SocketAddr,
        peer_address: SocketAddr,
        payload: Vec<u8>,
    ) {
        let from_our_relay = self.relays.iter().any(|r| r.relay_address == relay);
        tracing::debug!(id, %relay, %peer_address, known = self.punches.contains_key(&id), "holepunch message");
        if let Some(p) = self.punches.get(&id) {
            let msg = HolepunchRelayed {
                tid,
                relay,
                peer_address,
                payload,
                from_our_relay,
            };
            if !p.deliver(msg) {
                self.punches.remove(&id);
            }
        }
    }
}

/// A server listening on a key pair. Dropping it stops answering handshakes.
#[derive(Debug)]
pub struct Server {
    dht: HyperDht,
    target: NodeId,
    public_key: [u8; 32],
    relays: Vec<RelayInfo>,
    incoming: mpsc::Receiver<Connection>,
}

impl Server {
    /// The key clients dial.
    pub fn public_key(&self) -> [u8; 32] {
        self.public_key
    }

    /// The nodes relaying handshakes to us.
    pub fn relays(&self) -> Vec<SocketAddr> {
        self.relays.iter().map(|r| r.relay_address).collect()
    }

    /// The next client connection, once its stream is open.
    pub async fn accept(&mut self) -> Option<Connection> {
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
        let opts = ListenOptions {
            firewall,
            ..ListenOptions::default()
        };
        self.listen_with(key_pair, opts).await
    }

    /// [`HyperDht::listen`] with options.
    pub async fn listen_with(
        &self,
        key_pair: &KeyPair,
        opts: ListenOptions,
    ) -> Result<Server, DhtError> {
        let ListenOptions {
            firewall,
            relay_through,
            holepunch,
        } = opts;
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
                public_key,
                cache: HandshakeCache::default(),
                firewall,
                relay_through,
                holepunch,
                relays: Vec::new(),
                punches: HashMap::new(),
                next_punch: 0,
                target,
                dht: self.clone(),
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
    ) -> Result<Vec<RelayInfo>, DhtError> {
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
                    // The relay forwards to where it saw us; that is our address there.
                    let peer_address = r.to.or(reply.to).unwrap_or(reply.from);
                    accepted.push(RelayInfo {
                        relay_address: reply.from,
                        peer_address,
                    });
                }
            }
        }
        if accepted.is_empty() {
            return Err(DhtError::TooFewNodes);
        }
        Ok(accepted)
    }
}
