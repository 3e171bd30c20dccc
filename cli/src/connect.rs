//! `listen` and `connect`: encrypted connections to a key pair through the DHT.

use std::time::Instant;

use clap::Args;
use hyperswarm::dht::{ConnectOptions, Connection, HyperDht, KeyPair, ListenOptions};
use serde_json::json;
use std::sync::Arc;
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
    /// Pair every client that cannot connect at once through this blind relay (its public
    /// key, 64 hex characters).
    #[arg(long)]
    relay_through: Option<String>,
    /// Offer no holepunching.
    #[arg(long)]
    no_holepunch: bool,
}

#[derive(Args)]
pub struct RelayArgs {
    /// Print one JSON object per line; also exit when stdin closes.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    bootstrap: BootstrapArg,
    /// The relay key pair's seed (64 hex characters); random if absent.
    #[arg(long)]
    seed: Option<String>,
    /// Address to bind the relay's DHT node to (default: all). A host with several
    /// addresses on one interface needs it, or replies leave from another address.
    #[arg(long)]
    host: Option<std::net::IpAddr>,
    /// The relay's address is reachable (a public server): say so from the start rather
    /// than wait for the DHT to prove it, which may never happen in a small DHT; until
    /// then every peer would have to holepunch the relay too.
    #[arg(long)]
    public: bool,
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
    /// Do not holepunch.
    #[arg(long)]
    no_holepunch: bool,
    /// Pair through this blind relay (its public key, 64 hex characters) alongside the
    /// other paths.
    #[arg(long)]
    relay_through: Option<String>,
    /// Keep streaming through the echo (paced, about 1.6 MiB/s) until the connection runs on
    /// a direct path, at most SECS after it opened; once direct, send `--bytes` more and end.
    /// A relayed connection moves off the relay when a later holepunch completes, so the
    /// echo check (and the SHA-256 of both directions) then covers bytes sent across the move.
    #[arg(long, value_name = "SECS")]
    until_direct: Option<f64>,
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

/// Whether our DHT socket is reachable: unknown (learn it), never, or known to be.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Reachable {
    Learn,
    Never,
    Known,
}

async fn start(
    bootstrap: &BootstrapArg,
    reachable: Reachable,
    host: Option<std::net::IpAddr>,
) -> Result<HyperDht, String> {
    let mut config = client_config(bootstrap.list());
    match reachable {
        Reachable::Learn => {}
        Reachable::Never => config.rpc.quick_firewall = false,
        Reachable::Known => config.rpc.firewalled = false,
    }
    if let Some(host) = host {
        config.host = host;
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
    let reachable = if args.firewalled {
        Reachable::Never
    } else {
        Reachable::Learn
    };
    let dht = start(&args.bootstrap, reachable, None).await?;
    let firewall = reject.map(|bad| {
        let f: std::sync::Arc<hyperswarm::dht::FirewallFn> =
            std::sync::Arc::new(move |key, _, _| *key != bad);
        f
    });
    let relay_through = args
        .relay_through
        .as_deref()
        .map(|k| key32(k, "--relay-through"))
        .transpose()?;
    let opts = ListenOptions {
        firewall,
        relay_through,
        holepunch: !args.no_holepunch,
    };
    let mut server = dht
        .listen_with(&kp, opts)
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
                let relayed = conn.is_relayed();
                out.emit(
                    json!({"event": "connection", "remote_public_key": key, "relayed": relayed}),
                    || format!("connection from {key}"),
                );
                if relayed {
                    tokio::spawn(report_upgrade(conn.watch(), key, Instant::now(), out.json));
                }
                tokio::spawn(echo(conn, out.json));
            }
            r = &mut exit => return r,
        }
    }
    Ok(())
}

pub async fn relay(args: RelayArgs) -> Result<(), String> {
    let out = Out { json: args.json };
    let kp = key_pair(&args.seed)?;
    let reachable = if args.public {
        Reachable::Known
    } else {
        Reachable::Learn
    };
    let dht = start(&args.bootstrap, reachable, args.host).await?;
    let relay = dht
        .serve_relay(&kp)
        .await
        .map_err(|e| format!("relay: {e}"))?;
    let pk = hex::encode(relay.public_key());
    let address = dht.node().local_addr().to_string();
    out.emit(
        json!({"event": "listening", "public_key": pk, "address": address}),
        || format!("blind relay on {pk} at {address}"),
    );
    let mut pairings = relay.pairings();
    let exit = wait_for_exit(args.json);
    tokio::pin!(exit);
    loop {
        tokio::select! {
            r = pairings.changed() => {
                if r.is_err() {
                    return Ok(());
                }
                let n = *pairings.borrow_and_update();
                out.emit(json!({"event": "paired", "pairings": n}), || format!("pairing #{n}"));
            }
            r = &mut exit => return r,
        }
    }
}

