//! One run, inside its private mount and PID namespaces: fresh lab, fresh DHT of three
//! bootstrap nodes in the lab's internet, an echo server in B, a client in A that pushes
//! 64 KiB through it; `+relay` pairings add a blind relay in the lab's internet, which the
//! client names, and then the client streams until its connection runs directly (or
//! [`UNTIL_DIRECT_S`] pass), so the echo check covers bytes sent across the move off the
//! relay. Everything it starts dies with it: `Proc` kills on drop, `Lab` tears
//! down on drop, and the kernel removes whatever is left when the PID namespace ends.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::lab::{self, Lab};
use super::report::RunResult;
use super::{Impl, Mode, NatlabError};
use crate::interop::proc::{is_event, stop_all, Proc};
use crate::paths;

/// The bootstrap nodes' addresses (on lo of the lab's internet namespace).
const BOOT_IPS: [&str; 3] = ["198.18.0.1", "198.18.0.2", "198.18.0.3"];
const BOOT_PORT: u16 = 49737;
/// The blind relay's address: the spare address of the lab's internet, used by nothing else,
/// so a stream whose remote host is this one runs through the relay.
const RELAY_IP: &str = "198.18.0.10";
/// How long a `+relay` client waits for its relayed stream to move to a direct path. The
/// slowest birthday punches measured in the lab took 25-35 s; this catches most of them
/// and keeps a CI run (45 s per client) short.
const UNTIL_DIRECT_S: u64 = 30;
/// What the client pushes through the echo.
const ECHO_BYTES: u64 = 64 * 1024;
/// A fresh three-node DHT and a listener announcing on it take well under a second here.
const START_TIMEOUT: Duration = Duration::from_secs(30);
/// How much longer than `--timeout` the driver waits for a client's result.
const CLIENT_SLACK: Duration = Duration::from_secs(5);
/// After its result line the client only has to close and print its counters.
const CLIENT_EXIT_GRACE: Duration = Duration::from_secs(10);

/// Everything the inner process needs, passed as one JSON argument.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct RunSpec {
    pub nat_a: Mode,
    pub nat_b: Mode,
    /// A blind relay of this implementation runs in the lab's internet and the client names
    /// it (`+relay` pairings).
    #[serde(default)]
    pub relay: Option<Impl>,
    pub client: Impl,
    pub server: Impl,
    pub run: u32,
    pub dht: Impl,
    pub extra_hops: u32,
    /// The client's deadline for connect + echo.
    pub timeout_s: u64,
    pub log_dir: PathBuf,
}

impl RunSpec {
    pub fn pairing(&self) -> String {
        let relay = if self.relay.is_some() { "+relay" } else { "" };
        format!("{}-{}{relay}", self.nat_a.name(), self.nat_b.name())
    }

    /// Whether the client waits for its connection to leave the relay: not where no punch
    /// can succeed (hyperdht refuses two randomising NATs), which would only wait out the
    /// time.
    fn until_direct(&self) -> Option<u64> {
        let punchable = !(self.nat_a == Mode::Random && self.nat_b == Mode::Random);
        (self.relay.is_some() && punchable).then_some(UNTIL_DIRECT_S)
    }

    pub fn mix(&self) -> String {
        format!("{}-{}", self.client.name(), self.server.name())
    }

    /// The record of a run that produced nothing (the harness failed before or around it).
    pub fn failed(&self, error: String, took: Duration) -> RunResult {
        RunResult {
            pairing: self.pairing(),
            mix: self.mix(),
            run: self.run,
            dht: self.dht.name().into(),
            relay: self.relay.map(|r| r.name().into()),
            extra_hops: self.extra_hops,
            connected: false,
            connect_ms: None,
            open_ms: None,
            error: Some(error),
            client_nat: None,
            server_nat: None,
            client_punches: None,
            server_punches: None,
            path: None,
            upgraded_ms: None,
            echoed_bytes: None,
            server_upgraded_ms: None,
            relay_pairings: None,
            log_dir: self.log_dir.display().to_string(),
            took_s: took.as_secs_f64(),
        }
    }
}

