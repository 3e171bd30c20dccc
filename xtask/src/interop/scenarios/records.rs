//! HyperDHT record scenarios: announce / lookup / unannounce, mutable and
//! immutable storage, written by one implementation and read by the other.
//!
//! Every operation is one short-lived client process (`js-dht.js <op>` or the
//! `hyperswarm` CLI) that bootstraps from the scenario's network, prints its
//! result as JSON events and exits; only announcers may stay alive (without
//! unannouncing) until asked to stop. Checks are single-shot: a record that was
//! stored by a finished put/announce query must be visible to the next lookup,
//! and one that was removed must not be, so nothing here retries.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use serde_json::Value;

use super::{
    await_rust_persistence, start_js_testnet, start_rust_network, start_rust_nodes, strings, Ctx,
    JsTestnet, RustNode,
};
use crate::interop::proc::{is_event, stop_all, Proc};
use crate::interop::random_targets;

/// Deadline for one client operation (bootstrap + query + exit).
const OP_TIMEOUT: Duration = Duration::from_secs(45);
/// Size of the JS testnet, and of the Rust half of a mixed network.
const NET_SIZE: usize = 10;

// ---------------------------------------------------------------- networks

/// The storage nodes of a scenario and the bootstrap list clients use.
struct Net {
    js: Option<JsTestnet>,
    rust: Vec<RustNode>,
    boot: String,
}

impl Net {
    /// JS testnet of 10 (own bootstrapper) plus 10 persistent Rust nodes joining it.
    fn mixed(ctx: &Ctx) -> Result<Net, String> {
        let js = start_js_testnet(ctx, "js-testnet", NET_SIZE, None)?;
        let boot = js.bootstrap.join(",");
        ctx.say(&format!(
            "starting {NET_SIZE} Rust dht-nodes joining {boot}"
        ));
        let mut rust = start_rust_nodes(ctx, &boot, 1..=NET_SIZE)?;
        ctx.say(&format!("{} Rust nodes bootstrapped", rust.len()));
        await_rust_persistence(ctx, &mut rust, ctx.within(Duration::from_secs(60)))?;
        Ok(Net {
            js: Some(js),
            rust,
            boot,
        })
    }

    /// JS testnet of 10 only.
    fn js_only(ctx: &Ctx) -> Result<Net, String> {
        let js = start_js_testnet(ctx, "js-testnet", NET_SIZE, None)?;
        let boot = js.bootstrap.join(",");
        Ok(Net {
            js: Some(js),
            rust: Vec::new(),
            boot,
        })
    }

    /// Rust bootstrap node plus 9 persistent Rust nodes, nothing else.
    fn rust_only(ctx: &Ctx) -> Result<Net, String> {
        let mut rust = start_rust_network(ctx, NET_SIZE - 1)?;
        await_rust_persistence(ctx, &mut rust, ctx.within(Duration::from_secs(60)))?;
        let boot = rust[0].addr();
        Ok(Net {
            js: None,
            rust,
            boot,
        })
    }

    fn stop(mut self) -> Result<(), String> {
        if let Some(js) = self.js.as_mut() {
            stop_all([&mut js.proc])?;
        }
        stop_all(self.rust.iter_mut().rev().map(|n| &mut n.proc))
    }
}

// ---------------------------------------------------------------- clients

/// Which implementation runs a client operation.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Side {
    Js,
    Rs,
}

impl Side {
    fn tag(self) -> &'static str {
        match self {
            Side::Js => "js",
            Side::Rs => "rs",
        }
    }
}

/// Start `js-dht.js <js_op> --bootstrap B ARGS` or `hyperswarm <rs_cmd> --json --bootstrap B ARGS`.
fn spawn_op(
    ctx: &Ctx,
    side: Side,
    (js_op, rs_cmd): (&str, &str),
    boot: &str,
    args: Vec<String>,
) -> Result<Proc, String> {
    let name = ctx.step_name(&format!("{}-{js_op}", side.tag()));
    match side {
        Side::Js => {
            let mut full = strings(&[js_op, "--bootstrap", boot]);
            full.extend(args);
            ctx.js(&name, "js-dht.js", &full)
        }
        Side::Rs => {
            let mut full = strings(&[rs_cmd, "--json", "--bootstrap", boot]);
            full.extend(args);
            ctx.rs(&name, &full)
        }
    }
}

