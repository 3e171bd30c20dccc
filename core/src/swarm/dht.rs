//! The swarm on HyperDHT: [`Network`] for [`HyperDht`], and the constructors of a swarm
//! with its own DHT node.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use super::config::{SwarmConfig, SwarmError, SwarmOptions, PUBLIC_BOOTSTRAP};
use super::handle::Swarm;
use super::network::{Closed, Listener, Network, NetworkError, PeerSink, Refuse, SecureStream};
use crate::dht::{ConnectOptions, Connection, FirewallFn, HyperDht, KeyPair, Server, KEEPALIVE};
use crate::rpc::{NodeConfig, NodeId};

impl SecureStream for Connection {
    fn remote_public_key(&self) -> [u8; 32] {
        Connection::remote_public_key(self)
    }

    fn keepalive(&self) -> Option<Duration> {
        Some(KEEPALIVE)
    }

    fn closed(&self) -> Closed {
        let watch = self.watch();
        Box::pin(async move {
            watch.closed().await;
        })
    }
}

/// A HyperDHT server as a swarm listener.
#[derive(Debug)]
pub struct DhtListener {
    server: Server,
}

impl Listener for DhtListener {
    type Stream = Connection;

    async fn accept(&mut self) -> Option<Connection> {
        self.server.accept().await
    }

    fn relay_addresses(&self) -> Vec<SocketAddr> {
        self.server.relays().to_vec()
    }
}

impl Network for HyperDht {
    type Stream = Connection;
    type Listener = DhtListener;

    async fn connect(
        &self,
        key_pair: &KeyPair,
        remote_public_key: [u8; 32],
        _relay_addresses: Vec<SocketAddr>,
        relay_through: Option<[u8; 32]>,
    ) -> Result<Connection, NetworkError> {
        // HyperDHT finds the nodes relaying for the key itself.
        let options = ConnectOptions {
            relay_through,
            ..ConnectOptions::default()
        };
        Ok(self
            .connect_with(key_pair, &remote_public_key, options)
            .await?)
    }

    fn randomized(&self) -> bool {
        self.node().state().randomized()
    }

    async fn listen(
        &self,
        key_pair: &KeyPair,
        refuse: Arc<Refuse>,
    ) -> Result<DhtListener, NetworkError> {
        self.node().bootstrapped().await;
        let firewall: Arc<FirewallFn> = Arc::new(move |key, _, _| !refuse(key));
        let server = HyperDht::listen(self, key_pair, Some(firewall)).await?;
        Ok(DhtListener { server })
    }

    async fn announce(
        &self,
        topic: [u8; 32],
        key_pair: &KeyPair,
        relay_addresses: Vec<SocketAddr>,
        clear: bool,
        found: Arc<PeerSink>,
    ) -> Result<(), NetworkError> {
        self.node().bootstrapped().await;
        self.announce_finding(NodeId(topic), key_pair, &relay_addresses, clear, |p| {
            found(p)
        })
        .await?;
        Ok(())
    }

    async fn lookup(
        &self,
        topic: [u8; 32],
        unannounce: Option<&KeyPair>,
        found: Arc<PeerSink>,
    ) -> Result<(), NetworkError> {
        self.node().bootstrapped().await;
        let topic = NodeId(topic);
        match unannounce {
            Some(kp) => self.lookup_and_unannounce(topic, kp, |p| found(p)).await,
            None => {
                let mut answers = HyperDht::lookup(self, topic);
                while let Some(a) = answers.next().await {
                    if !a.peers.is_empty() {
                        found(a.peers);
                    }
                }
            }
        }
        Ok(())
    }

    async fn unannounce(&self, topic: [u8; 32], key_pair: &KeyPair) -> Result<(), NetworkError> {
        HyperDht::unannounce(self, NodeId(topic), key_pair).await?;
        Ok(())
    }
}

impl Swarm<HyperDht> {
    /// Starts a swarm on a DHT node of its own, bound as `config` says.
    pub async fn new(config: SwarmConfig) -> Result<Self, SwarmError> {
        let bootstrap = config
            .bootstrap
            .clone()
            .unwrap_or_else(|| PUBLIC_BOOTSTRAP.iter().map(|s| s.to_string()).collect());
        let dht = HyperDht::bind(NodeConfig {
            host: config.host.unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED)),
            port: config.port,
            bootstrap,
            ..NodeConfig::default()
        })
        .await
        .map_err(|e| SwarmError::Bind(e.to_string()))?;
        Ok(Self::with_dht(dht, config.identity(), config.options))
    }

    /// Starts a swarm on an existing DHT node (which may serve other purposes too).
    pub fn with_dht(dht: HyperDht, key_pair: KeyPair, options: SwarmOptions) -> Self {
        Self::with_network(dht, key_pair, options)
    }

    /// The DHT node underneath.
    pub fn dht(&self) -> &HyperDht {
        self.network()
    }
}
