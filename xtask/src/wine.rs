//! The Windows build run under Debian's Wine: the agent's unit tests (service-control
//! decisions included), then the service registered, started and removed through Wine's
//! service manager.
//!
//! What Wine cannot show, and so this does not claim: PC/SC (Wine's winscard answers
//! every call with an internal error, so the agent never reaches RUNNING and the stop
//! control is not exercised), recovery actions on failure exit codes (Wine refuses that
//! configuration level, which is how the installer's roll-back gets tested instead),
//! virtual service accounts, folder ACLs and pre-shutdown.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use crate::windows::TARGET;

/// Debian packages that run 64-bit Windows programs.
pub const PACKAGES: &[&str] = &["wine", "wine64"];

/// The service name the agent registers (`src/service/spec.rs`).
const SERVICE: &str = "station-agent";

/// Where the agent lives inside the prefix, as Windows sees it and as Linux does.
const STATION_DIR: &str = r"C:\station";

/// Runs the agent's unit tests under Wine, then the service cycle.
pub fn check() -> Result<(), String> {
    let prefix = Prefix::ready()?;
    unit_tests(&prefix)?;
    service_cycle(&prefix)
}

/// A private Wine prefix under `target/`, so the user's `~/.wine` is never touched.
struct Prefix {
    dir: PathBuf,
}

impl Prefix {
    fn ready() -> Result<Prefix, String> {
        let dir = target_dir().join("wine-prefix");
        let prefix = Prefix { dir };
        if !prefix.dir.join("system.reg").exists() {
            println!("xtask: creating the Wine prefix {}", prefix.dir.display());
            let out = prefix.wine(&["wineboot", "--init"])?;
            if !out.status.success() {
                return Err(format!("wineboot --init failed: {}", text(&out)));
            }
        }
        prefix.install_process_prng()?;
        Ok(prefix)
    }

    /// Rust's standard library (1.78+) needs `ProcessPrng` from bcryptprimitives.dll,
    /// which Wine 8 lacks; a stand-in built from `xtask/wine/` goes into this prefix only.
    fn install_process_prng(&self) -> Result<(), String> {
        let dll = self
            .dir
            .join("drive_c/windows/system32/bcryptprimitives.dll");
        if dll.exists() {
            return Ok(());
        }
        let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("wine");
        let status = Command::new("x86_64-w64-mingw32-gcc")
            .args(["-shared", "-O2", "-o"])
            .arg(&dll)
            .arg(src.join("bcryptprimitives.c"))
            .arg(src.join("bcryptprimitives.def"))
            .arg("-ladvapi32")
            .status()
            .map_err(|e| format!("cannot run x86_64-w64-mingw32-gcc: {e}"))?;
        if status.success() {
            Ok(())
        } else {
            Err(format!(
                "building the bcryptprimitives stand-in failed ({status})"
            ))
        }
    }

    fn envs(&self) -> Vec<(String, String)> {
        vec![
            ("WINEPREFIX".into(), self.dir.display().to_string()),
            ("WINEDEBUG".into(), "-all".into()),
            // No Mono or Gecko download prompts in a headless run.
            ("WINEDLLOVERRIDES".into(), "mscoree,mshtml=".into()),
        ]
    }

    fn wine(&self, args: &[&str]) -> Result<Output, String> {
        Command::new("wine")
            .args(args)
            .envs(self.envs())
            .output()
            .map_err(|e| format!("cannot run wine: {e}"))
    }

    /// `C:\station` as a Linux path.
    fn station_dir(&self) -> PathBuf {
        self.dir.join("drive_c/station")
    }
}

fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../target"))
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn unit_tests(prefix: &Prefix) -> Result<(), String> {
    let mut envs = prefix.envs();
    envs.push((
        "CARGO_TARGET_X86_64_PC_WINDOWS_GNU_RUNNER".into(),
        "wine".into(),
    ));
    crate::cargo(
        &["test", "--target", TARGET, "-p", "station-agent", "--lib"],
        &envs,
    )
}