/// Run a one-shot client to a successful exit and return the single `event` it printed.
fn finish_with(ctx: &Ctx, mut proc: Proc, event: &str) -> Result<Value, String> {
    let events = proc.finish(ctx.within(OP_TIMEOUT))?;
    single_event(&proc.name, &events, event)
}

fn single_event(who: &str, events: &[Value], event: &str) -> Result<Value, String> {
    let mut matching = events.iter().filter(|e| is_event(e, event));
    let first = matching
        .next()
        .ok_or_else(|| format!("{who}: no `{event}` event (got {})", summary(events)))?;
    if matching.next().is_some() {
        return Err(format!("{who}: more than one `{event}` event"));
    }
    Ok(first.clone())
}

/// The event names a process printed, for error messages.
fn summary(events: &[Value]) -> String {
    let names: Vec<&str> = events
        .iter()
        .map(|e| e.get("event").and_then(Value::as_str).unwrap_or("?"))
        .collect();
    format!("[{}]", names.join(", "))
}

/// A 64-hex-char field, lowercased.
fn hex_field(who: &str, ev: &Value, key: &str) -> Result<String, String> {
    let s = ev
        .get(key)
        .and_then(Value::as_str)
        .ok_or_else(|| format!("{who}: `{key}` missing or not a string in {ev}"))?;
    if s.len() != 64 || !s.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(format!("{who}: `{key}` is not 64 hex chars: {s:?}"));
    }
    Ok(s.to_ascii_lowercase())
}

fn u64_field(who: &str, ev: &Value, key: &str) -> Result<u64, String> {
    ev.get(key)
        .and_then(Value::as_u64)
        .ok_or_else(|| format!("{who}: `{key}` missing or not an unsigned integer in {ev}"))
}

fn expect_kind(who: &str, ev: &Value, kind: &str) -> Result<(), String> {
    match ev.get("kind").and_then(Value::as_str) {
        Some(k) if k == kind => Ok(()),
        other => Err(format!("{who}: kind {other:?}, expected {kind:?} in {ev}")),
    }
}

/// Two hex strings of the same thing must agree.
fn expect_same(
    what: &str,
    (a_name, a): (&str, &str),
    (b_name, b): (&str, &str),
) -> Result<(), String> {
    if a == b {
        Ok(())
    } else {
        Err(format!("{what} differs: {a_name} {a}, {b_name} {b}"))
    }
}

fn short(hex: &str) -> &str {
    &hex[..hex.len().min(8)]
}

fn random_hex(n: usize) -> Result<Vec<String>, String> {
    random_targets(n)
}

/// The public key `HyperDHT.keyPair(seed)` derives in JS (no network involved).
fn js_public_key(ctx: &Ctx, seed: &str) -> Result<String, String> {
    let name = ctx.step_name("js-keypair");
    let proc = ctx.js(&name, "js-dht.js", &strings(&["keypair", "--seed", seed]))?;
    let ev = finish_with(ctx, proc, "keypair")?;
    hex_field(&name, &ev, "public_key")
}

// ---- announce / unannounce / lookup

/// A client that announced; it may still be running (until stopped).
struct Announcer {
    proc: Proc,
    public_key: String,
}

