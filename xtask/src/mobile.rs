//! `cargo xtask mobile [--update]`: the Swift and Kotlin bindings (`bindings/uniffi`).
//!
//! 1. Installs what is missing: Debian `libjna-java` (Kotlin's native bridge) and
//!    `debootstrap`, the pinned JVM Kotlin compiler (`npm ci` in `kotlin/`) and the JS peers'
//!    packages (`npm ci` in `tests/interop/`).
//! 2. Builds the library and the bindgen (its own workspace, so the rest of CI never compiles
//!    its CLI dependencies), regenerates the Kotlin and Swift code and compares it with the
//!    committed copy in `bindings/generated/` (`--update` refreshes the copy instead).
//! 3. Compiles and runs the Kotlin tests inside a fresh network namespace.
//! 4. When the disk has room (or the chroot is already there), the Swift tests: Debian's
//!    Swift needs a newer glibc than this host's bookworm, so it lives in a Debian trixie
//!    chroot cached at `target/swift-chroot`. Every chroot run happens in its own mount and
//!    PID namespaces, so its `/proc` mount disappears with it, whatever way it ends.
//!
//! Installing happens outside the namespaces (it needs the network); the tests only ever
//! see loopback.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::paths::run;
use crate::{netns, paths};

/// The Swift chroot's Debian release: the oldest with a `swiftlang` package.
const SWIFT_SUITE: &str = "trixie";
/// The mirror debootstrap and the chroot's apt use.
const DEBIAN_MIRROR: &str = "http://deb.debian.org/debian";
/// Free disk the Swift chroot needs (it takes about 3.2 GB).
const SWIFT_MIN_FREE_BYTES: u64 = 3_500_000_000;
/// Written into the chroot once everything is installed, so a half-made one is redone.
const READY_MARKER: &str = ".hyperswarm-swift-ready";
/// Debian's JNA jar, from `libjna-java`.
const JNA_JAR: &str = "/usr/share/java/jna.jar";
/// Where the Swift package, the library and the JS peers are copied, as seen inside the
/// chroot (under `target/swift-chroot` outside it).
const CHROOT_WORK: &str = "/work";
/// The library uniffi generated code loads.
const LIBRARY: &str = "libhyperswarm_uniffi.so";

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}

/// `apt-get install` of the packages among `packages` whose `probe` file is missing. One
/// apt-get at a time (waiting for the dpkg lock rather than failing on it); on a machine
/// whose package lists were never fetched, `apt-get update` once and retry.
fn apt_install(packages: &[(&str, &str)]) -> Result<(), String> {
    let missing: Vec<&str> = packages
        .iter()
        .filter(|(_, probe)| !Path::new(probe).exists())
        .map(|(p, _)| *p)
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    if !is_root() {
        return Err(format!(
            "missing Debian packages {} and not root to install them",
            missing.join(" ")
        ));
    }
    let install = || {
        Command::new("apt-get")
            .args(["-o", "DPkg::Lock::Timeout=600", "install", "-y", "-q"])
            .arg("--no-install-recommends")
            .args(&missing)
            .env("DEBIAN_FRONTEND", "noninteractive")
            .status()
            .is_ok_and(|s| s.success())
    };
    if install() {
        return Ok(());
    }
    run(
        Command::new("apt-get").args(["-o", "DPkg::Lock::Timeout=600", "update", "-q"]),
        "apt-get update",
    )?;
    if install() {
        Ok(())
    } else {
        Err(format!("apt-get install {} failed", missing.join(" ")))
    }
}

fn npm_ci(dir: &Path) -> Result<(), String> {
    run(
        Command::new("npm")
            .args(["ci", "--no-audit", "--no-fund"])
            .current_dir(dir),
        &format!("npm ci ({})", dir.display()),
    )
}

fn cargo(args: &[&str]) -> Result<(), String> {
    run(
        Command::new(paths::cargo())
            .args(args)
            .current_dir(paths::root())
            .env("CARGO_TARGET_DIR", paths::target_dir()),
        &format!("cargo {}", args.join(" ")),
    )
}

fn generated_dir() -> PathBuf {
    paths::root().join("bindings").join("generated")
}

