//! Workspace locations, derived from where xtask itself lives so the commands
//! work from any current directory.

use std::path::PathBuf;

/// The workspace root (the parent of the `xtask` package).
pub fn root() -> PathBuf {
    let manifest_dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    manifest_dir
        .parent()
        .expect("xtask lives inside the workspace")
        .to_path_buf()
}

/// Cargo's target directory, honouring `CARGO_TARGET_DIR` like cargo does.
pub fn target_dir() -> PathBuf {
    match std::env::var_os("CARGO_TARGET_DIR") {
        Some(dir) => {
            let dir = PathBuf::from(dir);
            if dir.is_absolute() {
                dir
            } else {
                root().join(dir)
            }
        }
        None => root().join("target"),
    }
}

/// The cargo binary that invoked us (`cargo xtask` sets `CARGO`), so nested
/// builds use the same toolchain.
pub fn cargo() -> String {
    std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_string())
}

/// `tests/interop`: the JS peers and their pinned node_modules.
pub fn interop_js_dir() -> PathBuf {
    root().join("tests").join("interop")
}

/// The release build of the `hyperswarm` CLI that the interop scenarios drive.
pub fn cli_binary() -> PathBuf {
    target_dir().join("release").join("hyperswarm")
}

/// Runs `cmd` to completion; `what` names it in the error.
pub fn run(cmd: &mut std::process::Command, what: &str) -> Result<(), String> {
    let status = cmd.status().map_err(|e| format!("{what}: {e}"))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("{what} exited with {status}"))
    }
}