/// Announce `topic` with the key pair of `seed` and wait for `announced`.
/// With `once` the client exits right after (checked), otherwise it keeps running.
fn announce(
    ctx: &Ctx,
    side: Side,
    boot: &str,
    topic: &str,
    seed: &str,
    once: bool,
) -> Result<Announcer, String> {
    let mut args = match side {
        Side::Js => strings(&["--topic", topic, "--seed", seed]),
        Side::Rs => strings(&["--seed", seed]),
    };
    if once {
        args.push("--once".into());
    }
    if side == Side::Rs {
        args.push(topic.into());
    }
    let mut proc = spawn_op(ctx, side, ("announce", "announce"), boot, args)?;
    let ev = proc.wait_event("announced", ctx.within(OP_TIMEOUT))?;
    let who = proc.name.clone();
    expect_same(
        &format!("{who}: announced topic"),
        ("event", &hex_field(&who, &ev, "topic")?),
        ("requested", topic),
    )?;
    let public_key = hex_field(&who, &ev, "public_key")?;
    if once {
        proc.finish(ctx.within(OP_TIMEOUT))?;
    }
    ctx.say(&format!(
        "{who}: announced {} as {} (nodes: {})",
        short(topic),
        short(&public_key),
        ev.get("nodes").unwrap_or(&Value::Null)
    ));
    Ok(Announcer { proc, public_key })
}

/// Unannounce `topic` for the key pair of `seed`; returns the public key reported.
fn unannounce(
    ctx: &Ctx,
    side: Side,
    boot: &str,
    topic: &str,
    seed: &str,
) -> Result<String, String> {
    let args = match side {
        Side::Js => strings(&["--topic", topic, "--seed", seed]),
        Side::Rs => strings(&["--seed", seed, topic]),
    };
    let proc = spawn_op(ctx, side, ("unannounce", "unannounce"), boot, args)?;
    let who = proc.name.clone();
    let ev = finish_with(ctx, proc, "unannounced")?;
    expect_same(
        &format!("{who}: unannounced topic"),
        ("event", &hex_field(&who, &ev, "topic")?),
        ("requested", topic),
    )?;
    let public_key = hex_field(&who, &ev, "public_key")?;
    ctx.say(&format!(
        "{who}: unannounced {} for {}",
        short(topic),
        short(&public_key)
    ));
    Ok(public_key)
}

/// What one lookup found: public key -> relay addresses ("host:port").
struct Lookup {
    who: String,
    peers: BTreeMap<String, BTreeSet<String>>,
}

impl Lookup {
    fn keys(&self) -> Vec<&str> {
        self.peers.keys().map(|k| short(k)).collect()
    }

    /// Every key in `present` was found and none in `absent`.
    fn expect(&self, topic: &str, present: &[&str], absent: &[&str]) -> Result<(), String> {
        for k in present {
            if !self.peers.contains_key(*k) {
                return Err(format!(
                    "{}: lookup of {} does not report {k} (found {:?})",
                    self.who,
                    short(topic),
                    self.keys()
                ));
            }
        }
        for k in absent {
            if self.peers.contains_key(*k) {
                return Err(format!(
                    "{}: lookup of {} still reports {k}",
                    self.who,
                    short(topic)
                ));
            }
        }
        Ok(())
    }

    /// Exactly the keys in `keys`, nothing else.
    fn expect_exactly(&self, topic: &str, keys: &[&str]) -> Result<(), String> {
        self.expect(topic, keys, &[])?;
        if self.peers.len() != keys.len() {
            return Err(format!(
                "{}: lookup of {} reports {} peers, expected {}: {:?}",
                self.who,
                short(topic),
                self.peers.len(),
                keys.len(),
                self.keys()
            ));
        }
        Ok(())
    }
}

fn spawn_lookup(ctx: &Ctx, side: Side, boot: &str, topic: &str) -> Result<Proc, String> {
    let args = match side {
        Side::Js => strings(&["--topic", topic]),
        Side::Rs => strings(&[topic]),
    };
    spawn_op(ctx, side, ("lookup", "lookup"), boot, args)
}

