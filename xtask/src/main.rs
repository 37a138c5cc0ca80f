//! `cargo xtask`: placeholder until the full task runner lands.
use std::process::{exit, Command};

fn run(args: &[&str]) {
    let ok = Command::new("cargo")
        .args(args)
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    if !ok {
        eprintln!("xtask: cargo {} failed", args.join(" "));
        exit(1);
    }
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
            run(&["test", "--workspace"]);
        }
        _ => {
            eprintln!("usage: cargo xtask test");
            exit(2);
        }
    }
}
