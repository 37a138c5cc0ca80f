//! The `encryptedData` envelope: compact JWE, `alg` ECDH-ES, `enc` A256GCM, P-256.
//!
//! The station holds several private keys at once while D1 rotates them; the JWE
//! header `kid` picks one. Anything else than exactly ECDH-ES / A256GCM is refused
//! before any key is used, so a downgraded header cannot reach the decrypter.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use josekit::jwe::{self, JweHeader, ECDH_ES};
use josekit::jwk::alg::ec::EcCurve;
use josekit::jwk::Jwk;
use serde_json::Value;
use thiserror::Error;
use time::Date;
use zeroize::Zeroizing;

use super::card::CardData;
use super::error::{D1Error, D1ErrorCode};

/// The only key agreement accepted.
pub const ALG: &str = "ECDH-ES";
/// The only content encryption accepted.
pub const ENC: &str = "A256GCM";
/// The only curve accepted.
pub const CURVE: &str = "P-256";

const FIELD: &str = "encryptedData";

/// Why station keys could not be loaded (a configuration problem, not an order problem).
#[derive(Debug, Error)]
pub enum KeyringError {
    /// A key file could not be read.
    #[error("cannot read station key file {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// Key number `index` is not a usable private P-256 ECDH-ES JWK with a `kid`.
    #[error("station key #{index} is not a private P-256 ECDH-ES JWK with a kid: {reason}")]
    BadKey {
        /// Position in the list given.
        index: usize,
        /// What is wrong (never key material).
        reason: String,
    },
    /// Two keys carry the same `kid`.
    #[error("two station keys share kid {0:?}; each live key needs its own kid")]
    DuplicateKid(String),
    /// No key was given.
    #[error("no station decryption key configured")]
    Empty,
}

/// The station's live decryption keys, by `kid`.
pub struct StationKeyring {
    keys: BTreeMap<String, jwe::alg::ecdh_es::EcdhEsJweDecrypter>,
}

impl std::fmt::Debug for StationKeyring {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StationKeyring")
            .field("kids", &self.kids())
            .finish()
    }
}

impl StationKeyring {
    /// Loads one private JWK per file.
    pub fn from_jwk_files(paths: &[PathBuf]) -> Result<Self, KeyringError> {
        let jwks = paths
            .iter()
            .map(|p| read_secret(p))
            .collect::<Result<Vec<_>, _>>()?;
        Self::build(&jwks)
    }

    /// Builds the keyring from private JWK JSON texts (wiped once parsed).
    pub fn from_jwks(jwks: Vec<String>) -> Result<Self, KeyringError> {
        let jwks: Vec<Zeroizing<String>> = jwks.into_iter().map(Zeroizing::new).collect();
        Self::build(&jwks)
    }

    fn build(jwks: &[Zeroizing<String>]) -> Result<Self, KeyringError> {
        if jwks.is_empty() {
            return Err(KeyringError::Empty);
        }
        let mut keys = BTreeMap::new();
        for (index, text) in jwks.iter().enumerate() {
            let bad = |reason: &str| KeyringError::BadKey {
                index,
                reason: reason.to_owned(),
            };
            let jwk = Jwk::from_bytes(text.as_bytes()).map_err(|_| bad("not a JWK"))?;
            if jwk.key_type() != "EC" || jwk.curve() != Some(CURVE) {
                return Err(bad("kty must be EC and crv P-256"));
            }
            if jwk.parameter("d").is_none() {
                return Err(bad("private part `d` missing"));
            }
            let kid = jwk.key_id().ok_or_else(|| bad("kid missing"))?.to_owned();
            let decrypter = ECDH_ES
                .decrypter_from_jwk(&jwk)
                .map_err(|_| bad("rejected for ECDH-ES decryption"))?;
            if keys.insert(kid.clone(), decrypter).is_some() {
                return Err(KeyringError::DuplicateKid(kid));
            }
        }
        Ok(StationKeyring { keys })
    }

    /// The live key ids.
    pub fn kids(&self) -> Vec<&str> {
        self.keys.keys().map(String::as_str).collect()
    }

