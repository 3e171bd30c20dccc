//! What a swarm refuses, across implementations: leaving a topic (`swarm-leave`), firewalls
//! and bans (`swarm-firewall-ban`). Each check ends on events (a discovery round flushed,
//! a refresh done, a peer's own account of its failed attempts), never on a quiet period:
//! a flush waits until every peer found has been tried, so once it is reported any
//! connection that policy failed to stop would already have been reported too.

use std::time::{Duration, Instant};

use serde_json::Value;

use super::swarm::{await_pairs, live, spawn_peer, Peer};
use super::{start_js_testnet, strings, Ctx};
use crate::interop::proc::{is_event, stop_all, Proc};

/// Deadline of each awaited step.
const STEP: Duration = Duration::from_secs(30);

fn kind(js: bool) -> &'static str {
    if js {
        "js"
    } else {
        "rs"
    }
}

/// Where a group of peers meets: its topic and the testnet's bootstrap.
#[derive(Clone, Copy)]
struct Place<'a> {
    topic: &'a str,
    boot: &'a str,
}

/// Starts `chat` peer number `i` and waits for its first discovery round (announce,
/// lookup, and a dial of everyone found).
fn chat(
    ctx: &Ctx,
    js: bool,
    i: usize,
    suffix: &str,
    extra: &[String],
    at: Place,
) -> Result<Peer, String> {
    let label = format!("{}-chat-{i}{suffix}", kind(js));
    let mut p = spawn_peer(ctx, js, i, label, "chat", at.topic, extra, at.boot)?;
    p.proc.wait_event("flushed", ctx.within(STEP))?;
    Ok(p)
}

/// Waits until `proc` has printed (at any time, even already) an event matching `pred`.
fn await_seen(
    proc: &mut Proc,
    what: &str,
    deadline: Instant,
    pred: impl Fn(&Value) -> bool,
) -> Result<Value, String> {
    loop {
        proc.drain()?;
        if let Some(v) = proc.events().iter().find(|v| pred(v)) {
            return Ok(v.clone());
        }
        proc.wait_for(what, deadline, |_| true)?;
    }
}

fn is_with(v: &Value, event: &str, key: &str) -> bool {
    is_event(v, event) && v["remote_public_key"] == key
}

/// Waits for `a`'s connection with `b`.
fn await_connection(ctx: &Ctx, a: &mut Peer, b: &Peer) -> Result<(), String> {
    let what = format!("{}: a connection with {}", a.label, b.label);
    await_seen(&mut a.proc, &what, ctx.within(STEP), |v| {
        is_with(v, "connection", &b.key)
    })
    .map(drop)
}

/// How many connections with `key` `p` has reported so far.
fn connections(p: &mut Peer, key: &str) -> Result<usize, String> {
    p.proc.drain()?;
    Ok(p.proc
        .events()
        .iter()
        .filter(|v| is_with(v, "connection", key))
        .count())
}

/// Fails if `a` and `b` ever connected.
fn never_connected(a: &mut Peer, b: &mut Peer, why: &str) -> Result<(), String> {
    let (ab, ba) = (connections(a, &b.key)?, connections(b, &a.key)?);
    if ab + ba > 0 {
        return Err(format!(
            "{} and {} connected ({ab} and {ba} connection events) although {why}",
            a.label, b.label
        ));
    }
    Ok(())
}

/// Runs `/info KEY` on `p` and returns its `peer_info` answer.
fn info(ctx: &Ctx, p: &mut Peer, other: &Peer) -> Result<Value, String> {
    p.proc.send_line(&format!("/info {}", other.key))?;
    let what = format!("{}: what it knows of {}", p.label, other.label);
    p.proc.wait_for(&what, ctx.within(STEP), |v| {
        is_with(v, "peer_info", &other.key)
    })
}

/// Runs `/refresh` on `p`: one more announce and lookup, and a dial of everyone found.
fn refresh(ctx: &Ctx, p: &mut Peer) -> Result<(), String> {
    p.proc.send_line("/refresh")?;
    await_refreshed(ctx, p)
}

