//! The sans-IO dht-rpc node: requests with retries and congestion control, the routing table's
//! upkeep, iterative queries, and the bootstrap / NAT / firewall state machine.
//!
//! Everything is driven from outside: feed datagrams to [`RpcNode::handle_datagram`], call
//! [`RpcNode::handle_timeout`] at [`RpcNode::poll_timeout`], send what
//! [`RpcNode::poll_transmit`] returns and read [`RpcNode::poll_event`]. Time only ever comes in
//! as an argument, so a simulation can run thousands of nodes under a virtual clock.

use std::collections::{HashMap, HashSet, VecDeque};
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::commands::{DELAYED_PING, DOWN_HINT, FIND_NODE, PING, PING_NAT};
use super::congestion::{CongestionWindow, DEFAULT_MAX_WINDOW};
use super::errors::{INVALID_TOKEN, UNKNOWN_COMMAND};
use super::handler::{CommandHandler, IncomingRequest, ReplyOptions, Responder};
use super::id::NodeId;
use super::message::{Message, Request, Response};
use super::nat::NatSampler;
use super::query::{Candidate, Query, QueryId, QueryOptions};
use super::table::{Added, RoutingTable, TableNode, K};
use super::token::TokenSecrets;
use super::{Reply, RequestError, SocketKind, Transmit};
use crate::encoding::{Reader, Writer};

const TICK: Duration = Duration::from_secs(5);
const DRAIN: Duration = Duration::from_millis(750);
const SLEEPING: Duration = Duration::from_secs(15);
const REQUEST_TIMEOUT: Duration = Duration::from_secs(1);
const STABLE_TICKS: i64 = 240;
const MORE_STABLE_TICKS: i64 = 3 * STABLE_TICKS;
const REFRESH_TICKS: i64 = 60;
const RECENT_NODE: u64 = 12;
const OLD_NODE: u64 = 360;
const DEFAULT_RETRIES: u32 = 3;
const MAX_CHECKS: u32 = 10;
/// Requests waiting behind a full congestion window; beyond this new requests fail fast
/// instead of growing memory without bound.
const MAX_QUEUED: usize = 4096;
/// DELAYED_PINGs held at once; more are dropped (each costs a timer and a datagram).
const MAX_DELAYED_PINGS: usize = 256;
const MAX_EVENTS: usize = 65536;

/// How a node is set up.
#[derive(Debug, Clone)]
pub struct Config {
    /// Nodes to bootstrap from (already resolved).
    pub bootstrap: Vec<SocketAddr>,
    /// `Some(false)` forces a persistent node, `Some(true)` keeps it ephemeral forever,
    /// `None` lets it decide from its NAT after about 20 minutes of stability.
    pub ephemeral: Option<bool>,
    /// Assume the server socket is unreachable until proven otherwise.
    pub firewalled: bool,
    /// Probe reachability with one PING_NAT during bootstrap.
    pub quick_firewall: bool,
    /// Requests in flight per query.
    pub concurrency: usize,
    /// Congestion window per 750 ms slot.
    pub max_window: u32,
    /// Longest DELAYED_PING delay honoured.
    pub max_ping_delay: Duration,
    /// DOWN_HINTs sent per 5 s tick; `None` is unlimited.
    pub down_hints_rate_limit: Option<u32>,
    /// Set for a bootstrap node: its public address, which it knows rather than learns.
    pub bootstrapper_addr: Option<SocketAddr>,
    /// Seed for the node's randomness (ids, tids, secrets); `None` draws from the OS.
    pub seed: Option<u64>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            bootstrap: Vec::new(),
            ephemeral: None,
            firewalled: true,
            quick_firewall: true,
            concurrency: 10,
            max_window: DEFAULT_MAX_WINDOW,
            max_ping_delay: Duration::from_secs(10),
            down_hints_rate_limit: Some(50),
            bootstrapper_addr: None,
            seed: None,
        }
    }
}

impl Config {
    /// A bootstrap node at the public address `addr`: persistent, unfirewalled, no bootstrap
    /// list of its own.
    pub fn bootstrapper(addr: SocketAddr) -> Self {
        Config {
            ephemeral: Some(false),
            firewalled: false,
            bootstrapper_addr: Some(addr),
            ..Config::default()
        }
    }
}

/// Identifies a request started through [`RpcNode::request`] or [`RpcNode::ping`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RequestId(pub u64);

/// A request to send to one node.
#[derive(Debug, Clone, Default)]
pub struct UserRequest {
    /// Token from an earlier reply of the destination.
    pub token: Option<[u8; 32]>,
    /// Whether `command` is a dht-rpc command.
    pub internal: bool,
    /// Command number.
    pub command: u64,
    /// Key.
    pub target: Option<NodeId>,
    /// Payload.
    pub value: Option<Vec<u8>>,
    /// Retransmissions; 3 when `None`.
    pub retries: Option<u32>,
    /// Time to wait per transmission; 1 s when `None`.
    pub timeout: Option<Duration>,
}

/// Something the node reports to its owner.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// The bootstrap walk finished; the node is usable.
    Bootstrapped,
    /// The node became persistent: its id is now hash(public address).
    Persistent(NodeId),
    /// The node went back to ephemeral (after sleeping or a network change).
    Ephemeral,
    /// The agreed public address changed.
    NatUpdate(Option<IpAddr>, u16),
    /// A request finished.
    Response(RequestId, Result<Reply, RequestError>),
    /// A successful reply reached a query.
    QueryReply(QueryId, Reply),
    /// A query finished with the closest replies, nearest first.
    QueryDone(QueryId, Vec<Reply>),
}

/// Counters for monitoring and for tests of bad input.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Stats {
    /// Requests started.
    pub requests: u64,
    /// Requests in flight or queued.
    pub active: u64,
    /// Responses matched to a request.
    pub responses: u64,
    /// Requests that timed out.
    pub timeouts: u64,
    /// Retransmissions.
    pub retries: u64,
    /// Datagrams dropped as malformed, unmatched or unanswerable.
    pub dropped: u64,
    /// Queries started.
    pub queries: u64,
    /// Queries running.
    pub active_queries: u64,
}

#[derive(Debug)]
enum Purpose {
    User(RequestId),
    Query(QueryId),
    QuickNat,
    FirewallProbe,
    Check {
        id: NodeId,
        last_seen: u64,
    },
    Reping {
        new: TableNode,
        old: NodeId,
        last_seen: u64,
    },
    DownHint,
}

