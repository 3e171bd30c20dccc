//! `demo`: Hyperswarm on one machine, no internet: an in-process testnet, N peers join one
//! topic, every pair connects (encrypted, over UDX) and exchanges data, and a table shows
//! what each peer saw.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use clap::Args;
use hyperswarm::dht::{KeyPair, Testnet};
use hyperswarm::swarm::{JoinOptions, Swarm, SwarmOptions};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

#[derive(Args)]
pub struct DemoArgs {
    /// Peers that join the topic.
    #[arg(long, default_value_t = 8)]
    peers: usize,
    /// DHT nodes of the testnet (the bootstrap node included).
    #[arg(long, default_value_t = 10)]
    nodes: usize,
    /// Bytes each side of every connection sends.
    #[arg(long, default_value_t = 256 * 1024)]
    bytes: usize,
}

const LOOPBACK: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);
/// How long the whole mesh may take to form.
const MESH_TIMEOUT: Duration = Duration::from_secs(60);

/// What one peer saw.
#[derive(Default)]
struct Seen {
    /// Peers with which a full exchange completed.
    exchanged: HashMap<[u8; 32], ()>,
    sent: u64,
    received: u64,
    first_connection: Option<Duration>,
}

pub async fn run(args: DemoArgs) -> Result<(), String> {
    if args.peers < 2 {
        return Err("--peers must be at least 2".into());
    }
    let started = Instant::now();
    let net = Testnet::new(args.nodes, LOOPBACK)
        .await
        .map_err(|e| format!("cannot start the testnet: {e}"))?;
    println!(
        "testnet of {} DHT nodes on {} up in {:.0} ms",
        args.nodes,
        LOOPBACK,
        started.elapsed().as_secs_f64() * 1000.0
    );
    let topic = hyperswarm::dht::hash(b"hyperswarm-rs demo").0;
    let (done_tx, mut done_rx) = tokio::sync::mpsc::unbounded_channel::<()>();
    let mut swarms = Vec::new();
    let mut seen: Vec<Arc<Mutex<Seen>>> = Vec::new();
    for _ in 0..args.peers {
        let dht = net
            .client()
            .await
            .map_err(|e| format!("cannot start a peer's node: {e}"))?;
        let swarm = Arc::new(Swarm::with_dht(
            dht,
            KeyPair::generate(),
            SwarmOptions::default(),
        ));
        let s = Arc::new(Mutex::new(Seen::default()));
        let joined = Instant::now();
        swarm
            .join(topic, JoinOptions::default())
            .await
            .map_err(|e| format!("join: {e}"))?;
        tokio::spawn(accept_loop(
            swarm.clone(),
            s.clone(),
            joined,
            args.bytes,
            args.peers - 1,
            done_tx.clone(),
        ));
        swarms.push(swarm);
        seen.push(s);
    }
    println!(
        "{} peers joined the topic {}…; waiting for every pair to connect",
        args.peers,
        &hex::encode(topic)[..16]
    );
    let mut complete = 0;
    let waited = tokio::time::timeout(MESH_TIMEOUT, async {
        while complete < args.peers {
            if done_rx.recv().await.is_none() {
                break;
            }
            complete += 1;
        }
    })
    .await;
    let mesh_ms = started.elapsed().as_secs_f64() * 1000.0;

    println!();
    println!(
        "{:<10} {:>10} {:>14} {:>14} {:>18}",
        "peer", "connected", "bytes sent", "bytes recv", "join→first conn"
    );
    for (swarm, s) in swarms.iter().zip(&seen) {
        let s = s.lock().expect("demo state poisoned");
        println!(
            "{:<10} {:>10} {:>14} {:>14} {:>15.1} ms",
            &hex::encode(swarm.public_key())[..8],
            s.exchanged.len(),
            s.sent,
            s.received,
            s.first_connection
                .map_or(f64::NAN, |d| d.as_secs_f64() * 1000.0)
        );
    }
    let pairs = args.peers * (args.peers - 1) / 2;
    println!();
    for swarm in &swarms {
        let _ = swarm.destroy().await;
    }
    match waited {
        Ok(()) if complete == args.peers => {
            println!(
                "full mesh: {pairs} encrypted connections, every one carried {} bytes each way; {:.0} ms from start",
                args.bytes, mesh_ms
            );
            Ok(())
        }
        _ => Err(format!(
            "only {complete} of {} peers reached every other peer in {MESH_TIMEOUT:?}",
            args.peers
        )),
    }
}

/// Takes the swarm's connections: each one sends `bytes` and reads as many from the peer.
/// Reports on `done` once `want` distinct peers completed an exchange.
async fn accept_loop(
    swarm: Arc<Swarm<hyperswarm::dht::HyperDht>>,
    seen: Arc<Mutex<Seen>>,
    joined: Instant,
    bytes: usize,
    want: usize,
    done: tokio::sync::mpsc::UnboundedSender<()>,
) {
    let mut reported = false;
    let (exchanged_tx, mut exchanged_rx) = tokio::sync::mpsc::unbounded_channel::<[u8; 32]>();
    loop {
        tokio::select! {
            accepted = swarm.accept() => {
                let Some((mut conn, _info)) = accepted else { return };
                {
                    let mut s = seen.lock().expect("demo state poisoned");
                    s.first_connection.get_or_insert_with(|| joined.elapsed());
                }
                let seen = seen.clone();
                let exchanged = exchanged_tx.clone();
                tokio::spawn(async move {
                    let key = conn.remote_public_key();
                    let out = vec![0x5a; bytes];
                    let mut back = vec![0u8; bytes];
                    // Both sides write, then read: the streams buffer enough that neither
                    // waits on the other's read.
                    let (mut r, mut w) = tokio::io::split(&mut conn);
                    let (wrote, read) = tokio::join!(w.write_all(&out), r.read_exact(&mut back));
                    // A duplicate the swarm closes fails here; its twin carries the exchange.
                    if wrote.is_ok() && read.is_ok() {
                        let mut s = seen.lock().expect("demo state poisoned");
                        s.sent += bytes as u64;
                        s.received += bytes as u64;
                        drop(s);
                        let _ = exchanged.send(key);
                    }
                    // Keep the connection until the demo ends, as an application would.
                    std::future::pending::<()>().await;
                    drop(conn);
                });
            }
            Some(key) = exchanged_rx.recv() => {
                let mut s = seen.lock().expect("demo state poisoned");
                s.exchanged.insert(key, ());
                if !reported && s.exchanged.len() >= want {
                    reported = true;
                    let _ = done.send(());
                }
            }
        }
    }
}
