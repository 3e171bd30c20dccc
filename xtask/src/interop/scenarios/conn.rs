//! Encrypted connections between JS and Rust, both directions, on a mixed network (a JS
//! testnet of 10 plus 5 Rust nodes, so relays are of both kinds): echo integrity, clean
//! close, wrong keys, firewall refusals and many connections at once.

use std::time::Duration;

use serde_json::Value;

use super::{await_rust_persistence, start_js_testnet, start_rust_nodes, strings, Ctx};
use crate::interop::proc::{stop_all, Proc};

const RS_SERVER_SEED: &str = "0404040404040404040404040404040404040404040404040404040404040404";
const JS_SERVER_SEED: &str = "0505050505050505050505050505050505050505050505050505050505050505";
const CLIENT_SEED: &str = "0606060606060606060606060606060606060606060606060606060606060606";
/// The seed of a key pair nobody listens on.
const NOBODY_SEED: &str = "0707070707070707070707070707070707070707070707070707070707070707";
/// Bytes each way in the one-connection scenarios.
const BIG: u64 = 16 * 1024 * 1024;
/// Connections at once in `conn-many`, and the bytes each echoes.
const MANY: usize = 50;
const MANY_BYTES: u64 = 64 * 1024;

/// The network every connection scenario runs on, with its processes.
struct Net {
    boot: String,
    procs: Vec<Proc>,
}

impl Net {
    fn start(ctx: &Ctx) -> Result<Net, String> {
        let js = start_js_testnet(ctx, "js-testnet", 10, None)?;
        let boot = js.bootstrap.join(",");
        let mut rust = start_rust_nodes(ctx, &boot, 1..=5)?;
        await_rust_persistence(ctx, &mut rust, ctx.within(Duration::from_secs(60)))?;
        let mut procs = vec![js.proc];
        procs.extend(rust.into_iter().map(|n| n.proc));
        Ok(Net { boot, procs })
    }

    fn js_server(&mut self, ctx: &Ctx, extra: &[&str]) -> Result<(usize, String), String> {
        let mut args = strings(&[
            "server",
            "--bootstrap",
            &self.boot,
            "--seed",
            JS_SERVER_SEED,
        ]);
        args.extend(strings(extra));
        let mut p = ctx.js(&ctx.step_name("js-server"), "js-connect.js", &args)?;
        let key = public_key(p.wait_event("listening", ctx.within(Duration::from_secs(45)))?)?;
        self.procs.push(p);
        Ok((self.procs.len() - 1, key))
    }

    fn rs_server(&mut self, ctx: &Ctx, extra: &[&str]) -> Result<(usize, String), String> {
        let mut args = strings(&["listen", "--json", "--bootstrap", &self.boot]);
        args.extend(strings(&["--seed", RS_SERVER_SEED]));
        args.extend(strings(extra));
        let mut p = ctx.rs(&ctx.step_name("rs-server"), &args)?;
        let key = public_key(p.wait_event("listening", ctx.within(Duration::from_secs(45)))?)?;
        self.procs.push(p);
        Ok((self.procs.len() - 1, key))
    }

    fn js_client(&self, ctx: &Ctx, key: &str, extra: &[&str]) -> Result<Proc, String> {
        let mut args = strings(&["client", "--bootstrap", &self.boot, "--key", key]);
        args.extend(strings(extra));
        ctx.js(&ctx.step_name("js-client"), "js-connect.js", &args)
    }

    fn rs_client(&self, ctx: &Ctx, key: &str, extra: &[&str]) -> Result<Proc, String> {
        let mut args = strings(&["connect", "--json", "--bootstrap", &self.boot, key]);
        args.extend(strings(extra));
        ctx.rs(&ctx.step_name("rs-client"), &args)
    }

    fn stop(mut self) -> Result<(), String> {
        stop_all(self.procs.iter_mut())
    }
}

fn public_key(listening: Value) -> Result<String, String> {
    listening["public_key"]
        .as_str()
        .map(str::to_string)
        .ok_or_else(|| format!("listening event without public_key: {listening}"))
}