/// Runs the spec; harness failures end up in the record's `error` like connect failures,
/// prefixed `harness:` so the two are never confused.
pub fn execute(spec: &RunSpec) -> RunResult {
    let started = Instant::now();
    let mut result = spec.failed(String::new(), Duration::ZERO);
    result.error = None;
    if let Err(e) = attempt(spec, &mut result) {
        result.connected = false;
        result.error = Some(format!("harness: {e}"));
    }
    result.took_s = started.elapsed().as_secs_f64();
    result
}

fn attempt(spec: &RunSpec, result: &mut RunResult) -> Result<(), NatlabError> {
    let dir = &spec.log_dir;
    let lab = Lab::up(dir, spec.nat_a, spec.nat_b, spec.extra_hops)?;
    let bootstrap: Vec<String> = BOOT_IPS
        .iter()
        .map(|ip| format!("{ip}:{BOOT_PORT}"))
        .collect();
    let bootstrap = bootstrap.join(",");

    let mut dht = start_dht(spec.dht, dir)?;
    let mut relay = match spec.relay {
        Some(which) => Some(start_relay(which, dir, &bootstrap)?),
        None => None,
    };
    let relay_key = match relay.as_mut() {
        Some(p) => Some(public_key(
            "relay",
            &p.wait_event("listening", Instant::now() + START_TIMEOUT)
                .map_err(NatlabError::Peer)?,
        )?),
        None => None,
    };

    let mut server = spawn(
        dir,
        "server",
        "b",
        spec.server,
        &server_args(spec.server, &bootstrap)?,
    )?;
    let listening = server
        .wait_event("listening", Instant::now() + START_TIMEOUT)
        .map_err(NatlabError::Peer)?;
    result.server_nat = listening.get("nat").cloned();
    let key = public_key("server", &listening)?;

    // The JS client stops itself at the timeout (and still prints its counters); the slack
    // only matters for the Rust client, which has no overall deadline of its own.
    let timeout = Duration::from_secs(spec.timeout_s) + CLIENT_SLACK;
    let mut client = spawn(
        dir,
        "client",
        "a",
        spec.client,
        &client_args(spec, &bootstrap, &key, relay_key.as_deref()),
    )?;
    let outcome = client.wait_for("echoed or error", Instant::now() + timeout, |v| {
        is_event(v, "echoed") || is_event(v, "error")
    });
    match outcome {
        Ok(v) if is_event(&v, "echoed") => {
            result.open_ms = v["connect_ms"].as_f64();
            result.connect_ms = v["first_byte_ms"].as_f64();
            result.connected = v["equal"] == true;
            result.echoed_bytes = v["bytes"].as_u64();
            result.path = v["path"].as_str().map(String::from);
            result.upgraded_ms = v["upgraded_ms"].as_f64();
            if !result.connected {
                result.error = Some(format!("echo differs: {v}"));
            }
        }
        Ok(v) => result.error = Some(client_error(&v)),
        Err(e) => {
            result.error = Some(if e.contains("timed out") {
                format!("TIMEOUT: no echo within {} s", spec.timeout_s)
            } else {
                e
            });
        }
    }
    let _ = client.wait_exit(Instant::now() + CLIENT_EXIT_GRACE);
    client.drain().map_err(NatlabError::Peer)?;
    if let Some(stats) = client.events().iter().rev().find(|v| is_event(v, "stats")) {
        result.client_nat = stats.get("nat").cloned();
        result.client_punches = stats.get("punches").cloned();
    }

    // The conntrack entries show which mappings the punch created.
    lab.save_status(&dir.join("lab-status.log"));
    let mut stoppable: Vec<&mut Proc> = vec![&mut server];
    stoppable.extend(relay.iter_mut());
    stoppable.extend(dht.iter_mut());
    if let Err(e) = stop_all(stoppable) {
        eprintln!("natlab: {}: stopping peers: {e}", dir.display());
    }
    if let Some(stats) = server.events().iter().rev().find(|v| is_event(v, "stats")) {
        result.server_punches = stats.get("punches").cloned();
    }
    result.server_upgraded_ms = server
        .events()
        .iter()
        .find(|v| is_event(v, "upgraded"))
        .and_then(|v| v["upgraded_ms"].as_f64());
    if let Some(relay) = &relay {
        // The Rust relay counts pairings, the JS one reports each half it pairs.
        let events = relay.events();
        result.relay_pairings = Some(match events.iter().rev().find(|v| is_event(v, "paired")) {
            Some(v) => v["pairings"].as_u64().unwrap_or(0),
            None => events.iter().filter(|v| is_event(v, "pair")).count() as u64 / 2,
        });
    }
    drop(lab);
    Ok(())
}

