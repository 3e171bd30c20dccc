//! The interop scenarios. Each runs inside its own network namespace (see
//! `mod.rs`), starts JS and/or Rust DHT peers on 127.0.0.1, waits for their
//! readiness events and then compares what each implementation sees.
//!
//! The core check is that an iterative FIND_NODE from a JS client and from the
//! Rust CLI converge on the same k closest nodes for random targets: that only
//! holds if both speak the same wire format, compute the same ids/distances
//! and the Rust nodes route like JS nodes do. The `dht-*` scenarios (in
//! `records`) then check HyperDHT records: announce/lookup/unannounce and
//! mutable/immutable storage written by one implementation and read by the other.

mod bench;
mod bench_connect;
mod conn;
mod records;
mod relay;
mod swarm;
mod swarm_policy;
mod udx;

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use serde_json::Value;

use super::proc::{is_event, stop_all, Proc};
use super::{random_targets, Closest, NodeRef};
use crate::paths;

/// One scenario of `cargo xtask interop`.
pub struct Scenario {
    pub name: &'static str,
    pub description: &'static str,
    /// Hard limit for the whole scenario, enforced inside and (with slack) outside the namespace.
    pub timeout: Duration,
    /// Whether the release `hyperswarm` CLI must be built first.
    pub needs_cli: bool,
    pub run: fn(&mut Ctx) -> Result<(), String>,
}

