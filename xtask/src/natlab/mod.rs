//! `cargo xtask natlab`: UDP hole punching measured in the project's NAT lab
//! (`tests/natlab/natlab.sh`), JS and Rust peers in every combination.
//!
//! A pairing `consistent-random` puts the client (peer A) behind a consistent NAT and the
//! server (peer B) behind a random one. Every run gets a fresh lab and a fresh DHT, and runs
//! as `unshare --mount --pid --fork --kill-child --mount-proc -- xtask __natlab-inner SPEC`:
//! the private mount namespace gets its own tmpfs on /run/netns, so the lab's namespace
//! names are invisible to (and cannot collide with) anything else on the host, and when the
//! run ends, however it ends, the kernel drops the mounts, the processes and with them the
//! lab's network namespaces. The inner process also runs `natlab.sh down` itself.
//!
//! A pairing with `+relay` (`consistent-random+relay`) also runs a blind relay in the lab's
//! internet (198.18.0.10) and the client names it as `relayThrough`: the connection opens
//! through the relay when it wins, and the client reports whether and when the stream moved
//! to a direct path afterwards (the path column of the report).

mod lab;
mod report;
mod run;

use std::fmt;
use std::io::Read;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::interop::proc;
use crate::paths;
use report::RunResult;
use run::RunSpec;

/// Hidden subcommand: one run, inside the namespaces.
pub const INNER_COMMAND: &str = "__natlab-inner";

/// The pairings of issue #8, client NAT first.
const DEFAULT_PAIRINGS: &[&str] = &[
    "consistent-consistent",
    "consistent-random",
    "random-consistent",
    "public-random",
    "firewalled-random",
    "random-random",
    "random-random+relay",
    "consistent-random+relay",
];
/// hyperdht refuses to punch two randomising NATs; without a relay that pairing fails.
const UNPUNCHABLE: &str = "random-random";
/// The same with a relay: connects, and only through the relay.
const RELAY_ONLY: &str = "random-random+relay";
const ALL_MIXES: &[&str] = &["rs-rs", "rs-js", "js-rs", "js-js"];
const DEFAULT_RUNS: u32 = 3;
/// hyperdht gives up random probing after about 35 s; the slowest JS birthday punch
/// measured in this lab took 25 s.
const DEFAULT_TIMEOUT_S: u64 = 60;
/// In CI a punch that needs longer than this counts as a failure.
const CI_TIMEOUT_S: u64 = 45;
/// The reduced matrix takes about 2 minutes when everything works; runs that would start
/// after this are not run (and fail CI), so a broken build cannot hold CI for long.
const CI_BUDGET: Duration = Duration::from_secs(8 * 60);
/// On top of the client timeout: lab up/down, DHT start, listener, stopping everything.
const RUN_SLACK: Duration = Duration::from_secs(90);

const USAGE: &str = "\
usage: cargo xtask natlab [PAIRING...] [--runs N] [--impl MIX,...] [--dht js|rs]
                          [--relay js|rs] [--extra-hops N] [--timeout SEC] [--report]
       cargo xtask natlab --ci
       cargo xtask natlab --report-from FILE...

  PAIRING    CLIENTNAT-SERVERNAT[+relay], modes public firewalled consistent random;
             +relay: a blind relay in the lab's internet, named by the client
             (default: consistent-consistent consistent-random random-consistent
              public-random firewalled-random random-random random-random+relay
              consistent-random+relay)
  --impl     client-server implementations: rs-rs,rs-js,js-rs,js-js (default: all)
  --dht      implementation of the three bootstrap nodes (default: js)
  --relay    implementation of the blind relay of +relay pairings (default: rs)
  --report   print the summary table after the runs
  --ci       one run per pairing and mix; random-random must fail, the rest connect
             (random-random+relay through the relay)
";

/// Why natlab could not do its job (as opposed to a run that failed to connect, which is
/// a result).
#[derive(Debug)]
pub enum NatlabError {
    Usage(String),
    /// The machine lacks something (root, a tool) and it could not be installed.
    Host(String),
    /// `natlab.sh` failed.
    Lab(String),
    /// A peer did not start or misbehaved.
    Peer(String),
    Io(String),
    /// `--ci`: runs whose outcome was not the expected one.
    Unexpected(Vec<String>),
}

