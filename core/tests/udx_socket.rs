//! The tokio driver over loopback: two sockets, a stream on each, 64 MiB written by one side,
//! echoed by the other and compared byte for byte. Synchronisation is only through the
//! streams themselves (EOF after END), never sleeps.

use std::net::SocketAddr;

use hyperswarm::udx::{CloseReason, Config, Datagram, UdxSocket, UdxStream};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc;

const TOTAL: usize = 64 * 1024 * 1024;
/// Prime, so packet boundaries never line up with the pattern.
const PATTERN: usize = 65521;

fn pattern() -> Vec<u8> {
    (0..PATTERN).map(|i| (i * 7 + i / 251) as u8).collect()
}

async fn socket() -> (UdxSocket, mpsc::Receiver<Datagram>) {
    let (tx, rx) = mpsc::channel(16);
    let any: SocketAddr = "127.0.0.1:0".parse().unwrap();
    (UdxSocket::bind(any, tx).await.unwrap(), rx)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn echo_64mib_over_loopback() {
    let (a, _a_rx) = socket().await;
    let (b, _b_rx) = socket().await;
    let sa = a.connect(1, 2, b.local_addr(), Config::default()).unwrap();
    let mut sb = b.connect(2, 1, a.local_addr(), Config::default()).unwrap();

    // B echoes until EOF, then ends its side.
    let echo = tokio::spawn(async move {
        let mut buf = vec![0u8; 64 * 1024];
        let mut n_total = 0usize;
        loop {
            let n = sb.read(&mut buf).await.unwrap();
            if n == 0 {
                break;
            }
            sb.write_all(&buf[..n]).await.unwrap();
            n_total += n;
        }
        sb.shutdown().await.unwrap();
        (sb, n_total)
    });

    let (mut ra, mut wa) = tokio::io::split(sa);
    let pat = pattern();
    let writer = {
        let pat = pat.clone();
        tokio::spawn(async move {
            let mut sent = 0;
            while sent < TOTAL {
                let at = sent % PATTERN;
                let n = (PATTERN - at).min(TOTAL - sent);
                wa.write_all(&pat[at..at + n]).await.unwrap();
                sent += n;
            }
            wa.shutdown().await.unwrap();
            wa
        })
    };

    let mut buf = vec![0u8; 64 * 1024];
    let mut received = 0usize;
    loop {
        let n = ra.read(&mut buf).await.unwrap();
        if n == 0 {
            break;
        }
        let mut off = 0;
        while off < n {
            let at = received % PATTERN;
            let m = (PATTERN - at).min(n - off);
            assert_eq!(
                &buf[off..off + m],
                &pat[at..at + m],
                "corrupt at {received}"
            );
            off += m;
            received += m;
        }
    }
    assert_eq!(received, TOTAL);
    let wa = writer.await.unwrap();
    let (sb, echoed) = echo.await.unwrap();
    assert_eq!(echoed, TOTAL);
    let sa = ra.unsplit(wa);
    let stats = sa.stats().unwrap();
    println!(
        "echoed 64 MiB: a retransmits {}, rto {}, b retransmits {}",
        stats.retransmits,
        stats.rto_expiries,
        sb.stats().unwrap().retransmits
    );
    // Both sides have read the other's END; the stream closes once each END is acknowledged,
    // which may still be under way here, so only a clean or pending close is acceptable.
    for s in [&sa, &sb] {
        assert!(matches!(s.close_reason(), None | Some(CloseReason::Ended)));
    }
}

#[tokio::test]
async fn non_udx_datagrams_and_probes_are_handed_out() {
    let (a, mut a_rx) = socket().await;
    let (b, _b_rx) = socket().await;
    let _s = a.connect(7, 8, b.local_addr(), Config::default()).unwrap();
    // A holepunch probe, a dht-rpc-looking message, and UDX for an unknown stream id.
    let mut unknown = vec![0u8; 20];
    unknown[0] = 0xFF;
    unknown[1] = 1;
    unknown[4] = 99;
    for p in [vec![0u8], vec![0x13, 1, 2, 3], unknown] {
        b.send_to(&p, a.local_addr()).await.unwrap();
        let d = a_rx.recv().await.unwrap();
        assert_eq!(d.payload, p);
        assert_eq!(d.from, b.local_addr());
    }
}

/// A server-style stream waits unconnected in an instance with two sockets; the client's
/// first packet, arriving on the second socket, connects it there. The client then moves its
/// stream to the first socket mid-transfer and nothing is lost or reordered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn accept_first_packet_on_any_socket_then_move() {
    use hyperswarm::udx::Udx;
    let any: SocketAddr = "127.0.0.1:0".parse().unwrap();
    let server = Udx::new();
    let (tx, _rx1) = mpsc::channel(16);
    let s1 = server.bind(any, tx).await.unwrap();
    let (tx, _rx2) = mpsc::channel(16);
    let s2 = server.bind(any, tx).await.unwrap();
    let (c, _c_rx) = socket().await;

    let accepted = server.create_stream(Config::default());
    let client_id = 4242;
    accepted.accept_first(client_id).unwrap();
    let mut cs = c
        .connect(client_id, accepted.id(), s2.local_addr(), Config::default())
        .unwrap();
    cs.write_all(b"hello").await.unwrap();
    let from = accepted.connected().await.unwrap();
    assert_eq!(from, c.local_addr());
    assert_eq!(accepted.socket().unwrap(), s2);

    let mut accepted = accepted;
    let mut buf = [0u8; 5];
    accepted.read_exact(&mut buf).await.unwrap();
    assert_eq!(&buf, b"hello");

    // Unreliable messages both ways.
    cs.send_message(b"ping").unwrap();
    assert_eq!(accepted.recv_message().await.unwrap(), b"ping");

    // The server moves its side to socket 1 while the client keeps sending to socket 2,
    // which still belongs to the instance: every byte arrives once, in order.
    accepted.connect(&s1, client_id, c.local_addr()).unwrap();
    let pat = pattern();
    let writer = tokio::spawn(async move {
        cs.write_all(&pat[..]).await.unwrap();
        cs.shutdown().await.unwrap();
        cs
    });
    let mut got = Vec::new();
    accepted.read_to_end(&mut got).await.unwrap();
    assert_eq!(got, pattern());
    let cs = writer.await.unwrap();
    drop(cs);
    accepted.shutdown().await.unwrap();
}

