//! The create-card contract's field rules (`CreateCard` of the seed spec), checked
//! the way Pismo answers them: 400 with a message naming the field.

use serde_json::{Map, Value};

/// A checked create-card request.
#[derive(Debug, Clone, PartialEq)]
pub struct CreateRequest {
    /// `type`.
    pub card_type: String,
    /// `name` (always `PLASTIC` for a plastic card).
    pub name: String,
    /// `printed_name`.
    pub printed_name: Option<String>,
    /// `embossing_group`.
    pub embossing_group: Option<String>,
    /// `metadata.product`.
    pub product: Option<String>,
    /// `contactless_enabled` (default true).
    pub contactless_enabled: bool,
    /// The fields echoed in the response.
    pub echo: Map<String, Value>,
}

/// The printed-name rule: 2–26, letters a–z/A–Z and space only (EMV 5F20).
pub fn printed_name_ok(s: &str) -> bool {
    (2..=26).contains(&s.chars().count()) && s.chars().all(|c| c.is_ascii_alphabetic() || c == ' ')
}

fn string<'a>(o: &'a Map<String, Value>, k: &str) -> Result<Option<&'a str>, String> {
    match o.get(k) {
        None => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(_) => Err(format!("the field {k} must be a string")),
    }
}

fn boolean(o: &Map<String, Value>, k: &str) -> Result<Option<bool>, String> {
    match o.get(k) {
        None => Ok(None),
        Some(Value::Bool(b)) => Ok(Some(*b)),
        Some(_) => Err(format!("the field {k} must be a boolean")),
    }
}

fn integer(o: &Map<String, Value>, k: &str) -> Result<Option<i64>, String> {
    match o.get(k) {
        None => Ok(None),
        Some(Value::Number(n)) if n.is_i64() => Ok(n.as_i64()),
        Some(Value::Number(n)) if n.is_u64() => Err(format!("the field {k} is out of range")),
        Some(_) => Err(format!("the field {k} must be an integer")),
    }
}

fn len_between(k: &str, s: &str, min: usize, max: usize) -> Result<(), String> {
    let n = s.chars().count();
    if n < min || n > max {
        return Err(format!("the field {k} must be {min} to {max} characters"));
    }
    Ok(())
}

fn one_of(k: &str, s: &str, allowed: &[&str]) -> Result<(), String> {
    if allowed.contains(&s) {
        Ok(())
    } else {
        Err(format!(
            "the field {k} must be one of {}",
            allowed.join(", ")
        ))
    }
}

/// Check a create-card body against every rule of the `CreateCard` schema.
pub fn check_create(body: &Value) -> Result<CreateRequest, String> {
    let o = body
        .as_object()
        .ok_or_else(|| "the request body must be a JSON object".to_string())?;
    let card_type = string(o, "type")?.ok_or("the field type is required")?;
    one_of(
        "type",
        card_type,
        &["PLASTIC", "VIRTUAL", "RECURRING", "TEMPORARY"],
    )?;
    let name = string(o, "name")?.ok_or("the field name is required")?;
    len_between("name", name, 1, 50)?;
    let printed_name = string(o, "printed_name")?;
    if let Some(p) = printed_name {
        if !printed_name_ok(p) {
            return Err(
                "the field printed_name must be 2 to 26 letters (a-z, A-Z) or spaces".into(),
            );
        }
    }
    if let Some(p) = integer(o, "pin_length")? {
        if p != 4 && p != 6 {
            return Err("the field pin_length must be 4 or 6".into());
        }
    }
    if let Some(h) = integer(o, "cvv_rotation_interval_hours")? {
        if !(1..=4320).contains(&h) {
            return Err("the field cvv_rotation_interval_hours must be 1 to 4320".into());
        }
    }
    string(o, "transaction_limit")?;
    let product = match o.get("metadata") {
        None => None,
        Some(Value::Object(m)) => {
            if Value::Object(m.clone()).to_string().len() > 3200 {
                return Err("the field metadata must be at most 3200 bytes".into());
            }
            m.get("product").and_then(Value::as_str).map(str::to_string)
        }
        Some(_) => return Err("the field metadata must be a JSON object".into()),
    };
    let group = string(o, "embossing_group")?;
    if let Some(g) = group {
        len_between("embossing_group", g, 2, 32)?;
    }
    if let Some(f) = string(o, "embossing_custom_field")? {
        len_between("embossing_custom_field", f, 0, 1000)?;
    }
    let contactless = boolean(o, "contactless_enabled")?.unwrap_or(true);
    boolean(o, "abu_enabled")?;
    string(o, "template_id")?;
    if let Some(m) = string(o, "mode_type")? {
        one_of("mode_type", m, &["SINGLE", "COMBO"])?;
    }
    boolean(o, "generate_pvv")?;
    let validity = integer(o, "validity_period_hours")?;
    if validity.is_some() && matches!(card_type, "TEMPORARY" | "RECURRING") {
        return Err(format!(
            "the field validity_period_hours cannot be set for a {card_type} card"
        ));
    }
    if let Some(s) = string(o, "status")? {
        one_of("status", s, &["UNNUMBERED"])?;
        if printed_name.is_none() {
            return Err("the field printed_name is required for an UNNUMBERED card".into());
        }
    }
    if let Some(b) = string(o, "brand")? {
        one_of(
            "brand",
            b,
            &["VISA", "MASTERCARD", "ELO", "RUPAY", "PRIVATE"],
        )?;
    }
    string(o, "expiration_date")?;
    boolean(o, "atm_change_online_pin_when_script_sent")?;

    let mut echo = Map::new();
    for k in [
        "transaction_limit",
        "metadata",
        "cvv_rotation_interval_hours",
        "embossing_custom_field",
        "abu_enabled",
        "template_id",
        "mode_type",
        "validity_period_hours",
    ] {
        if let Some(v) = o.get(k) {
            echo.insert(k.into(), v.clone());
        }
    }
    Ok(CreateRequest {
        // Whatever is passed for a plastic card, its alias is PLASTIC.
        name: if card_type == "PLASTIC" {
            "PLASTIC".into()
        } else {
            name.into()
        },
        card_type: card_type.into(),
        printed_name: printed_name.map(str::to_string),
        embossing_group: group.map(str::to_string),
        product,
        contactless_enabled: contactless,
        echo,
    })
}

