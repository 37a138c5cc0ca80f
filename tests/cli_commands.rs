//! The `station-agent` command line as engineers and scripts use it.

use std::process::Command;

fn agent() -> Command {
    Command::new(env!("CARGO_BIN_EXE_station-agent"))
}

fn run(args: &[&str]) -> (i32, String, String) {
    let out = agent().args(args).output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn help_lists_every_command() {
    let (code, out, _) = run(&["--help"]);
    assert_eq!(code, 0);
    for c in [
        "run",
        "check-config",
        "sandbox",
        "keys",
        "card",
        "printer",
        "preview",
        "jobs",
        "staff",
    ] {
        assert!(out.contains(c), "{c} missing from:\n{out}");
    }
}

#[test]
fn a_bad_configuration_exits_2_naming_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("station.toml");
    let text =
        include_str!("../config/station.example.toml").replace("http://127.0.0.1:8480", "ftp:/x");
    std::fs::write(&cfg, text).unwrap();
    let (code, _, err) = run(&["check-config", "--config", cfg.to_str().unwrap()]);
    assert_eq!(code, 2);
    assert!(err.contains("upstream.url"), "{err}");
}

#[test]
fn a_dev_key_set_passes_check_config() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().join("station");
    let (code, out, err) = run(&[
        "keys",
        "init",
        "--dev",
        d.to_str().unwrap(),
        "--station",
        "BR-CLI-01",
        "--hub-state",
        dir.path().join("hub").to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("NOT for production"));
    let (code, out, err) = run(&[
        "check-config",
        "--config",
        d.join("station.toml").to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("configuration OK"));
}

#[test]
fn a_dev_key_set_without_a_hub_names_the_missing_order_signing_key() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().join("station");
    let (code, _, err) = run(&[
        "keys",
        "init",
        "--dev",
        d.to_str().unwrap(),
        "--station",
        "BR-CLI-01",
    ]);
    assert_eq!(code, 0, "{err}");
    let (code, _, err) = run(&[
        "check-config",
        "--config",
        d.join("station.toml").to_str().unwrap(),
    ]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("upstream.order_keys"), "{err}");
}

#[test]
fn preview_writes_a_png_with_ink() {
    let dir = tempfile::tempdir().unwrap();
    let png = dir.path().join("face.png");
    let order = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/orders/instant-valid.json"
    );
    let (code, _, err) = run(&[
        "preview",
        "--order",
        order,
        "--out",
        png.to_str().unwrap(),
        "--config",
        "/nonexistent/station.toml",
    ]);
    assert_eq!(code, 0, "{err}");
    let img = image::open(&png).unwrap().to_luma8();
    assert!(img.pixels().filter(|p| p.0[0] < 128).count() > 500);
}

#[test]
fn printer_status_names_an_unreachable_device() {
    let (code, _, err) = run(&["printer", "status", "--device", "tcp://127.0.0.1:1"]);
    assert_eq!(code, 1);
    assert!(err.contains("127.0.0.1:1"), "{err}");
}

#[test]
fn printer_status_reports_the_simulated_printer_in_words() {
    let sim = station_sim::printer::SimPrinter::new(Default::default());
    let link = sim.spawn_pty().unwrap();
    let (code, out, err) = run(&["printer", "status", "--device", link.path.to_str().unwrap()]);
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains("Evolis Primacy 2") && out.contains("card position: no card"),
        "{out}"
    );
}

#[test]
fn printer_test_card_rejects_on_request() {
    let sim = station_sim::printer::SimPrinter::new(Default::default());
    let link = sim.spawn_pty().unwrap();
    let (code, _, err) = run(&[
        "printer",
        "test-card",
        "--device",
        link.path.to_str().unwrap(),
        "--reject",
    ]);
    assert_eq!(code, 0, "{err}");
    assert!(sim.finished()[0].rejected);
}

#[test]
fn card_read_on_a_missing_reader_names_the_pattern() {
    let out = agent()
        .args(["card", "read", "--reader", "No Such Reader 9000"])
        .env("PCSCLITE_CSOCK_NAME", "/nonexistent/pcscd.comm")
        .output()
        .unwrap();
    assert_ne!(out.status.code(), Some(0));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("No Such Reader 9000"), "{err}");
}

/// `staff add amartin` into `file` with `pin` on standard input.
fn staff_add(file: &std::path::Path, pin: &str) -> std::process::Output {
    use std::io::Write;
    let mut child = agent()
        .args(["staff", "add", "amartin", "--name", "A. Martin", "--file"])
        .arg(file)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(format!("{pin}\n").as_bytes())
        .unwrap();
    child.wait_with_output().unwrap()
}

#[test]
fn staff_add_reads_the_pin_from_standard_input_and_stores_only_its_hash() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("staff.toml");
    let out = staff_add(&file, "482913");
    assert!(out.status.success(), "{out:?}");
    let text = std::fs::read_to_string(&file).unwrap();
    assert!(text.contains("amartin") && text.contains("$argon2id$"));
    assert!(!text.contains("482913"));
    let (code, listed, _) = run(&["staff", "list", "--file", file.to_str().unwrap()]);
    assert_eq!(code, 0);
    assert!(listed.contains("A. Martin"));
    assert!(!listed.contains("argon2"), "hashes are not listed");
}

#[test]
fn staff_add_refuses_a_short_pin_and_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("staff.toml");
    let out = staff_add(&file, "1234");
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("at least 6"));
    assert!(!file.exists());
}
