//! [`DhtHandle`], [`ServerHandle`] and [`TestnetHandle`]: HyperDHT without a swarm — dial
//! and answer a public key directly — and a local testnet.

use std::net::{IpAddr, Ipv4Addr};
use std::sync::{Arc, Mutex as StdMutex};

use hyperswarm::dht::{FirewallFn, HyperDht, Server, Testnet};
use hyperswarm::rpc::NodeConfig;
use tokio::sync::Mutex;

use crate::connection::ConnectionHandle;
use crate::error::{self, Error, ErrorCode, Result};
use crate::keys;
use crate::runtime::run;
use crate::swarm::Firewall;

fn parse_host(host: Option<&str>) -> Result<IpAddr> {
    match host {
        None => Ok(IpAddr::V4(Ipv4Addr::UNSPECIFIED)),
        Some(h) => h.parse().map_err(|_| {
            Error::new(
                ErrorCode::InvalidArgument,
                format!("host `{h}` is not an IP address"),
            )
        }),
    }
}

fn wrap(conn: hyperswarm::dht::Connection) -> Arc<ConnectionHandle> {
    let key = conn.remote_public_key();
    let hash = conn.handshake_hash().to_vec();
    let initiator = conn.is_initiator();
    let watch = conn.watch();
    let gone = Box::pin(async move {
        watch.closed().await;
    });
    Arc::new(ConnectionHandle::new(
        conn,
        key,
        hash,
        initiator,
        Some(gone),
    ))
}

/// A HyperDHT node of its own.
#[derive(Debug)]
pub struct DhtHandle {
    inner: StdMutex<Option<HyperDht>>,
}

impl DhtHandle {
    /// Binds a node on `host:port` (defaults: all interfaces, any port), bootstrapping
    /// from `bootstrap` (`host:port` strings; `None` means the public nodes).
    pub async fn bind(
        bootstrap: Option<Vec<String>>,
        host: Option<String>,
        port: u16,
    ) -> Result<Arc<DhtHandle>> {
        let host = parse_host(host.as_deref())?;
        let bootstrap = bootstrap.unwrap_or_else(|| {
            hyperswarm::swarm::PUBLIC_BOOTSTRAP
                .iter()
                .map(|s| s.to_string())
                .collect()
        });
        run(async move {
            let dht = HyperDht::bind(NodeConfig {
                host,
                port,
                bootstrap,
                ..NodeConfig::default()
            })
            .await
            .map_err(|e| Error::new(ErrorCode::Bind, e.to_string()))?;
            Ok(Arc::new(DhtHandle {
                inner: StdMutex::new(Some(dht)),
            }))
        })
        .await
    }

    fn dht(&self) -> Result<HyperDht> {
        self.inner
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
            .ok_or_else(|| Error::new(ErrorCode::Destroyed, "DHT node has been destroyed"))
    }

    /// The node's bound address (`host:port`).
    pub fn local_addr(&self) -> Result<String> {
        Ok(self.dht()?.node().local_addr().to_string())
    }

    /// Dials the server with `public_key` as the identity with `secret_key`.
    pub async fn connect(
        &self,
        secret_key: &[u8],
        public_key: &[u8],
    ) -> Result<Arc<ConnectionHandle>> {
        let kp = keys::from_secret_key(secret_key, None)?;
        let remote = error::public_key(public_key)?;
        let dht = self.dht()?;
        run(async move {
            dht.node().bootstrapped().await;
            let conn = dht
                .connect(&kp, &remote)
                .await
                .map_err(|e| Error::new(ErrorCode::Network, e.to_string()))?;
            Ok(wrap(conn))
        })
        .await
    }

    /// Answers connections to the identity with `secret_key`, announcing it to the DHT.
    pub async fn listen(
        &self,
        secret_key: &[u8],
        firewall: Option<Arc<dyn Firewall>>,
    ) -> Result<Arc<ServerHandle>> {
        let kp = keys::from_secret_key(secret_key, None)?;
        let dht = self.dht()?;
        let firewall: Option<Arc<FirewallFn>> = firewall.map(|fw| {
            let f: Arc<FirewallFn> = Arc::new(move |key: &[u8; 32], _, _| !fw.refuse(key));
            f
        });
        run(async move {
            dht.node().bootstrapped().await;
            let server = dht
                .listen(&kp, firewall)
                .await
                .map_err(|e| Error::new(ErrorCode::Network, e.to_string()))?;
            Ok(Arc::new(ServerHandle {
                public_key: server.public_key(),
                inner: Mutex::new(Some(server)),
            }))
        })
        .await
    }

    /// Closes the node. Idempotent.
    pub fn destroy(&self) {
        self.inner.lock().unwrap_or_else(|e| e.into_inner()).take();
    }
}

/// A listening server: the connections peers dial to its key pair.
#[derive(Debug)]
pub struct ServerHandle {
    public_key: [u8; 32],
    inner: Mutex<Option<Server>>,
}

impl ServerHandle {
    /// The public key it answers for.
    pub fn public_key(&self) -> [u8; 32] {
        self.public_key
    }

    /// The next connection; `None` once closed.
    pub async fn accept(self: &Arc<Self>) -> Result<Option<Arc<ConnectionHandle>>> {
        let this = self.clone();
        run(async move {
            let mut guard = this.inner.lock().await;
            let Some(server) = guard.as_mut() else {
                return Ok(None);
            };
            Ok(server.accept().await.map(wrap))
        })
        .await
    }

    /// Stops answering (waits for an [`accept`](Self::accept) in flight). Idempotent.
    pub async fn close(self: &Arc<Self>) -> Result<()> {
        let this = self.clone();
        run(async move {
            this.inner.lock().await.take();
            Ok(())
        })
        .await
    }
}

/// A HyperDHT testnet inside this process, for tests and local use.
#[derive(Debug)]
pub struct TestnetHandle {
    inner: StdMutex<Option<Testnet>>,
    bootstrap: Vec<String>,
}

impl TestnetHandle {
    /// Starts `size` nodes on `host` (default `127.0.0.1`) and waits until they are ready.
    pub async fn new(size: u32, host: Option<String>) -> Result<Arc<TestnetHandle>> {
        let host = match host {
            Some(h) => parse_host(Some(&h))?,
            None => IpAddr::V4(Ipv4Addr::LOCALHOST),
        };
        if size == 0 || size > 1000 {
            return Err(Error::new(
                ErrorCode::InvalidArgument,
                format!("a testnet has 1 to 1000 nodes, not {size}"),
            ));
        }
        run(async move {
            let t = Testnet::new(size as usize, host)
                .await
                .map_err(|e| Error::new(ErrorCode::Bind, e.to_string()))?;
            Ok(Arc::new(TestnetHandle {
                bootstrap: t.bootstrap(),
                inner: StdMutex::new(Some(t)),
            }))
        })
        .await
    }

    /// Bootstrap addresses (`host:port`) for swarms and nodes joining it.
    pub fn bootstrap(&self) -> &[String] {
        &self.bootstrap
    }

    /// Stops its nodes. Idempotent.
    pub fn destroy(&self) {
        self.inner.lock().unwrap_or_else(|e| e.into_inner()).take();
    }
}
