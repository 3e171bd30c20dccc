//! Child processes of a scenario: spawned in their own process group, stdout
//! parsed as JSON-lines events (and teed into a log file), stderr written
//! straight to a log file, every wait bounded by a deadline.
//!
//! Each child gets one helper thread that reads stdout to EOF and then reaps
//! the child, so "exited" is always reported after the last event line and
//! no wait ever needs polling or sleeping.

use std::fs::File;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{ChildStdin, Command, ExitStatus, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

use serde_json::Value;

extern "C" {
    // From the C library std already links; avoids a libc/nix dependency for
    // the one call we need (signalling a whole process group).
    fn kill(pid: i32, sig: i32) -> i32;
}

pub const SIGTERM: i32 = 15;
pub const SIGKILL: i32 = 9;

/// Send `sig` to `pid` (negative: a process group). Errors (already gone) are ignored.
pub fn signal(pid: i32, sig: i32) {
    // SAFETY: kill(2) has no memory-safety preconditions.
    unsafe {
        kill(pid, sig);
    }
}

/// Grace period for a child to exit after being asked to stop.
const STOP_GRACE: Duration = Duration::from_secs(10);

enum Msg {
    Event(Value),
    Exited(std::io::Result<ExitStatus>),
}

/// A running (or finished) child process.
pub struct Proc {
    pub name: String,
    pid: i32,
    stdin: Option<ChildStdin>,
    rx: Receiver<Msg>,
    /// Every event received so far, in order.
    events: Vec<Value>,
    /// Events before this index were already returned by [`Proc::wait_for`].
    cursor: usize,
    exit: Option<ExitStatus>,
}

impl Proc {
    /// Spawn `program args` with stdout/stderr logged to `<log_dir>/<name>.{out,err}`.
    pub fn spawn(
        name: &str,
        log_dir: &Path,
        program: &Path,
        args: &[String],
    ) -> Result<Proc, String> {
        let out_path = log_dir.join(format!("{name}.out"));
        let err_path = log_dir.join(format!("{name}.err"));
        let err_file =
            File::create(&err_path).map_err(|e| format!("create {}: {e}", err_path.display()))?;
        let mut out_file =
            File::create(&out_path).map_err(|e| format!("create {}: {e}", out_path.display()))?;
        let _ = writeln!(
            err_file.try_clone().map_err(|e| e.to_string())?,
            "$ {} {}",
            program.display(),
            args.join(" ")
        );

        let mut child = Command::new(program)
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::from(err_file))
            .env("RUST_BACKTRACE", "1")
            // Own process group so a timeout can kill the child and anything it spawned.
            .process_group(0)
            .spawn()
            .map_err(|e| format!("{name}: spawn {}: {e}", program.display()))?;

        let pid = child.id() as i32;
        let stdin = child.stdin.take();
        let stdout = child.stdout.take().expect("stdout is piped");
        let (tx, rx) = mpsc::channel();
        let thread_name = name.to_string();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                let _ = writeln!(out_file, "{line}");
                let trimmed = line.trim();
                if trimmed.is_empty() {
                    continue;
                }
                match serde_json::from_str::<Value>(trimmed) {
                    Ok(v) if v.is_object() => {
                        let _ = tx.send(Msg::Event(v));
                    }
                    _ => eprintln!("    [{thread_name}] non-JSON stdout line: {trimmed}"),
                }
            }
            let _ = out_file.flush();
            let _ = tx.send(Msg::Exited(child.wait()));
        });

        Ok(Proc {
            name: name.to_string(),
            pid,
            stdin,
            rx,
            events: Vec::new(),
            cursor: 0,
            exit: None,
        })
    }

    /// Receive one message, at most until `deadline`. Returns false on timeout.
    fn pump(&mut self, deadline: Instant) -> Result<bool, String> {
        let timeout = deadline.saturating_duration_since(Instant::now());
        match self.rx.recv_timeout(timeout) {
            Ok(Msg::Event(v)) => {
                self.events.push(v);
                Ok(true)
            }
            Ok(Msg::Exited(status)) => {
                let status = status.map_err(|e| format!("{}: wait: {e}", self.name))?;
                self.exit = Some(status);
                Ok(true)
            }
            Err(RecvTimeoutError::Timeout) => Ok(false),
            Err(RecvTimeoutError::Disconnected) => {
                Err(format!("{}: reader thread vanished", self.name))
            }
        }
    }

    /// Take in everything already queued without blocking.
    pub fn drain(&mut self) -> Result<(), String> {
        while self.exit.is_none() && self.pump(Instant::now())? {}
        Ok(())
    }

    /// Wait for the next event (after those already returned) matching `pred`.
    pub fn wait_for(
        &mut self,
        what: &str,
        deadline: Instant,
        pred: impl Fn(&Value) -> bool,
    ) -> Result<Value, String> {
        loop {
            if let Some(i) = self.events[self.cursor..].iter().position(&pred) {
                let idx = self.cursor + i;
                self.cursor = idx + 1;
                return Ok(self.events[idx].clone());
            }
            self.cursor = self.events.len();
            if let Some(status) = self.exit {
                return Err(format!("{}: exited ({status}) before {what}", self.name));
            }
            if !self.pump(deadline)? {
                return Err(format!("{}: timed out waiting for {what}", self.name));
            }
        }
    }

    /// Wait for the next event named `event`.
    pub fn wait_event(&mut self, event: &str, deadline: Instant) -> Result<Value, String> {
        self.wait_for(&format!("`{event}` event"), deadline, |v| {
            is_event(v, event)
        })
    }

    /// All events received so far (call [`Proc::drain`] first for the latest).
    pub fn events(&self) -> &[Value] {
        &self.events
    }

    /// Wait for the process to exit on its own; kill its group at the deadline.
    pub fn wait_exit(&mut self, deadline: Instant) -> Result<ExitStatus, String> {
        while self.exit.is_none() {
            if !self.pump(deadline)? {
                self.kill();
                return Err(format!("{}: did not exit in time (killed)", self.name));
            }
        }
        Ok(self.exit.expect("checked above"))
    }

    /// Wait for exit and require success; returns every event it printed.
    pub fn finish(&mut self, deadline: Instant) -> Result<Vec<Value>, String> {
        let status = self.wait_exit(deadline)?;
        if !status.success() {
            return Err(format!("{}: failed ({status})", self.name));
        }
        Ok(self.events.clone())
    }

    /// Writes one line to the process's stdin.
    pub fn send_line(&mut self, line: &str) -> Result<(), String> {
        let stdin = self
            .stdin
            .as_mut()
            .ok_or_else(|| format!("{}: stdin already closed", self.name))?;
        writeln!(stdin, "{line}")
            .and_then(|()| stdin.flush())
            .map_err(|e| format!("{}: write to stdin: {e}", self.name))
    }

    /// Ask the process to stop: close its stdin and send SIGTERM.
    pub fn request_stop(&mut self) {
        self.stdin = None;
        if self.exit.is_none() {
            signal(self.pid, SIGTERM);
        }
    }

    /// Kill the whole process group immediately.
    pub fn kill(&mut self) {
        self.stdin = None;
        if self.exit.is_none() {
            signal(-self.pid, SIGKILL);
        }
    }
}

impl Drop for Proc {
    /// Never leak a child: anything still running when its handle goes away
    /// (error paths included) is killed with its process group.
    fn drop(&mut self) {
        self.kill();
    }
}

/// Stop several processes concurrently: request all stops first, then collect.
pub fn stop_all<'a>(procs: impl IntoIterator<Item = &'a mut Proc>) -> Result<(), String> {
    let mut procs: Vec<&mut Proc> = procs.into_iter().collect();
    for p in procs.iter_mut() {
        p.request_stop();
    }
    let deadline = Instant::now() + STOP_GRACE;
    let mut errors = Vec::new();
    for p in procs.iter_mut() {
        match p.wait_exit(deadline) {
            Ok(status) if status.success() => {}
            Ok(status) => errors.push(format!(
                "{}: unclean exit after stop request ({status})",
                p.name
            )),
            Err(e) => errors.push(e),
        }
    }
    if errors.is_empty() {
        Ok(())
    } else {
        Err(errors.join("; "))
    }
}

/// Whether `v` is `{"event": name, ...}`.
pub fn is_event(v: &Value, name: &str) -> bool {
    v.get("event").and_then(Value::as_str) == Some(name)
}