/// Waits for the end of the `/refresh` sent to `p`.
fn await_refreshed(ctx: &Ctx, p: &mut Peer) -> Result<(), String> {
    let r = p.proc.wait_event("refreshed", ctx.within(STEP))?;
    if r["ok"] != true {
        return Err(format!("{}: refresh failed: {r}", p.label));
    }
    Ok(())
}

/// `p`'s account of its attempts on `other`: it knows it, has failed at least once, and
/// never connected.
fn tried_and_failed(ctx: &Ctx, p: &mut Peer, other: &Peer) -> Result<u64, String> {
    let i = info(ctx, p, other)?;
    if connections(p, &other.key)? > 0 {
        return Err(format!(
            "{} connected to {}, which should have refused it",
            p.label, other.label
        ));
    }
    let attempts = i["attempts"].as_u64().unwrap_or(0);
    if i["known"] != true || attempts == 0 {
        return Err(format!(
            "{} never tried {} (expected a refused attempt): {i}",
            p.label, other.label
        ));
    }
    Ok(attempts)
}

/// `swarm-leave`: a Rust and a JS peer leave the topic they share with a JS and a Rust
/// peer. Newcomers of both kinds then join: their lookups (first round and a refresh) must
/// not find the leavers (the leave unannounced them), so they connect to the two that
/// stayed and never to a leaver. The leavers' existing connections stay open and carry
/// messages, as JS Hyperswarm's `leave` keeps them.
pub fn leave(ctx: &mut Ctx) -> Result<(), String> {
    let net = start_js_testnet(ctx, "js-testnet", 10, None)?;
    let boot = net.bootstrap.join(",");
    let at = Place {
        topic: "swarm-leave topic",
        boot: &boot,
    };
    let mut peers = Vec::new();
    // Leavers first (a Rust and a JS one), then the peers that stay (a JS and a Rust one).
    for (i, js) in [(1, false), (2, true), (3, true), (4, false)] {
        peers.push(chat(ctx, js, i, "", &[], at)?);
    }
    await_pairs(&mut peers, false, ctx.within(Duration::from_secs(40)))?;
    ctx.say("2 Rust + 2 JS peers connected pairwise; rs-chat-1 and js-chat-2 leave");
    let (leavers, stayers) = peers.split_at_mut(2);
    for l in leavers.iter_mut() {
        l.proc.send_line("/leave")?;
    }
    for l in leavers.iter_mut() {
        l.proc.wait_event("left", ctx.within(STEP))?;
    }
    let mut newcomers = Vec::new();
    for (i, js) in [(5, true), (6, false)] {
        let mut c = chat(ctx, js, i, "", &[], at)?;
        for s in stayers.iter_mut() {
            await_connection(ctx, &mut c, s)?;
            await_connection(ctx, s, &c)?;
        }
        refresh(ctx, &mut c)?;
        for l in leavers.iter() {
            let i = info(ctx, &mut c, l)?;
            if i["known"] != false {
                return Err(format!(
                    "{}'s lookups found {}, which had left the topic: {i}",
                    c.label, l.label
                ));
            }
        }
        ctx.say(&format!(
            "{} connected to both peers that stayed; two lookups never found a leaver",
            c.label
        ));
        newcomers.push(c);
    }
    for l in leavers.iter_mut() {
        for c in newcomers.iter_mut() {
            never_connected(l, c, "the first had left the topic")?;
        }
    }
    // Leaving closed nothing: each leaver still reaches the three it was connected to.
    for li in 0..2 {
        let (label, key) = (peers[li].label.clone(), peers[li].key.clone());
        let line = format!("still here after leaving, {label}");
        peers[li].proc.drain()?;
        let open = live(peers[li].proc.events());
        if let Some(o) = peers
            .iter()
            .find(|o| o.key != key && !open.contains_key(&o.key))
        {
            return Err(format!(
                "{label} lost its connection with {} on leaving",
                o.label
            ));
        }
        peers[li].proc.send_line(&line)?;
        for o in peers.iter_mut().filter(|o| o.key != key) {
            let what = format!("{}: the message {line:?}", o.label);
            await_seen(&mut o.proc, &what, ctx.within(STEP), |v| {
                is_with(v, "message", &key) && v["text"] == line.as_str()
            })?;
        }
    }
    ctx.say("the leavers' connections stayed open and carry messages");
    stop_all(
        peers
            .iter_mut()
            .chain(newcomers.iter_mut())
            .map(|p| &mut p.proc),
    )?;
    let mut net = net;
    net.proc.request_stop();
    Ok(())
}