/// Collect a lookup's `peer` events and check them against its `done` event.
fn collect_lookup(ctx: &Ctx, mut proc: Proc) -> Result<Lookup, String> {
    let events = proc.finish(ctx.within(OP_TIMEOUT))?;
    let who = proc.name.clone();
    let done = single_event(&who, &events, "done")?;
    let mut peers = BTreeMap::new();
    for ev in events.iter().filter(|e| is_event(e, "peer")) {
        let key = hex_field(&who, ev, "public_key")?;
        let relays = ev
            .get("relay_addresses")
            .and_then(Value::as_array)
            .ok_or_else(|| format!("{who}: peer without relay_addresses array: {ev}"))?
            .iter()
            .map(|a| {
                let host = a.get("host").and_then(Value::as_str);
                let port = a.get("port").and_then(Value::as_u64);
                match (host, port) {
                    (Some(h), Some(p)) => Ok(format!("{h}:{p}")),
                    _ => Err(format!("{who}: bad relay address {a}")),
                }
            })
            .collect::<Result<BTreeSet<_>, _>>()?;
        if peers.insert(key.clone(), relays).is_some() {
            return Err(format!("{who}: more than one `peer` event for {key}"));
        }
    }
    let listed = done
        .get("peers")
        .and_then(Value::as_array)
        .ok_or_else(|| format!("{who}: done without peers array: {done}"))?
        .iter()
        .map(|p| {
            p.as_str()
                .map(str::to_ascii_lowercase)
                .ok_or_else(|| format!("{who}: non-string in done.peers: {p}"))
        })
        .collect::<Result<BTreeSet<_>, _>>()?;
    let reported: BTreeSet<String> = peers.keys().cloned().collect();
    if listed != reported {
        return Err(format!(
            "{who}: done.peers {listed:?} differs from the peer events {reported:?}"
        ));
    }
    ctx.say(&format!(
        "{who}: {} peer(s) {:?} (nodes: {})",
        peers.len(),
        peers.keys().map(|k| short(k)).collect::<Vec<_>>(),
        done.get("nodes").unwrap_or(&Value::Null)
    ));
    Ok(Lookup { who, peers })
}

fn lookup(ctx: &Ctx, side: Side, boot: &str, topic: &str) -> Result<Lookup, String> {
    let proc = spawn_lookup(ctx, side, boot, topic)?;
    collect_lookup(ctx, proc)
}

/// A JS and a Rust lookup of `topic`, run concurrently.
fn lookup_both(ctx: &Ctx, boot: &str, topic: &str) -> Result<(Lookup, Lookup), String> {
    let js = spawn_lookup(ctx, Side::Js, boot, topic)?;
    let rs = spawn_lookup(ctx, Side::Rs, boot, topic)?;
    Ok((collect_lookup(ctx, js)?, collect_lookup(ctx, rs)?))
}

/// Both lookups report the same relay addresses for `key`.
fn expect_same_relays(a: &Lookup, b: &Lookup, key: &str) -> Result<(), String> {
    match (a.peers.get(key), b.peers.get(key)) {
        (Some(ra), Some(rb)) if ra == rb => Ok(()),
        (ra, rb) => Err(format!(
            "relay addresses of {} differ: {} {ra:?}, {} {rb:?}",
            short(key),
            a.who,
            b.who
        )),
    }
}

// ---- mutable / immutable

/// A successful mutable put: (public key, target).
fn mutable_put(
    ctx: &Ctx,
    side: Side,
    boot: &str,
    seed: &str,
    seq: u64,
    value: &str,
) -> Result<(String, String), String> {
    let proc = spawn_mutable_put(ctx, side, boot, seed, seq, value)?;
    let who = proc.name.clone();
    let ev = finish_with(ctx, proc, "put")?;
    expect_kind(&who, &ev, "mutable")?;
    let got_seq = u64_field(&who, &ev, "seq")?;
    if got_seq != seq {
        return Err(format!("{who}: put reports seq {got_seq}, requested {seq}"));
    }
    let public_key = hex_field(&who, &ev, "public_key")?;
    let target = hex_field(&who, &ev, "target")?;
    ctx.say(&format!(
        "{who}: mutable put seq {seq} {value:?} under {} (nodes: {})",
        short(&public_key),
        ev.get("nodes").unwrap_or(&Value::Null)
    ));
    Ok((public_key, target))
}

