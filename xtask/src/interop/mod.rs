//! `cargo xtask interop`: Rust <-> JS DHT interop scenarios.
//!
//! The outer process (normal network) installs the JS peers (`npm ci`),
//! builds the release CLI once, then re-executes itself per scenario as
//! `unshare --net --pid --fork --kill-child -- xtask __interop-inner NAME`.
//! The fresh network namespace has only a loopback interface, so no peer can
//! ever reach the public DHT, and scenarios cannot collide on ports. The fresh
//! PID namespace guarantees that every process a scenario started dies with it
//! (the kernel kills the namespace when its init, our inner process, exits).

mod impair;
pub(crate) mod proc;
mod scenarios;

use std::collections::BTreeMap;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use crate::paths;

/// Hidden subcommand used for the re-exec inside the namespaces.
pub const INNER_COMMAND: &str = "__interop-inner";

/// Extra time the outer process grants on top of a scenario's own timeout
/// before killing it (the inner process enforces the real deadline itself).
const OUTER_SLACK: Duration = Duration::from_secs(30);

/// Lines of each child log shown when a scenario fails.
const LOG_TAIL_LINES: usize = 40;
/// Characters of each shown log line.
const LOG_LINE_MAX: usize = 300;

/// Entry point of `cargo xtask interop [SCENARIO...] [--list]`.
pub fn run(args: &[String]) -> Result<(), String> {
    let (_, failed) = run_counted(args)?;
    if failed == 0 {
        Ok(())
    } else {
        Err(format!("{failed} scenario(s) failed"))
    }
}

/// Runs the selected scenarios and returns how many passed and failed.
pub fn run_counted(args: &[String]) -> Result<(usize, usize), String> {
    let mut names = Vec::new();
    for arg in args {
        match arg.as_str() {
            "--list" => {
                for s in scenarios::ALL {
                    println!("{:<26} {}", s.name, s.description);
                }
                return Ok((0, 0));
            }
            a if a.starts_with('-') => return Err(format!("unknown option `{a}`")),
            a => names.push(a.to_string()),
        }
    }
    let selected: Vec<&scenarios::Scenario> = if names.is_empty() {
        scenarios::ALL.iter().collect()
    } else {
        names
            .iter()
            .map(|n| {
                scenarios::find(n).ok_or_else(|| format!("unknown scenario `{n}` (see --list)"))
            })
            .collect::<Result<_, _>>()?
    };

    check_tools()?;
    crate::netns::base_flags()?;
    ensure_js_deps()?;
    // Build outside the namespace (cargo may need the network) and only once.
    let cli_error = if selected.iter().any(|s| s.needs_cli) {
        build_cli().err()
    } else {
        None
    };

    let exe = std::env::current_exe().map_err(|e| format!("current_exe: {e}"))?;
    let mut results = Vec::new();
    for s in &selected {
        let started = Instant::now();
        let outcome = match (&cli_error, s.needs_cli) {
            (Some(err), true) => Err(format!("not run: {err}")),
            _ => run_outer(&exe, s),
        };
        let took = started.elapsed();
        match &outcome {
            Ok(()) => println!("PASS {:<26} {:>7.1}s", s.name, took.as_secs_f64()),
            Err(err) => {
                print_log_tails(&log_dir(s.name));
                println!("FAIL {:<26} {:>7.1}s  {err}", s.name, took.as_secs_f64());
            }
        }
        results.push((s.name, outcome.is_ok()));
    }

    let failed: Vec<&str> = results.iter().filter(|r| !r.1).map(|r| r.0).collect();
    println!(
        "interop: {} passed, {} failed{}",
        results.len() - failed.len(),
        failed.len(),
        if failed.is_empty() {
            String::new()
        } else {
            format!(" ({})", failed.join(", "))
        }
    );
    Ok((results.len() - failed.len(), failed.len()))
}