impl fmt::Display for NatlabError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NatlabError::Usage(m) => write!(f, "{m}\n\n{USAGE}"),
            NatlabError::Host(m) => write!(f, "host: {m}"),
            NatlabError::Lab(m) => write!(f, "lab: {m}"),
            NatlabError::Peer(m) => write!(f, "peer: {m}"),
            NatlabError::Io(m) => write!(f, "{m}"),
            NatlabError::Unexpected(runs) => {
                write!(
                    f,
                    "{} unexpected outcome(s): {}",
                    runs.len(),
                    runs.join("; ")
                )
            }
        }
    }
}

impl std::error::Error for NatlabError {}

/// What sits in front of a peer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    Public,
    Firewalled,
    Consistent,
    Random,
}

impl Mode {
    pub fn name(self) -> &'static str {
        match self {
            Mode::Public => "public",
            Mode::Firewalled => "firewalled",
            Mode::Consistent => "consistent",
            Mode::Random => "random",
        }
    }

    fn parse(s: &str) -> Result<Mode, NatlabError> {
        [
            Mode::Public,
            Mode::Firewalled,
            Mode::Consistent,
            Mode::Random,
        ]
        .into_iter()
        .find(|m| m.name() == s)
        .ok_or_else(|| NatlabError::Usage(format!("unknown NAT mode `{s}`")))
    }
}

/// Which implementation runs a peer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Impl {
    Js,
    Rs,
}

impl Impl {
    pub fn name(self) -> &'static str {
        match self {
            Impl::Js => "js",
            Impl::Rs => "rs",
        }
    }

    fn parse(s: &str) -> Result<Impl, NatlabError> {
        match s {
            "js" => Ok(Impl::Js),
            "rs" => Ok(Impl::Rs),
            _ => Err(NatlabError::Usage(format!(
                "unknown implementation `{s}` (js or rs)"
            ))),
        }
    }
}

/// A pairing: the client's NAT, the server's, and whether a blind relay is offered.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Pairing {
    a: Mode,
    b: Mode,
    relay: bool,
}

impl Pairing {
    fn parse(s: &str) -> Result<Pairing, NatlabError> {
        let (modes, relay) = match s.strip_suffix("+relay") {
            Some(m) => (m, true),
            None => (s, false),
        };
        let (a, b) = parse_pair(modes, Mode::parse)?;
        Ok(Pairing { a, b, relay })
    }
}

fn parse_pair<T>(
    s: &str,
    parse: fn(&str) -> Result<T, NatlabError>,
) -> Result<(T, T), NatlabError> {
    let (a, b) = s
        .split_once('-')
        .ok_or_else(|| NatlabError::Usage(format!("`{s}` is not of the form CLIENT-SERVER")))?;
    Ok((parse(a)?, parse(b)?))
}

/// The parsed command line.
struct Options {
    pairings: Vec<Pairing>,
    mixes: Vec<(Impl, Impl)>,
    runs: u32,
    dht: Impl,
    /// Implementation of the relay in `+relay` pairings.
    relay: Impl,
    extra_hops: u32,
    timeout_s: u64,
    report: bool,
    ci: bool,
    report_from: Vec<PathBuf>,
    /// No run starts after this much time.
    budget: Option<Duration>,
}

fn number<T: std::str::FromStr>(flag: &str, v: Option<&String>) -> Result<T, NatlabError> {
    v.and_then(|v| v.parse().ok())
        .ok_or_else(|| NatlabError::Usage(format!("{flag} needs a number")))
}