pub static ALL: &[Scenario] = &[
    Scenario {
        name: "harness-js-only",
        description: "self-check: JS testnet of 10, two JS finders agree on the closest nodes of 5 targets",
        timeout: Duration::from_secs(120),
        needs_cli: false,
        run: harness_js_only,
    },
    Scenario {
        name: "harness-js-50",
        description: "self-check at scale: JS testnet of 50, two JS finders agree on 20 closest nodes of 20 targets",
        timeout: Duration::from_secs(180),
        needs_cli: false,
        run: harness_js_50,
    },
    Scenario {
        name: "rpc-rs-in-js",
        description: "Rust dht-find/dht-ping against a JS testnet of 10: same closest sets as JS, same ids",
        timeout: Duration::from_secs(120),
        needs_cli: true,
        run: rpc_rs_in_js,
    },
    Scenario {
        name: "rpc-js-in-rs",
        description: "10 Rust dht-nodes (1 bootstrap) + 5 JS nodes joining them: finds agree, JS pings Rust ids",
        timeout: Duration::from_secs(150),
        needs_cli: true,
        run: rpc_js_in_rs,
    },
    Scenario {
        name: "rpc-mixed-50",
        description: "25 Rust + 25 JS nodes: JS and Rust finds agree on 20 closest nodes for 20 targets",
        timeout: Duration::from_secs(240),
        needs_cli: true,
        run: rpc_mixed_50,
    },
    Scenario {
        name: "harness-js-dht",
        description: "self-check of js-dht.js on a JS testnet of 10: announce (2 keys) -> lookup, unannounce -> lookup, mutable put/get (seq 1, 2, get --seq 3 = null), immutable put/get",
        timeout: Duration::from_secs(120),
        needs_cli: false,
        run: records::harness_js_dht,
    },
    Scenario {
        name: "dht-announce-js-lookup-rs",
        description: "JS testnet 10 + 10 Rust nodes: JS announces a topic, Rust lookup reports its public key (relay addresses as JS lookup sees them)",
        timeout: Duration::from_secs(120),
        needs_cli: true,
        run: records::announce_js_lookup_rs,
    },
    Scenario {
        name: "dht-announce-rs-lookup-js",
        description: "JS testnet 10 + 10 Rust nodes: Rust announces (key = JS keyPair(seed)), JS lookup finds it; announcer stops cleanly",
        timeout: Duration::from_secs(120),
        needs_cli: true,
        run: records::announce_rs_lookup_js,
    },
    Scenario {
        name: "dht-unannounce",
        description: "JS testnet 10 + 10 Rust nodes: JS unannounce hides a key from Rust lookup, Rust unannounce from JS lookup; a second announced key stays visible",
        timeout: Duration::from_secs(120),
        needs_cli: true,
        run: records::unannounce_both_ways,
    },
    Scenario {
        name: "dht-mutable-both-ways",
        description: "JS testnet 10 + 10 Rust nodes: JS mutable put seq 1/2 -> Rust get; Rust put -> JS get; Rust put reusing seq -> error 16, lower seq -> error 17",
        timeout: Duration::from_secs(120),
        needs_cli: true,
        run: records::mutable_both_ways,
    },
    Scenario {
        name: "dht-immutable-both-ways",
        description: "JS testnet 10 + 10 Rust nodes: JS immutable put -> Rust get by hash; Rust put -> JS get (same hash for same value); unknown hash -> null",
        timeout: Duration::from_secs(120),
        needs_cli: true,
        run: records::immutable_both_ways,
    },
    Scenario {
        name: "dht-records-on-rs-storage",
        description: "only Rust storage nodes (1 bootstrap + 9 persistent), JS as clients: announce/lookup/unannounce, mutable and immutable put/get",
        timeout: Duration::from_secs(120),
        needs_cli: true,
        run: records::records_on_rs_storage,
    },
    Scenario {
        name: "relay-js-through-rs",
        description: "Rust-only DHT; a JS server announces to Rust nodes, JS clients connect through them (handshake + holepunch relayed by Rust) and echo 256 KiB",
        timeout: Duration::from_secs(120),
        needs_cli: true,
        run: relay::js_through_rs,
    },
    Scenario {
        name: "conn-rs-client-js-server",
        description: "mixed network: a Rust client connects to a JS server, 16 MiB each way through its echo, SHA-256 equal, clean close on both ends",
        timeout: Duration::from_secs(180),
        needs_cli: true,
        run: conn::rs_client_js_server,
    },
    Scenario {
        name: "conn-js-client-rs-server",
        description: "mixed network: a JS client connects to a Rust server, 16 MiB each way through its echo, equal, clean close on both ends",
        timeout: Duration::from_secs(180),
        needs_cli: true,
        run: conn::js_client_rs_server,
    },
    Scenario {
        name: "conn-wrong-key",
        description: "Rust and JS clients dialling a key nobody serves fail with a typed error within JS's timeout and never get a stream",
        timeout: Duration::from_secs(180),
        needs_cli: true,
        run: conn::wrong_key,
    },
    Scenario {
        name: "conn-firewall-reject",
        description: "a Rust server's firewall refuses a JS client's key (another JS client still connects), and a JS server's refuses a Rust client's",
        timeout: Duration::from_secs(240),
        needs_cli: true,
        run: conn::firewall_reject,
    },
    Scenario {
        name: "conn-holepunch",
        description: "both ends firewalled, no LAN shortcut: a JS client holepunches to a Rust server and a Rust client to a JS server (1 MiB echoed each)",
        timeout: Duration::from_secs(180),
        needs_cli: true,
        run: conn::holepunch,
    },
    Scenario {
        name: "relay-blind",
        description: "firewalled peers with no holepunch and no LAN connect only through a blind relay: Rust->JS and JS->Rust through a Rust relay, Rust<->Rust through a JS relay",
        timeout: Duration::from_secs(240),
        needs_cli: true,
        run: conn::blind_relay,
    },
    Scenario {
        name: "conn-many",
        description: "50 concurrent connections JS -> Rust server and 50 Rust -> JS server, each echoing 64 KiB",
        timeout: Duration::from_secs(240),
        needs_cli: true,
        run: conn::many,
    },
    Scenario {
        name: "udx-echo-js-rs",
        description: "raw UDX stream: udx-native sends 64 MiB, ours echoes; SHA-256 equal, both ends close cleanly",
        timeout: Duration::from_secs(120),
        needs_cli: true,
        run: udx::echo_js_rs,
    },
    Scenario {
        name: "udx-echo-rs-js",
        description: "raw UDX stream: ours sends 64 MiB, udx-native echoes; SHA-256 equal, both ends close cleanly",
        timeout: Duration::from_secs(120),
        needs_cli: true,
        run: udx::echo_rs_js,
    },
    Scenario {
        name: "udx-loss",
        description: "64 MiB through an echo, ours<->udx-native both ways, via a relay dropping 5%, reordering 10%, duplicating 1%, 10 ms delay",
        timeout: Duration::from_secs(600),
        needs_cli: true,
        run: udx::loss,
    },
    Scenario {
        name: "swarm-rs-server-js-client",
        description: "Rust `join --server` and JS hyperswarm `join --client` on one topic over a JS testnet: the JS client finds and dials us, both greet through the encrypted connection",
        timeout: Duration::from_secs(150),
        needs_cli: true,
        run: swarm::rs_server_js_client,
    },
    Scenario {
        name: "swarm-js-server-rs-client",
        description: "JS hyperswarm `join --server` and Rust `join --client` on one topic: we find and dial the JS server, both greet through the encrypted connection",
        timeout: Duration::from_secs(150),
        needs_cli: true,
        run: swarm::js_server_rs_client,
    },
    Scenario {
        name: "swarm-mixed-10",
        description: "5 JS + 5 Rust swarm peers on one topic (server+client): every pair ends with exactly one connection, the same on both ends, greeted through",
        timeout: Duration::from_secs(240),
        needs_cli: true,
        run: swarm::mixed_10,
    },
    Scenario {
        name: "swarm-dedup",
        description: "4 JS + 4 Rust swarm peers that joinPeer each other and start at once: simultaneous dials resolve to one connection per pair, the same on both ends",
        timeout: Duration::from_secs(200),
        needs_cli: true,
        run: swarm::dup_8,
    },
    Scenario {
        name: "swarm-reconnect",
        description: "a JS peer connected to ours for over a keepalive interval is killed and restarted with the same key: our swarm takes its new connection at once (the old one counts as used, as in JS)",
        timeout: Duration::from_secs(150),
        needs_cli: true,
        run: swarm::restart_js,
    },
    Scenario {
        name: "swarm-leave",
        description: "2 Rust + 2 JS chat peers connected; one of each kind leaves the topic: JS and Rust newcomers connect to those that stayed, never to a leaver (two lookups do not find them: unannounced), and the leavers' connections stay open",
        timeout: Duration::from_secs(90),
        needs_cli: true,
        run: swarm_policy::leave,
    },
    Scenario {
        name: "swarm-firewall-ban",
        description: "a Rust and then a JS swarm with --deny/--allow connects to the allowed peer of the other kind only, refusing the others before dialling and at the handshake; then each kind bans (/ban) a peer of the other: the connection stays until it ends, the restarted peer is refused and not dialled back",
        timeout: Duration::from_secs(90),
        needs_cli: true,
        run: swarm_policy::firewall_ban,
    },
];