/// The `public_key` of a `listening` event.
fn public_key(who: &str, listening: &Value) -> Result<String, NatlabError> {
    listening["public_key"]
        .as_str()
        .map(String::from)
        .ok_or_else(|| {
            NatlabError::Peer(format!("{who}: listening without public_key: {listening}"))
        })
}

/// A blind relay on [`RELAY_IP`] in the lab's internet: reachable by both peers, like a
/// relay on a public server.
fn start_relay(which: Impl, dir: &Path, bootstrap: &str) -> Result<Proc, NatlabError> {
    let seed = random_hex32()?;
    let (program, args) = match which {
        Impl::Js => (
            "node".to_string(),
            vec![
                lab::dir().join("lab-peer.js").display().to_string(),
                "relay".into(),
                "--bootstrap".into(),
                bootstrap.into(),
                "--seed".into(),
                seed,
                "--host".into(),
                RELAY_IP.into(),
            ],
        ),
        Impl::Rs => (
            "env".to_string(),
            vec![
                format!("RUST_LOG={}", rust_log()),
                "NO_COLOR=1".into(),
                paths::cli_binary().display().to_string(),
                "relay".into(),
                "--json".into(),
                "--bootstrap".into(),
                bootstrap.into(),
                "--seed".into(),
                seed,
                "--host".into(),
                RELAY_IP.into(),
                // See lab-peer.js: the relay stands for a public server.
                "--public".into(),
            ],
        ),
    };
    Proc::spawn(
        "relay",
        dir,
        &lab::script(),
        &Lab::exec_args("inet", &program, &args),
    )
    .map_err(NatlabError::Peer)
}

/// JS errors carry hyperdht's code, Rust ones a message.
fn client_error(v: &Value) -> String {
    match (v["code"].as_str(), v["message"].as_str()) {
        (Some(code), _) => code.to_string(),
        (None, Some(msg)) => msg.to_string(),
        (None, None) => v.to_string(),
    }
}

/// Three bootstrap nodes in the lab's internet, the first one seeding the others.
fn start_dht(which: Impl, dir: &Path) -> Result<Vec<Proc>, NatlabError> {
    let deadline = Instant::now() + START_TIMEOUT;
    match which {
        Impl::Js => {
            let script = lab::dir().join("lab-dht.js");
            let args = Lab::exec_args("inet", "node", &[script.display().to_string()]);
            let mut p =
                Proc::spawn("dht", dir, &lab::script(), &args).map_err(NatlabError::Peer)?;
            p.wait_event("ready", deadline).map_err(NatlabError::Peer)?;
            Ok(vec![p])
        }
        Impl::Rs => {
            let first = format!("{}:{BOOT_PORT}", BOOT_IPS[0]);
            let mut nodes = Vec::new();
            for (i, ip) in BOOT_IPS.iter().enumerate() {
                let mut args = vec![
                    "dht-node".to_string(),
                    "--json".into(),
                    "--bootstrap-mode".into(),
                    "--host".into(),
                    ip.to_string(),
                    "--port".into(),
                    BOOT_PORT.to_string(),
                ];
                if i > 0 {
                    args.extend(["--bootstrap".to_string(), first.clone()]);
                }
                let cli = paths::cli_binary().display().to_string();
                let mut p = Proc::spawn(
                    &format!("dht-{}", i + 1),
                    dir,
                    &lab::script(),
                    &Lab::exec_args("inet", &cli, &args),
                )
                .map_err(NatlabError::Peer)?;
                p.wait_event("bootstrapped", deadline)
                    .map_err(NatlabError::Peer)?;
                nodes.push(p);
            }
            Ok(nodes)
        }
    }
}