#[derive(Debug)]
struct Inflight {
    purpose: Purpose,
    dest: SocketAddr,
    dest_id: Option<NodeId>,
    socket: SocketKind,
    payload: Vec<u8>,
    sent: u32,
    retries: u32,
    timeout: Duration,
    deadline: Option<Instant>,
    started: Instant,
    /// Whether a query already counted this request as slow.
    cycled: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum QueryRole {
    User,
    Background,
    Bootstrap,
}

#[derive(Debug)]
struct QueryEntry {
    query: Query,
    role: QueryRole,
}

#[derive(Debug)]
struct BootstrapState {
    iteration: u32,
    quick_nat_pending: bool,
    nat_reachable: bool,
}

/// What to do once a network-state check settles.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum AfterCheck {
    Bootstrap,
    Nothing,
}

#[derive(Debug)]
struct NetworkCheck {
    only_firewall: bool,
    host: Option<IpAddr>,
    port: u16,
    then: AfterCheck,
    probes_left: usize,
    probes: usize,
    replies: Vec<Reply>,
    hosts_on_server: HashSet<IpAddr>,
}

/// A sans-IO dht-rpc node.
pub struct RpcNode {
    rng: StdRng,
    now: Instant,
    config: Config,
    server_port: u16,
    table: RoutingTable,
    recency: u64,
    secrets: TokenSecrets,
    congestion: CongestionWindow,
    next_tid: u16,
    inflight: HashMap<u16, Inflight>,
    queued: VecDeque<u16>,
    queries: HashMap<QueryId, QueryEntry>,
    next_query: u64,
    next_request: u64,
    transmits: VecDeque<Transmit>,
    events: VecDeque<Event>,
    delayed: Vec<(Instant, Transmit)>,
    handler: Option<Box<dyn CommandHandler>>,
    stats: Stats,

    nat: NatSampler,
    ephemeral: bool,
    firewalled: bool,
    adaptive: bool,
    force_persistent: bool,
    bootstrapped: bool,
    bootstrap: Option<BootstrapState>,
    network_check: Option<NetworkCheck>,
    non_persistent_samples: Vec<SocketAddr>,
    tick: u64,
    refresh_ticks: i64,
    stable_ticks: i64,
    last_tick: Instant,
    last_host: Option<Option<IpAddr>>,
    next_tick: Instant,
    next_drain: Instant,
    repinging: u32,
    checks: u32,
    down_hints_this_tick: u32,
    destroyed: bool,
}

impl std::fmt::Debug for RpcNode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RpcNode")
            .field("id", &self.table.id())
            .field("ephemeral", &self.ephemeral)
            .field("firewalled", &self.firewalled)
            .field("table", &self.table.len())
            .finish_non_exhaustive()
    }
}

impl RpcNode {
    /// A node whose server socket is bound to local port `server_port`. It starts
    /// bootstrapping at once.
    pub fn new(config: Config, server_port: u16, now: Instant) -> Self {
        let mut rng = match config.seed {
            Some(s) => StdRng::seed_from_u64(s),
            None => StdRng::from_entropy(),
        };
        let mut id = [0u8; 32];
        rng.fill(&mut id);
        let secrets = TokenSecrets::new(&mut rng);
        let offset = |rng: &mut StdRng, n: i64| n - rng.gen_range(0..=n / 2);
        let tick = offset(&mut rng, 100) as u64;
        let refresh_ticks = offset(&mut rng, REFRESH_TICKS);
        let adaptive = config.ephemeral.is_none();
        let mut nat = NatSampler::new();
        if let Some(addr) = config.bootstrapper_addr {
            nat.add(addr.ip(), addr.port());
        }
        let mut node = RpcNode {
            next_tid: rng.gen(),
            rng,
            now,
            server_port,
            table: RoutingTable::new(NodeId(id)),
            recency: 0,
            secrets,
            congestion: CongestionWindow::new(config.max_window),
            inflight: HashMap::new(),
            queued: VecDeque::new(),
            queries: HashMap::new(),
            next_query: 0,
            next_request: 0,
            transmits: VecDeque::new(),
            events: VecDeque::new(),
            delayed: Vec::new(),
            handler: None,
            stats: Stats::default(),
            nat,
            ephemeral: true,
            firewalled: config.firewalled,
            adaptive,
            force_persistent: config.ephemeral == Some(false),
            bootstrapped: false,
            bootstrap: None,
            network_check: None,
            non_persistent_samples: Vec::new(),
            tick,
            refresh_ticks,
            stable_ticks: if adaptive { STABLE_TICKS } else { 0 },
            last_tick: now,
            last_host: None,
            next_tick: now + TICK,
            next_drain: now + DRAIN,
            repinging: 0,
            checks: 0,
            down_hints_this_tick: 0,
            destroyed: false,
            config,
        };
        node.start_bootstrap();
        node
    }

    /// Installs the handler for user commands (hyperdht's layer).
    pub fn set_handler(&mut self, handler: Box<dyn CommandHandler>) {
        self.handler = Some(handler);
    }

    /// The node id while persistent; `None` while ephemeral.
    pub fn id(&self) -> Option<NodeId> {
        (!self.ephemeral).then(|| *self.table.id())
    }

    /// The id the routing table is built around (random until the node is persistent).
    pub fn table_id(&self) -> NodeId {
        *self.table.id()
    }

    /// The routing table.
    pub fn table(&self) -> &RoutingTable {
        &self.table
    }

    /// Whether the node believes its server socket is unreachable from outside.
    pub fn is_firewalled(&self) -> bool {
        self.firewalled
    }

    /// Whether the node keeps its id out of messages and stays out of others' tables.
    pub fn is_ephemeral(&self) -> bool {
        self.ephemeral
    }

    /// Whether the bootstrap walk finished.
    pub fn is_bootstrapped(&self) -> bool {
        self.bootstrapped
    }

    /// Our public host and port as other nodes report them (port 0: unknown or random).
    pub fn public_address(&self) -> (Option<IpAddr>, u16) {
        (self.nat.host(), self.nat.port())
    }

    /// The bootstrap nodes.
    pub fn bootstrap_nodes(&self) -> &[SocketAddr] {
        &self.config.bootstrap
    }

    /// Counters.
    pub fn stats(&self) -> Stats {
        let mut s = self.stats.clone();
        s.active = self.inflight.len() as u64;
        s.active_queries = self.queries.len() as u64;
        s
    }

    /// Adds a node we know about out of band (it still has to answer to stay).
    pub fn add_node(&mut self, addr: SocketAddr) {
        let Some(id) = NodeId::from_addr(&addr) else {
            return;
        };
        self.add_table_node(TableNode::new(addr, id));
    }