pub fn find(name: &str) -> Option<&'static Scenario> {
    ALL.iter().chain(BENCHES).find(|s| s.name == name)
}

/// Benchmarks: run like scenarios (isolated, logged) but only by `cargo xtask bench`.
pub static BENCHES: &[Scenario] = &[Scenario {
    name: "bench-udx",
    description:
        "UDX throughput, CPU and RSS: udx-native and ours in every pairing (BENCH_MIB, default 512)",
    timeout: Duration::from_secs(1800),
    needs_cli: true,
    run: bench::udx,
}, Scenario {
    name: "bench-connect",
    description:
        "connections: connect -> first echoed byte over 50 serial connects, and one connection's throughput (BENCH_MIB, default 512), JS and Rust in every pairing",
    timeout: Duration::from_secs(1800),
    needs_cli: true,
    run: bench_connect::connect,
}];

/// Kademlia bucket size: finds return at most this many closest nodes.
const K: usize = 20;
/// Port of the bootstrap node in every scenario (each has its own namespace).
const BOOTSTRAP_PORT: u16 = 10001;
const HOST: &str = "127.0.0.1";
/// How often a find comparison is re-run when tables may still be converging.
const FIND_ATTEMPTS: usize = 3;

/// Per-scenario state: where logs go, what to run, and the overall deadline.
pub struct Ctx {
    name: &'static str,
    log_dir: PathBuf,
    started: Instant,
    deadline: Instant,
    /// Numbers the one-shot client processes so their logs sort in run order (atomic so
    /// a scenario may run independent rounds on threads).
    steps: AtomicUsize,
}

impl Ctx {
    pub fn new(s: &Scenario, log_dir: PathBuf) -> Ctx {
        let started = Instant::now();
        Ctx {
            name: s.name,
            log_dir,
            started,
            deadline: started + s.timeout,
            steps: AtomicUsize::new(0),
        }
    }

    /// Where this run's logs go.
    fn log_dir(&self) -> &std::path::Path {
        &self.log_dir
    }

    /// Spawns any program with this run's logging.
    fn spawn_program(
        &self,
        name: &str,
        program: &std::path::Path,
        args: &[String],
    ) -> Result<Proc, String> {
        Proc::spawn(name, &self.log_dir, program, args)
    }

    /// Progress line on stderr (the outer process passes it through).
    fn say(&self, msg: &str) {
        eprintln!(
            "  [{}] {:6.1}s {msg}",
            self.name,
            self.started.elapsed().as_secs_f64()
        );
    }

    /// `now + d`, but never past the scenario deadline.
    fn within(&self, d: Duration) -> Instant {
        (Instant::now() + d).min(self.deadline)
    }

    fn js(&self, name: &str, script: &str, args: &[String]) -> Result<Proc, String> {
        let dir = paths::interop_js_dir();
        let mut full = vec![dir.join(script).to_string_lossy().into_owned()];
        full.extend_from_slice(args);
        Proc::spawn(name, &self.log_dir, "node".as_ref(), &full)
    }

    fn rs(&self, name: &str, args: &[String]) -> Result<Proc, String> {
        let bin = paths::cli_binary();
        if !bin.is_file() {
            return Err(format!("{} not built", bin.display()));
        }
        Proc::spawn(name, &self.log_dir, &bin, args)
    }

    /// A unique, ordered process name: `03-js-lookup`.
    fn step_name(&self, what: &str) -> String {
        let n = self.steps.fetch_add(1, Ordering::Relaxed) + 1;
        format!("{n:02}-{what}")
    }

    fn write_file(&self, name: &str, contents: &str) -> Result<(), String> {
        let path = self.log_dir.join(name);
        std::fs::write(&path, contents).map_err(|e| format!("write {}: {e}", path.display()))
    }
}

fn strings(items: &[&str]) -> Vec<String> {
    items.iter().map(|s| s.to_string()).collect()
}

// ---------------------------------------------------------------- peers

