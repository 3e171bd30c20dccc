//! Hyperswarm peers, ours and JS hyperswarm 4.17.2, on one topic over a JS testnet: they
//! find each other through announces and lookups, connect, greet each other through the
//! encrypted connection, and every pair ends with exactly one connection that both ends
//! agree on (the duplicate-connection rule must match across implementations).

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use serde_json::Value;

use super::{start_js_testnet, strings, Ctx};
use crate::interop::proc::{is_event, stop_all, Proc};

const TOPIC: &str = "hyperswarm-rs interop topic";
/// The connection picture must hold this long to count as settled.
const STABLE: Duration = Duration::from_secs(5);

pub(super) struct Peer {
    pub label: String,
    pub proc: Proc,
    pub key: String,
}

fn seed(i: usize) -> String {
    format!("{:02x}", 0x40 + i).repeat(32)
}

/// Starts a swarm peer (`js` or ours) and waits for its public key.
fn start_peer(
    ctx: &Ctx,
    js: bool,
    i: usize,
    op: &str,
    mode: Option<&str>,
    boot: &str,
    greet: bool,
) -> Result<Peer, String> {
    let label = format!("{}-{op}-{i}", if js { "js" } else { "rs" });
    let mut extra: Vec<String> = greet.then(|| "--greet".to_string()).into_iter().collect();
    extra.extend(mode.map(str::to_string));
    spawn_peer(ctx, js, i, label, op, TOPIC, &extra, boot)
}

/// Starts swarm peer number `i` (its seed) as `label` on `topic` with `extra` options, and
/// waits for its public key.
#[allow(clippy::too_many_arguments)]
pub(super) fn spawn_peer(
    ctx: &Ctx,
    js: bool,
    i: usize,
    label: String,
    op: &str,
    topic: &str,
    extra: &[String],
    boot: &str,
) -> Result<Peer, String> {
    let s = seed(i);
    let mut proc = if js {
        let mut args = strings(&[op, topic, "--bootstrap", boot, "--seed", &s]);
        args.extend_from_slice(extra);
        ctx.js(&label, "js-swarm.js", &args)?
    } else {
        let mut args = strings(&[op, "--json", "--bootstrap", boot, "--seed", &s]);
        args.extend_from_slice(extra);
        args.push(topic.to_string());
        ctx.rs(&label, &args)?
    };
    let ready = proc.wait_event("ready", ctx.within(Duration::from_secs(60)))?;
    let key = ready["public_key"]
        .as_str()
        .ok_or_else(|| format!("{label}: ready without public_key"))?
        .to_string();
    Ok(Peer { label, proc, key })
}

/// A peer's open connections by remote key (ids), from its connection/closed events.
pub(super) fn live(events: &[Value]) -> BTreeMap<String, BTreeSet<u64>> {
    let mut open: BTreeMap<String, BTreeSet<u64>> = BTreeMap::new();
    for e in events {
        let (Some(key), Some(id)) = (e["remote_public_key"].as_str(), e["id"].as_u64()) else {
            continue;
        };
        if is_event(e, "connection") {
            open.entry(key.to_string()).or_default().insert(id);
        } else if is_event(e, "closed") {
            if let Some(ids) = open.get_mut(key) {
                ids.remove(&id);
            }
        }
    }
    open.retain(|_, ids| !ids.is_empty());
    open
}

fn greeted(events: &[Value]) -> BTreeSet<u64> {
    events
        .iter()
        .filter(|e| is_event(e, "hello"))
        .filter_map(|e| e["id"].as_u64())
        .collect()
}

/// What is still wrong with the pairwise picture; empty when every pair has exactly one
/// live connection on both ends (greeted through, if `greeted`).
fn pair_problems(peers: &[Peer], greeted_through: bool) -> Vec<String> {
    let mut problems = Vec::new();
    for a in peers {
        let open = live(a.proc.events());
        let hellos = greeted(a.proc.events());
        for b in peers {
            if a.key == b.key {
                continue;
            }
            match open.get(&b.key) {
                None => problems.push(format!("{} has no connection to {}", a.label, b.label)),
                Some(ids) if ids.len() > 1 => problems.push(format!(
                    "{} has {} connections to {}",
                    a.label,
                    ids.len(),
                    b.label
                )),
                Some(ids) => {
                    if greeted_through && !ids.iter().all(|id| hellos.contains(id)) {
                        problems.push(format!("{} not greeted by {}", a.label, b.label));
                    }
                }
            }
        }
        for key in open.keys() {
            if !peers.iter().any(|p| &p.key == key) {
                problems.push(format!("{} connected to a stranger {key}", a.label));
            }
        }
    }
    problems
}

