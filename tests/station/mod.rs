//! A development station for tests: JWE key pair, dev key store, production set-up,
//! and INSTANT orders encrypted to the station as the hub would send them.

#![allow(dead_code)]

use std::sync::Arc;

use serde_json::{json, Value};
use station_agent::job::production::Production;
use station_agent::order::jwe::{encrypt_json, generate_p256_keypair};
use station_agent::order::StationKeyring;
use station_agent::plastic::face::Layout;
use station_emv::data::profile::ProfileSet;
use station_emv::gp::scp::SecurityLevel;
use station_emv::keys::{write_dev_keystore, KeyStore, SoftwareKeyStore};
use station_sim::card::{default_instances, SimCardConfig};

/// This station's id.
pub const STATION: &str = "BR-TEST-01";

/// A station's keys and production set-up.
pub struct Dev {
    pub dir: tempfile::TempDir,
    pub public_jwk: String,
    pub production: Arc<Production>,
    pub keystore: Arc<dyn KeyStore>,
    /// The blank card stock's keys (a software store: the simulated card holds its keys
    /// in clear, as a real card does inside its chip).
    pub card_stock_keys: Arc<dyn KeyStore>,
}

/// Builds the development station.
pub fn dev() -> Dev {
    dev_with_keys("")
}

/// The development station with `extra` appended to its key file.
pub fn dev_with_keys(extra: &str) -> Dev {
    let dir = tempfile::tempdir().unwrap();
    let path = write_dev_keystore(dir.path()).unwrap();
    if !extra.is_empty() {
        let text = std::fs::read_to_string(&path).unwrap();
        std::fs::write(&path, format!("{text}\n{extra}")).unwrap();
    }
    let keystore: Arc<dyn KeyStore> = Arc::new(SoftwareKeyStore::load(&path).unwrap());
    dev_with(dir, keystore, ProfileSet::builtin().unwrap())
}

/// A development station with this key store and these profiles (`dir` is kept).
pub fn dev_with(dir: tempfile::TempDir, keystore: Arc<dyn KeyStore>, profiles: ProfileSet) -> Dev {
    dev_on(dir, keystore.clone(), keystore, profiles)
}

/// The development station with its issuer keys in a SoftHSM2 token (one per test
/// process: SoftHSM2 reads its configuration once).
pub fn dev_hsm() -> Dev {
    static TOKEN: std::sync::OnceLock<Arc<dyn KeyStore>> = std::sync::OnceLock::new();
    let hsm = TOKEN.get_or_init(|| {
        // Cargo sets SOFTHSM2_CONF for tests (.cargo/config.toml): the token goes there.
        let dir = station_emv::keys::fresh_softhsm2_dir_for_test().unwrap();
        let token = station_emv::keys::write_dev_token(
            &dir,
            std::path::Path::new(station_emv::keys::SOFTHSM2_MODULE),
            "station-test",
        )
        .expect("SoftHSM2 token (cargo xtask setup installs softhsm2)");
        let ks = station_emv::keys::Pkcs11KeyStore::open(&station_emv::keys::Pkcs11Config {
            module: station_emv::keys::SOFTHSM2_MODULE.into(),
            token: token.token,
            pin: station_emv::keys::PinSource::File(token.pin_file),
            sessions: 2,
            development: true,
        })
        .unwrap();
        Arc::new(ks) as Arc<dyn KeyStore>
    });
    let dir = tempfile::tempdir().unwrap();
    let path = write_dev_keystore(dir.path()).unwrap();
    let card_stock_keys: Arc<dyn KeyStore> = Arc::new(SoftwareKeyStore::load(&path).unwrap());
    dev_on(
        dir,
        hsm.clone(),
        card_stock_keys,
        ProfileSet::builtin().unwrap(),
    )
}

/// A development station whose issuer keys are in `keystore` and whose blank card
/// stock's keys are in `card_stock_keys` (a software store: the simulated card).
pub fn dev_with_stock(
    dir: tempfile::TempDir,
    keystore: Arc<dyn KeyStore>,
    card_stock_keys: Arc<dyn KeyStore>,
    profiles: ProfileSet,
) -> Dev {
    dev_on(dir, keystore, card_stock_keys, profiles)
}

fn dev_on(
    dir: tempfile::TempDir,
    keystore: Arc<dyn KeyStore>,
    card_stock_keys: Arc<dyn KeyStore>,
    profiles: ProfileSet,
) -> Dev {
    let (private, public) = generate_p256_keypair("station-test-1");
    let keyring = StationKeyring::from_jwks(vec![private.to_string()]).unwrap();
    let production = Arc::new(Production {
        station_id: STATION.into(),
        keyring,
        keystore: keystore.clone(),
        profiles,
        layout: Layout::standard(),
        artwork_dir: None,
        default_card_product: "DEV-VISA".into(),
        level: SecurityLevel::CDEC_CMAC,
    });
    Dev {
        dir,
        public_jwk: public,
        production,
        keystore,
        card_stock_keys,
    }
}

/// Card data of test card `n` (Luhn-valid PANs from the Visa test range).
pub fn card_data(n: u32) -> Value {
    let body = format!("47617390010{:04}", n);
    let check = station_emv::card_data::luhn_check_digit(&body);
    json!({
        "pan": format!("{body}{check}"),
        "exp": "3012",
        "encodedName": "DOE/JOHN",
        "cvv1": "123",
        "panSequenceNumber": "01"
    })
}

/// An INSTANT order for this station with `card` encrypted to the station key.
pub fn order(dev: &Dev, profile: &str, derivation: &str, card: &Value) -> Value {
    let jwe = encrypt_json(&dev.public_jwk, card.to_string().as_bytes()).unwrap();
    json!({
        "distributionChannel": "INSTANT",
        "cardProductId": if profile.starts_with("mc") { "DEV-MC" } else { "DEV-VISA" },
        "persoStation": STATION,
        "services": {"issuance": "CREATION"},
        "encryptedData": jwe,
        "cardDesign": {"customLines": ["PLATINUM"], "memberId": "M-42"},
        "paymentApplication": {"config": profile, "derivationKeyIndex": derivation, "cvKeyIndex": "01"}
    })
}

/// Blank card stock for a card product of the dev key store.
pub fn card_stock(dev: &Dev, product: &str) -> SimCardConfig {
    let t = dev.card_stock_keys.transport_keys(product).unwrap();
    SimCardConfig {
        protocol: t.protocol,
        kvn: t.kvn,
        kdd: [0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77, 0x88, 0x99, 0x00],
        keys: t.key_source(),
        instances: default_instances(),
        padded_dgis: vec![0x8010, 0x8201, 0x8202, 0x8203, 0x8204, 0x8205],
    }
}