fn parse_options(args: &[String]) -> Result<Options, NatlabError> {
    let mut o = Options {
        pairings: Vec::new(),
        mixes: Vec::new(),
        runs: DEFAULT_RUNS,
        dht: Impl::Js,
        relay: Impl::Rs,
        extra_hops: 0,
        timeout_s: DEFAULT_TIMEOUT_S,
        report: false,
        ci: false,
        report_from: Vec::new(),
        budget: None,
    };
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        match arg.as_str() {
            "--runs" => o.runs = number("--runs", it.next())?,
            "--extra-hops" => o.extra_hops = number("--extra-hops", it.next())?,
            "--timeout" => o.timeout_s = number("--timeout", it.next())?,
            "--impl" => {
                let list = it
                    .next()
                    .ok_or_else(|| NatlabError::Usage("--impl needs a list".into()))?;
                for mix in list.split(',') {
                    o.mixes.push(parse_pair(mix, Impl::parse)?);
                }
            }
            "--dht" => {
                o.dht = Impl::parse(
                    it.next()
                        .ok_or_else(|| NatlabError::Usage("--dht needs js or rs".into()))?,
                )?
            }
            "--relay" => {
                o.relay = Impl::parse(
                    it.next()
                        .ok_or_else(|| NatlabError::Usage("--relay needs js or rs".into()))?,
                )?
            }
            "--report" => o.report = true,
            "--ci" => o.ci = true,
            "--report-from" => {
                o.report_from.extend(it.by_ref().map(PathBuf::from));
            }
            "-h" | "--help" => return Err(NatlabError::Usage("help".into())),
            a if a.starts_with('-') => {
                return Err(NatlabError::Usage(format!("unknown option `{a}`")))
            }
            a => o.pairings.push(Pairing::parse(a)?),
        }
    }
    if o.pairings.is_empty() {
        for p in DEFAULT_PAIRINGS {
            o.pairings.push(Pairing::parse(p)?);
        }
    }
    if o.mixes.is_empty() {
        for m in ALL_MIXES {
            o.mixes.push(parse_pair(m, Impl::parse)?);
        }
    }
    if o.runs == 0 {
        return Err(NatlabError::Usage("--runs must be at least 1".into()));
    }
    Ok(o)
}

/// Entry point of `cargo xtask natlab`.
pub fn run(args: &[String]) -> Result<(), String> {
    let o = parse_options(args).map_err(|e| e.to_string())?;
    if !o.report_from.is_empty() {
        let mut all = Vec::new();
        for file in &o.report_from {
            all.extend(report::read_json(file).map_err(|e| e.to_string())?);
        }
        print!("{}", report::table(&report::summarize(&all)));
        return Ok(());
    }
    if o.ci {
        return ci();
    }
    let results = matrix(&o).map_err(|e| e.to_string())?;
    if o.report {
        println!();
        print!("{}", report::table(&report::summarize(&results)));
    }
    Ok(())
}

/// The reduced matrix for CI: every default pairing once per implementation mix, with a JS
/// DHT. A pairing of two random NATs cannot be punched (hyperdht refuses), so without a
/// relay the check is that it fails cleanly; all others must connect, `random-random+relay`
/// through the relay (its path must not claim to be direct).
///
/// Call it from `xtask/src/ci.rs` like the other checks.
pub fn ci() -> Result<(), String> {
    let mut o = parse_options(&[
        "--runs".into(),
        "1".into(),
        "--timeout".into(),
        CI_TIMEOUT_S.to_string(),
    ])
    .map_err(|e| e.to_string())?;
    o.budget = Some(CI_BUDGET);
    let started = Instant::now();
    let results = matrix(&o).map_err(|e| e.to_string())?;
    println!();
    print!("{}", report::table(&report::summarize(&results)));
    let unexpected: Vec<String> = results
        .iter()
        .filter_map(|r| ci_verdict(r).map(|why| format!("{} {}: {why}", r.pairing, r.mix)))
        .collect();
    println!(
        "natlab ci: {} runs, {} as expected, {:.0} s",
        results.len(),
        results.len() - unexpected.len(),
        started.elapsed().as_secs_f64()
    );
    if unexpected.is_empty() {
        Ok(())
    } else {
        Err(NatlabError::Unexpected(unexpected).to_string())
    }
}

/// What is wrong with a CI run, if anything.
fn ci_verdict(r: &RunResult) -> Option<String> {
    let expect_connect = r.pairing != UNPUNCHABLE;
    match (r.connected, expect_connect) {
        (true, false) => Some("connected, expected to fail".into()),
        (false, true) => Some(r.error.clone().unwrap_or_else(|| "not connected".into())),
        (true, true) if r.pairing == RELAY_ONLY && r.path.as_deref() == Some("direct") => {
            Some("a direct path between two random NATs: the relay detection is broken".into())
        }
        _ => None,
    }
}

/// `target/natlab-logs`.
fn log_root() -> PathBuf {
    paths::target_dir().join("natlab-logs")
}

