//! `join` and `chat`: Hyperswarm topics from the command line.

use std::collections::{HashMap, HashSet};
use std::io::ErrorKind;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use clap::Args;
use hyperswarm::dht::{Connection, HyperDht, KeyPair};
use hyperswarm::swarm::{self, JoinOptions, PeerInfo, Swarm, SwarmConfig, SwarmOptions};
use serde_json::json;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader, ReadHalf, WriteHalf};

use crate::dht::{wait_for_exit, BootstrapArg};
use crate::output::Out;
use crate::records::parse_topic;

type SwarmConn = swarm::Connection<Connection>;

/// How long a finished `join` waits for its connection's clean close.
const CLOSE_GRACE: std::time::Duration = std::time::Duration::from_secs(5);

/// Status for people goes to stderr, so stdout carries only the peer's bytes (`join`) or
/// messages (`chat`); with `--json` everything is an event on stdout.
fn say(out: Out, value: serde_json::Value, human: impl FnOnce() -> String) {
    if out.json {
        out.emit(value, human);
    } else {
        eprintln!("{}", human());
    }
}

/// What every swarm command takes.
#[derive(Args)]
pub struct SwarmArgs {
    /// Print one JSON object per line (events for programs).
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    bootstrap: BootstrapArg,
    /// Identity file: the 64-byte secret key (seed then public key, as JS keeps it); created
    /// with a random key and 0600 permissions if missing. A hex seed file (as `put --key`
    /// writes) is read too.
    #[arg(long, conflicts_with = "seed")]
    key: Option<PathBuf>,
    /// Identity from a 32-byte seed, 64 hex characters; random without --key or --seed.
    #[arg(long)]
    seed: Option<String>,
    /// Send `hello <our public key>` to each peer as it connects.
    #[arg(long)]
    greet: bool,
    /// Also keep a connection to these public keys (64 hex characters, comma separated),
    /// whatever the topic.
    #[arg(long, value_delimiter = ',')]
    peer: Vec<String>,
    /// A blind relay (its public key, 64 hex characters) to reach peers through once
    /// holepunching them failed.
    #[arg(long)]
    relay_through: Option<String>,
    /// Refuse connections with these public keys (64 hex characters, comma separated), both
    /// ways; a refused peer is banned, as JS Hyperswarm's `firewall` option does.
    #[arg(long, value_delimiter = ',')]
    deny: Vec<String>,
    /// Refuse connections with every public key but these (64 hex characters, comma
    /// separated); combines with --deny.
    #[arg(long, value_delimiter = ',')]
    allow: Vec<String>,
    /// Start an in-process testnet of N DHT nodes on 127.0.0.1 and use it instead of
    /// --bootstrap (other processes join it with the `--bootstrap` address it prints).
    #[arg(long, conflicts_with = "bootstrap")]
    testnet: Option<usize>,
    /// Only announce (peers dial us).
    #[arg(long, conflicts_with = "client")]
    server: bool,
    /// Only look up and dial.
    #[arg(long)]
    client: bool,
    /// Topic: 64 hex characters are used as the 32 bytes; anything else is hashed.
    topic: String,
}

#[derive(Args)]
pub struct JoinArgs {
    #[command(flatten)]
    common: SwarmArgs,
}

/// `chat`: lines typed go to every peer. Lines that are commands instead:
/// `/peer KEY[,KEY...]` adds peers to stay connected to (like `--peer`); `/leave` leaves the
/// topic (unannouncing; connections stay, as in JS); `/refresh` runs the topic's discovery
/// again and then flushes; `/ban KEY[,KEY...]` bans peers (never dialled or accepted again;
/// open connections stay, as in JS); `/info KEY` reports what the swarm knows about a peer.
#[derive(Args)]
pub struct ChatArgs {
    #[command(flatten)]
    common: SwarmArgs,
}

fn mode(args: &SwarmArgs) -> JoinOptions {
    JoinOptions {
        server: !args.client,
        client: !args.server,
        limit: None,
    }
}

fn parse_peers<'a>(keys: impl IntoIterator<Item = &'a str>) -> Result<Vec<[u8; 32]>, String> {
    keys.into_iter()
        .filter(|k| !k.is_empty())
        .map(|k| {
            hyperswarm::rpc::NodeId::from_hex(k)
                .map(|id| id.0)
                .ok_or_else(|| format!("a peer must be 64 hex characters, got {k:?}"))
        })
        .collect()
}