fn spawn_mutable_put(
    ctx: &Ctx,
    side: Side,
    boot: &str,
    seed: &str,
    seq: u64,
    value: &str,
) -> Result<Proc, String> {
    let seq = seq.to_string();
    let args = match side {
        Side::Js => strings(&["--seed", seed, "--value", value, "--seq", &seq]),
        Side::Rs => strings(&["--seed", seed, "--seq", &seq, value]),
    };
    spawn_op(ctx, side, ("mutable-put", "put"), boot, args)
}

/// A Rust mutable put that the storage nodes must refuse with error `code`.
fn rs_mutable_put_refused(
    ctx: &Ctx,
    boot: &str,
    seed: &str,
    seq: u64,
    value: &str,
    code: u64,
) -> Result<(), String> {
    let mut proc = spawn_mutable_put(ctx, Side::Rs, boot, seed, seq, value)?;
    let who = proc.name.clone();
    let status = proc.wait_exit(ctx.within(OP_TIMEOUT))?;
    let events = proc.events().to_vec();
    if status.success() {
        return Err(format!(
            "{who}: put seq {seq} {value:?} succeeded ({}), expected error code {code}",
            summary(&events)
        ));
    }
    let err =
        single_event(&who, &events, "error").map_err(|e| format!("{e}; exit status {status}"))?;
    let got = u64_field(&who, &err, "code")?;
    if got != code {
        return Err(format!(
            "{who}: put seq {seq} {value:?} failed with code {got}, expected {code}: {err}"
        ));
    }
    ctx.say(&format!(
        "{who}: put seq {seq} {value:?} refused with code {code} ({status})"
    ));
    Ok(())
}

/// A mutable value found by a get: (seq, value), or `None` for `"value": null`.
type Mutable = Option<(u64, String)>;

fn mutable_get(
    ctx: &Ctx,
    side: Side,
    boot: &str,
    public_key: &str,
    seq: Option<u64>,
) -> Result<Mutable, String> {
    let seq = seq.map(|s| s.to_string());
    let mut args = match side {
        Side::Js => strings(&["--key", public_key]),
        Side::Rs => strings(&["--mutable"]),
    };
    if let Some(s) = &seq {
        args.extend(strings(&["--seq", s]));
    }
    if side == Side::Rs {
        args.push(public_key.into());
    }
    let proc = spawn_op(ctx, side, ("mutable-get", "get"), boot, args)?;
    let who = proc.name.clone();
    let ev = finish_with(ctx, proc, "value")?;
    expect_kind(&who, &ev, "mutable")?;
    let found = match ev.get("value") {
        Some(Value::Null) => None,
        Some(Value::String(v)) => Some((u64_field(&who, &ev, "seq")?, v.clone())),
        _ => return Err(format!("{who}: `value` neither string nor null: {ev}")),
    };
    ctx.say(&format!(
        "{who}: mutable get {}{}: {found:?}",
        short(public_key),
        seq.map(|s| format!(" --seq {s}")).unwrap_or_default()
    ));
    Ok(found)
}

/// `get` must find exactly `(seq, value)`.
fn expect_mutable(got: Mutable, seq: u64, value: &str, who: &str) -> Result<(), String> {
    match got {
        Some((s, v)) if s == seq && v == value => Ok(()),
        other => Err(format!(
            "{who}: expected seq {seq} {value:?}, got {other:?}"
        )),
    }
}

fn immutable_put(ctx: &Ctx, side: Side, boot: &str, value: &str) -> Result<String, String> {
    let args = match side {
        Side::Js => strings(&["--value", value]),
        Side::Rs => strings(&[value]),
    };
    let proc = spawn_op(ctx, side, ("immutable-put", "put"), boot, args)?;
    let who = proc.name.clone();
    let ev = finish_with(ctx, proc, "put")?;
    expect_kind(&who, &ev, "immutable")?;
    let target = hex_field(&who, &ev, "target")?;
    ctx.say(&format!(
        "{who}: immutable put {value:?} -> {} (nodes: {})",
        short(&target),
        ev.get("nodes").unwrap_or(&Value::Null)
    ));
    Ok(target)
}