    /// The next datagram to send.
    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        self.transmits.pop_front()
    }

    /// The next event.
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// When [`RpcNode::handle_timeout`] must next be called.
    pub fn poll_timeout(&self) -> Option<Instant> {
        if self.destroyed {
            return None;
        }
        let mut t = self.next_tick.min(self.next_drain);
        for r in self.inflight.values() {
            if let Some(d) = r.deadline {
                t = t.min(d);
            }
        }
        for (d, _) in &self.delayed {
            t = t.min(*d);
        }
        Some(t)
    }

    /// Advances timers to `now`.
    pub fn handle_timeout(&mut self, now: Instant) {
        if self.destroyed {
            return;
        }
        self.set_now(now);
        if now >= self.next_drain {
            self.next_drain = now + DRAIN;
            self.on_drain();
        }
        if now >= self.next_tick {
            self.next_tick = now + TICK;
            self.on_tick();
        }
        if self.delayed.iter().any(|(d, _)| *d <= now) {
            let (due, keep): (Vec<_>, Vec<_>) = std::mem::take(&mut self.delayed)
                .into_iter()
                .partition(|(d, _)| *d <= now);
            self.delayed = keep;
            self.transmits.extend(due.into_iter().map(|(_, t)| t));
        }
        let expired: Vec<u16> = self
            .inflight
            .iter()
            .filter(|(_, r)| r.deadline.is_some_and(|d| d <= now))
            .map(|(tid, _)| *tid)
            .collect();
        for tid in expired {
            self.on_request_timeout(tid);
        }
    }

    /// Processes one datagram that arrived on `socket` from `from`.
    pub fn handle_datagram(
        &mut self,
        now: Instant,
        socket: SocketKind,
        from: SocketAddr,
        data: &[u8],
    ) {
        if self.destroyed {
            return;
        }
        self.set_now(now);
        if socket == SocketKind::Server {
            if let Some(check) = &mut self.network_check {
                check.hosts_on_server.insert(from.ip());
            }
        }
        if data.len() < 2 || from.port() == 0 || NodeId::from_addr(&from).is_none() {
            self.stats.dropped += 1;
            return;
        }
        let expected = if self.firewalled {
            SocketKind::Client
        } else {
            SocketKind::Server
        };
        let external = socket != expected;
        match Message::decode(data) {
            Ok(Message::Request(req)) => self.on_request(socket, from, req, external),
            Ok(Message::Response(res)) => self.on_response(from, res, external),
            Err(_) => self.stats.dropped += 1,
        }
    }

    /// Sends a request to `dest`.
    pub fn request(
        &mut self,
        now: Instant,
        req: UserRequest,
        dest: SocketAddr,
    ) -> Result<RequestId, RequestError> {
        self.set_now(now);
        let id = RequestId(self.next_request);
        self.next_request += 1;
        let retries = req.retries.unwrap_or(DEFAULT_RETRIES);
        let timeout = req.timeout.unwrap_or(REQUEST_TIMEOUT);
        self.send_request(
            Purpose::User(id),
            dest,
            None,
            req.token,
            req.internal,
            req.command,
            req.target,
            req.value,
            retries,
            timeout,
            false,
        )?;
        Ok(id)
    }

    /// Pings `dest`.
    pub fn ping(&mut self, now: Instant, dest: SocketAddr) -> Result<RequestId, RequestError> {
        let req = UserRequest {
            internal: true,
            command: PING,
            ..UserRequest::default()
        };
        self.request(now, req, dest)
    }

    /// Asks `dest` to answer after `delay`.
    pub fn delayed_ping(
        &mut self,
        now: Instant,
        dest: SocketAddr,
        delay: Duration,
    ) -> Result<RequestId, RequestError> {
        let ms = u32::try_from(delay.as_millis()).unwrap_or(u32::MAX);
        let req = UserRequest {
            internal: true,
            command: DELAYED_PING,
            value: Some(ms.to_le_bytes().to_vec()),
            timeout: Some(delay + REQUEST_TIMEOUT),
            ..UserRequest::default()
        };
        self.request(now, req, dest)
    }

    /// Cancels a request; its [`Event::Response`] reports [`RequestError::Destroyed`].
    pub fn cancel_request(&mut self, id: RequestId) {
        let tid = self
            .inflight
            .iter()
            .find(|(_, r)| matches!(r.purpose, Purpose::User(u) if u == id))
            .map(|(t, _)| *t);
        if let Some(tid) = tid {
            self.fail_request(tid, RequestError::Destroyed);
        }
    }

    /// Walks towards `target` with FIND_NODE.
    pub fn find_node(&mut self, now: Instant, target: NodeId, opts: QueryOptions) -> QueryId {
        self.set_now(now);
        self.refresh_ticks = REFRESH_TICKS;
        self.start_query(target, true, FIND_NODE, None, opts, QueryRole::User)
    }

    /// Walks towards `target` sending a user command to every node on the way.
    pub fn query(
        &mut self,
        now: Instant,
        target: NodeId,
        command: u64,
        value: Option<Vec<u8>>,
        opts: QueryOptions,
    ) -> QueryId {
        self.set_now(now);
        self.refresh_ticks = REFRESH_TICKS;
        self.start_query(target, false, command, value, opts, QueryRole::User)
    }

    /// Stops a query; it reports [`Event::QueryDone`] with what it has.
    pub fn cancel_query(&mut self, id: QueryId) {
        let tids: Vec<u16> = self
            .inflight
            .iter()
            .filter(|(_, r)| matches!(r.purpose, Purpose::Query(q) if q == id))
            .map(|(t, _)| *t)
            .collect();
        if let Some(e) = self.queries.get_mut(&id) {
            e.query.finished = true;
        }
        for tid in tids {
            self.fail_request(tid, RequestError::Destroyed);
        }
        self.finish_query(id);
    }

    /// Refreshes the table with a background walk towards a random known node.
    pub fn refresh(&mut self) {
        let target = match self.table.len() {
            0 => *self.table.id(),
            n => {
                let i = self.rng.gen_range(0..n);
                self.table.nth(i).map_or(*self.table.id(), |n| n.id)
            }
        };
        self.background_query(target, QueryRole::Background);
    }

    /// Fails everything in flight and stops all timers.
    pub fn destroy(&mut self) {
        let tids: Vec<u16> = self.inflight.keys().copied().collect();
        for tid in tids {
            self.fail_request(tid, RequestError::Destroyed);
        }
        let qids: Vec<QueryId> = self.queries.keys().copied().collect();
        for q in qids {
            self.finish_query(q);
        }
        self.delayed.clear();
        self.destroyed = true;
    }

    // ---- replies (also used by `Responder`) ----

    pub(crate) fn reply(
        &mut self,
        req: &IncomingRequest,
        value: Option<&[u8]>,
        opts: ReplyOptions,
    ) {
        let closer = opts.closer_nodes && req.target.is_some();
        self.send_reply(
            req,
            0,
            value,
            opts.token,
            closer,
            opts.to.unwrap_or(req.from),
        );
    }

    pub(crate) fn reply_error(&mut self, req: &IncomingRequest, code: u64, opts: ReplyOptions) {
        let closer = opts.closer_nodes && req.target.is_some();
        self.send_reply(
            req,
            code,
            None,
            opts.token,
            closer,
            opts.to.unwrap_or(req.from),
        );
    }

    pub(crate) fn relay(&mut self, req: &IncomingRequest, value: Option<&[u8]>, to: SocketAddr) {
        let msg = Request {
            tid: req.tid,
            to,
            id: self.id_for(req.socket),
            token: None,
            internal: false,
            command: req.command,
            target: req.target,
            value: value.map(<[u8]>::to_vec),
        };
        match msg.encode() {
            Ok(payload) => self.transmits.push_back(Transmit {
                socket: req.socket,
                dest: to,
                payload,
            }),
            Err(_) => self.stats.dropped += 1,
        }
    }

    fn send_reply(
        &mut self,
        req: &IncomingRequest,
        error: u64,
        value: Option<&[u8]>,
        token: bool,
        closer: bool,
        to: SocketAddr,
    ) {
        let closer_nodes = match (closer, &req.target) {
            (true, Some(t)) => self.table.closest(t, K).iter().map(|n| n.addr).collect(),
            _ => Vec::new(),
        };
        let res = Response {
            tid: req.tid,
            to: Some(to),
            id: self.id_for(req.socket),
            token: token.then(|| self.secrets.token(&to.ip())),
            closer_nodes,
            error,
            value: value.map(<[u8]>::to_vec),
        };
        match res.encode() {
            Ok(payload) => self.transmits.push_back(Transmit {
                socket: req.socket,
                dest: to,
                payload,
            }),
            Err(_) => self.stats.dropped += 1,
        }
    }

    fn id_for(&self, socket: SocketKind) -> Option<NodeId> {
        (!self.ephemeral && socket == SocketKind::Server).then(|| *self.table.id())
    }

    // ---- incoming ----

    fn on_request(&mut self, socket: SocketKind, from: SocketAddr, req: Request, external: bool) {
        let from_id = req.id.filter(|id| NodeId::from_addr(&from) == Some(*id));
        let incoming = IncomingRequest {
            tid: req.tid,
            from,
            from_id,
            to: req.to,
            token: req.token,
            command: req.command,
            target: req.target,
            value: req.value,
            socket,
        };
        if let Some(token) = &incoming.token {
            if !self.secrets.verify(&from.ip(), token) {
                let opts = ReplyOptions {
                    token: true,
                    closer_nodes: true,
                    to: None,
                };
                self.reply_error(&incoming, INVALID_TOKEN, opts);
                return;
            }
        }
        if from_id.is_some() {
            self.add_from_network(!external, from, from_id, req.to);
        }
        let plain = ReplyOptions {
            token: false,
            closer_nodes: false,
            to: None,
        };
        if req.internal {
            match incoming.command {
                PING => self.reply(&incoming, None, plain),
                DELAYED_PING => self.on_delayed_ping(&incoming),
                PING_NAT => {
                    let Some(port) = le_u16(incoming.value.as_deref()) else {
                        return;
                    };
                    if port == 0 {
                        return;
                    }
                    let to = SocketAddr::new(from.ip(), port);
                    self.reply(
                        &incoming,
                        None,
                        ReplyOptions {
                            to: Some(to),
                            ..plain
                        },
                    );
                }
                FIND_NODE => {
                    if incoming.target.is_some() {
                        self.reply(
                            &incoming,
                            None,
                            ReplyOptions {
                                closer_nodes: true,
                                ..plain
                            },
                        );
                    }
                }
                DOWN_HINT => {
                    let Some(v) = incoming.value.as_deref().filter(|v| v.len() >= 6) else {
                        return;
                    };
                    if self.checks < MAX_CHECKS {
                        let hinted = Reader::new(&v[..6]).ipv4_address().ok();
                        let id = hinted.and_then(|a| NodeId::from_addr(&a));
                        let tick = self.tick;
                        if let Some(node) = id.and_then(|id| self.table.get_mut(&id)) {
                            if node.pinged < tick || node.down_hints == 0 {
                                node.down_hints += 1;
                                let (id, addr) = (node.id, node.addr);
                                self.check(id, addr);
                            }
                        }
                    }
                    self.reply(&incoming, None, plain);
                }
                _ => self.reply_error(&incoming, UNKNOWN_COMMAND, plain_closer(&incoming)),
            }
            return;
        }
        let handled = match self.handler.take() {
            Some(mut h) => {
                let handled = h.on_request(&incoming, &mut Responder { node: self });
                self.handler = Some(h);
                handled
            }
            None => false,
        };
        if !handled {
            self.reply_error(&incoming, UNKNOWN_COMMAND, plain_closer(&incoming));
        }
    }

    fn on_delayed_ping(&mut self, req: &IncomingRequest) {
        let Some(v) = req.value.as_deref().filter(|v| v.len() >= 4) else {
            return;
        };
        let ms = u32::from_le_bytes([v[0], v[1], v[2], v[3]]);
        let delay = Duration::from_millis(ms.into());
        if delay > self.config.max_ping_delay || self.delayed.len() >= MAX_DELAYED_PINGS {
            return;
        }
        let before = self.transmits.len();
        self.reply(
            req,
            None,
            ReplyOptions {
                token: false,
                closer_nodes: false,
                to: None,
            },
        );
        if self.transmits.len() > before {
            let t = self.transmits.pop_back().expect("just pushed");
            self.delayed.push((self.now + delay, t));
        }
    }

    fn on_response(&mut self, from: SocketAddr, res: Response, external: bool) {
        let Some(r) = self.inflight.get(&res.tid) else {
            self.stats.dropped += 1;
            return;
        };
        if r.sent == 0 {
            // Still queued: nobody could have answered it.
            self.stats.dropped += 1;
            return;
        }
        let r = self.inflight.remove(&res.tid).expect("present");
        self.congestion.on_done();
        self.stats.responses += 1;
        let from_id = res.id.filter(|id| NodeId::from_addr(&from) == Some(*id));
        let reply = Reply {
            from,
            from_id,
            to: res.to,
            token: res.token,
            closer_nodes: res.closer_nodes,
            error: res.error,
            value: res.value,
            rtt: self.now.saturating_duration_since(r.started),
        };
        if let Some(to) = reply.to {
            self.add_from_network(!external, from, from_id, to);
        }
        self.on_request_done(r, Ok(reply));
    }

    fn on_request_done(&mut self, r: Inflight, result: Result<Reply, RequestError>) {
        match r.purpose {
            Purpose::User(id) => self.push_event(Event::Response(id, result)),
            Purpose::Query(q) => self.on_query_result(q, r.dest, r.cycled, result),
            Purpose::QuickNat => {
                if result.is_ok() {
                    if let Some(b) = &mut self.bootstrap {
                        b.nat_reachable = true;
                    }
                }
            }
            Purpose::FirewallProbe => self.on_probe_result(result.ok()),
            Purpose::Check { id, last_seen } => {
                self.checks -= 1;
                let stale = match &result {
                    Ok(_) => self.table.get(&id).is_some_and(|n| n.seen <= last_seen),
                    Err(_) => true,
                };
                if stale {
                    self.table.remove(&id);
                }
            }
            Purpose::Reping {
                new,
                old,
                last_seen,
            } => {
                self.repinging -= 1;
                let alive =
                    result.is_ok() && self.table.get(&old).is_some_and(|n| n.seen > last_seen);
                if !alive {
                    self.table.remove(&old);
                    self.add_table_node(new);
                }
            }
            Purpose::DownHint => {}
        }
    }

    // ---- routing table upkeep ----

    fn add_from_network(
        &mut self,
        sample: bool,
        from: SocketAddr,
        id: Option<NodeId>,
        to: SocketAddr,
    ) {
        let Some(id) = id else {
            self.sample_bootstrap_maybe(from, to);
            return;
        };
        let tick = self.tick;
        self.recency += 1;
        let recency = self.recency;
        if let Some(old) = self.table.get_mut(&id) {
            let mut nat_sample = None;
            if sample && (old.sampled == 0 || tick - old.sampled >= OLD_NODE) {
                old.to = Some(to);
                old.sampled = tick;
                nat_sample = Some(to);
            }
            old.pinged = tick;
            old.seen = tick;
            old.recency = recency;
            if let Some(to) = nat_sample {
                self.nat_add(to);
            }
            return;
        }
        let mut node = TableNode::new(from, id);
        node.to = Some(to);
        self.add_table_node(node);
    }

    fn sample_bootstrap_maybe(&mut self, from: SocketAddr, to: SocketAddr) {
        if self.non_persistent_samples.len() >= self.config.bootstrap.len().max(1)
            || self.non_persistent_samples.contains(&from)
        {
            return;
        }
        self.non_persistent_samples.push(from);
        self.nat_add(to);
    }

    fn add_table_node(&mut self, mut node: TableNode) {
        if node.id == *self.table.id() || self.table.get(&node.id).is_some() {
            return;
        }
        node.added = self.tick;
        node.pinged = self.tick;
        node.seen = self.tick;
        self.recency += 1;
        node.recency = self.recency;
        let sample = match node.to {
            Some(to) if node.sampled == 0 => {
                node.sampled = self.tick;
                Some(to)
            }
            _ => None,
        };
        match self.table.add(node.clone()) {
            Added::Yes => {
                if let Some(to) = sample {
                    self.nat_add(to);
                }
            }
            Added::Full(bucket) => self.on_full_bucket(node, bucket),
        }
    }

    fn on_full_bucket(&mut self, new: TableNode, bucket: usize) {
        if !self.bootstrapped || self.repinging >= 3 {
            return;
        }
        let tick = self.tick;
        let oldest = self
            .table
            .bucket(bucket)
            .iter()
            .filter(|n| n.pinged != tick)
            .min_by_key(|n| (n.pinged, n.added));
        let Some(oldest) = oldest else {
            return;
        };
        if tick - oldest.pinged < RECENT_NODE && tick - oldest.added > OLD_NODE {
            return;
        }
        let (old, addr, last_seen) = (oldest.id, oldest.addr, oldest.seen);
        if let Some(n) = self.table.get_mut(&old) {
            n.pinged = tick;
        }
        self.repinging += 1;
        let purpose = Purpose::Reping {
            new,
            old,
            last_seen,
        };
        if self
            .send_internal(purpose, addr, None, PING, None, None)
            .is_err()
        {
            self.repinging -= 1;
        }
    }

    fn check(&mut self, id: NodeId, addr: SocketAddr) {
        let tick = self.tick;
        let Some(node) = self.table.get_mut(&id) else {
            return;
        };
        node.pinged = tick;
        let last_seen = node.seen;
        self.checks += 1;
        let purpose = Purpose::Check { id, last_seen };
        if self
            .send_internal(purpose, addr, None, PING, None, None)
            .is_err()
        {
            self.checks -= 1;
        }
    }

    fn ping_some(&mut self) {
        let mut by_age: Vec<(u64, NodeId, SocketAddr, u64)> = self
            .table
            .iter()
            .map(|n| (n.recency, n.id, n.addr, n.pinged))
            .collect();
        if by_age.is_empty() {
            self.refresh();
            return;
        }
        by_age.sort_unstable_by_key(|n| n.0);
        let mut count = if self.inflight.len() > 2 { 3 } else { 5 };
        if self.tick - by_age[0].3 < RECENT_NODE {
            count = 2;
        }
        let mut next = by_age.into_iter();
        let mut current = next.next();
        for _ in 0..count {
            match current {
                Some((_, id, addr, pinged)) if pinged != self.tick => {
                    self.check(id, addr);
                    current = next.next();
                }
                _ => {}
            }
        }
    }

    fn nat_add(&mut self, to: SocketAddr) {
        let before = (self.nat.host(), self.nat.port());
        self.nat.add(to.ip(), to.port());
        let after = (self.nat.host(), self.nat.port());
        if before != after {
            self.push_event(Event::NatUpdate(after.0, after.1));
        }
    }

    // ---- timers ----

    fn set_now(&mut self, now: Instant) {
        if now > self.now {
            self.now = now;
        }
    }

    fn on_drain(&mut self) {
        self.secrets.on_drain_tick();
        self.congestion.on_drain_tick();
        while !self.congestion.is_full() {
            let Some(tid) = self.queued.pop_front() else {
                break;
            };
            if self.inflight.contains_key(&tid) {
                self.transmit_now(tid);
            }
        }
    }

    fn on_tick(&mut self) {
        let now = self.now;
        if now.saturating_duration_since(self.last_tick) > SLEEPING {
            self.on_wakeup();
        } else {
            self.tick += 1;
        }
        self.last_tick = now;
        if !self.bootstrapped {
            return;
        }
        if self.adaptive && self.ephemeral {
            self.stable_ticks -= 1;
            if self.stable_ticks <= 0 {
                if self.last_host == Some(self.nat.host()) {
                    self.stable_ticks = MORE_STABLE_TICKS;
                } else {
                    self.start_network_check(false, AfterCheck::Nothing);
                }
            }
        }
        if self.tick & 7 == 0 {
            self.ping_some();
        }
        let sparse = self.tick & 63 == 0 && self.table.len() < K;
        if sparse || {
            self.refresh_ticks -= 1;
            self.refresh_ticks <= 0
        } {
            self.refresh();
        }
        self.down_hints_this_tick = 0;
    }

    fn on_wakeup(&mut self) {
        self.tick += 2 * OLD_NODE;
        self.tick += 8 - (self.tick & 7) - 2;
        self.stable_ticks = MORE_STABLE_TICKS;
        self.refresh_ticks = 1;
        self.last_host = None;
        if self.adaptive && !self.ephemeral {
            self.ephemeral = true;
            self.push_event(Event::Ephemeral);
        }
    }

    // ---- outgoing requests ----

    fn send_internal(
        &mut self,
        purpose: Purpose,
        dest: SocketAddr,
        dest_id: Option<NodeId>,
        command: u64,
        target: Option<NodeId>,
        value: Option<Vec<u8>>,
    ) -> Result<u16, RequestError> {
        self.send_request(
            purpose,
            dest,
            dest_id,
            None,
            true,
            command,
            target,
            value,
            DEFAULT_RETRIES,
            REQUEST_TIMEOUT,
            false,
        )
    }

    #[allow(clippy::too_many_arguments)]
    fn send_request(
        &mut self,
        purpose: Purpose,
        dest: SocketAddr,
        dest_id: Option<NodeId>,
        token: Option<[u8; 32]>,
        internal: bool,
        command: u64,
        target: Option<NodeId>,
        value: Option<Vec<u8>>,
        retries: u32,
        timeout: Duration,
        force: bool,
    ) -> Result<u16, RequestError> {
        if self.destroyed {
            return Err(RequestError::Destroyed);
        }
        if NodeId::from_addr(&dest).is_none() {
            return Err(RequestError::UnsupportedAddress(dest));
        }
        if !force && self.congestion.is_full() && self.queued.len() >= MAX_QUEUED {
            return Err(RequestError::Overloaded);
        }
        let socket = if self.firewalled {
            SocketKind::Client
        } else {
            SocketKind::Server
        };
        let mut tid = self.next_tid;
        while self.inflight.contains_key(&tid) {
            tid = tid.wrapping_add(1);
        }
        self.next_tid = tid.wrapping_add(1);
        let msg = Request {
            tid,
            to: dest,
            id: self.id_for(socket),
            token,
            internal,
            command,
            target,
            value,
        };
        let payload = msg
            .encode()
            .map_err(|_| RequestError::UnsupportedAddress(dest))?;
        self.stats.requests += 1;
        self.inflight.insert(
            tid,
            Inflight {
                purpose,
                dest,
                dest_id,
                socket,
                payload,
                sent: 0,
                retries,
                timeout,
                deadline: None,
                started: self.now,
                cycled: false,
            },
        );
        self.send_or_queue(tid, force);
        Ok(tid)
    }

    fn send_or_queue(&mut self, tid: u16, force: bool) {
        if !force && self.congestion.is_full() {
            self.queued.push_back(tid);
        } else {
            self.transmit_now(tid);
        }
    }

    fn transmit_now(&mut self, tid: u16) {
        let now = self.now;
        let Some(r) = self.inflight.get_mut(&tid) else {
            return;
        };
        r.sent += 1;
        r.deadline = Some(now + r.timeout);
        self.congestion.on_send();
        self.transmits.push_back(Transmit {
            socket: r.socket,
            dest: r.dest,
            payload: r.payload.clone(),
        });
    }

    fn on_request_timeout(&mut self, tid: u16) {
        let Some(r) = self.inflight.get_mut(&tid) else {
            return;
        };
        r.deadline = None;
        let first_cycle = !r.cycled;
        let query = match r.purpose {
            Purpose::Query(q) => Some(q),
            _ => None,
        };
        let give_up = r.sent > r.retries;
        if let (Some(q), true) = (query, first_cycle) {
            r.cycled = true;
            if let Some(e) = self.queries.get_mut(&q) {
                e.query.on_cycle();
            }
        }
        if give_up {
            self.stats.timeouts += 1;
            let dest_id = self.inflight.get(&tid).and_then(|r| r.dest_id);
            self.fail_request(tid, RequestError::Timeout);
            if let Some(id) = dest_id {
                self.table.remove(&id);
            }
        } else {
            self.stats.retries += 1;
            self.send_or_queue(tid, false);
            if let (Some(q), true) = (query, first_cycle) {
                self.read_more(q);
            }
        }
    }

    fn fail_request(&mut self, tid: u16, err: RequestError) {
        let Some(r) = self.inflight.remove(&tid) else {
            return;
        };
        self.congestion.on_done();
        self.on_request_done(r, Err(err));
    }

    fn push_event(&mut self, e: Event) {
        if self.events.len() < MAX_EVENTS {
            self.events.push_back(e);
        }
    }

    // ---- queries ----

    fn background_query(&mut self, target: NodeId, role: QueryRole) -> QueryId {
        self.refresh_ticks = REFRESH_TICKS;
        let c = self.config.concurrency;
        let background = c.min((c / 8).max(2));
        let opts = QueryOptions {
            concurrency: Some(background),
            ..QueryOptions::default()
        };
        self.start_query(target, true, FIND_NODE, None, opts, role)
    }

    fn start_query(
        &mut self,
        target: NodeId,
        internal: bool,
        command: u64,
        value: Option<Vec<u8>>,
        opts: QueryOptions,
        role: QueryRole,
    ) -> QueryId {
        let id = QueryId(self.next_query);
        self.next_query += 1;
        self.stats.queries += 1;
        let default_retries = if internal && command == DOWN_HINT {
            3
        } else {
            5
        };
        let mut query = Query::new(
            target,
            internal,
            command,
            value,
            opts.concurrency.unwrap_or(self.config.concurrency).max(1),
            opts.retries.unwrap_or(default_retries),
        );
        for addr in opts.nodes.iter().rev() {
            if let Some(nid) = NodeId::from_addr(addr) {
                query.add_pending(
                    Candidate {
                        addr: *addr,
                        id: nid,
                    },
                    None,
                );
            }
        }
        self.queries.insert(id, QueryEntry { query, role });
        // dht-rpc's _open: top up from the table, then from the bootstrap list.
        self.add_from_table(id);
        let needs_bootstrap = self
            .queries
            .get(&id)
            .is_some_and(|e| e.query.pending_len() < K);
        if needs_bootstrap {
            let boot: Vec<SocketAddr> = self.config.bootstrap.clone();
            if let Some(e) = self.queries.get_mut(&id) {
                for addr in boot {
                    if let Some(nid) = NodeId::from_addr(&addr) {
                        e.query.add_pending(Candidate { addr, id: nid }, None);
                    }
                }
            }
        }
        self.read_more(id);
        id
    }

    fn add_from_table(&mut self, id: QueryId) {
        let Some(e) = self.queries.get_mut(&id) else {
            return;
        };
        let q = &mut e.query;
        if q.pending_len() >= K {
            return;
        }
        q.from_table = true;
        let want = K - q.pending_len();
        let found: Vec<Candidate> = self
            .table
            .closest(&q.target, want)
            .into_iter()
            .map(|n| Candidate {
                addr: n.addr,
                id: n.id,
            })
            .collect();
        for c in found {
            q.add_pending(c, None);
        }
    }

    fn read_more(&mut self, id: QueryId) {
        loop {
            let Some(e) = self.queries.get_mut(&id) else {
                return;
            };
            if e.query.finished {
                return;
            }
            let visits = e.query.next_visits();
            let (internal, command, target, value, retries) = (
                e.query.internal,
                e.query.command,
                e.query.target,
                e.query.value.clone(),
                e.query.retries,
            );
            for c in visits {
                let sent = self.send_request(
                    Purpose::Query(id),
                    c.addr,
                    Some(c.id),
                    None,
                    internal,
                    command,
                    Some(target),
                    value.clone(),
                    retries,
                    REQUEST_TIMEOUT,
                    false,
                );
                if sent.is_err() {
                    if let Some(e) = self.queries.get_mut(&id) {
                        e.query.on_error(c.addr, false, false);
                    }
                }
            }
            let Some(e) = self.queries.get_mut(&id) else {
                return;
            };
            if e.query.pending_len() > 0 || !e.query.is_exhausted() {
                return;
            }
            if e.query.wants_table_reseed() {
                self.add_from_table(id);
                continue;
            }
            self.finish_query(id);
            return;
        }
    }

    fn on_query_result(
        &mut self,
        id: QueryId,
        dest: SocketAddr,
        was_slow: bool,
        result: Result<Reply, RequestError>,
    ) {
        let self_id = *self.table.id();
        let Some(e) = self.queries.get_mut(&id) else {
            return;
        };
        let reply = match result {
            Ok(reply) => reply,
            Err(err) => {
                let refs = e
                    .query
                    .on_error(dest, err == RequestError::Timeout, was_slow);
                for r in refs {
                    self.down_hint(r, dest);
                }
                self.read_more(id);
                return;
            }
        };
        e.query.on_reply(&reply, was_slow);
        tracing::trace!(query = id.0, from = %reply.from, closer = ?reply.closer_nodes, "query reply");
        if e.query.finished {
            return;
        }
        let mut hints = Vec::new();
        for addr in reply.closer_nodes.iter().take(K) {
            let Some(nid) = NodeId::from_addr(addr) else {
                continue;
            };
            if nid == self_id {
                continue;
            }
            let (closer, hint) = e.query.add_pending(
                Candidate {
                    addr: *addr,
                    id: nid,
                },
                Some(reply.from),
            );
            hints.extend(hint);
            // dht-rpc stops at the first candidate that is not closer, but responders list
            // nodes in bucket order, not by distance, so nearer ones can follow a farther
            // one. Scanning the whole (at most k long) list finds them.
            let _ = closer;
        }
        e.query.after_reply();
        let role = e.query_role();
        for (to, down) in hints {
            self.down_hint(to, down);
        }
        if reply.error == 0 {
            match role {
                QueryRole::User => self.push_event(Event::QueryReply(id, reply)),
                QueryRole::Bootstrap => self.on_bootstrap_data(&reply),
                QueryRole::Background => {}
            }
            if role != QueryRole::User {
                let c = self.config.concurrency;
                let busy = self.inflight.len() >= 3;
                if let Some(e) = self.queries.get_mut(&id) {
                    e.query.concurrency = if busy { c.min((c / 8).max(2)) } else { c };
                }
            }
        }
        self.read_more(id);
    }

    fn down_hint(&mut self, to: SocketAddr, down: SocketAddr) {
        if let Some(limit) = self.config.down_hints_rate_limit {
            if self.down_hints_this_tick >= limit {
                return;
            }
        }
        self.down_hints_this_tick += 1;
        let mut w = Writer::with_capacity(6);
        if w.ipv4_address(&down).is_err() {
            return;
        }
        let value = Some(w.into_bytes());
        let _ = self.send_internal(Purpose::DownHint, to, None, DOWN_HINT, None, value);
    }

    fn finish_query(&mut self, id: QueryId) {
        let Some(e) = self.queries.remove(&id) else {
            return;
        };
        match e.role {
            QueryRole::User => self.push_event(Event::QueryDone(id, e.query.closest)),
            QueryRole::Background => {}
            QueryRole::Bootstrap => self.on_bootstrap_query_done(),
        }
    }

    // ---- bootstrap and network state ----

    fn start_bootstrap(&mut self) {
        self.bootstrap = Some(BootstrapState {
            iteration: 0,
            quick_nat_pending: self.firewalled
                && self.config.quick_firewall
                && !self.force_persistent,
            nat_reachable: false,
        });
        let target = *self.table.id();
        self.background_query(target, QueryRole::Bootstrap);
    }

    fn on_bootstrap_data(&mut self, reply: &Reply) {
        let Some(b) = &mut self.bootstrap else {
            return;
        };
        if !b.quick_nat_pending {
            return;
        }
        b.quick_nat_pending = false;
        let value = Some(self.server_port.to_le_bytes().to_vec());
        let _ = self.send_internal(Purpose::QuickNat, reply.from, None, PING_NAT, None, value);
    }

    fn on_bootstrap_query_done(&mut self) {
        let Some(b) = &self.bootstrap else {
            return;
        };
        if self.bootstrapped || (!b.nat_reachable && !self.force_persistent) || b.iteration >= 1 {
            self.finish_bootstrap();
            return;
        }
        let only_firewall = !self.force_persistent;
        self.start_network_check(only_firewall, AfterCheck::Bootstrap);
    }

    fn on_bootstrap_check_done(&mut self, changed: bool) {
        match &mut self.bootstrap {
            Some(b) if changed => {
                b.iteration += 1;
                let target = *self.table.id();
                self.background_query(target, QueryRole::Bootstrap);
            }
            _ => self.finish_bootstrap(),
        }
    }

    fn finish_bootstrap(&mut self) {
        self.bootstrap = None;
        if self.bootstrapped {
            return;
        }
        self.bootstrapped = true;
        self.push_event(Event::Bootstrapped);
    }

    /// dht-rpc's `_updateNetworkState`: decides whether we are reachable and, unless only the
    /// firewall is in question, whether to become persistent.
    fn start_network_check(&mut self, only_firewall: bool, then: AfterCheck) {
        let settle = |node: &mut Self, changed: bool| {
            if then == AfterCheck::Bootstrap {
                node.on_bootstrap_check_done(changed);
            }
        };
        if self.network_check.is_some() || !self.ephemeral || (only_firewall && !self.firewalled) {
            return settle(self, false);
        }
        let (host, port) = (self.nat.host(), self.nat.port());
        if !only_firewall {
            self.stable_ticks = MORE_STABLE_TICKS;
            self.last_host = Some(host);
        }
        if host.is_none() || port == 0 {
            return settle(self, false);
        }
        let mut check = NetworkCheck {
            only_firewall,
            host,
            port,
            then,
            probes_left: 0,
            probes: 0,
            replies: Vec::new(),
            hosts_on_server: HashSet::new(),
        };
        if !self.firewalled {
            let sampler = self.nat.clone();
            return self.complete_network_check(check, false, sampler, false);
        }
        // Probe our server socket through the most recently seen nodes (and bootstrappers).
        let mut targets: Vec<(u64, SocketAddr)> =
            self.table.iter().map(|n| (n.recency, n.addr)).collect();
        targets.sort_unstable_by_key(|t| std::cmp::Reverse(t.0));
        let mut targets: Vec<SocketAddr> = targets.into_iter().take(5).map(|t| t.1).collect();
        if targets.len() < 5 {
            targets.extend(self.config.bootstrap.iter().copied());
        }
        if targets.is_empty() {
            return settle(self, false);
        }
        check.probes = targets.len();
        check.probes_left = targets.len();
        self.network_check = Some(check);
        let value = self.server_port.to_le_bytes().to_vec();
        for t in targets {
            let sent = self.send_internal(
                Purpose::FirewallProbe,
                t,
                None,
                PING_NAT,
                None,
                Some(value.clone()),
            );
            if sent.is_err() {
                self.on_probe_result(None);
            }
        }
    }

    fn on_probe_result(&mut self, reply: Option<Reply>) {
        let Some(check) = &mut self.network_check else {
            return;
        };
        check.replies.extend(reply);
        check.probes_left -= 1;
        if check.probes_left > 0 {
            return;
        }
        let check = self.network_check.take().expect("present");
        let mut sampler = NatSampler::new();
        let mut count = 0;
        for r in &check.replies {
            if let (true, Some(to)) = (check.hosts_on_server.contains(&r.from.ip()), r.to) {
                count += 1;
                sampler.add(to.ip(), to.port());
            }
        }
        let needed = if check.probes >= 5 { 3 } else { 1 };
        let firewalled = count < needed
            || sampler.host().is_none()
            || self.nat.host() != sampler.host()
            || sampler.port() == 0
            || sampler.port() != self.server_port;
        self.complete_network_check(check, firewalled, sampler, true);
    }

    fn complete_network_check(
        &mut self,
        check: NetworkCheck,
        firewalled: bool,
        sampler: NatSampler,
        fresh_sampler: bool,
    ) {
        let changed = self.apply_network_check(&check, firewalled, sampler, fresh_sampler);
        if check.then == AfterCheck::Bootstrap {
            self.on_bootstrap_check_done(changed);
        }
    }

    fn apply_network_check(
        &mut self,
        check: &NetworkCheck,
        firewalled: bool,
        sampler: NatSampler,
        fresh_sampler: bool,
    ) -> bool {
        if firewalled {
            return false;
        }
        self.firewalled = false;
        if !self.ephemeral || check.host != self.nat.host() || check.port != self.nat.port() {
            return false;
        }
        let (Some(host), port) = (sampler.host(), sampler.port()) else {
            return false;
        };
        if Some(host) != check.host || port == 0 {
            return false;
        }
        let Some(id) = NodeId::from_addr(&SocketAddr::new(host, port)) else {
            return false;
        };
        if !check.only_firewall {
            self.ephemeral = false;
        }
        if fresh_sampler {
            let before = (self.nat.host(), self.nat.port());
            self.non_persistent_samples.clear();
            self.nat = sampler;
            if before != (self.nat.host(), self.nat.port()) {
                self.push_event(Event::NatUpdate(self.nat.host(), self.nat.port()));
            }
        }
        if *self.table.id() != id {
            let mut table = RoutingTable::new(id);
            for n in self.table.iter() {
                if n.id != id {
                    table.add(n.clone());
                }
            }
            self.table = table;
            if self.bootstrapped {
                self.refresh();
            }
        }
        if !self.ephemeral {
            self.push_event(Event::Persistent(id));
        }
        true
    }
}

impl QueryEntry {
    fn query_role(&self) -> QueryRole {
        self.role
    }
}

fn plain_closer(req: &IncomingRequest) -> ReplyOptions {
    ReplyOptions {
        token: false,
        closer_nodes: req.target.is_some(),
        to: None,
    }
}

fn le_u16(v: Option<&[u8]>) -> Option<u16> {
    match v {
        Some(v) if v.len() >= 2 => Some(u16::from_le_bytes([v[0], v[1]])),
        _ => None,
    }
}
