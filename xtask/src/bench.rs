//! `cargo xtask bench`: benchmarks that print ratios against their floors, never
//! pass/fail on time.
//!
//! - personalization session vs replaying its identical APDUs to a 9000 card, through
//!   a private pcscd + vpcd, and in-process; STORE DATA count packed vs one per DGI;
//! - pipeline throughput vs the simulated printer's mechanical limit, at ten times the
//!   printer's speed and at its own speed; idle cost;
//! - console `GET /api/jobs` p99 latency while 20 cards are produced, and preparations
//!   per card (1.00: no card prepared twice);
//! - the customer's wait, Start to card in the tray, vs the printer's mechanical floor
//!   for that card and their ratio, on a 115200-baud serial printer model, with the
//!   panel sent with the print and downloaded while the chip is written.
//! - preparation + personalization per card with the software key store and with the
//!   PKCS#11 store on SoftHSM2, and their ratio.

use std::process::Command;

fn example(name: &str, args: &[&str], envs: &[(String, String)]) -> Result<(), String> {
    let status = Command::new(env!("CARGO"))
        .args([
            "run",
            "--quiet",
            "--release",
            "-p",
            "station-branch",
            "--example",
            name,
            "--",
        ])
        .args(args)
        .envs(envs.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .env_remove("STATION_HIL_VPCD_PORT")
        .envs(
            envs.iter()
                .filter(|(k, _)| k == "STATION_HIL_VPCD_PORT")
                .map(|(k, v)| (k.as_str(), v.as_str())),
        )
        .status()
        .map_err(|e| format!("cannot run cargo: {e}"))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("benchmark {name} failed ({status})"))
    }
}

/// Runs every benchmark.
pub fn run() -> Result<(), String> {
    crate::packages::ensure()?;
    crate::cargo(
        &[
            "build",
            "--quiet",
            "--release",
            "-p",
            "station-branch",
            "--examples",
        ],
        &[],
    )?;
    example("perso_bench", &[], &[])?;
    let pcscd = crate::private_pcscd("bench")?;
    example("perso_bench", &[], &pcscd.env())?;
    drop(pcscd);
    // Ten times faster than the printer: software time weighs ten times more.
    example("throughput", &["20", "0.1"], &[])?;
    // The printer's own speed: the run the >= 0.99 target is about.
    example("throughput", &["6", "1.0"], &[])?;
    // Console `GET /api/jobs` p99 while 20 cards are produced, and preparations per card.
    example("console_latency", &["20", "0.1"], &[])?;
    // The customer's wait vs the mechanical floor on a serial printer, at its own speed.
    example("counter_wait", &["3", "1.0"], &[])?;
    // Issuer keys in a file vs in a PKCS#11 token.
    example("keystore_bench", &[], &[])
}
