//! `dht-node`, `dht-ping` and `dht-find`.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use clap::Args;
use hyperswarm::dht::HyperDht;
use hyperswarm::rpc::{Config, Node, NodeConfig, NodeId, QueryOptions};
use serde_json::json;
use tokio::io::AsyncReadExt;
use tokio::signal::unix::{signal, SignalKind};

use crate::output::{node_json, Out};
use crate::PUBLIC_BOOTSTRAP;

/// The port JS HyperDHT nodes listen on by default.
const DEFAULT_NODE_PORT: u16 = 49737;

#[derive(Args)]
pub struct NodeArgs {
    /// Print one JSON object per line; the node also exits when stdin closes.
    #[arg(long)]
    json: bool,
    /// Run as a bootstrap node: needs the public --host and a fixed --port.
    #[arg(long, requires = "host")]
    bootstrap_mode: bool,
    /// Address to bind (and, for a bootstrap node, the public address).
    #[arg(long)]
    host: Option<IpAddr>,
    /// Preferred port (tries it and the next four, then any).
    #[arg(long)]
    port: Option<u16>,
    /// Bootstrap nodes, host:port, comma separated. Defaults to the public HyperDHT nodes
    /// (none in bootstrap mode).
    #[arg(long, value_delimiter = ',')]
    bootstrap: Option<Vec<String>>,
    /// Become persistent (routable, in others' tables) as soon as reachability is proven,
    /// instead of after ~20 minutes of stability.
    #[arg(long)]
    persistent: bool,
}

#[derive(Args)]
pub struct PingArgs {
    /// Print one JSON object per line.
    #[arg(long)]
    json: bool,
    /// Node to ping, IPv4 host:port.
    to: SocketAddr,
}

#[derive(Args)]
pub struct FindArgs {
    /// Print one JSON object per line.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    bootstrap: BootstrapArg,
    /// Targets: 64 hex characters each.
    #[arg(required = true)]
    targets: Vec<String>,
}

/// `--bootstrap`, shared by every command that joins a DHT.
#[derive(Args)]
pub struct BootstrapArg {
    /// Bootstrap nodes, host:port, comma separated. Defaults to the public HyperDHT nodes.
    #[arg(long, value_delimiter = ',')]
    bootstrap: Option<Vec<String>>,
}

impl BootstrapArg {
    /// The given nodes, or the public ones.
    pub fn list(&self) -> Vec<String> {
        bootstrap_list(self.bootstrap.clone())
    }
}

fn bootstrap_list(given: Option<Vec<String>>) -> Vec<String> {
    given.unwrap_or_else(|| PUBLIC_BOOTSTRAP.iter().map(|s| s.to_string()).collect())
}

/// Waits for Ctrl-C or SIGTERM, and in `--json` mode also for stdin to close (so a
/// supervising program can stop us by closing the pipe).
pub async fn wait_for_exit(json: bool) -> Result<(), String> {
    let mut sigterm = signal(SignalKind::terminate()).map_err(|e| e.to_string())?;
    let stdin_closed = async move {
        if !json {
            return std::future::pending().await;
        }
        let mut stdin = tokio::io::stdin();
        let mut buf = [0u8; 256];
        while matches!(stdin.read(&mut buf).await, Ok(n) if n > 0) {}
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = sigterm.recv() => {}
        _ = stdin_closed => {}
    }
    Ok(())
}

/// An ephemeral client node.
pub fn client_config(bootstrap: Vec<String>) -> NodeConfig {
    NodeConfig {
        host: IpAddr::V4(Ipv4Addr::UNSPECIFIED),
        bootstrap,
        rpc: Config {
            ephemeral: Some(true),
            ..Config::default()
        },
        ..NodeConfig::default()
    }
}

