//! What the hub needs from the order module: D1 body validation and the card
//! data JWE (open with the hub key, seal to a station key). Kept behind a trait
//! so the hub's HTTP, storage and routing do not depend on how orders are checked.

use super::error::HubError;
use serde_json::Value;
use zeroize::Zeroizing;

/// Decrypted card data JSON; never printed.
pub struct CardJson(pub Zeroizing<String>);

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