/// Every `echoed` event of a client run, checked: `count` of them, all equal, `bytes` each.
fn check_echoes(who: &str, events: &[Value], count: usize, bytes: u64) -> Result<f64, String> {
    let echoed: Vec<&Value> = events.iter().filter(|e| e["event"] == "echoed").collect();
    if let Some(e) = events.iter().find(|e| e["event"] == "error") {
        return Err(format!("{who}: {e}"));
    }
    if echoed.len() != count {
        return Err(format!(
            "{who}: {} of {count} connections echoed",
            echoed.len()
        ));
    }
    if let Some(bad) = echoed
        .iter()
        .find(|e| e["equal"] != true || e["bytes"] != bytes)
    {
        return Err(format!("{who}: echo mismatch: {bad}"));
    }
    let mut ms: Vec<f64> = echoed
        .iter()
        .filter_map(|e| e["connect_ms"].as_f64())
        .collect();
    ms.sort_by(f64::total_cmp);
    Ok(ms.get(ms.len() / 2).copied().unwrap_or(0.0))
}

/// Waits until the server has seen `count` connections close, each after `bytes`.
fn await_server_closes(
    ctx: &Ctx,
    server: &mut Proc,
    count: usize,
    bytes: u64,
    rust: bool,
) -> Result<(), String> {
    let deadline = ctx.within(Duration::from_secs(30));
    let mut closes = Vec::new();
    for _ in 0..count {
        closes.push(server.wait_for("closed", deadline, |e| e["event"] == "closed")?);
    }
    for e in &closes {
        let clean = !rust || e["reason"] == "Ended";
        if e["bytes"] != bytes || !clean {
            return Err(format!("server saw an unclean close: {e}"));
        }
    }
    Ok(())
}

/// `conn-rs-client-js-server`.
pub fn rs_client_js_server(ctx: &mut Ctx) -> Result<(), String> {
    let mut net = Net::start(ctx)?;
    let (server, key) = net.js_server(ctx, &[])?;
    let mut client = net.rs_client(ctx, &key, &["--bytes", &BIG.to_string()])?;
    let events = client.finish(ctx.within(Duration::from_secs(90)))?;
    let ms = check_echoes("Rust client", &events, 1, BIG)?;
    await_server_closes(ctx, &mut net.procs[server], 1, BIG, false)?;
    ctx.say(&format!(
        "Rust client -> JS server: 16 MiB each way, SHA-256 equal, connected in {ms:.0} ms, clean close on both ends"
    ));
    net.stop()
}

/// `conn-js-client-rs-server`.
pub fn js_client_rs_server(ctx: &mut Ctx) -> Result<(), String> {
    let mut net = Net::start(ctx)?;
    let result = (|| {
        let (server, key) = net.rs_server(ctx, &[])?;
        let mut client = net.js_client(ctx, &key, &["--bytes", &BIG.to_string()])?;
        let events = client.finish(ctx.within(Duration::from_secs(90)))?;
        let ms = check_echoes("JS client", &events, 1, BIG)?;
        await_server_closes(ctx, &mut net.procs[server], 1, BIG, true)?;
        ctx.say(&format!(
            "JS client -> Rust server: 16 MiB each way, equal, connected in {ms:.0} ms, clean close on both ends"
        ));
        Ok(())
    })();
    let stopped = net.stop();
    result.and(stopped)
}

/// Runs a client that must fail; returns its events.
fn must_fail(ctx: &Ctx, mut client: Proc, who: &str) -> Result<Vec<Value>, String> {
    let status = client.wait_exit(ctx.within(Duration::from_secs(60)))?;
    client.drain()?;
    if status.success() {
        return Err(format!("{who} succeeded but should have failed"));
    }
    let events = client.events().to_vec();
    if events.iter().any(|e| e["event"] == "echoed") {
        return Err(format!("{who} got a stream: {events:?}"));
    }
    Ok(events)
}

