//! The tokio driver for [`RpcNode`]: two UDP sockets, a timer and a command channel, all in
//! one task, so the protocol core never needs a lock.

use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use tokio::sync::{mpsc, oneshot, watch};
use tokio::time::Instant;

use super::handler::CommandHandler;
use super::id::NodeId;
use super::node::{Config, Event, RequestId, RpcNode, Stats, UserRequest};
use super::query::{QueryId, QueryOptions};
use super::{Reply, RequestError, SocketKind};
use crate::udx::{Datagram, Udx, UdxSocket};

/// Datagrams waiting for the driver per socket; beyond this they are dropped and counted by
/// the UDX instance (dht-rpc retransmits).
const INBOX: usize = 1024;

/// Where and how a [`Node`] listens.
#[derive(Debug, Clone)]
pub struct NodeConfig {
    /// Address to bind both sockets to.
    pub host: IpAddr,
    /// Preferred server port: tries `port..port + 5`, then (if `any_port`) a random one.
    /// 0 picks a random port.
    pub port: u16,
    /// Fall back to a random port when the preferred ones are taken.
    pub any_port: bool,
    /// Bootstrap nodes as `host:port` or `suggested-ip@host:port`.
    pub bootstrap: Vec<String>,
    /// Protocol settings; its `bootstrap` list is filled from `bootstrap` above.
    pub rpc: Config,
}

impl Default for NodeConfig {
    fn default() -> Self {
        NodeConfig {
            host: IpAddr::V4(Ipv4Addr::UNSPECIFIED),
            port: 0,
            any_port: true,
            bootstrap: Vec::new(),
            rpc: Config::default(),
        }
    }
}

/// A snapshot of the node's state, published after every change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeState {
    /// Id while persistent.
    pub id: Option<NodeId>,
    /// Routing table size.
    pub table_size: usize,
    /// Whether the bootstrap walk finished.
    pub bootstrapped: bool,
    /// Whether the server socket is believed unreachable.
    pub firewalled: bool,
    /// Public address as other nodes report it (port 0: unknown or random).
    pub public_address: (Option<IpAddr>, u16),
    /// Counters.
    pub stats: Stats,
}

impl NodeState {
    /// Whether our NAT maps each destination to a different port (the nodes agree on our
    /// host but not on a port): dht-rpc's `randomized`.
    pub fn randomized(&self) -> bool {
        self.public_address.0.is_some() && self.public_address.1 == 0
    }

    fn of(node: &RpcNode) -> Self {
        NodeState {
            id: node.id(),
            table_size: node.table().len(),
            bootstrapped: node.is_bootstrapped(),
            firewalled: node.is_firewalled(),
            public_address: node.public_address(),
            stats: node.stats(),
        }
    }
}

enum QueryMsg {
    Reply(Reply),
    Done(Vec<Reply>),
}

enum Command {
    Request(
        UserRequest,
        SocketAddr,
        oneshot::Sender<Result<Reply, RequestError>>,
    ),
    Query(QuerySpec, mpsc::UnboundedSender<QueryMsg>),
    AddNode(SocketAddr),
    Refresh,
    Closest(NodeId, oneshot::Sender<Vec<SocketAddr>>),
}

struct QuerySpec {
    target: NodeId,
    user_command: Option<(u64, Option<Vec<u8>>)>,
    opts: QueryOptions,
}

/// A running dht-rpc node. Cloning gives another handle to the same node; the node stops
/// when the last handle is dropped.
#[derive(Clone)]
pub struct Node {
    tx: mpsc::UnboundedSender<Command>,
    state: watch::Receiver<NodeState>,
    server: UdxSocket,
    client: UdxSocket,
}

impl std::fmt::Debug for Node {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Node")
            .field("server_addr", &self.server.local_addr())
            .field("state", &*self.state.borrow())
            .finish()
    }
}

/// The replies of a running query, as they arrive.
#[derive(Debug)]
pub struct QueryStream {
    rx: mpsc::UnboundedReceiver<QueryMsg>,
    closest: Option<Vec<Reply>>,
}

impl std::fmt::Debug for QueryMsg {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            QueryMsg::Reply(r) => f.debug_tuple("Reply").field(&r.from).finish(),
            QueryMsg::Done(c) => f.debug_tuple("Done").field(&c.len()).finish(),
        }
    }
}

