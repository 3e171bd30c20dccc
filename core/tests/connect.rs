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
        ..ConnectOptions::default()
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

/// Forged and replayed handshakes never yield a connection: garbage Noise bytes, a message 1
/// sealed to another key, and a genuine message 1 sent again are all answered with silence
/// or the cached reply, and the next connection the server hands out is a real new client's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_and_replayed_handshakes_yield_no_connection() {
    use hyperswarm::dht::connect_messages::{HandshakeMessage, HandshakeMode};
    use hyperswarm::dht::handshake::{firewall, payload_for, ClientHandshake};
    use hyperswarm::dht::{commands, peer_target};
    use hyperswarm::rpc::UserRequest;
    use std::time::Duration;

    let net = Testnet::new(5, LOOPBACK).await.unwrap();
    let server_dht = net.client().await.unwrap();
    let client_dht = net.client().await.unwrap();
    let server_kp = KeyPair::generate();
    let mut server = server_dht.listen(&server_kp, None).await.unwrap();
    let target = peer_target(&server_kp.public_key());
    let server_addr = server_dht.node().local_addr();
    let send = |noise: Vec<u8>| {
        let value = HandshakeMessage {
            mode: HandshakeMode::FromClient,
            noise,
            peer_address: None,
            relay_address: None,
        }
        .encode()
        .unwrap();
        let req = UserRequest {
            command: commands::PEER_HANDSHAKE,
            target: Some(target),
            value: Some(value),
            retries: Some(0),
            timeout: Some(Duration::from_millis(300)),
            ..UserRequest::default()
        };
        client_dht.node().request(req, server_addr)
    };

    // Garbage, and a message 1 for a different server key: no answer at all.
    assert!(send(vec![7; 96]).await.is_err());
    let other = KeyPair::generate().public_key();
    let seed: [u8; 32] = KeyPair::generate().secret_key()[..32].try_into().unwrap();
    let wrong =
        ClientHandshake::new(&seed, &other, &payload_for(1, firewall::UNKNOWN, vec![])).unwrap();
    assert!(send(wrong.message1().to_vec()).await.is_err());

    // A genuine message 1 (its stream never opens) answered twice: one session at most.
    let genuine = ClientHandshake::new(
        &seed,
        &server_kp.public_key(),
        &payload_for(2, firewall::UNKNOWN, vec![]),
    )
    .unwrap();
    let first = send(genuine.message1().to_vec()).await.unwrap();
    let again = send(genuine.message1().to_vec()).await.unwrap();
    assert_eq!(first.value, again.value, "a replay gets the cached reply");

    // The first connection the server yields is a real client's.
    let client_kp = KeyPair::generate();
    let mut conn = client_dht
        .connect(&client_kp, &server_kp.public_key())
        .await
        .unwrap();
    conn.write_all(b"x").await.unwrap();
    let accepted = server.accept().await.unwrap();
    assert_eq!(accepted.remote_public_key(), client_kp.public_key());
}

/// When no direct path exists, a blind relay joins the two streams: the client names the
/// relay, both sides pair through it, and the bytes flow end to end encrypted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blind_relay_carries_the_connection() {
    use hyperswarm::dht::ConnectOptions;
    let net = Testnet::new(6, LOOPBACK).await.unwrap();
    let firewalled = || hyperswarm::rpc::Config {
        quick_firewall: false,
        ..Default::default()
    };
    let relay_dht = net.client().await.unwrap();
    let relay = relay_dht.serve_relay(&KeyPair::generate()).await.unwrap();
    let server_dht = net.client_with(firewalled()).await.unwrap();
    let client_dht = net.client_with(firewalled()).await.unwrap();
    let server_kp = KeyPair::generate();
    let mut server = server_dht.listen(&server_kp, None).await.unwrap();
    let echo = tokio::spawn(async move {
        let mut conn = server.accept().await.unwrap();
        let relayed = conn.is_relayed();
        let mut all = Vec::new();
        conn.read_to_end(&mut all).await.unwrap();
        conn.write_all(&all).await.unwrap();
        conn.shutdown().await.unwrap();
        (relayed, conn.closed().await)
    });
    // No holepunch and no LAN: the relay is the only way.
    let opts = ConnectOptions {
        local_connection: false,
        holepunch: false,
        relay_through: Some(relay.public_key()),
    };
    let mut conn = client_dht
        .connect_with(&KeyPair::generate(), &server_kp.public_key(), opts)
        .await
        .unwrap();
    assert!(conn.is_relayed());
    let data: Vec<u8> = (0..300_000u32).map(|i| (i % 253) as u8).collect();
    conn.write_all(&data).await.unwrap();
    conn.shutdown().await.unwrap();
    let mut back = Vec::new();
    conn.read_to_end(&mut back).await.unwrap();
    assert_eq!(back, data);
    let (server_relayed, reason) = echo.await.unwrap();
    assert!(server_relayed);
    assert_eq!(reason, hyperswarm::udx::CloseReason::Ended);
}

/// A write that returned has left the connection: a peer that writes until the stream is
/// full and then only reads (an echo server's last chunk) never holds back ciphertext
/// waiting for a flush it will not call.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn written_bytes_go_out_without_a_flush() {
    use std::future::poll_fn;
    use std::pin::Pin;
    use std::task::Poll;
    use std::time::Duration;
    use tokio::io::AsyncWrite;
    let net = Testnet::new(5, LOOPBACK).await.unwrap();
    let server_dht = net.client().await.unwrap();
    let client_dht = net.client().await.unwrap();
    let server_kp = KeyPair::generate();
    let mut server = server_dht.listen(&server_kp, None).await.unwrap();
    let byte = |i: usize| (i % 241) as u8;
    let (total_tx, total_rx) = tokio::sync::oneshot::channel();
    let writer = tokio::spawn(async move {
        let mut conn = server.accept().await.unwrap();
        // The client reads nothing yet: write until a write would wait for room.
        let mut written = 0usize;
        loop {
            let chunk: Vec<u8> = (written..written + 65536).map(byte).collect();
            let once = poll_fn(|cx| Poll::Ready(Pin::new(&mut conn).poll_write(cx, &chunk)));
            match once.await {
                Poll::Ready(n) => written += n.unwrap(),
                Poll::Pending => break,
            }
        }
        total_tx.send(written).unwrap();
        // No flush: the next thing this side does is wait for the peer.
        let mut ack = [0u8; 4];
        conn.read_exact(&mut ack).await.unwrap();
        assert_eq!(&ack, b"done");
    });
    let mut conn = client_dht
        .connect(&KeyPair::generate(), &server_kp.public_key())
        .await
        .unwrap();
    let total = total_rx.await.unwrap();
    let mut got = vec![0u8; total];
    tokio::time::timeout(Duration::from_secs(30), conn.read_exact(&mut got))
        .await
        .expect("the last bytes written never arrived")
        .unwrap();
    assert!(got.iter().enumerate().all(|(i, b)| *b == byte(i)));
    conn.write_all(b"done").await.unwrap();
    conn.flush().await.unwrap();
    writer.await.unwrap();
}
