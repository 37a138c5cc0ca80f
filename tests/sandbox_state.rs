//! The sandbox state directory: keys created once, private files owner-only.

use station_agent::sandbox::init_state;
use std::os::unix::fs::PermissionsExt;

fn mode(path: &std::path::Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

#[test]
fn first_start_creates_the_hub_key_and_the_dev_issuer_credential_owner_only() {
    let dir = tempfile::tempdir().unwrap();

    let files = init_state(dir.path()).unwrap();

    assert!(files.created);
    assert_eq!(mode(&files.hub_private_jwk), 0o600);
    assert_eq!(mode(&files.dev_issuer), 0o600);
    assert_eq!(mode(&files.notification_token), 0o600);
    let public: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&files.hub_public_jwk).unwrap()).unwrap();
    assert!(
        public.get("d").is_none(),
        "public file holds no private part"
    );
    assert!(public["kid"].is_string());
    let dev = files.load_dev_issuer().unwrap();
    assert_eq!(dev.issuer_id, "SANDBOX-ISSUER");
    assert!(!format!("{dev:?}").contains(&dev.private_jwk));
    assert!(files.load_config().unwrap().stations.is_empty());
}

#[test]
fn a_second_start_keeps_the_existing_keys() {
    let dir = tempfile::tempdir().unwrap();
    let first = init_state(dir.path()).unwrap();
    let key = std::fs::read_to_string(&first.hub_private_jwk).unwrap();

    let second = init_state(dir.path()).unwrap();

    assert!(!second.created);
    assert_eq!(
        std::fs::read_to_string(&second.hub_private_jwk).unwrap(),
        key
    );
}

#[test]
fn a_station_registered_twice_is_a_configuration_error() {
    let text = r#"
[[stations]]
persoStation = "B1"
clientId = "c1"
clientJwk = "{}"
publicJwks = ["{}"]

[[stations]]
persoStation = "B1"
clientId = "c2"
clientJwk = "{}"
publicJwks = ["{}"]
"#;
    let err = station_agent::sandbox::SandboxFile::parse(text).unwrap_err();
    assert_eq!(err.code(), "SANDBOX_CONFIG");
}