/// A running `js-testnet.js` and the nodes it reported.
struct JsTestnet {
    proc: Proc,
    bootstrap: Vec<String>,
    nodes: Vec<NodeRef>,
}

/// Start `js-testnet.js` (own bootstrapper unless `bootstrap` is given) and wait for `ready`.
fn start_js_testnet(
    ctx: &Ctx,
    name: &str,
    size: usize,
    bootstrap: Option<&str>,
) -> Result<JsTestnet, String> {
    let mut args = vec!["--size".to_string(), size.to_string()];
    match bootstrap {
        Some(b) => args.extend(["--bootstrap".to_string(), b.to_string()]),
        None => args.extend(["--port".to_string(), BOOTSTRAP_PORT.to_string()]),
    }
    ctx.say(&format!("starting JS testnet `{name}` of {size}"));
    let mut proc = ctx.js(name, "js-testnet.js", &args)?;
    let ready = proc.wait_event("ready", ctx.within(Duration::from_secs(90)))?;
    let nodes = ready
        .get("nodes")
        .and_then(Value::as_array)
        .ok_or("ready event without nodes")?
        .iter()
        .map(NodeRef::parse)
        .collect::<Result<Vec<_>, _>>()?;
    let bootstrap = ready
        .get("bootstrap")
        .and_then(Value::as_array)
        .ok_or("ready event without bootstrap")?
        .iter()
        .filter_map(|b| b.as_str().map(str::to_string))
        .collect();
    if nodes.len() != size {
        return Err(format!(
            "{name}: expected {size} nodes, ready reported {}",
            nodes.len()
        ));
    }
    let persistent = nodes.iter().filter(|n| n.id.is_some()).count();
    ctx.say(&format!(
        "JS testnet `{name}` ready ({persistent}/{size} persistent)"
    ));
    Ok(JsTestnet {
        proc,
        bootstrap,
        nodes,
    })
}

/// A running `hyperswarm dht-node` and what it reported about itself.
struct RustNode {
    proc: Proc,
    host: String,
    port: u16,
    /// From `bootstrapped` (if non-null) or a later `persistent` event.
    id: Option<String>,
}

impl RustNode {
    fn addr(&self) -> String {
        format!("{}:{}", self.host, self.port)
    }

    /// Pick up a `persistent` event if one arrived since we last looked.
    fn refresh_id(&mut self) -> Result<(), String> {
        self.proc.drain()?;
        if let Some(id) = self
            .proc
            .events()
            .iter()
            .rev()
            .find(|e| is_event(e, "persistent"))
            .and_then(|e| e.get("id").and_then(Value::as_str))
        {
            self.id = Some(id.to_ascii_lowercase());
        }
        Ok(())
    }
}

/// All nodes of a mixed network, with the ids they announced.
fn known_nodes(rust: &[RustNode], js: &JsTestnet) -> Vec<NodeRef> {
    let mut all: Vec<NodeRef> = rust
        .iter()
        .map(|n| NodeRef {
            host: n.host.clone(),
            port: n.port,
            id: n.id.clone(),
        })
        .collect();
    all.extend(js.nodes.iter().cloned());
    all
}

/// Wait for `listening` then `bootstrapped` from a freshly spawned dht-node.
fn await_rust_node(ctx: &Ctx, mut proc: Proc) -> Result<RustNode, String> {
    let listening = proc.wait_event("listening", ctx.within(Duration::from_secs(20)))?;
    let host = listening
        .get("host")
        .and_then(Value::as_str)
        .ok_or_else(|| format!("{}: listening without host", proc.name))?
        .to_string();
    let port = listening
        .get("port")
        .and_then(Value::as_u64)
        .and_then(|p| u16::try_from(p).ok())
        .ok_or_else(|| format!("{}: listening without port", proc.name))?;
    let boot = proc.wait_event("bootstrapped", ctx.within(Duration::from_secs(60)))?;
    let id = boot
        .get("id")
        .and_then(Value::as_str)
        .map(str::to_ascii_lowercase);
    let mut node = RustNode {
        proc,
        host,
        port,
        id,
    };
    node.refresh_id()?;
    Ok(node)
}

/// One Rust bootstrap node on BOOTSTRAP_PORT plus `others` Rust nodes joining it.
/// Returns the nodes (bootstrap first) once all printed `bootstrapped`.
fn start_rust_network(ctx: &Ctx, others: usize) -> Result<Vec<RustNode>, String> {
    ctx.say(&format!(
        "starting Rust bootstrap node + {others} Rust dht-nodes"
    ));
    let boot = ctx.rs(
        "rs-node-00-bootstrap",
        &strings(&[
            "dht-node",
            "--json",
            "--bootstrap-mode",
            "--host",
            HOST,
            "--port",
            &BOOTSTRAP_PORT.to_string(),
        ]),
    )?;
    let boot = await_rust_node(ctx, boot)?;
    let boot_addr = boot.addr();
    let mut nodes = vec![boot];
    nodes.extend(start_rust_nodes(ctx, &boot_addr, 1..=others)?);
    ctx.say(&format!("{} Rust nodes bootstrapped", nodes.len()));
    Ok(nodes)
}