/// A blind relay on its own instance: one relay stream per side, each accepting the first
/// packet of the peer stream `a_id` / `b_id` and forwarding to the other. Returns the
/// relay's socket (keep it) and the two relay streams (`ra` for A, `rb` for B).
async fn blind_relay(a_id: u32, b_id: u32) -> (UdxSocket, UdxStream, UdxStream) {
    let relay = hyperswarm::udx::Udx::new();
    let (tx, _rx) = mpsc::channel(16);
    let any: SocketAddr = "127.0.0.1:0".parse().unwrap();
    let rs = relay.bind(any, tx).await.unwrap();
    let ra = relay.create_stream(Config::default());
    let rb = relay.create_stream(Config::default());
    ra.accept_first(a_id).unwrap();
    rb.accept_first(b_id).unwrap();
    ra.relay_to(&rb.watch()).unwrap();
    rb.relay_to(&ra.watch()).unwrap();
    (rs, ra, rb)
}

/// A relay instance joins two peers' streams without reading them: each side connects to
/// the relay's stream for it, and every packet goes through untouched but for the id.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn relayed_streams_carry_data_both_ways() {
    let (a, _a_rx) = socket().await;
    let (b, _b_rx) = socket().await;
    let (a_id, b_id) = (11, 22);
    let (rs, ra, rb) = blind_relay(a_id, b_id).await;

    // Each side connects to the relay's stream for it, as a blind-relay pair reply says.
    let mut sa = a
        .connect(a_id, ra.id(), rs.local_addr(), Config::default())
        .unwrap();
    let mut sb = b
        .connect(b_id, rb.id(), rs.local_addr(), Config::default())
        .unwrap();
    // Both speak first (as SecretStream headers do), which binds each relay stream.
    sa.write_all(b"from a").await.unwrap();
    sb.write_all(b"from b").await.unwrap();
    let mut buf = [0u8; 6];
    sb.read_exact(&mut buf).await.unwrap();
    assert_eq!(&buf, b"from a");
    sa.read_exact(&mut buf).await.unwrap();
    assert_eq!(&buf, b"from b");
    // Bulk through the relay, then a clean end on both sides.
    let pat = pattern();
    let writer = tokio::spawn(async move {
        sa.write_all(&pat).await.unwrap();
        sa.shutdown().await.unwrap();
        sa
    });
    let mut got = Vec::new();
    sb.read_to_end(&mut got).await.unwrap();
    assert_eq!(got, pattern());
    sb.shutdown().await.unwrap();
    let mut sa = writer.await.unwrap();
    let mut rest = Vec::new();
    sa.read_to_end(&mut rest).await.unwrap();
    assert!(rest.is_empty());
    assert_eq!(sa.closed().await, CloseReason::Ended);
}

