//! A sandbox hub on 127.0.0.1 with one registered station, and the issuer /
//! station side helpers the tests need.

#![allow(dead_code)]

use josekit::jwe::ECDH_ES;
use josekit::jwk::Jwk;
use serde_json::{json, Value};
use station_agent::link::{ClientCredential, TokenSource};
use station_agent::sandbox::keys::generate_es256_jwk;
use station_agent::sandbox::{
    init_state, start, SandboxConfig, SandboxFile, SandboxHandle, StateFiles, StationEntry,
};
use zeroize::Zeroizing;

pub const STATION: &str = "BRANCH-001";

/// The Pismo sandbox's embossing group for [`STATION`].
pub const PISMO_GROUP: &str = "BRANCH-001-EMB";
/// That group's embossing configuration id.
pub const PISMO_CONFIG: &str = "acde070d-8c4c-4f0d-9d8a-162843c10333";

/// `[pismo]` of the test hub: one group embossing at [`STATION`], run only by start
/// embossing, each card's PCI data ready `ready_millis` after its creation.
pub fn pismo_file(ready_millis: u64) -> station_agent::sandbox::pismo::PismoSandboxFile {
    use station_agent::sandbox::pismo::{EmbossingGroupEntry, PismoSandboxFile};
    PismoSandboxFile {
        ready_millis,
        groups: vec![EmbossingGroupEntry {
            name: PISMO_GROUP.into(),
            config_id: PISMO_CONFIG.into(),
            perso_station: STATION.into(),
            schedule_seconds: 0,
        }],
        ..PismoSandboxFile::default()
    }
}
pub const STATION_CLIENT: &str = "station-branch-001";

/// Encrypt with the order module's JWE (ECDH-ES + A256GCM, recipient kid in the header).
pub fn encrypt(public_jwk: &str, payload: &[u8]) -> String {
    station_agent::order::jwe::encrypt_json(public_jwk, payload).unwrap()
}

/// Decrypt with a keyring holding only `private_jwk` (as a station would).
pub fn keyring_decrypt(private_jwk: &str, compact: &str) -> Option<Vec<u8>> {
    station_agent::order::StationKeyring::from_jwks(vec![private_jwk.to_string()])
        .unwrap()
        .decrypt_json(compact)
        .ok()
        .map(|p| p.to_vec())
}

/// Raw ECDH-ES decryption with a key, whatever the `kid` says.
pub fn decrypt(private_jwk: &str, compact: &str) -> Option<Vec<u8>> {
    let jwk = Jwk::from_bytes(private_jwk.as_bytes()).ok()?;
    let decrypter = ECDH_ES.decrypter_from_jwk(&jwk).ok()?;
    josekit::jwe::deserialize_compact(compact, &decrypter)
        .ok()
        .map(|(p, _)| p)
}

/// A running hub plus the keys of its registered station.
pub struct TestHub {
    pub dir: tempfile::TempDir,
    pub files: StateFiles,
    pub handle: SandboxHandle,
    pub station_signing_private: Zeroizing<String>,
    pub station_jwe_private: Zeroizing<String>,
    pub station_jwe_public: String,
}

impl TestHub {
    pub async fn start() -> TestHub {
        Self::start_with_issuer(None).await
    }

    pub async fn start_with_issuer(issuer_url: Option<String>) -> TestHub {
        Self::start_with(issuer_url, None).await
    }

    /// A hub whose `sandbox.toml` also has a `[pismo]` section.
    pub async fn start_with(
        issuer_url: Option<String>,
        pismo: Option<station_agent::sandbox::pismo::PismoSandboxFile>,
    ) -> TestHub {
        let dir = tempfile::tempdir().unwrap();
        let files = init_state(dir.path()).unwrap();
        let (sig_private, sig_public) = generate_es256_jwk("station-sig-1").unwrap();
        let (jwe_private, jwe_public) =
            station_agent::order::jwe::generate_p256_keypair("station-jwe-1");
        let file = SandboxFile {
            issuer_url,
            stations: vec![StationEntry {
                perso_station: STATION.into(),
                public_jwks: vec![jwe_public.clone()],
                client_id: STATION_CLIENT.into(),
                client_jwk: sig_public,
            }],
            pismo,
        };
        std::fs::write(&files.config, file.to_toml().unwrap()).unwrap();
        let config = SandboxConfig {
            listen: "127.0.0.1:0".parse().unwrap(),
            state_dir: dir.path().to_path_buf(),
        };
        let handle = start(&config).await.unwrap();
        TestHub {
            dir,
            files,
            handle,
            station_signing_private: sig_private,
            station_jwe_private: jwe_private,
            station_jwe_public: jwe_public,
        }
    }

