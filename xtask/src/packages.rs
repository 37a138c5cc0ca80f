//! System packages the build and the hardware-in-the-loop tests need, installed on
//! Debian/Ubuntu when missing (with sudo when not root).

use std::process::Command;

/// Debian packages: PC/SC headers and daemon, the virtual reader driver, TLS headers,
/// SoftHSM2 (the PKCS#11 key store's tests and `keys init --hsm`) and OpenSC's
/// `pkcs11-tool` (inspecting a token by hand).
pub const NEEDED: &[&str] = &[
    "pkg-config",
    "softhsm2",
    "opensc",
    "libssl-dev",
    "libpcsclite-dev",
    "pcscd",
    "vsmartcard-vpcd",
    "socat",
];

/// Debian packages of the console's browser test (`tests/console_browser.rs`): headless
/// Chromium and its WebDriver server.
pub const BROWSER: &[&str] = &["chromium", "chromium-driver"];

/// Programs the browser test starts; `cargo xtask test` fails when they are missing.
pub const BROWSER_PROGRAMS: &[&str] = &["/usr/bin/chromium", "/usr/bin/chromedriver"];

/// Installs the browser test's packages and checks its programs are there.
pub fn ensure_browser() -> Result<(), String> {
    ensure_packages(BROWSER)?;
    let missing: Vec<&str> = BROWSER_PROGRAMS
        .iter()
        .copied()
        .filter(|p| !std::path::Path::new(p).is_file())
        .collect();
    if missing.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "the console browser test needs {} after installing {}",
            missing.join(", "),
            BROWSER.join(" ")
        ))
    }
}

fn installed(pkg: &str) -> bool {
    Command::new("dpkg-query")
        .args(["-W", "-f=${Status}", pkg])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).contains("install ok installed"))
        .unwrap_or(false)
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

/// Installs whatever of [`NEEDED`] is missing; an error says what to install by hand.
pub fn ensure() -> Result<(), String> {
    ensure_packages(NEEDED)
}

/// Installs whatever of `needed` is missing; an error says what to install by hand.
pub fn ensure_packages(needed: &[&str]) -> Result<(), String> {
    if Command::new("dpkg-query")
        .arg("--version")
        .output()
        .is_err()
    {
        return Err(format!(
            "this is not a Debian/Ubuntu system: install these packages by hand: {}",
            needed.join(" ")
        ));
    }
    let missing: Vec<&str> = needed.iter().copied().filter(|p| !installed(p)).collect();
    if missing.is_empty() {
        return Ok(());
    }
    println!("xtask: installing system packages: {}", missing.join(" "));
    let prefix: Vec<&str> = if is_root() {
        vec![]
    } else {
        vec!["sudo", "-n"]
    };
    let apt = |args: &[&str]| -> Result<(), String> {
        let mut all: Vec<&str> = prefix.clone();
        all.push("apt-get");
        all.extend_from_slice(args);
        let status = Command::new(all[0])
            .args(&all[1..])
            .env("DEBIAN_FRONTEND", "noninteractive")
            .status()
            .map_err(|e| format!("cannot run {}: {e}", all[0]))?;
        if status.success() {
            Ok(())
        } else {
            Err(format!(
                "'{}' failed; install by hand: sudo apt-get install {}",
                all.join(" "),
                missing.join(" ")
            ))
        }
    };
    apt(&["update", "-qq"])?;
    let mut args = vec!["install", "-y", "-qq", "--no-install-recommends"];
    args.extend(missing.iter().copied());
    apt(&args)?;
    let still: Vec<&str> = missing.iter().copied().filter(|p| !installed(p)).collect();
    if still.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "packages still missing after install: {}",
            still.join(" ")
        ))
    }
}
