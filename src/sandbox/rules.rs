//! What the hub needs from the order module: D1 body validation and the card
//! data JWE (open with the hub key, seal to a station key). Kept behind a trait
//! so the hub's HTTP, storage and routing do not depend on how orders are checked.

use super::error::HubError;
use serde_json::Value;
use zeroize::Zeroizing;

/// Decrypted card data JSON bytes; never printed, wiped on drop.
pub struct CardJson(pub Zeroizing<Vec<u8>>);

impl std::fmt::Debug for CardJson {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("CardJson(<redacted>)")
    }
}

/// D1 order rules used by the hub.
pub trait OrderRules: Send + Sync {
    /// Check a card order body against the D1 contract (400/403 D1 errors).
    fn validate(&self, body: &Value) -> Result<(), HubError>;
    /// Decrypt `encryptedData` addressed to the hub (400 CRYPTO_ERROR / PARSING_ERROR).
    fn open_card_data(&self, compact_jwe: &str) -> Result<CardJson, HubError>;
    /// Encrypt card data to a station's public JWK.
    fn seal_card_data(&self, station_public_jwk: &str, card: &CardJson)
        -> Result<String, HubError>;
}

/// The order module's rules: D1 validation, the hub keyring and JWE.
pub struct D1Rules {
    keyring: crate::order::StationKeyring,
}

impl std::fmt::Debug for D1Rules {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("D1Rules").finish_non_exhaustive()
    }
}

impl D1Rules {
    /// Rules decrypting with the hub's private JWE key(s).
    pub fn new(keyring: crate::order::StationKeyring) -> Self {
        D1Rules { keyring }
    }

    /// Rules with the hub key of a sandbox state directory.
    pub fn from_state(files: &super::state::StateFiles) -> Result<Self, super::SandboxError> {
        let keyring = crate::order::StationKeyring::from_jwk_files(std::slice::from_ref(
            &files.hub_private_jwk,
        ))
        .map_err(|e| super::SandboxError::Keys(e.to_string()))?;
        Ok(D1Rules { keyring })
    }
}

/// The D1 answer for an order module error.
pub fn hub_error(e: crate::order::D1Error) -> HubError {
    HubError::d1(e.error_code, e.error)
}

impl OrderRules for D1Rules {
    fn validate(&self, body: &Value) -> Result<(), HubError> {
        crate::order::validate_card_request(body)
            .map(drop)
            .map_err(hub_error)
    }

    fn open_card_data(&self, compact_jwe: &str) -> Result<CardJson, HubError> {
        let payload = self.keyring.decrypt_json(compact_jwe).map_err(hub_error)?;
        // The hub checks the card data as D1 does before anything reaches a station.
        let today = time::OffsetDateTime::now_utc().date();
        crate::order::CardData::from_json(&payload, today).map_err(hub_error)?;
        Ok(CardJson(payload))
    }

    fn seal_card_data(
        &self,
        station_public_jwk: &str,
        card: &CardJson,
    ) -> Result<String, HubError> {
        crate::order::jwe::encrypt_json(station_public_jwk, &card.0).map_err(|e| {
            // A bad station key is a hub configuration problem, not the caller's.
            HubError::internal(format!("station key unusable: {e}"))
        })
    }
}
