//! The client side of HyperDHT: walks towards a target with a storage command, then
//! "commits" (announce, put) to the closest nodes that answered, with their tokens.

use std::io;
use std::net::SocketAddr;

use tokio::task::JoinSet;

use super::commands;
use super::keys::{hash, peer_target, KeyPair};
use super::records::{
    announce_signable, mutable_signable, Announce, LookupReply, MutablePut, MutableValue,
    PeerRecord,
};
use super::storage::Storage;
use crate::encoding::Writer;
use crate::rpc::{
    Node, NodeConfig, NodeId, QueryOptions, QueryStream, Reply, RequestError, UserRequest,
};

/// Largest value `mutable_put` / `immutable_put` accept: what still fits one UDP datagram
/// with the request's headers (JS has no lower limit of its own).
pub const MAX_VALUE_LEN: usize = 65_000;

/// Why a HyperDHT operation failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DhtError {
    /// No storing node answered the walk, so there was nobody to commit to.
    #[error("no DHT node answered; is the node bootstrapped?")]
    TooFewNodes,
    /// The value is larger than a datagram can carry.
    #[error("value of {len} bytes is over the {max}-byte limit")]
    ValueTooLarge {
        /// The value's length.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// Every storing node refused the write with this error code (for example
    /// [`SEQ_REUSED`](super::errors::SEQ_REUSED) or [`SEQ_TOO_LOW`](super::errors::SEQ_TOO_LOW)).
    #[error("storing nodes refused the write with error {code}")]
    Refused {
        /// The error code.
        code: u64,
    },
    /// The node itself failed.
    #[error("request failed: {0}")]
    Request(#[from] RequestError),
    /// No node knows a server with this key.
    #[error("no relay knows the peer")]
    PeerNotFound,
    /// The connection handshake failed.
    #[error("handshake failed: {0}")]
    Handshake(#[from] super::handshake::HandshakeError),
    /// The server's handshake reply lacks what a connection needs (no UDX stream).
    #[error("server is incompatible: its reply offers no UDX stream")]
    ServerIncompatible,
    /// Relays knew the server, but every handshake through them failed.
    #[error("could not complete a handshake with the peer")]
    PeerConnectionFailed,
    /// Neither side can reach the other directly and the server offers no holepunch relays.
    #[error("the peer cannot be holepunched")]
    CannotHolepunch,
    /// Holepunching was tried and gave up.
    #[error("holepunch aborted: {0}")]
    HolepunchAborted(&'static str),
    /// No path opened in time.
    #[error("connection timed out")]
    Timeout,
    /// Pairing through a blind relay failed.
    #[error("pairing through the blind relay failed")]
    RelayFailed,
}

/// One storing node's answer to a LOOKUP.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LookupResult {
    /// The node that answered.
    pub from: SocketAddr,
    /// Its id.
    pub from_id: Option<NodeId>,
    /// Its token for a follow-up write.
    pub token: Option<[u8; 32]>,
    /// The peers it holds under the topic.
    pub peers: Vec<PeerRecord>,
    /// The topic's bump.
    pub bump: u64,
}

/// LOOKUP answers as they arrive.
#[derive(Debug)]
pub struct LookupStream {
    inner: QueryStream,
}

impl LookupStream {
    /// The next answer that carried peers; `None` when the walk is over.
    pub async fn next(&mut self) -> Option<LookupResult> {
        while let Some(reply) = self.inner.next().await {
            if let Some(r) = lookup_result(&reply) {
                return Some(r);
            }
        }
        None
    }
}

fn lookup_result(reply: &Reply) -> Option<LookupResult> {
    let l = LookupReply::decode(reply.value.as_deref()?).ok()?;
    Some(LookupResult {
        from: reply.from,
        from_id: reply.from_id,
        token: reply.token,
        peers: l.peers,
        bump: l.bump,
    })
}

/// The outcome of a mutable put.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MutablePutResult {
    /// The signer.
    pub public_key: [u8; 32],
    /// The seq written.
    pub seq: u64,
    /// The signature written.
    pub signature: [u8; 64],
    /// Nodes that stored it.
    pub stored_on: Vec<SocketAddr>,
}

/// A verified mutable value and the node it came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MutableGet {
    /// The value, seq and signature (verified).
    pub value: MutableValue,
    /// Where it came from.
    pub from: SocketAddr,
}

/// The outcome of an immutable put.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImmutablePut {
    /// The value's address: BLAKE2b-256(value).
    pub hash: NodeId,
    /// Nodes that stored it.
    pub stored_on: Vec<SocketAddr>,
}

/// A HyperDHT node: dht-rpc with record storage and the client operations.
#[derive(Debug, Clone)]
pub struct HyperDht {
    node: Node,
    storage: Storage,
    random_punches: std::sync::Arc<super::holepunch::RandomPunches>,
}

