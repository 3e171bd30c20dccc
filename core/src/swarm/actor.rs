//! The task that owns a swarm's state and applies JS Hyperswarm's connection policy: the
//! dial queue, limits, retries, duplicate connections, topics and flushes. Handles talk to
//! it with [`Cmd`]s; the tasks it spawns report back with [`Event`]s.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rand::rngs::StdRng;
use rand::SeedableRng;
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::AbortHandle;
use tokio::time::Instant;

use super::config::{JoinOptions, SwarmError, SwarmOptions, SwarmStats};
use super::connection::{Connection, Shared};
use super::discovery::{run_round, ListenState, Refresh, RoundPlan, Topic};
use super::network::{Listener, Network, NetworkError, PeerSink, Refuse, SecureStream};
use super::peer::{Peer, PeerInfo};
use super::queue::ShuffledQueue;
use super::retry::{Backoffs, RetryTimer};
use crate::dht::{KeyPair, PeerRecord};

/// Where an operation's outcome goes.
pub(crate) type Reply = oneshot::Sender<Result<bool, SwarmError>>;

/// A new connection for the application.
pub(crate) type Accepted<S> = (Connection<S>, PeerInfo);

/// Requests from the handles.
pub(crate) enum Cmd {
    Join {
        topic: [u8; 32],
        options: JoinOptions,
        reply: oneshot::Sender<Result<(u64, u64), SwarmError>>,
    },
    SessionRefresh {
        topic: [u8; 32],
        gen: u64,
        session: u64,
        options: Option<JoinOptions>,
        reply: Reply,
    },
    SessionDestroy {
        topic: [u8; 32],
        gen: u64,
        session: u64,
        reply: Reply,
    },
    Flushed {
        topic: [u8; 32],
        gen: u64,
        reply: Reply,
    },
    Leave {
        topic: [u8; 32],
        reply: Reply,
    },
    AllFlushed {
        reply: oneshot::Sender<Vec<oneshot::Receiver<Result<bool, SwarmError>>>>,
    },
    Flush {
        reply: Reply,
    },
    Listen {
        reply: Reply,
    },
    JoinPeer([u8; 32]),
    LeavePeer([u8; 32]),
    Ban([u8; 32], bool),
    Peer {
        key: [u8; 32],
        reply: oneshot::Sender<Option<PeerInfo>>,
    },
    Suspend {
        reply: Reply,
    },
    Resume {
        reply: Reply,
    },
    Destroy {
        reply: Option<Reply>,
    },
}

/// Reports from the tasks the swarm spawned.
pub(crate) enum Event<S> {
    Connected {
        id: u64,
        key: [u8; 32],
        result: Result<S, NetworkError>,
    },
    Incoming(S),
    Refused([u8; 32]),
    ListenFailed,
    Found {
        topic: [u8; 32],
        gen: u64,
        clock: u64,
        peers: Vec<PeerRecord>,
    },
    RoundDone {
        topic: [u8; 32],
        gen: u64,
        clock: u64,
        ok: bool,
    },
}

enum ConnState<S> {
    Connecting(AbortHandle),
    Open(Arc<Shared<S>>),
}

struct Conn<S> {
    id: u64,
    client: bool,
    /// Dialled from the queue (as opposed to an explicit peer): counts towards flushes.
    queued: bool,
    state: ConnState<S>,
}

struct PendingFlush {
    reply: Reply,
    missing: usize,
    tick: u64,
}

/// The channels a swarm's handles keep.
pub(crate) struct Handles<S> {
    pub cmd: mpsc::UnboundedSender<Cmd>,
    pub accept: mpsc::UnboundedReceiver<Accepted<S>>,
    pub stats: watch::Receiver<SwarmStats>,
}