impl QueryStream {
    /// The next successful reply; `None` once the query is over.
    pub async fn next(&mut self) -> Option<Reply> {
        if self.closest.is_some() {
            return None;
        }
        match self.rx.recv().await {
            Some(QueryMsg::Reply(r)) => Some(r),
            Some(QueryMsg::Done(c)) => {
                self.closest = Some(c);
                None
            }
            None => {
                self.closest = Some(Vec::new());
                None
            }
        }
    }

    /// Runs the query to the end and returns the closest replies, nearest first.
    pub async fn closest(mut self) -> Vec<Reply> {
        while self.next().await.is_some() {}
        self.closest.unwrap_or_default()
    }
}

impl Node {
    /// Binds the sockets, resolves the bootstrap list and starts the node.
    pub async fn bind(config: NodeConfig) -> io::Result<Node> {
        Self::start(config, None).await
    }

    /// Like [`Node::bind`], with a handler for user commands.
    pub async fn bind_with_handler(
        config: NodeConfig,
        handler: Box<dyn CommandHandler>,
    ) -> io::Result<Node> {
        Self::start(config, Some(handler)).await
    }

    async fn start(
        mut config: NodeConfig,
        handler: Option<Box<dyn CommandHandler>>,
    ) -> io::Result<Node> {
        let udx = Udx::new();
        let (server_tx, server_rx) = mpsc::channel(INBOX);
        let (client_tx, client_rx) = mpsc::channel(INBOX);
        let server =
            bind_server(&udx, config.host, config.port, config.any_port, server_tx).await?;
        let client = udx.bind(SocketAddr::new(config.host, 0), client_tx).await?;
        let server_addr = server.local_addr();
        if let Some(a) = &mut config.rpc.bootstrapper_addr {
            if a.port() == 0 {
                a.set_port(server_addr.port());
            }
        }
        for spec in &config.bootstrap {
            config.rpc.bootstrap.push(resolve_bootstrap(spec).await?);
        }
        let mut node = RpcNode::new(config.rpc, server_addr.port(), Instant::now().into_std());
        if let Some(h) = handler {
            node.set_handler(h);
        }
        let (tx, rx) = mpsc::unbounded_channel();
        let (state_tx, state) = watch::channel(NodeState::of(&node));
        let driver = Driver {
            node,
            server: server.clone(),
            client: client.clone(),
            server_rx,
            client_rx,
            rx,
            state: state_tx,
            requests: HashMap::new(),
            queries: HashMap::new(),
        };
        tokio::spawn(driver.run());
        Ok(Node {
            tx,
            state,
            server,
            client,
        })
    }

    /// The server socket's local address.
    pub fn local_addr(&self) -> SocketAddr {
        self.server.local_addr()
    }

    /// The client socket's local address.
    pub fn client_addr(&self) -> SocketAddr {
        self.client.local_addr()
    }

    /// The UDX instance both sockets belong to; connections create their streams here.
    pub fn udx(&self) -> &Udx {
        self.server.udx()
    }

    /// The socket other nodes reach us at (requests to us arrive here).
    pub fn server_socket(&self) -> &UdxSocket {
        &self.server
    }

    /// The socket our own requests leave from.
    pub fn client_socket(&self) -> &UdxSocket {
        &self.client
    }

    /// The socket connections use by default, as dht-rpc's `socket`: the client socket while
    /// the node is firewalled (the server socket is unreachable then), the server socket
    /// otherwise.
    pub fn socket(&self) -> &UdxSocket {
        if self.state.borrow().firewalled {
            &self.client
        } else {
            &self.server
        }
    }

    /// The current state.
    pub fn state(&self) -> NodeState {
        self.state.borrow().clone()
    }

    /// A receiver that sees every state change.
    pub fn watch(&self) -> watch::Receiver<NodeState> {
        self.state.clone()
    }

    /// Waits until the bootstrap walk is over.
    pub async fn bootstrapped(&self) -> NodeState {
        self.wait_for(|s| s.bootstrapped).await
    }

