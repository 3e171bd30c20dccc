//! `announce`, `unannounce`, `lookup`, `put` and `get`: the HyperDHT record operations.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use clap::Args;
use hyperswarm::dht::{hash, HyperDht, KeyPair, PeerRecord};
use hyperswarm::rpc::NodeId;
use serde_json::{json, Value};

use crate::dht::{client_config, wait_for_exit, BootstrapArg};
use crate::output::Out;

/// Where records come from and go to.
#[derive(Args)]
pub struct Common {
    /// Print one JSON object per line.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    bootstrap: BootstrapArg,
}

/// Which key pair signs.
#[derive(Args)]
pub struct KeyArgs {
    /// The key pair's 32-byte seed, as 64 hex characters.
    #[arg(long, conflicts_with = "key")]
    seed: Option<String>,
    /// A file holding the seed as 64 hex characters; created with a random seed if missing.
    #[arg(long)]
    key: Option<PathBuf>,
}

#[derive(Args)]
pub struct AnnounceArgs {
    #[command(flatten)]
    common: Common,
    #[command(flatten)]
    keys: KeyArgs,
    /// Exit right after announcing instead of staying until interrupted.
    #[arg(long)]
    once: bool,
    /// Topic: 64 hex characters are used as the 32 bytes; anything else is hashed
    /// (BLAKE2b-256 of its UTF-8 bytes).
    topic: String,
}

#[derive(Args)]
pub struct UnannounceArgs {
    #[command(flatten)]
    common: Common,
    #[command(flatten)]
    keys: KeyArgs,
    /// Topic, as for `announce`.
    topic: String,
}

#[derive(Args)]
pub struct LookupArgs {
    #[command(flatten)]
    common: Common,
    /// Topic, as for `announce`.
    topic: String,
}

#[derive(Args)]
pub struct PutArgs {
    #[command(flatten)]
    common: Common,
    #[command(flatten)]
    keys: KeyArgs,
    /// Sequence number of a mutable put (higher replaces lower).
    #[arg(long, default_value_t = 0)]
    seq: u64,
    /// The value (UTF-8). With --seed or --key it is a mutable value signed by that key,
    /// stored under hash(public key); without, an immutable value stored under hash(value).
    value: String,
}

#[derive(Args)]
pub struct GetArgs {
    #[command(flatten)]
    common: Common,
    /// Read a mutable value: the argument is the signer's public key.
    #[arg(long, conflicts_with = "immutable")]
    mutable: bool,
    /// Read an immutable value: the argument is the value's hash.
    #[arg(long)]
    immutable: bool,
    /// Smallest acceptable seq of a mutable value.
    #[arg(long, default_value_t = 0)]
    seq: u64,
    /// A public key (mutable) or a hash (immutable), 64 hex characters. Without --mutable or
    /// --immutable both are tried, mutable first.
    key_or_hash: String,
}

/// A topic from the command line: raw hex, or the hash of the text.
pub fn parse_topic(s: &str) -> NodeId {
    NodeId::from_hex(s).unwrap_or_else(|| hash(s.as_bytes()))
}

fn parse_key32(s: &str, what: &str) -> Result<[u8; 32], String> {
    NodeId::from_hex(s)
        .map(|id| id.0)
        .ok_or_else(|| format!("{what} must be 64 hex characters, got {s:?}"))
}

impl KeyArgs {
    fn key_pair(&self) -> Result<Option<KeyPair>, String> {
        if let Some(seed) = &self.seed {
            return Ok(Some(KeyPair::from_seed(parse_key32(seed, "--seed")?)));
        }
        match &self.key {
            Some(path) => load_or_create_seed(path).map(|s| Some(KeyPair::from_seed(s))),
            None => Ok(None),
        }
    }

    fn key_pair_or_random(&self) -> Result<KeyPair, String> {
        Ok(self.key_pair()?.unwrap_or_else(KeyPair::generate))
    }
}

fn load_or_create_seed(path: &Path) -> Result<[u8; 32], String> {
    match std::fs::read_to_string(path) {
        Ok(text) => parse_key32(text.trim(), &format!("the seed in {}", path.display())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let seed: [u8; 32] = rand::random();
            write_private(path, &hex::encode(seed))
                .map_err(|e| format!("cannot create {}: {e}", path.display()))?;
            Ok(seed)
        }
        Err(e) => Err(format!("cannot read {}: {e}", path.display())),
    }
}

fn write_private(path: &Path, text: &str) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    writeln!(f, "{text}")
}

async fn start(common: &Common, out: Out) -> Result<HyperDht, String> {
    let dht = HyperDht::bind(client_config(common.bootstrap.list()))
        .await
        .map_err(|e| format!("cannot start node: {e}"))?;
    let s = dht.node().bootstrapped().await;
    if !out.json {
        eprintln!("bootstrapped: {} nodes in table", s.table_size);
    }
    Ok(dht)
}

fn peer_json(p: &PeerRecord) -> Value {
    let relays: Vec<Value> = p
        .relay_addresses
        .iter()
        .map(|a| json!({"host": a.ip().to_string(), "port": a.port()}))
        .collect();
    json!({"public_key": hex::encode(p.public_key), "relay_addresses": relays})
}