/// A relayed stream moves to a direct path mid-transfer (hyperdht's upgrade from a blind
/// relay): one side connects straight to the other, the other follows the first packet
/// that comes from there, and the bytes arrive once and in order across the move.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn relayed_stream_moves_to_a_direct_path_without_losing_a_byte() {
    const PAT_LEN: u32 = 4_000_000;
    let (a, _a_rx) = socket().await;
    let (b, _b_rx) = socket().await;
    let sa = a.udx().create_stream(Config::default());
    let mut sb = b.udx().create_stream(Config::default());
    let (rs, ra, rb) = blind_relay(sa.id(), sb.id()).await;
    sa.connect_relayed(&a, ra.id(), rs.local_addr(), sb.id())
        .unwrap();
    sb.connect_relayed(&b, rb.id(), rs.local_addr(), sa.id())
        .unwrap();
    assert!(sa.watch().is_relayed() && sb.watch().is_relayed());
    // Both speak first (as SecretStream headers do), which binds each relay stream.
    let mut sa = sa;
    sa.write_all(b"a").await.unwrap();
    sb.write_all(b"b").await.unwrap();
    let mut one = [0u8; 1];
    sa.read_exact(&mut one).await.unwrap();
    sb.read_exact(&mut one).await.unwrap();

    let pat: Vec<u8> = (0..PAT_LEN).map(|i| (i * 7 + i / 251) as u8).collect();
    let expected = pat.clone();
    let (b_addr, b_id) = (b.local_addr(), sb.id());
    let writer = tokio::spawn(async move {
        let (before, after) = pat.split_at(pat.len() / 3);
        sa.write_all(before).await.unwrap();
        // Some of `before` is still in flight through the relay when the path changes.
        sa.connect(&a, b_id, b_addr).unwrap();
        assert!(!sa.watch().is_relayed());
        sa.write_all(after).await.unwrap();
        sa.shutdown().await.unwrap();
        sa
    });
    let mut got = Vec::new();
    sb.read_to_end(&mut got).await.unwrap();
    assert!(got == expected, "bytes lost or reordered across the move");
    // The receiving side followed: it now sends straight to A, not to the relay.
    let followed = tokio::time::timeout(std::time::Duration::from_secs(10), sb.watch().direct())
        .await
        .expect("B never followed A to the direct path")
        .unwrap();
    assert_ne!(followed, rs.local_addr());
    sb.shutdown().await.unwrap();
    let sa = writer.await.unwrap();
    assert_eq!(sa.closed().await, CloseReason::Ended);
    assert_eq!(sb.closed().await, CloseReason::Ended);
}

/// A relay holds what one side sends before the other side's first packet gave the relay a
/// path to it, and passes it on at once then: the first side never has to retransmit.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_relay_holds_packets_until_the_other_side_shows_up() {
    let (a, _a_rx) = socket().await;
    let (b, _b_rx) = socket().await;
    let (a_id, b_id) = (31, 32);
    let (rs, ra, rb) = blind_relay(a_id, b_id).await;
    let mut sa = a
        .connect(a_id, ra.id(), rs.local_addr(), Config::default())
        .unwrap();
    let mut sb = b
        .connect(b_id, rb.id(), rs.local_addr(), Config::default())
        .unwrap();
    sa.write_all(b"from a").await.unwrap();
    // A's packet has reached the relay (it gave A's relay stream its path); B is silent.
    ra.connected().await.unwrap();
    sb.write_all(b"from b").await.unwrap();
    let mut buf = [0u8; 6];
    sb.read_exact(&mut buf).await.unwrap();
    assert_eq!(&buf, b"from a");
    sa.read_exact(&mut buf).await.unwrap();
    assert_eq!(&buf, b"from b");
    assert_eq!(sa.stats().unwrap().retransmits, 0, "A's packet was dropped");
}
