//! D1 card order validation against `d1-card-order.openapi.json`, and station acceptance.

use serde_json::{json, Value};
use station_agent::order::model::{CardRequest, Shipment};
use station_agent::order::{accept_for_station, validate_card_request, D1Error, D1ErrorCode};

const STATION: &str = "BRANCH-PARIS-01-ST1";

fn instant() -> Value {
    serde_json::from_str(include_str!("fixtures/orders/instant-valid.json")).unwrap()
}

/// The INSTANT fixture turned into a CENTRAL order with an INDIVIDUAL shipment (addresses live there).
fn central() -> Value {
    let mut o = instant();
    let m = o.as_object_mut().unwrap();
    m.insert("distributionChannel".into(), json!("CENTRAL"));
    m.remove("persoStation");
    m.insert("persoCenter".into(), json!("CENTER-LYON"));
    m.insert(
        "shipment".into(),
        json!({
            "type": "INDIVIDUAL",
            "deliveryAddress": {
                "firstName": "Jean",
                "lastName": "Dupont",
                "line1": "12 rue de la Paix",
                "zipCode": "75002",
                "city": "Paris",
                "countryCode": "FR",
                "mobilePhoneNumber": {"countryCode": "+33", "phoneNumber": "612345678"},
                "email": "jean.dupont@example.fr"
            }
        }),
    );
    o
}

fn set(order: &mut Value, pointer: &str, v: Value) {
    *order.pointer_mut(pointer).unwrap() = v;
}

fn remove(order: &mut Value, pointer: &str) {
    let (parent, key) = pointer.rsplit_once('/').unwrap();
    order
        .pointer_mut(parent)
        .unwrap()
        .as_object_mut()
        .unwrap()
        .remove(key)
        .unwrap();
}

fn err(code: D1ErrorCode, field: &str) -> D1Error {
    D1Error::new(code, field)
}

fn fmt_err(field: &str) -> D1Error {
    err(D1ErrorCode::FieldInvalidFormat, field)
}

fn value_err(field: &str) -> D1Error {
    err(D1ErrorCode::FieldInvalidValue, field)
}

fn check(order: &Value) -> Result<(), D1Error> {
    validate_card_request(order).map(|_| ())
}

#[test]
fn instant_fixture_is_accepted_by_its_station() {
    let order = accept_for_station(&instant(), STATION).unwrap();
    assert_eq!(order.perso_station, STATION);
    assert_eq!(order.payment_application.config, "VIS16_VCPS22_STD");
    assert_eq!(order.card_design.unwrap().custom_lines[0], "Zoë Dupont");
}

#[test]
fn hub_accepts_all_three_channels() {
    let mut thales = central();
    set(&mut thales, "/distributionChannel", json!("THALES"));
    for (order, channel) in [
        (instant(), "INSTANT"),
        (central(), "CENTRAL"),
        (thales, "THALES"),
    ] {
        assert_eq!(validate_card_request(&order).unwrap().channel(), channel);
    }
}

#[test]
fn model_round_trips_through_serde() {
    let model = validate_card_request(&central()).unwrap();
    let back: CardRequest = serde_json::from_value(serde_json::to_value(&model).unwrap()).unwrap();
    assert_eq!(back, model);
    let CardRequest::Central(c) = back else {
        panic!("channel")
    };
    assert!(matches!(c.shipment, Shipment::Individual(_)));
}

#[test]
fn unicode_letters_accepted_in_last_name() {
    for name in ["Zoë", "Иванова", "Ñúñez-García", "李"] {
        let mut o = central();
        set(&mut o, "/shipment/deliveryAddress/lastName", json!(name));
        assert_eq!(check(&o), Ok(()), "{name}");
    }
}

#[test]
fn combining_mark_accepted_in_last_name() {
    let mut o = central();
    // "Zoe" + U+0308 COMBINING DIAERESIS (\p{M}).
    set(
        &mut o,
        "/shipment/deliveryAddress/lastName",
        json!("Zoe\u{0308}"),
    );
    assert_eq!(check(&o), Ok(()));
}