pub(crate) struct Actor<N: Network> {
    net: N,
    key_pair: KeyPair,
    public_key: [u8; 32],
    opts: SwarmOptions,
    rng: StdRng,
    backoffs: Backoffs,
    cmd_rx: mpsc::UnboundedReceiver<Cmd>,
    ev_tx: mpsc::UnboundedSender<Event<N::Stream>>,
    ev_rx: mpsc::UnboundedReceiver<Event<N::Stream>>,
    closed_tx: mpsc::UnboundedSender<u64>,
    closed_rx: mpsc::UnboundedReceiver<u64>,
    accept_tx: Option<mpsc::UnboundedSender<Accepted<N::Stream>>>,
    stats_tx: watch::Sender<SwarmStats>,
    stats: SwarmStats,
    peers: HashMap<[u8; 32], Peer>,
    explicit: Vec<[u8; 32]>,
    queue: ShuffledQueue,
    timer: RetryTimer,
    all: HashMap<[u8; 32], Conn<N::Stream>>,
    topics: HashMap<[u8; 32], Topic>,
    leaving: HashMap<[u8; 32], watch::Receiver<bool>>,
    listening: Option<(watch::Receiver<ListenState>, AbortHandle)>,
    banned: Arc<Mutex<HashSet<[u8; 32]>>>,
    destroyed: bool,
    suspended: bool,
    connecting: usize,
    client_connections: usize,
    server_connections: usize,
    draining: bool,
    flush_tick: u64,
    pending_flushes: Vec<PendingFlush>,
    /// Flushes answered while handling the current message: they are told only once it is
    /// fully handled and the counters are published, as JS resolves them after its handler.
    flushed: Vec<(Reply, bool)>,
    next_id: u64,
}

impl<N: Network> Actor<N> {
    pub fn spawn(net: N, key_pair: KeyPair, opts: SwarmOptions) -> Handles<N::Stream> {
        let mut rng = match opts.rng_seed {
            Some(seed) => StdRng::seed_from_u64(seed),
            None => StdRng::from_entropy(),
        };
        let backoffs = opts.backoffs.unwrap_or_else(|| Backoffs::random(&mut rng));
        let timer = RetryTimer::new(&backoffs, &mut rng);
        let (cmd_tx, cmd_rx) = mpsc::unbounded_channel();
        let (ev_tx, ev_rx) = mpsc::unbounded_channel();
        let (closed_tx, closed_rx) = mpsc::unbounded_channel();
        let (accept_tx, accept_rx) = mpsc::unbounded_channel();
        let (stats_tx, stats_rx) = watch::channel(SwarmStats::default());
        let actor = Actor {
            net,
            public_key: key_pair.public_key(),
            key_pair,
            opts,
            rng,
            backoffs,
            cmd_rx,
            ev_tx,
            ev_rx,
            closed_tx,
            closed_rx,
            accept_tx: Some(accept_tx),
            stats_tx,
            stats: SwarmStats::default(),
            peers: HashMap::new(),
            explicit: Vec::new(),
            queue: ShuffledQueue::default(),
            timer,
            all: HashMap::new(),
            topics: HashMap::new(),
            leaving: HashMap::new(),
            listening: None,
            banned: Arc::default(),
            destroyed: false,
            suspended: false,
            connecting: 0,
            client_connections: 0,
            server_connections: 0,
            draining: false,
            flush_tick: 0,
            pending_flushes: Vec::new(),
            flushed: Vec::new(),
            next_id: 0,
        };
        tokio::spawn(actor.run());
        Handles {
            cmd: cmd_tx,
            accept: accept_rx,
            stats: stats_rx,
        }
    }

