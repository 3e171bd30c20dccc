//! Peers and the dial queue: whom to dial when, incoming connections, the duplicate rule,
//! and what happens when a connection ends.

use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use super::{hex, Actor, Conn, ConnState, Event};
use crate::dht::PeerRecord;
use crate::swarm::connection::{Connection, Shared};
use crate::swarm::network::{Network, NetworkError, SecureStream};
use crate::swarm::peer::Peer;

impl<N: Network> Actor<N> {
    pub(super) fn upsert(
        &mut self,
        key: [u8; 32],
        relays: Vec<std::net::SocketAddr>,
    ) -> Option<&mut Peer> {
        if key == self.public_key {
            return None;
        }
        let peer = self
            .peers
            .entry(key)
            .or_insert_with(|| Peer::new(key, Vec::new()));
        // The latest sighting is the best guess of where the peer is.
        peer.relay_addresses = relays;
        Some(peer)
    }

    /// Makes sure `key` has an entry without touching its addresses.
    pub(super) fn upsert_keep(&mut self, key: [u8; 32]) {
        if key != self.public_key {
            self.peers
                .entry(key)
                .or_insert_with(|| Peer::new(key, Vec::new()));
        }
    }

    pub(super) fn ban_peer(&mut self, key: [u8; 32], banned: bool) {
        let Some(peer) = self.peers.get_mut(&key) else {
            return;
        };
        peer.banned = banned;
        let mut set = self.banned.lock().unwrap_or_else(|e| e.into_inner());
        if banned {
            set.insert(key);
        } else {
            set.remove(&key);
        }
        drop(set);
        self.stats.banned_peers += 1;
        if !banned {
            self.maybe_delete_peer(key);
        }
    }

    pub(super) fn maybe_delete_peer(&mut self, key: [u8; 32]) {
        let gc = self.peers.get(&key).is_some_and(Peer::should_gc);
        if gc && !self.all.contains_key(&key) {
            self.peers.remove(&key);
        }
    }

    pub(super) fn handle_peer(&mut self, record: PeerRecord, topic: [u8; 32]) {
        let key = record.public_key;
        let connected = self.all.contains_key(&key);
        let Some(peer) = self.upsert(key, record.relay_addresses) else {
            return;
        };
        peer.add_topic(topic);
        if connected {
            return;
        }
        // A rediscovered peer gets a fresh start unless it is doing fine as one we dial.
        if !peer.prioritized() || peer.is_server() {
            peer.reset();
        }
        if peer.update_priority() {
            self.enqueue(key);
        }
    }

    pub(super) fn enqueue(&mut self, key: [u8; 32]) {
        let Some(peer) = self.peers.get_mut(&key) else {
            return;
        };
        if peer.queued {
            return;
        }
        peer.queued = true;
        peer.flush_tick = self.flush_tick;
        self.queue.add(key, peer.priority);
        self.attempt_client_connections();
    }

    pub(super) fn requeue(&mut self, batch: Vec<[u8; 32]>) {
        if self.suspended {
            return;
        }
        for key in batch {
            let connected = self.all.contains_key(&key);
            let Some(peer) = self.peers.get_mut(&key) else {
                continue;
            };
            peer.waiting = false;
            if !peer.update_priority() || connected || peer.queued {
                continue;
            }
            peer.queued = true;
            peer.flush_tick = self.flush_tick;
            self.queue.add(key, peer.priority);
        }
        self.attempt_client_connections();
    }

    pub(super) fn within_max_peers(&self) -> bool {
        let factor = match self.explicit.len() {
            0 => 1,
            1 => 2,
            2 | 3 => 3,
            _ => 4,
        };
        factor * self.all.len() < self.opts.max_peers
    }

    pub(super) fn should_connect_explicit(&self) -> bool {
        !self.destroyed && !self.suspended && self.connecting < self.opts.max_parallel
    }

    pub(super) fn should_connect(&self) -> bool {
        self.should_connect_explicit()
            && self.within_max_peers()
            && self.client_connections < self.opts.max_client_connections
    }

    pub(super) fn should_requeue(&self, peer: &Peer) -> bool {
        if self.suspended || self.destroyed {
            return false;
        }
        peer.explicit || peer.topics.iter().any(|t| self.topics.contains_key(t))
    }

