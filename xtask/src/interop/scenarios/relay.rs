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
