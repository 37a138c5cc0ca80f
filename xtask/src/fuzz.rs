//! Coverage-guided fuzzing of the EMV parsers (`fuzz/`) on the stable toolchain:
//! libFuzzer with SanitizerCoverage instrumentation, as cargo-fuzz builds it minus
//! the sanitizer (which needs nightly).

use std::path::Path;
use std::process::Command;

const TARGETS: &[&str] = &["tlv_parse", "dgi_build"];

const RUSTFLAGS: &str = "-Cpasses=sancov-module -Cllvm-args=-sanitizer-coverage-level=4 \
    -Cllvm-args=-sanitizer-coverage-inline-8bit-counters \
    -Cllvm-args=-sanitizer-coverage-pc-table \
    -Cllvm-args=-sanitizer-coverage-trace-compares --cfg fuzzing";

fn host_triple() -> Result<String, String> {
    let out = Command::new("rustc")
        .arg("-vV")
        .output()
        .map_err(|e| format!("rustc: {e}"))?;
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .find_map(|l| l.strip_prefix("host: ").map(str::to_string))
        .ok_or_else(|| "rustc -vV names no host".into())
}

/// Builds the fuzz targets and runs each for `seconds`; any crash fails.
pub fn run(seconds: u64) -> Result<(), String> {
    let triple = host_triple()?;
    println!("xtask: building fuzz targets (instrumented, {triple})");
    let status = Command::new(env!("CARGO"))
        .args([
            "build",
            "--quiet",
            "--release",
            "--target",
            &triple,
            "--manifest-path",
            "fuzz/Cargo.toml",
        ])
        .env("RUSTFLAGS", RUSTFLAGS)
        .env("CARGO_TARGET_DIR", "fuzz/target")
        .status()
        .map_err(|e| format!("cannot run cargo: {e}"))?;
    if !status.success() {
        return Err("building the fuzz targets failed".into());
    }
    for t in TARGETS {
        let corpus = Path::new("fuzz/corpus").join(t);
        std::fs::create_dir_all(&corpus).map_err(|e| e.to_string())?;
        let bin = Path::new("fuzz/target")
            .join(&triple)
            .join("release")
            .join(t);
        println!("xtask: fuzzing {t} for {seconds} s");
        let out = Command::new(&bin)
            .arg(&corpus)
            .arg(format!("-max_total_time={seconds}"))
            .arg("-print_final_stats=1")
            .output()
            .map_err(|e| format!("{}: {e}", bin.display()))?;
        let log = String::from_utf8_lossy(&out.stderr);
        let runs = log
            .lines()
            .find(|l| l.starts_with("stat::number_of_executed_units"))
            .unwrap_or("stat::number_of_executed_units: ?");
        if !out.status.success() {
            let tail: Vec<&str> = log.lines().rev().take(30).collect();
            return Err(format!(
                "fuzz target {t} found a failure (artifacts in fuzz/):\n{}",
                tail.into_iter().rev().collect::<Vec<_>>().join("\n")
            ));
        }
        println!("xtask: {t}: no failure ({runs})");
    }
    Ok(())
}
