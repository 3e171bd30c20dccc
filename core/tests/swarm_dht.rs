//! Swarms on a HyperDHT testnet on loopback, with real encrypted connections. Opens
//! sockets: run inside a network namespace (`cargo xtask ci` does).

use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

use hyperswarm::dht::{hash, KeyPair, Testnet};
use hyperswarm::swarm::{JoinOptions, Swarm, SwarmOptions};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::time::timeout;

const LOOPBACK: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);
const STEP: Duration = Duration::from_secs(30);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_and_client_meet_on_a_topic_and_talk() {
    let net = Testnet::new(8, LOOPBACK).await.unwrap();
    let topic = hash(b"swarm over hyperdht").0;
    let server = Swarm::with_dht(
        net.client().await.unwrap(),
        KeyPair::generate(),
        SwarmOptions::default(),
    );
    let client = Swarm::with_dht(
        net.client().await.unwrap(),
        KeyPair::generate(),
        SwarmOptions::default(),
    );
    let d = server
        .join(
            topic,
            JoinOptions {
                client: false,
                ..JoinOptions::default()
            },
        )
        .await
        .unwrap();
    assert!(timeout(STEP, d.flushed()).await.unwrap());
    client
        .join(
            topic,
            JoinOptions {
                server: false,
                ..JoinOptions::default()
            },
        )
        .await
        .unwrap();
    assert!(timeout(STEP, client.flush()).await.unwrap());
    assert_eq!(client.stats().client.opened, 1, "{:?}", client.stats());

    let (mut c, info) = timeout(STEP, client.accept()).await.unwrap().unwrap();
    assert_eq!(info.public_key, server.public_key());
    assert_eq!(info.topics, vec![topic]);
    assert!(c.is_initiator());
    let (mut s, info) = timeout(STEP, server.accept()).await.unwrap().unwrap();
    assert_eq!(info.public_key, client.public_key());
    assert!(!s.is_initiator());

    c.write_all(b"hello from the client").await.unwrap();
    let mut buf = [0u8; 21];
    timeout(STEP, s.read_exact(&mut buf))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(&buf, b"hello from the client");
    s.write_all(b"and back").await.unwrap();
    let mut buf = [0u8; 8];
    timeout(STEP, c.read_exact(&mut buf))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(&buf, b"and back");

    // Leaving unannounces: a new client finds nobody.
    server.leave(topic).await.unwrap();
    let late = Swarm::with_dht(
        net.client().await.unwrap(),
        KeyPair::generate(),
        SwarmOptions::default(),
    );
    let d = late
        .join(
            topic,
            JoinOptions {
                server: false,
                ..JoinOptions::default()
            },
        )
        .await
        .unwrap();
    assert!(timeout(STEP, d.flushed()).await.unwrap());
    assert!(timeout(STEP, late.flush()).await.unwrap());
    assert_eq!(late.stats().client.attempted, 0);

    // Destroying the client closes its connection; the server notices.
    client.destroy().await.unwrap();
    let mut rx = server.updates();
    timeout(STEP, rx.wait_for(|st| st.connections == 0))
        .await
        .expect("server saw the close")
        .unwrap();
}
