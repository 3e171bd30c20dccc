//! A small HyperDHT on one host inside this process: a bootstrap node plus persistent nodes,
//! for tests, demos and local use without the public network.

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use super::HyperDht;
use crate::rpc::{Config, NodeConfig};

/// How long the nodes get to bootstrap and become persistent.
const READY_TIMEOUT: Duration = Duration::from_secs(30);

/// A running testnet. Dropping it stops its nodes once nothing else holds them.
#[derive(Debug)]
pub struct Testnet {
    host: IpAddr,
    nodes: Vec<HyperDht>,
}

impl Testnet {
    /// Starts `size` nodes (at least 1, the bootstrap node) on `host`, and waits until each
    /// is bootstrapped and persistent.
    pub async fn new(size: usize, host: IpAddr) -> io::Result<Testnet> {
        let boot = HyperDht::bind(NodeConfig {
            host,
            rpc: Config::bootstrapper(SocketAddr::new(host, 0)),
            ..NodeConfig::default()
        })
        .await?;
        let boot_addr = boot.node().local_addr().to_string();
        let mut nodes = vec![boot];
        for _ in 1..size.max(1) {
            nodes.push(
                HyperDht::bind(NodeConfig {
                    host,
                    bootstrap: vec![boot_addr.clone()],
                    rpc: Config {
                        ephemeral: Some(false),
                        firewalled: false,
                        ..Config::default()
                    },
                    ..NodeConfig::default()
                })
                .await?,
            );
        }
        for n in &nodes[1..] {
            tokio::time::timeout(
                READY_TIMEOUT,
                n.node().wait_for(|s| s.bootstrapped && s.id.is_some()),
            )
            .await
            .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "testnet node not ready"))?;
        }
        Ok(Testnet { host, nodes })
    }

    /// Bootstrap addresses (`host:port`) for nodes that join this testnet.
    pub fn bootstrap(&self) -> Vec<String> {
        vec![self.nodes[0].node().local_addr().to_string()]
    }

    /// The testnet's nodes, bootstrap node first.
    pub fn nodes(&self) -> &[HyperDht] {
        &self.nodes
    }

    /// A fresh (ephemeral) node joined to the testnet, bootstrapped.
    pub async fn client(&self) -> io::Result<HyperDht> {
        self.client_with(Config::default()).await
    }

    /// [`Testnet::client`] with protocol settings of its own (say, a node that stays
    /// firewalled: `quick_firewall: false`).
    pub async fn client_with(&self, rpc: Config) -> io::Result<HyperDht> {
        let dht = HyperDht::bind(NodeConfig {
            host: self.host,
            bootstrap: self.bootstrap(),
            rpc,
            ..NodeConfig::default()
        })
        .await?;
        dht.node().bootstrapped().await;
        Ok(dht)
    }
}
