//! Domain values of the Pismo contracts, checked locally against the seed specs
//! before anything is sent.

use serde::{Deserialize, Serialize};

/// Why a value was refused before reaching Pismo; names the field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct FieldError {
    /// The field as staff see it.
    pub field: &'static str,
    /// What is wrong, in plain words.
    pub message: String,
}

fn field(field: &'static str, message: impl Into<String>) -> FieldError {
    FieldError {
        field,
        message: message.into(),
    }
}

/// The name embossed on the card (EMV tag 5F20): 2–26 letters A–Z/a–z and spaces.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct PrintedName(String);

impl PrintedName {
    /// The spec's `PrintedName` rule: 2 to 26 characters, only letters (a-z, A-Z) and space.
    pub fn parse(s: &str) -> Result<Self, FieldError> {
        let len = s.chars().count();
        if !(2..=26).contains(&len) {
            return Err(field(
                "printed name",
                format!("must be 2 to 26 characters, not {len}"),
            ));
        }
        if let Some(c) = s.chars().find(|c| !(c.is_ascii_alphabetic() || *c == ' ')) {
            return Err(field(
                "printed name",
                format!("only letters A to Z and spaces are printed; remove '{c}' (no accents, digits or punctuation)"),
            ));
        }
        if s.trim().is_empty() {
            return Err(field("printed name", "must contain letters"));
        }
        Ok(PrintedName(s.to_string()))
    }

    /// The name as sent.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for PrintedName {
    type Error = FieldError;
    fn try_from(s: String) -> Result<Self, FieldError> {
        PrintedName::parse(&s)
    }
}

impl From<PrintedName> for String {
    fn from(n: PrintedName) -> String {
        n.0
    }
}

/// A Pismo customer id (`x-customer-id`, an integer).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct CustomerId(pub i64);

impl CustomerId {
    /// A positive integer as typed by staff.
    pub fn parse(s: &str) -> Result<Self, FieldError> {
        match s.trim().parse::<i64>() {
            Ok(v) if v > 0 => Ok(CustomerId(v)),
            _ => Err(field(
                "customer id",
                format!("'{s}' is not a Pismo customer id (a positive whole number)"),
            )),
        }
    }
}

impl std::fmt::Display for CustomerId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// A Pismo card id (`CardID2`, an integer); also the D1 `cardId` of the order it becomes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct PismoCardId(pub i64);

impl std::fmt::Display for PismoCardId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// The counter request id: the `x-idempotency-key` of the create call (≤ 36 characters).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct RequestId(String);

impl RequestId {
    /// A fresh id (a hyphenated UUID: exactly 36 characters).
    pub fn new() -> Self {
        RequestId(uuid::Uuid::new_v4().to_string())
    }

    /// An id read back from the journal or typed by an engineer.
    pub fn parse(s: &str) -> Result<Self, FieldError> {
        if s.is_empty() || s.len() > 36 || !s.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(field("request id", "1 to 36 visible characters"));
        }
        Ok(RequestId(s.to_string()))
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl Default for RequestId {
    fn default() -> Self {
        Self::new()
    }
}

impl std::fmt::Display for RequestId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// An embossing group name (`embossing_group`, 2–32 characters).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EmbossingGroup(String);

impl EmbossingGroup {
    /// The spec's `EmbossingGroup` length rule.
    pub fn parse(s: &str) -> Result<Self, FieldError> {
        if !(2..=32).contains(&s.chars().count()) {
            return Err(field("embossing group", "must be 2 to 32 characters"));
        }
        Ok(EmbossingGroup(s.to_string()))
    }