/// Prints `upgraded` when a relayed connection moves to a direct path (nothing if it closes
/// first).
async fn report_upgrade(
    watch: hyperswarm::udx::StreamWatch,
    key: String,
    opened: Instant,
    json: bool,
) {
    let out = Out { json };
    if let Ok(addr) = watch.direct().await {
        let ms = opened.elapsed().as_secs_f64() * 1000.0;
        out.emit(
            json!({"event": "upgraded", "remote_public_key": key, "remote_address": addr.to_string(),
                   "upgraded_ms": ms}),
            || format!("{key}: moved off the relay to {addr} after {ms:.0} ms"),
        );
    }
}

/// Echoes everything until the peer ends, then ends and waits for the clean close.
/// How long an echo may see no progress before it logs its state.
const STALL: std::time::Duration = std::time::Duration::from_secs(10);

/// Awaits `step`, logging the stream's state every [`STALL`] it takes.
async fn logging_stalls<F: std::future::Future>(
    step: F,
    what: &str,
    key: &str,
    total: u64,
    watch: &hyperswarm::udx::StreamWatch,
) -> F::Output {
    tokio::pin!(step);
    loop {
        tokio::select! {
            r = &mut step => return r,
            () = tokio::time::sleep(STALL) => tracing::warn!(
                key,
                total,
                state = watch.diagnostics().unwrap_or_default(),
                "echo stalled {what}"
            ),
        }
    }
}