    pub(super) fn attempt_client_connections(&mut self) {
        if self.draining || self.suspended {
            return;
        }
        self.draining = true;
        let now = Instant::now();
        for key in self.explicit.clone() {
            if !self.should_connect_explicit() {
                break;
            }
            let Some(peer) = self.peers.get(&key) else {
                continue;
            };
            // Explicit peers back off by a second per failed attempt and give up after five.
            let backoff = Duration::from_secs(peer.attempts.into());
            let too_soon = peer
                .disconnected_time
                .is_some_and(|t| now.duration_since(t) < backoff);
            if peer.attempts >= 5 || too_soon {
                continue;
            }
            self.connect(key, false);
        }
        while !self.queue.is_empty() && self.should_connect() {
            let Some(key) = self.queue.shift(&mut self.rng) else {
                break;
            };
            if let Some(peer) = self.peers.get_mut(&key) {
                peer.queued = false;
                self.connect(key, true);
            }
        }
        self.draining = false;
        if self.connecting == 0 {
            self.flush_all_maybe();
        }
    }

    /// Our own firewall check: own key, banned peers, then the user's, which bans.
    pub(super) fn refuse(&mut self, key: [u8; 32]) -> bool {
        if key == self.public_key || self.peers.get(&key).is_some_and(|p| p.banned) {
            return true;
        }
        let refused = self.opts.firewall.as_ref().is_some_and(|f| f(&key));
        if refused {
            self.upsert_keep(key);
            self.ban_peer(key, true);
        }
        refused
    }

    pub(super) fn connect(&mut self, key: [u8; 32], queued: bool) {
        let Some(peer) = self.peers.get(&key) else {
            return;
        };
        if peer.banned || self.all.contains_key(&key) || self.refuse(key) {
            if queued {
                self.flush_maybe(key);
            }
            return;
        }
        let (relays, force_relaying) = self
            .peers
            .get(&key)
            .map(|p| (p.relay_addresses.clone(), p.force_relaying))
            .unwrap_or_default();
        // As JS hyperswarm's default relay policy: relay when a dial failed in a way only
        // a relay fixes, or when our own NAT is random.
        let relay_through = self
            .opts
            .relay_through
            .filter(|_| force_relaying || self.net.randomized());
        self.next_id += 1;
        let id = self.next_id;
        let (net, kp, ev) = (self.net.clone(), self.key_pair.clone(), self.ev_tx.clone());
        let task = tokio::spawn(async move {
            let result = net.connect(&kp, key, relays, relay_through).await;
            // The swarm may be gone; the stream then just closes.
            let _ = ev.send(Event::Connected { id, key, result });
        });
        self.all.insert(
            key,
            Conn {
                id,
                client: true,
                queued,
                state: ConnState::Connecting(task.abort_handle()),
            },
        );
        self.stats.client.attempted += 1;
        self.connecting += 1;
        self.client_connections += 1;
        self.update();
    }

    pub(super) fn connect_done(&mut self) {
        self.connecting -= 1;
        if self.connecting < self.opts.max_parallel {
            self.attempt_client_connections();
        }
        if self.connecting == 0 {
            self.flush_all_maybe();
        }
    }

    pub(super) fn on_connected(
        &mut self,
        id: u64,
        key: [u8; 32],
        result: Result<N::Stream, NetworkError>,
    ) {
        let current = self
            .all
            .get(&key)
            .is_some_and(|c| c.id == id && matches!(c.state, ConnState::Connecting(_)));
        if !current {
            return;
        }
        let stream = match result {
            Ok(stream) => stream,
            Err(e) => {
                tracing::debug!(peer = %hex(&key), error = %e, "connect failed");
                if self.opts.relay_through.is_some() && e.needs_relay() {
                    if let Some(peer) = self.peers.get_mut(&key) {
                        peer.force_relaying = true;
                        // Start over, so the relayed try comes soon.
                        peer.attempts = 0;
                    }
                }
                self.close_conn(key);
                return;
            }
        };
        self.stats.client.opened += 1;
        let shared = Shared::new(stream);
        let queued = match self.all.get_mut(&key) {
            Some(c) => {
                c.state = ConnState::Open(shared.clone());
                c.queued
            }
            None => return,
        };
        self.connect_done();
        let now = Instant::now();
        if let Some(peer) = self.peers.get_mut(&key) {
            peer.connected(now);
            peer.client = true;
        }
        self.emit(key, id, shared, true);
        if queued {
            self.flush_maybe(key);
        }
        self.update();
    }