/// One firewall round: three peers of one kind (`A` allowed, `D1` denied, `D3` not on the
/// allow list) and, joining after two of them, `F` of the other kind with `--deny D1
/// --allow A,D1` (a denial wins over an allowance). F's lookup finds A and D1: it
/// connects to A and refuses D1 before dialling. D3 joins after F and is refused at F's
/// handshake. D1's own refresh then finds F and is refused too (it is banned now).
fn firewall_round(ctx: &Ctx, at: Place, denier_js: bool, base: usize) -> Result<Vec<Peer>, String> {
    let other = !denier_js;
    let mut a = chat(ctx, other, base, "", &[], at)?;
    let mut d1 = chat(ctx, other, base + 1, "", &[], at)?;
    let rules = strings(&[
        "--deny",
        &d1.key,
        "--allow",
        &format!("{},{}", a.key, d1.key),
    ]);
    let mut f = chat(ctx, denier_js, base + 2, "", &rules, at)?;
    await_connection(ctx, &mut f, &a)?;
    await_connection(ctx, &mut a, &f)?;
    let what = format!("{}: refusing {}", f.label, d1.label);
    await_seen(&mut f.proc, &what, ctx.within(STEP), |v| {
        is_with(v, "firewalled", &d1.key)
    })?;
    // A refused dial takes seconds to fail (the refusing server just does not answer, in
    // JS too), so D1's refresh and D3's first round wait for theirs together.
    d1.proc.send_line("/refresh")?;
    let mut d3 = chat(ctx, other, base + 3, "", &[], at)?;
    let what = format!("{}: refusing {}", f.label, d3.label);
    await_seen(&mut f.proc, &what, ctx.within(STEP), |v| {
        is_with(v, "firewalled", &d3.key)
    })?;
    // D3's round connected it to the others of its kind, so it did dial.
    await_connection(ctx, &mut d3, &a)?;
    let d3_tries = tried_and_failed(ctx, &mut d3, &f)?;
    await_refreshed(ctx, &mut d1)?;
    let d1_tries = tried_and_failed(ctx, &mut d1, &f)?;
    for d in [&mut d1, &mut d3] {
        never_connected(&mut f, d, "the firewall refuses the second")?;
    }
    f.proc.drain()?;
    let refused: Vec<&str> = f
        .proc
        .events()
        .iter()
        .filter(|v| is_event(v, "firewalled"))
        .filter_map(|v| v["remote_public_key"].as_str())
        .collect();
    if refused.len() != 2 || refused.contains(&a.key.as_str()) {
        return Err(format!(
            "{}: the firewall should have refused D1 and D3 once each, refused {refused:?}",
            f.label
        ));
    }
    ctx.say(&format!(
        "{} ({} firewall) connected to {} only; refused {} before dialling and at the handshake ({d1_tries} failed tries), and {} at the handshake ({d3_tries} failed tries)",
        f.label,
        kind(denier_js),
        a.label,
        d1.label,
        d3.label
    ));
    Ok(vec![a, d1, f, d3])
}