/// Persistent Rust dht-nodes `rs-node-NN` (NN from `numbers`) joining `bootstrap`
/// (comma-separated); returns them once all printed `bootstrapped`.
fn start_rust_nodes(
    ctx: &Ctx,
    bootstrap: &str,
    numbers: std::ops::RangeInclusive<usize>,
) -> Result<Vec<RustNode>, String> {
    let mut procs = Vec::new();
    for i in numbers {
        procs.push(ctx.rs(
            &format!("rs-node-{i:02}"),
            &strings(&[
                "dht-node",
                "--json",
                "--persistent",
                "--bootstrap",
                bootstrap,
                "--host",
                HOST,
            ]),
        )?);
    }
    procs.into_iter().map(|p| await_rust_node(ctx, p)).collect()
}

/// Give Rust nodes (started with `--persistent`) until `deadline` to announce `persistent`;
/// a straggler fails the scenario.
fn await_rust_persistence(
    ctx: &Ctx,
    nodes: &mut [RustNode],
    deadline: Instant,
) -> Result<(), String> {
    let mut missing = Vec::new();
    for node in nodes.iter_mut() {
        if node.id.is_some() {
            continue;
        }
        match node.proc.wait_event("persistent", deadline) {
            Ok(_) => node.refresh_id()?,
            Err(e) => missing.push(format!("{} ({e})", node.addr())),
        }
    }
    if missing.is_empty() {
        ctx.say(&format!("all {} Rust nodes persistent", nodes.len()));
        Ok(())
    } else {
        Err(format!(
            "{} Rust node(s) started with --persistent did not become persistent: {}",
            missing.len(),
            missing.join(", ")
        ))
    }
}

// ---------------------------------------------------------------- finds

/// Spawns one finder process for the given attempt number and targets.
type Finder<'a> = Box<dyn Fn(&Ctx, usize, &[String]) -> Result<Proc, String> + 'a>;

fn js_finder<'a>(label: &'a str, bootstrap: &'a str) -> Finder<'a> {
    Box::new(move |ctx: &Ctx, attempt: usize, targets: &[String]| {
        let args = strings(&["--bootstrap", bootstrap, "--targets", &targets.join(",")]);
        ctx.js(&format!("{label}.{attempt}"), "js-find.js", &args)
    })
}

fn rs_finder<'a>(label: &'a str, bootstrap: &'a str) -> Finder<'a> {
    Box::new(move |ctx: &Ctx, attempt: usize, targets: &[String]| {
        let mut args = strings(&["dht-find", "--json", "--bootstrap", bootstrap]);
        args.extend(targets.iter().cloned());
        ctx.rs(&format!("{label}.{attempt}"), &args)
    })
}

/// Wait for a finder to finish and collect its `closest` events by target.
fn collect_closest(ctx: &Ctx, mut proc: Proc, targets: &[String]) -> Result<Closest, String> {
    let events = proc.finish(ctx.within(Duration::from_secs(90)))?;
    if !events.iter().any(|e| is_event(e, "done")) {
        return Err(format!("{}: no `done` event", proc.name));
    }
    let mut out = Closest::new();
    for e in events.iter().filter(|e| is_event(e, "closest")) {
        let target = e
            .get("target")
            .and_then(Value::as_str)
            .ok_or_else(|| format!("{}: closest without target", proc.name))?
            .to_ascii_lowercase();
        let nodes = e
            .get("nodes")
            .and_then(Value::as_array)
            .ok_or_else(|| format!("{}: closest without nodes", proc.name))?
            .iter()
            .map(NodeRef::parse)
            .collect::<Result<Vec<_>, _>>()?;
        out.insert(target, nodes);
    }
    for t in targets {
        if !out.contains_key(t) {
            return Err(format!("{}: no result for target {t}", proc.name));
        }
    }
    Ok(out)
}

fn unhex(s: &str) -> Option<Vec<u8>> {
    (0..s.len())
        .step_by(2)
        .map(|i| s.get(i..i + 2).and_then(|b| u8::from_str_radix(b, 16).ok()))
        .collect()
}

/// Every node whose id we know (from readiness events), ranked by XOR distance
/// to `target`: the ground truth the finds approximate. Used for diagnostics,
/// so a disagreement says which side missed a truly closer node.
fn true_ranks(known: &[NodeRef], target: &str) -> Vec<String> {
    let Some(t) = unhex(target) else {
        return Vec::new();
    };
    let mut ranked: Vec<(Vec<u8>, String)> = known
        .iter()
        .filter_map(|n| {
            let id = unhex(n.id.as_deref()?)?;
            Some((id.iter().zip(&t).map(|(a, b)| a ^ b).collect(), n.addr()))
        })
        .collect();
    ranked.sort();
    ranked.into_iter().map(|(_, addr)| addr).collect()
}

