//! `station-agent pismo request` as staff or scripts use it, against the sandbox.

mod sandbox_common;

use std::process::Command;

use sandbox_common::{pismo_file, TestHub, PISMO_CONFIG as CONFIG, PISMO_GROUP as GROUP};
use station_agent::sandbox::pismo::dev_client;

fn agent(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_station-agent"))
        .args(args)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// A development station configuration in `dir`, with `[pismo]` when `hub` is given.
fn station_config(dir: &std::path::Path, hub: Option<&TestHub>) -> String {
    let dev = dir.join("dev");
    // A hub state of its own gives the configuration the hub's order-signing key it
    // requires; `pismo request` itself never talks to the D1 hub.
    let hub_state = dir.join("hub-state");
    let (code, _, err) = agent(&[
        "keys",
        "init",
        "--dev",
        dev.to_str().unwrap(),
        "--hub-state",
        hub_state.to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "{err}");
    let cfg = dev.join("station.toml");
    if let Some(hub) = hub {
        let client = dev_client(&hub.files).unwrap();
        station_agent::sandbox::keys::write_private(
            &dev.join("pismo.secret"),
            &client.client_secret,
        )
        .unwrap();
        let mut text = std::fs::read_to_string(&cfg).unwrap();
        text.push_str(&format!(
            "\n[pismo]\napi_url = \"{url}\"\npci_url = \"{url}\"\nclient_id = \"{id}\"\nclient_secret_file = \"pismo.secret\"\nembossing_group = \"{GROUP}\"\nconfig_id = \"{CONFIG}\"\nstart_embossing = true\ningress_deadline_seconds = 20\n",
            url = hub.handle.base_url(),
            id = client.client_id,
        ));
        std::fs::write(&cfg, text).unwrap();
    }
    cfg.to_str().unwrap().to_string()
}

#[tokio::test(flavor = "multi_thread")]
async fn pismo_request_creates_the_card_and_starts_its_embossing_run() {
    let hub = TestHub::start_with(None, Some(pismo_file(200))).await;
    let dir = tempfile::tempdir().unwrap();
    let cfg = station_config(dir.path(), Some(&hub));
    let out = tokio::task::spawn_blocking(move || {
        agent(&[
            "--config",
            &cfg,
            "pismo",
            "request",
            "--customer",
            "42",
            "--name",
            "JANE DOE",
        ])
    })
    .await
    .unwrap();
    assert_eq!(out.0, 0, "{}{}", out.1, out.2);
    assert!(out.1.contains("embossing run started"), "{}", out.1);
    assert_eq!(
        hub.handle.pismo().store.blocking().cards().unwrap().len(),
        1
    );
}

#[test]
fn pismo_request_without_a_pismo_section_is_a_usage_error() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = station_config(dir.path(), None);
    let (code, _, err) = agent(&[
        "--config",
        &cfg,
        "pismo",
        "request",
        "--customer",
        "42",
        "--name",
        "JANE DOE",
    ]);
    assert_eq!(code, 2);
    assert!(err.contains("[pismo]"), "{err}");
}

/// A configuration with a `[pismo]` section whose Pismo is unreachable, its client secret
/// file `dev/pismo.secret` written owner-only.
fn hubless_pismo_config(dir: &std::path::Path) -> String {
    let hubless = station_config(dir, None);
    let mut text = std::fs::read_to_string(&hubless).unwrap();
    station_agent::sandbox::keys::write_private(&dir.join("dev/pismo.secret"), "s").unwrap();
    text.push_str("\n[pismo]\napi_url = \"http://127.0.0.1:9\"\npci_url = \"http://127.0.0.1:9\"\nclient_id = \"c\"\nclient_secret_file = \"pismo.secret\"\nembossing_group = \"BRANCH-001-EMB\"\n");
    std::fs::write(&hubless, text).unwrap();
    hubless
}

/// Runs the agent with `--config` and `args` on a [`hubless_pismo_config`] whose client
/// secret file group and others may read; it must fail. Returns its stderr and the file.
#[cfg(unix)]
fn refusal_with_an_open_secret(args: &[&str]) -> (String, String) {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let config = hubless_pismo_config(dir.path());
    let secret = dir.path().join("dev/pismo.secret");
    std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o644)).unwrap();
    let mut full = vec!["--config", config.as_str()];
    full.extend_from_slice(args);
    let (code, _, err) = agent(&full);
    assert_ne!(code, 0, "{err}");
    (err, secret.display().to_string())
}

#[cfg(unix)]
#[test]
fn pismo_request_refuses_a_client_secret_file_others_can_read_naming_it() {
    let (err, secret) = refusal_with_an_open_secret(&[
        "pismo",
        "request",
        "--customer",
        "42",
        "--name",
        "JANE DOE",
    ]);
    assert!(err.contains(&secret), "{err}");
    assert!(err.contains("group or others"), "{err}");
}

#[cfg(unix)]
#[test]
fn check_config_refuses_a_client_secret_file_others_can_read_naming_it() {
    let (err, secret) = refusal_with_an_open_secret(&["check-config"]);
    assert!(err.contains("pismo.client_secret_file"), "{err}");
    assert!(err.contains(&secret), "{err}");
}

#[test]
fn pismo_request_refuses_a_printed_name_with_accents_naming_the_field() {
    let dir = tempfile::tempdir().unwrap();
    let hubless = hubless_pismo_config(dir.path());
    let (code, _, err) = agent(&[
        "--config",
        &hubless,
        "pismo",
        "request",
        "--customer",
        "42",
        "--name",
        "JOSÉ",
    ]);
    assert_eq!(code, 2, "bad input is a usage error");
    assert!(err.contains("printed name"), "{err}");
}
