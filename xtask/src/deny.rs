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
    // Licences, bans and sources need nothing from the network: always enforced.
    crate::cargo(
        &[
            "deny",
            "--workspace",
            "check",
            "licenses",
            "bans",
            "sources",
        ],
        &[],
    )
    .map_err(|e| {
        format!(
            "{e}: see the report above; an accepted exception goes in deny.toml with its reason"
        )
    })?;
    // Advisories need the RustSec database, which lives on github.com. Where it cannot be
    // fetched, a local copy is used and said to be possibly stale; with no copy at all the
    // step says so in capitals rather than passing as if it had looked.
    let offline = std::env::var("STATION_DENY_OFFLINE").as_deref() == Ok("1")
        || crate::cargo(&["deny", "fetch", "db"], &[]).is_err();
    let mut args = vec!["deny"];
    if offline {
        if !local_db_exists() {
            println!(
                "xtask: WARNING: RustSec advisories NOT CHECKED: the advisory database cannot be \
                 fetched from github.com and there is no local copy under ~/.cargo/advisory-dbs"
            );
            return Ok(());
        }
        println!(
            "xtask: advisory database not fetched (github.com unreachable or STATION_DENY_OFFLINE=1); \
             checking against the local copy under ~/.cargo/advisory-dbs, which may be stale"
        );
        args.push("--offline");
    }
    args.extend(["--workspace", "check", "advisories"]);
    crate::cargo(&args, &[]).map_err(|e| {
        format!(
            "{e}: see the report above; an accepted exception goes in deny.toml with its reason"
        )
    })
}

/// Whether a RustSec database copy is on this machine (cargo-deny's default place).
fn local_db_exists() -> bool {
    std::env::var_os("HOME")
        .map(|h| std::path::Path::new(&h).join(".cargo/advisory-dbs"))
        .and_then(|d| std::fs::read_dir(d).ok())
        .is_some_and(|mut entries| {
            entries.any(|e| {
                e.is_ok_and(|e| e.file_name().to_string_lossy().starts_with("advisory-db"))
            })
        })
}