/// Differences between two results for one target; empty when they agree.
fn diff_target(
    target: &str,
    (a_name, na): (&str, &[NodeRef]),
    (b_name, nb): (&str, &[NodeRef]),
    expected: usize,
    known: &[NodeRef],
) -> Vec<String> {
    let short = &target[..8];
    let mut problems = Vec::new();
    for (name, nodes) in [(a_name, na), (b_name, nb)] {
        if nodes.len() != expected {
            problems.push(format!(
                "{short}: {name} returned {} nodes, expected {expected}",
                nodes.len()
            ));
        }
        if let Some(n) = nodes.iter().find(|n| n.id.is_none()) {
            problems.push(format!("{short}: {name} returned {} without id", n.addr()));
        }
    }
    let ranks = true_ranks(known, target);
    let label = |addr: &String| match ranks.iter().position(|r| r == addr) {
        Some(i) => format!("{addr} (true rank {})", i + 1),
        None => format!("{addr} (unknown node)"),
    };
    let sa: BTreeSet<String> = na.iter().map(NodeRef::addr).collect();
    let sb: BTreeSet<String> = nb.iter().map(NodeRef::addr).collect();
    let only_a: Vec<String> = sa.difference(&sb).map(label).collect();
    let only_b: Vec<String> = sb.difference(&sa).map(label).collect();
    if !only_a.is_empty() || !only_b.is_empty() {
        problems.push(format!(
            "{short}: only {a_name}: {only_a:?}; only {b_name}: {only_b:?}"
        ));
    }
    for x in na {
        if let Some(y) = nb.iter().find(|y| y.addr() == x.addr()) {
            if x.id != y.id {
                problems.push(format!(
                    "{short}: id of {} differs: {a_name} {:?} vs {b_name} {:?}",
                    x.addr(),
                    x.id,
                    y.id
                ));
            }
        }
    }
    problems
}

/// True ranks (1-based) from which two finds may disagree after every retry. A young
/// network's routing tables do not all know every node yet, so lookups — JS against JS
/// too, see `harness-js-50` — now and then differ by one node near the 20th place.
const TAIL_FROM_RANK: usize = 15;
/// Targets per comparison that may end with such a tail difference.
const MAX_TAIL_TARGETS: usize = 4;

/// Whether two results for `target` differ only near the k-th place: the right sizes, at
/// most two nodes missing on either side, each ranked `TAIL_FROM_RANK` or later in the true
/// XOR order.
fn tail_only(
    target: &str,
    na: &[NodeRef],
    nb: &[NodeRef],
    expected: usize,
    known: &[NodeRef],
) -> bool {
    if na.len() != expected || nb.len() != expected {
        return false;
    }
    if na.iter().chain(nb).any(|n| n.id.is_none()) {
        return false;
    }
    let ranks = true_ranks(known, target);
    let sa: BTreeSet<String> = na.iter().map(NodeRef::addr).collect();
    let sb: BTreeSet<String> = nb.iter().map(NodeRef::addr).collect();
    let differing: Vec<&String> = sa.symmetric_difference(&sb).collect();
    differing.len() <= 4
        && differing.iter().all(|addr| {
            ranks
                .iter()
                .position(|r| r == *addr)
                .is_some_and(|i| i + 1 >= TAIL_FROM_RANK)
        })
}

/// Run both finders concurrently and compare per target. Targets that
/// disagree are looked up again by fresh finders (tables may still be
/// converging, and even JS alone misses a boundary node now and then),
/// up to FIND_ATTEMPTS times. Returns finder A's agreed results.
fn compare_finds(
    ctx: &Ctx,
    targets: &[String],
    expected: usize,
    known: &[NodeRef],
    (a_name, a): (&str, Finder),
    (b_name, b): (&str, Finder),
) -> Result<Closest, String> {
    let mut agreed = Closest::new();
    let mut pending: Vec<String> = targets.to_vec();
    let mut problems = Vec::new();
    let mut tail = Vec::new();
    for attempt in 1..=FIND_ATTEMPTS {
        ctx.say(&format!(
            "find attempt {attempt}: {a_name} vs {b_name}, {} targets",
            pending.len()
        ));
        let pa = a(ctx, attempt, &pending)?;
        let pb = b(ctx, attempt, &pending)?;
        let mut ra = collect_closest(ctx, pa, &pending)?;
        let rb = collect_closest(ctx, pb, &pending)?;
        problems.clear();
        let mut still = Vec::new();
        let last = attempt == FIND_ATTEMPTS;
        for t in &pending {
            let p = diff_target(t, (a_name, &ra[t]), (b_name, &rb[t]), expected, known);
            if p.is_empty() {
                agreed.insert(t.clone(), ra.remove(t).unwrap_or_default());
            } else if last && tail_only(t, &ra[t], &rb[t], expected, known) {
                tail.push(t[..8].to_string());
                agreed.insert(t.clone(), ra.remove(t).unwrap_or_default());
            } else {
                problems.extend(p);
                still.push(t.clone());
            }
        }
        if still.is_empty() && !tail.is_empty() {
            if tail.len() > MAX_TAIL_TARGETS {
                return Err(format!(
                    "finds differ in the tail on {} of {} targets (at most {MAX_TAIL_TARGETS} allowed): {tail:?}",
                    tail.len(),
                    targets.len()
                ));
            }
            ctx.say(&format!(
                "finds agree on {} targets; {} differ only by single nodes ranked {}+ of the true order: {tail:?}",
                targets.len() - tail.len(),
                tail.len(),
                TAIL_FROM_RANK
            ));
            return Ok(agreed);
        }
        if still.is_empty() {
            ctx.say(&format!(
                "finds agree on all {} targets ({expected} nodes each)",
                targets.len()
            ));
            return Ok(agreed);
        }
        ctx.say(&format!(
            "attempt {attempt}: {} target(s) differ:",
            still.len()
        ));
        for p in &problems {
            ctx.say(&format!("    {p}"));
        }
        pending = still;
    }
    let shown: Vec<&str> = problems.iter().take(20).map(String::as_str).collect();
    Err(format!(
        "finds disagree on {} of {} targets after {FIND_ATTEMPTS} attempts: {}",
        pending.len(),
        targets.len(),
        shown.join(" | ")
    ))
}