    /// The name.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// An embossing configuration id (`config_id`, a UUID).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConfigId(pub uuid::Uuid);

impl ConfigId {
    /// A UUID in its text form.
    pub fn parse(s: &str) -> Result<Self, FieldError> {
        uuid::Uuid::parse_str(s)
            .map(ConfigId)
            .map_err(|_| field("embossing config id", format!("'{s}' is not a UUID")))
    }
}

impl std::fmt::Display for ConfigId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// `POST /wallet/v2/cards` body for a plastic card, as this station sends it.
#[derive(Debug, Clone, Serialize)]
pub struct CreatePlasticCard {
    /// Always `PLASTIC` for a plastic card (Pismo ignores anything else).
    pub name: &'static str,
    /// `PLASTIC`.
    #[serde(rename = "type")]
    pub card_type: &'static str,
    /// Embossed name.
    pub printed_name: PrintedName,
    /// The branch's group, so the run goes to this branch's embosser.
    pub embossing_group: EmbossingGroup,
    /// The product staff chose, for the embosser (`metadata.product`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub metadata: Option<serde_json::Value>,
}

impl CreatePlasticCard {
    /// A plastic card for the branch's group, with the product in the metadata.
    pub fn new(printed_name: PrintedName, group: EmbossingGroup, product: Option<&str>) -> Self {
        CreatePlasticCard {
            name: "PLASTIC",
            card_type: "PLASTIC",
            printed_name,
            embossing_group: group,
            metadata: product.map(|p| serde_json::json!({ "product": p })),
        }
    }
}

/// `CreateCardResponse` (the fields this station reads).
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
pub struct CardCreated {
    /// Pismo card id.
    pub id: PismoCardId,
    /// Card status (`CREATED` for a new plastic card).
    #[serde(default)]
    pub status: Option<String>,
    /// Card type.
    #[serde(rename = "type", default)]
    pub card_type: Option<String>,
}

/// The error body of the embossing endpoints (`message`, `error`, `status`, `error_code`).
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
pub struct PismoErrorBody {
    /// Human message.
    #[serde(default)]
    pub message: Option<String>,
    /// Error kind (`bad_request`, `not_found`, `StatusNotAcceptable`).
    #[serde(default)]
    pub error: Option<String>,
    /// HTTP status repeated.
    #[serde(default)]
    pub status: Option<i64>,
    /// Error code (often empty).
    #[serde(default)]
    pub error_code: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn printed_name_accepts_letters_and_spaces_from_2_to_26() {
        assert!(PrintedName::parse("JO").is_ok());
        assert!(PrintedName::parse("Chester Fields").is_ok());
        assert!(PrintedName::parse(&"A".repeat(26)).is_ok());
    }

    #[test]
    fn printed_name_refuses_accents_digits_punctuation_and_bad_lengths() {
        for bad in [
            "J",
            &"A".repeat(27),
            "JOSÉ SILVA",
            "R2 D2",
            "O'BRIEN",
            "DOE/JANE",
            "  ",
        ] {
            let e = PrintedName::parse(bad).unwrap_err();
            assert_eq!(e.field, "printed name", "{bad}");
        }
    }

    #[test]
    fn request_ids_fit_the_36_character_idempotency_key() {
        assert_eq!(RequestId::new().as_str().len(), 36);
        assert!(RequestId::parse(&"x".repeat(37)).is_err());
    }

    #[test]
    fn customer_id_must_be_a_positive_integer() {
        assert_eq!(CustomerId::parse("42").unwrap(), CustomerId(42));
        assert!(CustomerId::parse("0").is_err());
        assert!(CustomerId::parse("abc").is_err());
    }

    #[test]
    fn a_plastic_create_body_carries_type_name_group_and_product() {
        let body = CreatePlasticCard::new(
            PrintedName::parse("JANE DOE").unwrap(),
            EmbossingGroup::parse("BRANCH-001").unwrap(),
            Some("DEV-VISA"),
        );
        let v = serde_json::to_value(&body).unwrap();
        assert_eq!(v["type"], "PLASTIC");
        assert_eq!(v["name"], "PLASTIC");
        assert_eq!(v["printed_name"], "JANE DOE");
        assert_eq!(v["embossing_group"], "BRANCH-001");
        assert_eq!(v["metadata"]["product"], "DEV-VISA");
    }
}