impl HyperDht {
    /// Binds and starts a node; once persistent it stores records for others.
    pub async fn bind(config: NodeConfig) -> io::Result<Self> {
        let storage = Storage::new();
        let node = Node::bind_with_handler(config, Box::new(storage.clone())).await?;
        Ok(HyperDht {
            node,
            storage,
            random_punches: Default::default(),
        })
    }

    /// The node's random-punch limit, shared by its clients and servers.
    pub(crate) fn random_punches(&self) -> &std::sync::Arc<super::holepunch::RandomPunches> {
        &self.random_punches
    }

    /// The dht-rpc node underneath.
    pub fn node(&self) -> &Node {
        &self.node
    }

    /// What this node stores for others.
    pub fn storage(&self) -> &Storage {
        &self.storage
    }

    /// Peers announced under `topic`, as the storing nodes answer.
    pub fn lookup(&self, topic: NodeId) -> LookupStream {
        let inner = self
            .node
            .query(topic, commands::LOOKUP, None, QueryOptions::default());
        LookupStream { inner }
    }

    /// The record of the server with `public_key`, from a node relaying for it.
    pub async fn find_peer(&self, public_key: &[u8; 32]) -> Option<(PeerRecord, SocketAddr)> {
        let target = peer_target(public_key);
        let mut q = self
            .node
            .query(target, commands::FIND_PEER, None, QueryOptions::default());
        while let Some(reply) = q.next().await {
            let record = reply
                .value
                .as_deref()
                .and_then(|v| PeerRecord::decode(v).ok());
            if let Some(record) = record.filter(|r| r.public_key == *public_key) {
                return Some((record, reply.from));
            }
        }
        None
    }

    /// Announces `key_pair`'s public key under `topic`, reachable through `relay_addresses`,
    /// on the closest storing nodes. Returns the nodes that accepted.
    pub async fn announce(
        &self,
        topic: NodeId,
        key_pair: &KeyPair,
        relay_addresses: &[SocketAddr],
    ) -> Result<Vec<SocketAddr>, DhtError> {
        let closest = self.lookup_closest(topic).await;
        let peer = PeerRecord {
            public_key: key_pair.public_key(),
            relay_addresses: relay_addresses.to_vec(),
        };
        let mut writes = Vec::new();
        for reply in &closest {
            let (Some(id), Some(token)) = (reply.from_id, reply.token) else {
                continue;
            };
            if let Some(value) = signed_announce(false, &topic, &id, &token, &peer, key_pair) {
                writes.push((reply.from, token, value));
            }
        }
        self.commit(topic, commands::ANNOUNCE, writes).await
    }

    /// Removes `key_pair`'s record under `topic` from every node that holds it (or holds so
    /// many that it might). Returns the nodes that acknowledged.
    pub async fn unannounce(
        &self,
        topic: NodeId,
        key_pair: &KeyPair,
    ) -> Result<Vec<SocketAddr>, DhtError> {
        let public_key = key_pair.public_key();
        let now = tokio::time::Instant::now().into_std();
        self.storage.stores().unannounce(now, &topic, &public_key);
        let peer = PeerRecord {
            public_key,
            relay_addresses: Vec::new(),
        };
        let mut stream = self.lookup(topic);
        let mut writes = Vec::new();
        while let Some(r) = stream.next().await {
            let holds = r.peers.len() >= 20 || r.peers.iter().any(|p| p.public_key == public_key);
            let (true, Some(id), Some(token)) = (holds, r.from_id, r.token) else {
                continue;
            };
            if let Some(value) = signed_announce(true, &topic, &id, &token, &peer, key_pair) {
                writes.push((r.from, token, value));
            }
        }
        if writes.is_empty() {
            return Ok(Vec::new());
        }
        self.commit(topic, commands::UNANNOUNCE, writes).await
    }

    /// Stores `value` signed by `key_pair` with sequence number `seq` under
    /// hash(public key) on the closest storing nodes.
    pub async fn mutable_put(
        &self,
        key_pair: &KeyPair,
        value: &[u8],
        seq: u64,
    ) -> Result<MutablePutResult, DhtError> {
        check_len(value)?;
        let public_key = key_pair.public_key();
        let target = peer_target(&public_key);
        let signature = key_pair.sign(&mutable_signable(seq, value));
        let put = MutablePut {
            public_key,
            seq,
            value: value.to_vec(),
            signature,
        }
        .encode();
        let closest = self
            .node
            .query(
                target,
                commands::MUTABLE_GET,
                Some(uint(0)),
                QueryOptions::default(),
            )
            .closest()
            .await;
        let writes = tokened(&closest, &put);
        let stored_on = self.commit(target, commands::MUTABLE_PUT, writes).await?;
        Ok(MutablePutResult {
            public_key,
            seq,
            signature,
            stored_on,
        })
    }

