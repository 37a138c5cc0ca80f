//! Supply chain: `cargo deny check` against `deny.toml` (RustSec advisories, licences,
//! duplicate versions as warnings, crates.io as the only source). cargo-deny is
//! installed with `cargo install --locked` when missing.

use std::process::Command;

fn installed() -> bool {
    Command::new(env!("CARGO"))
        .args(["deny", "--version"])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false)
}

/// Runs every cargo-deny check; fails on any error (warnings are printed).
pub fn check() -> Result<(), String> {
    if !installed() {
        println!("xtask: installing cargo-deny (cargo install cargo-deny --locked)");
        crate::cargo(&["install", "cargo-deny", "--locked"], &[])?;
    }
    let mut args = vec!["deny"];
    // Where github.com cannot be reached, the advisory database already under
    // ~/.cargo/advisory-dbs is used as it is (said plainly: it may be stale).
    if std::env::var("STATION_DENY_OFFLINE").as_deref() == Ok("1") {
        println!(
            "xtask: STATION_DENY_OFFLINE=1: advisory database NOT fetched; using the local copy"
        );
        args.push("--offline");
    }
    args.extend([
        "--workspace",
        "check",
        "advisories",
        "licenses",
        "bans",
        "sources",
    ]);
    crate::cargo(&args, &[]).map_err(|e| {
        format!(
            "{e}: see the report above; an accepted exception goes in deny.toml with its reason"
        )
    })
}
