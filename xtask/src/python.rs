//! `cargo xtask python` and `cargo xtask bench python`: the `hyperswarm-rs` pip package in
//! `python/`. A venv of its own (`target/python-venv`, tools pinned by
//! `python/requirements-dev.txt`), the abi3 wheel built by maturin and installed into it,
//! then pytest inside a fresh network namespace. Installing and building happen outside the
//! namespace (they may need PyPI, npm or crates.io).
//!
//! maturin builds in the workspace's own target dir, not a separate one: it selects only
//! `hyperswarm-python`, whose shared dependencies (tokio, the core, the facade) get the same
//! features as `cargo build -p hyperswarm-node` does, so after the node step nothing but the
//! pyo3 crates and the module itself is compiled (measured: a maturin build right after the
//! node build compiled nothing else). `cargo test --workspace` does not build the module
//! (`test = false`), so it never rebuilds pyo3 without maturin's `PYO3_BUILD_EXTENSION_MODULE`
//! and the two do not take turns rebuilding it; `cargo build --workspace` would.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::paths::run;
use crate::{interop, netns, paths};

fn python_dir() -> PathBuf {
    paths::root().join("python")
}

fn venv() -> PathBuf {
    paths::target_dir().join("python-venv")
}

fn venv_bin(tool: &str) -> PathBuf {
    venv().join("bin").join(tool)
}

/// The venv with maturin, pytest and pytest-asyncio; the wheel built and installed; the
/// JS peers the interop tests spawn.
fn prepare(release: bool) -> Result<(), String> {
    let python = std::env::var("PYTHON").unwrap_or_else(|_| "python3".into());
    let version = Command::new(&python)
        .args([
            "-c",
            "import sys; print(sys.version_info >= (3, 9), sys.version.split()[0])",
        ])
        .output()
        .map_err(|e| {
            format!(
                "`{python}` is not installed ({e}); the pip package needs CPython >= 3.9 with venv"
            )
        })?;
    let version = String::from_utf8_lossy(&version.stdout).trim().to_string();
    if !version.starts_with("True") {
        return Err(format!(
            "`{python}` is too old ({version}); the pip package needs CPython >= 3.9"
        ));
    }
    if !venv_bin("python").exists() {
        run(
            Command::new(&python).arg("-m").arg("venv").arg(venv()),
            "creating the venv (python3 -m venv; on Debian/Ubuntu it needs `apt-get install python3-venv`)",
        )?;
    }
    run(
        Command::new(venv_bin("python"))
            .args(["-m", "pip", "install", "--quiet", "-r"])
            .arg(python_dir().join("requirements-dev.txt")),
        "pip install -r python/requirements-dev.txt",
    )?;
    interop::ensure_js_deps()?;

    let wheels = paths::target_dir().join("python-wheels");
    // Only this build's wheel may be there when we pick it up below.
    let _ = std::fs::remove_dir_all(&wheels);
    let mut build = Command::new(venv_bin("maturin"));
    build
        .args(["build", "--quiet", "--out"])
        .arg(&wheels)
        .current_dir(python_dir())
        .env("CARGO_TARGET_DIR", paths::target_dir())
        .env("VIRTUAL_ENV", venv());
    if release {
        build.arg("--release");
    }
    run(&mut build, "maturin build (python/)")?;
    let wheel = only_wheel(&wheels)?;
    run(
        Command::new(venv_bin("python"))
            .args([
                "-m",
                "pip",
                "install",
                "--quiet",
                "--force-reinstall",
                "--no-deps",
            ])
            .arg(&wheel),
        "pip install (the wheel)",
    )?;
    eprintln!("python: installed {}", wheel.display());
    Ok(())
}

fn only_wheel(dir: &Path) -> Result<PathBuf, String> {
    let found: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|e| format!("{}: {e}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "whl"))
        .collect();
    match found.as_slice() {
        [one] => Ok(one.clone()),
        _ => Err(format!(
            "expected one wheel in {}, found {}",
            dir.display(),
            found.len()
        )),
    }
}

/// Runs `script` with `sh -c` in `python/` inside a fresh network namespace, with the
/// venv first on PATH.
fn in_netns(script: &str) -> Result<(), String> {
    let path = format!(
        "{}:{}",
        venv().join("bin").display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let status = Command::new("unshare")
        .args(netns::base_flags()?)
        .args(["--", "sh", "-c"])
        .arg(format!("ip link set lo up && {script}"))
        .current_dir(python_dir())
        .env("PATH", path)
        .env("VIRTUAL_ENV", venv())
        .status()
        .map_err(|e| format!("unshare: {e}"))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("`{script}` failed ({status})"))
    }
}

/// Builds and installs the wheel, then runs its tests (pytest) inside a fresh network
/// namespace: the package alone on a local testnet, and interop with hyperswarm 4.17.2
/// (a node child process) both ways. The interop tests must run here, not skip. First
/// `mypy --strict` checks the Python layer against the native module's stubs.
pub fn test() -> Result<(), String> {
    prepare(false)?;
    // The console script, not `python -m pytest`: that would put python/ on sys.path,
    // and the source tree's `hyperswarm/` (without the native module) would shadow the wheel.
    let mypy_cache = paths::target_dir().join("mypy-cache");
    in_netns(&format!(
        "mypy --strict --cache-dir {} hyperswarm && HYPERSWARM_REQUIRE_JS=1 exec pytest -v -p no:cacheprovider",
        mypy_cache.display()
    ))
}

/// `cargo xtask bench python`: join → first connection and one connection's throughput
/// through the binding (release wheel) and with JS hyperswarm, in the same run, on a JS
/// testnet; prints both and the ratio.
pub fn bench() -> Result<(), String> {
    prepare(true)?;
    let node_path = paths::interop_js_dir().join("node_modules");
    in_netns(&format!(
        "NODE_PATH={} exec python bench/bench.py",
        node_path.display()
    ))
}