fn immutable_get(
    ctx: &Ctx,
    side: Side,
    boot: &str,
    target: &str,
) -> Result<Option<String>, String> {
    let args = match side {
        Side::Js => strings(&["--target", target]),
        Side::Rs => strings(&["--immutable", target]),
    };
    let proc = spawn_op(ctx, side, ("immutable-get", "get"), boot, args)?;
    let who = proc.name.clone();
    let ev = finish_with(ctx, proc, "value")?;
    expect_kind(&who, &ev, "immutable")?;
    let found = match ev.get("value") {
        Some(Value::Null) => None,
        Some(Value::String(v)) => Some(v.clone()),
        _ => return Err(format!("{who}: `value` neither string nor null: {ev}")),
    };
    ctx.say(&format!(
        "{who}: immutable get {}: {found:?}",
        short(target)
    ));
    Ok(found)
}

fn expect_value<T: PartialEq + std::fmt::Debug>(who: &str, got: T, want: T) -> Result<(), String> {
    if got == want {
        Ok(())
    } else {
        Err(format!("{who}: expected {want:?}, got {got:?}"))
    }
}

/// A UTF-8 test value, unique per run, never starting with `-` (it is a CLI argument).
fn value(label: &str) -> Result<String, String> {
    let r = random_hex(1)?.remove(0);
    Ok(format!("{label} äöü ✓ {}", &r[..12]))
}

// ---------------------------------------------------------------- scenarios

/// JS clients only: every record operation round-trips through the network at `boot`.
fn js_client_records(ctx: &Ctx, boot: &str) -> Result<(), String> {
    let [topic, s1, s2, s3, unknown]: [String; 5] = random_hex(5)?
        .try_into()
        .map_err(|_| "random_hex returned the wrong count")?;
    let js = Side::Js;

    // Announce two keys and exit the announcers: only the storage nodes hold the records.
    let a1 = announce(ctx, js, boot, &topic, &s1, true)?.public_key;
    let a2 = announce(ctx, js, boot, &topic, &s2, true)?.public_key;
    lookup(ctx, js, boot, &topic)?.expect_exactly(&topic, &[&a1, &a2])?;
    let un = unannounce(ctx, js, boot, &topic, &s1)?;
    expect_same("unannounced key", ("unannounce", &un), ("announce", &a1))?;
    lookup(ctx, js, boot, &topic)?.expect_exactly(&topic, &[&a2])?;

    let v1 = value("mutable 1")?;
    let v2 = value("mutable 2")?;
    let (pk, _) = mutable_put(ctx, js, boot, &s3, 1, &v1)?;
    let got = mutable_get(ctx, js, boot, &pk, None)?;
    expect_mutable(got, 1, &v1, "js mutable get after seq 1")?;
    mutable_put(ctx, js, boot, &s3, 2, &v2)?;
    let got = mutable_get(ctx, js, boot, &pk, None)?;
    expect_mutable(got, 2, &v2, "js mutable get after seq 2")?;
    let got = mutable_get(ctx, js, boot, &pk, Some(3))?;
    expect_value("js mutable get --seq 3", got, None)?;
    let got = mutable_get(ctx, js, boot, &unknown, None)?;
    expect_value("js mutable get of an unknown key", got, None)?;

    let vi = value("immutable")?;
    let target = immutable_put(ctx, js, boot, &vi)?;
    let got = immutable_get(ctx, js, boot, &target)?;
    expect_value("js immutable get", got, Some(vi))?;
    let got = immutable_get(ctx, js, boot, &unknown)?;
    expect_value("js immutable get of an unknown hash", got, None)?;
    Ok(())
}

pub(super) fn harness_js_dht(ctx: &mut Ctx) -> Result<(), String> {
    let net = Net::js_only(ctx)?;
    js_client_records(ctx, &net.boot)?;
    net.stop()
}

pub(super) fn records_on_rs_storage(ctx: &mut Ctx) -> Result<(), String> {
    let net = Net::rust_only(ctx)?;
    js_client_records(ctx, &net.boot)?;
    net.stop()
}