    pub(super) fn on_incoming(&mut self, stream: N::Stream) {
        if self.destroyed || self.suspended {
            return;
        }
        let key = stream.remote_public_key();
        let replaces_incoming = self.all.get(&key).is_some_and(|c| !c.client);
        let incoming = self.server_connections - usize::from(replaces_incoming);
        if key == self.public_key || incoming >= self.opts.max_server_connections {
            return;
        }
        if let Some(existing) = self.all.get(&key) {
            // Both ends must keep the same one of two connections between them. A used
            // existing one means the peer lost it and is reconnecting; otherwise the
            // connection dialled by the peer with the larger key survives.
            let outdated = match &existing.state {
                ConnState::Open(s) => s.is_established(),
                ConnState::Connecting(_) => false,
            };
            let we_should_dial = self.public_key > key;
            let keep_new = outdated || !we_should_dial;
            if !keep_new {
                tracing::debug!(peer = %hex(&key), "duplicate connection: keeping ours");
                return;
            }
            tracing::debug!(peer = %hex(&key), "duplicate connection: keeping theirs");
            self.kill(key);
        }
        self.stats.server.opened += 1;
        if self.upsert(key, Vec::new()).is_none() {
            return;
        }
        self.next_id += 1;
        let id = self.next_id;
        let shared = Shared::new(stream);
        self.all.insert(
            key,
            Conn {
                id,
                client: false,
                queued: false,
                state: ConnState::Open(shared.clone()),
            },
        );
        self.server_connections += 1;
        if let Some(peer) = self.peers.get_mut(&key) {
            peer.client = false;
        }
        self.emit(key, id, shared, false);
        self.update();
    }

    pub(super) fn emit(
        &mut self,
        key: [u8; 32],
        id: u64,
        shared: Arc<Shared<N::Stream>>,
        initiator: bool,
    ) {
        let Some(info) = self.peers.get(&key).map(Peer::info) else {
            return;
        };
        if let Some(closed) = shared.with_stream(|s| s.closed()) {
            let tx = self.closed_tx.clone();
            tokio::spawn(async move {
                closed.await;
                let _ = tx.send(id);
            });
        }
        let conn = Connection::new(shared, id, key, initiator, self.closed_tx.clone());
        if let Some(tx) = &self.accept_tx {
            let _ = tx.send((conn, info));
        }
    }

    pub(super) fn on_closed(&mut self, id: u64) {
        let key = self
            .all
            .iter()
            .find(|(_, c)| c.id == id && matches!(c.state, ConnState::Open(_)))
            .map(|(k, _)| *k);
        if let Some(key) = key {
            self.close_conn(key);
        }
    }

    /// Closes our connection (or attempt) to `key` from our side.
    pub(super) fn kill(&mut self, key: [u8; 32]) {
        match self.all.get(&key).map(|c| &c.state) {
            Some(ConnState::Connecting(task)) => task.abort(),
            Some(ConnState::Open(shared)) => shared.close(),
            None => return,
        }
        self.close_conn(key);
    }

    /// What happens when a connection or attempt ends, whoever ended it.
    pub(super) fn close_conn(&mut self, key: [u8; 32]) {
        let Some(conn) = self.all.get(&key) else {
            return;
        };
        let opened = matches!(conn.state, ConnState::Open(_));
        let (client, queued) = (conn.client, conn.queued);
        let now = Instant::now();
        if !client {
            self.all.remove(&key);
            self.server_connections -= 1;
            self.stats.server.closed += 1;
            self.maybe_delete_peer(key);
            self.attempt_client_connections();
            self.update();
            return;
        }
        // Still listed while the freed slot is handed out, so it is not dialled again at once.
        if !opened {
            self.connect_done();
        }
        self.stats.client.closed += 1;
        self.all.remove(&key);
        self.client_connections -= 1;
        let mut flush_tick = None;
        if let Some(peer) = self.peers.get_mut(&key) {
            peer.disconnected(now);
            flush_tick = Some(peer.flush_tick);
        }
        let requeue = self.peers.get(&key).is_some_and(|p| self.should_requeue(p));
        if let Some(peer) = self.peers.get_mut(&key) {
            peer.waiting = requeue && self.timer.add(now, peer);
        }
        self.maybe_delete_peer(key);
        if !opened && queued {
            if let Some(tick) = flush_tick {
                self.flush_tick_done(tick);
            }
        }
        self.attempt_client_connections();
        self.update();
    }

    // ---- explicit peers ----

    pub(super) fn join_peer(&mut self, key: [u8; 32]) {
        if self.upsert(key, Vec::new()).is_none() {
            return;
        }
        if !self.explicit.contains(&key) {
            self.explicit.push(key);
        }
        let connected = self.all.contains_key(&key);
        let Some(peer) = self.peers.get_mut(&key) else {
            return;
        };
        peer.explicit = true;
        if !connected && peer.update_priority() {
            self.enqueue(key);
        }
    }

    pub(super) fn leave_peer(&mut self, key: [u8; 32]) {
        let Some(peer) = self.peers.get_mut(&key) else {
            return;
        };
        peer.explicit = false;
        self.explicit.retain(|k| *k != key);
        self.maybe_delete_peer(key);
    }
}
