//! What a persistent HyperDHT node stores for others: peer records under topics, servers'
//! self-announces (which make this node their handshake relay), and signed mutable and
//! hash-addressed immutable values. Every write is checked (token, target, signature, seq)
//! and anything that fails is dropped or refused without being stored.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use super::cache::{GenCache, RecordCache};
use super::commands;
use super::errors::{SEQ_REUSED, SEQ_TOO_LOW};
use super::keys::{hash, verify};
use super::records::{
    announce_signable, Announce, LookupReply, MutablePut, MutableValue, PeerRecord,
    MAX_LOOKUP_RECORDS, MAX_RELAY_ADDRESSES,
};
use super::server::LocalServer;
use crate::encoding::Reader;
use crate::rpc::{CommandHandler, IncomingRequest, NodeId, ReplyOptions, Responder};

/// How long records and self-announces live without a refresh.
pub const RECORD_MAX_AGE: Duration = Duration::from_secs(20 * 60);
/// How long mutable and immutable values live without a refresh.
pub const VALUE_MAX_AGE: Duration = Duration::from_secs(48 * 60 * 60);
/// Entries per cache generation before an early collection.
pub const MAX_ENTRIES: usize = 65536;
/// Bytes of values per cache generation before an early collection. JS bounds only the
/// entry count (32768 values of up to ~64 KiB: 2 GiB); this keeps a node's value stores
/// under 2 × 64 MiB whatever the network sends.
pub const MAX_VALUE_BYTES: usize = 64 * 1024 * 1024;
/// A bump further in the future than this is ignored.
const MAX_BUMP_DRIFT_MS: u64 = 60_000;

/// A server's announce of itself: the node relays handshakes to `relay`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Forward {
    /// The server's address as this node saw the announce arrive.
    pub relay: SocketAddr,
    /// The server's encoded peer record.
    pub record: Vec<u8>,
}

/// The stores, shared between the node's request handler and its owner.
pub struct Stores {
    pub(crate) servers: HashMap<[u8; 32], LocalServer>,
    records: RecordCache,
    forwards: GenCache<[u8; 32], Forward>,
    bumps: GenCache<[u8; 32], u64>,
    refreshes: GenCache<[u8; 32], Refresh>,
    mutables: GenCache<[u8; 32], MutableValue>,
    immutables: GenCache<[u8; 32], Vec<u8>>,
}

#[derive(Debug, Clone)]
struct Refresh {
    topic: [u8; 32],
    record: Vec<u8>,
    announce_self: bool,
}

impl std::fmt::Debug for Stores {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Stores")
            .field("servers", &self.servers.len())
            .finish_non_exhaustive()
    }
}

impl Default for Stores {
    fn default() -> Self {
        Stores {
            servers: HashMap::new(),
            records: RecordCache::new(MAX_ENTRIES, RECORD_MAX_AGE),
            forwards: GenCache::new(MAX_ENTRIES, RECORD_MAX_AGE),
            bumps: GenCache::new(MAX_ENTRIES, RECORD_MAX_AGE),
            refreshes: GenCache::new(MAX_ENTRIES, RECORD_MAX_AGE),
            mutables: GenCache::new(MAX_ENTRIES / 2, VALUE_MAX_AGE)
                .with_byte_limit(MAX_VALUE_BYTES, |m: &MutableValue| m.value.len()),
            immutables: GenCache::new(MAX_ENTRIES / 2, VALUE_MAX_AGE)
                .with_byte_limit(MAX_VALUE_BYTES, Vec::len),
        }
    }
}

impl Stores {
    /// The records stored under `topic` (at most `n`, random).
    pub fn records(&mut self, now: Instant, topic: &NodeId, n: usize) -> Vec<PeerRecord> {
        self.records
            .get(now, &topic.0, n)
            .iter()
            .filter_map(|r| PeerRecord::decode(r).ok())
            .collect()
    }

    /// The stored mutable value for `target`.
    pub fn mutable(&mut self, now: Instant, target: &NodeId) -> Option<MutableValue> {
        self.mutables.get(now, &target.0)
    }

    /// The stored immutable value for `target`.
    pub fn immutable(&mut self, now: Instant, target: &NodeId) -> Option<Vec<u8>> {
        self.immutables.get(now, &target.0)
    }

    /// The self-announce of the server whose key hashes to `target`.
    pub fn forward(&mut self, now: Instant, target: &NodeId) -> Option<Forward> {
        self.forwards.get(now, &target.0)
    }

