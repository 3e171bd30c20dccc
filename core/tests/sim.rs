//! dht-rpc nodes in a simulated network under virtual time: no sockets, no sleeps, minutes
//! of protocol time in milliseconds. These test the state machines' behaviour over time
//! (bootstrap, persistence, lookups, dead-node eviction); wire compatibility is proven by the
//! interop scenarios against JS.

use std::collections::{HashMap, HashSet};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use hyperswarm::rpc::{Config, Event, NodeId, QueryId, QueryOptions, Reply, RpcNode, SocketKind};

struct SimNode {
    rpc: RpcNode,
    server: SocketAddr,
    client: SocketAddr,
    events: Vec<Event>,
}

struct Sim {
    start: Instant,
    now: Instant,
    nodes: Vec<SimNode>,
    by_addr: HashMap<SocketAddr, (usize, SocketKind)>,
    dead: HashSet<usize>,
}

impl Sim {
    fn new() -> Self {
        let now = Instant::now();
        Sim {
            start: now,
            now,
            nodes: Vec::new(),
            by_addr: HashMap::new(),
            dead: HashSet::new(),
        }
    }

    fn addr(i: usize, port: u16) -> SocketAddr {
        let ip = Ipv4Addr::new(10, 0, (i / 250) as u8, (i % 250) as u8 + 1);
        SocketAddr::new(IpAddr::V4(ip), port)
    }

    fn next_addr(&self) -> SocketAddr {
        Self::addr(self.nodes.len(), 49737)
    }

    fn add(&mut self, mut config: Config) -> usize {
        let i = self.nodes.len();
        let server = Self::addr(i, 49737);
        let client = Self::addr(i, 30000 + i as u16);
        config.seed = Some(i as u64 + 1);
        let rpc = RpcNode::new(config, server.port(), self.now);
        self.by_addr.insert(server, (i, SocketKind::Server));
        self.by_addr.insert(client, (i, SocketKind::Client));
        self.nodes.push(SimNode {
            rpc,
            server,
            client,
            events: Vec::new(),
        });
        self.deliver();
        i
    }

    /// Delivers datagrams until the network is quiet (zero latency).
    fn deliver(&mut self) {
        for _ in 0..100_000 {
            let mut moved = false;
            for i in 0..self.nodes.len() {
                while let Some(t) = self.nodes[i].rpc.poll_transmit() {
                    moved = true;
                    if self.dead.contains(&i) {
                        continue;
                    }
                    let from = match t.socket {
                        SocketKind::Server => self.nodes[i].server,
                        SocketKind::Client => self.nodes[i].client,
                    };
                    if let Some(&(j, kind)) = self.by_addr.get(&t.dest) {
                        if !self.dead.contains(&j) {
                            let now = self.now;
                            self.nodes[j]
                                .rpc
                                .handle_datagram(now, kind, from, &t.payload);
                        }
                    }
                }
                while let Some(e) = self.nodes[i].rpc.poll_event() {
                    self.nodes[i].events.push(e);
                }
            }
            if !moved {
                return;
            }
        }
        panic!("network never went quiet");
    }

    /// Advances virtual time to the next timer and fires it.
    fn step(&mut self) {
        let next = self
            .nodes
            .iter()
            .enumerate()
            .filter(|(i, _)| !self.dead.contains(i))
            .filter_map(|(_, n)| n.rpc.poll_timeout())
            .min()
            .expect("some node has a timer");
        self.now = self.now.max(next);
        for i in 0..self.nodes.len() {
            if self.dead.contains(&i) {
                continue;
            }
            if self.nodes[i]
                .rpc
                .poll_timeout()
                .is_some_and(|t| t <= self.now)
            {
                let now = self.now;
                self.nodes[i].rpc.handle_timeout(now);
            }
        }
        self.deliver();
    }

    fn run_until(&mut self, limit: Duration, mut done: impl FnMut(&Sim) -> bool) {
        while !done(self) {
            assert!(
                self.now - self.start < limit,
                "condition not reached within {limit:?} of virtual time"
            );
            self.step();
        }
    }

    fn query_done(&self, node: usize, q: QueryId) -> Option<Vec<Reply>> {
        self.nodes[node].events.iter().find_map(|e| match e {
            Event::QueryDone(id, closest) if *id == q => Some(closest.clone()),
            _ => None,
        })
    }
}

fn persistent(boot: SocketAddr) -> Config {
    Config {
        bootstrap: vec![boot],
        ephemeral: Some(false),
        firewalled: false,
        ..Config::default()
    }
}

