//! The lab itself: host requirements (installed with apt when missing) and a guard around
//! `tests/natlab/natlab.sh` whose drop always tears the lab down.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use super::{Mode, NatlabError};
use crate::paths;

extern "C" {
    // From the C library std already links; the one call we need is not worth a dependency.
    fn geteuid() -> u32;
}

/// `tests/natlab`: the lab script and its JS peers.
pub fn dir() -> PathBuf {
    paths::root().join("tests").join("natlab")
}

pub fn script() -> PathBuf {
    dir().join("natlab.sh")
}

/// A tool the lab needs: the command that proves it is there and the Debian package.
struct Tool {
    command: &'static str,
    package: &'static str,
}

const REQUIRED: &[Tool] = &[
    Tool {
        command: "ip",
        package: "iproute2",
    },
    Tool {
        command: "nft",
        package: "nftables",
    },
    Tool {
        command: "unshare",
        package: "util-linux",
    },
    Tool {
        command: "sysctl",
        package: "procps",
    },
];

/// `--extra-hops` lowers the TTL with iptables' TTL target (nft cannot compute `ttl - N`).
const FOR_EXTRA_HOPS: Tool = Tool {
    command: "iptables",
    package: "iptables",
};

fn have(command: &str) -> bool {
    // `command -v` so tools in /usr/sbin are found however PATH is set for sh.
    Command::new("sh")
        .args([
            "-c",
            "command -v \"$0\" || test -x /usr/sbin/\"$0\" || test -x /sbin/\"$0\"",
        ])
        .arg(command)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Root, node, and the lab's tools: the missing ones are installed from Debian's mirror,
/// which is all a fresh CI machine is guaranteed to reach.
pub fn ensure_host(extra_hops: u32) -> Result<(), NatlabError> {
    // SAFETY: geteuid(2) has no preconditions and cannot fail.
    if unsafe { geteuid() } != 0 {
        return Err(NatlabError::Host(
            "the NAT lab must run as root (network namespaces, nftables)".into(),
        ));
    }
    if !have("node") {
        return Err(NatlabError::Host("node (>= 18) is required".into()));
    }
    let mut missing: Vec<&Tool> = REQUIRED.iter().filter(|t| !have(t.command)).collect();
    if extra_hops > 0 && !have(FOR_EXTRA_HOPS.command) {
        missing.push(&FOR_EXTRA_HOPS);
    }
    if missing.is_empty() {
        return Ok(());
    }
    let packages: Vec<&str> = missing.iter().map(|t| t.package).collect();
    let commands: Vec<&str> = missing.iter().map(|t| t.command).collect();
    if !have("apt-get") {
        return Err(NatlabError::Host(format!(
            "missing {} and no apt-get to install them; install the packages {}",
            commands.join(", "),
            packages.join(" ")
        )));
    }
    eprintln!(
        "natlab: {} missing, running `apt-get update && apt-get install -y {}`",
        commands.join(", "),
        packages.join(" ")
    );
    apt(&["update", "-q"])?;
    let mut install = vec!["install", "-y", "-q", "--no-install-recommends"];
    install.extend(&packages);
    apt(&install)?;
    match missing.iter().find(|t| !have(t.command)) {
        Some(t) => Err(NatlabError::Host(format!(
            "`{}` still missing after installing {}",
            t.command, t.package
        ))),
        None => Ok(()),
    }
}

fn apt(args: &[&str]) -> Result<(), NatlabError> {
    let status = Command::new("apt-get")
        .args(args)
        .env("DEBIAN_FRONTEND", "noninteractive")
        .status()
        .map_err(|e| NatlabError::Host(format!("apt-get: {e}")))?;
    if status.success() {
        Ok(())
    } else {
        Err(NatlabError::Host(format!(
            "`apt-get {}` failed ({status})",
            args.join(" ")
        )))
    }
}

/// A lab that is up; dropping it runs `natlab.sh down`, also on every error path.
pub struct Lab {
    log: PathBuf,
    state: PathBuf,
}

impl Lab {
    /// `natlab.sh up` with its output appended to `<log_dir>/lab.log`.
    pub fn up(
        log_dir: &Path,
        nat_a: Mode,
        nat_b: Mode,
        extra_hops: u32,
    ) -> Result<Lab, NatlabError> {
        let lab = Lab {
            log: log_dir.join("lab.log"),
            state: log_dir.join("lab.state"),
        };
        // The guard exists before `up` so that a half-built lab is torn down too.
        lab.script(&[
            "up",
            "--nat-a",
            nat_a.name(),
            "--nat-b",
            nat_b.name(),
            "--extra-hops",
            &extra_hops.to_string(),
        ])?;
        Ok(lab)
    }

    /// The argument list that runs `program args` inside lab namespace `ns` (a, b, inet).
    pub fn exec_args(ns: &str, program: &str, args: &[String]) -> Vec<String> {
        let mut v = vec!["exec".to_string(), ns.to_string(), program.to_string()];
        v.extend(args.iter().cloned());
        v
    }

    /// Saves `natlab.sh status` (rules, conntrack entries) next to the run's logs.
    pub fn save_status(&self, file: &Path) {
        if let Ok(out) = File::create(file) {
            let _ = self.command(&["status"]).stdout(out).status();
        }
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new("bash");
        cmd.arg(script())
            .args(args)
            .env("HSR_STATE_FILE", &self.state)
            .stdin(Stdio::null());
        cmd
    }

    fn script(&self, args: &[&str]) -> Result<(), NatlabError> {
        let log = File::options()
            .create(true)
            .append(true)
            .open(&self.log)
            .map_err(|e| NatlabError::Io(format!("{}: {e}", self.log.display())))?;
        let err = log
            .try_clone()
            .map_err(|e| NatlabError::Io(format!("{}: {e}", self.log.display())))?;
        let status = self
            .command(args)
            .stdout(log)
            .stderr(err)
            .status()
            .map_err(|e| NatlabError::Lab(format!("natlab.sh: {e}")))?;
        if status.success() {
            Ok(())
        } else {
            Err(NatlabError::Lab(format!(
                "`natlab.sh {}` failed ({status}); see {}",
                args.join(" "),
                self.log.display()
            )))
        }
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        if let Err(e) = self.script(&["down"]) {
            eprintln!("natlab: teardown: {e}");
        }
    }
}
