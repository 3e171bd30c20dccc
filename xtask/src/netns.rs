//! Network namespaces for anything that opens sockets: as root `unshare --net`, otherwise
//! `unshare --map-root-user --net`. When neither works the run stops with an explanation;
//! it never falls back to the host network.

use std::process::{Command, Stdio};
use std::sync::OnceLock;

/// The `unshare` flags that create a fresh network namespace here, probed once.
pub fn base_flags() -> Result<&'static [&'static str], String> {
    static FLAGS: OnceLock<Result<&'static [&'static str], String>> = OnceLock::new();
    FLAGS
        .get_or_init(|| {
            let candidates: [&'static [&'static str]; 2] =
                [&["--net"], &["--map-root-user", "--net"]];
            for flags in candidates {
                let ok = Command::new("unshare")
                    .args(flags)
                    .arg("true")
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .status()
                    .is_ok_and(|s| s.success());
                if ok {
                    return Ok(flags);
                }
            }
            Err(
                "cannot create a network namespace: neither `unshare --net` (root) nor \
                 `unshare --map-root-user --net` (unprivileged user namespaces) works here. \
                 Run as root, or enable user namespaces (e.g. sysctl \
                 kernel.unprivileged_userns_clone=1). Tests never use the host network."
                    .to_string(),
            )
        })
        .clone()
}