/// `conn-wrong-key`.
pub fn wrong_key(ctx: &mut Ctx) -> Result<(), String> {
    let net = Net::start(ctx)?;
    let nobody = public_key_of(ctx, &net, NOBODY_SEED)?;
    let events = must_fail(ctx, net.rs_client(ctx, &nobody, &[])?, "Rust client")?;
    let err = events
        .iter()
        .find(|e| e["event"] == "error")
        .ok_or("Rust client printed no error event")?;
    if !err["message"]
        .as_str()
        .unwrap_or("")
        .contains("no relay knows")
    {
        return Err(format!("Rust client: unexpected error {err}"));
    }
    ctx.say(&format!(
        "Rust client dialling an unknown key: {}",
        err["message"]
    ));
    let events = must_fail(ctx, net.js_client(ctx, &nobody, &[])?, "JS client")?;
    let err = events.iter().find(|e| e["event"] == "error");
    ctx.say(&format!("JS client dialling an unknown key: {err:?}"));

    let mut net = net;
    let (js_server, js_key) = net.js_server(ctx, &[])?;
    forged_yield_nothing(ctx, &mut net, js_server, &js_key, "JS server")?;
    let (rs_server, rs_key) = net.rs_server(ctx, &[])?;
    forged_yield_nothing(ctx, &mut net, rs_server, &rs_key, "Rust server")?;
    net.stop()
}

/// Sends forged handshakes (random bytes, a message 1 sealed to another key, a genuine
/// message 1 twice) to the server `index` listening on `key`, then connects a real client:
/// the forgeries are never answered, the replay gets nothing new, and the first connection
/// the server reports is the real client's.
fn forged_yield_nothing(
    ctx: &Ctx,
    net: &mut Net,
    index: usize,
    key: &str,
    who: &str,
) -> Result<(), String> {
    let mut forger = ctx.rs(
        &ctx.step_name("rs-forger"),
        &strings(&["forge-handshake", "--json", "--bootstrap", &net.boot, key]),
    )?;
    let events = forger.finish(ctx.within(Duration::from_secs(60)))?;
    let forged = |kind: &str| {
        events
            .iter()
            .find(|e| e["event"] == "forged" && e["kind"] == kind)
            .cloned()
            .ok_or_else(|| format!("forger printed nothing for {kind}: {events:?}"))
    };
    for kind in ["garbage", "wrong-key"] {
        let e = forged(kind)?;
        if e["answered"] != false {
            return Err(format!("{who} answered a forged handshake: {e}"));
        }
    }
    let genuine = forged("genuine")?;
    let replay = forged("replay")?;
    // A replay may be ignored or get the cached reply, never a fresh session's.
    if replay["answered"] == true && replay["same_as_first"] != true {
        return Err(format!(
            "{who} answered a replayed message 1 anew: {replay}"
        ));
    }
    let real = net
        .rs_client(ctx, key, &["--seed", CLIENT_SEED])?
        .finish(ctx.within(Duration::from_secs(60)))?;
    check_echoes("real client", &real, 1, 65536)?;
    let client_key = public_key_of(ctx, net, CLIENT_SEED)?;
    let server = &mut net.procs[index];
    let first = server.wait_for("connection", ctx.within(Duration::from_secs(10)), |e| {
        e["event"] == "connection"
    })?;
    if first["remote_public_key"] != client_key.as_str() {
        return Err(format!(
            "{who}: the first connection is not the real client's: {first}"
        ));
    }
    ctx.say(&format!(
        "{who}: garbage and wrong-key handshakes unanswered; genuine answered={}, replay answered={} (same reply={}); the first connection was the real client's",
        genuine["answered"], replay["answered"], replay["same_as_first"]
    ));
    Ok(())
}

/// `conn-firewall-reject`.
pub fn firewall_reject(ctx: &mut Ctx) -> Result<(), String> {
    let mut net = Net::start(ctx)?;
    // The client key both sides refuse.
    let client_key = public_key_of(ctx, &net, CLIENT_SEED)?;
    let (rs_server, rs_key) = net.rs_server(ctx, &["--reject", &client_key])?;
    must_fail(
        ctx,
        net.js_client(ctx, &rs_key, &["--seed", CLIENT_SEED, "--timeout", "45"])?,
        "refused JS client",
    )?;
    // A client with another key still gets through.
    let ok = net
        .js_client(ctx, &rs_key, &[])?
        .finish(ctx.within(Duration::from_secs(60)))?;
    check_echoes("accepted JS client", &ok, 1, 65536)?;
    // The first connection the server reports must be the accepted client's.
    let server = &mut net.procs[rs_server];
    let first = server.wait_for("connection", ctx.within(Duration::from_secs(10)), |e| {
        e["event"] == "connection"
    })?;
    if first["remote_public_key"] == client_key.as_str() {
        return Err(format!("Rust server let the refused client in: {first}"));
    }
    ctx.say("Rust server refused the banned JS client and accepted another");

    let (_, js_key) = net.js_server(ctx, &["--reject", &client_key])?;
    must_fail(
        ctx,
        net.rs_client(ctx, &js_key, &["--seed", CLIENT_SEED])?,
        "refused Rust client",
    )?;
    let ok = net
        .rs_client(ctx, &js_key, &[])?
        .finish(ctx.within(Duration::from_secs(60)))?;
    check_echoes("accepted Rust client", &ok, 1, 65536)?;
    ctx.say("JS server refused the banned Rust client and accepted another");
    net.stop()
}