pub(super) fn announce_js_lookup_rs(ctx: &mut Ctx) -> Result<(), String> {
    let net = Net::mixed(ctx)?;
    let [topic, seed]: [String; 2] = random_hex(2)?
        .try_into()
        .map_err(|_| "random_hex returned the wrong count")?;
    let mut ann = announce(ctx, Side::Js, &net.boot, &topic, &seed, false)?;
    let pk = ann.public_key.clone();
    let (js, rs) = lookup_both(ctx, &net.boot, &topic)?;
    js.expect_exactly(&topic, &[&pk])?;
    rs.expect_exactly(&topic, &[&pk])?;
    expect_same_relays(&js, &rs, &pk)?;
    stop_all([&mut ann.proc])?;
    net.stop()
}

pub(super) fn announce_rs_lookup_js(ctx: &mut Ctx) -> Result<(), String> {
    let net = Net::mixed(ctx)?;
    let [topic, seed]: [String; 2] = random_hex(2)?
        .try_into()
        .map_err(|_| "random_hex returned the wrong count")?;
    let expected = js_public_key(ctx, &seed)?;
    let mut ann = announce(ctx, Side::Rs, &net.boot, &topic, &seed, false)?;
    expect_same(
        "public key of the seed",
        ("rs announce", &ann.public_key),
        ("JS keyPair", &expected),
    )?;
    let (js, rs) = lookup_both(ctx, &net.boot, &topic)?;
    js.expect_exactly(&topic, &[&expected])?;
    rs.expect_exactly(&topic, &[&expected])?;
    expect_same_relays(&js, &rs, &expected)?;
    // The announcer kept running until now and must stop cleanly on request.
    stop_all([&mut ann.proc])?;
    net.stop()
}

pub(super) fn unannounce_both_ways(ctx: &mut Ctx) -> Result<(), String> {
    let net = Net::mixed(ctx)?;
    let boot = net.boot.as_str();
    let [t1, t2, s1, s2, s3, s4]: [String; 6] = random_hex(6)?
        .try_into()
        .map_err(|_| "random_hex returned the wrong count")?;

    // JS announces two keys, unannounces one; Rust lookups must follow.
    ctx.say("JS announce/unannounce, Rust lookup");
    let gone = announce(ctx, Side::Js, boot, &t1, &s1, true)?.public_key;
    let kept = announce(ctx, Side::Js, boot, &t1, &s2, true)?.public_key;
    lookup(ctx, Side::Rs, boot, &t1)?.expect_exactly(&t1, &[&gone, &kept])?;
    let un = unannounce(ctx, Side::Js, boot, &t1, &s1)?;
    expect_same(
        "unannounced key",
        ("js unannounce", &un),
        ("js announce", &gone),
    )?;
    lookup(ctx, Side::Rs, boot, &t1)?.expect(&t1, &[&kept], &[&gone])?;

    // Rust announces two keys, unannounces one; JS lookups must follow.
    ctx.say("Rust announce/unannounce, JS lookup");
    let gone = announce(ctx, Side::Rs, boot, &t2, &s3, true)?.public_key;
    let kept = announce(ctx, Side::Rs, boot, &t2, &s4, true)?.public_key;
    lookup(ctx, Side::Js, boot, &t2)?.expect_exactly(&t2, &[&gone, &kept])?;
    let un = unannounce(ctx, Side::Rs, boot, &t2, &s3)?;
    expect_same(
        "unannounced key",
        ("rs unannounce", &un),
        ("rs announce", &gone),
    )?;
    lookup(ctx, Side::Js, boot, &t2)?.expect(&t2, &[&kept], &[&gone])?;
    net.stop()
}

