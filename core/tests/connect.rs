//! Encrypted connections between our own client and server on a loopback testnet. Wire
//! compatibility with JS is proven by the `conn-*` interop scenarios; these check the
//! behaviour around them: echo integrity, firewall refusal, unknown keys.

use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;

use hyperswarm::dht::{DhtError, FirewallFn, KeyPair, Testnet};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const LOOPBACK: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn echo_through_an_encrypted_connection() {
    let net = Testnet::new(5, LOOPBACK).await.unwrap();
    let server_dht = net.client().await.unwrap();
    let client_dht = net.client().await.unwrap();
    let server_kp = KeyPair::generate();
    let client_kp = KeyPair::generate();
    let mut server = server_dht.listen(&server_kp, None).await.unwrap();

    let echo = tokio::spawn(async move {
        let mut conn = server.accept().await.unwrap();
        assert!(!conn.is_initiator());
        let key = conn.remote_public_key();
        let mut all = Vec::new();
        conn.read_to_end(&mut all).await.unwrap();
        conn.write_all(&all).await.unwrap();
        conn.shutdown().await.unwrap();
        let reason = conn.closed().await;
        (key, conn.handshake_hash(), reason)
    });

    let mut conn = client_dht
        .connect(&client_kp, &server_kp.public_key())
        .await
        .unwrap();
    assert!(conn.is_initiator());
    assert_eq!(conn.remote_public_key(), server_kp.public_key());
    let data: Vec<u8> = (0..1_000_003u32).map(|i| (i * 31 % 251) as u8).collect();
    conn.write_all(&data).await.unwrap();
    conn.shutdown().await.unwrap();
    let mut back = Vec::new();
    conn.read_to_end(&mut back).await.unwrap();
    assert_eq!(back, data);
    let (key, hash, reason) = echo.await.unwrap();
    assert_eq!(key, client_kp.public_key());
    assert_eq!(hash, conn.handshake_hash());
    assert_eq!(reason, hyperswarm::udx::CloseReason::Ended);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_and_unknown_keys_fail_with_typed_errors() {
    let net = Testnet::new(5, LOOPBACK).await.unwrap();
    let server_dht = net.client().await.unwrap();
    let client_dht = net.client().await.unwrap();
    let server_kp = KeyPair::generate();
    let client_kp = KeyPair::generate();
    let banned = client_kp.public_key();
    let firewall: Arc<FirewallFn> = Arc::new(move |key, _, _| *key != banned);
    let _server = server_dht.listen(&server_kp, Some(firewall)).await.unwrap();

    let refused = client_dht
        .connect(&client_kp, &server_kp.public_key())
        .await;
    assert!(
        matches!(refused, Err(DhtError::PeerConnectionFailed)),
        "{refused:?}"
    );
    let nobody = KeyPair::generate().public_key();
    let unknown = client_dht.connect(&client_kp, &nobody).await;
    assert!(
        matches!(unknown, Err(DhtError::PeerNotFound)),
        "{unknown:?}"
    );
}

/// Without the LAN shortcut, two firewalled nodes on loopback must holepunch: both sample
/// their punch sockets (consistent: loopback keeps ports), exchange PEER_HOLEPUNCH rounds
/// through a relay, and the first probe that comes back carries the stream.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn holepunch_when_the_lan_shortcut_is_off() {
    use hyperswarm::dht::ConnectOptions;
    let net = Testnet::new(6, LOOPBACK).await.unwrap();
    // Nodes that never learn they are reachable, as behind a NAT.
    let firewalled = || hyperswarm::rpc::Config {
        quick_firewall: false,
        ..Default::default()
    };
    let server_dht = net.client_with(firewalled()).await.unwrap();
    let client_dht = net.client_with(firewalled()).await.unwrap();
    assert!(server_dht.node().state().firewalled);
    let server_kp = KeyPair::generate();
    let mut server = server_dht.listen(&server_kp, None).await.unwrap();
    let server_socket = server_dht.node().socket().local_addr();
    let accept = tokio::spawn(async move {
        let mut conn = server.accept().await.unwrap();
        conn.write_all(b"punched").await.unwrap();
        conn.shutdown().await.unwrap();
        // Dropping a connection resets it: wait for the client's end and the clean close.
        let mut rest = Vec::new();
        conn.read_to_end(&mut rest).await.unwrap();
        conn.closed().await
    });
    let opts = ConnectOptions {
        local_connection: false,
    };
    let mut conn = client_dht
        .connect_with(&KeyPair::generate(), &server_kp.public_key(), opts)
        .await
        .unwrap();
    let mut got = Vec::new();
    conn.read_to_end(&mut got).await.unwrap();
    assert_eq!(got, b"punched");
    // The path is a punch socket of the server's, not its DHT socket.
    assert_ne!(conn.remote_addr(), Some(server_socket));
    conn.shutdown().await.unwrap();
    assert_eq!(accept.await.unwrap(), hyperswarm::udx::CloseReason::Ended);
}