/// A bootstrap node, `n` persistent nodes and nothing else, all settled.
fn network(n: usize) -> (Sim, SocketAddr) {
    let mut sim = Sim::new();
    let boot = sim.next_addr();
    sim.add(Config::bootstrapper(boot));
    for _ in 0..n {
        let i = sim.add(persistent(boot));
        sim.run_until(Duration::from_secs(60), |s| {
            s.nodes[i].rpc.is_bootstrapped()
        });
    }
    (sim, boot)
}

#[test]
fn persistent_nodes_take_the_id_of_their_address() {
    let (sim, _) = network(30);
    for n in &sim.nodes {
        assert!(n.rpc.is_bootstrapped());
        assert_eq!(
            n.rpc.id(),
            NodeId::from_addr(&n.server),
            "id is hash(public address)"
        );
        assert!(!n.rpc.is_firewalled());
    }
    let with_persistent_event = sim
        .nodes
        .iter()
        .filter(|n| n.events.iter().any(|e| matches!(e, Event::Persistent(_))))
        .count();
    assert_eq!(with_persistent_event, 31);
}

#[test]
fn an_ephemeral_client_finds_the_closest_nodes() {
    let (mut sim, boot) = network(40);
    let client = sim.add(Config {
        bootstrap: vec![boot],
        ephemeral: Some(true),
        ..Config::default()
    });
    sim.run_until(Duration::from_secs(60), |s| {
        s.nodes[client].rpc.is_bootstrapped()
    });
    assert_eq!(
        sim.nodes[client].rpc.id(),
        None,
        "ephemeral clients stay anonymous"
    );
    // No persistent node adds the ephemeral client to its table.
    let client_id = sim.nodes[client].rpc.table_id();
    assert!(sim.nodes[..client]
        .iter()
        .all(|n| n.rpc.table().get(&client_id).is_none()));

    let target = NodeId([0x5a; 32]);
    let now = sim.now;
    let q = sim.nodes[client]
        .rpc
        .find_node(now, target, QueryOptions::default());
    sim.deliver();
    sim.run_until(Duration::from_secs(120), |s| {
        s.query_done(client, q).is_some()
    });
    let closest = sim.query_done(client, q).unwrap();
    assert_eq!(closest.len(), 20);
    let ids: Vec<NodeId> = closest
        .iter()
        .map(|r| r.from_id.expect("persistent ids"))
        .collect();
    let mut sorted = ids.clone();
    sorted.sort_by(|a, b| target.cmp_distance(a, b));
    assert_eq!(ids, sorted, "closest replies come nearest first");
    // The very closest node in the whole network is always found.
    let best = sim.nodes[..client]
        .iter()
        .filter_map(|n| n.rpc.id())
        .min_by(|a, b| target.cmp_distance(a, b))
        .unwrap();
    assert_eq!(ids[0], best);
}

#[test]
fn dead_nodes_leave_every_table() {
    let (mut sim, _) = network(25);
    let victim = 7;
    let victim_id = sim.nodes[victim].rpc.id().unwrap();
    let knew = sim
        .nodes
        .iter()
        .filter(|n| n.rpc.table().get(&victim_id).is_some())
        .count();
    assert!(knew > 0);
    sim.dead.insert(victim);
    // Periodic pings (every 8 ticks of 5 s) find it gone within a few rounds.
    sim.run_until(Duration::from_secs(3600), |s| {
        s.nodes
            .iter()
            .enumerate()
            .all(|(i, n)| i == victim || n.rpc.table().get(&victim_id).is_none())
    });
}

#[test]
fn an_adaptive_node_becomes_persistent_after_a_stable_period() {
    let (mut sim, boot) = network(10);
    let n = sim.add(Config {
        bootstrap: vec![boot],
        ..Config::default()
    });
    sim.run_until(Duration::from_secs(60), |s| {
        s.nodes[n].rpc.is_bootstrapped()
    });
    // The quick firewall probe during bootstrap proved the server socket reachable.
    assert!(!sim.nodes[n].rpc.is_firewalled());
    assert!(sim.nodes[n].rpc.is_ephemeral());
    sim.run_until(Duration::from_secs(3 * 3600), |s| {
        !s.nodes[n].rpc.is_ephemeral()
    });
    assert_eq!(
        sim.nodes[n].rpc.id(),
        NodeId::from_addr(&sim.nodes[n].server)
    );
}