fn identity(args: &SwarmArgs) -> Result<KeyPair, String> {
    if let Some(seed) = &args.seed {
        let seed =
            hyperswarm::rpc::NodeId::from_hex(seed).ok_or("--seed must be 64 hex characters")?;
        return Ok(KeyPair::from_seed(seed.0));
    }
    match &args.key {
        Some(path) => load_or_create_key(path),
        None => Ok(KeyPair::generate()),
    }
}

/// Reads a 64-byte secret key file, or creates one. The stored public half must match the
/// seed, so a corrupted or foreign file is refused rather than silently changing identity.
fn load_or_create_key(path: &Path) -> Result<KeyPair, String> {
    match std::fs::read(path) {
        Ok(bytes) => {
            // The record commands' key files hold a hex seed; take those too.
            let hex_seed = std::str::from_utf8(&bytes)
                .ok()
                .and_then(|t| hyperswarm::rpc::NodeId::from_hex(t.trim()));
            match (<[u8; 64]>::try_from(bytes.as_slice()), hex_seed) {
                (_, Some(seed)) => Ok(KeyPair::from_seed(seed.0)),
                (Ok(secret), None) => from_secret(path, &secret),
                (Err(_), None) => Err(format!(
                    "{} holds neither a 64-byte secret key nor a hex seed",
                    path.display()
                )),
            }
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let kp = KeyPair::generate();
            write_private(path, &kp.secret_key())
                .map_err(|e| format!("cannot create {}: {e}", path.display()))?;
            Ok(kp)
        }
        Err(e) => Err(format!("cannot read {}: {e}", path.display())),
    }
}

fn from_secret(path: &Path, secret: &[u8; 64]) -> Result<KeyPair, String> {
    let mut seed = [0u8; 32];
    seed.copy_from_slice(&secret[..32]);
    let kp = KeyPair::from_seed(seed);
    if kp.public_key()[..] != secret[32..] {
        return Err(format!(
            "{}: the public key does not match the seed",
            path.display()
        ));
    }
    Ok(kp)
}

fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    f.write_all(bytes)
}

async fn start(args: &SwarmArgs, out: Out) -> Result<Swarm<HyperDht>, String> {
    let relay_through = args
        .relay_through
        .as_deref()
        .map(|k| {
            hyperswarm::rpc::NodeId::from_hex(k)
                .map(|id| id.0)
                .ok_or_else(|| format!("--relay-through must be 64 hex characters, got {k:?}"))
        })
        .transpose()?;
    let bootstrap = match args.testnet {
        Some(n) => {
            let host = std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST);
            let net = hyperswarm::dht::Testnet::new(n, host)
                .await
                .map_err(|e| format!("cannot start the testnet: {e}"))?;
            let boot = net.bootstrap();
            say(out, json!({"event": "testnet", "bootstrap": boot}), || {
                format!(
                    "testnet of {n} nodes; others join with --bootstrap {}",
                    boot.join(",")
                )
            });
            // The testnet serves this process and its peers until the process exits.
            Box::leak(Box::new(net));
            boot
        }
        None => args.bootstrap.list(),
    };
    let firewall = firewall(args, out)?;
    let swarm = Swarm::new(SwarmConfig {
        key_pair: Some(identity(args)?),
        bootstrap: Some(bootstrap),
        options: SwarmOptions {
            relay_through,
            firewall,
            ..SwarmOptions::default()
        },
        ..SwarmConfig::default()
    })
    .await
    .map_err(|e| format!("cannot start: {e}"))?;
    swarm.dht().node().bootstrapped().await;
    if !args.peer.is_empty() {
        // Explicit peers may dial us before any topic makes us a server.
        swarm.listen().await.map_err(|e| format!("listen: {e}"))?;
    }
    for key in parse_peers(args.peer.iter().map(String::as_str))? {
        swarm.join_peer(key).map_err(|e| e.to_string())?;
    }
    let pk = hex::encode(swarm.public_key());
    say(out, json!({"event": "ready", "public_key": pk}), || {
        format!("our public key: {pk}")
    });
    Ok(swarm)
}

