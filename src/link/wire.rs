//! Bodies of the station link (`docs/station-link.openapi.yaml`), shared by the
//! agent's client and the sandbox hub so both sides cannot drift apart.

use crate::order::D1ErrorCode;
use serde::{Deserialize, Serialize};

/// One INSTANT order handed to a station by the long poll.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct StationOrder {
    /// Hub operation id of the PRODUCE operation (the job key at the station).
    pub operation_id: String,
    /// Issuer that ordered the card.
    pub issuer_id: String,
    /// Issuer's card id.
    pub card_id: String,
    /// When the hub accepted the order (RFC 3339).
    pub received_at: String,
    /// The D1 `cardRequestInstant` body; `encryptedData` is a JWE addressed to the station key.
    pub order: serde_json::Value,
    /// The hub's compact JWS (ES256) over this order without this field; the station uses
    /// the signed payload only ([`crate::link::signature`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signature: Option<String>,
}

/// Answer of `GET /stations/{persoStation}/orders`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct StationOrders {
    /// Orders not yet acknowledged by a status event (may repeat: de-duplicate on operationId).
    pub orders: Vec<StationOrder>,
}

/// A production status event sent by the station for one operation.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct StatusEvent {
    /// Per-operation sequence number, starting at 1; the idempotency key with the operation id.
    pub sequence: u64,
    /// D1 `details.status` value (`CARD_PROD_READY`, `CARD_PROD_DONE`, `CARD_PROD_EXCEPTION`, ...).
    pub status: String,
    /// Why, on exceptions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// When the station observed the status (RFC 3339).
    pub time: String,
    /// PAN masked (at most first 6 and last 4 digits, at least 6 hidden), never the clear PAN.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub masked_pan: Option<String>,
    /// Number of APDUs exchanged with the chip.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub apdu_count: Option<u32>,
}

/// Health of one device attached to the station.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct DeviceHealth {
    /// Device kind (`printer`, `encoder`).
    pub kind: String,
    /// Device name as configured.
    pub name: String,
    /// `OK`, `DEGRADED` or `DOWN`.
    pub status: String,
    /// Current fault codes, empty when healthy.
    #[serde(default)]
    pub faults: Vec<String>,
}

/// Periodic station heartbeat for fleet monitoring.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Heartbeat {
    /// When the heartbeat was built (RFC 3339).
    pub time: String,
    /// Version of the station agent.
    pub agent_version: String,
    /// Health of each device.
    pub devices: Vec<DeviceHealth>,
    /// Blank cards left in the feeder, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub card_stock: Option<u32>,
}

/// OAuth 2.0 token answer.
#[derive(Clone, Serialize, Deserialize)]
pub struct TokenResponse {
    /// The bearer access token.
    pub access_token: String,
    /// Always `Bearer`.
    pub token_type: String,
    /// Lifetime in seconds.
    pub expires_in: u64,
}

impl std::fmt::Debug for TokenResponse {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenResponse")
            .field("access_token", &"<redacted>")
            .field("token_type", &self.token_type)
            .field("expires_in", &self.expires_in)
            .finish()
    }
}

/// D1 error body `{errorCode, error}`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ErrorBody {
    /// D1 error code; a code the contract does not define is refused, naming `errorCode`.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "d1_error_code"
    )]
    pub error_code: Option<D1ErrorCode>,
    /// Field in error, for troubleshooting.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// The RFC 7523 grant type used by D1's token endpoint.
pub const JWT_BEARER_GRANT: &str = "urn:ietf:params:oauth:grant-type:jwt-bearer";

/// Whether a `maskedPan` value shows no more than first 6 and last 4 digits and hides
/// at least as many as `Pan::masked` does (a short PAN shows fewer leading digits).
pub fn is_masked_pan(value: &str) -> bool {
    station_emv::card_data::looks_masked(value)
}

/// `errorCode` read through [`D1ErrorCode::parse`], so that a refusal names the field.
fn d1_error_code<'de, D>(d: D) -> Result<Option<D1ErrorCode>, D::Error>
where
    D: serde::Deserializer<'de>,
{
    Option::<String>::deserialize(d)?
        .map(|s| D1ErrorCode::parse("errorCode", &s).map_err(serde::de::Error::custom))
        .transpose()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_error_body_with_a_d1_code_reads_as_that_code() {
        let b: ErrorBody =
            serde_json::from_str(r#"{"errorCode":"FIELD_INVALID_VALUE","error":"cardId"}"#)
                .unwrap();
        assert_eq!(b.error_code, Some(D1ErrorCode::FieldInvalidValue));
    }

    #[test]
    fn an_error_body_with_an_unknown_code_is_refused_naming_the_field() {
        let e = serde_json::from_str::<ErrorBody>(r#"{"errorCode":"NOT_A_CODE"}"#).unwrap_err();
        let words = e.to_string();
        assert!(words.contains("errorCode"), "{words}");
        assert!(words.contains("NOT_A_CODE"), "{words}");
    }

    #[test]
    fn a_pan_masked_to_first_six_and_last_four_passes() {
        assert!(is_masked_pan("476173******0010"));
    }

    #[test]
    fn a_fifteen_digit_pan_showing_ten_digits_is_not_masked_enough() {
        assert!(!is_masked_pan("476173*****1001"));
        assert!(is_masked_pan("47617******1001"));
    }

    #[test]
    fn a_clear_pan_is_not_masked() {
        assert!(!is_masked_pan("4761739001010010"));
        assert!(!is_masked_pan("4761 7390 0101 0010"));
    }

    #[test]
    fn token_response_debug_hides_the_token() {
        let t = TokenResponse {
            access_token: "secret-token".into(),
            token_type: "Bearer".into(),
            expires_in: 900,
        };
        assert!(!format!("{t:?}").contains("secret-token"));
    }
}