/// Every file under `dir`, relative to it, sorted.
fn files_under(dir: &Path) -> Result<Vec<PathBuf>, String> {
    fn walk(base: &Path, dir: &Path, out: &mut Vec<PathBuf>) -> Result<(), String> {
        let entries = fs::read_dir(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        for entry in entries {
            let path = entry.map_err(|e| e.to_string())?.path();
            if path.is_dir() {
                walk(base, &path, out)?;
            } else {
                out.push(path.strip_prefix(base).unwrap_or(&path).to_path_buf());
            }
        }
        Ok(())
    }
    let mut out = Vec::new();
    if dir.exists() {
        walk(dir, dir, &mut out)?;
    }
    out.sort();
    Ok(out)
}

/// Builds the library and the bindgen, generates Kotlin and Swift into `target/uniffi-gen`,
/// then compares with (or with `update`, copies over) `bindings/generated`.
fn generate(update: bool) -> Result<(), String> {
    cargo(&["build", "-p", "hyperswarm-uniffi"])?;
    // The bindgen is a workspace of its own, with its own lockfile.
    cargo(&[
        "build",
        "--locked",
        "--manifest-path",
        "bindings/uniffi-bindgen/Cargo.toml",
    ])?;
    let target = paths::target_dir();
    let library = target.join("debug").join(LIBRARY);
    let out = target.join("uniffi-gen");
    let _ = fs::remove_dir_all(&out);
    for language in ["kotlin", "swift"] {
        run(
            Command::new(target.join("debug").join("uniffi-bindgen"))
                .arg("generate")
                .arg(&library)
                .args(["--language", language, "--no-format", "--out-dir"])
                .arg(out.join(language))
                .current_dir(paths::root()),
            &format!("uniffi-bindgen generate --language {language}"),
        )?;
    }
    let committed = generated_dir();
    if update {
        let _ = fs::remove_dir_all(&committed);
        for file in files_under(&out)? {
            let to = committed.join(&file);
            fs::create_dir_all(to.parent().expect("a file has a parent"))
                .map_err(|e| e.to_string())?;
            fs::copy(out.join(&file), &to).map_err(|e| format!("{}: {e}", to.display()))?;
        }
        eprintln!("mobile: refreshed {}", committed.display());
        return Ok(());
    }
    let fresh = files_under(&out)?;
    let kept = files_under(&committed)?;
    let mut drift = Vec::new();
    for f in &fresh {
        if !kept.contains(f) {
            drift.push(format!("{} is new", f.display()));
        } else if fs::read(out.join(f)).ok() != fs::read(committed.join(f)).ok() {
            drift.push(format!("{} differs", f.display()));
        }
    }
    for f in kept.iter().filter(|f| !fresh.contains(f)) {
        drift.push(format!("{} is no longer generated", f.display()));
    }
    if drift.is_empty() {
        eprintln!("mobile: bindings/generated matches the library");
        Ok(())
    } else {
        Err(format!(
            "bindings/generated is out of date ({}); run `cargo xtask mobile --update` and commit it",
            drift.join(", ")
        ))
    }
}

/// The sources of one Kotlin compilation: the generated bindings, the `rs.hyperswarm`
/// wrapper and the tests.
fn kotlin_sources() -> Result<Vec<PathBuf>, String> {
    let mut sources = Vec::new();
    for dir in [
        generated_dir().join("kotlin"),
        paths::root().join("kotlin").join("src"),
        paths::root().join("kotlin").join("test"),
    ] {
        for f in files_under(&dir)? {
            if f.extension().is_some_and(|e| e == "kt") {
                sources.push(dir.join(f));
            }
        }
    }
    Ok(sources)
}

fn kotlin() -> Result<(), String> {
    let toolchain = paths::root()
        .join("kotlin")
        .join("node_modules")
        .join("kotlin-compiler");
    let lib = toolchain.join("lib");
    let jar = paths::target_dir()
        .join("kotlin")
        .join("hyperswarm-tests.jar");
    fs::create_dir_all(jar.parent().expect("has a parent")).map_err(|e| e.to_string())?;
    let coroutines = lib.join("kotlinx-coroutines-core-jvm.jar");
    let compile_cp = format!("{JNA_JAR}:{}", coroutines.display());
    run(
        Command::new(toolchain.join("bin").join("kotlinc"))
            .args(["-jvm-target", "17", "-nowarn", "-cp", &compile_cp, "-d"])
            .arg(&jar)
            .args(kotlin_sources()?),
        "kotlinc",
    )?;
    let run_cp = format!(
        "{}:{}:{compile_cp}",
        jar.display(),
        lib.join("kotlin-stdlib.jar").display()
    );
    let script = format!(
        "ip link set lo up && exec java -Djna.library.path={} -cp {run_cp} rs.hyperswarm.test.HyperswarmTestKt",
        paths::target_dir().join("debug").display()
    );
    let status = Command::new("unshare")
        .args(netns::base_flags()?)
        .args(["--", "sh", "-c", &script])
        .env("HYPERSWARM_INTEROP_DIR", paths::interop_js_dir())
        .current_dir(paths::root())
        .status()
        .map_err(|e| format!("unshare: {e}"))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("Kotlin tests failed ({status})"))
    }
}