fn new_targets(ctx: &Ctx, n: usize) -> Result<Vec<String>, String> {
    let targets = random_targets(n)?;
    ctx.write_file("targets.txt", &(targets.join("\n") + "\n"))?;
    Ok(targets)
}

// ---------------------------------------------------------------- pings

/// The single `pong` event of a ping run; `None` if it exited without one.
fn pongs(events: &[Value]) -> Vec<&Value> {
    events.iter().filter(|e| is_event(e, "pong")).collect()
}

fn str_field<'a>(v: &'a Value, key: &str) -> Option<&'a str> {
    v.get(key).and_then(Value::as_str)
}

// ---------------------------------------------------------------- scenarios

fn harness_js_only(ctx: &mut Ctx) -> Result<(), String> {
    let mut net = start_js_testnet(ctx, "js-testnet", 10, None)?;
    let boot = net.bootstrap.join(",");
    let targets = new_targets(ctx, 5)?;
    compare_finds(
        ctx,
        &targets,
        net.nodes.len().min(K),
        &net.nodes,
        ("js-find-a", js_finder("js-find-a", &boot)),
        ("js-find-b", js_finder("js-find-b", &boot)),
    )?;
    stop_all([&mut net.proc])
}

/// Same as `harness-js-only` at the size of `rpc-mixed-50`: shows whether
/// k-closest set equality is a stable criterion when k < network size, so a
/// failure of the mixed scenario can be blamed on Rust rather than the method.
fn harness_js_50(ctx: &mut Ctx) -> Result<(), String> {
    let mut net = start_js_testnet(ctx, "js-testnet", 50, None)?;
    let boot = net.bootstrap.join(",");
    let targets = new_targets(ctx, 20)?;
    compare_finds(
        ctx,
        &targets,
        K,
        &net.nodes,
        ("js-find-a", js_finder("js-find-a", &boot)),
        ("js-find-b", js_finder("js-find-b", &boot)),
    )?;
    stop_all([&mut net.proc])
}

fn rpc_rs_in_js(ctx: &mut Ctx) -> Result<(), String> {
    let mut net = start_js_testnet(ctx, "js-testnet", 10, None)?;
    let boot = net.bootstrap.join(",");
    let targets = new_targets(ctx, 20)?;
    compare_finds(
        ctx,
        &targets,
        net.nodes.len().min(K),
        &net.nodes,
        ("js-find", js_finder("js-find", &boot)),
        ("rs-find", rs_finder("rs-find", &boot)),
    )?;

    // Rust pings a few JS nodes (the bootstrapper included): ids must match.
    for (i, node) in net.nodes.iter().take(3).enumerate() {
        let addr = node.addr();
        let mut p = ctx.rs(
            &format!("rs-ping-{i}"),
            &strings(&["dht-ping", "--json", &addr]),
        )?;
        let events = p.finish(ctx.within(Duration::from_secs(30)))?;
        let pong = *pongs(&events)
            .first()
            .ok_or_else(|| format!("rs-ping {addr}: no pong event"))?;
        let got = str_field(pong, "id").map(str::to_ascii_lowercase);
        if node.id.is_none() || got != node.id {
            return Err(format!(
                "rs-ping {addr}: id {got:?}, JS node says {:?}",
                node.id
            ));
        }
        ctx.say(&format!(
            "rs-ping {addr}: id matches, rtt {} ms",
            pong.get("rtt_ms").unwrap_or(&Value::Null)
        ));
    }
    stop_all([&mut net.proc])
}

