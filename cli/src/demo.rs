//! `demo`: a DHT of persistent nodes on loopback, all in this process, and one lookup
//! through it checked against the true XOR-closest set. Needs no network beyond 127.0.0.1.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use clap::Args;
use hyperswarm::rpc::{Config, Node, NodeConfig, NodeId, QueryOptions, K};

#[derive(Args)]
pub struct DemoArgs {
    /// Number of DHT nodes besides the bootstrap node.
    #[arg(long, default_value_t = 30)]
    nodes: usize,
}

const LOOPBACK: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);
const STEP_TIMEOUT: Duration = Duration::from_secs(30);

pub async fn run(args: DemoArgs) -> Result<(), String> {
    let started = Instant::now();
    let boot = Node::bind(NodeConfig {
        host: LOOPBACK,
        rpc: Config::bootstrapper(SocketAddr::new(LOOPBACK, 0)),
        ..NodeConfig::default()
    })
    .await
    .map_err(|e| format!("cannot bind bootstrap node: {e}"))?;
    let boot_addr = boot.local_addr().to_string();
    println!("bootstrap node listening on {boot_addr}");

    let mut nodes = vec![boot.clone()];
    for _ in 0..args.nodes {
        let node = Node::bind(NodeConfig {
            host: LOOPBACK,
            bootstrap: vec![boot_addr.clone()],
            rpc: Config {
                ephemeral: Some(false),
                firewalled: false,
                ..Config::default()
            },
            ..NodeConfig::default()
        })
        .await
        .map_err(|e| format!("cannot bind node: {e}"))?;
        nodes.push(node);
    }
    for node in &nodes {
        tokio::time::timeout(
            STEP_TIMEOUT,
            node.wait_for(|s| s.bootstrapped && s.id.is_some()),
        )
        .await
        .map_err(|_| "a node did not become persistent in time".to_string())?;
    }
    println!(
        "{} persistent nodes up in {:.0} ms",
        nodes.len(),
        started.elapsed().as_secs_f64() * 1000.0
    );

    let client = Node::bind(NodeConfig {
        host: LOOPBACK,
        bootstrap: vec![boot_addr],
        rpc: Config {
            ephemeral: Some(true),
            ..Config::default()
        },
        ..NodeConfig::default()
    })
    .await
    .map_err(|e| format!("cannot bind client: {e}"))?;
    tokio::time::timeout(STEP_TIMEOUT, client.bootstrapped())
        .await
        .map_err(|_| "the client did not bootstrap in time".to_string())?;

    let target = NodeId(rand::random());
    println!("looking up {}", target.to_hex());
    let lookup = Instant::now();
    let closest = tokio::time::timeout(
        STEP_TIMEOUT,
        client.find_node(target, QueryOptions::default()).closest(),
    )
    .await
    .map_err(|_| "the lookup did not finish in time".to_string())?;
    let took = lookup.elapsed();

    let mut truth: Vec<NodeId> = nodes.iter().filter_map(|n| n.state().id).collect();
    truth.sort_by(|a, b| target.cmp_distance(a, b));
    truth.truncate(K);
    let mut hits = 0;
    for r in &closest {
        let id = r.from_id.map(|i| i.to_hex()).unwrap_or_default();
        let ok = r.from_id.is_some_and(|i| truth.contains(&i));
        hits += usize::from(ok);
        println!(
            "  {:<21} {}  {}",
            r.from,
            &id[..16.min(id.len())],
            if ok { "✓" } else { " " }
        );
    }
    println!(
        "lookup answered by {} nodes in {:.1} ms; {hits} of them are among the {} XOR-closest \
         nodes (✓)\nresponders list nodes bucket by bucket, as JS dht-rpc does, so a lookup can \
         miss a close node no responder lists",
        closest.len(),
        took.as_secs_f64() * 1000.0,
        truth.len()
    );
    if closest.is_empty() {
        return Err("the lookup found no nodes".into());
    }
    Ok(())
}
