//! The walks Hyperswarm runs per topic: an announce that also reports the peers it passes
//! and can first clear our stale records (JS hyperdht's `announce(.., { clear })`), and a
//! lookup that removes our record on the way (`lookupAndUnannounce`).

use std::net::SocketAddr;

use super::client::{signed_announce, DhtError, HyperDht};
use super::commands;
use super::keys::KeyPair;
use super::records::{LookupReply, PeerRecord};
use crate::rpc::{NodeId, QueryOptions, Reply};

/// A storing node holding this many records under a topic may hold ours among the ones it
/// did not return, so it gets an unannounce anyway.
const FULL_REPLY: usize = 20;

impl HyperDht {
    /// Announces `key_pair` under `topic` like [`HyperDht::announce`], passing the peers
    /// each storing node returns on the way to `found`. With `clear`, nodes that hold a
    /// record of ours get an UNANNOUNCE first, so a restarted peer leaves no stale record.
    pub async fn announce_finding(
        &self,
        topic: NodeId,
        key_pair: &KeyPair,
        relay_addresses: &[SocketAddr],
        clear: bool,
        found: impl Fn(Vec<PeerRecord>),
    ) -> Result<Vec<SocketAddr>, DhtError> {
        let closest = self
            .walk_topic(topic, clear.then_some(key_pair), &found)
            .await;
        let peer = PeerRecord {
            public_key: key_pair.public_key(),
            relay_addresses: relay_addresses.to_vec(),
        };
        let writes = closest
            .iter()
            .filter_map(|r| {
                let (id, token) = (r.from_id?, r.token?);
                let value = signed_announce(false, &topic, &id, &token, &peer, key_pair)?;
                Some((r.from, token, value))
            })
            .collect();
        self.commit(topic, commands::ANNOUNCE, writes).await
    }

    /// Looks `topic` up, passing the peers found to `found`, and removes `key_pair`'s
    /// record from every node that holds it.
    pub async fn lookup_and_unannounce(
        &self,
        topic: NodeId,
        key_pair: &KeyPair,
        found: impl Fn(Vec<PeerRecord>),
    ) {
        let now = tokio::time::Instant::now().into_std();
        self.storage()
            .stores()
            .unannounce(now, &topic, &key_pair.public_key());
        self.walk_topic(topic, Some(key_pair), &found).await;
    }

    /// Runs a LOOKUP walk, reporting peers; with `unannounce`, removes that key pair's
    /// record from the nodes that hold it before returning. Returns the closest replies.
    async fn walk_topic(
        &self,
        topic: NodeId,
        unannounce: Option<&KeyPair>,
        found: &impl Fn(Vec<PeerRecord>),
    ) -> Vec<Reply> {
        let mut q = self
            .node()
            .query(topic, commands::LOOKUP, None, QueryOptions::default());
        let mut removals = Vec::new();
        while let Some(reply) = q.next().await {
            let Some(l) = reply
                .value
                .as_deref()
                .and_then(|v| LookupReply::decode(v).ok())
            else {
                continue;
            };
            if let Some(kp) = unannounce {
                let me = kp.public_key();
                let holds =
                    l.peers.len() >= FULL_REPLY || l.peers.iter().any(|p| p.public_key == me);
                if let (true, Some(id), Some(token)) = (holds, reply.from_id, reply.token) {
                    let bare = PeerRecord {
                        public_key: me,
                        relay_addresses: Vec::new(),
                    };
                    if let Some(v) = signed_announce(true, &topic, &id, &token, &bare, kp) {
                        removals.push((reply.from, token, v));
                    }
                }
            }
            if !l.peers.is_empty() {
                found(l.peers);
            }
        }
        let closest = q.closest().await;
        if !removals.is_empty() {
            // Best effort, as in JS: a node that missed the unannounce lets the record expire.
            let _ = self.commit(topic, commands::UNANNOUNCE, removals).await;
        }
        closest
    }
}
