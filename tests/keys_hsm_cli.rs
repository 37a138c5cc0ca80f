//! `keys init --dev DIR --hsm`, `check-config` and `keys list` with the issuer keys in a
//! SoftHSM2 token: no issuer key value in any file outside the token.

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