/// Runs every pairing x mix x run, printing one line per run, and writes the results JSON.
fn matrix(o: &Options) -> Result<Vec<RunResult>, NatlabError> {
    lab::ensure_host(o.extra_hops)?;
    crate::netns::base_flags().map_err(NatlabError::Host)?;
    crate::interop::ensure_js_deps().map_err(NatlabError::Host)?;
    let needs_cli = o.dht == Impl::Rs
        || (o.relay == Impl::Rs && o.pairings.iter().any(|p| p.relay))
        || o.mixes
            .iter()
            .any(|(c, s)| *c == Impl::Rs || *s == Impl::Rs);
    if needs_cli {
        crate::interop::build_cli().map_err(NatlabError::Host)?;
    }
    let exe = std::env::current_exe().map_err(|e| NatlabError::Io(format!("current_exe: {e}")))?;
    let root = log_root();
    std::fs::create_dir_all(&root)
        .map_err(|e| NatlabError::Io(format!("{}: {e}", root.display())))?;

    let started = Instant::now();
    let mut results = Vec::new();
    for pairing in &o.pairings {
        for &(client, server) in &o.mixes {
            for run in 1..=o.runs {
                let mut spec = RunSpec {
                    nat_a: pairing.a,
                    nat_b: pairing.b,
                    relay: pairing.relay.then_some(o.relay),
                    client,
                    server,
                    run,
                    dht: o.dht,
                    extra_hops: o.extra_hops,
                    timeout_s: o.timeout_s,
                    log_dir: PathBuf::new(),
                };
                spec.log_dir = root
                    .join(spec.pairing())
                    .join(format!("{}-{run}", spec.mix()));
                let r = match o.budget {
                    Some(b) if started.elapsed() > b => spec.failed(
                        format!("not run: time budget of {b:?} spent"),
                        Duration::ZERO,
                    ),
                    _ => run_outer(&exe, &spec),
                };
                let path = match (&r.path, r.upgraded_ms) {
                    (Some(p), Some(ms)) => format!("{p} after {ms:.0} ms"),
                    (Some(p), None) => p.clone(),
                    (None, _) => String::new(),
                };
                println!(
                    "{:<24} {:<6} #{:<2} {:<4} {:>9}  {:<9} {}",
                    r.pairing,
                    r.mix,
                    r.run,
                    if r.connected { "ok" } else { "FAIL" },
                    r.connect_ms
                        .map(|m| format!("{m:.0} ms"))
                        .unwrap_or_default(),
                    path,
                    r.error.as_deref().unwrap_or("")
                );
                results.push(r);
                // Written after every run so an interrupted matrix still leaves its figures.
                report::write_json(&root.join("results.json"), &results)?;
            }
        }
    }
    eprintln!("natlab: results in {}", root.join("results.json").display());
    Ok(results)
}

/// One run in fresh mount + PID namespaces with a hard deadline; never fails, a broken run
/// is a result with a `harness:` error.
fn run_outer(exe: &Path, spec: &RunSpec) -> RunResult {
    let started = Instant::now();
    match run_outer_inner(exe, spec) {
        Ok(r) => r,
        Err(e) => spec.failed(format!("harness: {e}"), started.elapsed()),
    }
}

fn run_outer_inner(exe: &Path, spec: &RunSpec) -> Result<RunResult, NatlabError> {
    let dir = &spec.log_dir;
    if dir.exists() {
        std::fs::remove_dir_all(dir)
            .map_err(|e| NatlabError::Io(format!("{}: {e}", dir.display())))?;
    }
    std::fs::create_dir_all(dir).map_err(|e| NatlabError::Io(format!("{}: {e}", dir.display())))?;
    let spec_json = serde_json::to_string(spec).map_err(|e| NatlabError::Io(e.to_string()))?;
    let mut child = Command::new("unshare")
        .args([
            "--mount",
            "--propagation",
            "private",
            "--pid",
            "--fork",
            "--kill-child",
            "--mount-proc",
            "--",
        ])
        .arg(exe)
        .args([INNER_COMMAND, &spec_json])
        // The inner run watches this pipe: it closes when we die (Ctrl-C), and then the run
        // ends at once instead of finishing unobserved.
        .stdin(Stdio::piped())
        // Own process group: Ctrl-C reaches only us, the pipe does the rest, in order.
        .process_group(0)
        .spawn()
        .map_err(|e| NatlabError::Host(format!("spawn unshare: {e}")))?;
    let stdin = child.stdin.take();
    let pgid = child.id() as i32;
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait());
    });
    let limit = Duration::from_secs(spec.timeout_s) + RUN_SLACK;
    let status = match rx.recv_timeout(limit) {
        Ok(Ok(status)) => status,
        Ok(Err(e)) => return Err(NatlabError::Io(format!("wait: {e}"))),
        Err(_) => {
            // unshare's death kills the namespace's init (--kill-child), and with it the lab.
            proc::signal(-pgid, proc::SIGKILL);
            return Err(NatlabError::Lab(format!("hard timeout after {limit:?}")));
        }
    };
    drop(stdin);
    let file = dir.join("result.json");
    match std::fs::read_to_string(&file) {
        Ok(text) => serde_json::from_str(&text)
            .map_err(|e| NatlabError::Io(format!("{}: {e}", file.display()))),
        Err(_) => Err(NatlabError::Lab(format!(
            "inner run ended ({status}) without {}",
            file.display()
        ))),
    }
}