    /// Stop the hub and start a new one on the same state directory.
    pub async fn restart(self) -> TestHub {
        let TestHub {
            dir,
            files,
            handle,
            station_signing_private,
            station_jwe_private,
            station_jwe_public,
        } = self;
        handle.shutdown().await;
        let config = SandboxConfig {
            listen: "127.0.0.1:0".parse().unwrap(),
            state_dir: dir.path().to_path_buf(),
        };
        let handle = start(&config).await.unwrap();
        TestHub {
            dir,
            files,
            handle,
            station_signing_private,
            station_jwe_private,
            station_jwe_public,
        }
    }

    /// What a station registered at this hub verifies its orders with.
    pub fn order_verifier(&self) -> station_agent::link::OrderVerifier {
        let public = std::fs::read_to_string(&self.files.order_signing_public_jwk).unwrap();
        station_agent::link::OrderVerifier::from_public_jwks(&[public]).unwrap()
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.handle.base_url(), path)
    }

    pub fn issuer_credential(&self) -> ClientCredential {
        let dev = self.files.load_dev_issuer().unwrap();
        ClientCredential::from_private_jwk(dev.issuer_id.clone(), &dev.private_jwk, None).unwrap()
    }

    pub fn station_credential(&self) -> ClientCredential {
        ClientCredential::from_private_jwk(STATION_CLIENT, &self.station_signing_private, None)
            .unwrap()
    }

    pub async fn issuer_token(&self) -> String {
        let src = TokenSource::new(
            reqwest::Client::new(),
            self.url("/oauth2/token"),
            self.issuer_credential(),
        );
        src.token().await.unwrap().secret().to_string()
    }

    pub async fn station_token(&self) -> String {
        let src = TokenSource::new(
            reqwest::Client::new(),
            self.url("/oauth2/token"),
            self.station_credential(),
        );
        src.token().await.unwrap().secret().to_string()
    }

    pub fn hub_public_jwk(&self) -> String {
        std::fs::read_to_string(&self.files.hub_public_jwk).unwrap()
    }

    pub fn hub_private_jwk(&self) -> String {
        std::fs::read_to_string(&self.files.hub_private_jwk).unwrap()
    }

    /// Valid-looking card data encrypted to the hub key.
    pub fn sealed_card(&self) -> String {
        encrypt(&self.hub_public_jwk(), card_data().to_string().as_bytes())
    }

    /// POST a card order; returns (status, body).
    pub async fn order(&self, token: &str, card_id: &str, body: &Value) -> (u16, Value) {
        let resp = reqwest::Client::new()
            .post(self.url(&format!(
                "/banking/v1/issuers/SANDBOX-ISSUER/physicalCards/{card_id}/operations:production"
            )))
            .bearer_auth(token)
            .json(body)
            .send()
            .await
            .unwrap();
        let status = resp.status().as_u16();
        (status, resp.json().await.unwrap_or(Value::Null))
    }

    pub async fn production_status(&self, token: &str, card_id: &str) -> (u16, Value) {
        let resp = reqwest::Client::new()
            .get(self.url(&format!(
                "/banking/v1/issuers/SANDBOX-ISSUER/physicalCards/{card_id}/productionStatus"
            )))
            .bearer_auth(token)
            .send()
            .await
            .unwrap();
        let status = resp.status().as_u16();
        (status, resp.json().await.unwrap_or(Value::Null))
    }

    pub async fn poll(&self, token: &str, wait: u64) -> Value {
        reqwest::Client::new()
            .get(self.url(&format!("/stations/{STATION}/orders?wait={wait}")))
            .bearer_auth(token)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }

    pub async fn event(&self, token: &str, op: &str, body: &Value) -> u16 {
        reqwest::Client::new()
            .post(self.url(&format!("/stations/{STATION}/orders/{op}/events")))
            .bearer_auth(token)
            .json(body)
            .send()
            .await
            .unwrap()
            .status()
            .as_u16()
    }
}

/// Test card data: Visa test BIN, Luhn-valid, future expiry.
pub fn card_data() -> Value {
    json!({
        "pan": "4761739001010010",
        "exp": "3012",
        "encodedName": "DOE/JANE",
        "panSequenceNumber": "00"
    })
}

pub fn instant_order(sealed: &str, station: &str) -> Value {
    json!({
        "distributionChannel": "INSTANT",
        "services": {"issuance": "CREATION"},
        "encryptedData": sealed,
        "paymentApplication": {"config": "VIS16", "derivationKeyIndex": "01"},
        "persoStation": station,
        "issuerRequestId": "req-1"
    })
}

pub fn now_rfc3339() -> String {
    time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap()
}