/// `cargo xtask bench [NAME...]`: runs benchmarks (default: all) the way scenarios run, and
/// prints where their results are.
pub fn bench(args: &[String]) -> Result<(), String> {
    let selected: Vec<&scenarios::Scenario> = if args.is_empty() {
        scenarios::BENCHES.iter().collect()
    } else {
        args.iter()
            .map(|a| {
                let name = if a.starts_with("bench-") {
                    a.clone()
                } else {
                    format!("bench-{a}")
                };
                scenarios::BENCHES
                    .iter()
                    .find(|s| s.name == name)
                    .ok_or_else(|| format!("unknown benchmark `{a}`"))
            })
            .collect::<Result<_, _>>()?
    };
    check_tools()?;
    crate::netns::base_flags()?;
    ensure_js_deps()?;
    build_cli()?;
    let exe = std::env::current_exe().map_err(|e| format!("current_exe: {e}"))?;
    for s in selected {
        run_outer(&exe, s)?;
        println!(
            "{}: results in {}",
            s.name,
            log_dir(s.name).join("results.json").display()
        );
    }
    Ok(())
}

/// Where a scenario's child logs go: `target/interop-logs/<scenario>/`.
fn log_dir(scenario: &str) -> PathBuf {
    paths::target_dir().join("interop-logs").join(scenario)
}

/// Fail early with a clear message if the host lacks what the scenarios need.
fn check_tools() -> Result<(), String> {
    let out = Command::new("node")
        .arg("--version")
        .output()
        .map_err(|e| format!("node (>= 18) is required: {e}"))?;
    let version = String::from_utf8_lossy(&out.stdout);
    let major: u32 = version
        .trim()
        .trim_start_matches('v')
        .split('.')
        .next()
        .and_then(|m| m.parse().ok())
        .unwrap_or(0);
    if major < 18 {
        return Err(format!(
            "node >= 18 is required, found `{}`",
            version.trim()
        ));
    }
    for tool in ["unshare", "ip"] {
        if Command::new(tool)
            .arg("-V")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_err()
        {
            return Err(format!("`{tool}` is required (util-linux / iproute2)"));
        }
    }
    Ok(())
}

/// `npm ci` in tests/interop unless node_modules is already there.
pub fn ensure_js_deps() -> Result<(), String> {
    let dir = paths::interop_js_dir();
    if dir.join("node_modules").is_dir() {
        return Ok(());
    }
    eprintln!("interop: installing JS peers (npm ci in {})", dir.display());
    let status = Command::new("npm")
        .args(["ci", "--no-audit", "--no-fund"])
        .current_dir(&dir)
        .status()
        .map_err(|e| format!("npm: {e}"))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("npm ci failed ({status})"))
    }
}

/// `cargo build --release -p hyperswarm-cli`.
pub(crate) fn build_cli() -> Result<(), String> {
    eprintln!("interop: building the hyperswarm CLI (release)");
    let status = Command::new(paths::cargo())
        .args(["build", "--release", "-p", "hyperswarm-cli"])
        .current_dir(paths::root())
        .status()
        .map_err(|e| format!("cargo: {e}"))?;
    if !status.success() {
        return Err(format!("building hyperswarm-cli failed ({status})"));
    }
    let bin = paths::cli_binary();
    if !bin.is_file() {
        return Err(format!("{} missing after build", bin.display()));
    }
    Ok(())
}

/// Run one scenario in fresh network + PID namespaces, with a hard timeout.
fn run_outer(exe: &Path, s: &scenarios::Scenario) -> Result<(), String> {
    let dir = log_dir(s.name);
    if dir.exists() {
        std::fs::remove_dir_all(&dir).map_err(|e| format!("clean {}: {e}", dir.display()))?;
    }
    std::fs::create_dir_all(&dir).map_err(|e| format!("create {}: {e}", dir.display()))?;

    let mut child = Command::new("unshare")
        .args(crate::netns::base_flags()?)
        .args(["--pid", "--fork", "--kill-child", "--"])
        .arg(exe)
        .args([INNER_COMMAND, s.name])
        .stdin(Stdio::null())
        .process_group(0)
        .spawn()
        .map_err(|e| format!("spawn unshare: {e}"))?;
    let pgid = child.id() as i32;

    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait());
    });
    match rx.recv_timeout(s.timeout + OUTER_SLACK) {
        Ok(Ok(status)) if status.success() => Ok(()),
        Ok(Ok(status)) => Err(format!("scenario failed ({status})")),
        Ok(Err(e)) => Err(format!("wait: {e}")),
        Err(_) => {
            // Killing unshare's group kills the namespace init, and with it the namespace.
            proc::signal(-pgid, proc::SIGKILL);
            Err(format!("hard timeout after {:?}", s.timeout + OUTER_SLACK))
        }
    }
}

