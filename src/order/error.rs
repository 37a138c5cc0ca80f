//! D1 error body `{errorCode, error}` and its codes.
//!
//! `error` only ever names the field in error (a JSON path such as
//! `cardDesign.customLines[2]` or `encryptedData.pan`); it never carries the value,
//! so clear card data cannot leak through an error answer or a log line.

use serde::{Deserialize, Serialize};
use thiserror::Error;

/// Stable error codes of the D1 contract (and the two production-report statuses).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum D1ErrorCode {
    /// A field does not match its format: pattern, length, JSON type, or a required field is missing.
    FieldInvalidFormat,
    /// A well-formed field holds a value that is not permitted: enum, discriminator, item count, Luhn, expiry.
    FieldInvalidValue,
    /// The encrypted data could not be decrypted (unknown key, wrong algorithm, tampered).
    CryptoError,
    /// The decrypted data is not valid JSON.
    ParsingError,
    /// The order is well formed but not allowed here (wrong channel or station).
    OperationNotAllowed,
    /// The access token is missing or invalid.
    AuthorizerUnauthorized,
    /// The caller may not access the resource.
    AuthorizerForbidden,
    /// Our own fault; nothing the caller can fix.
    InternalError,
    /// Production report: the order data could not be used to make the card.
    DataException,
    /// Production report: personalizing the card failed.
    CardProdException,
}

/// A wire string that names no D1 error code, with the field it came in.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("{field}: '{value}' is not a D1 error code")]
pub struct UnknownD1ErrorCode {
    /// Where the code was read (`errorCode`).
    pub field: &'static str,
    /// What was there instead.
    pub value: String,
}

impl D1ErrorCode {
    /// Every code, in the contract's order.
    pub const ALL: [D1ErrorCode; 10] = [
        D1ErrorCode::FieldInvalidFormat,
        D1ErrorCode::FieldInvalidValue,
        D1ErrorCode::CryptoError,
        D1ErrorCode::ParsingError,
        D1ErrorCode::OperationNotAllowed,
        D1ErrorCode::AuthorizerUnauthorized,
        D1ErrorCode::AuthorizerForbidden,
        D1ErrorCode::InternalError,
        D1ErrorCode::DataException,
        D1ErrorCode::CardProdException,
    ];

    /// Reads the wire string found in `field`; anything else is refused naming the field.
    pub fn parse(field: &'static str, value: &str) -> Result<Self, UnknownD1ErrorCode> {
        Self::ALL
            .into_iter()
            .find(|c| c.as_str() == value)
            .ok_or_else(|| UnknownD1ErrorCode {
                field,
                value: value.to_string(),
            })
    }

    /// The wire string, e.g. `FIELD_INVALID_FORMAT`.
    pub fn as_str(self) -> &'static str {
        match self {
            D1ErrorCode::FieldInvalidFormat => "FIELD_INVALID_FORMAT",
            D1ErrorCode::FieldInvalidValue => "FIELD_INVALID_VALUE",
            D1ErrorCode::CryptoError => "CRYPTO_ERROR",
            D1ErrorCode::ParsingError => "PARSING_ERROR",
            D1ErrorCode::OperationNotAllowed => "OPERATION_NOT_ALLOWED",
            D1ErrorCode::AuthorizerUnauthorized => "AUTHORIZER_UNAUTHORIZED",
            D1ErrorCode::AuthorizerForbidden => "AUTHORIZER_FORBIDDEN",
            D1ErrorCode::InternalError => "INTERNAL_ERROR",
            D1ErrorCode::DataException => "DATA_EXCEPTION",
            D1ErrorCode::CardProdException => "CARD_PROD_EXCEPTION",
        }
    }

    /// HTTP status D1 answers with for this code. `DATA_EXCEPTION` and
    /// `CARD_PROD_EXCEPTION` only appear in production reports, never as an HTTP
    /// answer; they map to 400 (bad data) and 500 (our failure) for completeness.
    pub fn http_status(self) -> u16 {
        match self {
            D1ErrorCode::FieldInvalidFormat
            | D1ErrorCode::FieldInvalidValue
            | D1ErrorCode::CryptoError
            | D1ErrorCode::ParsingError
            | D1ErrorCode::DataException => 400,
            D1ErrorCode::AuthorizerUnauthorized => 401,
            D1ErrorCode::AuthorizerForbidden | D1ErrorCode::OperationNotAllowed => 403,
            D1ErrorCode::InternalError | D1ErrorCode::CardProdException => 500,
        }
    }

    /// A plain-words hint for branch staff on what to do about it.
    pub fn staff_message(self) -> &'static str {
        match self {
            D1ErrorCode::FieldInvalidFormat | D1ErrorCode::FieldInvalidValue => {
                "The card order has invalid data; ask the bank back office to correct and resend it."
            }
            D1ErrorCode::CryptoError => {
                "The card data could not be decrypted; the station key may have been rotated. Contact support."
            }
            D1ErrorCode::ParsingError | D1ErrorCode::DataException => {
                "The card data in the order is unreadable; ask the bank back office to resend the order."
            }
            D1ErrorCode::OperationNotAllowed => {
                "This order is not meant for this station; check the station identifier with support."
            }
            D1ErrorCode::AuthorizerUnauthorized | D1ErrorCode::AuthorizerForbidden => {
                "The station is not authorized; check its certificate and credentials with support."
            }
            D1ErrorCode::InternalError | D1ErrorCode::CardProdException => {
                "The station failed to process the order; retry, then contact support if it persists."
            }
        }
    }
}

impl std::fmt::Display for D1ErrorCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A code equals its wire string (`D1ErrorCode::DataException == "DATA_EXCEPTION"`).
impl PartialEq<&str> for D1ErrorCode {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

/// D1 error body; serialises to `{"errorCode": "...", "error": "..."}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Error)]
#[serde(rename_all = "camelCase")]
#[error("{error_code} at `{error}`")]
pub struct D1Error {
    /// The stable code.
    pub error_code: D1ErrorCode,
    /// The first field in error as a JSON path (never its value).
    pub error: String,
}

impl D1Error {
    /// Builds an error for the field at `path`.
    pub fn new(error_code: D1ErrorCode, path: impl Into<String>) -> Self {
        D1Error {
            error_code,
            error: path.into(),
        }
    }

    /// `FIELD_INVALID_FORMAT` at `path`.
    pub fn format(path: impl Into<String>) -> Self {
        Self::new(D1ErrorCode::FieldInvalidFormat, path)
    }

    /// `FIELD_INVALID_VALUE` at `path`.
    pub fn value(path: impl Into<String>) -> Self {
        Self::new(D1ErrorCode::FieldInvalidValue, path)
    }

    /// HTTP status for this error.
    pub fn http_status(&self) -> u16 {
        self.error_code.http_status()
    }
}
