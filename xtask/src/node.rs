//! `cargo xtask node` and `cargo xtask bench node`: the `hyperswarm-rs` npm package in
//! `node/`. Installing and building happen outside the network namespace (they may need the
//! registry); the tests and the benchmark run inside a fresh one with only loopback up.

use std::path::PathBuf;
use std::process::Command;

use crate::paths::run;
use crate::{netns, paths};

fn node_dir() -> PathBuf {
    paths::root().join("node")
}

/// `npm ci` from the committed lockfile (the pinned hyperswarm and hyperdht the interop
/// tests run against), then the addon built with cargo and copied next to package.json.
fn prepare(release: bool) -> Result<(), String> {
    for tool in ["node", "npm"] {
        if Command::new(tool).arg("--version").output().is_err() {
            return Err(format!(
                "`{tool}` is not installed; the npm package needs Node.js >= 18 with npm"
            ));
        }
    }
    let dir = node_dir();
    run(
        Command::new("npm")
            .args(["ci", "--no-audit", "--no-fund"])
            .current_dir(&dir),
        "npm ci (node/)",
    )?;
    let mut build = Command::new("node");
    build
        .arg("scripts/build.js")
        .current_dir(&dir)
        .env("CARGO", paths::cargo())
        .env("CARGO_TARGET_DIR", paths::target_dir());
    if release {
        build.arg("--release");
    }
    run(&mut build, "building the addon (node/scripts/build.js)")
}

/// Runs `script` with `sh -c` in `node/` inside a fresh network namespace.
fn in_netns(script: &str) -> Result<(), String> {
    let status = Command::new("unshare")
        .args(netns::base_flags()?)
        .args(["--", "sh", "-c"])
        .arg(format!("ip link set lo up && {script}"))
        .current_dir(node_dir())
        .status()
        .map_err(|e| format!("unshare: {e}"))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("`{script}` failed ({status})"))
    }
}

/// Installs and builds what the npm package needs, then runs its tests (`node --test`)
/// inside a fresh network namespace: the package alone on a Rust testnet, and interop with
/// hyperswarm 4.17.2 on JS and Rust testnets, in one process and across processes.
pub fn test() -> Result<(), String> {
    prepare(false)?;
    in_netns("exec node --test --test-concurrency=1 test/*.test.js")
}

/// `cargo xtask bench node`: join → first connection and one connection's throughput,
/// through the binding (release build) and with pure JS hyperswarm, on a JS testnet.
pub fn bench() -> Result<(), String> {
    prepare(true)?;
    for imp in ["js", "rs"] {
        in_netns(&format!("exec node bench/bench.js {imp}"))?;
    }
    Ok(())
}
