//! The published vectors (tests/fixtures/emv-gp-vectors.json) through the public API.

use station_emv::card_data::{Pan, YearMonth};
use station_emv::data::cryptogram::{visa_cvn10, Cvn10Input};
use station_emv::data::cvv::visa_cvv;
use station_emv::data::derive::{key_check_value, option_a_icc_master_key, Psn, ServiceCode};

fn vectors() -> serde_json::Value {
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/emv-gp-vectors.json"
    ))
    .unwrap();
    serde_json::from_str(&text).unwrap()
}

fn s<'a>(v: &'a serde_json::Value, k: &str) -> &'a str {
    v[k].as_str().unwrap()
}

fn h(v: &serde_json::Value, k: &str) -> Vec<u8> {
    hex::decode(s(v, k)).unwrap()
}

#[test]
fn option_a_icc_master_key_and_kcv_match_the_vector() {
    let v = &vectors()["option_a"];
    let mk = option_a_icc_master_key(
        &h(v, "imk"),
        &Pan::new(s(v, "pan")).unwrap(),
        Psn::new(s(v, "psn")).unwrap(),
    )
    .unwrap();
    assert_eq!(hex::encode_upper(&*mk), s(v, "icc_mk"));
    assert_eq!(
        hex::encode_upper(key_check_value(&mk).unwrap()),
        s(v, "kcv")
    );
}

#[test]
fn visa_cvv_matches_the_vector() {
    let v = &vectors()["cvv"];
    let cvv = visa_cvv(
        &h(v, "cvk_a"),
        &h(v, "cvk_b"),
        &Pan::new(s(v, "pan")).unwrap(),
        YearMonth::parse(s(v, "exp_yymm")).unwrap(),
        &ServiceCode::new(s(v, "service_code")).unwrap(),
    )
    .unwrap();
    assert_eq!(cvv.as_str(), s(v, "cvv"));
}

#[test]
fn visa_cvn10_arqc_under_the_option_a_key_matches_the_vector() {
    let all = vectors();
    let v = &all["visa_cvn10_arqc"];
    // The CVN 10 vector's MK-AC is the Option A vector's ICC master key.
    assert_eq!(s(v, "icc_mk_ac"), s(&all["option_a"], "icc_mk"));
    let a = |k: &str| h(v, k);
    let input = Cvn10Input {
        amount: a("9F02").try_into().unwrap(),
        amount_other: a("9F03").try_into().unwrap(),
        terminal_country: a("9F1A").try_into().unwrap(),
        tvr: a("95").try_into().unwrap(),
        currency: a("5F2A").try_into().unwrap(),
        date: a("9A").try_into().unwrap(),
        tx_type: a("9C")[0],
        unpredictable_number: a("9F37").try_into().unwrap(),
        aip: a("82").try_into().unwrap(),
        atc: a("9F36").try_into().unwrap(),
        cvr: a("cvr").try_into().unwrap(),
    };
    let arqc = visa_cvn10(&a("icc_mk_ac"), &input).unwrap();
    assert_eq!(hex::encode_upper(arqc), s(v, "arqc"));
}
