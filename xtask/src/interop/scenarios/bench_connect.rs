//! `cargo xtask bench connect`: JS and Rust clients and servers in every pairing on one JS
//! testnet: 50 serial connects (connect -> first echoed byte: the handshake, the stream and
//! one round trip) and the throughput of one connection pushing BENCH_MIB through an echo.
//! Separate processes per peer; prints a table and writes `results.json`.

use std::time::Duration;

use serde_json::{json, Value};

use super::{start_js_testnet, strings, Ctx};
use crate::interop::proc::stop_all;

const CONNECTS: usize = 50;
const DEFAULT_MIB: u64 = 512;
const JS_SEED: &str = "0909090909090909090909090909090909090909090909090909090909090909";
const RS_SEED: &str = "0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a";

fn quantile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    sorted[((sorted.len() - 1) as f64 * q).round() as usize]
}

pub fn connect(ctx: &mut Ctx) -> Result<(), String> {
    let mib: u64 = std::env::var("BENCH_MIB")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(DEFAULT_MIB);
    let mut net = start_js_testnet(ctx, "js-testnet", 10, None)?;
    let boot = net.bootstrap.join(",");
    let mut js_server = ctx.js(
        "js-server",
        "js-connect.js",
        &strings(&["server", "--bootstrap", &boot, "--seed", JS_SEED]),
    )?;
    let js_key = js_server.wait_event("listening", ctx.within(Duration::from_secs(45)))?;
    let mut rs_server = ctx.rs(
        "rs-server",
        &strings(&["listen", "--json", "--bootstrap", &boot, "--seed", RS_SEED]),
    )?;
    let rs_key = rs_server.wait_event("listening", ctx.within(Duration::from_secs(45)))?;
    let key = |v: &Value| v["public_key"].as_str().unwrap_or_default().to_string();
    let (js_key, rs_key) = (key(&js_key), key(&rs_key));

    let mut rows = Vec::new();
    for (client, server, server_key) in [
        ("js", "js", &js_key),
        ("rs", "rs", &rs_key),
        ("rs", "js", &js_key),
        ("js", "rs", &rs_key),
    ] {
        let run = |extra: &[&str]| -> Result<Vec<Value>, String> {
            let mut p = if client == "js" {
                let mut a = strings(&["client", "--bootstrap", &boot, "--key", server_key]);
                a.extend(strings(&["--timeout", "600"]));
                a.extend(strings(extra));
                ctx.js(
                    &ctx.step_name(&format!("{client}-to-{server}")),
                    "js-connect.js",
                    &a,
                )?
            } else {
                let mut a = strings(&["connect", "--json", "--bootstrap", &boot, server_key]);
                a.extend(strings(extra));
                ctx.rs(&ctx.step_name(&format!("{client}-to-{server}")), &a)?
            };
            p.finish(ctx.within(Duration::from_secs(600)))
        };
        let events = run(&["--count", &CONNECTS.to_string(), "--serial", "--bytes", "1"])?;
        let mut ms: Vec<f64> = events
            .iter()
            .filter(|e| e["event"] == "echoed" && e["equal"] == true)
            .filter_map(|e| e["first_byte_ms"].as_f64())
            .collect();
        if ms.len() != CONNECTS {
            return Err(format!(
                "{client} -> {server}: {} of {CONNECTS} connects",
                ms.len()
            ));
        }
        ms.sort_by(f64::total_cmp);
        let events = run(&["--bytes", &(mib * 1024 * 1024).to_string()])?;
        let echoed = events
            .iter()
            .find(|e| e["event"] == "echoed" && e["equal"] == true)
            .ok_or(format!("{client} -> {server}: throughput run failed"))?;
        // Both directions move through the one connection; report MiB/s each way.
        let each_way = echoed["mib_per_s"].as_f64().unwrap_or(f64::NAN) / 2.0;
        let row = json!({
            "pair": format!("{client} -> {server}"),
            "connect_ms_median": quantile(&ms, 0.5),
            "connect_ms_p95": quantile(&ms, 0.95),
            "mib_per_s_each_way": each_way,
        });
        ctx.say(&format!(
            "{client} -> {server}: connect+1 RTT median {:.1} ms, p95 {:.1} ms; {each_way:.1} MiB/s each way",
            quantile(&ms, 0.5),
            quantile(&ms, 0.95)
        ));
        rows.push(row);
    }
    let f = |i: usize, k: &str| rows[i][k].as_f64().unwrap_or(f64::NAN);
    let latency = f(1, "connect_ms_median") / f(0, "connect_ms_median");
    let throughput = f(1, "mib_per_s_each_way") / f(0, "mib_per_s_each_way");
    ctx.say(&format!(
        "Rust/JS: connect latency {latency:.2}x (target <= 0.5x), throughput {throughput:.2}x (target >= 4x)"
    ));
    let results = json!({"mib": mib, "connects": CONNECTS, "runs": rows,
        "latency_ratio_rs_over_js": latency, "throughput_ratio_rs_over_js": throughput});
    std::fs::write(ctx.log_dir().join("results.json"), results.to_string())
        .map_err(|e| format!("write results: {e}"))?;
    stop_all([&mut js_server, &mut rs_server, &mut net.proc])
}