    /// Waits until `f` holds for the state (or the node stopped).
    pub async fn wait_for(&self, f: impl Fn(&NodeState) -> bool) -> NodeState {
        let mut rx = self.state.clone();
        if let Ok(s) = rx.wait_for(|s| f(s)).await {
            return s.clone();
        }
        let last = rx.borrow().clone();
        last
    }

    /// Sends one request and waits for its reply.
    pub async fn request(&self, req: UserRequest, dest: SocketAddr) -> Result<Reply, RequestError> {
        let (tx, rx) = oneshot::channel();
        self.tx
            .send(Command::Request(req, dest, tx))
            .map_err(|_| RequestError::Destroyed)?;
        rx.await.unwrap_or(Err(RequestError::Destroyed))
    }

    /// Pings `dest`.
    pub async fn ping(&self, dest: SocketAddr) -> Result<Reply, RequestError> {
        let req = UserRequest {
            internal: true,
            command: super::commands::PING,
            ..UserRequest::default()
        };
        self.request(req, dest).await
    }

    /// Starts a FIND_NODE walk towards `target`.
    pub fn find_node(&self, target: NodeId, opts: QueryOptions) -> QueryStream {
        self.start_query(QuerySpec {
            target,
            user_command: None,
            opts,
        })
    }

    /// Starts a walk sending user `command` to every node on the way.
    pub fn query(
        &self,
        target: NodeId,
        command: u64,
        value: Option<Vec<u8>>,
        opts: QueryOptions,
    ) -> QueryStream {
        self.start_query(QuerySpec {
            target,
            user_command: Some((command, value)),
            opts,
        })
    }

    fn start_query(&self, spec: QuerySpec) -> QueryStream {
        let (tx, rx) = mpsc::unbounded_channel();
        // If the node is gone the channel closes at once and the stream ends empty.
        let _ = self.tx.send(Command::Query(spec, tx));
        QueryStream { rx, closest: None }
    }

    /// The addresses in our table closest to `target`.
    pub async fn closest_in_table(&self, target: NodeId) -> Vec<SocketAddr> {
        let (tx, rx) = oneshot::channel();
        if self.tx.send(Command::Closest(target, tx)).is_err() {
            return Vec::new();
        }
        rx.await.unwrap_or_default()
    }

    /// Adds a known node to the table.
    pub fn add_node(&self, addr: SocketAddr) {
        let _ = self.tx.send(Command::AddNode(addr));
    }

    /// Starts a background refresh of the table.
    pub fn refresh(&self) {
        let _ = self.tx.send(Command::Refresh);
    }
}

struct Driver {
    node: RpcNode,
    server: UdxSocket,
    client: UdxSocket,
    server_rx: mpsc::Receiver<Datagram>,
    client_rx: mpsc::Receiver<Datagram>,
    rx: mpsc::UnboundedReceiver<Command>,
    state: watch::Sender<NodeState>,
    requests: HashMap<RequestId, oneshot::Sender<Result<Reply, RequestError>>>,
    queries: HashMap<QueryId, mpsc::UnboundedSender<QueryMsg>>,
}

impl Driver {
    async fn run(mut self) {
        loop {
            self.flush().await;
            let deadline = self
                .node
                .poll_timeout()
                .map(Instant::from_std)
                .unwrap_or_else(|| Instant::now() + Duration::from_secs(3600));
            tokio::select! {
                Some(d) = self.server_rx.recv() => self.on_datagram(SocketKind::Server, d),
                Some(d) = self.client_rx.recv() => self.on_datagram(SocketKind::Client, d),
                cmd = self.rx.recv() => match cmd {
                    Some(cmd) => self.on_command(cmd),
                    None => break,
                },
                _ = tokio::time::sleep_until(deadline) => {
                    self.node.handle_timeout(Instant::now().into_std());
                }
            }
        }
        self.node.destroy();
        self.flush().await;
    }

    fn on_datagram(&mut self, socket: SocketKind, d: Datagram) {
        // Shorter datagrams on the DHT sockets are stray holepunch probes (hyperdht ignores
        // them there too).
        if d.payload.len() >= 2 {
            let now = Instant::now().into_std();
            self.node.handle_datagram(now, socket, d.from, &d.payload);
        }
    }

