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

/// The PAN region of a card face (the standard layout's box for the number).
fn pan_region(img: &image::GrayImage) -> Vec<u8> {
    use station_agent::plastic::face::{FieldKind, Layout};
    let r = Layout::standard().field_box(FieldKind::Pan).unwrap();
    image::imageops::crop_imm(img, r.x, r.y, r.w, r.h)
        .to_image()
        .into_raw()
}

#[test]
fn preview_of_a_real_order_prints_the_pan_masked_never_in_clear() {
    use station_agent::plastic::face::{render_front, FaceInput, Layout};
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().join("station");
    let (code, _, err) = run(&[
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
    let public = std::fs::read_to_string(d.join("keys/station-jwe.public.jwk")).unwrap();
    let card = r#"{"pan":"4761739001010010","exp":"4012","encodedName":"DOE/JANE"}"#;
    let jwe = station_agent::order::jwe::encrypt_json(&public, card.as_bytes()).unwrap();
    let order = station_agent::sandbox::client::sample_instant_order(
        &station_agent::sandbox::client::SAMPLE_PRODUCTS[0],
        &jwe,
        "BR-CLI-01",
        "r-1",
    );
    let order_file = dir.path().join("order.json");
    std::fs::write(&order_file, order.to_string()).unwrap();
    let png = dir.path().join("face.png");
    let (code, _, err) = run(&[
        "preview",
        "--order",
        order_file.to_str().unwrap(),
        "--out",
        png.to_str().unwrap(),
        "--config",
        d.join("station.toml").to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "{err}");
    let face = image::open(&png).unwrap().to_luma8();
    let with_pan = |pan: &str| {
        let input = FaceInput {
            pan: Some(zeroize::Zeroizing::new(pan.to_string())),
            ..FaceInput::default()
        };
        pan_region(&render_front(&input, &Layout::standard(), None))
    };
    let drawn = pan_region(&face);
    assert!(
        drawn != with_pan("4761739001010010"),
        "the clear PAN was drawn"
    );
    assert!(drawn == with_pan("476173******0010"), "not the masked PAN");
}

/// A development station (keys, configuration) in `dir`; returns its configuration file.
fn dev_station(dir: &std::path::Path) -> std::path::PathBuf {
    let d = dir.join("station");
    let (code, _, err) = run(&[
        "keys",
        "init",
        "--dev",
        d.to_str().unwrap(),
        "--station",
        "BR-CLI-01",
        "--hub-state",
        dir.join("hub").to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "{err}");
    d.join("station.toml")
}

/// The engineering record of a station's journal, oldest first.
fn engineering_record(
    config: &std::path::Path,
) -> Vec<station_agent::journal::engineering::EngineeringEntry> {
    let cfg = station_agent::config::StationConfig::load(config).unwrap();
    let journal = station_agent::journal::Journal::open(&cfg.resolve(&cfg.journal.path)).unwrap();
    let mut rows = journal.engineering(10).unwrap();
    rows.reverse();
    rows
}

#[test]
fn card_perso_is_journaled_with_its_actor_keys_and_outcome() {
    use station_agent::journal::engineering::{EngineeringCommand, EngineeringOutcome};
    let dir = tempfile::tempdir().unwrap();
    let config = dev_station(dir.path());
    // One record DGI whose template holds the PAN (tag 5A).
    let dgis = dir.path().join("dgis.json");
    std::fs::write(
        &dgis,
        r#"{"aid":"A0000000031010","dgis":[{"dgi":"0101","data":"700A5A084761739001010010","encryption":"none"}]}"#,
    )
    .unwrap();
    let (code, _, err) = run(&[
        "card",
        "perso",
        "--reader",
        "no-such-reader-s13",
        "--dgis",
        dgis.to_str().unwrap(),
        "--transport-key",
        "DEV-VISA",
        "--actor",
        "fieldeng",
        "--config",
        config.to_str().unwrap(),
    ]);
    assert_eq!(code, 1, "{err}");
    let rows = engineering_record(&config);
    let outcomes: Vec<_> = rows.iter().map(|r| r.outcome).collect();
    assert_eq!(
        outcomes,
        [EngineeringOutcome::Started, EngineeringOutcome::Failed]
    );
    for r in &rows {
        assert_eq!(r.actor, "fieldeng");
        assert_eq!(r.command, EngineeringCommand::CardPerso);
        assert_eq!(r.keys, "transport DEV-VISA");
        assert_eq!(r.reader, "no-such-reader-s13");
        assert_eq!(r.masked_pan.as_deref(), Some("476173******0010"));
    }
    assert!(
        rows[1]
            .detail
            .as_deref()
            .unwrap()
            .contains("no-such-reader-s13"),
        "{:?}",
        rows[1].detail
    );
}

#[test]
fn card_issue_is_journaled_under_the_os_user_with_card_id_and_masked_pan() {
    use station_agent::journal::engineering::{EngineeringCommand, EngineeringOutcome};
    let dir = tempfile::tempdir().unwrap();
    let config = dev_station(dir.path());
    let public =
        std::fs::read_to_string(dir.path().join("station/keys/station-jwe.public.jwk")).unwrap();
    let card = r#"{"pan":"4761739001010010","exp":"4012","encodedName":"DOE/JANE"}"#;
    let jwe = station_agent::order::jwe::encrypt_json(&public, card.as_bytes()).unwrap();
    let order = station_agent::sandbox::client::sample_instant_order(
        &station_agent::sandbox::client::SAMPLE_PRODUCTS[0],
        &jwe,
        "BR-CLI-01",
        "r-1",
    );
    let order_file = dir.path().join("order.json");
    std::fs::write(&order_file, order.to_string()).unwrap();
    let out = agent()
        .env("USER", "osuser")
        .args([
            "card",
            "issue",
            "--order",
            order_file.to_str().unwrap(),
            "--reader",
            "no-such-reader-s13",
            "--card-id",
            "card-s13-1",
            "--config",
            config.to_str().unwrap(),
        ])
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let rows = engineering_record(&config);
    assert_eq!(rows.len(), 2);
    assert_eq!(rows[0].outcome, EngineeringOutcome::Started);
    let failed = &rows[1];
    assert_eq!(failed.outcome, EngineeringOutcome::Failed);
    assert_eq!(failed.actor, "osuser");
    assert_eq!(failed.command, EngineeringCommand::CardIssue);
    assert_eq!(failed.card_id.as_deref(), Some("card-s13-1"));
    assert_eq!(failed.masked_pan.as_deref(), Some("476173******0010"));
    assert_eq!(failed.keys, "card product DEV-VISA");
}

#[test]
fn jobs_engineering_lists_who_ran_what_and_how_it_ended() {
    let dir = tempfile::tempdir().unwrap();
    let config = dev_station(dir.path());
    let dgis = dir.path().join("dgis.json");
    std::fs::write(
        &dgis,
        r#"{"aid":"A0000000031010","dgis":[{"dgi":"0101","data":"700A5A084761739001010010","encryption":"none"}]}"#,
    )
    .unwrap();
    let config = config.to_str().unwrap();
    let perso = [
        "card",
        "perso",
        "--reader",
        "no-such-reader-s13",
        "--dgis",
        dgis.to_str().unwrap(),
        "--transport-key",
        "DEV-VISA",
        "--actor",
        "fieldeng",
        "--config",
        config,
    ];
    assert_eq!(run(&perso).0, 1);
    let (code, out, err) = run(&["jobs", "--engineering", "--config", config]);
    assert_eq!(code, 0, "{err}");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 2, "{out}");
    assert!(
        lines[0].contains("fieldeng") && lines[0].contains("failed"),
        "{out}"
    );
    assert!(
        lines[1].contains("card_perso") && lines[1].contains("started"),
        "{out}"
    );
    assert!(out.contains("476173******0010") && !out.contains("4761739001010010"));
}

#[test]
fn card_issue_needs_a_card_id_for_the_journal() {
    let (code, _, err) = run(&["card", "issue", "--order", "o.json", "--reader", "r"]);
    assert_eq!(code, 2);
    assert!(err.contains("--card-id"), "{err}");
}

/// Points a development station's console at the network with `[console.tls]` files.
fn console_on_the_network_with_tls(config: &std::path::Path, cert: &str, key: &str) {
    let dir = config.parent().unwrap();
    std::fs::write(dir.join("console.crt"), cert).unwrap();
    std::fs::write(dir.join("console.key"), key).unwrap();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let private = std::fs::Permissions::from_mode(0o600);
        std::fs::set_permissions(dir.join("console.key"), private).unwrap();
    }
    let text = std::fs::read_to_string(config).unwrap();
    let listen = regex::Regex::new(r#"(?m)^listen = "127\.0\.0\.1:8470"$"#).unwrap();
    assert!(listen.is_match(&text), "{text}");
    let text = listen
        .replace(&text, r#"listen = "0.0.0.0:8470""#)
        .into_owned()
        + "\n[console.tls]\ncertificate = \"console.crt\"\nkey = \"console.key\"\n";
    std::fs::write(config, text).unwrap();
}

#[test]
fn check_config_accepts_a_network_console_with_its_own_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let config = dev_station(dir.path());
    let c = rcgen::generate_simple_self_signed(vec!["branch-pc".to_string()]).unwrap();
    console_on_the_network_with_tls(&config, &c.cert.pem(), &c.key_pair.serialize_pem());
    let (code, out, err) = run(&["check-config", "--config", config.to_str().unwrap()]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("configuration OK"));
}

#[test]
fn check_config_refuses_a_console_key_that_does_not_match_its_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let config = dev_station(dir.path());
    let c = rcgen::generate_simple_self_signed(vec!["branch-pc".to_string()]).unwrap();
    let other = rcgen::KeyPair::generate().unwrap();
    console_on_the_network_with_tls(&config, &c.cert.pem(), &other.serialize_pem());
    let (code, _, err) = run(&["check-config", "--config", config.to_str().unwrap()]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("console.tls.key"), "{err}");
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