/// Waits until every pair is connected exactly once, and stays so for [`STABLE`].
pub(super) fn await_pairs(
    peers: &mut [Peer],
    greeted: bool,
    deadline: Instant,
) -> Result<(), String> {
    let mut settled_since: Option<Instant> = None;
    loop {
        for p in peers.iter_mut() {
            p.proc.drain()?;
        }
        let problems = pair_problems(peers, greeted);
        let now = Instant::now();
        if problems.is_empty() {
            let since = *settled_since.get_or_insert(now);
            if now.duration_since(since) >= STABLE {
                return Ok(());
            }
        } else {
            settled_since = None;
            if now >= deadline {
                return Err(format!(
                    "connections never settled: {}",
                    problems.join("; ")
                ));
            }
        }
        // Block on the first peer's next event (or a short while) rather than spinning.
        let _ = peers[0]
            .proc
            .wait_for("any event", now + Duration::from_millis(200), |_| true);
    }
}

/// `swarm-rs-server-js-client` and `swarm-js-server-rs-client`: one server-only peer, one
/// client-only peer of the other implementation.
fn server_client(ctx: &mut Ctx, js_server: bool) -> Result<(), String> {
    let net = start_js_testnet(ctx, "js-testnet", 10, None)?;
    let boot = net.bootstrap.join(",");
    let mut server = start_peer(ctx, js_server, 1, "join", Some("--server"), &boot, true)?;
    server
        .proc
        .wait_event("flushed", ctx.within(Duration::from_secs(60)))?;
    ctx.say(&format!("{} announced", server.label));
    let mut client = start_peer(ctx, !js_server, 2, "join", Some("--client"), &boot, true)?;

    let c = client
        .proc
        .wait_event("connection", ctx.within(Duration::from_secs(60)))?;
    if c["remote_public_key"] != server.key.as_str() || c["initiator"] != true {
        return Err(format!("{}: unexpected connection {c}", client.label));
    }
    let s = server
        .proc
        .wait_event("connection", ctx.within(Duration::from_secs(30)))?;
    if s["remote_public_key"] != client.key.as_str() || s["initiator"] != false {
        return Err(format!("{}: unexpected connection {s}", server.label));
    }
    // Each greets the other through the encrypted connection; `join` reports raw data.
    let (server_key, client_key) = (server.key.clone(), client.key.clone());
    for (me, other) in [(&mut client, server_key), (&mut server, client_key)] {
        let hello = format!("hello {other}");
        let label = me.label.clone();
        me.proc.wait_for(
            &format!("{label}: the peer's greeting"),
            ctx.within(Duration::from_secs(30)),
            |v| is_event(v, "data") && v["text"].as_str().is_some_and(|t| t.contains(&hello)),
        )?;
    }
    ctx.say("connected both ways, greetings delivered");
    stop_all([&mut client.proc, &mut server.proc])?;
    let mut net = net;
    net.proc.request_stop();
    Ok(())
}

pub fn rs_server_js_client(ctx: &mut Ctx) -> Result<(), String> {
    server_client(ctx, false)
}

pub fn js_server_rs_client(ctx: &mut Ctx) -> Result<(), String> {
    server_client(ctx, true)
}

/// `swarm-mixed-10`: five JS and five Rust peers chatting on one topic.
pub fn mixed_10(ctx: &mut Ctx) -> Result<(), String> {
    let net = start_js_testnet(ctx, "js-testnet", 10, None)?;
    let boot = net.bootstrap.join(",");
    let mut peers = Vec::new();
    // One after the other, each once the previous has announced: peers announcing at the
    // same moment miss each other until the next refresh (10+ minutes), in JS too.
    for i in 0..10 {
        let mut p = start_peer(ctx, i % 2 == 0, i, "chat", None, &boot, true)?;
        p.proc
            .wait_event("flushed", ctx.within(Duration::from_secs(60)))?;
        peers.push(p);
    }
    ctx.say("10 peers joined; waiting for one connection per pair (45 pairs)");
    await_pairs(&mut peers, true, ctx.within(Duration::from_secs(150)))?;
    ctx.say("every pair has exactly one connection, greeted through on both ends");
    stop_all(peers.iter_mut().map(|p| &mut p.proc))?;
    let mut net = net;
    net.proc.request_stop();
    Ok(())
}

