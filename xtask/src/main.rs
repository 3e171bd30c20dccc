//! Project automation for hyperswarm-rs (`cargo xtask <command>`).
//!
//! Commands:
//! - `ci`: everything CI checks, ending with `N passed, N failed` (see [`ci`]).
//! - `interop [SCENARIO...] [--list]`: Rust <-> JS DHT interop scenarios, each
//!   in a throwaway network namespace (see [`interop`]).
//! - `bench [NAME...]`: benchmarks, JS and Rust side by side, isolated the same way.
//! - `natlab [PAIRING...]`: hole punching through emulated NATs (see [`natlab`]).
//! - `node`: the npm package's tests (see [`node`]); `bench node` benchmarks it.
//! - `python`: the pip package's tests (see [`python`]); `bench python` benchmarks it.
//! - `mobile [--update]`: the Swift and Kotlin bindings' drift check and tests (see [`mobile`]).
//!
//! Kept dependency-free apart from serde/serde_json so it builds fast and
//! never pulls the crates it is supposed to test.

mod ci;
mod interop;
mod mobile;
mod natlab;
mod netns;
mod node;
mod paths;
mod python;

use std::process::ExitCode;

const USAGE: &str = "\
usage: cargo xtask <command> [args]

commands:
  ci                           fmt check, clippy, tests (in a netns), all interop scenarios
  interop [SCENARIO...]        run interop scenarios (all when none given)
  interop --list               list interop scenarios
  bench [udx|connect]          benchmarks, JS and Rust side by side (BENCH_MIB=512)
  bench node                   the npm package vs hyperswarm (JS): join latency, throughput
  bench python                 the pip package vs hyperswarm (JS): join latency, throughput
  node                         npm package: npm ci, build the addon, node --test (in a netns)
  python                       pip package: venv, maturin wheel, pytest (in a netns)
  mobile [--update]            Kotlin/Swift (uniffi): drift check of bindings/generated, tests (in a netns)
  natlab [PAIRING...] [--report] hole punching in the NAT lab (as root; --help for options)
  natlab --ci                  reduced NAT lab matrix: one run per pairing and mix
";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some((cmd, rest)) = args.split_first() else {
        eprint!("{USAGE}");
        return ExitCode::from(2);
    };
    let result = match cmd.as_str() {
        "ci" => ci::run(rest),
        "interop" => interop::run(rest),
        "bench" if rest.first().map(String::as_str) == Some("node") => node::bench(),
        "bench" if rest.first().map(String::as_str) == Some("python") => python::bench(),
        "bench" => interop::bench(rest),
        "natlab" => natlab::run(rest),
        "node" => node::test(),
        "python" => python::test(),
        "mobile" => mobile::run_cli(rest),
        // Internal: the half of `interop` that runs inside the network namespace.
        interop::INNER_COMMAND => interop::run_inner(rest),
        natlab::INNER_COMMAND => natlab::run_inner(rest),
        "help" | "-h" | "--help" => {
            print!("{USAGE}");
            Ok(())
        }
        other => {
            eprintln!("xtask: unknown command `{other}`\n\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("xtask {cmd}: {err}");
            ExitCode::FAILURE
        }
    }
}