    /// Decrypts a compact JWE and returns the raw payload (for the hub, which re-encrypts).
    ///
    /// A missing or unknown `kid`, a `zip` header, an `alg`/`enc` other than ECDH-ES/A256GCM, a malformed token or
    /// a failed decryption → `CRYPTO_ERROR` at `encryptedData`.
    pub fn decrypt_json(&self, compact: &str) -> Result<Zeroizing<Vec<u8>>, D1Error> {
        let crypto = || D1Error::new(D1ErrorCode::CryptoError, FIELD);
        let header = protected_header(compact).ok_or_else(crypto)?;
        let text = |name: &str| header.get(name).and_then(Value::as_str);
        if text("alg") != Some(ALG) || text("enc") != Some(ENC) || header.contains_key("zip") {
            return Err(crypto());
        }
        let decrypter = text("kid")
            .and_then(|kid| self.keys.get(kid))
            .ok_or_else(crypto)?;
        let (payload, _) = jwe::deserialize_compact(compact, decrypter).map_err(|_| crypto())?;
        Ok(Zeroizing::new(payload))
    }

    /// Decrypts a compact JWE and checks the card data in it.
    ///
    /// Crypto failures → `CRYPTO_ERROR`; payload not JSON → `PARSING_ERROR`;
    /// bad fields → `FIELD_INVALID_*` at `encryptedData.<field>`.
    pub fn decrypt_card_data(&self, compact: &str, today: Date) -> Result<CardData, D1Error> {
        let payload = self.decrypt_json(compact)?;
        CardData::from_json(&payload, today)
    }
}

fn read_secret(path: &Path) -> Result<Zeroizing<String>, KeyringError> {
    std::fs::read_to_string(path)
        .map(Zeroizing::new)
        .map_err(|source| KeyringError::Read {
            path: path.to_owned(),
            source,
        })
}

/// Decodes the protected header of a compact JWE (five dot-separated parts).
fn protected_header(compact: &str) -> Option<serde_json::Map<String, Value>> {
    let parts: Vec<&str> = compact.split('.').collect();
    if parts.len() != 5 {
        return None;
    }
    let raw = base64url_decode(parts[0])?;
    match serde_json::from_slice(&raw).ok()? {
        Value::Object(map) => Some(map),
        _ => None,
    }
}

/// Base64url without padding (RFC 7515 §2).
fn base64url_decode(s: &str) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(s.len() * 3 / 4);
    let mut acc = 0u32;
    let mut bits = 0u32;
    for c in s.bytes() {
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'-' => 62,
            b'_' => 63,
            _ => return None,
        };
        acc = (acc << 6) | u32::from(v);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
        }
    }
    Some(out)
}

/// Encrypts `payload` for the holder of `public_jwk_json` (ECDH-ES, A256GCM);
/// the JWK's `kid` goes into the header. A JWK that is not an EC P-256 public key
/// with a `kid` → `CRYPTO_ERROR` at `publicJwk`.
pub fn encrypt_json(public_jwk_json: &str, payload: &[u8]) -> Result<String, D1Error> {
    let bad_key = || D1Error::new(D1ErrorCode::CryptoError, "publicJwk");
    let jwk = Jwk::from_bytes(public_jwk_json.as_bytes()).map_err(|_| bad_key())?;
    if jwk.key_type() != "EC" || jwk.curve() != Some(CURVE) {
        return Err(bad_key());
    }
    let kid = jwk.key_id().ok_or_else(bad_key)?.to_owned();
    let encrypter = ECDH_ES.encrypter_from_jwk(&jwk).map_err(|_| bad_key())?;
    let mut header = JweHeader::new();
    header.set_content_encryption(ENC);
    header.set_key_id(kid);
    jwe::serialize_compact(payload, &header, &encrypter)
        .map_err(|_| D1Error::new(D1ErrorCode::CryptoError, FIELD))
}

/// Generates a P-256 key pair for ECDH-ES and returns `(private JWK, public JWK)`,
/// both carrying `kid`, `use` = `enc` and `alg` = `ECDH-ES`.
///
/// # Panics
/// Only if the system crypto library cannot generate an EC key, which leaves the
/// process unable to do any cryptography at all.
pub fn generate_p256_keypair(kid: &str) -> (Zeroizing<String>, String) {
    let pair = ECDH_ES
        .generate_ec_key_pair(EcCurve::P256)
        .expect("OpenSSL failed to generate a P-256 key pair");
    let finish = |mut jwk: Jwk| {
        jwk.set_key_id(kid);
        jwk.set_key_use("enc");
        jwk.set_algorithm(ALG);
        jwk
    };
    let private = finish(pair.to_jwk_private_key());
    let public = finish(pair.to_jwk_public_key());
    (Zeroizing::new(private.to_string()), public.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64url_decodes_unpadded_text() {
        assert_eq!(base64url_decode("eyJhIjoxfQ").unwrap(), br#"{"a":1}"#);
        assert!(base64url_decode("a+b").is_none());
    }
}