/// Install (refused by Wine at the recovery step, and rolled back), then the installer's
/// own command line registered with `sc create`: started with no configuration it stops
/// with the configuration code; started with a configuration whose printer is
/// unreachable it stops with the agent code and the log names the printer; the agent's
/// `service uninstall` removes it.
fn service_cycle(prefix: &Prefix) -> Result<(), String> {
    crate::cargo(
        &[
            "build",
            "--target",
            TARGET,
            "-p",
            "station-agent",
            "--bin",
            "station-agent",
        ],
        &[],
    )?;
    let station = prefix.station_dir();
    let _ = std::fs::remove_dir_all(&station);
    std::fs::create_dir_all(&station).map_err(|e| format!("{}: {e}", station.display()))?;
    let built = target_dir().join(TARGET).join("debug/station-agent.exe");
    std::fs::copy(&built, station.join("station-agent.exe"))
        .map_err(|e| format!("copying {}: {e}", built.display()))?;
    let exe = format!(r"{STATION_DIR}\station-agent.exe");
    // A service left over from an interrupted run would make every step below lie.
    let _ = prefix.wine(&["sc", "stop", SERVICE]);
    let _ = prefix.wine(&["sc", "delete", SERVICE]);

    let dev = format!(r"{STATION_DIR}\dev");
    let dev_config = format!(r"{dev}\station.toml");
    let out = prefix.wine(&[
        &exe,
        "keys",
        "init",
        "--dev",
        &dev,
        "--station",
        "BR-WINE-01",
        "--printer",
        "tcp://127.0.0.1:9",
        "--hub-state",
        &format!(r"{STATION_DIR}\hub"),
    ])?;
    expect(out.status.success(), "keys init --dev under Wine", &out)?;
    let out = prefix.wine(&[&exe, "check-config", "--config", &dev_config])?;
    expect(out.status.success(), "check-config under Wine", &out)?;
    println!("xtask: wine: development configuration written and checked");

    let out = prefix.wine(&[
        &exe,
        "service",
        "install",
        "--account",
        "LocalSystem",
        "--config",
        &dev_config,
    ])?;
    let said = text(&out);
    expect(
        !out.status.success() && said.contains("SVC_MANAGER"),
        "service install refused by Wine's service manager with a [SVC_MANAGER] error",
        &out,
    )?;
    expect(
        !registered(prefix)?,
        "a half-configured service rolled back (not left registered)",
        &out,
    )?;
    println!("xtask: wine: service install refused at the recovery settings and rolled back");

    let missing = format!(r"{STATION_DIR}\missing\station.toml");
    let log = station.join("missing/logs/station-agent.log");
    start_expecting_stop(prefix, &exe, &missing, &log, "[CFG_READ]", Some(2))?;
    println!(
        "xtask: wine: no configuration: STOPPED, service-specific code 2, log says [CFG_READ]"
    );

    let log = station.join("dev/logs/station-agent.log");
    let code = start_expecting_stop(
        prefix,
        &exe,
        &dev_config,
        &log,
        "printer tcp://127.0.0.1:9",
        Some(1),
    )?;
    println!(
        "xtask: wine: printer unreachable: STOPPED, {}, log names the printer",
        seen(code)
    );

    let bin_path = format!("{exe} service run --config {dev_config}");
    let out = prefix.wine(&["sc", "create", SERVICE, "binPath=", &bin_path])?;
    expect(out.status.success(), "sc create", &out)?;
    let out = prefix.wine(&[&exe, "service", "uninstall"])?;
    expect(out.status.success(), "service uninstall", &out)?;
    expect(!registered(prefix)?, "service gone after uninstall", &out)?;
    println!("xtask: wine: service uninstall removed it");
    Ok(())
}

fn seen(code: Option<u32>) -> String {
    match code {
        Some(c) => format!("service-specific code {c}"),
        None => "exit code not kept by Wine".into(),
    }
}

fn expect(ok: bool, what: &str, out: &Output) -> Result<(), String> {
    if ok {
        Ok(())
    } else {
        Err(format!(
            "wine: expected {what}; got {}: {}",
            out.status,
            text(out)
        ))
    }
}

fn registered(prefix: &Prefix) -> Result<bool, String> {
    Ok(prefix.wine(&["sc", "query", SERVICE])?.status.success())
}

/// Registers the installer's command line for `config`, starts it, and waits for it to
/// stop with `log_says` in its log. Wine forgets the exit code once the process is gone,
/// so the code is checked only when Wine's answer still carries it.
fn start_expecting_stop(
    prefix: &Prefix,
    exe: &str,
    config: &str,
    log: &Path,
    log_says: &str,
    code: Option<u32>,
) -> Result<Option<u32>, String> {
    let _ = prefix.wine(&["sc", "delete", SERVICE]);
    let bin_path = format!("{exe} service run --config {config}");
    let out = prefix.wine(&["sc", "create", SERVICE, "binPath=", &bin_path])?;
    expect(out.status.success(), "sc create", &out)?;
    let out = prefix.wine(&["sc", "start", SERVICE])?;
    let mut answers = vec![text(&out)];
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let answer = text(&prefix.wine(&["sc", "query", SERVICE])?);
        let stopped = answer.contains("STOPPED");
        answers.push(answer);
        if stopped {
            break;
        }
        if Instant::now() > deadline {
            return Err(format!(
                "wine: {config}: the service did not stop within 60 s: {}",
                answers.join("\n")
            ));
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    let reported = answers
        .iter()
        .filter(|a| a.contains("1066"))
        .find_map(|a| service_exit_code(a));
    if let (Some(expected), Some(reported)) = (code, reported) {
        if reported != expected {
            return Err(format!(
                "wine: {config}: service-specific exit code {reported}, expected {expected}"
            ));
        }
    }
    let written = std::fs::read_to_string(log)
        .map_err(|e| format!("wine: the service log {}: {e}", log.display()))?;
    if !written.contains(log_says) {
        return Err(format!(
            "wine: the service log {} does not say {log_says:?}: {written}",
            log.display()
        ));
    }
    let _ = prefix.wine(&["sc", "delete", SERVICE]);
    Ok(reported)
}

/// `SERVICE_EXIT_CODE  : 2  (0x2)` → 2.
fn service_exit_code(answer: &str) -> Option<u32> {
    answer
        .lines()
        .find(|l| l.trim_start().starts_with("SERVICE_EXIT_CODE"))
        .and_then(|l| l.split(':').nth(1))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
}

#[cfg(test)]
mod tests {
    use super::service_exit_code;

    #[test]
    fn the_service_specific_code_is_read_from_sc_query() {
        let answer = "SERVICE_NAME: station-agent\n        STATE              : 1  STOPPED\n        WIN32_EXIT_CODE    : 1066  (0x42a)\n        SERVICE_EXIT_CODE  : 2  (0x2)\n";
        assert_eq!(service_exit_code(answer), Some(2));
    }
}
