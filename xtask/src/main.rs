//! `cargo xtask`: the project's two commands and their helpers.
//!
//! - `cargo xtask test`: system packages, fmt check, clippy `-D warnings`, every test
//!   (unit, integration, hardware-in-the-loop through a private pcscd + vpcd).
//! - `cargo xtask demo`: the whole issuance flow on simulated hardware (`--pismo`: the
//!   Pismo chain: counter requests, embossing run, a spoiled card made again; `--hsm`:
//!   issuer keys in a SoftHSM2 token); either fails if its output holds a clear PAN.
//! - `cargo xtask faults`: the fault campaign against a simulated branch (docs/faults.md).
//! - `cargo xtask package`: the Debian package in `target/debian/`.
//! - `cargo xtask deny`: the supply-chain checks (`deny.toml`), also part of `test`.

mod bench;
mod deny;
mod fuzz;
mod package;
mod packages;
mod pan_watch;
mod pcscd;
mod windows;
mod wine;

use std::process::{exit, Command};

fn cargo(args: &[&str], envs: &[(String, String)]) -> Result<(), String> {
    println!("xtask: cargo {}", args.join(" "));
    let status = Command::new(env!("CARGO"))
        .args(args)
        .envs(envs.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .status()
        .map_err(|e| format!("cannot run cargo: {e}"))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("cargo {} failed ({status})", args.join(" ")))
    }
}

/// Starts the private pcscd + vpcd that hardware-in-the-loop runs use.
fn private_pcscd(name: &str) -> Result<pcscd::PrivatePcscd, String> {
    pcscd::build_helper()?;
    let dir = std::env::temp_dir().join(format!("station-{name}-{}", std::process::id()));
    let p = pcscd::PrivatePcscd::start(&dir)
        .map_err(|e| format!("hardware-in-the-loop set-up: {e}"))?;
    println!(
        "xtask: private pcscd + vpcd ready (vpcd port {}, {dir:?})",
        p.vpcd_port()
    );
    Ok(p)
}

fn demo(extra: &[String]) -> Result<(), String> {
    packages::ensure()?;
    // `--pismo`: the Pismo chain (issue 12) instead of orders posted by an issuer backend.
    let pismo = extra.iter().any(|a| a == "--pismo");
    let bin = if pismo { "pismo-demo" } else { "station-demo" };
    let extra: Vec<&String> = extra.iter().filter(|a| *a != "--pismo").collect();
    cargo(
        &["build", "--quiet", "-p", "station-branch", "--bin", bin],
        &[],
    )?;
    let pcscd = private_pcscd("demo")?;
    let mut args = vec!["run", "--quiet", "-p", "station-branch", "--bin", bin, "--"];
    args.extend(extra.iter().map(|s| s.as_str()));
    println!("xtask: cargo {}", args.join(" "));
    // The output is watched: a demo that prints a clear PAN fails.
    let mut cmd = Command::new(env!("CARGO"));
    cmd.args(&args)
        .envs(pcscd.env().iter().map(|(k, v)| (k.as_str(), v.as_str())));
    let r = pan_watch::run(cmd, bin);
    drop(pcscd);
    r
}

/// `cargo xtask faults [--only NAME]`: every fault injection against a simulated branch;
/// ends with `faults: N scenarios, L lost, T issued twice, K surfaced in doubt`.
fn faults(extra: &[String]) -> Result<(), String> {
    let mut args = vec![
        "run",
        "--quiet",
        "-p",
        "station-branch",
        "--bin",
        "station-faults",
        "--",
    ];
    args.extend(extra.iter().map(String::as_str));
    cargo(&args, &[])
}

/// The xtask must build before any system package is installed (it is what installs
/// them): build it in a target dir of its own with no pkg-config library visible.
fn bare_machine_build() -> Result<(), String> {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/bare-xtask");
    cargo(
        &[
            "build",
            "--quiet",
            "-p",
            "xtask",
            "--target-dir",
            &dir.display().to_string(),
        ],
        &[
            ("PKG_CONFIG_LIBDIR".into(), "/nonexistent".into()),
            ("PKG_CONFIG_PATH".into(), String::new()),
        ],
    )
    .map_err(|e| format!("the xtask needs a system library to build: {e}"))
}

fn test() -> Result<(), String> {
    bare_machine_build()?;
    packages::ensure()?;
    packages::ensure_browser()?;
    cargo(&["fmt", "--all", "--", "--check"], &[])?;
    cargo(
        &[
            "clippy",
            "--workspace",
            "--all-targets",
            "--",
            "-D",
            "warnings",
        ],
        &[],
    )?;
    deny::check()?;
    let pcscd = private_pcscd("hil")?;
    // The console's browser test runs (and fails without a browser) only when asked.
    let mut env = pcscd.env();
    env.push(("STATION_BROWSER".into(), "1".into()));
    cargo(&["test", "--workspace", "--no-fail-fast"], &env)?;
    drop(pcscd);
    // The package of the debug build the tests made: the same files, modes, scripts
    // and unit as the release package, without minutes of optimised build.
    let deb = package::build(package::Build::Debug)?;
    package::check(&deb)?;
    fuzz::run(20)?;
    Ok(())
}

/// `cargo xtask hil [ARGS]`: `cargo test ARGS` with a private pcscd + vpcd running, so one
/// hardware-in-the-loop test can be run on its own.
fn hil(args: &[String]) -> Result<(), String> {
    packages::ensure()?;
    let pcscd = private_pcscd("hil")?;
    let mut all = vec!["test"];
    all.extend(args.iter().map(String::as_str));
    let r = cargo(&all, &pcscd.env());
    drop(pcscd);
    r
}

fn main() {
    let all: Vec<String> = std::env::args().skip(1).collect();
    let cmd = all.first().cloned().unwrap_or_default();
    let result = match cmd.as_str() {
        "test" => test(),
        "demo" => demo(&all[1..]),
        "faults" => faults(&all[1..]),
        "bench" => bench::run(),
        "hil" => hil(&all[1..]),
        "fuzz" => fuzz::run(all.get(1).and_then(|s| s.parse().ok()).unwrap_or(600)),
        "setup" => packages::ensure(),
        "deny" => deny::check(),
        "package" => package::package(if all.iter().any(|a| a == "--debug") {
            package::Build::Debug
        } else {
            package::Build::Release
        }),
        "check-windows" => windows::check(),
        _ => {
            eprintln!("usage: cargo xtask <demo [--pismo] [--cards N] [--console] [--hsm]|faults [--only NAME]|test|hil [CARGO TEST ARGS]|package [--debug]|deny|bench|fuzz [SECONDS]|setup|check-windows>");
            exit(2);
        }
    };
    if let Err(e) = result {
        eprintln!("xtask {cmd}: FAILED: {e}");
        exit(1);
    }
    println!("xtask {cmd}: OK");
}