/// The swarm's firewall from `--deny` and `--allow`, reporting each key it refuses (the
/// swarm bans a refused key, so each is reported once).
fn firewall(args: &SwarmArgs, out: Out) -> Result<Option<Arc<swarm::Refuse>>, String> {
    let deny: HashSet<[u8; 32]> = parse_peers(args.deny.iter().map(String::as_str))?
        .into_iter()
        .collect();
    let allow: HashSet<[u8; 32]> = parse_peers(args.allow.iter().map(String::as_str))?
        .into_iter()
        .collect();
    if deny.is_empty() && allow.is_empty() {
        return Ok(None);
    }
    Ok(Some(Arc::new(move |key: &[u8; 32]| {
        let refused = deny.contains(key) || (!allow.is_empty() && !allow.contains(key));
        if refused {
            let key = hex::encode(key);
            say(
                out,
                json!({"event": "firewalled", "remote_public_key": key}),
                || format!("refused {key}"),
            );
        }
        refused
    })))
}

/// Reports the first round of the topic and the dials it led to.
fn report_flush(swarm: &Arc<Swarm<HyperDht>>, d: Arc<swarm::Discovery>, out: Out) {
    let swarm = swarm.clone();
    tokio::spawn(async move {
        let announced = d.flushed().await;
        let flushed = swarm.flush().await;
        say(
            out,
            json!({"event": "flushed", "ok": announced && flushed}),
            || "first discovery round done".to_string(),
        );
    });
}

fn announce_connection(out: Out, id: u64, conn: &SwarmConn, info: &PeerInfo) {
    let key = hex::encode(conn.remote_public_key());
    say(
        out,
        json!({
            "event": "connection",
            "id": id,
            "remote_public_key": key,
            "initiator": conn.is_initiator(),
            "topics": info.topics.iter().map(hex::encode).collect::<Vec<_>>(),
        }),
        || {
            let how = if conn.is_initiator() { "to" } else { "from" };
            format!("connection {how} {key}")
        },
    );
}

fn greeting(swarm: &Swarm<HyperDht>) -> String {
    format!("hello {}\n", hex::encode(swarm.public_key()))
}

pub async fn join(args: JoinArgs) -> Result<(), String> {
    let out = Out {
        json: args.common.json,
    };
    let swarm = Arc::new(start(&args.common, out).await?);
    let topic = parse_topic(&args.common.topic).0;
    let d = swarm
        .join(topic, mode(&args.common))
        .await
        .map_err(|e| format!("join: {e}"))?;
    say(
        out,
        json!({"event": "joined", "topic": hex::encode(topic)}),
        || format!("joined {}", hex::encode(topic)),
    );
    report_flush(&swarm, Arc::new(d), out);

    let stdin = Arc::new(tokio::sync::Mutex::new(tokio::io::stdin()));
    let mut extra = Vec::new();
    let mut id = 0u64;
    let result = loop {
        let next = tokio::select! {
            c = swarm.accept() => c,
            r = wait_for_exit(false) => break r,
        };
        let Some((mut conn, info)) = next else {
            break Ok(());
        };
        id += 1;
        announce_connection(out, id, &conn, &info);
        if args.common.greet {
            let _ = conn.write_all(greeting(&swarm).as_bytes()).await;
        }
        let pipe = pipe(&mut conn, stdin.clone(), out);
        let done = tokio::select! {
            r = pipe => r,
            r = wait_for_exit(false) => break r,
        };
        match done {
            // The swarm closed it for a duplicate of it: carry on with the survivor.
            Err(e) if e.kind() == ErrorKind::ConnectionAborted => {
                emit_closed(out, id, &conn);
                extra.push(conn);
                continue;
            }
            // JS peers leaving a swarm reset their connections rather than end them.
            Err(e) if matches!(e.kind(), ErrorKind::ConnectionReset | ErrorKind::BrokenPipe) => {
                emit_closed(out, id, &conn);
                break Ok(());
            }
            Err(e) => break Err(format!("connection: {e}")),
            Ok(()) => {
                emit_closed(out, id, &conn);
                // Both sides ended: let the close complete so our last bytes arrive.
                let _ = tokio::time::timeout(CLOSE_GRACE, conn.closed()).await;
                break Ok(());
            }
        }
    };
    let _ = swarm.destroy().await;
    result
}

