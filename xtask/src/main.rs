//! `cargo xtask`: orchestration only (no numerics).
//!
//! - `cargo xtask reproduce [--profile quick|paper] [--only NAME…] [--fresh] [--threads N]`
//! - `cargo xtask test` — the whole test suite (what CI runs), then the downstream-user crates
//!   under `tests/downstream/`
//! - `cargo xtask publish-check` — `cargo publish --dry-run` of every library crate
//! - `cargo xtask bless` — rewrite the golden SE values under `tests/golden/` deliberately
//! - `cargo xtask bench [cargo bench args]` — criterion benchmarks (all, or e.g. `-p beamlab-kan --bench ggml`)
//!
//! Before building anything that links LAPACK, every command checks for the OpenBLAS system
//! library and, on Debian/Ubuntu, installs `libopenblas-dev` and `pkg-config` (as root directly,
//! through `sudo` otherwise), or prints the exact command when it cannot.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};

const PACKAGES: [&str; 2] = ["libopenblas-dev", "pkg-config"];

/// Crates under `tests/downstream/` that `cargo xtask test` builds and runs.
const DOWNSTREAM: [&str; 1] = ["uma_wmmse"];

fn main() {
    if let Err(e) = run() {
        eprintln!("xtask: {e:#}");
        std::process::exit(1);
    }
}

fn run() -> Result<()> {
    let mut args = std::env::args().skip(1);
    let cmd = args.next().unwrap_or_default();
    let rest: Vec<String> = args.collect();
    let root = workspace_root();
    std::env::set_current_dir(&root).with_context(|| format!("entering {}", root.display()))?;
    match cmd.as_str() {
        "reproduce" => {
            ensure_system_deps()?;
            let mut a =
                vec!["run", "--release", "--locked", "-p", "beamlab-eval", "--bin", "beamlab", "--", "reproduce"];
            a.extend(rest.iter().map(String::as_str));
            cargo(&a, &[])
        }
        "test" => {
            ensure_system_deps()?;
            let mut a = vec!["test", "--workspace", "--locked"];
            a.extend(rest.iter().map(String::as_str));
            cargo(&a, &[])?;
            // The downstream users: crates outside the workspace that depend on library crates by
            // path with only their declared dependencies and features.
            for krate in DOWNSTREAM {
                let manifest = format!("tests/downstream/{krate}/Cargo.toml");
                let target = format!("target/downstream/{krate}");
                cargo(&["run", "--release", "--locked", "--manifest-path", &manifest, "--target-dir", &target], &[])?;
            }
            Ok(())
        }
        "publish-check" => {
            // `cargo publish --dry-run` of every library crate in dependency order (cargo orders
            // the workspace's packages and verifies each against the others, nothing uploaded).
            ensure_system_deps()?;
            cargo(&["publish", "--workspace", "--dry-run", "--locked"], &[])
        }
        "bless" => {
            ensure_system_deps()?;
            cargo(&["test", "--locked", "-p", "beamlab-tests", "--test", "golden"], &[("BEAMLAB_BLESS", "1")])?;
            println!("golden values rewritten under tests/golden/: review `git diff tests/golden` before committing");
            Ok(())
        }
        "bench" => {
            ensure_system_deps()?;
            // `cargo xtask bench` runs every benchmark; extra arguments go to `cargo bench` as they
            // are (`cargo xtask bench -p beamlab-kan --bench ggml -- n64`).
            let mut a = vec!["bench", "--locked"];
            if rest.is_empty() {
                a.push("--workspace");
            }
            a.extend(rest.iter().map(String::as_str));
            cargo(&a, &[])
        }
        "deps" => ensure_system_deps(),
        _ => {
            eprintln!(
                "usage: cargo xtask <reproduce [--profile quick|paper] [--only NAME…] | test | bless | bench | publish-check | deps>"
            );
            bail!("unknown command {cmd:?}")
        }
    }
}

fn workspace_root() -> PathBuf {
    let dir = std::env::var("CARGO_MANIFEST_DIR").map(PathBuf::from).unwrap_or_else(|_| PathBuf::from("xtask"));
    dir.parent().map(Path::to_path_buf).unwrap_or(dir)
}

