//! Serde types of the D1 card order request body (`cardRequest` in the spec).
//!
//! Field names are the spec's camelCase names. Deserialising does not check
//! patterns or lengths: run [`crate::order::validate`] first (the entry points in
//! [`crate::order`] do). Unknown extra properties are ignored, as D1 may add some.

use serde::{Deserialize, Serialize};

/// A card order, one variant per `distributionChannel`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "distributionChannel")]
pub enum CardRequest {
    /// Personalized at a Thales center.
    #[serde(rename = "THALES")]
    Thales(CardRequestThales),
    /// Personalized over the counter at a branch station.
    #[serde(rename = "INSTANT")]
    Instant(CardRequestInstant),
    /// Personalized at a bank or partner center.
    #[serde(rename = "CENTRAL")]
    Central(CardRequestCentral),
}

impl CardRequest {
    /// The `distributionChannel` wire value.
    pub fn channel(&self) -> &'static str {
        match self {
            CardRequest::Thales(_) => "THALES",
            CardRequest::Instant(_) => "INSTANT",
            CardRequest::Central(_) => "CENTRAL",
        }
    }

    /// The compact JWE carrying the card data, whatever the channel.
    pub fn encrypted_data(&self) -> &str {
        match self {
            CardRequest::Thales(r) => &r.encrypted_data,
            CardRequest::Instant(r) => &r.encrypted_data,
            CardRequest::Central(r) => &r.encrypted_data,
        }
    }
}

/// Deprecated card state (still accepted, unused).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum CardState {
    /// Active.
    Active,
    /// Suspended.
    Suspended,
}

/// `distributionChannel = THALES`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CardRequestThales {
    /// Consumer identifier (needed for implicit registration).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub consumer_id: Option<String>,
    /// Card product identifier (needed for implicit registration).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub card_product_id: Option<String>,
    /// Issuer's own identifier of this production request.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub issuer_request_id: Option<String>,
    /// Service options agreed at onboarding.
    pub services: Services,
    /// Compact JWE of the card data, opaque here.
    pub encrypted_data: String,
    /// What is printed on the card.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub card_design: Option<CardDesign>,
    /// EMV profile and key indexes.
    pub payment_application: PaymentApplication,
    /// Card carrier options.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub card_carrier_config: Option<CardCarrierConfig>,
    /// Packaging options.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub packaging_config: Option<PackagingConfig>,
    /// Where the card is sent.
    pub shipment: Shipment,
    /// Deprecated.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state: Option<CardState>,
    /// Deprecated.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub old_card_id: Option<String>,
}

/// `distributionChannel = INSTANT`: the orders this station personalizes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CardRequestInstant {
    /// Consumer identifier.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub consumer_id: Option<String>,
    /// Card product identifier.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub card_product_id: Option<String>,
    /// The station that must personalize the card.
    pub perso_station: String,
    /// Service options agreed at onboarding.
    pub services: Services,
    /// Compact JWE of the card data, opaque here.
    pub encrypted_data: String,
    /// What is printed on the card.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub card_design: Option<CardDesign>,
    /// EMV profile and key indexes.
    pub payment_application: PaymentApplication,
    /// Card carrier options.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub card_carrier_config: Option<CardCarrierConfig>,
    /// Deprecated.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state: Option<CardState>,
    /// Deprecated.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub old_card_id: Option<String>,
}

/// `distributionChannel = CENTRAL`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CardRequestCentral {
    /// Consumer identifier.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub consumer_id: Option<String>,
    /// Card product identifier.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub card_product_id: Option<String>,
    /// The personalization center.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub perso_center: Option<String>,
    /// Service options agreed at onboarding.
    pub services: Services,
    /// Compact JWE of the card data, opaque here.
    pub encrypted_data: String,
    /// What is printed on the card.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub card_design: Option<CardDesign>,
    /// EMV profile and key indexes.
    pub payment_application: PaymentApplication,
    /// Card carrier options.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub card_carrier_config: Option<CardCarrierConfig>,
    /// Where the card is sent.
    pub shipment: Shipment,
    /// Deprecated.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state: Option<CardState>,
    /// Deprecated.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub old_card_id: Option<String>,
}