/// stdin to the peer, the peer to stdout, until the peer ends; then our side ends too.
async fn pipe(
    conn: &mut SwarmConn,
    stdin: Arc<tokio::sync::Mutex<tokio::io::Stdin>>,
    out: Out,
) -> std::io::Result<()> {
    let (mut rd, mut wr) = tokio::io::split(conn);
    let mut download = Box::pin(download(&mut rd, out));
    let peer_ended = {
        let upload = upload(&stdin, &mut wr);
        tokio::select! {
            r = &mut download => Some(r),
            r = upload => {
                r?;
                None
            }
        }
    };
    match peer_ended {
        Some(r) => {
            r?;
            // Like netcat: once the peer is done, so are we (unsent input is dropped).
            wr.shutdown().await
        }
        None => download.await,
    }
}

async fn upload(
    stdin: &tokio::sync::Mutex<tokio::io::Stdin>,
    wr: &mut WriteHalf<&mut SwarmConn>,
) -> std::io::Result<()> {
    let mut stdin = stdin.lock().await;
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        let n = stdin.read(&mut buf).await?;
        if n == 0 {
            return wr.shutdown().await;
        }
        wr.write_all(&buf[..n]).await?;
    }
}

async fn download(rd: &mut ReadHalf<&mut SwarmConn>, out: Out) -> std::io::Result<()> {
    let mut stdout = tokio::io::stdout();
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        let n = rd.read(&mut buf).await?;
        if n == 0 {
            return Ok(());
        }
        if out.json {
            let text = String::from_utf8_lossy(&buf[..n]).into_owned();
            out.emit(json!({"event": "data", "text": text}), String::new);
        } else {
            stdout.write_all(&buf[..n]).await?;
            stdout.flush().await?;
        }
    }
}

fn emit_closed(out: Out, id: u64, conn: &SwarmConn) {
    let key = hex::encode(conn.remote_public_key());
    say(
        out,
        json!({"event": "closed", "id": id, "remote_public_key": key}),
        || format!("connection with {key} closed"),
    );
}

type Writers = Arc<Mutex<HashMap<u64, Arc<tokio::sync::Mutex<WriteHalf<SwarmConn>>>>>>;

pub async fn chat(args: ChatArgs) -> Result<(), String> {
    let out = Out {
        json: args.common.json,
    };
    let swarm = Arc::new(start(&args.common, out).await?);
    let topic = parse_topic(&args.common.topic).0;
    let d = swarm
        .join(topic, mode(&args.common))
        .await
        .map_err(|e| format!("join: {e}"))?;
    say(
        out,
        json!({"event": "joined", "topic": hex::encode(topic)}),
        || format!("joined {}", hex::encode(topic)),
    );
    let d = Arc::new(d);
    report_flush(&swarm, d.clone(), out);

    let writers: Writers = Arc::default();
    let accepting = {
        let (swarm, writers) = (swarm.clone(), writers.clone());
        let greet = args.common.greet;
        async move {
            let mut id = 0u64;
            while let Some((conn, info)) = swarm.accept().await {
                id += 1;
                announce_connection(out, id, &conn, &info);
                let remote = conn.remote_public_key();
                let (rd, mut wr) = tokio::io::split(conn);
                if greet {
                    let _ = wr.write_all(greeting(&swarm).as_bytes()).await;
                }
                let wr = Arc::new(tokio::sync::Mutex::new(wr));
                lock(&writers).insert(id, wr);
                tokio::spawn(read_lines(rd, id, remote, writers.clone(), out));
            }
        }
    };
    let typing = {
        let (swarm, writers) = (swarm.clone(), writers.clone());
        async move {
            let mut lines = BufReader::new(tokio::io::stdin()).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                if line.starts_with('/') {
                    if let Err(e) = command(&swarm, &d, &line, out).await {
                        say(out, json!({"event": "error", "message": e}), || e.clone());
                    }
                    continue;
                }
                let targets: Vec<_> = lock(&writers).values().cloned().collect();
                for w in targets {
                    let _ = w
                        .lock()
                        .await
                        .write_all(format!("{line}\n").as_bytes())
                        .await;
                }
            }
        }
    };
    tokio::select! {
        _ = accepting => {}
        _ = typing => {}
        r = wait_for_exit(false) => r?,
    }
    let _ = swarm.destroy().await;
    Ok(())
}

