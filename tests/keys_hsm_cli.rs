//! `keys init --dev DIR --hsm`, `check-config` and `keys list` with the issuer keys in a
//! SoftHSM2 token: no issuer key value in any file outside the token.

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;

fn run(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_station-agent"))
        .args(args)
        .env_remove("SOFTHSM2_CONF")
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Development IMK 01 (the Option A vector), CVK A and the KMC, as hex.
const IMK: &str = "0123456789ABCDEFFEDCBA9876543210";
const CVK_A: &str = "0123456789ABCDEF";
const KMC: &str = "404142434445464748494A4B4C4D4E4F";

fn files(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            files(&p, out);
        } else {
            out.push(p);
        }
    }
}

fn init(dir: &Path) -> std::path::PathBuf {
    let d = dir.join("station");
    let hub = dir.join("hub");
    let (code, out, err) = run(&[
        "keys",
        "init",
        "--dev",
        d.to_str().unwrap(),
        "--hsm",
        "--hub-state",
        hub.to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("SoftHSM2 token"), "{out}");
    d
}

#[test]
fn an_hsm_dev_station_passes_check_config_and_lists_labels_and_check_values() {
    let dir = tempfile::tempdir().unwrap();
    let d = init(dir.path());
    let cfg = d.join("station.toml");
    let (code, out, err) = run(&["check-config", "--config", cfg.to_str().unwrap()]);
    assert_eq!(code, 0, "{out}{err}");
    let (code, out, err) = run(&["keys", "list", "--config", cfg.to_str().unwrap()]);
    assert_eq!(code, 0, "{out}{err}");
    // imk.01.ac is the Option A vector key: KCV 08D7B4.
    assert!(
        out.lines()
            .any(|l| l.starts_with("imk.01.ac") && l.ends_with("08D7B4")),
        "{out}"
    );
    for label in ["cvk.01", "transport.DEV-VISA.kmc", "imk.02.smc"] {
        assert!(out.contains(label), "{label} missing:\n{out}");
    }
    for value in [IMK, CVK_A, KMC] {
        assert!(
            !out.to_uppercase().contains(value),
            "key value listed:\n{out}"
        );
    }
}

#[test]
fn no_issuer_key_value_is_written_outside_the_token() {
    let dir = tempfile::tempdir().unwrap();
    let d = init(dir.path());
    let mut all = Vec::new();
    files(&d, &mut all);
    for f in all.iter().filter(|f| !f.starts_with(d.join("hsm/tokens"))) {
        let text = String::from_utf8_lossy(&std::fs::read(f).unwrap()).to_uppercase();
        assert!(!text.contains(IMK), "{} holds the IMK", f.display());
        assert!(!text.contains(CVK_A), "{} holds the CVK", f.display());
        // The simulated blank cards hold their own keys, as real cards do in the chip.
        if !f.ends_with("card-stock.toml") {
            assert!(!text.contains(KMC), "{} holds the KMC", f.display());
        }
    }
}

#[test]
fn check_config_refuses_the_development_keys_outside_development() {
    let dir = tempfile::tempdir().unwrap();
    let d = init(dir.path());
    let cfg = d.join("station.toml");
    let text = std::fs::read_to_string(&cfg).unwrap();
    std::fs::write(&cfg, text.replace("development = true\n", "")).unwrap();
    let (code, out, err) = run(&["check-config", "--config", cfg.to_str().unwrap()]);
    assert_eq!(code, 2, "{out}{err}");
    assert!(
        err.contains("keys.pkcs11") && err.contains("development keys"),
        "{err}"
    );
}

/// One secret key as `pkcs11-tool -O` shows it.
#[derive(Debug)]
struct TokenKey {
    label: String,
    /// The `Usage:` line's entries (`encrypt`, `derive`, …; `none` when it may do nothing).
    usage: BTreeSet<String>,
    /// The `Access:` line's entries (`sensitive`, `always sensitive`, `extractable`,
    /// `never extractable`, `local`, …), whole: `never extractable` is not `extractable`.
    access: BTreeSet<String>,
}

/// A comma-separated line of `pkcs11-tool -O` as its entries.
fn entries(line: &str) -> BTreeSet<String> {
    line.split(',')
        .map(|e| e.trim().to_string())
        .filter(|e| !e.is_empty())
        .collect()
}

/// Each key object `pkcs11-tool -O` lists (OpenSC, `cargo xtask setup` installs it),
/// read from the token the way an administrator would.
fn token_objects(station: &Path) -> Vec<TokenKey> {
    let pin = std::fs::read_to_string(station.join("hsm/station-dev.pin")).unwrap();
    let out = Command::new("pkcs11-tool")
        .args([
            "--module",
            "/usr/lib/softhsm/libsofthsm2.so",
            "--token-label",
            "station-dev",
            "--login",
            "--pin",
            pin.trim(),
            "-O",
        ])
        .env("SOFTHSM2_CONF", station.join("hsm/softhsm2.conf"))
        .output()
        .expect("pkcs11-tool (OpenSC) is installed: cargo xtask setup");
    assert!(out.status.success(), "{out:?}");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let mut objects = Vec::new();
    for block in text.split("Secret Key Object").skip(1) {
        let field = |name: &str| {
            block
                .lines()
                .find_map(|l| l.trim().strip_prefix(name))
                .map(|v| v.trim().to_string())
                .unwrap_or_default()
        };
        objects.push(TokenKey {
            label: field("label:"),
            usage: entries(&field("Usage:")),
            access: entries(&field("Access:")),
        });
    }
    objects
}

#[test]
fn keys_init_writes_keys_that_may_do_only_what_their_role_needs() {
    // docs/keys.md "What each key may do": IMKs and diversifying KMCs only derive, CVKs
    // only encrypt; none decrypts, unwraps, verifies or can be extracted.
    let dir = tempfile::tempdir().unwrap();
    let d = init(dir.path());
    let objects = token_objects(&d);
    // Six IMKs (01, 02), two CVK objects, two KMCs.
    assert_eq!(objects.len(), 10, "{objects:?}");
    for key in &objects {
        let label = &key.label;
        let expected = if label.starts_with("imk.") || label.starts_with("transport.") {
            "derive"
        } else if label.starts_with("cvk.") {
            "encrypt"
        } else {
            panic!("unexpected key {label}")
        };
        assert_eq!(key.usage, entries(expected), "{key:?}");
        assert!(key.access.contains("sensitive"), "{key:?}");
        assert!(!key.access.contains("extractable"), "{key:?}");
    }
}