/// Entry point inside the namespaces: `xtask __natlab-inner SPEC-JSON`.
pub fn run_inner(args: &[String]) -> Result<(), String> {
    let [spec] = args else {
        return Err(format!("usage: {INNER_COMMAND} SPEC-JSON"));
    };
    let spec: RunSpec = serde_json::from_str(spec).map_err(|e| format!("spec: {e}"))?;
    // Only as the init of a fresh PID namespace (which run_outer pairs with a private mount
    // namespace) may we cover /run/netns.
    if std::process::id() != 1 {
        return Err(format!(
            "{INNER_COMMAND} only runs inside the namespaces `cargo xtask natlab` creates"
        ));
    }
    private_netns_dir().map_err(|e| e.to_string())?;
    std::thread::spawn(|| {
        let mut sink = [0u8; 64];
        while matches!(std::io::stdin().read(&mut sink), Ok(n) if n > 0) {}
        // The driver is gone. Exiting as init kills every process of the run; the private
        // mounts go with the last of them, and the lab's namespaces with the mounts.
        eprintln!("natlab: driver gone, abandoning the run");
        std::process::exit(130);
    });
    let result = run::execute(&spec);
    let file = spec.log_dir.join("result.json");
    let text = serde_json::to_string_pretty(&result).map_err(|e| e.to_string())?;
    std::fs::write(&file, text).map_err(|e| format!("{}: {e}", file.display()))
}

/// A tmpfs on /run/netns, visible only in this mount namespace.
fn private_netns_dir() -> Result<(), NatlabError> {
    let dir = Path::new("/run/netns");
    std::fs::create_dir_all(dir).map_err(|e| NatlabError::Io(format!("{}: {e}", dir.display())))?;
    let status = Command::new("mount")
        .args([
            "-t",
            "tmpfs",
            "-o",
            "mode=0755,size=1m",
            "hsr-natlab",
            "/run/netns",
        ])
        .status()
        .map_err(|e| NatlabError::Host(format!("mount: {e}")))?;
    if status.success() {
        Ok(())
    } else {
        Err(NatlabError::Host(format!(
            "mounting a private /run/netns failed ({status})"
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pairings_parse_with_and_without_relay() {
        let p = Pairing::parse("consistent-random+relay").expect("pairing");
        assert_eq!((p.a, p.b, p.relay), (Mode::Consistent, Mode::Random, true));
        let p = Pairing::parse("random-random").expect("pairing");
        assert!(!p.relay);
        assert!(Pairing::parse("random-random+relais").is_err());
        assert!(Pairing::parse("random+relay").is_err());
        for p in DEFAULT_PAIRINGS {
            Pairing::parse(p).expect("default pairing");
        }
    }

    #[test]
    fn ci_expects_the_relay_to_carry_random_random() {
        let record = |pairing: &str, connected: bool, path: &str| {
            let spec = RunSpec {
                nat_a: Mode::Random,
                nat_b: Mode::Random,
                relay: None,
                client: Impl::Rs,
                server: Impl::Rs,
                run: 1,
                dht: Impl::Js,
                extra_hops: 0,
                timeout_s: 1,
                log_dir: PathBuf::new(),
            };
            let mut r = spec.failed("x".into(), Duration::ZERO);
            r.pairing = pairing.into();
            r.connected = connected;
            r.path = Some(path.into());
            r
        };
        assert!(ci_verdict(&record(UNPUNCHABLE, false, "direct")).is_none());
        assert!(ci_verdict(&record(UNPUNCHABLE, true, "direct")).is_some());
        assert!(ci_verdict(&record(RELAY_ONLY, true, "relayed")).is_none());
        assert!(ci_verdict(&record(RELAY_ONLY, true, "direct")).is_some());
        assert!(ci_verdict(&record(RELAY_ONLY, false, "relayed")).is_some());
        assert!(ci_verdict(&record("consistent-random+relay", true, "upgraded")).is_none());
    }
}