#[test]
fn last_name_over_40_code_points_is_invalid_format() {
    let mut o = central();
    set(
        &mut o,
        "/shipment/deliveryAddress/lastName",
        json!("é".repeat(41)),
    );
    assert_eq!(check(&o), Err(fmt_err("shipment.deliveryAddress.lastName")));
}

#[test]
fn last_name_of_40_two_byte_code_points_is_accepted() {
    let mut o = central();
    set(
        &mut o,
        "/shipment/deliveryAddress/lastName",
        json!("é".repeat(40)),
    );
    assert_eq!(check(&o), Ok(()));
}

#[test]
fn bad_zip_code_is_invalid_format() {
    let mut o = central();
    set(&mut o, "/shipment/deliveryAddress/zipCode", json!("75002!"));
    assert_eq!(check(&o), Err(fmt_err("shipment.deliveryAddress.zipCode")));
}

#[test]
fn zip_code_with_space_and_dash_is_accepted() {
    let mut o = central();
    set(
        &mut o,
        "/shipment/deliveryAddress/zipCode",
        json!("SW1A 1AA-9"),
    );
    assert_eq!(check(&o), Ok(()));
}

#[test]
fn email_without_top_level_domain_is_invalid_format() {
    let mut o = central();
    set(
        &mut o,
        "/shipment/deliveryAddress/email",
        json!("jean.dupont@example"),
    );
    assert_eq!(check(&o), Err(fmt_err("shipment.deliveryAddress.email")));
}

#[test]
fn mobile_phone_without_plus_is_invalid_format() {
    let mut o = central();
    set(
        &mut o,
        "/shipment/deliveryAddress/mobilePhoneNumber/countryCode",
        json!("33"),
    );
    assert_eq!(
        check(&o),
        Err(fmt_err(
            "shipment.deliveryAddress.mobilePhoneNumber.countryCode"
        ))
    );
}

#[test]
fn custom_lines_over_max_items_10_is_invalid_value() {
    let mut o = instant();
    set(&mut o, "/cardDesign/customLines", json!(vec!["line"; 11]));
    assert_eq!(check(&o), Err(value_err("cardDesign.customLines")));
}

#[test]
fn custom_line_with_character_outside_the_set_names_its_index() {
    let mut o = instant();
    set(
        &mut o,
        "/cardDesign/customLines",
        json!(["a", "b", "Hello!"]),
    );
    assert_eq!(check(&o), Err(fmt_err("cardDesign.customLines[2]")));
}

#[test]
fn custom_line_accepts_characters_of_the_slash_to_question_mark_range() {
    let mut o = instant();
    // `\/-?` is the range '/'..'?' which holds '<' and '>'.
    set(&mut o, "/cardDesign/customLines", json!(["<VIP> 1/2"]));
    assert_eq!(check(&o), Ok(()));
}

#[test]
fn image_accepts_a_character_of_the_dot_to_backslash_range() {
    let mut o = instant();
    // `.-\\` is the range '.'..'\' which holds '@', '[' and ':'.
    set(
        &mut o,
        "/cardDesign/images",
        json!(["logo@2x[front]:v1.png"]),
    );
    assert_eq!(
        check(&o),
        Err(fmt_err("cardDesign.images[0]")),
        "']' is outside"
    );
    set(
        &mut o,
        "/cardDesign/images",
        json!(["logo@2x[front:v1.png"]),
    );
    assert_eq!(check(&o), Ok(()));
}

#[test]
fn images_over_max_items_5_is_invalid_value() {
    let mut o = instant();
    set(&mut o, "/cardCarrierConfig/images", json!(vec!["a.png"; 6]));
    assert_eq!(check(&o), Err(value_err("cardCarrierConfig.images")));
}

