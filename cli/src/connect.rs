//! `listen` and `connect`: encrypted connections to a key pair through the DHT.

use std::time::Instant;

use clap::Args;
use hyperswarm::dht::{ConnectOptions, Connection, HyperDht, KeyPair};
use serde_json::json;
use sha2::{Digest, Sha256};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::dht::{client_config, wait_for_exit, BootstrapArg};
use crate::output::Out;

#[derive(Args)]
pub struct ListenArgs {
    /// Print one JSON object per line; also exit when stdin closes.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    bootstrap: BootstrapArg,
    /// The server key pair's seed (64 hex characters); random if absent.
    #[arg(long)]
    seed: Option<String>,
    /// Refuse clients whose public key is this (64 hex characters).
    #[arg(long)]
    reject: Option<String>,
    /// Never conclude that our DHT socket is reachable (as behind a NAT), so clients
    /// must holepunch.
    #[arg(long)]
    firewalled: bool,
}

#[derive(Args)]
pub struct ConnectArgs {
    /// Print one JSON object per line.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    bootstrap: BootstrapArg,
    /// The server's public key, 64 hex characters.
    key: String,
    /// Our key pair's seed (64 hex characters); random if absent.
    #[arg(long)]
    seed: Option<String>,
    /// Bytes to send through the server's echo and compare.
    #[arg(long, default_value_t = 65536)]
    bytes: u64,
    /// Connections to open at once (each echoes `--bytes`).
    #[arg(long, default_value_t = 1)]
    count: usize,
    /// Open the `--count` connections one after another instead of at once.
    #[arg(long)]
    serial: bool,
    /// Never conclude that our DHT socket is reachable (as behind a NAT).
    #[arg(long)]
    firewalled: bool,
    /// No LAN shortcut: reach the server only through the DHT paths and holepunching.
    #[arg(long)]
    no_lan: bool,
}

fn key32(s: &str, what: &str) -> Result<[u8; 32], String> {
    hyperswarm::rpc::NodeId::from_hex(s)
        .map(|id| id.0)
        .ok_or_else(|| format!("{what} must be 64 hex characters"))
}

fn key_pair(seed: &Option<String>) -> Result<KeyPair, String> {
    Ok(match seed {
        Some(s) => KeyPair::from_seed(key32(s, "--seed")?),
        None => KeyPair::generate(),
    })
}

async fn start(bootstrap: &BootstrapArg, firewalled: bool) -> Result<HyperDht, String> {
    let mut config = client_config(bootstrap.list());
    if firewalled {
        config.rpc.quick_firewall = false;
    }
    let dht = HyperDht::bind(config)
        .await
        .map_err(|e| format!("cannot start node: {e}"))?;
    dht.node().bootstrapped().await;
    Ok(dht)
}

pub async fn listen(args: ListenArgs) -> Result<(), String> {
    let out = Out { json: args.json };
    let kp = key_pair(&args.seed)?;
    let reject = args
        .reject
        .as_deref()
        .map(|r| key32(r, "--reject"))
        .transpose()?;
    let dht = start(&args.bootstrap, args.firewalled).await?;
    let firewall = reject.map(|bad| {
        let f: std::sync::Arc<hyperswarm::dht::FirewallFn> =
            std::sync::Arc::new(move |key, _, _| *key != bad);
        f
    });
    let mut server = dht
        .listen(&kp, firewall)
        .await
        .map_err(|e| format!("listen: {e}"))?;
    let pk = hex::encode(server.public_key());
    let relays: Vec<String> = server.relays().iter().map(|a| a.to_string()).collect();
    let sockets = [dht.node().local_addr(), dht.node().client_addr()].map(|a| a.port());
    out.emit(
        json!({"event": "listening", "public_key": pk, "relays": relays, "dht_ports": sockets}),
        || format!("listening on {pk} through {}", relays.join(", ")),
    );
    let exit = wait_for_exit(args.json);
    tokio::pin!(exit);
    loop {
        tokio::select! {
            conn = server.accept() => {
                let Some(conn) = conn else { break };
                let key = hex::encode(conn.remote_public_key());
                out.emit(
                    json!({"event": "connection", "remote_public_key": key}),
                    || format!("connection from {key}"),
                );
                tokio::spawn(echo(conn, out.json));
            }
            r = &mut exit => return r,
        }
    }
    Ok(())
}

/// Echoes everything until the peer ends, then ends and waits for the clean close.
async fn echo(mut conn: Connection, json: bool) {
    let out = Out { json };
    let key = hex::encode(conn.remote_public_key());
    let mut buf = vec![0u8; 64 * 1024];
    let mut total = 0u64;
    let result: std::io::Result<()> = async {
        loop {
            let n = conn.read(&mut buf).await?;
            if n == 0 {
                break;
            }
            conn.write_all(&buf[..n]).await?;
            total += n as u64;
        }
        conn.shutdown().await
    }
    .await;
    let reason = match result {
        Ok(()) => format!("{:?}", conn.closed().await),
        Err(e) => format!("error: {e}"),
    };
    out.emit(
        json!({"event": "closed", "remote_public_key": key, "bytes": total, "reason": reason}),
        || format!("{key}: echoed {total} bytes, {reason}"),
    );
}

