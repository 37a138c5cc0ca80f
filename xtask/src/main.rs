//! `cargo xtask`: the project's two commands and their helpers.
//!
//! - `cargo xtask test`: system packages, fmt check, clippy `-D warnings`, every test
//!   (unit, integration, hardware-in-the-loop through a private pcscd + vpcd).
//! - `cargo xtask demo`: the whole issuance flow on simulated hardware (`--pismo`: the
//!   Pismo chain: counter requests, embossing run, a spoiled card made again).

mod bench;
mod fuzz;
mod packages;
mod pcscd;
mod windows;

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
        &["build", "--quiet", "-p", "station-sim", "--bin", bin],
        &[],
    )?;
    let pcscd = private_pcscd("demo")?;
    let mut args = vec!["run", "--quiet", "-p", "station-sim", "--bin", bin, "--"];
    args.extend(extra.iter().map(|s| s.as_str()));
    let r = cargo(&args, &pcscd.env());
    drop(pcscd);
    r
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
    let pcscd = private_pcscd("hil")?;
    cargo(&["test", "--workspace", "--no-fail-fast"], &pcscd.env())?;
    drop(pcscd);
    fuzz::run(20)?;
    Ok(())
}

fn main() {
    let all: Vec<String> = std::env::args().skip(1).collect();
    let cmd = all.first().cloned().unwrap_or_default();
    let result = match cmd.as_str() {
        "test" => test(),
        "demo" => demo(&all[1..]),
        "bench" => bench::run(),
        "fuzz" => fuzz::run(all.get(1).and_then(|s| s.parse().ok()).unwrap_or(600)),
        "setup" => packages::ensure(),
        "check-windows" => windows::check(),
        _ => {
            eprintln!("usage: cargo xtask <demo [--pismo] [--cards N]|test|bench|fuzz [SECONDS]|setup|check-windows>");
            exit(2);
        }
    };
    if let Err(e) = result {
        eprintln!("xtask {cmd}: FAILED: {e}");
        exit(1);
    }
    println!("xtask {cmd}: OK");
}