/// Print the last lines of every log file of a failed scenario.
fn print_log_tails(dir: &Path) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    let mut files: Vec<PathBuf> = entries.filter_map(|e| e.ok().map(|e| e.path())).collect();
    files.sort();
    for file in files {
        let text = std::fs::read_to_string(&file).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        let start = lines.len().saturating_sub(LOG_TAIL_LINES);
        println!(
            "---- {} (last {} of {} lines)",
            file.display(),
            lines.len() - start,
            lines.len()
        );
        for line in &lines[start..] {
            // JSON event lines can be kilobytes long; the head is what matters.
            match line.char_indices().nth(LOG_LINE_MAX) {
                Some((cut, _)) => println!("  {}…", &line[..cut]),
                None => println!("  {line}"),
            }
        }
    }
}

/// Entry point inside the namespaces: `xtask __interop-inner SCENARIO`.
pub fn run_inner(args: &[String]) -> Result<(), String> {
    let [name] = args else {
        return Err(format!("usage: {INNER_COMMAND} SCENARIO"));
    };
    let s = scenarios::find(name).ok_or_else(|| format!("unknown scenario `{name}`"))?;
    enter_isolated_loopback()?;

    let mut ctx = scenarios::Ctx::new(s, log_dir(s.name));
    let result = (s.run)(&mut ctx);
    if let Err(err) = &result {
        eprintln!("  [{}] FAILED: {err}", s.name);
    }
    result
}

/// Bring up `lo` and refuse to run anywhere but an isolated namespace.
fn enter_isolated_loopback() -> Result<(), String> {
    // /proc/net/dev lists the interfaces of the reader's network namespace
    // (unlike /sys/class/net, which follows the namespace sysfs was mounted in).
    let dev =
        std::fs::read_to_string("/proc/net/dev").map_err(|e| format!("read /proc/net/dev: {e}"))?;
    let ifaces: Vec<String> = dev
        .lines()
        .skip(2)
        .filter_map(|l| l.split(':').next().map(|n| n.trim().to_string()))
        .collect();
    if ifaces.iter().any(|i| i != "lo") {
        return Err(format!(
            "refusing to run: not in an isolated network namespace (interfaces: {})",
            ifaces.join(", ")
        ));
    }
    let status = Command::new("ip")
        .args(["link", "set", "lo", "up"])
        .status()
        .map_err(|e| format!("ip: {e}"))?;
    if !status.success() {
        return Err(format!("`ip link set lo up` failed ({status})"));
    }
    Ok(())
}

/// Targets as the CLI and the JS scripts take them: lowercase hex.
fn random_targets(n: usize) -> Result<Vec<String>, String> {
    use std::io::Read;
    let mut bytes = vec![0u8; 32 * n];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut bytes))
        .map_err(|e| format!("/dev/urandom: {e}"))?;
    Ok(bytes
        .chunks(32)
        .map(|c| c.iter().map(|b| format!("{b:02x}")).collect())
        .collect())
}

/// One node in a `closest` event.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct NodeRef {
    pub host: String,
    pub port: u16,
    pub id: Option<String>,
}

impl NodeRef {
    pub fn addr(&self) -> String {
        format!("{}:{}", self.host, self.port)
    }

    /// Parse `{"host","port","id"}`.
    pub fn parse(v: &serde_json::Value) -> Result<NodeRef, String> {
        let host = v
            .get("host")
            .and_then(|h| h.as_str())
            .ok_or_else(|| format!("node without host: {v}"))?;
        let port = v
            .get("port")
            .and_then(|p| p.as_u64())
            .and_then(|p| u16::try_from(p).ok())
            .ok_or_else(|| format!("node without valid port: {v}"))?;
        let id = v
            .get("id")
            .and_then(|i| i.as_str())
            .map(|s| s.to_ascii_lowercase());
        Ok(NodeRef {
            host: host.to_string(),
            port,
            id,
        })
    }
}

/// Closest-node results of one find run, by target.
pub type Closest = BTreeMap<String, Vec<NodeRef>>;