#[test]
fn unknown_distribution_channel_is_invalid_value() {
    let mut o = instant();
    set(&mut o, "/distributionChannel", json!("BRANCH"));
    assert_eq!(check(&o), Err(value_err("distributionChannel")));
}

#[test]
fn missing_distribution_channel_is_invalid_format() {
    let mut o = instant();
    remove(&mut o, "/distributionChannel");
    assert_eq!(check(&o), Err(fmt_err("distributionChannel")));
}

#[test]
fn unknown_shipment_type_is_invalid_value() {
    let mut o = central();
    set(&mut o, "/shipment/type", json!("EXPRESS"));
    assert_eq!(check(&o), Err(value_err("shipment.type")));
}

#[test]
fn bulk_shipment_is_accepted() {
    let mut o = central();
    set(&mut o, "/shipment/type", json!("BULK"));
    o["shipment"]["groupId"] = json!("box-7");
    assert_eq!(check(&o), Ok(()));
}

#[test]
fn missing_perso_station_is_invalid_format() {
    let mut o = instant();
    remove(&mut o, "/persoStation");
    assert_eq!(check(&o), Err(fmt_err("persoStation")));
}

#[test]
fn missing_shipment_on_central_is_invalid_format() {
    let mut o = central();
    remove(&mut o, "/shipment");
    assert_eq!(check(&o), Err(fmt_err("shipment")));
}

#[test]
fn lower_case_hex_derivation_key_index_is_invalid_format() {
    let mut o = instant();
    set(
        &mut o,
        "/paymentApplication/derivationKeyIndex",
        json!("0g"),
    );
    assert_eq!(
        check(&o),
        Err(fmt_err("paymentApplication.derivationKeyIndex"))
    );
}

#[test]
fn missing_services_issuance_is_invalid_format() {
    let mut o = instant();
    remove(&mut o, "/services/issuance");
    assert_eq!(check(&o), Err(fmt_err("services.issuance")));
}

#[test]
fn boolean_given_as_string_is_invalid_format() {
    let mut o = instant();
    set(&mut o, "/services/pinMailer", json!("yes"));
    assert_eq!(check(&o), Err(fmt_err("services.pinMailer")));
}

#[test]
fn null_optional_object_is_invalid_format() {
    let mut o = instant();
    set(&mut o, "/cardDesign", Value::Null);
    assert_eq!(check(&o), Err(fmt_err("cardDesign")));
}

#[test]
fn deprecated_state_outside_enum_is_invalid_value() {
    let mut o = instant();
    o["state"] = json!("DELETED");
    assert_eq!(check(&o), Err(value_err("state")));
}

#[test]
fn language_of_three_letters_is_invalid_format() {
    let mut o = instant();
    set(&mut o, "/cardCarrierConfig/language", json!("FRA"));
    assert_eq!(check(&o), Err(fmt_err("cardCarrierConfig.language")));
}

#[test]
fn unknown_extra_properties_are_tolerated() {
    let mut o = instant();
    o["futureField"] = json!({"anything": [1, 2]});
    o["cardDesign"]["futureFlag"] = json!(true);
    assert_eq!(check(&o), Ok(()));
}

#[test]
fn thales_consumer_id_pattern_is_unanchored_but_instant_is_anchored() {
    let mut thales = central();
    set(&mut thales, "/distributionChannel", json!("THALES"));
    thales["consumerId"] = json!("id 42!");
    assert_eq!(check(&thales), Ok(()), "search semantics find `id`");
    let mut o = instant();
    o["consumerId"] = json!("id 42!");
    assert_eq!(check(&o), Err(fmt_err("consumerId")));
}

#[test]
fn missing_required_field_is_reported_before_bad_properties() {
    let mut o = instant();
    remove(&mut o, "/paymentApplication");
    o["consumerId"] = json!("bad id!");
    assert_eq!(check(&o), Err(fmt_err("paymentApplication")));
}