/// The public key of `seed`, as the Rust CLI derives it (JS derives the same: the
/// `hyperdht` key-pair vectors prove it).
fn public_key_of(ctx: &Ctx, net: &Net, seed: &str) -> Result<String, String> {
    let mut p = ctx.rs(
        &ctx.step_name("rs-keypair"),
        &strings(&[
            "announce",
            "--json",
            "--once",
            "--bootstrap",
            &net.boot,
            "--seed",
            seed,
            seed,
        ]),
    )?;
    let events = p.finish(ctx.within(Duration::from_secs(45)))?;
    events
        .iter()
        .find_map(|e| e["public_key"].as_str().map(str::to_string))
        .ok_or_else(|| format!("announce printed no public_key: {events:?}"))
}

/// `conn-many`.
pub fn many(ctx: &mut Ctx) -> Result<(), String> {
    let mut net = Net::start(ctx)?;
    let count = MANY.to_string();
    let bytes = MANY_BYTES.to_string();
    let (rs_server, rs_key) = net.rs_server(ctx, &[])?;
    let events = net
        .js_client(ctx, &rs_key, &["--count", &count, "--bytes", &bytes])?
        .finish(ctx.within(Duration::from_secs(90)))?;
    let ms = check_echoes("JS client", &events, MANY, MANY_BYTES)?;
    await_server_closes(ctx, &mut net.procs[rs_server], MANY, MANY_BYTES, true)?;
    ctx.say(&format!(
        "{MANY} JS -> Rust connections carried data (median connect {ms:.0} ms)"
    ));

    let (js_server, js_key) = net.js_server(ctx, &[])?;
    let events = net
        .rs_client(ctx, &js_key, &["--count", &count, "--bytes", &bytes])?
        .finish(ctx.within(Duration::from_secs(90)))?;
    let ms = check_echoes("Rust client", &events, MANY, MANY_BYTES)?;
    await_server_closes(ctx, &mut net.procs[js_server], MANY, MANY_BYTES, false)?;
    ctx.say(&format!(
        "{MANY} Rust -> JS connections carried data (median connect {ms:.0} ms)"
    ));
    net.stop()
}

/// `conn-holepunch`: both ends firewalled and no LAN shortcut, so the only way to a stream
/// is a holepunch: probe round and punch round relayed through the server's relays, probes
/// across, the stream on the punch sockets. Both directions.
pub fn holepunch(ctx: &mut Ctx) -> Result<(), String> {
    let mut net = Net::start(ctx)?;
    let bytes = (1024 * 1024).to_string();
    let (_, rs_key) = net.rs_server(ctx, &["--firewalled"])?;
    let events = net
        .js_client(
            ctx,
            &rs_key,
            &["--firewalled", "--no-lan", "--bytes", &bytes],
        )?
        .finish(ctx.within(Duration::from_secs(60)))?;
    let ms = check_echoes("JS client", &events, 1, 1024 * 1024)?;
    ctx.say(&format!(
        "JS client holepunched to the Rust server in {ms:.0} ms"
    ));

    let (_, js_key) = net.js_server(ctx, &["--firewalled"])?;
    let events = net
        .rs_client(
            ctx,
            &js_key,
            &["--firewalled", "--no-lan", "--bytes", &bytes],
        )?
        .finish(ctx.within(Duration::from_secs(60)))?;
    let ms = check_echoes("Rust client", &events, 1, 1024 * 1024)?;
    ctx.say(&format!(
        "Rust client holepunched to the JS server in {ms:.0} ms"
    ));
    net.stop()
}

