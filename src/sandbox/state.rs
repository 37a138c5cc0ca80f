//! The sandbox state directory: created on first start, reused afterwards.

use super::config::SandboxFile;
use super::error::SandboxError;
use super::keys::{generate_es256_jwk, read_text, write_private, write_public};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use zeroize::Zeroizing;

/// Issuer id of the development issuer credential.
pub const DEV_ISSUER_ID: &str = "SANDBOX-ISSUER";

/// Paths of everything the sandbox keeps in its state directory.
#[derive(Debug, Clone)]
pub struct StateFiles {
    /// The state directory.
    pub dir: PathBuf,
    /// Hub JWE private key (0600).
    pub hub_private_jwk: PathBuf,
    /// Hub JWE public key, also served at `GET /sandbox/v1/keys`.
    pub hub_public_jwk: PathBuf,
    /// Hub order-signing ES256 private key (0600): signs every order handed to a station.
    pub order_signing_private_jwk: PathBuf,
    /// Its public key, which stations are configured with (`upstream.order_keys`).
    pub order_signing_public_jwk: PathBuf,
    /// Development issuer credential: issuer id, kid, ES256 private JWK (0600).
    pub dev_issuer: PathBuf,
    /// Development issuer public JWK.
    pub dev_issuer_public_jwk: PathBuf,
    /// Bearer token the hub presents to the issuer's notification endpoint (0600).
    pub notification_token: PathBuf,
    /// Station registrations.
    pub config: PathBuf,
    /// Hub database.
    pub database: PathBuf,
    /// Whether this call created the keys.
    pub created: bool,
}

/// The development issuer credential as stored in `dev-issuer.json`.
#[derive(Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DevIssuer {
    /// Issuer id (`iss` = `sub` of its assertions).
    pub issuer_id: String,
    /// Key id of the signing key.
    pub kid: String,
    /// ES256 private JWK (JSON).
    pub private_jwk: String,
}

impl std::fmt::Debug for DevIssuer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DevIssuer")
            .field("issuer_id", &self.issuer_id)
            .field("kid", &self.kid)
            .field("private_jwk", &"<redacted>")
            .finish()
    }
}

impl Drop for DevIssuer {
    fn drop(&mut self) {
        zeroize::Zeroize::zeroize(&mut self.private_jwk);
    }
}

impl StateFiles {
    /// The paths inside `dir` (nothing is created).
    pub fn in_dir(dir: &Path) -> Self {
        StateFiles {
            dir: dir.to_path_buf(),
            hub_private_jwk: dir.join("hub-jwe.private.jwk"),
            hub_public_jwk: dir.join("hub-jwe.public.jwk"),
            order_signing_private_jwk: dir.join("hub-orders.private.jwk"),
            order_signing_public_jwk: dir.join("hub-orders.public.jwk"),
            dev_issuer: dir.join("dev-issuer.json"),
            dev_issuer_public_jwk: dir.join("dev-issuer.public.jwk"),
            notification_token: dir.join("notification.token"),
            config: dir.join("sandbox.toml"),
            database: dir.join("hub.sqlite"),
            created: false,
        }
    }

    /// Read the development issuer credential.
    pub fn load_dev_issuer(&self) -> Result<DevIssuer, SandboxError> {
        let text = Zeroizing::new(read_text(&self.dev_issuer)?);
        serde_json::from_str(&text).map_err(|e| SandboxError::state(&self.dev_issuer, e))
    }

    /// Read and check `sandbox.toml`.
    pub fn load_config(&self) -> Result<SandboxFile, SandboxError> {
        SandboxFile::parse(&read_text(&self.config)?)
    }
}

/// Create the state directory content on first start: hub JWE key pair, development
/// issuer credential, notification token and an empty `sandbox.toml`. Existing
/// files are kept, so restarting never rotates keys behind the stations' back.
pub fn init_state(dir: &Path) -> Result<StateFiles, SandboxError> {
    std::fs::create_dir_all(dir).map_err(|e| SandboxError::state(dir, e))?;
    let mut files = StateFiles::in_dir(dir);
    if !files.hub_private_jwk.exists() {
        let kid = format!("hub-{}", short_id());
        let (private, public) = crate::order::jwe::generate_p256_keypair(&kid);
        write_private(&files.hub_private_jwk, &private)?;
        write_public(&files.hub_public_jwk, &public)?;
        files.created = true;
    }
    if !files.order_signing_private_jwk.exists() {
        let kid = format!("hub-orders-{}", short_id());
        let (private, public) = generate_es256_jwk(&kid)?;
        write_private(&files.order_signing_private_jwk, &private)?;
        write_public(&files.order_signing_public_jwk, &public)?;
        files.created = true;
    }
    if !files.dev_issuer.exists() {
        let kid = format!("dev-issuer-{}", short_id());
        let (private, public) = generate_es256_jwk(&kid)?;
        let cred = DevIssuer {
            issuer_id: DEV_ISSUER_ID.into(),
            kid,
            private_jwk: private.to_string(),
        };
        let text = Zeroizing::new(
            serde_json::to_string_pretty(&cred).map_err(|e| SandboxError::Keys(e.to_string()))?,
        );
        write_private(&files.dev_issuer, &text)?;
        write_public(&files.dev_issuer_public_jwk, &public)?;
        files.created = true;
    }
    if !files.notification_token.exists() {
        let token = Zeroizing::new(random_token());
        write_private(&files.notification_token, &token)?;
    }
    if !files.config.exists() {
        let header = "# Sandbox hub: stations allowed to poll orders.\n\
# [[stations]]\n# persoStation = \"BRANCH-001\"\n# clientId = \"station-branch-001\"\n\
# clientJwk = '{...ES256 public JWK with kid...}'\n# publicJwks = ['{...P-256 ECDH-ES public JWK with kid...}']\n\
# issuerUrl = \"http://127.0.0.1:9000\"\n";
        write_public(&files.config, header)?;
    }
    Ok(files)
}

fn short_id() -> String {
    uuid::Uuid::new_v4().simple().to_string()[..12].to_string()
}

/// A 256-bit random token, hex.
pub(crate) fn random_token() -> String {
    use rand::RngCore;
    let mut bytes = Zeroizing::new([0u8; 32]);
    rand::rngs::OsRng.fill_bytes(bytes.as_mut());
    hex::encode(bytes.as_ref())
}