#[test]
fn first_bad_property_in_spec_order_is_reported() {
    let mut o = instant();
    // Spec order: consumerId comes before cardDesign.
    set(&mut o, "/cardDesign/artworkId", json!("bad id!"));
    o["consumerId"] = json!("bad id!");
    assert_eq!(check(&o), Err(fmt_err("consumerId")));
}

#[test]
fn body_that_is_not_an_object_is_invalid_format() {
    assert_eq!(check(&json!([1, 2])), Err(fmt_err("cardRequest")));
}

#[test]
fn order_for_another_station_is_not_allowed() {
    assert_eq!(
        accept_for_station(&instant(), "BRANCH-LYON-02-ST1"),
        Err(err(D1ErrorCode::OperationNotAllowed, "persoStation"))
    );
}

#[test]
fn non_instant_order_is_not_allowed_at_a_station() {
    assert_eq!(
        accept_for_station(&central(), STATION),
        Err(err(D1ErrorCode::OperationNotAllowed, "distributionChannel"))
    );
}

#[test]
fn invalid_order_is_refused_for_its_data_before_the_station_rule() {
    let mut o = instant();
    set(&mut o, "/persoStation", json!(42));
    assert_eq!(
        accept_for_station(&o, STATION),
        Err(fmt_err("persoStation"))
    );
}

#[test]
fn error_body_serialises_as_d1_error_generic() {
    let body = serde_json::to_value(fmt_err("cardDesign.customLines[2]")).unwrap();
    assert_eq!(
        body,
        json!({"errorCode": "FIELD_INVALID_FORMAT", "error": "cardDesign.customLines[2]"})
    );
}

#[test]
fn error_codes_map_to_the_spec_http_statuses() {
    use D1ErrorCode::*;
    for (code, wire, status) in [
        (FieldInvalidFormat, "FIELD_INVALID_FORMAT", 400),
        (FieldInvalidValue, "FIELD_INVALID_VALUE", 400),
        (CryptoError, "CRYPTO_ERROR", 400),
        (ParsingError, "PARSING_ERROR", 400),
        (AuthorizerUnauthorized, "AUTHORIZER_UNAUTHORIZED", 401),
        (AuthorizerForbidden, "AUTHORIZER_FORBIDDEN", 403),
        (OperationNotAllowed, "OPERATION_NOT_ALLOWED", 403),
        (InternalError, "INTERNAL_ERROR", 500),
        (DataException, "DATA_EXCEPTION", 400),
        (CardProdException, "CARD_PROD_EXCEPTION", 500),
    ] {
        assert_eq!(code.as_str(), wire);
        assert_eq!(serde_json::to_value(code).unwrap(), json!(wire));
        assert_eq!(code.http_status(), status, "{wire}");
    }
}

#[test]
fn image_hyphen_is_outside_the_character_set() {
    let mut o = instant();
    // The class is `_` `.-\\` (a range) `\/` `%` `\^` `?` `=`: no literal '-'.
    set(&mut o, "/cardDesign/images", json!(["partner-1.png"]));
    assert_eq!(check(&o), Err(fmt_err("cardDesign.images[0]")));
}

#[test]
fn every_spec_pattern_agrees_with_the_ecma_oracle() {
    use station_agent::order::validate::Pattern;
    let oracle: Value =
        serde_json::from_str(include_str!("fixtures/orders/ecma-pattern-oracle.json")).unwrap();
    let corpus = oracle["corpus"].as_array().unwrap();
    let patterns = oracle["patterns"].as_array().unwrap();
    assert!(patterns.len() >= 20);
    for (p, expected) in patterns.iter().zip(oracle["expected"].as_array().unwrap()) {
        let p = p.as_str().unwrap();
        let compiled = Pattern::compile(p).unwrap();
        for (s, want) in corpus.iter().zip(expected.as_array().unwrap()) {
            let s = s.as_str().unwrap();
            assert_eq!(
                compiled.is_match(s),
                want.as_bool().unwrap(),
                "{p:?} on {s:?}"
            );
        }
    }
}