fn rpc_js_in_rs(ctx: &mut Ctx) -> Result<(), String> {
    let mut rust = start_rust_network(ctx, 9)?;
    let boot = rust[0].addr();
    let mut net = start_js_testnet(ctx, "js-testnet", 5, Some(&boot))?;
    let persist_deadline = ctx.within(Duration::from_secs(60));
    await_rust_persistence(ctx, &mut rust, persist_deadline)?;

    let targets = new_targets(ctx, 20)?;
    let expected = (rust.len() + net.nodes.len()).min(K);
    let known = known_nodes(&rust, &net);
    let js = compare_finds(
        ctx,
        &targets,
        expected,
        &known,
        ("js-find", js_finder("js-find", &boot)),
        ("rs-find", rs_finder("rs-find", &boot)),
    )?;

    // The agreed sets must actually route through Rust nodes.
    let rust_addrs: BTreeSet<String> = rust.iter().map(RustNode::addr).collect();
    let seen: BTreeSet<String> = js.values().flatten().map(NodeRef::addr).collect();
    let missing: Vec<&String> = rust_addrs.difference(&seen).collect();
    if let Some(t) = js
        .iter()
        .find(|(_, nodes)| !nodes.iter().any(|n| rust_addrs.contains(&n.addr())))
    {
        return Err(format!("closest set of {} contains no Rust node", t.0));
    }
    if !missing.is_empty() {
        return Err(format!(
            "Rust nodes never returned by any find: {missing:?}"
        ));
    }
    ctx.say("every Rust node appears in the closest sets");

    // JS pings every Rust node: the reply id must be the node's announced id,
    // which in turn must be the hash of its address.
    let to: Vec<String> = rust.iter().map(RustNode::addr).collect();
    let mut p = ctx.js("js-ping", "js-ping.js", &strings(&["--to", &to.join(",")]))?;
    let events = p.finish(ctx.within(Duration::from_secs(40)))?;
    let pongs = pongs(&events);
    let mut problems = Vec::new();
    for node in rust.iter_mut() {
        node.refresh_id()?;
        let addr = node.addr();
        let Some(pong) = pongs.iter().find(|p| {
            format!(
                "{}:{}",
                str_field(p, "host").unwrap_or(""),
                p.get("port").unwrap_or(&Value::Null)
            ) == addr
        }) else {
            problems.push(format!("{addr}: no pong"));
            continue;
        };
        let got = str_field(pong, "id").map(str::to_ascii_lowercase);
        let address_id = str_field(pong, "address_id").map(str::to_ascii_lowercase);
        let expected = node.id.clone().or_else(|| address_id.clone());
        if got.is_none() || got != expected || got != address_id {
            problems.push(format!(
                "{addr}: pong id {got:?}, node announced {:?}, address hash {address_id:?}",
                node.id
            ));
        }
    }
    if !problems.is_empty() {
        return Err(format!("js-ping: {}", problems.join("; ")));
    }
    ctx.say(&format!("js-ping: all {} Rust node ids match", rust.len()));

    stop_all([&mut net.proc])?;
    stop_all(rust.iter_mut().rev().map(|n| &mut n.proc))
}

fn rpc_mixed_50(ctx: &mut Ctx) -> Result<(), String> {
    let mut rust = start_rust_network(ctx, 24)?;
    let boot = rust[0].addr();
    let mut net = start_js_testnet(ctx, "js-testnet", 25, Some(&boot))?;
    let persist_deadline = ctx.within(Duration::from_secs(60));
    await_rust_persistence(ctx, &mut rust, persist_deadline)?;

    let targets = new_targets(ctx, 20)?;
    let known = known_nodes(&rust, &net);
    let js = compare_finds(
        ctx,
        &targets,
        K,
        &known,
        ("js-find", js_finder("js-find", &boot)),
        ("rs-find", rs_finder("rs-find", &boot)),
    )?;
    let rust_addrs: BTreeSet<String> = rust.iter().map(RustNode::addr).collect();
    let (in_rust, total): (usize, usize) = js.values().fold((0, 0), |(r, t), nodes| {
        let nr = nodes
            .iter()
            .filter(|n| rust_addrs.contains(&n.addr()))
            .count();
        (r + nr, t + nodes.len())
    });
    ctx.say(&format!(
        "closest sets: {in_rust} of {total} entries are Rust nodes"
    ));
    // With 24 persistent Rust nodes among 50, 20 random targets touch nearly
    // all of them; requiring half guards against Rust nodes acting as mere
    // clients (never routable) while the JS half alone satisfies the finds.
    let seen: BTreeSet<String> = js.values().flatten().map(NodeRef::addr).collect();
    let rust_seen = rust_addrs.intersection(&seen).count();
    if rust_seen * 2 < rust.len() {
        return Err(format!(
            "only {rust_seen} of {} Rust nodes appear in any closest set (are they persistent?)",
            rust.len()
        ));
    }

    stop_all([&mut net.proc])?;
    stop_all(rust.iter_mut().rev().map(|n| &mut n.proc))
}