    fn on_command(&mut self, cmd: Command) {
        let now = Instant::now().into_std();
        match cmd {
            Command::Request(req, dest, tx) => match self.node.request(now, req, dest) {
                Ok(id) => {
                    self.requests.insert(id, tx);
                }
                Err(e) => {
                    let _ = tx.send(Err(e));
                }
            },
            Command::Query(spec, tx) => {
                let id = match spec.user_command {
                    None => self.node.find_node(now, spec.target, spec.opts),
                    Some((command, value)) => {
                        self.node.query(now, spec.target, command, value, spec.opts)
                    }
                };
                self.queries.insert(id, tx);
            }
            Command::AddNode(addr) => self.node.add_node(addr),
            Command::Refresh => self.node.refresh(),
            Command::Closest(target, tx) => {
                let nodes = self.node.table().closest(&target, super::table::K);
                let _ = tx.send(nodes.iter().map(|n| n.addr).collect());
            }
        }
    }

    async fn flush(&mut self) {
        while let Some(t) = self.node.poll_transmit() {
            let socket = match t.socket {
                SocketKind::Server => &self.server,
                SocketKind::Client => &self.client,
            };
            // UDP is best effort: a failed send looks like a lost packet to the protocol.
            if let Err(e) = socket.send_to(&t.payload, t.dest).await {
                tracing::debug!(dest = %t.dest, error = %e, "send failed");
            }
        }
        while let Some(e) = self.node.poll_event() {
            match e {
                Event::Response(id, result) => {
                    if let Some(tx) = self.requests.remove(&id) {
                        let _ = tx.send(result);
                    }
                }
                Event::QueryReply(id, reply) => {
                    let gone = match self.queries.get(&id) {
                        Some(tx) => tx.send(QueryMsg::Reply(reply)).is_err(),
                        None => false,
                    };
                    if gone {
                        self.queries.remove(&id);
                        self.node.cancel_query(id);
                    }
                }
                Event::QueryDone(id, closest) => {
                    if let Some(tx) = self.queries.remove(&id) {
                        let _ = tx.send(QueryMsg::Done(closest));
                    }
                }
                Event::Bootstrapped => tracing::debug!("bootstrapped"),
                Event::Persistent(id) => tracing::info!(id = %id.to_hex(), "persistent"),
                Event::Ephemeral => tracing::info!("ephemeral again"),
                Event::NatUpdate(host, port) => tracing::debug!(?host, port, "nat update"),
            }
        }
        let next = NodeState::of(&self.node);
        self.state.send_if_modified(|s| {
            let changed = *s != next;
            if changed {
                *s = next;
            }
            changed
        });
    }
}

async fn bind_server(
    udx: &Udx,
    host: IpAddr,
    port: u16,
    any_port: bool,
    inbox: mpsc::Sender<Datagram>,
) -> io::Result<UdxSocket> {
    if port != 0 {
        let mut last = None;
        for p in port..port.saturating_add(5) {
            match udx.bind(SocketAddr::new(host, p), inbox.clone()).await {
                Ok(s) => return Ok(s),
                Err(e) => last = Some(e),
            }
        }
        if !any_port {
            return Err(last.expect("tried at least one port"));
        }
    }
    udx.bind(SocketAddr::new(host, 0), inbox).await
}

/// Resolves `host:port` or `suggested-ip@host:port` to an IPv4 socket address. With a
/// suggested IP the name is not looked up at all, which keeps startup free of DNS.
pub async fn resolve_bootstrap(spec: &str) -> io::Result<SocketAddr> {
    let invalid = || {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("bad bootstrap node {spec:?}: expected host:port"),
        )
    };
    let (host, port) = spec.rsplit_once(':').ok_or_else(invalid)?;
    let port: u16 = port.parse().map_err(|_| invalid())?;
    let host = match host.split_once('@') {
        Some((ip, _)) => ip,
        None => host,
    };
    if let Ok(ip) = host.parse::<Ipv4Addr>() {
        return Ok(SocketAddr::new(IpAddr::V4(ip), port));
    }
    tokio::net::lookup_host((host, port))
        .await?
        .find(SocketAddr::is_ipv4)
        .ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::NotFound,
                format!("{host} has no IPv4 address"),
            )
        })
}
