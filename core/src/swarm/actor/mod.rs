//! The task that owns a swarm's state and applies JS Hyperswarm's connection policy: the
//! dial queue, limits, retries, duplicate connections, topics and flushes. Handles talk to
//! it with [`Cmd`]s; the tasks it spawns report back with [`Event`]s.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};

use rand::rngs::StdRng;
use rand::SeedableRng;
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::AbortHandle;
use tokio::time::Instant;

use super::config::{JoinOptions, SwarmError, SwarmOptions, SwarmStats};
use super::connection::{Connection, Shared};
use super::discovery::{ListenState, Topic};
use super::network::{Network, NetworkError};
use super::peer::{Peer, PeerInfo};
use super::queue::ShuffledQueue;
use super::retry::{Backoffs, RetryTimer};
use crate::dht::{KeyPair, PeerRecord};

mod dial;
mod flush;
mod lifecycle;
mod topics;

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
    Reconnect([u8; 32], bool),
    Topics {
        reply: oneshot::Sender<Vec<[u8; 32]>>,
    },
    Clear {
        reply: Reply,
    },
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
            Cmd::Reconnect(key, reconnect) => {
                if let Some(p) = self.peers.get_mut(&key) {
                    p.reconnecting = reconnect;
                }
            }
            Cmd::Topics { reply } => {
                let _ = reply.send(self.topics.keys().copied().collect());
            }
            Cmd::Clear { reply } => {
                let keys: Vec<[u8; 32]> = self.topics.keys().copied().collect();
                let dones: Vec<_> = keys
                    .into_iter()
                    .filter_map(|k| self.leave_topic(k, None))
                    .collect();
                tokio::spawn(async move {
                    for mut d in dones {
                        let _ = d.wait_for(|d| *d).await;
                    }
                    let _ = reply.send(Ok(true));
                });
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
}

fn hex(b: &[u8]) -> String {
    b.iter().take(8).map(|x| format!("{x:02x}")).collect()
}
