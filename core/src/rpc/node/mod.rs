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

mod incoming;
mod network;
mod requests;
mod upkeep;
mod walk;

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

    /// The time of the latest input (datagram, timer or call).
    pub fn now(&self) -> Instant {
        self.now
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
}