const RS_RELAY_SEED: &str = "0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b";
const JS_RELAY_SEED: &str = "0c0c0c0c0c0c0c0c0c0c0c0c0c0c0c0c0c0c0c0c0c0c0c0c0c0c0c0c0c0c0c0c";

/// The first `echoed` event of a run, which must say it went through a relay.
fn relayed_echo(who: &str, events: &[Value]) -> Result<(), String> {
    check_echoes(who, events, 1, 65536)?;
    let e = events
        .iter()
        .find(|e| e["event"] == "echoed")
        .ok_or(format!("{who}: no echo"))?;
    if e.get("relayed").is_some_and(|r| r != true) {
        return Err(format!("{who}: not relayed: {e}"));
    }
    Ok(())
}

/// `relay-blind`: connections that can only go through a blind relay (both ends firewalled,
/// no holepunch, no LAN): a Rust client to a JS server and a JS client to a Rust server
/// through a Rust relay (so JS pairs with our relay and with our peers), and Rust peers
/// through a JS relay. Each relay must report the pairing. (JS to JS through our relay is
/// left out: two JS peers may still find a direct path on loopback and then tear the relay
/// down mid-flight, which JS's own relay suffers from too.)
pub fn blind_relay(ctx: &mut Ctx) -> Result<(), String> {
    let mut net = Net::start(ctx)?;
    let rs_args = [
        "relay",
        "--json",
        "--bootstrap",
        &net.boot,
        "--seed",
        RS_RELAY_SEED,
    ];
    let mut p = ctx.rs("rs-relay", &strings(&rs_args))?;
    let rs_relay_key = public_key(p.wait_event("listening", ctx.within(Duration::from_secs(45)))?)?;
    net.procs.push(p);
    let rs_relay = net.procs.len() - 1;
    let js_args = ["relay", "--bootstrap", &net.boot, "--seed", JS_RELAY_SEED];
    let mut p = ctx.js("js-relay", "js-connect.js", &strings(&js_args))?;
    let js_relay_key = public_key(p.wait_event("listening", ctx.within(Duration::from_secs(45)))?)?;
    net.procs.push(p);
    let js_relay = net.procs.len() - 1;

    // Servers that cannot be reached but through a relay.
    let (_, js_key) = net.js_server(ctx, &["--firewalled", "--no-holepunch"])?;
    let (rs_server, rs_key) = net.rs_server(ctx, &["--firewalled", "--no-holepunch"])?;

    let no_path = [
        "--firewalled",
        "--no-lan",
        "--no-holepunch",
        "--relay-through",
    ];
    let via_rs: Vec<&str> = no_path
        .iter()
        .copied()
        .chain([rs_relay_key.as_str()])
        .collect();
    let via_js: Vec<&str> = no_path
        .iter()
        .copied()
        .chain([js_relay_key.as_str()])
        .collect();
    let minute = || ctx.within(Duration::from_secs(60));
    let pairing = |net: &mut Net, relay: usize| -> Result<(), String> {
        let deadline = ctx.within(Duration::from_secs(10));
        net.procs[relay].wait_for("pairing", deadline, |e| {
            e["event"] == "paired" || e["event"] == "pair"
        })?;
        Ok(())
    };

    let ev = net.rs_client(ctx, &js_key, &via_rs)?.finish(minute())?;
    relayed_echo("Rust client -> JS server via Rust relay", &ev)?;
    pairing(&mut net, rs_relay)?;
    ctx.say("Rust client -> JS server through the Rust relay");

    let ev = net.js_client(ctx, &rs_key, &via_rs)?.finish(minute())?;
    relayed_echo("JS client -> Rust server via Rust relay", &ev)?;
    pairing(&mut net, rs_relay)?;
    let seen =
        net.procs[rs_server].wait_for("connection", minute(), |e| e["event"] == "connection")?;
    if seen["relayed"] != true {
        return Err(format!("Rust server's connection was not relayed: {seen}"));
    }
    ctx.say("JS client -> Rust server through the Rust relay");

    let ev = net.rs_client(ctx, &rs_key, &via_js)?.finish(minute())?;
    relayed_echo("Rust client -> Rust server via JS relay", &ev)?;
    // The JS relay reports each half it pairs.
    pairing(&mut net, js_relay)?;
    pairing(&mut net, js_relay)?;
    ctx.say("Rust client -> Rust server through the JS relay");
    net.stop()
}
