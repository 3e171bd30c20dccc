//! `cargo xtask bench udx`: one UDX stream pushing N MiB through an echo, udx-native and ours
//! in every pairing, each peer a separate process under `/usr/bin/time` (wall, CPU, peak RSS).
//! Runs in its own network namespace like the scenarios; prints a table and writes
//! `results.json` next to the logs.

use std::time::Duration;

use serde_json::{json, Value};

use super::{strings, Ctx};

/// MiB per run unless `BENCH_MIB` says otherwise.
const DEFAULT_MIB: u64 = 512;

#[derive(Clone, Copy)]
enum Side {
    Js,
    Rust,
}

impl Side {
    fn label(self) -> &'static str {
        match self {
            Side::Js => "udx-native",
            Side::Rust => "ours",
        }
    }
}

/// `(wall s, user+sys s, peak RSS KiB)` from GNU time's output file.
fn read_time(path: &std::path::Path) -> Result<(f64, f64, u64), String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let last = text.lines().last().unwrap_or_default();
    let f: Vec<&str> = last.split_whitespace().collect();
    let num = |i: usize| {
        f.get(i)
            .and_then(|s| s.parse::<f64>().ok())
            .ok_or(format!("bad time output {last:?}"))
    };
    Ok((num(0)?, num(1)? + num(2)?, num(3)? as u64))
}

/// Ports and stream ids of one end: (port, id, remote port, remote id).
type Ends = (u16, u32, u16, u32);

fn peer(
    ctx: &Ctx,
    side: Side,
    role: &str,
    (port, id, remote_port, remote_id): Ends,
    mib: u64,
    tag: &str,
) -> Result<(crate::interop::proc::Proc, std::path::PathBuf), String> {
    let time_file = ctx.log_dir().join(format!("{tag}-{role}.time"));
    let mut args = strings(&["-o", &time_file.to_string_lossy(), "-f", "%e %U %S %M"]);
    let common = strings(&[
        "--port",
        &port.to_string(),
        "--id",
        &id.to_string(),
        "--remote-id",
        &remote_id.to_string(),
        "--remote-port",
        &remote_port.to_string(),
    ]);
    match side {
        Side::Js => {
            args.push("node".into());
            args.push(
                crate::paths::interop_js_dir()
                    .join("js-udx.js")
                    .to_string_lossy()
                    .into_owned(),
            );
            args.push(role.into());
        }
        Side::Rust => {
            args.push(crate::paths::cli_binary().to_string_lossy().into_owned());
            args.extend(strings(&["udx", role, "--json"]));
        }
    }
    args.extend(common);
    if role == "send" {
        args.extend(strings(&["--bytes", &(mib * 1024 * 1024).to_string()]));
    }
    let proc = ctx.spawn_program(&format!("{tag}-{role}"), "/usr/bin/time".as_ref(), &args)?;
    Ok((proc, time_file))
}

/// The UDX throughput benchmark.
pub fn udx(ctx: &mut Ctx) -> Result<(), String> {
    let mib: u64 = std::env::var("BENCH_MIB")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(DEFAULT_MIB);
    let pairs = [
        (Side::Js, Side::Js),
        (Side::Rust, Side::Rust),
        (Side::Rust, Side::Js),
        (Side::Js, Side::Rust),
    ];
    let mut rows = Vec::new();
    for (i, (sender, echo)) in pairs.into_iter().enumerate() {
        let tag = format!("{}-{}-to-{}", i + 1, sender.label(), echo.label());
        let base = 7100 + 10 * i as u16;
        let (mut e, e_time) = peer(ctx, echo, "echo", (base, 1, base + 1, 2), mib, &tag)?;
        e.wait_event("ready", ctx.within(Duration::from_secs(20)))?;
        let (mut s, s_time) = peer(ctx, sender, "send", (base + 1, 2, base, 1), mib, &tag)?;
        let events = s.finish(ctx.within(Duration::from_secs(600)))?;
        e.finish(ctx.within(Duration::from_secs(30)))?;
        let done = events
            .iter()
            .find(|v| v["event"] == "done")
            .ok_or(format!("{tag}: no result"))?;
        if done["sha256_sent"] != done["sha256_received"] {
            return Err(format!("{tag}: echo differs"));
        }
        let seconds = done["seconds"].as_f64().unwrap_or(f64::NAN);
        let (_, s_cpu, s_rss) = read_time(&s_time)?;
        let (_, e_cpu, e_rss) = read_time(&e_time)?;
        // Each byte crosses the stream twice (there and back).
        let gib_moved = 2.0 * mib as f64 / 1024.0;
        let row = json!({
            "pair": format!("{} -> {}", sender.label(), echo.label()),
            "mib_per_s": mib as f64 / seconds,
            "cpu_s_per_gib": (s_cpu + e_cpu) / gib_moved,
            "rss_kib_sender": s_rss,
            "rss_kib_echo": e_rss,
        });
        ctx.say(&format!(
            "{:<26} {:>8.1} MiB/s each way  {:>6.2} CPU s/GiB  RSS {} / {} MiB",
            row["pair"].as_str().unwrap_or_default(),
            row["mib_per_s"].as_f64().unwrap_or(0.0),
            row["cpu_s_per_gib"].as_f64().unwrap_or(0.0),
            s_rss / 1024,
            e_rss / 1024
        ));
        rows.push(row);
    }
    let rate = |i: usize| rows[i]["mib_per_s"].as_f64().unwrap_or(0.0);
    let ratio = rate(1) / rate(0);
    ctx.say(&format!(
        "ratio ours/udx-native (same pairing): {ratio:.2}x"
    ));
    let results: Value = json!({"mib": mib, "runs": rows, "ratio_ours_over_js": ratio});
    std::fs::write(ctx.log_dir().join("results.json"), results.to_string())
        .map_err(|e| format!("write results: {e}"))
}
