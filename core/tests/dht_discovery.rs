//! The per-topic walks the swarm runs, on a DHT of persistent nodes on loopback: announce
//! reports the peers it passes, re-announcing replaces our record, and
//! lookup-and-unannounce takes our record away. (`clear` matters only for nodes that left
//! the closest set, which a network this small cannot produce.) Opens sockets: run inside a network
//! namespace (`cargo xtask ci` does).

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hyperswarm::dht::{hash, HyperDht, KeyPair, PeerRecord};
use hyperswarm::rpc::{Config, NodeConfig};

const LOOPBACK: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);
const STEP: Duration = Duration::from_secs(30);

async fn network(size: usize) -> (Vec<HyperDht>, String) {
    let boot = HyperDht::bind(NodeConfig {
        host: LOOPBACK,
        rpc: Config::bootstrapper(SocketAddr::new(LOOPBACK, 0)),
        ..NodeConfig::default()
    })
    .await
    .unwrap();
    let boot_addr = boot.node().local_addr().to_string();
    let mut nodes = vec![boot];
    for _ in 0..size {
        let n = HyperDht::bind(NodeConfig {
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
        .unwrap();
        nodes.push(n);
    }
    for n in &nodes {
        tokio::time::timeout(
            STEP,
            n.node().wait_for(|s| s.bootstrapped && s.id.is_some()),
        )
        .await
        .expect("node became persistent");
    }
    (nodes, boot_addr)
}

async fn client(boot: &str) -> HyperDht {
    let c = HyperDht::bind(NodeConfig {
        host: LOOPBACK,
        bootstrap: vec![boot.to_string()],
        rpc: Config {
            ephemeral: Some(true),
            ..Config::default()
        },
        ..NodeConfig::default()
    })
    .await
    .unwrap();
    tokio::time::timeout(STEP, c.node().bootstrapped())
        .await
        .unwrap();
    c
}

type Seen = Arc<Mutex<Vec<PeerRecord>>>;

fn collector() -> (Seen, impl Fn(Vec<PeerRecord>)) {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let s = seen.clone();
    (seen, move |peers: Vec<PeerRecord>| {
        s.lock().unwrap().extend(peers)
    })
}

#[tokio::test]
async fn announce_reports_peers_reannounce_replaces_and_lookup_unannounces() {
    let (_nodes, boot) = network(12).await;
    let (a, b) = (client(&boot).await, client(&boot).await);
    let (ka, kb) = (KeyPair::generate(), KeyPair::generate());
    let topic = hash(b"swarm discovery walk");
    let relay: SocketAddr = "127.0.0.1:1".parse().unwrap();

    let (seen, found) = collector();
    let stored = a
        .announce_finding(topic, &ka, &[relay], true, found)
        .await
        .unwrap();
    assert!(!stored.is_empty());
    assert!(seen.lock().unwrap().is_empty(), "nobody else announced yet");

    let (seen, found) = collector();
    b.announce_finding(topic, &kb, &[], false, found)
        .await
        .unwrap();
    let got = seen.lock().unwrap().clone();
    assert!(got
        .iter()
        .any(|p| p.public_key == ka.public_key() && p.relay_addresses == [relay]));

    // Announcing again with a new address leaves only the new record.
    let moved: SocketAddr = "127.0.0.1:2".parse().unwrap();
    a.announce_finding(topic, &ka, &[moved], true, |_| {})
        .await
        .unwrap();
    let (seen, found) = collector();
    b.lookup_and_unannounce(topic, &kb, found).await;
    let ours: Vec<PeerRecord> = seen
        .lock()
        .unwrap()
        .iter()
        .filter(|p| p.public_key == ka.public_key())
        .cloned()
        .collect();
    assert!(!ours.is_empty());
    assert!(
        ours.iter().all(|p| p.relay_addresses == [moved]),
        "{ours:?}"
    );

    // b's lookup-and-unannounce removed b: a no longer finds it.
    let (seen, found) = collector();
    a.lookup_and_unannounce(topic, &ka, found).await;
    assert!(!seen
        .lock()
        .unwrap()
        .iter()
        .any(|p| p.public_key == kb.public_key()));
    let (seen, found) = collector();
    b.lookup_and_unannounce(topic, &kb, found).await;
    assert!(seen.lock().unwrap().is_empty(), "both records are gone");
}