fn server_args(server: Impl, bootstrap: &str) -> Result<Vec<String>, NatlabError> {
    let seed = random_hex32()?;
    Ok(match server {
        Impl::Js => vec![
            "server".into(),
            "--bootstrap".into(),
            bootstrap.into(),
            "--seed".into(),
            seed,
        ],
        Impl::Rs => vec![
            "listen".into(),
            "--json".into(),
            "--bootstrap".into(),
            bootstrap.into(),
            "--seed".into(),
            seed,
        ],
    })
}

fn client_args(spec: &RunSpec, bootstrap: &str, key: &str, relay: Option<&str>) -> Vec<String> {
    let bytes = ECHO_BYTES.to_string();
    let mut args: Vec<String> = match spec.client {
        Impl::Js => vec![
            "client".into(),
            "--bootstrap".into(),
            bootstrap.into(),
            "--key".into(),
            key.into(),
            "--bytes".into(),
            bytes,
            "--timeout".into(),
            spec.timeout_s.to_string(),
        ],
        Impl::Rs => vec![
            "connect".into(),
            "--json".into(),
            "--bootstrap".into(),
            bootstrap.into(),
            key.into(),
            "--bytes".into(),
            bytes,
        ],
    };
    if let Some(relay) = relay {
        args.extend(["--relay-through".into(), relay.into()]);
        if spec.client == Impl::Js {
            // hyperdht keeps its relay state to itself; the remote host tells.
            args.extend(["--relay-host".into(), RELAY_IP.into()]);
        }
    }
    if let Some(secs) = spec.until_direct() {
        args.extend(["--until-direct".into(), secs.to_string()]);
    }
    args
}

/// A peer in lab namespace `ns`: `node lab-peer.js ARGS` or `hyperswarm ARGS`.
fn spawn(
    dir: &Path,
    name: &str,
    ns: &str,
    which: Impl,
    args: &[String],
) -> Result<Proc, NatlabError> {
    let full = match which {
        Impl::Js => {
            let mut a = vec![lab::dir().join("lab-peer.js").display().to_string()];
            a.extend(args.iter().cloned());
            Lab::exec_args(ns, "node", &a)
        }
        Impl::Rs => {
            // The Rust peers' debug log is the only trace of what their punching did.
            let mut a = vec![
                format!("RUST_LOG={}", rust_log()),
                // Plain text logs: they are read with grep, not on a terminal.
                "NO_COLOR=1".to_string(),
                paths::cli_binary().display().to_string(),
            ];
            a.extend(args.iter().cloned());
            Lab::exec_args(ns, "env", &a)
        }
    };
    Proc::spawn(name, dir, &lab::script(), &full).map_err(NatlabError::Peer)
}

/// `NATLAB_RUST_LOG` overrides what the Rust peers log to their `.err` files.
fn rust_log() -> String {
    std::env::var("NATLAB_RUST_LOG").unwrap_or_else(|_| "info,hyperswarm=debug".into())
}

fn random_hex32() -> Result<String, NatlabError> {
    use std::io::Read;
    let mut bytes = [0u8; 32];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut bytes))
        .map_err(|e| NatlabError::Io(format!("/dev/urandom: {e}")))?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}