/// Service options; absent values take the spec defaults (see the accessors).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Services {
    /// Issuance type identifier, e.g. `CREATION`, `RENEWAL`, `REPLACEMENT`.
    pub issuance: String,
    /// Production priority identifier.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub priority: Option<String>,
    /// Shipment method identifier (default `NO_SHIPMENT`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delivery: Option<String>,
    /// Packaging identifier (default `NO_PACK`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub packaging: Option<String>,
    /// Card carrier identifier (default `NO_CARRIER`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub card_carrier: Option<String>,
    /// Send the PIN by post (default false).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pin_mailer: Option<bool>,
    /// Produce a sample card (default false).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alpha_card: Option<bool>,
}

impl Services {
    /// Shipment method, `NO_SHIPMENT` when absent.
    pub fn delivery_or_default(&self) -> &str {
        self.delivery.as_deref().unwrap_or("NO_SHIPMENT")
    }

    /// Packaging, `NO_PACK` when absent.
    pub fn packaging_or_default(&self) -> &str {
        self.packaging.as_deref().unwrap_or("NO_PACK")
    }

    /// Card carrier, `NO_CARRIER` when absent.
    pub fn card_carrier_or_default(&self) -> &str {
        self.card_carrier.as_deref().unwrap_or("NO_CARRIER")
    }

    /// Whether a PIN mailer is requested (false when absent).
    pub fn pin_mailer_or_default(&self) -> bool {
        self.pin_mailer.unwrap_or(false)
    }

    /// Whether this is a sample card (false when absent).
    pub fn alpha_card_or_default(&self) -> bool {
        self.alpha_card.unwrap_or(false)
    }
}

/// What is printed on the card body.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CardDesign {
    /// Additional image identifiers (at most 5).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub images: Vec<String>,
    /// Additional text lines (at most 10).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub custom_lines: Vec<String>,
    /// Customer-uploaded image identifier.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub card_image: Option<String>,
    /// Physical card artwork identifier.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub artwork_id: Option<String>,
    /// Member id printed on the card.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub member_id: Option<String>,
}

/// EMV profile ("Model 1" data set) and key indexes, each two hex digits.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PaymentApplication {
    /// Named EMV profile.
    pub config: String,
    /// Master key index for ODA key certification.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub oda_key_index: Option<String>,
    /// Issuer master key index for ICC key derivation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub derivation_key_index: Option<String>,
    /// PIN verification key index (PVV).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pv_key_index: Option<String>,
    /// Card verification key index (CVV).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cv_key_index: Option<String>,
}

/// Card carrier options.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CardCarrierConfig {
    /// ISO 639-1 language, upper case.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub language: Option<String>,
    /// Additional image identifiers (at most 5).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub images: Vec<String>,
    /// Additional text lines (at most 10).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub custom_lines: Vec<String>,
    /// Cards sharing this id go on one carrier.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub multi_card_id: Option<String>,
    /// Position of the card on a shared carrier.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub multi_card_order: Option<String>,
}

/// Packaging options.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PackagingConfig {
    /// Insert identifiers (at most 10).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub inserts: Vec<String>,
}

/// Shipment, one variant per `type`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type")]
pub enum Shipment {
    /// Sent to the consumer alone.
    #[serde(rename = "INDIVIDUAL")]
    Individual(ShipmentIndividual),
    /// Grouped with other cards to one delivery address.
    #[serde(rename = "BULK")]
    Bulk(ShipmentBulk),
}

/// `type = INDIVIDUAL`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ShipmentIndividual {
    /// The recipient's address.
    pub delivery_address: Address,
}

/// `type = BULK`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ShipmentBulk {
    /// The agency's address.
    pub delivery_address: Address,
    /// The consumer's address (for the card carrier).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub individual_address: Option<Box<Address>>,
    /// First grouping level.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group_id: Option<String>,
    /// Second grouping level.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub order_id: Option<String>,
}

/// A postal address with optional contact details.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Address {
    /// Title.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
    /// First name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub first_name: Option<String>,
    /// Last name.
    pub last_name: String,
    /// Company name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub company_name: Option<String>,
    /// First address line.
    pub line1: String,
    /// Second address line.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub line2: Option<String>,
    /// Third address line.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub line3: Option<String>,
    /// Deprecated fourth address line.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub line4: Option<String>,
    /// City.
    pub city: String,
    /// State.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state: Option<String>,
    /// Postal code.
    pub zip_code: String,
    /// ISO 3166-1 alpha-2 country.
    pub country_code: String,
    /// Contact phone.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mobile_phone_number: Option<MobilePhoneNumber>,
    /// Contact email.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
}

/// International phone number.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MobilePhoneNumber {
    /// Calling code, e.g. `+33`.
    pub country_code: String,
    /// Local number, digits only.
    pub phone_number: String,
}