    /// The mutable value of `public_key` with seq at least `min_seq`: the highest seq found
    /// when `latest`, else the first valid one.
    pub async fn mutable_get(
        &self,
        public_key: &[u8; 32],
        min_seq: u64,
        latest: bool,
    ) -> Option<MutableGet> {
        let target = peer_target(public_key);
        let mut q = self.node.query(
            target,
            commands::MUTABLE_GET,
            Some(uint(min_seq)),
            QueryOptions::default(),
        );
        let mut best: Option<MutableGet> = None;
        while let Some(reply) = q.next().await {
            let Some(v) = reply
                .value
                .as_deref()
                .and_then(|v| MutableValue::decode(v).ok())
            else {
                continue;
            };
            if v.seq < min_seq || best.as_ref().is_some_and(|b| v.seq <= b.value.seq) {
                continue;
            }
            if !v.verify(public_key) {
                continue;
            }
            let found = MutableGet {
                value: v,
                from: reply.from,
            };
            if !latest {
                return Some(found);
            }
            best = Some(found);
        }
        best
    }

    /// Stores `value` under its BLAKE2b-256 hash on the closest storing nodes.
    pub async fn immutable_put(&self, value: &[u8]) -> Result<ImmutablePut, DhtError> {
        check_len(value)?;
        let target = hash(value);
        let closest = self
            .node
            .query(
                target,
                commands::IMMUTABLE_GET,
                None,
                QueryOptions::default(),
            )
            .closest()
            .await;
        let writes = tokened(&closest, value);
        let stored_on = self.commit(target, commands::IMMUTABLE_PUT, writes).await?;
        Ok(ImmutablePut {
            hash: target,
            stored_on,
        })
    }

    /// The value whose hash is `target`, and the node it came from.
    pub async fn immutable_get(&self, target: NodeId) -> Option<(Vec<u8>, SocketAddr)> {
        let mut q = self.node.query(
            target,
            commands::IMMUTABLE_GET,
            None,
            QueryOptions::default(),
        );
        while let Some(reply) = q.next().await {
            if let Some(v) = reply.value.filter(|v| hash(v) == target) {
                return Some((v, reply.from));
            }
        }
        None
    }

    async fn lookup_closest(&self, topic: NodeId) -> Vec<Reply> {
        self.node
            .query(topic, commands::LOOKUP, None, QueryOptions::default())
            .closest()
            .await
    }

    /// Sends one write per `(node, token, value)`, all at once, and returns the nodes that
    /// accepted. Fails if there was nobody to write to, or everyone refused.
    pub(super) async fn commit(
        &self,
        target: NodeId,
        command: u64,
        writes: Vec<(SocketAddr, [u8; 32], Vec<u8>)>,
    ) -> Result<Vec<SocketAddr>, DhtError> {
        if writes.is_empty() {
            return Err(DhtError::TooFewNodes);
        }
        let mut set = JoinSet::new();
        for (to, token, value) in writes {
            let node = self.node.clone();
            let req = UserRequest {
                token: Some(token),
                command,
                target: Some(target),
                value: Some(value),
                ..UserRequest::default()
            };
            set.spawn(async move { (to, node.request(req, to).await) });
        }
        let mut ok = Vec::new();
        let mut refused = None;
        let mut failure = None;
        while let Some(joined) = set.join_next().await {
            let Ok((to, result)) = joined else {
                continue;
            };
            match result {
                Ok(r) if r.error == 0 => ok.push(to),
                Ok(r) => refused = Some(r.error),
                Err(e) => failure = Some(e),
            }
        }
        match (ok.is_empty(), refused, failure) {
            (false, _, _) => Ok(ok),
            (true, Some(code), _) => Err(DhtError::Refused { code }),
            (true, None, Some(e)) => Err(DhtError::Request(e)),
            (true, None, None) => Err(DhtError::TooFewNodes),
        }
    }
}

fn check_len(value: &[u8]) -> Result<(), DhtError> {
    if value.len() > MAX_VALUE_LEN {
        return Err(DhtError::ValueTooLarge {
            len: value.len(),
            max: MAX_VALUE_LEN,
        });
    }
    Ok(())
}

fn uint(n: u64) -> Vec<u8> {
    let mut w = Writer::with_capacity(9);
    w.uint(n);
    w.into_bytes()
}

fn tokened(closest: &[Reply], value: &[u8]) -> Vec<(SocketAddr, [u8; 32], Vec<u8>)> {
    closest
        .iter()
        .filter_map(|r| Some((r.from, r.token?, value.to_vec())))
        .collect()
}

pub(super) fn signed_announce(
    unannounce: bool,
    topic: &NodeId,
    node_id: &NodeId,
    token: &[u8; 32],
    peer: &PeerRecord,
    key_pair: &KeyPair,
) -> Option<Vec<u8>> {
    let signable = announce_signable(unannounce, topic, node_id, token, peer, None).ok()?;
    Announce {
        peer: Some(peer.clone()),
        refresh: None,
        signature: Some(key_pair.sign(&signable)),
        bump: 0,
    }
    .encode()
    .ok()
}