pub async fn node(args: NodeArgs) -> Result<(), String> {
    let out = Out { json: args.json };
    let host = args.host.unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED));
    let port = args.port.unwrap_or(DEFAULT_NODE_PORT);
    let config = if args.bootstrap_mode {
        NodeConfig {
            host,
            port,
            any_port: false,
            bootstrap: args.bootstrap.unwrap_or_default(),
            rpc: Config::bootstrapper(SocketAddr::new(host, port)),
        }
    } else {
        let mut rpc = Config::default();
        if args.persistent {
            rpc.ephemeral = Some(false);
            rpc.firewalled = false;
        }
        NodeConfig {
            host,
            port,
            any_port: true,
            bootstrap: bootstrap_list(args.bootstrap),
            rpc,
        }
    };
    let dht = HyperDht::bind(config)
        .await
        .map_err(|e| format!("cannot start node: {e}"))?;
    let node = dht.node();
    let local = node.local_addr();
    out.emit(
        json!({"event": "listening", "host": local.ip().to_string(), "port": local.port()}),
        || format!("listening on {local}"),
    );
    let exit = wait_for_exit(args.json);
    tokio::pin!(exit);
    let mut state = node.watch();
    let mut announced_bootstrap = false;
    let mut announced_id = None;
    loop {
        let s = state.borrow_and_update().clone();
        if s.bootstrapped && !announced_bootstrap {
            announced_bootstrap = true;
            out.emit(
                json!({"event": "bootstrapped", "id": s.id.map(|i| i.to_hex()), "table_size": s.table_size}),
                || format!("bootstrapped: {} nodes in table", s.table_size),
            );
        }
        if s.id.is_some() && s.id != announced_id {
            announced_id = s.id;
            let id = s.id.map(|i| i.to_hex()).unwrap_or_default();
            out.emit(json!({"event": "persistent", "id": id}), || {
                format!("persistent with id {id}")
            });
        }
        tokio::select! {
            r = state.changed() => if r.is_err() { break },
            r = &mut exit => return r,
        }
    }
    Ok(())
}

pub async fn ping(args: PingArgs) -> Result<(), String> {
    let out = Out { json: args.json };
    let node = Node::bind(client_config(Vec::new()))
        .await
        .map_err(|e| format!("cannot start node: {e}"))?;
    let reply = node
        .ping(args.to)
        .await
        .map_err(|e| format!("ping {}: {e}", args.to))?;
    let id = reply.from_id.map(|i| i.to_hex());
    let rtt = reply.rtt.as_secs_f64() * 1000.0;
    out.emit(
        json!({"event": "pong", "host": reply.from.ip().to_string(), "port": reply.from.port(), "id": id, "rtt_ms": rtt}),
        || format!("pong from {} id={} rtt={rtt:.2}ms", reply.from, id.clone().unwrap_or_else(|| "-".into())),
    );
    Ok(())
}

pub async fn find(args: FindArgs) -> Result<(), String> {
    let out = Out { json: args.json };
    let targets = args
        .targets
        .iter()
        .map(|t| {
            NodeId::from_hex(t).ok_or_else(|| format!("target {t:?} is not 64 hex characters"))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let node = Node::bind(client_config(args.bootstrap.list()))
        .await
        .map_err(|e| format!("cannot start node: {e}"))?;
    let s = node.bootstrapped().await;
    out.emit(
        json!({"event": "bootstrapped", "table_size": s.table_size}),
        || format!("bootstrapped: {} nodes in table", s.table_size),
    );
    for target in targets {
        let closest = node
            .find_node(target, QueryOptions::default())
            .closest()
            .await;
        let nodes: Vec<_> = closest.iter().map(node_json).collect();
        out.emit(
            json!({"event": "closest", "target": target.to_hex(), "nodes": nodes}),
            || {
                let mut s = format!("closest to {}:", target.to_hex());
                for r in &closest {
                    let id = r.from_id.map(|i| i.to_hex()).unwrap_or_default();
                    s.push_str(&format!("\n  {} {}", r.from, id));
                }
                s
            },
        );
    }
    out.emit(json!({"event": "done"}), || "done".into());
    Ok(())
}
