//! Connections between JS peers whose only path to each other is through Rust DHT nodes:
//! the server announces itself to Rust nodes, which then relay the Noise handshake and the
//! holepunch messages between client and server.

use std::time::Duration;

use super::{await_rust_persistence, start_rust_network, strings, Ctx};
use crate::interop::proc::stop_all;

/// A fixed server seed; the client learns the public key from the server's `listening`.
const SERVER_SEED: &str = "0303030303030303030303030303030303030303030303030303030303030303";
/// Bytes each client echoes through the connection.
const ECHO_BYTES: u64 = 256 * 1024;

/// `relay-js-through-rs`: a Rust-only DHT, a JS server and three JS clients in turn.
pub fn js_through_rs(ctx: &mut Ctx) -> Result<(), String> {
    let mut rust = start_rust_network(ctx, 9)?;
    await_rust_persistence(ctx, &mut rust, ctx.within(Duration::from_secs(60)))?;
    let boot = rust[0].addr();

    let mut server = ctx.js(
        "js-server",
        "js-connect.js",
        &strings(&["server", "--bootstrap", &boot, "--seed", SERVER_SEED]),
    )?;
    let listening = server.wait_event("listening", ctx.within(Duration::from_secs(45)))?;
    let key = listening["public_key"]
        .as_str()
        .ok_or("listening event without public_key")?
        .to_string();
    ctx.say(&format!("JS server {} listening", &key[..16]));

    for i in 1..=3 {
        let mut client = ctx.js(
            &format!("js-client-{i}"),
            "js-connect.js",
            &strings(&[
                "client",
                "--bootstrap",
                &boot,
                "--key",
                &key,
                "--bytes",
                &ECHO_BYTES.to_string(),
            ]),
        )?;
        let events = client.finish(ctx.within(Duration::from_secs(60)))?;
        let echoed = events
            .iter()
            .find(|e| e["event"] == "echoed")
            .ok_or_else(|| format!("client {i}: no echoed event"))?;
        if echoed["equal"] != true || echoed["bytes"] != ECHO_BYTES {
            return Err(format!("client {i}: echo mismatch: {echoed}"));
        }
        let connected = events
            .iter()
            .any(|e| e["event"] == "connected" && e["remote_public_key"] == key.as_str());
        if !connected {
            return Err(format!(
                "client {i}: no connected event for the server's key"
            ));
        }
        ctx.say(&format!("client {i}: {ECHO_BYTES} bytes echoed intact"));
    }
    server.wait_event("connection", ctx.within(Duration::from_secs(5)))?;
    let mut procs: Vec<_> = rust.iter_mut().map(|n| &mut n.proc).collect();
    procs.push(&mut server);
    stop_all(procs)
}

/// Seeds for the handshake scenarios' servers.
const RS_SERVER_SEED: &str = "0404040404040404040404040404040404040404040404040404040404040404";
const JS_SERVER_SEED: &str = "0505050505050505050505050505050505050505050505050505050505050505";

/// `handshake-both-ways`: on a mixed network, a Rust client completes the Noise handshake
/// with a JS server, and a JS client's handshake reaches a Rust server, which decrypts it
/// and answers (the JS client then needs a UDX stream, which the Rust side lacks so far).
pub fn handshake_both_ways(ctx: &mut Ctx) -> Result<(), String> {
    let mut js_net = super::start_js_testnet(ctx, "js-testnet", 10, None)?;
    let boot = js_net.bootstrap.join(",");
    let mut rust = super::start_rust_nodes(ctx, &boot, 1..=10)?;
    await_rust_persistence(ctx, &mut rust, ctx.within(Duration::from_secs(60)))?;

    // Rust client -> JS server.
    let mut js_server = ctx.js(
        "js-server",
        "js-connect.js",
        &strings(&["server", "--bootstrap", &boot, "--seed", JS_SERVER_SEED]),
    )?;
    let listening = js_server.wait_event("listening", ctx.within(Duration::from_secs(45)))?;
    let js_key = listening["public_key"]
        .as_str()
        .ok_or("no public_key")?
        .to_string();
    let mut rs_client = ctx.rs(
        "rs-handshake",
        &strings(&["handshake", "--json", "--bootstrap", &boot, &js_key]),
    )?;
    let events = rs_client.finish(ctx.within(Duration::from_secs(45)))?;
    let hs = events
        .iter()
        .find(|e| e["event"] == "handshake")
        .ok_or("Rust client printed no handshake")?;
    if hs["remote_public_key"] != js_key.as_str() || !hs["udx_id"].is_u64() {
        return Err(format!("Rust -> JS handshake reported {hs}"));
    }
    ctx.say("Rust client completed the handshake with the JS server");

    // JS client -> Rust server.
    let mut rs_server = ctx.rs(
        "rs-listen",
        &strings(&[
            "listen",
            "--json",
            "--bootstrap",
            &boot,
            "--seed",
            RS_SERVER_SEED,
        ]),
    )?;
    let listening = rs_server.wait_event("listening", ctx.within(Duration::from_secs(45)))?;
    let rs_key = listening["public_key"]
        .as_str()
        .ok_or("no public_key")?
        .to_string();
    let relays = listening["relays"].as_array().map_or(0, Vec::len);
    if relays == 0 {
        return Err("the Rust server has no relays".into());
    }
    let mut js_client = ctx.js(
        "js-client",
        "js-connect.js",
        &strings(&[
            "client",
            "--bootstrap",
            &boot,
            "--key",
            &rs_key,
            "--timeout",
            "30",
        ]),
    )?;
    let hs = rs_server.wait_event("handshake", ctx.within(Duration::from_secs(45)))?;
    if !hs["udx_id"].is_u64() || hs["remote_public_key"].as_str().map_or(0, str::len) != 64 {
        return Err(format!("Rust server reported {hs}"));
    }
    ctx.say("JS client's handshake reached the Rust server through the relays");
    // The JS client cannot finish (no UDX stream on our side yet): stop it.
    js_client.kill();
    let mut procs: Vec<_> = rust.iter_mut().map(|n| &mut n.proc).collect();
    procs.push(&mut js_server);
    procs.push(&mut rs_server);
    procs.push(&mut js_net.proc);
    stop_all(procs)
}
