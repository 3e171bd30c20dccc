//! `cargo xtask ci`: everything CI checks — formatting, lints, the cargo tests (inside a
//! fresh network namespace, since they open loopback sockets) and every interop scenario.
//! Every check runs even after a failure, so one run shows everything that is wrong; the
//! last line is `ci: N passed, N failed`.

use std::process::Command;
use std::time::Instant;

use crate::{interop, netns, paths};

type Check = (&'static str, fn() -> Result<(), String>);

const CHECKS: [Check; 7] = [
    ("fmt", fmt),
    ("clippy", clippy),
    ("test (netns)", test_in_netns),
    ("node (netns)", crate::node::test),
    ("python (netns)", crate::python::test),
    ("mobile (netns)", crate::mobile::ci),
    ("natlab", crate::natlab::ci),
];

pub fn run(args: &[String]) -> Result<(), String> {
    if let Some(arg) = args.first() {
        return Err(format!("unexpected argument `{arg}`"));
    }
    let started = Instant::now();
    let mut passed = 0;
    let mut failed_count = 0;
    let mut failed = Vec::new();
    for (name, check) in CHECKS {
        eprintln!("==> ci: {name}");
        let t = Instant::now();
        let result = check();
        println!(
            "{} {name:<18} {:>7.1}s",
            if result.is_ok() { "PASS" } else { "FAIL" },
            t.elapsed().as_secs_f64()
        );
        match result {
            Ok(()) => passed += 1,
            Err(e) => {
                eprintln!("ci: {name}: {e}");
                failed_count += 1;
                failed.push(name.to_string());
            }
        }
    }
    eprintln!("==> ci: interop");
    match interop::run_counted(&[]) {
        Ok((p, f)) => {
            passed += p;
            failed_count += f;
            if f > 0 {
                failed.push(format!("{f} interop scenario(s)"));
            }
        }
        Err(e) => {
            eprintln!("ci: interop: {e}");
            failed_count += 1;
            failed.push("interop".into());
        }
    }
    eprintln!("ci took {:.0}s", started.elapsed().as_secs_f64());
    println!("ci: {passed} passed, {failed_count} failed");
    if failed.is_empty() {
        Ok(())
    } else {
        Err(format!("failed: {}", failed.join(", ")))
    }
}

/// Runs `cargo <args>` at the workspace root.
fn cargo(args: &[&str]) -> Result<(), String> {
    let status = Command::new(paths::cargo())
        .args(args)
        .current_dir(paths::root())
        .status()
        .map_err(|e| format!("cargo: {e}"))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("`cargo {}` exited with {status}", args.join(" ")))
    }
}

fn fmt() -> Result<(), String> {
    cargo(&["fmt", "--all", "--", "--check"])
}

fn clippy() -> Result<(), String> {
    cargo(&[
        "clippy",
        "--workspace",
        "--all-targets",
        "--",
        "-D",
        "warnings",
    ])
}

fn test_in_netns() -> Result<(), String> {
    // Build (and fetch) outside the namespace, where the network is available; inside,
    // cargo only runs the already-built tests.
    cargo(&["test", "--workspace", "--no-run"])?;
    let status = Command::new("unshare")
        .args(netns::base_flags()?)
        .args([
            "--",
            "sh",
            "-c",
            "ip link set lo up && exec \"$0\" test --workspace --offline",
        ])
        .arg(paths::cargo())
        .current_dir(paths::root())
        .status()
        .map_err(|e| format!("unshare: {e}"))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("tests failed ({status})"))
    }
}