pub async fn connect(args: ConnectArgs) -> Result<(), String> {
    let out = Out { json: args.json };
    let server_key = key32(&args.key, "KEY")?;
    let kp = key_pair(&args.seed)?;
    let dht = start(&args.bootstrap, args.firewalled).await?;
    let opts = ConnectOptions {
        local_connection: !args.no_lan,
    };
    let mut tasks = tokio::task::JoinSet::new();
    let mut failed = None;
    for i in 0..args.count {
        let (dht, kp) = (dht.clone(), kp.clone());
        let bytes = args.bytes;
        tasks.spawn(async move { (i, one(&dht, &kp, &server_key, bytes, opts).await) });
        if args.serial || i + 1 == args.count {
            while let Some(r) = tasks.join_next().await {
                let (i, r) = r.map_err(|e| format!("task: {e}"))?;
                if let Err(msg) = report(&out, i, &server_key, r) {
                    failed = Some(msg);
                }
            }
        }
    }
    match failed {
        Some(msg) => Err(msg),
        None => Ok(()),
    }
}

fn report(
    out: &Out,
    i: usize,
    server_key: &[u8; 32],
    r: Result<Echoed, String>,
) -> Result<(), String> {
    match r {
        Ok(e) => {
            out.emit(
                json!({"event": "echoed", "index": i, "bytes": e.bytes, "equal": e.equal,
                       "connect_ms": e.connect_ms, "first_byte_ms": e.first_byte_ms,
                       "mib_per_s": e.mib_per_s, "remote_address": e.remote_address,
                       "remote_public_key": hex::encode(server_key), "close": e.close}),
                || {
                    format!(
                        "#{i}: connected in {:.1} ms, echoed {} bytes ({}), {:.1} MiB/s",
                        e.connect_ms,
                        e.bytes,
                        if e.equal { "equal" } else { "DIFFERENT" },
                        e.mib_per_s
                    )
                },
            );
            Ok(())
        }
        Err(msg) => {
            out.emit(
                json!({"event": "error", "index": i, "message": msg}),
                || format!("#{i}: {msg}"),
            );
            Err(msg)
        }
    }
}

struct Echoed {
    first_byte_ms: Option<f64>,
    remote_address: Option<String>,
    bytes: u64,
    equal: bool,
    connect_ms: f64,
    mib_per_s: f64,
    close: String,
}

/// One connection: connect, push `bytes` pseudo-random bytes through the echo while reading
/// them back, compare SHA-256 of both directions, end cleanly.
async fn one(
    dht: &HyperDht,
    kp: &KeyPair,
    server_key: &[u8; 32],
    bytes: u64,
    opts: ConnectOptions,
) -> Result<Echoed, String> {
    let t0 = Instant::now();
    let conn = dht
        .connect_with(kp, server_key, opts)
        .await
        .map_err(|e| format!("connect: {e}"))?;
    let connect_ms = t0.elapsed().as_secs_f64() * 1000.0;
    let remote_address = conn.remote_addr().map(|a| a.to_string());
    let t1 = Instant::now();
    let (mut r, mut w) = tokio::io::split(conn);
    let writer = tokio::spawn(async move {
        let mut sent = Sha256::new();
        let mut block = vec![0u8; 64 * 1024];
        let mut left = bytes;
        let mut x: u64 = rand::random();
        while left > 0 {
            for b in block.iter_mut() {
                // xorshift: cheap bytes that are not a repeating pattern.
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                *b = x as u8;
            }
            let n = left.min(block.len() as u64) as usize;
            w.write_all(&block[..n]).await?;
            sent.update(&block[..n]);
            left -= n as u64;
        }
        w.shutdown().await?;
        Ok::<_, std::io::Error>((w, sent.finalize()))
    });
    let mut got = Sha256::new();
    let mut total = 0u64;
    let mut first_byte_ms = None;
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = r.read(&mut buf).await.map_err(|e| format!("read: {e}"))?;
        if n == 0 {
            break;
        }
        if first_byte_ms.is_none() {
            first_byte_ms = Some(t0.elapsed().as_secs_f64() * 1000.0);
        }
        got.update(&buf[..n]);
        total += n as u64;
    }
    let (w, sent) = writer
        .await
        .map_err(|e| format!("writer: {e}"))?
        .map_err(|e| format!("write: {e}"))?;
    let secs = t1.elapsed().as_secs_f64();
    let conn = r.unsplit(w);
    let close = format!("{:?}", conn.closed().await);
    Ok(Echoed {
        first_byte_ms,
        remote_address,
        bytes: total,
        equal: total == bytes && got.finalize() == sent,
        connect_ms,
        mib_per_s: (2 * total) as f64 / (1024.0 * 1024.0) / secs.max(1e-9),
        close,
    })
}