    /// Forgets `public_key` under `topic` (and as a server if the topic is its own key).
    pub fn unannounce(&mut self, now: Instant, topic: &NodeId, public_key: &[u8; 32]) {
        if hash(public_key) == *topic {
            self.forwards.remove(now, &topic.0);
        }
        self.records.remove(now, &topic.0, public_key);
    }
}

/// The request handler of a HyperDHT node. Relays handshakes and holepunches to servers
/// that announced themselves here, and answers the storage commands while the node is
/// persistent; an ephemeral node leaves those to dht-rpc, which replies UNKNOWN_COMMAND.
#[derive(Debug, Clone, Default)]
pub struct Storage {
    stores: Arc<Mutex<Stores>>,
}

impl Storage {
    /// Empty stores.
    pub fn new() -> Self {
        Self::default()
    }

    /// The stores, for inspection or local removal.
    pub fn stores(&self) -> MutexGuard<'_, Stores> {
        // A panic while holding the lock cannot leave the caches half-updated in a way
        // that matters more than losing them, so poisoning is ignored.
        self.stores.lock().unwrap_or_else(|p| p.into_inner())
    }
}

fn unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// Replies with no value, token or closer nodes: how (un)announce acknowledge.
const BARE: ReplyOptions = ReplyOptions {
    token: false,
    closer_nodes: false,
    to: None,
};

/// Error replies carry closer nodes but no token, as dht-rpc's `req.error` does by default.
const REFUSED: ReplyOptions = ReplyOptions {
    token: false,
    closer_nodes: true,
    to: None,
};

