//! `cargo xtask package`: the Debian package (cargo-deb, installed when missing) into
//! `target/debian/`, and the checks `cargo xtask test` runs on it: the files and their
//! modes as `dpkg-deb -x` unpacks them, the maintainer script's effects, the unit as
//! `systemd-analyze verify` sees it.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask lives in the workspace")
        .to_path_buf()
}

fn run(cmd: &mut Command) -> Result<String, String> {
    let out = cmd
        .output()
        .map_err(|e| format!("cannot run {:?}: {e}", cmd.get_program()))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(format!(
            "{:?} failed ({}): {}{}",
            cmd,
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}

/// Installs cargo-deb with `cargo install --locked` when `cargo deb` is missing.
fn ensure_cargo_deb() -> Result<(), String> {
    let present = Command::new(env!("CARGO"))
        .args(["deb", "--version"])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    if present {
        return Ok(());
    }
    println!("xtask: installing cargo-deb (cargo install cargo-deb --locked)");
    crate::cargo(&["install", "cargo-deb", "--locked"], &[])
}

/// Which build goes into the package.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Build {
    /// Optimised: what ships.
    Release,
    /// The debug build the tests already made: same files, modes and scripts, minutes
    /// cheaper on a small machine; the test checks the package, not the optimiser.
    Debug,
}

/// Builds the package into `target/debian/` and returns its path.
pub fn build(kind: Build) -> Result<PathBuf, String> {
    ensure_cargo_deb()?;
    let out = root().join("target/debian");
    fs::create_dir_all(&out).map_err(|e| format!("{}: {e}", out.display()))?;
    let mut args = vec!["deb", "-p", "station-agent", "--locked"];
    let name;
    if kind == Build::Debug {
        // The plain debug build (up to date after the tests): cargo-deb's own build
        // would change the profile's flags and so rebuild what the tests just built.
        crate::cargo(
            &[
                "build",
                "--quiet",
                "-p",
                "station-agent",
                "--bin",
                "station-agent",
            ],
            &[],
        )?;
        // `--profile dev` maps the `target/release/` assets to `target/debug/`.
        name = out.join("station-agent-test.deb");
        args.extend(["--profile", "dev", "--no-build", "--fast", "--output"]);
        args.push(name.to_str().ok_or("non-UTF-8 target path")?);
    } else {
        name = out.clone();
        args.extend(["--output", out.to_str().ok_or("non-UTF-8 target path")?]);
    }
    crate::cargo(&args, &[])?;
    if kind == Build::Debug {
        return Ok(name);
    }
    let mut debs: Vec<PathBuf> = fs::read_dir(&out)
        .map_err(|e| format!("{}: {e}", out.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.extension().is_some_and(|x| x == "deb")
                && p.file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| n.starts_with("station-agent_"))
        })
        .collect();
    debs.sort_by_key(|p| fs::metadata(p).and_then(|m| m.modified()).ok());
    debs.pop()
        .ok_or_else(|| format!("cargo deb left no .deb in {}", out.display()))
}

/// `cargo xtask package [--debug]`.
pub fn package(kind: Build) -> Result<(), String> {
    crate::packages::ensure()?;
    let deb = build(kind)?;
    check(&deb)?;
    println!("xtask: package {}", deb.display());
    Ok(())
}

fn mode(p: &Path) -> Result<u32, String> {
    fs::symlink_metadata(p)
        .map(|m| m.permissions().mode() & 0o7777)
        .map_err(|e| format!("package lacks {}: {e}", p.display()))
}

fn expect_mode(root: &Path, rel: &str, want: u32) -> Result<(), String> {
    let got = mode(&root.join(rel))?;
    if got != want {
        return Err(format!("{rel}: mode {got:o}, expected {want:o}"));
    }
    println!("xtask:   {rel} {got:o}");
    Ok(())
}

/// The unit's path inside the package (cargo-deb puts it under `lib/` or `usr/lib/`).
fn unit_path(scratch: &Path) -> Result<String, String> {
    ["lib/systemd/system", "usr/lib/systemd/system"]
        .iter()
        .map(|d| format!("{d}/station-agent.service"))
        .find(|p| scratch.join(p).is_file())
        .ok_or_else(|| "package lacks the systemd unit station-agent.service".to_string())
}

/// Checks the package: unpacked files and modes, control fields, the postinst's
/// account and folder set-up (run against recording stand-ins for adduser/install),
/// and `systemd-analyze verify` of the unit where systemd is present.
pub fn check(deb: &Path) -> Result<(), String> {
    println!("xtask: checking {}", deb.display());
    let scratch = std::env::temp_dir().join(format!("station-deb-{}", std::process::id()));
    let _ = fs::remove_dir_all(&scratch);
    let files = scratch.join("root");
    let control = scratch.join("DEBIAN");
    fs::create_dir_all(&files).map_err(|e| e.to_string())?;
    run(Command::new("dpkg-deb").arg("-x").arg(deb).arg(&files))?;
    run(Command::new("dpkg-deb").arg("-e").arg(deb).arg(&control))?;
    let result = check_unpacked(deb, &files, &control);
    let _ = fs::remove_dir_all(&scratch);
    result
}

