//! `cargo xtask check-windows`: the Windows build of the agent (service glue included)
//! type-checks and passes clippy, cross-checked from Linux with the MinGW toolchain.
//!
//! Then the Windows build runs under Debian's Wine (`wine.rs`): the agent's unit tests,
//! and the service registered, started and removed through Wine's service manager.

use std::process::Command;
use std::time::Instant;

/// The Rust target the check uses (the GNU ABI, since MSVC cannot run on Linux).
pub const TARGET: &str = "x86_64-pc-windows-gnu";

/// Debian package with the MinGW C compiler that bundled SQLite and OpenSSL need.
pub const MINGW_PACKAGE: &str = "gcc-mingw-w64-x86-64";

fn target_installed() -> bool {
    Command::new("rustup")
        .args(["target", "list", "--installed"])
        .output()
        .map(|o| {
            String::from_utf8_lossy(&o.stdout)
                .lines()
                .any(|l| l == TARGET)
        })
        .unwrap_or(false)
}

fn ensure_target() -> Result<(), String> {
    if target_installed() {
        return Ok(());
    }
    println!("xtask: adding the Rust target {TARGET}");
    let status = Command::new("rustup")
        .args(["target", "add", TARGET])
        .status()
        .map_err(|e| {
            format!("cannot run rustup ({e}); install the target: rustup target add {TARGET}")
        })?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("'rustup target add {TARGET}' failed ({status})"))
    }
}

/// Installs what is missing, runs clippy `-D warnings` on the agent for Windows, then
/// the Windows build under Wine.
pub fn check() -> Result<(), String> {
    let mut packages = vec![MINGW_PACKAGE];
    packages.extend_from_slice(crate::wine::PACKAGES);
    crate::packages::ensure_packages(&packages)?;
    ensure_target()?;
    let started = Instant::now();
    let result = crate::cargo(
        &[
            "clippy",
            "--target",
            TARGET,
            "-p",
            "station-agent",
            "--",
            "-D",
            "warnings",
        ],
        &[],
    );
    println!(
        "xtask: Windows clippy took {:.0} s",
        started.elapsed().as_secs_f64()
    );
    result?;
    let started = Instant::now();
    let result = crate::wine::check();
    println!(
        "xtask: Windows tests under Wine took {:.0} s",
        started.elapsed().as_secs_f64()
    );
    result
}