/// Integers of an optional array field (`cards`, `programs`).
pub fn int_array(o: &Map<String, Value>, k: &str) -> Result<Option<Vec<i64>>, String> {
    match o.get(k) {
        None => Ok(None),
        Some(Value::Array(items)) => items
            .iter()
            .map(|v| {
                v.as_i64().filter(|_| v.is_i64()).ok_or_else(|| {
                    format!("the field {k} must list integer ids from -2^63 to 2^63-1")
                })
            })
            .collect::<Result<Vec<_>, _>>()
            .map(Some),
        Some(_) => Err(format!("the field {k} must be an array of integers")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_plastic_card_needs_only_name_and_type_and_is_always_named_plastic() {
        let r = check_create(&json!({"name": "anything", "type": "PLASTIC"})).unwrap();
        assert_eq!(r.name, "PLASTIC");
        assert!(r.contactless_enabled);
    }

    #[test]
    fn name_and_type_are_required() {
        assert!(check_create(&json!({"type": "PLASTIC"}))
            .unwrap_err()
            .contains("name"));
        assert!(check_create(&json!({"name": "x"}))
            .unwrap_err()
            .contains("type"));
    }

    #[test]
    fn printed_name_follows_the_emv_5f20_rule() {
        let with =
            |p: &str| check_create(&json!({"name": "P", "type": "PLASTIC", "printed_name": p}));
        assert!(with("JANE DOE").is_ok());
        assert!(with("J").unwrap_err().contains("printed_name"));
        assert!(with("JOSÉ").unwrap_err().contains("printed_name"));
        assert!(with(&"A".repeat(27)).unwrap_err().contains("printed_name"));
    }

    #[test]
    fn wrong_types_and_enum_values_are_refused() {
        for body in [
            json!({"name": "P", "type": "PAPER"}),
            json!({"name": 1, "type": "PLASTIC"}),
            json!({"name": "P", "type": "PLASTIC", "pin_length": 5}),
            json!({"name": "P", "type": "PLASTIC", "cvv_rotation_interval_hours": 0}),
            json!({"name": "P", "type": "PLASTIC", "embossing_group": "X"}),
            json!({"name": "P", "type": "PLASTIC", "metadata": "x"}),
            json!({"name": "P", "type": "PLASTIC", "contactless_enabled": "yes"}),
            json!({"name": "P", "type": "TEMPORARY", "validity_period_hours": 24}),
            json!({"name": "P", "type": "PLASTIC", "status": "UNNUMBERED"}),
            json!([]),
        ] {
            assert!(check_create(&body).is_err(), "{body}");
        }
    }
}