async fn echo(mut conn: Connection, json: bool) {
    let out = Out { json };
    let key = hex::encode(conn.remote_public_key());
    let mut buf = vec![0u8; 64 * 1024];
    let mut total = 0u64;
    let watch = conn.watch();
    let result: std::io::Result<()> = async {
        loop {
            let n = logging_stalls(conn.read(&mut buf), "reading", &key, total, &watch).await?;
            if n == 0 {
                break;
            }
            logging_stalls(conn.write_all(&buf[..n]), "writing", &key, total, &watch).await?;
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
    let reachable = if args.firewalled {
        Reachable::Never
    } else {
        Reachable::Learn
    };
    let dht = start(&args.bootstrap, reachable, None).await?;
    let relay_through = args
        .relay_through
        .as_deref()
        .map(|k| key32(k, "--relay-through"))
        .transpose()?;
    let opts = ConnectOptions {
        local_connection: !args.no_lan,
        holepunch: !args.no_holepunch,
        relay_through,
    };
    let until_direct = args
        .until_direct
        .map(|s| {
            std::time::Duration::try_from_secs_f64(s)
                .map_err(|_| "--until-direct must be a number of seconds, 0 or more".to_string())
        })
        .transpose()?;
    let mut tasks = tokio::task::JoinSet::new();
    let mut failed = None;
    for i in 0..args.count {
        let (dht, kp) = (dht.clone(), kp.clone());
        let bytes = args.bytes;
        tasks.spawn(async move {
            let r = one(&dht, &kp, &server_key, bytes, opts, until_direct).await;
            (i, r)
        });
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
                       "mib_per_s": e.mib_per_s, "remote_address": e.remote_address, "relayed": e.relayed,
                       "relayed_at_open": e.relayed, "path": e.path(), "upgraded_ms": e.upgraded_ms,
                       "direct_address": e.direct_address, "sha256_sent": e.sha256_sent,
                       "sha256_echoed": e.sha256_echoed,
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

/// Bytes of the random block a benchmark connection repeats (prime, so chunk and packet
/// boundaries drift across it).
const BLOCK: usize = 1_048_573;
/// Bytes per write and read.
const CHUNK: usize = 64 * 1024;
/// `--until-direct` writes this much per tick: a steady stream that spans the path change
/// without flooding the machine while the holepunch runs.
const PACED_CHUNK: usize = 16 * 1024;
const PACE: std::time::Duration = std::time::Duration::from_millis(10);

struct Echoed {
    /// On a blind relay when the connection opened.
    relayed: bool,
    /// When a relayed connection moved to a direct path, ms after it opened.
    upgraded_ms: Option<f64>,
    direct_address: Option<String>,
    first_byte_ms: Option<f64>,
    remote_address: Option<String>,
    bytes: u64,
    equal: bool,
    connect_ms: f64,
    mib_per_s: f64,
    close: String,
    /// `--until-direct` only: SHA-256 of everything written and of everything read back.
    sha256_sent: Option<String>,
    sha256_echoed: Option<String>,
}

impl Echoed {
    /// `direct` (never relayed), `upgraded` (relayed, then direct) or `relayed`.
    fn path(&self) -> &'static str {
        match (self.relayed, self.upgraded_ms.is_some()) {
            (false, _) => "direct",
            (true, true) => "upgraded",
            (true, false) => "relayed",
        }
    }
}

/// One connection: connect, push `bytes` pseudo-random bytes through the echo while reading
/// them back, compare both directions, end cleanly. With `until_direct`, the writes are paced
/// and go on until the connection is on a direct path (or the time is up), then `bytes` more.
async fn one(
    dht: &HyperDht,
    kp: &KeyPair,
    server_key: &[u8; 32],
    bytes: u64,
    opts: ConnectOptions,
    until_direct: Option<std::time::Duration>,
) -> Result<Echoed, String> {
    use sha2::{Digest, Sha256};
    let mut block = vec![0u8; BLOCK];
    rand::RngCore::fill_bytes(&mut rand::thread_rng(), &mut block);
    let block = Arc::new(block);
    let t0 = Instant::now();
    let conn = dht
        .connect_with(kp, server_key, opts)
        .await
        .map_err(|e| format!("connect: {e}"))?;
    let connect_ms = t0.elapsed().as_secs_f64() * 1000.0;
    let remote_address = conn.remote_addr().map(|a| a.to_string());
    let relayed = conn.is_relayed();
    let t1 = Instant::now();
    // Set once when a relayed connection reaches a direct path: (ms after open, address).
    let (direct_tx, direct_rx) = tokio::sync::watch::channel(None::<(f64, String)>);
    if relayed {
        let watch = conn.watch();
        tokio::spawn(async move {
            if let Ok(addr) = watch.direct().await {
                let ms = t1.elapsed().as_secs_f64() * 1000.0;
                let _ = direct_tx.send(Some((ms, addr.to_string())));
            }
        });
    }
    // One block of random bytes sent over and over, so every position in the stream is
    // checkable against the block without hashing (a benchmark client must not be slower
    // than the connection it measures); only the paced `--until-direct` stream is hashed.
    let (mut r, mut w) = tokio::io::split(conn);
    let writer = {
        let block = block.clone();
        let mut direct_rx = direct_rx.clone();
        tokio::spawn(async move {
            let mut sent = 0u64;
            let mut hash = until_direct.map(|_| Sha256::new());
            let write = |sent: u64, limit: usize| {
                let at = (sent % BLOCK as u64) as usize;
                let n = (BLOCK - at).min(limit);
                (at, n)
            };
            match until_direct {
                None => {
                    while sent < bytes {
                        let (at, n) = write(sent, CHUNK.min((bytes - sent) as usize));
                        w.write_all(&block[at..at + n]).await?;
                        sent += n as u64;
                    }
                }
                Some(cap) => {
                    let deadline = tokio::time::Instant::from_std(t1 + cap);
                    let mut tick = tokio::time::interval(PACE);
                    // Bytes sent when the direct path was seen: `bytes` more follow it.
                    let mut direct_at = (!relayed).then_some(0u64);
                    loop {
                        if direct_at.is_none() && direct_rx.borrow_and_update().is_some() {
                            direct_at = Some(sent);
                        }
                        let done = match direct_at {
                            Some(at) => sent >= at + bytes,
                            None => sent >= bytes && tokio::time::Instant::now() >= deadline,
                        };
                        if done {
                            break;
                        }
                        tick.tick().await;
                        let (at, n) = write(sent, PACED_CHUNK);
                        w.write_all(&block[at..at + n]).await?;
                        if let Some(h) = hash.as_mut() {
                            h.update(&block[at..at + n]);
                        }
                        sent += n as u64;
                    }
                }
            }
            w.shutdown().await?;
            let digest = hash.map(|h| hex::encode(h.finalize()));
            Ok::<_, std::io::Error>((w, sent, digest))
        })
    };
    let mut total = 0u64;
    let mut equal = true;
    let mut first_byte_ms = None;
    let mut echoed_hash = until_direct.map(|_| Sha256::new());
    let mut buf = vec![0u8; CHUNK];
    loop {
        let n = r.read(&mut buf).await.map_err(|e| format!("read: {e}"))?;
        if n == 0 {
            break;
        }
        if first_byte_ms.is_none() {
            first_byte_ms = Some(t0.elapsed().as_secs_f64() * 1000.0);
        }
        if let Some(h) = echoed_hash.as_mut() {
            h.update(&buf[..n]);
        }
        let mut off = 0;
        while off < n {
            let at = ((total + off as u64) % BLOCK as u64) as usize;
            let m = (BLOCK - at).min(n - off);
            equal &= buf[off..off + m] == block[at..at + m];
            off += m;
        }
        total += n as u64;
    }
    let (w, sent, sha256_sent) = writer
        .await
        .map_err(|e| format!("writer: {e}"))?
        .map_err(|e| format!("write: {e}"))?;
    let secs = t1.elapsed().as_secs_f64();
    let conn = r.unsplit(w);
    let close = format!("{:?}", conn.closed().await);
    let sha256_echoed = echoed_hash.map(|h| hex::encode(h.finalize()));
    let upgrade = direct_rx.borrow().clone();
    Ok(Echoed {
        relayed,
        upgraded_ms: upgrade.as_ref().map(|u| u.0),
        direct_address: upgrade.map(|u| u.1),
        first_byte_ms,
        remote_address,
        bytes: total,
        equal: equal && total == sent && sha256_sent == sha256_echoed,
        connect_ms,
        mib_per_s: (2 * total) as f64 / (1024.0 * 1024.0) / secs.max(1e-9),
        close,
        sha256_sent,
        sha256_echoed,
    })
}