pub(super) fn mutable_both_ways(ctx: &mut Ctx) -> Result<(), String> {
    let net = Net::mixed(ctx)?;
    let boot = net.boot.as_str();
    let [seed_js, seed_rs]: [String; 2] = random_hex(2)?
        .try_into()
        .map_err(|_| "random_hex returned the wrong count")?;

    // JS writes seq 1 then 2, Rust reads each.
    let v1 = value("js mutable 1")?;
    let v2 = value("js mutable 2")?;
    let (pk_js, _) = mutable_put(ctx, Side::Js, boot, &seed_js, 1, &v1)?;
    let got = mutable_get(ctx, Side::Rs, boot, &pk_js, None)?;
    expect_mutable(got, 1, &v1, "rs get of the JS put seq 1")?;
    mutable_put(ctx, Side::Js, boot, &seed_js, 2, &v2)?;
    let got = mutable_get(ctx, Side::Rs, boot, &pk_js, None)?;
    expect_mutable(got, 2, &v2, "rs get of the JS put seq 2")?;
    let got = mutable_get(ctx, Side::Rs, boot, &pk_js, Some(3))?;
    expect_value("rs get --seq 3 (only seq 2 stored)", got, None)?;

    // Rust writes, JS reads; the key and target must be what JS derives.
    let expected = js_public_key(ctx, &seed_rs)?;
    let r1 = value("rs mutable 1")?;
    let (pk_rs, target_rs) = mutable_put(ctx, Side::Rs, boot, &seed_rs, 1, &r1)?;
    expect_same(
        "public key of the seed",
        ("rs put", &pk_rs),
        ("JS keyPair", &expected),
    )?;
    let got = mutable_get(ctx, Side::Js, boot, &pk_rs, None)?;
    expect_mutable(got, 1, &r1, "js get of the Rust put seq 1")?;
    let js_target = js_mutable_target(ctx, boot, &pk_rs)?;
    expect_same(
        "mutable target (hash of the public key)",
        ("rs put", &target_rs),
        ("js get", &js_target),
    )?;

    // Storage errors reach the Rust client: seq reused with another value, then seq too low.
    rs_mutable_put_refused(ctx, boot, &seed_rs, 1, &value("rs reused seq")?, 16)?;
    let got = mutable_get(ctx, Side::Js, boot, &pk_rs, None)?;
    expect_mutable(got, 1, &r1, "js get after the refused put")?;
    let r2 = value("rs mutable 2")?;
    mutable_put(ctx, Side::Rs, boot, &seed_rs, 2, &r2)?;
    rs_mutable_put_refused(ctx, boot, &seed_rs, 1, &value("rs lower seq")?, 17)?;
    let got = mutable_get(ctx, Side::Js, boot, &pk_rs, None)?;
    expect_mutable(got, 2, &r2, "js get after seq 2 and the refused seq 1")?;
    net.stop()
}

/// The `target` js-dht.js mutable-get reports for `public_key` (its hash).
fn js_mutable_target(ctx: &Ctx, boot: &str, public_key: &str) -> Result<String, String> {
    let proc = spawn_op(
        ctx,
        Side::Js,
        ("mutable-get", "get"),
        boot,
        strings(&["--key", public_key]),
    )?;
    let who = proc.name.clone();
    let ev = finish_with(ctx, proc, "value")?;
    hex_field(&who, &ev, "target")
}

pub(super) fn immutable_both_ways(ctx: &mut Ctx) -> Result<(), String> {
    let net = Net::mixed(ctx)?;
    let boot = net.boot.as_str();
    let unknown = random_hex(1)?.remove(0);

    let vj = value("js immutable")?;
    let hj = immutable_put(ctx, Side::Js, boot, &vj)?;
    let got = immutable_get(ctx, Side::Rs, boot, &hj)?;
    expect_value("rs get of the JS immutable put", got, Some(vj.clone()))?;

    // JS only accepts a value whose hash is the target, so this also proves the hash.
    let vr = value("rs immutable")?;
    let hr = immutable_put(ctx, Side::Rs, boot, &vr)?;
    let got = immutable_get(ctx, Side::Js, boot, &hr)?;
    expect_value("js get of the Rust immutable put", got, Some(vr))?;
    let again = immutable_put(ctx, Side::Rs, boot, &vj)?;
    expect_same(
        "hash of the same value",
        ("rs put", &again),
        ("js put", &hj),
    )?;

    let got = immutable_get(ctx, Side::Rs, boot, &unknown)?;
    expect_value("rs get of an unknown hash", got, None)?;
    net.stop()
}