/// `swarm-dedup`: 4 JS + 4 Rust peers announce on a topic without looking it up; once all
/// have, each is told (`/peer` on stdin, all within milliseconds) to connect to every
/// other, so most pairs dial each other at the same moment: the duplicate rule must leave
/// both ends of every pair holding the same one connection, chosen at the first try, and
/// the survivors carry each peer's greeting.
pub fn dup_8(ctx: &mut Ctx) -> Result<(), String> {
    let net = start_js_testnet(ctx, "js-testnet", 10, None)?;
    let boot = net.bootstrap.join(",");
    let mut peers = Vec::new();
    for i in 0..8 {
        let mut p = start_peer(ctx, i % 2 == 0, i, "chat", Some("--server"), &boot, false)?;
        p.proc
            .wait_event("flushed", ctx.within(Duration::from_secs(60)))?;
        peers.push(p);
    }
    let keys: Vec<String> = peers.iter().map(|p| p.key.clone()).collect();
    for p in peers.iter_mut() {
        let others: Vec<&str> = keys
            .iter()
            .filter(|k| **k != p.key)
            .map(String::as_str)
            .collect();
        p.proc.send_line(&format!("/peer {}", others.join(",")))?;
    }
    ctx.say("8 peers dialling each other; waiting for one connection per pair (28 pairs)");
    // No data moves yet: a connection that carried bytes both ways may legitimately be
    // replaced by a late duplicate (the peer is presumed to be reconnecting), which would
    // blur what this checks.
    await_pairs(&mut peers, false, ctx.within(Duration::from_secs(120)))?;
    // Both implementations must pick the same survivor at once. Had they disagreed, both
    // ends would lose a connection and only retries would pair them up again; the peer
    // with the larger key (whose dial wins) would then see its first connection close.
    let mut disagreements = Vec::new();
    for a in &peers {
        for b in &peers {
            // Same-length lowercase hex orders like the bytes.
            if a.key <= b.key {
                continue;
            }
            let seen = |name: &str| {
                a.proc
                    .events()
                    .iter()
                    .filter(|e| is_event(e, name) && e["remote_public_key"] == b.key.as_str())
                    .count()
            };
            if seen("connection") != 1 || seen("closed") != 0 {
                disagreements.push(format!(
                    "{} (larger key) opened {} and closed {} connections with {}",
                    a.label,
                    seen("connection"),
                    seen("closed"),
                    b.label
                ));
            }
        }
    }
    if !disagreements.is_empty() {
        return Err(disagreements.join("; "));
    }
    // Now each greets everyone through the survivors.
    for p in peers.iter_mut() {
        let line = format!("hello {}", p.key);
        p.proc.send_line(&line)?;
    }
    await_pairs(&mut peers, true, ctx.within(Duration::from_secs(30)))?;
    let closed: usize = peers
        .iter()
        .map(|p| {
            p.proc
                .events()
                .iter()
                .filter(|e| is_event(e, "closed"))
                .count()
        })
        .sum();
    ctx.say(&format!(
        "every pair kept one connection at the first try; {closed} duplicate ends were closed"
    ));
    stop_all(peers.iter_mut().map(|p| &mut p.proc))?;
    let mut net = net;
    net.proc.request_stop();
    Ok(())
}

/// `swarm-reconnect`: a Rust and a JS peer connected for longer than a keepalive interval,
/// then the JS process is killed and restarted with the same key. Its new connection must be
/// taken at once even though the key rule alone would keep ours (the Rust key is the larger):
/// JS counts keepalives as traffic, so the old connection counts as used and the newcomer is
/// the peer reconnecting. Without that the dead connection would block it until it timed out.
pub fn restart_js(ctx: &mut Ctx) -> Result<(), String> {
    const RS: usize = 1;
    const JS: usize = 2;
    let net = start_js_testnet(ctx, "js-testnet", 10, None)?;
    let boot = net.bootstrap.join(",");
    let mut rs = start_peer(ctx, false, RS, "chat", None, &boot, false)?;
    rs.proc
        .wait_event("flushed", ctx.within(Duration::from_secs(60)))?;
    let mut js = start_peer(ctx, true, JS, "chat", None, &boot, false)?;
    if rs.key <= js.key {
        return Err("the seeds must give the Rust peer the larger key".into());
    }
    let js_key = js.key.clone();
    rs.proc.wait_for(
        "connection from the JS peer",
        ctx.within(Duration::from_secs(60)),
        |v| is_event(v, "connection") && v["remote_public_key"] == js_key.as_str(),
    )?;
    // Let the connection age past hyperdht's 5 s keepalive, idle.
    std::thread::sleep(Duration::from_secs(7));
    js.proc.kill();
    let _ = js.proc.wait_exit(ctx.within(Duration::from_secs(10)));
    ctx.say("JS peer killed after 7 s of idle connection; restarting it with the same key");
    let mut js = start_peer(ctx, true, JS, "chat", None, &boot, false)?;
    js.proc
        .wait_event("flushed", ctx.within(Duration::from_secs(60)))?;
    let fresh = rs.proc.wait_for(
        "the restarted JS peer's connection",
        ctx.within(Duration::from_secs(4)),
        |v| is_event(v, "connection") && v["remote_public_key"] == js_key.as_str(),
    )?;
    let id = fresh["id"].clone();
    js.proc.send_line(&format!("hello {js_key}"))?;
    rs.proc.wait_for(
        "the greeting through the new connection",
        ctx.within(Duration::from_secs(20)),
        |v| is_event(v, "hello") && v["id"] == id,
    )?;
    ctx.say("the restarted peer was taken at once and greets through the new connection");
    stop_all([&mut rs.proc, &mut js.proc])?;
    let mut net = net;
    net.proc.request_stop();
    Ok(())
}