/// Bytes free on the file system holding `dir`, from `df`.
fn free_bytes(dir: &Path) -> Option<u64> {
    let out = Command::new("df").args(["-Pk"]).arg(dir).output().ok()?;
    let text = String::from_utf8_lossy(&out.stdout);
    let kib: u64 = text
        .lines()
        .nth(1)?
        .split_whitespace()
        .nth(3)?
        .parse()
        .ok()?;
    Some(kib * 1024)
}

/// Runs `script` with the host's `sh` in fresh mount and PID namespaces (plus a fresh
/// network namespace when `isolated`), after mounting `/proc` inside `root`. The mount
/// belongs to the namespace, so it is gone when the script ends, even if it is killed.
fn in_chroot_namespaces(root: &Path, isolated: bool, script: &str) -> Result<(), String> {
    let mut flags = vec!["--mount", "--pid", "--fork"];
    if isolated {
        flags.push("--net");
    }
    let lo = if isolated {
        "ip link set lo up && "
    } else {
        ""
    };
    let full = format!(
        "{lo}mount -t proc proc {root}/proc && exec chroot {root} /usr/bin/env -i \
         HOME=/root PATH=/usr/local/bin:/usr/bin:/bin LANG=C.UTF-8 /bin/sh -c '{script}'",
        root = root.display()
    );
    run(
        Command::new("unshare")
            .args(&flags)
            .args(["sh", "-c", &full]),
        "chroot",
    )
}

/// Makes the Swift chroot if it is not there yet; `Ok(Some(reason))` when there is no
/// room or no root for it.
fn swift_chroot(root: &Path) -> Result<Option<String>, String> {
    if root.join(READY_MARKER).exists() {
        return Ok(None);
    }
    if !is_root() {
        return Ok(Some("making the Swift chroot needs root".into()));
    }
    let parent = root.parent().expect("the chroot is under target/");
    fs::create_dir_all(parent).map_err(|e| e.to_string())?;
    match free_bytes(parent) {
        Some(free) if free >= SWIFT_MIN_FREE_BYTES => {}
        free => {
            return Ok(Some(format!(
                "{} free in {}, the Swift chroot needs {:.1} GB",
                free.map_or("unknown".to_string(), |b| format!(
                    "{:.1} GB",
                    b as f64 / 1e9
                )),
                parent.display(),
                SWIFT_MIN_FREE_BYTES as f64 / 1e9
            )));
        }
    }
    apt_install(&[("debootstrap", "/usr/sbin/debootstrap")])?;
    let tmp = root.with_extension("tmp");
    let _ = fs::remove_dir_all(&tmp);
    eprintln!(
        "mobile: making the Swift chroot (debian {SWIFT_SUITE}, swiftlang) in {}",
        tmp.display()
    );
    run(
        Command::new("debootstrap")
            .args(["--variant=minbase", SWIFT_SUITE])
            .arg(&tmp)
            .arg(DEBIAN_MIRROR),
        "debootstrap",
    )?;
    in_chroot_namespaces(
        &tmp,
        false,
        "export DEBIAN_FRONTEND=noninteractive && apt-get update -qq && \
         apt-get install -y -qq --no-install-recommends swiftlang libc6-dev >/dev/null",
    )?;
    fs::write(tmp.join(READY_MARKER), SWIFT_SUITE).map_err(|e| e.to_string())?;
    fs::rename(&tmp, root).map_err(|e| format!("{}: {e}", root.display()))?;
    Ok(None)
}