fn cargo(args: &[&str], env: &[(&str, &str)]) -> Result<()> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut c = Command::new(cargo);
    c.args(args).env("OPENBLAS_NUM_THREADS", "1");
    // candle 0.11 re-reads /proc/cpuinfo on every CPU matmul unless RAYON_NUM_THREADS is set
    // (about 8 µs each, half of GLNN's time); setting it to the core count changes nothing else.
    if std::env::var_os("RAYON_NUM_THREADS").is_none() {
        let n = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
        c.env("RAYON_NUM_THREADS", n.to_string());
    }
    // candle's spinning barrier pool for element-wise ops competes with rayon's per-sample
    // parallelism (4-10x slower GGML on 2 cores); beamlab parallelises across samples instead.
    if std::env::var_os("CANDLE_NUM_THREADS").is_none() {
        c.env("CANDLE_NUM_THREADS", "1");
    }
    // glibc returns freed memory to the OS eagerly by default; the learning loops allocate and
    // free the same tensor sizes every step, and the page faults doubled GGML's wall time.
    for var in ["MALLOC_TRIM_THRESHOLD_", "MALLOC_MMAP_THRESHOLD_"] {
        if std::env::var_os(var).is_none() {
            c.env(var, "268435456");
        }
    }
    for (k, v) in env {
        c.env(k, v);
    }
    let status = c.status().context("running cargo")?;
    if !status.success() {
        bail!("cargo {} failed ({status})", args.join(" "));
    }
    Ok(())
}

fn have_openblas() -> bool {
    let lib_present =
        ["/usr/lib/x86_64-linux-gnu", "/usr/lib/aarch64-linux-gnu", "/usr/lib64", "/usr/lib", "/usr/local/lib"]
            .iter()
            .any(|d| Path::new(d).join("libopenblas.so").exists());
    let pkg_config_bin = Command::new("pkg-config").arg("--version").output().is_ok();
    lib_present && pkg_config_bin
}

fn ensure_system_deps() -> Result<()> {
    if have_openblas() {
        return Ok(());
    }
    let install = format!("apt-get install -y {}", PACKAGES.join(" "));
    if !Path::new("/etc/debian_version").exists() {
        bail!(
            "the OpenBLAS/LAPACK system library was not found. Install OpenBLAS development files and pkg-config \
             with your package manager (Debian/Ubuntu: `sudo apt-get update && sudo {install}`)."
        );
    }
    let is_root = Command::new("id").arg("-u").output().is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0");
    let prefix: Vec<&str> = if is_root {
        vec![]
    } else if Command::new("sudo").args(["-n", "true"]).status().is_ok_and(|s| s.success()) {
        vec!["sudo", "-n"]
    } else {
        bail!(
            "the OpenBLAS/LAPACK system library was not found and this user cannot install packages. Run:\n    \
             sudo apt-get update && sudo {install}"
        );
    };
    let run = |args: &[&str]| -> Result<bool> {
        let mut all: Vec<&str> = prefix.clone();
        all.extend_from_slice(args);
        eprintln!("xtask: {}", all.join(" "));
        let status = Command::new(all[0])
            .args(&all[1..])
            .env("DEBIAN_FRONTEND", "noninteractive")
            .status()
            .with_context(|| format!("running {}", all[0]))?;
        Ok(status.success())
    };
    let known = Command::new("apt-cache").args(["show", PACKAGES[0]]).output().is_ok_and(|o| o.status.success());
    if !known && !run(&["apt-get", "update"])? {
        bail!("`apt-get update` failed; run `sudo apt-get update && sudo {install}` by hand");
    }
    let mut args = vec!["apt-get", "install", "-y", "--no-install-recommends"];
    args.extend_from_slice(&PACKAGES);
    if !run(&args)? {
        // A stale package list is the usual cause; refresh once and retry.
        if !(run(&["apt-get", "update"])? && run(&args)?) {
            bail!("installing {} failed; run `sudo apt-get update && sudo {install}` by hand", PACKAGES.join(" "));
        }
    }
    if !have_openblas() {
        bail!("{} installed but libopenblas.so is still not found", PACKAGES.join(" "));
    }
    Ok(())
}