/// Runs one of `chat`'s slash commands (see [`ChatArgs`]), reporting its outcome as an
/// event; `Err` is a message for an `error` event.
async fn command(
    swarm: &Swarm<HyperDht>,
    d: &swarm::Discovery,
    line: &str,
    out: Out,
) -> Result<(), String> {
    let (name, arg) = line.split_once(' ').unwrap_or((line, ""));
    let keys = || parse_peers(arg.split([',', ' ']));
    match name {
        "/peer" => {
            for k in keys()? {
                swarm.join_peer(k).map_err(|e| e.to_string())?;
            }
        }
        "/leave" => {
            let topic = d.topic();
            swarm.leave(topic).await.map_err(|e| e.to_string())?;
            let topic = hex::encode(topic);
            say(out, json!({"event": "left", "topic": topic}), || {
                format!("left {topic}")
            });
        }
        "/refresh" => {
            let found = d.refresh().await.map_err(|e| e.to_string())?;
            let flushed = swarm.flush().await;
            say(
                out,
                json!({"event": "refreshed", "ok": found && flushed}),
                || "discovery round done".to_string(),
            );
        }
        "/ban" => {
            for k in keys()? {
                swarm.ban(k).map_err(|e| e.to_string())?;
                // The answer comes after the ban was applied: commands run in order.
                let banned = swarm.peer(k).await.is_some_and(|p| p.banned);
                let key = hex::encode(k);
                say(
                    out,
                    json!({"event": "banned", "remote_public_key": key, "banned": banned}),
                    || format!("banned {key}"),
                );
            }
        }
        "/info" => {
            for k in keys()? {
                let info = swarm.peer(k).await;
                let key = hex::encode(k);
                let event = match &info {
                    Some(p) => json!({
                        "event": "peer_info",
                        "remote_public_key": key,
                        "known": true,
                        "banned": p.banned,
                        "explicit": p.explicit,
                        "attempts": p.attempts,
                        "topics": p.topics.iter().map(hex::encode).collect::<Vec<_>>(),
                    }),
                    None => json!({"event": "peer_info", "remote_public_key": key, "known": false}),
                };
                say(out, event, || match info {
                    Some(p) => format!(
                        "{key}: banned {}, explicit {}, {} failed attempts",
                        p.banned, p.explicit, p.attempts
                    ),
                    None => format!("{key}: unknown"),
                });
            }
        }
        _ => return Err(format!("unknown command {name}")),
    }
    Ok(())
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

async fn read_lines(
    rd: ReadHalf<SwarmConn>,
    id: u64,
    remote: [u8; 32],
    writers: Writers,
    out: Out,
) {
    let key = hex::encode(remote);
    let mut lines = BufReader::new(rd).lines();
    while let Ok(Some(line)) = lines.next_line().await {
        if line.strip_prefix("hello ") == Some(key.as_str()) {
            say(
                out,
                json!({"event": "hello", "id": id, "remote_public_key": key}),
                || format!("{key} says hello"),
            );
            continue;
        }
        out.emit(
            json!({"event": "message", "id": id, "remote_public_key": key, "text": line}),
            || format!("<{}> {line}", &key[..8]),
        );
    }
    lock(&writers).remove(&id);
    say(
        out,
        json!({"event": "closed", "id": id, "remote_public_key": key}),
        || format!("connection with {key} closed"),
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scratch(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("hyperswarm-key-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join(name);
        let _ = std::fs::remove_file(&p);
        p
    }

    #[test]
    fn key_file_is_created_private_and_read_back() {
        use std::os::unix::fs::PermissionsExt;
        let p = scratch("me.key");
        let kp = load_or_create_key(&p).unwrap();
        let meta = std::fs::metadata(&p).unwrap();
        assert_eq!(meta.permissions().mode() & 0o777, 0o600);
        assert_eq!(std::fs::read(&p).unwrap(), kp.secret_key().to_vec());
        assert_eq!(
            load_or_create_key(&p).unwrap().public_key(),
            kp.public_key()
        );
    }

    #[test]
    fn hex_seed_files_are_accepted_and_garbage_is_refused() {
        let p = scratch("seed.key");
        std::fs::write(&p, format!("{}\n", "07".repeat(32))).unwrap();
        let kp = load_or_create_key(&p).unwrap();
        assert_eq!(kp.public_key(), KeyPair::from_seed([7; 32]).public_key());

        let bad = scratch("bad.key");
        std::fs::write(&bad, b"not a key").unwrap();
        assert!(load_or_create_key(&bad).is_err());
        let mut forged = KeyPair::from_seed([1; 32]).secret_key();
        forged[40] ^= 1;
        std::fs::write(&bad, forged).unwrap();
        assert!(load_or_create_key(&bad)
            .unwrap_err()
            .contains("does not match"));
    }
}