impl CommandHandler for Storage {
    fn on_request(&mut self, req: &IncomingRequest, out: &mut Responder<'_>) -> bool {
        let now = out.node().now();
        let mut stores = self.stores();
        let s = &mut *stores;
        // Every node routes handshakes and holepunches; only persistent ones store.
        match req.command {
            commands::PEER_HANDSHAKE => {
                super::router::on_peer_handshake(s, now, req, out);
                return true;
            }
            commands::PEER_HOLEPUNCH => {
                super::router::on_peer_holepunch(s, now, req, out);
                return true;
            }
            _ => {}
        }
        let Some(my_id) = out.node().id() else {
            return false;
        };
        match req.command {
            commands::FIND_PEER => {
                let Some(target) = req.target else {
                    return true;
                };
                let fwd = s.forwards.get(now, &target.0);
                out.reply(
                    req,
                    fwd.as_ref().map(|f| &f.record[..]),
                    ReplyOptions::default(),
                );
            }
            commands::LOOKUP => {
                let Some(target) = req.target else {
                    return true;
                };
                let mut records = s.records.get(now, &target.0, MAX_LOOKUP_RECORDS);
                if records.len() < MAX_LOOKUP_RECORDS {
                    if let Some(f) = s.forwards.get(now, &target.0) {
                        records.push(f.record);
                    }
                }
                let bump = s.bumps.get(now, &target.0).unwrap_or(0);
                let value = (!records.is_empty()).then(|| {
                    let refs: Vec<&[u8]> = records.iter().map(Vec::as_slice).collect();
                    LookupReply::encode_raw(&refs, bump)
                });
                out.reply(req, value.as_deref(), ReplyOptions::default());
            }
            commands::ANNOUNCE => {
                let (Some(target), Some(token)) = (req.target, req.token) else {
                    return true;
                };
                let Some(ann) = req.value.as_deref().and_then(|v| Announce::decode(v).ok()) else {
                    return true;
                };
                let Some(mut peer) = ann.peer.clone() else {
                    if let Some(refresh) = ann.refresh {
                        on_refresh(s, now, req, &refresh, out);
                    }
                    return true;
                };
                let Some(signature) = ann.signature else {
                    return true;
                };
                let Ok(signable) =
                    announce_signable(false, &target, &my_id, &token, &peer, ann.refresh.as_ref())
                else {
                    return true;
                };
                if !verify(&peer.public_key, &signable, &signature) {
                    return true;
                }
                peer.relay_addresses.truncate(MAX_RELAY_ADDRESSES);
                let Ok(record) = peer.encode() else {
                    return true;
                };
                let announce_self = hash(&peer.public_key) == target;
                if announce_self {
                    let fwd = Forward {
                        relay: req.from,
                        record: record.clone(),
                    };
                    s.forwards.set(now, target.0, fwd);
                    s.records.remove(now, &target.0, &peer.public_key);
                } else {
                    let current = s.bumps.get(now, &target.0).unwrap_or(0);
                    if ann.bump > current && ann.bump <= unix_ms() + MAX_BUMP_DRIFT_MS {
                        s.bumps.set(now, target.0, ann.bump);
                    }
                    s.records
                        .add(now, target.0, peer.public_key, record.clone());
                }
                if let Some(refresh) = ann.refresh {
                    let r = Refresh {
                        topic: target.0,
                        record,
                        announce_self,
                    };
                    s.refreshes.set(now, refresh, r);
                }
                out.reply(req, None, BARE);
            }
            commands::UNANNOUNCE => {
                let (Some(target), Some(token)) = (req.target, req.token) else {
                    return true;
                };
                let Some(ann) = req.value.as_deref().and_then(|v| Announce::decode(v).ok()) else {
                    return true;
                };
                let (Some(peer), Some(signature)) = (&ann.peer, &ann.signature) else {
                    return true;
                };
                let Ok(signable) =
                    announce_signable(true, &target, &my_id, &token, peer, ann.refresh.as_ref())
                else {
                    return true;
                };
                if !verify(&peer.public_key, &signable, signature) {
                    return true;
                }
                s.unannounce(now, &target, &peer.public_key);
                out.reply(req, None, BARE);
            }
            commands::MUTABLE_PUT => {
                let (Some(target), Some(_)) = (req.target, req.token) else {
                    return true;
                };
                let Some(put) = req
                    .value
                    .as_deref()
                    .and_then(|v| MutablePut::decode(v).ok())
                else {
                    return true;
                };
                if hash(&put.public_key) != target || !put.stored().verify(&put.public_key) {
                    return true;
                }
                if let Some(existing) = s.mutables.get(now, &target.0) {
                    if existing.seq == put.seq && existing.value != put.value {
                        out.error(req, SEQ_REUSED, REFUSED);
                        return true;
                    }
                    if put.seq < existing.seq {
                        out.error(req, SEQ_TOO_LOW, REFUSED);
                        return true;
                    }
                }
                s.mutables.set(now, target.0, put.stored());
                out.reply(req, None, ReplyOptions::default());
            }
            commands::MUTABLE_GET => {
                let Some(target) = req.target else {
                    return true;
                };
                let Some(min_seq) = req
                    .value
                    .as_deref()
                    .and_then(|v| Reader::new(v).uint().ok())
                else {
                    return true;
                };
                let value = s
                    .mutables
                    .get(now, &target.0)
                    .filter(|m| m.seq >= min_seq)
                    .map(|m| m.encode());
                out.reply(req, value.as_deref(), ReplyOptions::default());
            }
            commands::IMMUTABLE_PUT => {
                let (Some(target), Some(_), Some(value)) = (req.target, req.token, &req.value)
                else {
                    return true;
                };
                if hash(value) != target {
                    return true;
                }
                s.immutables.set(now, target.0, value.clone());
                out.reply(req, None, ReplyOptions::default());
            }
            commands::IMMUTABLE_GET => {
                let Some(target) = req.target else {
                    return true;
                };
                let value = s.immutables.get(now, &target.0);
                out.reply(req, value.as_deref(), ReplyOptions::default());
            }
            // Plugins are not served yet: dht-rpc answers UNKNOWN_COMMAND.
            _ => return false,
        }
        true
    }
}

/// An announce without a record but with a refresh value re-adds the record remembered under
/// hash(refresh), and remembers it under the new value.
fn on_refresh(
    s: &mut Stores,
    now: Instant,
    req: &IncomingRequest,
    refresh: &[u8; 32],
    out: &mut Responder<'_>,
) {
    let key = hash(refresh).0;
    let Some(r) = s.refreshes.get(now, &key) else {
        return;
    };
    let Ok(peer) = PeerRecord::decode(&r.record) else {
        return;
    };
    if r.announce_self {
        let fwd = Forward {
            relay: req.from,
            record: r.record.clone(),
        };
        s.forwards.set(now, r.topic, fwd);
        s.records.remove(now, &r.topic, &peer.public_key);
    } else {
        s.records
            .add(now, r.topic, peer.public_key, r.record.clone());
    }
    s.refreshes.remove(now, &key);
    s.refreshes.set(now, *refresh, r);
    out.reply(req, None, BARE);
}