/// One ban round: `B` and `P` (the other kind) connect; B bans P. The connection stays
/// (a ban alone closes nothing, as in JS) until P stops. P restarts with the same key: its
/// lookup finds B and its dial is refused; B's refresh finds P and does not dial it.
fn ban_round(ctx: &Ctx, at: Place, banner_js: bool, base: usize) -> Result<Vec<Peer>, String> {
    let mut b = chat(ctx, banner_js, base, "", &[], at)?;
    let mut p = chat(ctx, !banner_js, base + 1, "", &[], at)?;
    await_connection(ctx, &mut b, &p)?;
    await_connection(ctx, &mut p, &b)?;
    b.proc.send_line(&format!("/ban {}", p.key))?;
    let banned = b.proc.wait_for(
        &format!("{}: banning {}", b.label, p.label),
        ctx.within(STEP),
        |v| is_with(v, "banned", &p.key),
    )?;
    if banned["banned"] != true {
        return Err(format!("{}: the ban did not take: {banned}", b.label));
    }
    let line = format!("still connected after the ban, {}", p.label);
    p.proc.send_line(&line)?;
    let what = format!("{}: the message {line:?}", b.label);
    await_seen(&mut b.proc, &what, ctx.within(STEP), |v| {
        is_with(v, "message", &p.key) && v["text"] == line.as_str()
    })?;
    stop_all([&mut p.proc])?;
    let what = format!("{}: the end of the connection with {}", b.label, p.label);
    await_seen(&mut b.proc, &what, ctx.within(STEP), |v| {
        is_with(v, "closed", &p.key)
    })?;
    let mut again = chat(ctx, !banner_js, base + 1, "-again", &[], at)?;
    let tries = tried_and_failed(ctx, &mut again, &b)?;
    refresh(ctx, &mut b)?;
    let i = info(ctx, &mut b, &again)?;
    if i["banned"] != true {
        return Err(format!(
            "{}: {} is no longer banned: {i}",
            b.label, again.label
        ));
    }
    // The key is P's, restarted: only the connection from before the ban may show.
    if connections(&mut b, &p.key)? != 1 || connections(&mut again, &b.key)? != 0 {
        return Err(format!(
            "{} and {} connected again although the first banned the second",
            b.label, again.label
        ));
    }
    ctx.say(&format!(
        "{} ({}) banned {}: the connection stayed until it stopped; restarted, it was refused ({tries} failed tries) and not dialled back",
        b.label,
        kind(banner_js),
        p.label
    ));
    Ok(vec![b, p, again])
}

/// `swarm-firewall-ban`: firewalls (`--deny`/`--allow`) and bans (`/ban`) of both
/// implementations refusing peers of the other.
pub fn firewall_ban(ctx: &mut Ctx) -> Result<(), String> {
    let net = start_js_testnet(ctx, "js-testnet", 10, None)?;
    let boot = net.bootstrap.join(",");
    // A topic per round, so no round's peers (or records they left) meet another's. The
    // rounds run at once: most of each is waiting for refused dials to time out.
    type Round = fn(&Ctx, Place, bool, usize) -> Result<Vec<Peer>, String>;
    let rounds: [(&str, Round, bool); 4] = [
        ("firewall, Rust denies", firewall_round, false),
        ("firewall, JS denies", firewall_round, true),
        ("ban, Rust bans", ban_round, false),
        ("ban, JS bans", ban_round, true),
    ];
    let ctx = &*ctx;
    let results: Vec<Result<Vec<Peer>, String>> = std::thread::scope(|s| {
        let handles: Vec<_> = rounds
            .into_iter()
            .enumerate()
            .map(|(n, (topic, round, js))| {
                let boot = &boot;
                s.spawn(move || round(ctx, Place { topic, boot }, js, 10 * (n + 1)))
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().unwrap_or_else(|_| Err("a round panicked".into())))
            .collect()
    });
    let mut peers = Vec::new();
    let mut errors = Vec::new();
    for r in results {
        match r {
            Ok(p) => peers.extend(p),
            Err(e) => errors.push(e),
        }
    }
    if !errors.is_empty() {
        return Err(errors.join("; "));
    }
    stop_all(peers.iter_mut().map(|p| &mut p.proc))?;
    let mut net = net;
    net.proc.request_stop();
    Ok(())
}
