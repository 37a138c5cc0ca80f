//! `cargo xtask`: placeholder until the full task runner lands.
use std::process::{exit, Command};

mod pcscd;

fn run(args: &[&str]) {
    if !cargo(args, &[]) {
        exit(1);
    }
}

fn cargo(args: &[&str], envs: &[(String, String)]) -> bool {
    let ok = Command::new("cargo")
        .args(args)
        .envs(envs.iter().cloned())
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    if !ok {
        eprintln!("xtask: cargo {} failed", args.join(" "));
    }
    ok
}

fn main() {
    match std::env::args().nth(1).as_deref() {
        Some("test") => {
            run(&["fmt", "--all", "--", "--check"]);
            run(&[
                "clippy",
                "--workspace",
                "--all-targets",
                "--",
                "-D",
                "warnings",
            ]);
            // The PC/SC HIL tests need a private pcscd + vpcd; it stops before exiting.
            let daemon = private_pcscd();
            let ok = cargo(&["test", "--workspace"], &daemon.env());
            drop(daemon);
            if !ok {
                exit(1);
            }
        }
        Some("hil") => hil(),
        _ => {
            eprintln!("usage: cargo xtask test | hil");
            exit(2);
        }
    }
}

/// Starts the private pcscd + vpcd under target/hil-pcscd, or exits saying why it cannot.
fn private_pcscd() -> pcscd::PrivatePcscd {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask lives in the workspace");
    let workdir = root.join("target").join("hil-pcscd");
    let daemon = pcscd::PrivatePcscd::start(&workdir).unwrap_or_else(|e| {
        eprintln!("xtask: {e}");
        exit(1);
    });
    eprintln!(
        "xtask: private pcscd at {} with vpcd on TCP {} and {}",
        daemon.socket_path().display(),
        daemon.vpcd_port(),
        daemon.vpcd_port() + 1
    );
    daemon
}

/// Runs only the PC/SC hardware-in-the-loop tests; extra arguments go to the test binary.
fn hil() {
    let daemon = private_pcscd();
    let ok = Command::new("cargo")
        .args(["test", "-p", "station-pcsc", "--test", "hil_vpcd", "--"])
        .args(std::env::args().skip(2))
        .envs(daemon.env())
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    drop(daemon);
    if !ok {
        eprintln!("xtask: PC/SC HIL tests failed");
        exit(1);
    }
}