fn check_unpacked(deb: &Path, files: &Path, control: &Path) -> Result<(), String> {
    expect_mode(files, "usr/bin/station-agent", 0o755)?;
    let help = run(Command::new(files.join("usr/bin/station-agent")).arg("--version"))?;
    if !help.contains("station-agent") {
        return Err(format!(
            "the packaged binary answers --version with {help:?}"
        ));
    }
    let unit = unit_path(files)?;
    expect_mode(files, &unit, 0o644)?;
    expect_mode(
        files,
        "usr/share/doc/station-agent/station.example.toml",
        0o644,
    )?;
    expect_mode(files, "usr/share/doc/station-agent/README.md", 0o644)?;
    let emv = files.join("usr/share/station-agent/emv");
    let profiles = fs::read_dir(&emv)
        .map_err(|e| format!("package lacks {}: {e}", emv.display()))?
        .count();
    if profiles == 0 {
        return Err("package holds no EMV profile under usr/share/station-agent/emv".into());
    }
    println!("xtask:   usr/share/station-agent/emv: {profiles} profile file(s)");

    let fields = run(Command::new("dpkg-deb").arg("-f").arg(deb))?;
    for want in ["Package: station-agent", "pcscd"] {
        if !fields.contains(want) {
            return Err(format!("control fields lack {want:?}:\n{fields}"));
        }
    }
    expect_mode(control, "postinst", 0o755)?;
    check_postinst(&control.join("postinst"))?;
    verify_unit(files, &unit)
}

/// Runs the postinst's own lines (those before the generated systemd snippet, which
/// would act on this machine's systemd) with `getent`, `adduser` and `install`
/// replaced by stand-ins that record their arguments.
fn check_postinst(script: &Path) -> Result<(), String> {
    let text = fs::read_to_string(script).map_err(|e| e.to_string())?;
    run(Command::new("sh").arg("-n").arg(script))?;
    if !text.contains("deb-systemd-helper") {
        return Err("postinst lacks the systemd enable snippet".into());
    }
    let own: String = text
        .lines()
        .take_while(|l| !l.starts_with("# Automatically added"))
        .map(|l| format!("{l}\n"))
        .collect();
    let dir = std::env::temp_dir().join(format!("station-postinst-{}", std::process::id()));
    let bin = dir.join("bin");
    fs::create_dir_all(&bin).map_err(|e| e.to_string())?;
    let log = dir.join("calls");
    for (name, exit) in [("getent", 2), ("adduser", 0), ("install", 0)] {
        let p = bin.join(name);
        fs::write(
            &p,
            format!(
                "#!/bin/sh\necho \"{name} $*\" >> '{}'\nexit {exit}\n",
                log.display()
            ),
        )
        .map_err(|e| e.to_string())?;
        fs::set_permissions(&p, fs::Permissions::from_mode(0o755)).map_err(|e| e.to_string())?;
    }
    let own_path = dir.join("postinst-own");
    fs::write(&own_path, own).map_err(|e| e.to_string())?;
    let path = format!("{}:/usr/bin:/bin", bin.display());
    let ran = run(Command::new("sh")
        .arg(&own_path)
        .arg("configure")
        .env("PATH", path));
    let calls = fs::read_to_string(&log).unwrap_or_default();
    let _ = fs::remove_dir_all(&dir);
    ran?;
    for want in [
        "adduser --system --group --home /var/lib/station-agent --no-create-home station-agent",
        "install -d -m 0750 -o root -g station-agent /etc/station-agent",
        "install -d -m 0700 -o station-agent -g station-agent /var/lib/station-agent",
    ] {
        if !calls.lines().any(|l| l == want) {
            return Err(format!(
                "postinst configure did not run `{want}`; it ran:\n{calls}"
            ));
        }
    }
    println!("xtask:   postinst configure creates the service user, /etc/station-agent 0750 root:station-agent, /var/lib/station-agent 0700");
    Ok(())
}

/// `systemd-analyze verify` of the packaged unit against the unpacked tree.
fn verify_unit(files: &Path, unit: &str) -> Result<(), String> {
    let have_systemd = Command::new("systemd-analyze")
        .arg("--version")
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    if !have_systemd {
        println!("xtask:   systemd-analyze is not installed here: the unit was NOT verified");
        return Ok(());
    }
    // The unit names /usr/bin/station-agent: verify a copy pointing into the scratch root.
    let dir = std::env::temp_dir().join(format!("station-unit-{}", std::process::id()));
    fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
    let text = fs::read_to_string(files.join(unit)).map_err(|e| e.to_string())?;
    let bin = files.join("usr/bin/station-agent");
    let copy = dir.join("station-agent.service");
    fs::write(
        &copy,
        text.replace("/usr/bin/station-agent", &bin.display().to_string()),
    )
    .map_err(|e| e.to_string())?;
    let out = Command::new("systemd-analyze")
        .arg("verify")
        .arg(&copy)
        .output()
        .map_err(|e| format!("cannot run systemd-analyze: {e}"));
    let _ = fs::remove_dir_all(&dir);
    let out = out?;
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    // Lines about other units on this machine are not the package's concern.
    let ours: Vec<&str> = said
        .lines()
        .filter(|l| l.contains("station-agent"))
        .collect();
    if !out.status.success() || !ours.is_empty() {
        return Err(format!("systemd-analyze verify {unit}:\n{said}"));
    }
    println!("xtask:   systemd-analyze verify {unit}: clean");
    Ok(())
}
