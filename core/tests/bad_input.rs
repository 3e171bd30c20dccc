//! Hostile datagrams: random, truncated, oversized, forged and replayed packets must be
//! dropped and counted, never crash the node, never grow its memory, and never stop it
//! answering pings. Opens loopback sockets: run inside a fresh network namespace
//! (`cargo xtask ci` does).

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use hyperswarm::rpc::{
    commands, Config, Message, Node, NodeConfig, NodeId, Request, Response, RpcNode, SocketKind,
};
use rand::{Rng, RngCore, SeedableRng};
use tokio::net::UdpSocket;

const LOOPBACK: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

fn ping_bytes(tid: u16, to: SocketAddr) -> Vec<u8> {
    Request {
        tid,
        to,
        id: None,
        token: None,
        internal: true,
        command: commands::PING,
        target: None,
        value: None,
    }
    .encode()
    .unwrap()
}

/// One hostile datagram of a kind chosen by `i`.
fn hostile(rng: &mut impl RngCore, i: usize, to: SocketAddr) -> Vec<u8> {
    let valid = ping_bytes(rng.gen(), to);
    match i % 8 {
        // Random garbage of any size up to a jumbo datagram.
        0 => {
            let mut b = vec![0u8; rng.gen_range(0..1500)];
            rng.fill_bytes(&mut b);
            b
        }
        // A valid request cut short.
        1 => valid[..rng.gen_range(0..valid.len())].to_vec(),
        // Oversized: a request whose value claims far more than is there.
        2 => {
            let mut b = valid.clone();
            b[1] |= 16;
            b.extend_from_slice(&[0xfe, 0xff, 0xff, 0xff, 0x7f]);
            b
        }
        // Near the UDP maximum.
        3 => {
            let mut b = vec![0x03u8; 60_000];
            rng.fill_bytes(&mut b[1..]);
            b
        }
        // Forged response to a transaction we never started.
        4 => Response {
            tid: rng.gen(),
            to: Some(to),
            id: Some(NodeId(rng.gen())),
            closer_nodes: (0..20)
                .map(|p| SocketAddr::new(LOOPBACK, 1000 + p))
                .collect(),
            ..Response::default()
        }
        .encode()
        .unwrap(),
        // A request presenting a token we never issued.
        5 => Request {
            tid: rng.gen(),
            to,
            id: Some(NodeId(rng.gen())),
            token: Some(rng.gen()),
            internal: false,
            command: 9,
            target: Some(NodeId(rng.gen())),
            value: Some(vec![1, 2, 3]),
        }
        .encode()
        .unwrap(),
        // A closer-nodes array whose count exceeds the datagram.
        6 => {
            let mut b = vec![0x13, 0x04, 0x01, 0x00, 127, 0, 0, 1, 0x10, 0x27];
            b.extend_from_slice(&[0xfd, 0xff, 0xff]);
            b
        }
        // Random bytes after a valid header byte.
        _ => {
            let mut b = vec![0u8; rng.gen_range(1..64)];
            rng.fill_bytes(&mut b);
            b[0] = if rng.gen() { 0x03 } else { 0x13 };
            b
        }
    }
}

fn rss_kib() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let pages: u64 = statm
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    pages * 4
}

#[tokio::test]
async fn ten_thousand_hostile_datagrams() {
    let node = Node::bind(NodeConfig {
        host: LOOPBACK,
        rpc: Config {
            ephemeral: Some(true),
            ..Config::default()
        },
        ..NodeConfig::default()
    })
    .await
    .unwrap();
    node.bootstrapped().await;
    let target = node.local_addr();
    let attacker = UdpSocket::bind((LOOPBACK, 0)).await.unwrap();
    let prober = UdpSocket::bind((LOOPBACK, 0)).await.unwrap();
    let mut rng = rand::rngs::StdRng::seed_from_u64(7);
    let rss_before = rss_kib();
    let mut buf = vec![0u8; 65536];

    // Ten datagrams, then a ping that must be answered: the ping queues behind the ten on the
    // same socket, so its answer proves they were processed (and keeps the kernel from
    // dropping floods the node has not read yet).
    for round in 0..1000u16 {
        for i in 0..10 {
            let d = hostile(&mut rng, usize::from(round) * 10 + i, target);
            attacker.send_to(&d, target).await.unwrap();
        }
        // After each thousand the node still answers a well-formed ping. The kernel may
        // have dropped the probe along with the flood, so it is resent until answered.
        let tid = round;
        let answered = async {
            loop {
                prober
                    .send_to(&ping_bytes(tid, target), target)
                    .await
                    .unwrap();
                let wait = tokio::time::timeout(Duration::from_millis(250), async {
                    loop {
                        let (n, from) = prober.recv_from(&mut buf).await.unwrap();
                        if let (true, Ok(Message::Response(r))) =
                            (from == target, Message::decode(&buf[..n]))
                        {
                            if r.tid == tid {
                                return r;
                            }
                        }
                    }
                });
                if let Ok(r) = wait.await {
                    return r;
                }
            }
        };
        let r = tokio::time::timeout(Duration::from_secs(20), answered)
            .await
            .expect("the node stopped answering pings");
        assert_eq!(r.error, 0);
    }

    let state = node.state();
    assert!(
        state.stats.dropped >= 6000,
        "malformed and unmatched datagrams are counted: {}",
        state.stats.dropped
    );
    assert_eq!(state.stats.active, 0, "no requests started by garbage");
    assert_eq!(state.table_size, 0, "forged ids never enter the table");
    let grown = rss_kib().saturating_sub(rss_before);
    assert!(grown < 64 * 1024, "memory grew by {grown} KiB");
}

/// The same without sockets, straight into the protocol core: every hostile datagram on
/// both sockets, with time moving on, leaves bounded state behind.
#[test]
fn sans_io_core_survives_garbage() {
    let now = Instant::now();
    let mut node = RpcNode::new(
        Config {
            bootstrap: vec![SocketAddr::new(LOOPBACK, 9)],
            seed: Some(1),
            ..Config::default()
        },
        40000,
        now,
    );
    let me = SocketAddr::new(LOOPBACK, 40000);
    let mut rng = rand::rngs::StdRng::seed_from_u64(11);
    let mut sent = 0usize;
    for i in 0..20_000 {
        let d = hostile(&mut rng, i, me);
        if let Ok(msg) = Message::decode(&d) {
            let again = match &msg {
                Message::Request(r) => r.encode(),
                Message::Response(r) => r.encode(),
            };
            assert_eq!(
                Message::decode(&again.unwrap()).ok(),
                Some(msg),
                "re-encoding is lossless"
            );
        }
        let from = SocketAddr::new(LOOPBACK, rng.gen_range(1..u16::MAX));
        let socket = if i % 2 == 0 {
            SocketKind::Server
        } else {
            SocketKind::Client
        };
        let t = now + Duration::from_millis(i as u64);
        node.handle_datagram(t, socket, from, &d);
        node.handle_timeout(t);
        while node.poll_transmit().is_some() {
            sent += 1;
        }
        while node.poll_event().is_some() {}
    }
    let stats = node.stats();
    assert!(stats.dropped > 5000, "dropped {}", stats.dropped);
    assert!(stats.active < 100, "requests in flight: {}", stats.active);
    assert!(node.table().len() <= 20 * 256);
    assert!(sent > 0, "valid pings among the garbage were answered");
}