/// Copies `from` to `to` recursively, following symbolic links (the Swift package links to
/// the generated sources, which the chroot cannot see).
fn copy_tree(from: &Path, to: &Path) -> Result<(), String> {
    run(
        Command::new("cp").arg("-rL").arg(from).arg(to),
        &format!("copying {}", from.display()),
    )
}

/// Builds the Swift package in the chroot and runs its tests; `Ok(Some(reason))` when
/// they were skipped.
fn swift() -> Result<Option<String>, String> {
    let root = paths::target_dir().join("swift-chroot");
    if let Some(reason) = swift_chroot(&root)? {
        return Ok(Some(reason));
    }
    // A fresh work tree inside the chroot: the package, the library, the JS peers and node.
    let work = root.join(CHROOT_WORK.trim_start_matches('/'));
    let _ = fs::remove_dir_all(&work);
    fs::create_dir_all(work.join("lib")).map_err(|e| e.to_string())?;
    copy_tree(&paths::root().join("swift"), &work.join("swift"))?;
    let _ = fs::remove_dir_all(work.join("swift").join(".build"));
    fs::copy(
        paths::target_dir().join("debug").join(LIBRARY),
        work.join("lib").join(LIBRARY),
    )
    .map_err(|e| format!("copying the library: {e}"))?;
    copy_tree(&paths::interop_js_dir(), &work.join("interop"))?;
    let node = Command::new("sh")
        .args(["-c", "command -v node"])
        .output()
        .map_err(|e| e.to_string())?;
    let node = String::from_utf8_lossy(&node.stdout).trim().to_string();
    fs::create_dir_all(root.join("usr/local/bin")).map_err(|e| e.to_string())?;
    fs::copy(&node, root.join("usr/local/bin/node"))
        .map_err(|e| format!("copying node ({node}) into the chroot: {e}"))?;
    in_chroot_namespaces(
        &root,
        true,
        &format!(
            "cd {w}/swift && swift build -q -Xlinker -L{w}/lib && \
             HYPERSWARM_INTEROP_DIR={w}/interop LD_LIBRARY_PATH={w}/lib \
             exec .build/debug/hyperswarm-swift-tests",
            w = CHROOT_WORK
        ),
    )
    .map_err(|e| format!("Swift tests failed: {e}"))?;
    Ok(None)
}

/// `cargo xtask mobile [--update]`.
pub fn run_cli(args: &[String]) -> Result<(), String> {
    let update = match args {
        [] => false,
        [a] if a == "--update" => true,
        [a, ..] => return Err(format!("unexpected argument `{a}`")),
    };
    mobile(update)
}

/// The CI step: everything, with the committed bindings checked rather than refreshed.
pub fn ci() -> Result<(), String> {
    mobile(false)
}

fn mobile(update: bool) -> Result<(), String> {
    for tool in ["node", "npm"] {
        if Command::new(tool).arg("--version").output().is_err() {
            return Err(format!(
                "`{tool}` is not installed (the JS peer and the Kotlin compiler need Node.js with npm)"
            ));
        }
    }
    let mut packages = vec![("libjna-java", JNA_JAR)];
    // kotlinc and the tests need a Java >= 17 runtime (bookworm's default is 17).
    if Command::new("java").arg("-version").output().is_err() {
        packages.push(("openjdk-17-jre-headless", "/usr/bin/java"));
    }
    apt_install(&packages)?;
    npm_ci(&paths::root().join("kotlin"))?;
    npm_ci(&paths::interop_js_dir())?;
    generate(update)?;
    // Both languages run even when one fails, so one run shows everything wrong.
    eprintln!("==> mobile: Kotlin");
    let kotlin = kotlin();
    eprintln!("==> mobile: Swift");
    let swift = swift();
    if let Ok(Some(reason)) = &swift {
        // Said last, where a reader of the CI log looks.
        println!("mobile: Swift tests SKIPPED: {reason}");
    }
    match (kotlin, swift) {
        (Ok(()), Ok(_)) => Ok(()),
        (k, s) => Err([k.err(), s.err()]
            .into_iter()
            .flatten()
            .collect::<Vec<_>>()
            .join("; ")),
    }
}