    async fn run(mut self) {
        loop {
            let deadline = self.next_deadline();
            let sleep = async {
                match deadline {
                    Some(d) => tokio::time::sleep_until(d).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                cmd = self.cmd_rx.recv() => match cmd {
                    Some(cmd) => self.on_cmd(cmd),
                    // Every handle is gone: nobody can use the swarm any more.
                    None => self.destroy(None),
                },
                Some(ev) = self.ev_rx.recv() => self.on_event(ev),
                Some(id) = self.closed_rx.recv() => self.on_closed(id),
                _ = sleep => self.on_timers(),
            }
            for (reply, ok) in self.flushed.drain(..) {
                let _ = reply.send(Ok(ok));
            }
            if self.destroyed {
                return;
            }
        }
    }

    fn next_deadline(&self) -> Option<Instant> {
        let topics = self.topics.values().filter_map(Topic::deadline);
        self.timer.deadline().into_iter().chain(topics).min()
    }

    fn on_timers(&mut self) {
        let now = Instant::now();
        let due = self.timer.fire(now);
        if !due.is_empty() {
            self.requeue(due);
        }
        let keys: Vec<[u8; 32]> = self.topics.keys().copied().collect();
        for key in keys {
            let Some(t) = self.topics.get_mut(&key) else {
                continue;
            };
            match t.take_due_timer(now) {
                Some(true) => t.refresh_later(now, true, &mut self.rng),
                Some(false) => self.refresh_topic(key, None),
                None => {}
            }
        }
    }

    fn on_cmd(&mut self, cmd: Cmd) {
        match cmd {
            Cmd::Join {
                topic,
                options,
                reply,
            } => {
                let _ = reply.send(self.join(topic, options));
            }
            Cmd::SessionRefresh {
                topic,
                gen,
                session,
                options,
                reply,
            } => self.session_refresh(topic, gen, session, options, reply),
            Cmd::SessionDestroy {
                topic,
                gen,
                session,
                reply,
            } => self.session_destroy(topic, gen, session, reply),
            Cmd::Flushed { topic, gen, reply } => match self.topics.get_mut(&topic) {
                Some(t) if t.gen == gen && t.current.is_some() => {
                    if let Some(cur) = t.current.as_mut() {
                        cur.waiters.push(reply);
                    }
                }
                _ => {
                    let _ = reply.send(Ok(true));
                }
            },
            Cmd::Leave { topic, reply } => {
                if self.topics.contains_key(&topic) {
                    self.leave_topic(topic, Some(reply));
                } else {
                    let _ = reply.send(Ok(true));
                }
            }
            Cmd::AllFlushed { reply } => {
                let mut waits = Vec::new();
                for t in self.topics.values_mut() {
                    let (tx, rx) = oneshot::channel();
                    match t.current.as_mut() {
                        Some(cur) => cur.waiters.push(tx),
                        None => {
                            let _ = tx.send(Ok(true));
                        }
                    }
                    waits.push(rx);
                }
                let _ = reply.send(waits);
            }
            Cmd::Flush { reply } => self.flush(reply),
            Cmd::Listen { reply } => {
                if self.destroyed || self.suspended {
                    let _ = reply.send(Err(SwarmError::Destroyed));
                    return;
                }
                let mut rx = self.ensure_listening();
                tokio::spawn(async move {
                    let r = match rx.wait_for(Option::is_some).await {
                        Ok(state) => match state.as_ref() {
                            Some(Ok(_)) => Ok(true),
                            Some(Err(e)) => Err(SwarmError::Network(e.clone())),
                            None => Ok(false),
                        },
                        Err(_) => Ok(false),
                    };
                    let _ = reply.send(r);
                });
            }
            Cmd::JoinPeer(key) => self.join_peer(key),
            Cmd::LeavePeer(key) => self.leave_peer(key),
            Cmd::Ban(key, banned) => {
                if key != self.public_key {
                    self.upsert_keep(key);
                    self.ban_peer(key, banned);
                }
            }
            Cmd::Peer { key, reply } => {
                let _ = reply.send(self.peers.get(&key).map(Peer::info));
            }
            Cmd::Suspend { reply } => self.suspend(reply),
            Cmd::Resume { reply } => {
                self.resume();
                let _ = reply.send(Ok(true));
            }
            Cmd::Destroy { reply } => self.destroy(reply),
        }
    }

    fn on_event(&mut self, ev: Event<N::Stream>) {
        match ev {
            Event::Connected { id, key, result } => self.on_connected(id, key, result),
            Event::Incoming(stream) => self.on_incoming(stream),
            Event::Refused(key) => {
                if !self.peers.get(&key).is_some_and(|p| p.banned) {
                    self.upsert_keep(key);
                    self.ban_peer(key, true);
                }
            }
            Event::ListenFailed => self.listening = None,
            Event::Found {
                topic,
                gen,
                clock,
                peers,
            } => self.on_found(topic, gen, clock, peers),
            Event::RoundDone {
                topic,
                gen,
                clock,
                ok,
            } => self.on_round_done(topic, gen, clock, ok),
        }
    }

    // ---- peers and the dial queue ----

    fn upsert(&mut self, key: [u8; 32], relays: Vec<std::net::SocketAddr>) -> Option<&mut Peer> {
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
    fn upsert_keep(&mut self, key: [u8; 32]) {
        if key != self.public_key {
            self.peers
                .entry(key)
                .or_insert_with(|| Peer::new(key, Vec::new()));
        }
    }

    fn ban_peer(&mut self, key: [u8; 32], banned: bool) {
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

    fn maybe_delete_peer(&mut self, key: [u8; 32]) {
        let gc = self.peers.get(&key).is_some_and(Peer::should_gc);
        if gc && !self.all.contains_key(&key) {
            self.peers.remove(&key);
        }
    }

    fn handle_peer(&mut self, record: PeerRecord, topic: [u8; 32]) {
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

    fn enqueue(&mut self, key: [u8; 32]) {
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

    fn requeue(&mut self, batch: Vec<[u8; 32]>) {
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

    fn within_max_peers(&self) -> bool {
        let factor = match self.explicit.len() {
            0 => 1,
            1 => 2,
            2 | 3 => 3,
            _ => 4,
        };
        factor * self.all.len() < self.opts.max_peers
    }

    fn should_connect_explicit(&self) -> bool {
        !self.destroyed && !self.suspended && self.connecting < self.opts.max_parallel
    }

    fn should_connect(&self) -> bool {
        self.should_connect_explicit()
            && self.within_max_peers()
            && self.client_connections < self.opts.max_client_connections
    }

    fn should_requeue(&self, peer: &Peer) -> bool {
        if self.suspended || self.destroyed {
            return false;
        }
        peer.explicit || peer.topics.iter().any(|t| self.topics.contains_key(t))
    }

    fn attempt_client_connections(&mut self) {
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
    fn refuse(&mut self, key: [u8; 32]) -> bool {
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

    fn connect(&mut self, key: [u8; 32], queued: bool) {
        let Some(peer) = self.peers.get(&key) else {
            return;
        };
        if peer.banned || self.all.contains_key(&key) || self.refuse(key) {
            if queued {
                self.flush_maybe(key);
            }
            return;
        }
        let relays = self
            .peers
            .get(&key)
            .map(|p| p.relay_addresses.clone())
            .unwrap_or_default();
        self.next_id += 1;
        let id = self.next_id;
        let (net, kp, ev) = (self.net.clone(), self.key_pair.clone(), self.ev_tx.clone());
        let task = tokio::spawn(async move {
            let result = net.connect(&kp, key, relays).await;
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

    fn connect_done(&mut self) {
        self.connecting -= 1;
        if self.connecting < self.opts.max_parallel {
            self.attempt_client_connections();
        }
        if self.connecting == 0 {
            self.flush_all_maybe();
        }
    }

    fn on_connected(&mut self, id: u64, key: [u8; 32], result: Result<N::Stream, NetworkError>) {
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

    fn on_incoming(&mut self, stream: N::Stream) {
        if self.destroyed || self.suspended {
            return;
        }
        let key = stream.remote_public_key();
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
        if self.server_connections >= self.opts.max_server_connections || key == self.public_key {
            return;
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

    fn emit(&mut self, key: [u8; 32], id: u64, shared: Arc<Shared<N::Stream>>, initiator: bool) {
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

    fn on_closed(&mut self, id: u64) {
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
    fn kill(&mut self, key: [u8; 32]) {
        match self.all.get(&key).map(|c| &c.state) {
            Some(ConnState::Connecting(task)) => task.abort(),
            Some(ConnState::Open(shared)) => shared.close(),
            None => return,
        }
        self.close_conn(key);
    }

    /// What happens when a connection or attempt ends, whoever ended it.
    fn close_conn(&mut self, key: [u8; 32]) {
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

    // ---- flushes ----

    fn flush_maybe(&mut self, key: [u8; 32]) {
        if let Some(tick) = self.peers.get(&key).map(|p| p.flush_tick) {
            self.flush_tick_done(tick);
        }
    }

    /// A peer queued at `tick` has had its try.
    fn flush_tick_done(&mut self, tick: u64) {
        let mut i = 0;
        while i < self.pending_flushes.len() {
            let f = &mut self.pending_flushes[i];
            if tick > f.tick {
                i += 1;
                continue;
            }
            f.missing = f.missing.saturating_sub(1);
            if f.missing > 0 {
                i += 1;
                continue;
            }
            let f = self.pending_flushes.remove(i);
            self.flushed.push((f.reply, true));
        }
    }

    fn flush_all_maybe(&mut self) -> bool {
        let room =
            self.within_max_peers() && self.client_connections < self.opts.max_client_connections;
        if self.connecting > 0 || room {
            return false;
        }
        for f in self.pending_flushes.drain(..) {
            self.flushed.push((f.reply, true));
        }
        true
    }

    fn flush(&mut self, reply: Reply) {
        if self.destroyed {
            let _ = reply.send(Ok(false));
            return;
        }
        if self.flush_all_maybe() {
            let _ = reply.send(Ok(true));
            return;
        }
        let open = self
            .all
            .values()
            .filter(|c| matches!(c.state, ConnState::Open(_)))
            .count();
        let pending = self.all.len() - open;
        if self.queue.is_empty() && pending == 0 {
            let _ = reply.send(Ok(true));
            return;
        }
        self.pending_flushes.push(PendingFlush {
            reply,
            missing: self.queue.len() + pending,
            tick: self.flush_tick,
        });
        self.flush_tick += 1;
    }

    // ---- explicit peers ----

    fn join_peer(&mut self, key: [u8; 32]) {
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

    fn leave_peer(&mut self, key: [u8; 32]) {
        let Some(peer) = self.peers.get_mut(&key) else {
            return;
        };
        peer.explicit = false;
        self.explicit.retain(|k| *k != key);
        self.maybe_delete_peer(key);
    }

    // ---- topics ----

    fn join(&mut self, topic: [u8; 32], options: JoinOptions) -> Result<(u64, u64), SwarmError> {
        if self.destroyed {
            return Err(SwarmError::Destroyed);
        }
        if !options.server && !options.client {
            return Err(SwarmError::NoMode);
        }
        self.next_id += 1;
        let session = self.next_id;
        if !self.topics.contains_key(&topic) {
            self.next_id += 1;
            let wait = self.leaving.remove(&topic).filter(|w| !*w.borrow());
            self.topics
                .insert(topic, Topic::new(self.next_id, self.suspended, wait));
        }
        let Some(t) = self.topics.get_mut(&topic) else {
            return Err(SwarmError::Destroyed);
        };
        t.sessions.insert(session, (options.server, options.client));
        t.limit = options.limit;
        let gen = t.gen;
        self.refresh_topic(topic, None);
        Ok((gen, session))
    }

    fn session_refresh(
        &mut self,
        topic: [u8; 32],
        gen: u64,
        session: u64,
        options: Option<JoinOptions>,
        reply: Reply,
    ) {
        let Some(t) = self
            .topics
            .get_mut(&topic)
            .filter(|t| t.gen == gen && t.sessions.contains_key(&session))
        else {
            let _ = reply.send(Err(SwarmError::SessionDestroyed));
            return;
        };
        if let Some(o) = options {
            if !o.server && !o.client {
                let _ = reply.send(Err(SwarmError::NoMode));
                return;
            }
            t.sessions.insert(session, (o.server, o.client));
            t.limit = o.limit;
        }
        self.refresh_topic(topic, Some(reply));
    }

    fn session_destroy(&mut self, topic: [u8; 32], gen: u64, session: u64, reply: Reply) {
        let Some(t) = self
            .topics
            .get_mut(&topic)
            .filter(|t| t.gen == gen && t.sessions.contains_key(&session))
        else {
            let _ = reply.send(Ok(true));
            return;
        };
        t.sessions.remove(&session);
        if t.sessions.is_empty() {
            self.leave_topic(topic, Some(reply));
        } else if !t.modes().0 && t.needs_unannounce {
            // The last server left: the next lookup removes our record on the way.
            self.refresh_topic(topic, Some(reply));
        } else {
            let _ = reply.send(Ok(true));
        }
    }

    /// Starts a round for `topic`, or joins the one running when the mode is unchanged.
    fn refresh_topic(&mut self, topic: [u8; 32], waiter: Option<Reply>) {
        let destroyed = self.destroyed;
        let Some(t) = self.topics.get_mut(&topic) else {
            if let Some(w) = waiter {
                let _ = w.send(Err(SwarmError::SessionDestroyed));
            }
            return;
        };
        if destroyed || t.suspended {
            if let Some(w) = waiter {
                let _ = w.send(Ok(!destroyed));
            }
            return;
        }
        let (server, client) = t.modes();
        let mut waiters: Vec<Reply> = waiter.into_iter().collect();
        if server == t.is_server && client == t.is_client {
            if let Some(cur) = t.current.as_mut() {
                cur.waiters.append(&mut waiters);
                return;
            }
        } else {
            t.is_server = server;
            t.is_client = client;
            if let Some(mut cur) = t.current.take() {
                // The mode changed: the running round answers the old question.
                cur.task.abort();
                waiters.append(&mut cur.waiters);
            }
        }
        self.start_round(topic, waiters);
    }

    fn start_round(&mut self, topic: [u8; 32], waiters: Vec<Reply>) {
        let announcing = self.topics.get(&topic).is_some_and(|t| t.is_server);
        let listening = announcing.then(|| self.ensure_listening());
        let open: HashSet<[u8; 32]> = self
            .all
            .iter()
            .filter(|(_, c)| matches!(c.state, ConnState::Open(_)))
            .map(|(k, _)| *k)
            .collect();
        let Some(t) = self.topics.get_mut(&topic) else {
            return;
        };
        t.refreshes += 1;
        let clock = t.refreshes;
        let clear = announcing && t.first_announce;
        if clear {
            t.first_announce = false;
        }
        if announcing {
            t.needs_unannounce = true;
        }
        // Peers of the last round that we are connected to use up part of the limit.
        let limit_left = match t.limit {
            Some(mut left) if left > 0 => {
                for id in &t.discovered {
                    if open.contains(id) {
                        left -= 1;
                        if left == 0 {
                            break;
                        }
                    }
                }
                Some(left)
            }
            other => other,
        };
        t.discovered.clear();
        let plan = RoundPlan {
            topic,
            key_pair: self.key_pair.clone(),
            announce: listening,
            clear,
            unannounce: !announcing && t.needs_unannounce,
            wait: t.wait.take(),
        };
        let gen = t.gen;
        let ev = self.ev_tx.clone();
        let found_ev = self.ev_tx.clone();
        let found: Arc<PeerSink> = Arc::new(move |peers: Vec<PeerRecord>| {
            let _ = found_ev.send(Event::Found {
                topic,
                gen,
                clock,
                peers,
            });
        });
        let net = self.net.clone();
        let task = tokio::spawn(async move {
            let ok = run_round(net, plan, found).await;
            let _ = ev.send(Event::RoundDone {
                topic,
                gen,
                clock,
                ok,
            });
        });
        t.current = Some(Refresh {
            clock,
            task: task.abort_handle(),
            waiters,
            announcing,
            limit_left,
        });
    }

    fn on_found(&mut self, topic: [u8; 32], gen: u64, clock: u64, peers: Vec<PeerRecord>) {
        if self.destroyed {
            return;
        }
        let open: HashSet<[u8; 32]> = self
            .all
            .iter()
            .filter(|(_, c)| matches!(c.state, ConnState::Open(_)))
            .map(|(k, _)| *k)
            .collect();
        let Some(t) = self.topics.get_mut(&topic) else {
            return;
        };
        let current = t.current.as_ref().is_some_and(|c| c.clock == clock);
        if t.gen != gen || !current || !t.is_client || t.suspended {
            return;
        }
        let admitted: Vec<PeerRecord> = peers
            .into_iter()
            .filter(|p| t.admit(p.public_key, open.contains(&p.public_key)))
            .collect();
        for p in admitted {
            self.handle_peer(p, topic);
        }
    }

    fn on_round_done(&mut self, topic: [u8; 32], gen: u64, clock: u64, ok: bool) {
        let destroyed = self.destroyed;
        let Some(t) = self.topics.get_mut(&topic) else {
            return;
        };
        if t.gen != gen || t.current.as_ref().is_none_or(|c| c.clock != clock) {
            return;
        }
        let Some(cur) = t.current.take() else {
            return;
        };
        if !destroyed && !t.suspended {
            t.refresh_later(Instant::now(), false, &mut self.rng);
        }
        if ok && !cur.announcing {
            t.needs_unannounce = false;
        }
        for w in cur.waiters {
            let _ = w.send(Ok(ok));
        }
    }

    /// Drops a topic: stops its rounds and, if we announced, unannounces in the background.
    /// Returns what signals the unannounce's end, if one runs.
    fn leave_topic(
        &mut self,
        topic: [u8; 32],
        reply: Option<Reply>,
    ) -> Option<watch::Receiver<bool>> {
        let mut t = self.topics.remove(&topic)?;
        if let Some(cur) = t.current.take() {
            cur.task.abort();
            for w in cur.waiters {
                let _ = w.send(Ok(false));
            }
        }
        let previous = t.wait.take();
        if !t.needs_unannounce {
            if let Some(p) = previous {
                self.leaving.insert(topic, p);
            }
            if let Some(r) = reply {
                let _ = r.send(Ok(true));
            }
            return None;
        }
        let done = self.unannounce_in_background(topic, previous, reply);
        self.leaving.insert(topic, done.clone());
        Some(done)
    }

    fn unannounce_in_background(
        &self,
        topic: [u8; 32],
        previous: Option<watch::Receiver<bool>>,
        reply: Option<Reply>,
    ) -> watch::Receiver<bool> {
        let (done_tx, done_rx) = watch::channel(false);
        let (net, kp) = (self.net.clone(), self.key_pair.clone());
        tokio::spawn(async move {
            if let Some(mut p) = previous {
                let _ = p.wait_for(|d| *d).await;
            }
            // Leaving succeeds even when the network fails us: the record expires anyway.
            let ok = net.unannounce(topic, &kp).await.is_ok();
            done_tx.send_replace(true);
            if let Some(r) = reply {
                let _ = r.send(Ok(ok));
            }
        });
        done_rx
    }

    fn ensure_listening(&mut self) -> watch::Receiver<ListenState> {
        if let Some((rx, _)) = &self.listening {
            return rx.clone();
        }
        let (tx, rx) = watch::channel(None);
        let (net, kp, ev) = (self.net.clone(), self.key_pair.clone(), self.ev_tx.clone());
        let refuse = self.gate();
        let task = tokio::spawn(async move {
            match net.listen(&kp, refuse).await {
                Ok(mut listener) => {
                    tx.send_replace(Some(Ok(listener.relay_addresses())));
                    while let Some(stream) = listener.accept().await {
                        if ev.send(Event::Incoming(stream)).is_err() {
                            return;
                        }
                    }
                }
                Err(e) => {
                    tracing::debug!(error = %e, "listen failed");
                    tx.send_replace(Some(Err(e)));
                    let _ = ev.send(Event::ListenFailed);
                }
            }
        });
        self.listening = Some((rx.clone(), task.abort_handle()));
        rx
    }

    /// The firewall the network consults during handshakes, outside this task.
    fn gate(&self) -> Arc<Refuse> {
        let own = self.public_key;
        let banned = self.banned.clone();
        let firewall = self.opts.firewall.clone();
        let ev = self.ev_tx.clone();
        Arc::new(move |key: &[u8; 32]| {
            if *key == own {
                return true;
            }
            let mut set = banned.lock().unwrap_or_else(|e| e.into_inner());
            if set.contains(key) {
                return true;
            }
            if firewall.as_ref().is_some_and(|f| f(key)) {
                set.insert(*key);
                let _ = ev.send(Event::Refused(*key));
                return true;
            }
            false
        })
    }

    fn stop_listening(&mut self) {
        if let Some((_, task)) = self.listening.take() {
            task.abort();
        }
    }

    // ---- suspend, resume, destroy ----

    fn suspend(&mut self, reply: Reply) {
        if self.suspended || self.destroyed {
            let _ = reply.send(Ok(true));
            return;
        }
        self.suspended = true;
        self.stop_listening();
        let mut unannounces = Vec::new();
        for (key, t) in self.topics.iter_mut() {
            t.suspended = true;
            t.timer = None;
            if let Some(cur) = t.current.take() {
                cur.task.abort();
                for w in cur.waiters {
                    let _ = w.send(Ok(false));
                }
            }
            if t.needs_unannounce {
                t.needs_unannounce = false;
                unannounces.push(*key);
            }
        }
        let dones: Vec<_> = unannounces
            .into_iter()
            .map(|topic| self.unannounce_in_background(topic, None, None))
            .collect();
        let keys: Vec<[u8; 32]> = self.all.keys().copied().collect();
        for key in keys {
            self.kill(key);
        }
        self.timer.destroy();
        self.timer = RetryTimer::new(&self.backoffs, &mut self.rng);
        for key in self.queue.drain() {
            if let Some(p) = self.peers.get_mut(&key) {
                p.queued = false;
            }
        }
        tokio::spawn(async move {
            for mut d in dones {
                let _ = d.wait_for(|d| *d).await;
            }
            let _ = reply.send(Ok(true));
        });
    }

    fn resume(&mut self) {
        if !self.suspended || self.destroyed {
            return;
        }
        self.suspended = false;
        let keys: Vec<[u8; 32]> = self.topics.keys().copied().collect();
        for key in keys {
            if let Some(t) = self.topics.get_mut(&key) {
                t.suspended = false;
            }
            self.refresh_topic(key, None);
        }
        self.attempt_client_connections();
    }

    fn destroy(&mut self, reply: Option<Reply>) {
        if self.destroyed {
            if let Some(r) = reply {
                let _ = r.send(Ok(true));
            }
            return;
        }
        let keys: Vec<[u8; 32]> = self.topics.keys().copied().collect();
        let dones: Vec<_> = keys
            .into_iter()
            .filter_map(|k| self.leave_topic(k, None))
            .collect();
        self.destroyed = true;
        self.timer.destroy();
        self.stop_listening();
        for f in self.pending_flushes.drain(..) {
            let _ = f.reply.send(Ok(false));
        }
        let keys: Vec<[u8; 32]> = self.all.keys().copied().collect();
        for key in keys {
            self.kill(key);
        }
        self.accept_tx = None;
        self.update();
        tokio::spawn(async move {
            for mut d in dones {
                let _ = d.wait_for(|d| *d).await;
            }
            if let Some(r) = reply {
                let _ = r.send(Ok(true));
            }
        });
    }

    fn update(&mut self) {
        let s = &mut self.stats;
        s.updates += 1;
        s.connections = self
            .all
            .values()
            .filter(|c| matches!(c.state, ConnState::Open(_)))
            .count();
        s.client_connections = self.client_connections;
        s.server_connections = self.server_connections;
        s.connecting = self.connecting;
        s.queued = self.queue.len();
        s.peers = self.peers.len();
        self.stats_tx.send_replace(*s);
    }
}

fn hex(b: &[u8]) -> String {
    b.iter().take(8).map(|x| format!("{x:02x}")).collect()
}
