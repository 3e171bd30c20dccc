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