pub async fn announce(args: AnnounceArgs) -> Result<(), String> {
    let out = Out {
        json: args.common.json,
    };
    let topic = parse_topic(&args.topic);
    let kp = args.keys.key_pair_or_random()?;
    let dht = start(&args.common, out).await?;
    let nodes = dht
        .announce(topic, &kp, &[])
        .await
        .map_err(|e| format!("announce: {e}"))?;
    let pk = hex::encode(kp.public_key());
    out.emit(
        json!({"event": "announced", "topic": topic.to_hex(), "public_key": pk, "nodes": nodes.len()}),
        || format!("announced {pk} under {} on {} nodes", topic.to_hex(), nodes.len()),
    );
    if !args.once {
        wait_for_exit(args.common.json).await?;
    }
    Ok(())
}

pub async fn unannounce(args: UnannounceArgs) -> Result<(), String> {
    let out = Out {
        json: args.common.json,
    };
    let topic = parse_topic(&args.topic);
    let kp = args
        .keys
        .key_pair()?
        .ok_or("unannounce needs the announcing key: --seed or --key")?;
    let dht = start(&args.common, out).await?;
    let nodes = dht
        .unannounce(topic, &kp)
        .await
        .map_err(|e| format!("unannounce: {e}"))?;
    let pk = hex::encode(kp.public_key());
    out.emit(
        json!({"event": "unannounced", "topic": topic.to_hex(), "public_key": pk, "nodes": nodes.len()}),
        || format!("unannounced {pk} from {} nodes", nodes.len()),
    );
    Ok(())
}

pub async fn lookup(args: LookupArgs) -> Result<(), String> {
    let out = Out {
        json: args.common.json,
    };
    let topic = parse_topic(&args.topic);
    let dht = start(&args.common, out).await?;
    let mut seen = BTreeSet::new();
    let mut stream = dht.lookup(topic);
    while let Some(r) = stream.next().await {
        for p in r.peers {
            if seen.insert(p.public_key) {
                out.emit(
                    json!({"event": "peer", "public_key": hex::encode(p.public_key), "relay_addresses": peer_json(&p)["relay_addresses"], "from": r.from.to_string()}),
                    || format!("peer {} (from {})", hex::encode(p.public_key), r.from),
                );
            }
        }
    }
    let peers: Vec<String> = seen.iter().map(hex::encode).collect();
    out.emit(json!({"event": "done", "peers": peers}), || {
        format!("{} peers", seen.len())
    });
    Ok(())
}

pub async fn put(args: PutArgs) -> Result<(), String> {
    let out = Out {
        json: args.common.json,
    };
    let value = args.value.as_bytes();
    let kp = args.keys.key_pair()?;
    let dht = start(&args.common, out).await?;
    match kp {
        Some(kp) => match dht.mutable_put(&kp, value, args.seq).await {
            Ok(r) => {
                let pk = hex::encode(r.public_key);
                let target = hash(&r.public_key).to_hex();
                out.emit(
                    json!({"event": "put", "kind": "mutable", "public_key": pk, "seq": r.seq, "target": target, "nodes": r.stored_on.len()}),
                    || format!("stored seq {} under key {pk} on {} nodes", r.seq, r.stored_on.len()),
                );
            }
            Err(e) => return Err(storage_error(out, e)),
        },
        None => match dht.immutable_put(value).await {
            Ok(r) => {
                let h = r.hash.to_hex();
                out.emit(
                    json!({"event": "put", "kind": "immutable", "target": h, "nodes": r.stored_on.len()}),
                    || format!("stored under hash {h} on {} nodes", r.stored_on.len()),
                );
            }
            Err(e) => return Err(storage_error(out, e)),
        },
    }
    Ok(())
}

fn storage_error(out: Out, e: hyperswarm::dht::DhtError) -> String {
    let code = match &e {
        hyperswarm::dht::DhtError::Refused { code } => Some(*code),
        _ => None,
    };
    out.emit(
        json!({"event": "error", "code": code, "message": e.to_string()}),
        || format!("put failed: {e}"),
    );
    format!("put: {e}")
}

pub async fn get(args: GetArgs) -> Result<(), String> {
    let out = Out {
        json: args.common.json,
    };
    let key = parse_key32(&args.key_or_hash, "KEY_OR_HASH")?;
    let dht = start(&args.common, out).await?;
    let try_mutable = !args.immutable;
    let try_immutable = !args.mutable;
    if try_mutable {
        if let Some(got) = dht.mutable_get(&key, args.seq, true).await {
            let text = String::from_utf8_lossy(&got.value.value).into_owned();
            out.emit(
                json!({"event": "value", "kind": "mutable", "seq": got.value.seq, "value": text, "from": got.from.to_string()}),
                || format!("seq {}: {text}", got.value.seq),
            );
            return Ok(());
        }
    }
    if try_immutable {
        if let Some((v, from)) = dht.immutable_get(NodeId(key)).await {
            let text = String::from_utf8_lossy(&v).into_owned();
            out.emit(
                json!({"event": "value", "kind": "immutable", "value": text, "from": from.to_string()}),
                || text.clone(),
            );
            return Ok(());
        }
    }
    let kind = if args.immutable {
        "immutable"
    } else {
        "mutable"
    };
    out.emit(
        json!({"event": "value", "kind": kind, "value": null}),
        || "not found".into(),
    );
    Ok(())
}
