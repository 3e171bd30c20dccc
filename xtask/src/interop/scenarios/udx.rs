//! Raw UDX streams between udx-native (`js-udx.js`) and ours (`hyperswarm udx`): 64 MiB each
//! way through an echo, compared by SHA-256, with a clean close on both ends.

use std::time::Duration;

use serde_json::Value;

use super::{strings, Ctx};
use crate::interop::proc::Proc;

const BYTES: u64 = 64 * 1024 * 1024;
const ECHO_PORT: &str = "7001";
const SEND_PORT: &str = "7002";

fn echo_args(json_flag: bool) -> Vec<String> {
    let mut v = vec!["echo".to_string()];
    if json_flag {
        v.push("--json".into());
    }
    v.extend(strings(&[
        "--port",
        ECHO_PORT,
        "--id",
        "1",
        "--remote-id",
        "2",
        "--remote-port",
        SEND_PORT,
    ]));
    v
}

fn send_args(json_flag: bool) -> Vec<String> {
    let mut v = vec!["send".to_string()];
    if json_flag {
        v.push("--json".into());
    }
    v.extend(strings(&[
        "--port",
        SEND_PORT,
        "--id",
        "2",
        "--remote-id",
        "1",
        "--remote-port",
        ECHO_PORT,
    ]));
    v.extend(strings(&["--bytes", &BYTES.to_string()]));
    v
}

fn check(ctx: &Ctx, mut sender: Proc, mut echo: Proc) -> Result<(), String> {
    let events = sender.finish(ctx.within(Duration::from_secs(100)))?;
    let done = events
        .iter()
        .find(|e| e["event"] == "done")
        .ok_or("the sender printed no result")?;
    if done["bytes"] != BYTES || done["sha256_sent"] != done["sha256_received"] {
        return Err(format!("echo mismatch: {done}"));
    }
    let echoed = echo.finish(ctx.within(Duration::from_secs(20)))?;
    let e = echoed
        .iter()
        .find(|e| e["event"] == "done")
        .ok_or("the echo side printed no result")?;
    if e["bytes"] != BYTES {
        return Err(format!("echo side saw {e}"));
    }
    for (side, v) in [("sender", done), ("echo", e)] {
        if let Some(close) = v.get("close").and_then(Value::as_str) {
            if close != "Some(Ended)" {
                return Err(format!("{side} closed with {close}"));
            }
        }
    }
    let secs = done["seconds"].as_f64().unwrap_or(0.0);
    ctx.say(&format!(
        "64 MiB each way intact in {secs:.2} s, both ends closed cleanly"
    ));
    Ok(())
}

/// `udx-echo-js-rs`: udx-native sends, ours echoes.
pub fn echo_js_rs(ctx: &mut Ctx) -> Result<(), String> {
    let mut rust = ctx.rs("rs-udx-echo", &{
        let mut a = vec!["udx".to_string()];
        a.extend(echo_args(true));
        a
    })?;
    rust.wait_event("ready", ctx.within(Duration::from_secs(10)))?;
    let js = ctx.js("js-udx-send", "js-udx.js", &send_args(false))?;
    check(ctx, js, rust)
}

/// `udx-echo-rs-js`: ours sends, udx-native echoes.
pub fn echo_rs_js(ctx: &mut Ctx) -> Result<(), String> {
    let mut js = ctx.js("js-udx-echo", "js-udx.js", &echo_args(false))?;
    js.wait_event("ready", ctx.within(Duration::from_secs(10)))?;
    let rust = ctx.rs("rs-udx-send", &{
        let mut a = vec!["udx".to_string()];
        a.extend(send_args(true));
        a
    })?;
    check(ctx, rust, js)
}

/// `udx-loss`: 64 MiB through an echo in both pairings while a relay drops 5%, reorders 10%
/// and duplicates 1% of datagrams, with 10 ms delay each way.
pub fn loss(ctx: &mut Ctx) -> Result<(), String> {
    use crate::interop::impair::{Impairment, Relay};
    let imp = Impairment {
        drop_pct: 5,
        reorder_pct: 10,
        duplicate_pct: 1,
        delay: Duration::from_millis(10),
    };
    for (run, rust_sends) in [(0u16, true), (1u16, false)] {
        let echo_port = 7300 + 10 * run;
        let send_port = echo_port + 1;
        let relay = Relay::start(
            format!("127.0.0.1:{echo_port}")
                .parse()
                .map_err(|e| format!("{e}"))?,
            format!("127.0.0.1:{send_port}")
                .parse()
                .map_err(|e| format!("{e}"))?,
            imp,
            0x5eed + u64::from(run),
        )?;
        let ends = |port: u16, id: &str, rid: &str, rport: u16| {
            strings(&[
                "--port",
                &port.to_string(),
                "--id",
                id,
                "--remote-id",
                rid,
                "--remote-port",
                &rport.to_string(),
            ])
        };
        let echo_ends = ends(echo_port, "1", "2", relay.port_for_a());
        let mut send_ends = ends(send_port, "2", "1", relay.port_for_b());
        send_ends.extend(strings(&[
            "--bytes",
            &BYTES.to_string(),
            "--timeout",
            "280",
        ]));
        let (sender, echo) = if rust_sends {
            let mut e = ctx.js(
                "js-udx-echo-lossy",
                "js-udx.js",
                &[vec!["echo".into()], echo_ends].concat(),
            )?;
            e.wait_event("ready", ctx.within(Duration::from_secs(10)))?;
            send_ends.truncate(send_ends.len() - 2);
            let s = ctx.rs(
                "rs-udx-send-lossy",
                &[strings(&["udx", "send", "--json"]), send_ends].concat(),
            )?;
            (s, e)
        } else {
            let mut e = ctx.rs(
                "rs-udx-echo-lossy",
                &[strings(&["udx", "echo", "--json"]), echo_ends].concat(),
            )?;
            e.wait_event("ready", ctx.within(Duration::from_secs(10)))?;
            let s = ctx.js(
                "js-udx-send-lossy",
                "js-udx.js",
                &[vec!["send".into()], send_ends].concat(),
            )?;
            (s, e)
        };
        check_lossy(ctx, sender, echo, rust_sends)?;
        let c = &relay.counts;
        ctx.say(&format!(
            "relay: {} datagrams, {} dropped, {} reordered, {} duplicated",
            c.seen.load(std::sync::atomic::Ordering::Relaxed),
            c.dropped.load(std::sync::atomic::Ordering::Relaxed),
            c.reordered.load(std::sync::atomic::Ordering::Relaxed),
            c.duplicated.load(std::sync::atomic::Ordering::Relaxed)
        ));
    }
    Ok(())
}

fn check_lossy(
    ctx: &Ctx,
    mut sender: Proc,
    mut echo: Proc,
    rust_sends: bool,
) -> Result<(), String> {
    let events = sender.finish(ctx.within(Duration::from_secs(280)))?;
    let done = events
        .iter()
        .find(|e| e["event"] == "done")
        .ok_or("the sender printed no result")?;
    if done["bytes"] != BYTES || done["sha256_sent"] != done["sha256_received"] {
        return Err(format!("echo mismatch under loss: {done}"));
    }
    echo.finish(ctx.within(Duration::from_secs(30)))?;
    let secs = done["seconds"].as_f64().unwrap_or(0.0);
    let who = if rust_sends {
        "ours -> udx-native"
    } else {
        "udx-native -> ours"
    };
    ctx.say(&format!(
        "{who}: 64 MiB each way intact under loss in {secs:.1} s"
    ));
    Ok(())
}
