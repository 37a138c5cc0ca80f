//! Card orders from the D1 hub: the request model, spec-driven validation, the
//! station acceptance rule, the encrypted card data and its JWE envelope.
//!
//! Flow on the station: [`accept_for_station`] validates the order body and keeps
//! only INSTANT orders addressed to this station; [`jwe::StationKeyring`] then
//! decrypts `encryptedData` into a [`card::CardData`]. Every refusal is a
//! [`D1Error`] whose `error` names the first field in error, never its value.

pub mod card;
pub mod error;
pub mod jwe;
pub mod model;
pub mod validate;

use serde::Deserialize;
use serde_json::Value;

pub use card::CardData;
pub use error::{D1Error, D1ErrorCode, UnknownD1ErrorCode};
pub use jwe::StationKeyring;
pub use model::{CardRequest, CardRequestInstant};

/// Validates a card order of any channel (the hub's entry point) and returns its model.
pub fn validate_card_request(body: &Value) -> Result<CardRequest, D1Error> {
    validate::validate_order(body)?;
    CardRequest::deserialize(body).map_err(|e| {
        // The schema accepted what the model rejects: our defect, not the caller's.
        tracing::error!(error = %e, "validated card order does not fit the model");
        D1Error::new(D1ErrorCode::InternalError, validate::ROOT_SCHEMA)
    })
}

/// Validates an order and accepts it only if it is INSTANT and addressed to `station_id`.
///
/// Other channels are refused with `OPERATION_NOT_ALLOWED` at `distributionChannel`,
/// another station's order at `persoStation`.
pub fn accept_for_station(body: &Value, station_id: &str) -> Result<CardRequestInstant, D1Error> {
    match validate_card_request(body)? {
        CardRequest::Instant(order) if order.perso_station == station_id => Ok(order),
        CardRequest::Instant(_) => Err(D1Error::new(
            D1ErrorCode::OperationNotAllowed,
            "persoStation",
        )),
        CardRequest::Thales(_) | CardRequest::Central(_) => Err(D1Error::new(
            D1ErrorCode::OperationNotAllowed,
            "distributionChannel",
        )),
    }
}
