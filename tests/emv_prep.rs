//! Data preparation: shipped profiles produce well-formed DGIs; Model 2 sets are
//! checked; bad card data is a DATA_EXCEPTION with a reason.

mod emv_support;

use emv_support::{dev_keystore, keys, order, profile};
use station_emv::data::prep::{prepare, ChipDataModel, Model2Data, PrepError, PrepInput};
use station_emv::dgi::{self, Dgi, DgiEncryption};
use station_emv::keys::{KeyIndex, KeyStore};
use station_emv::tlv;
use station_hal::StaffFacing;
use zeroize::Zeroizing;

fn record(dgis: &[Dgi], id: u16) -> Vec<u8> {
    dgis.iter()
        .find(|d| d.id == id)
        .unwrap_or_else(|| panic!("DGI {id:04X}"))
        .data
        .clone()
}

fn find_in_records(dgis: &[Dgi], tag: u32) -> Option<Vec<u8>> {
    dgis.iter()
        .filter(|d| (0x01..=0x1E).contains(&(d.id >> 8)))
        .find_map(|d| tlv::find(&d.data, tag).unwrap())
}

#[test]
fn every_shipped_profile_prepares_cards_whose_dgis_parse_back() {
    let (_d, ks) = dev_keystore();
    for name in [
        "visa_vsdc_cvn10",
        "visa_vsdc_cvn18",
        "mc_mchip_cvn16",
        "mc_mchip_cvn17",
    ] {
        let p = profile(name);
        let card = prepare(&order(), &p, &keys(), &ks).unwrap();
        assert_eq!(card.aid, p.aid, "{name}");
        let mut wire = Vec::new();
        for d in &card.dgis {
            wire.extend(d.to_bytes().unwrap());
        }
        let back = dgi::parse(&wire).unwrap();
        assert_eq!(
            back.iter()
                .map(|d| (d.id, d.data.clone()))
                .collect::<Vec<_>>(),
            card.dgis
                .iter()
                .map(|d| (d.id, d.data.clone()))
                .collect::<Vec<_>>(),
            "{name}"
        );
        for r in &p.records {
            let data = record(&card.dgis, r.dgi_id());
            let top = tlv::parse(&data).unwrap();
            assert_eq!(top.len(), 1, "{name}");
            assert_eq!(top[0].tag, 0x70, "{name}: record DGI {:04X}", r.dgi_id());
            top[0].children().unwrap();
        }
    }
}

#[test]
fn tag_57_agrees_with_pan_expiry_and_service_code() {
    let (_d, ks) = dev_keystore();
    let card = prepare(&order(), &profile("visa_vsdc_cvn10"), &keys(), &ks).unwrap();
    let t57 = hex::encode_upper(find_in_records(&card.dgis, 0x57).unwrap());
    assert!(t57.starts_with("4761739001010010D2811201"), "{}", &t57[..6]);
    assert_eq!(t57.trim_end_matches('F'), card.track2_equivalent.as_str());
    assert_eq!(
        hex::encode_upper(find_in_records(&card.dgis, 0x5A).unwrap()),
        "4761739001010010"
    );
    assert_eq!(
        hex::encode(find_in_records(&card.dgis, 0x5F24).unwrap()),
        "281130"
    );
    assert_eq!(
        hex::encode(find_in_records(&card.dgis, 0x5F25).unwrap()),
        "251101"
    );
    assert_eq!(
        hex::encode(find_in_records(&card.dgis, 0x5F34).unwrap()),
        "01"
    );
    assert_eq!(find_in_records(&card.dgis, 0x5F20).unwrap(), b"DUPONT/JEAN");
    assert_eq!(
        hex::encode(find_in_records(&card.dgis, 0x5F28).unwrap()),
        "0840"
    );
}

#[test]
fn chip_track_2_carries_the_icvv_and_the_stripe_the_cvv() {
    let (_d, ks) = dev_keystore();
    let card = prepare(&order(), &profile("visa_vsdc_cvn10"), &keys(), &ks).unwrap();
    // Pattern {pvki}{pvv}{cvv}00000 without a PVV: 0 0000 then the CVV.
    let pan = station_emv::card_data::Pan::new("4761739001010010").unwrap();
    let exp = station_emv::card_data::YearMonth::parse("2811").unwrap();
    let svc = |s: &str| station_emv::data::derive::ServiceCode::new(s).unwrap();
    let icvv = ks.cvv(KeyIndex(1), &pan, exp, &svc("999")).unwrap();
    let cvv = ks.cvv(KeyIndex(1), &pan, exp, &svc("201")).unwrap();
    assert_eq!(
        card.track2_equivalent.as_str(),
        format!("4761739001010010D281120100000{}00000", icvv.as_str())
    );
    assert_eq!(
        card.magstripe_track2.as_deref().unwrap().as_str(),
        format!("4761739001010010=281120100000{}00000", cvv.as_str())
    );
    assert_eq!(
        find_in_records(&card.dgis, 0x9F1F).unwrap(),
        format!("00000{}00000", icvv.as_str()).into_bytes()
    );
}

#[test]
fn supplied_pvv_and_cvv1_are_placed_as_given() {
    let (_d, ks) = dev_keystore();
    let mut input = order();
    input.pvv = Some(Zeroizing::new("12345".into()));
    input.cvv1 = Some(Zeroizing::new("999".into()));
    let card = prepare(&input, &profile("visa_vsdc_cvn10"), &keys(), &ks).unwrap();
    let stripe = card.magstripe_track2.unwrap();
    assert!(
        stripe.ends_with("=28112011234599900000"),
        "stripe discretionary data misplaced"
    );
    assert!(card.track2_equivalent.contains("D281120112345"));
}

#[test]
fn expiry_in_february_of_a_leap_year_is_the_29th() {
    let (_d, ks) = dev_keystore();
    let mut input = order();
    input.exp_yymm = "2802".into();
    input.effective_yymm = None;
    let card = prepare(&input, &profile("visa_vsdc_cvn10"), &keys(), &ks).unwrap();
    assert_eq!(
        hex::encode(find_in_records(&card.dgis, 0x5F24).unwrap()),
        "280229"
    );
    assert_eq!(
        find_in_records(&card.dgis, 0x5F25),
        None,
        "no effective date ordered"
    );
}

#[test]
fn icc_key_dgis_hold_the_option_a_keys_encrypted_and_their_kcvs() {
    let (_d, ks) = dev_keystore();
    let card = prepare(&order(), &profile("visa_vsdc_cvn10"), &keys(), &ks).unwrap();
    let k = card.dgis.iter().find(|d| d.id == 0x8000).unwrap();
    assert_eq!(k.encryption, DgiEncryption::Nopad);
    assert_eq!(k.data.len(), 48);
    // The Option A vector: same IMK (dev index 01 AC), PAN and PSN.
    assert_eq!(
        hex::encode_upper(&k.data[..16]),
        "2F02C8B0E9CBC7B05B5167F7A1CDE6E5"
    );
    assert_eq!(
        hex::encode_upper(&record(&card.dgis, 0x9000)[..3]),
        "F23EFA"
    );
    assert_eq!(record(&card.dgis, 0x9010), vec![3, 3]);
    let gpo = record(&card.dgis, 0x9104);
    assert_eq!(
        hex::encode_upper(tlv::find(&gpo, 0x82).unwrap().unwrap()),
        "1800"
    );
    assert_eq!(
        hex::encode_upper(tlv::find(&gpo, 0x94).unwrap().unwrap()),
        "0801010010010200"
    );
}

/// A 19-digit PAN (track 2 then needs a shorter discretionary pattern to fit 37).
fn long_pan_order() -> PrepInput {
    PrepInput {
        pan: Zeroizing::new("4761739001010000015".into()),
        psn: "00".into(),
        ..order()
    }
}

#[test]
fn a_cvn18_card_with_a_19_digit_pan_holds_the_option_b_mk_ac_pyemv_derives() {
    let (_d, ks) = dev_keystore();
    let mut p = profile("visa_vsdc_cvn18");
    p.track2_discretionary = "{pvki}{pvv}{cvv}".into();
    let card = prepare(&long_pan_order(), &p, &keys(), &ks).unwrap();
    let k = card.dgis.iter().find(|d| d.id == 0x8000).unwrap();
    let all: serde_json::Value =
        serde_json::from_str(include_str!("fixtures/cryptograms/cryptogram-vectors.json")).unwrap();
    let v = all["visa_cvn18"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["pan"] == "4761739001010000015")
        .unwrap();
    assert_eq!(hex::encode_upper(&k.data[..16]), v["icc_mk_ac"]);
}

#[test]
fn a_cvn10_card_with_a_19_digit_pan_keeps_option_a() {
    let (_d, ks) = dev_keystore();
    let mut p = profile("visa_vsdc_cvn10");
    p.track2_discretionary = "{pvki}{pvv}{cvv}".into();
    let card = prepare(&long_pan_order(), &p, &keys(), &ks).unwrap();
    let k = card.dgis.iter().find(|d| d.id == 0x8000).unwrap();
    let option_a = ks
        .derive_icc_master_keys(
            KeyIndex(1),
            &station_emv::card_data::Pan::new("4761739001010000015").unwrap(),
            station_emv::data::derive::Psn::new("00").unwrap(),
        )
        .unwrap();
    assert_eq!(&k.data[..16], option_a.mk_ac.expose());
}

#[test]
fn the_summary_and_debug_show_a_masked_pan_only() {
    let (_d, ks) = dev_keystore();
    let input = order();
    let card = prepare(&input, &profile("visa_vsdc_cvn10"), &keys(), &ks).unwrap();
    assert_eq!(card.summary.masked_pan, "476173******0010");
    assert_eq!(card.summary.model, ChipDataModel::Model1);
    for shown in [format!("{card:?}"), format!("{input:?}")] {
        assert!(!shown.contains("4761739001010010"), "{shown}");
    }
}

fn data_exception(input: &PrepInput) -> String {
    let (_d, ks) = dev_keystore();
    match prepare(input, &profile("visa_vsdc_cvn10"), &keys(), &ks) {
        Err(e @ PrepError::DataException(_)) => {
            assert_eq!(e.code(), "DATA_EXCEPTION");
            e.to_string()
        }
        other => panic!("expected DATA_EXCEPTION, got {other:?}"),
    }
}

#[test]
fn bad_card_data_is_a_data_exception_naming_the_field() {
    let mut i = order();
    i.exp_yymm = "2813".into();
    assert!(data_exception(&i).contains("exp"));
    let mut i = order();
    i.pan = Zeroizing::new("47617390010100AB".into());
    let r = data_exception(&i);
    assert!(r.contains("pan") && !r.contains("4761739"), "{r}");
    let mut i = order();
    i.encoded_name = Some("dupont".into());
    assert!(data_exception(&i).contains("encodedName"));
    let mut i = order();
    i.track2_override = Some(Zeroizing::new(
        ";4761739001010011=28112011234567800000?".into(),
    ));
    assert!(data_exception(&i).contains("PAN differs"));
}

#[test]
fn a_missing_imk_index_is_a_key_error_not_a_panic() {
    let (_d, ks) = dev_keystore();
    let mut k = keys();
    k.derivation = KeyIndex(0x7F);
    let e = prepare(&order(), &profile("visa_vsdc_cvn10"), &k, &ks).unwrap_err();
    assert_eq!(e.code(), "KEY_MISSING");
}

fn model2(dgis: Vec<Dgi>) -> PrepInput {
    let mut i = order();
    i.chip_data = Some(Model2Data {
        aid: hex::decode("A0000000031010").unwrap(),
        dgis,
    });
    i
}

fn good_model2_dgis() -> Vec<Dgi> {
    let mut rec = tlv::encode(
        0x57,
        &hex::decode("4761739001010010D28112010000012300000F").unwrap(),
    );
    rec.extend(tlv::encode(0x5A, &hex::decode("4761739001010010").unwrap()));
    vec![
        Dgi::new(0x0101, tlv::encode(0x70, &rec), DgiEncryption::None),
        Dgi::new(0x8000, vec![0x11; 48], DgiEncryption::Nopad),
        Dgi::new(
            0x9104,
            hex::decode("82021800940408010100").unwrap(),
            DgiEncryption::None,
        ),
    ]
}

#[test]
fn model_2_dgis_are_used_as_given() {
    let (_d, ks) = dev_keystore();
    let card = prepare(
        &model2(good_model2_dgis()),
        &profile("visa_vsdc_cvn10"),
        &keys(),
        &ks,
    )
    .unwrap();
    assert_eq!(card.summary.model, ChipDataModel::Model2);
    assert_eq!(card.dgis, good_model2_dgis());
    assert_eq!(
        card.track2_equivalent.as_str(),
        "4761739001010010D28112010000012300000"
    );
}

fn refused(dgis: Vec<Dgi>) -> String {
    let r = data_exception(&model2(dgis));
    assert!(!r.contains("4761739001010010"), "{r}");
    r
}

#[test]
fn model_2_record_without_a_70_template_is_refused() {
    let mut d = good_model2_dgis();
    d[0] = Dgi::new(
        0x0101,
        tlv::encode(0x77, &[0x5A, 0x01, 0x47]),
        DgiEncryption::None,
    );
    assert!(refused(d).contains("0101 must hold exactly one 70 template"));
}

#[test]
fn model_2_record_with_a_broken_inner_tlv_is_refused() {
    let mut d = good_model2_dgis();
    d.push(Dgi::new(
        0x0201,
        vec![0x70, 0x03, 0x5A, 0x08, 0x47],
        DgiEncryption::None,
    ));
    assert!(refused(d).contains("0201 holds a malformed 70 template"));
}

#[test]
fn model_2_duplicate_dgi_is_refused() {
    let mut d = good_model2_dgis();
    d.push(Dgi::new(0x9104, vec![1], DgiEncryption::None));
    assert!(refused(d).contains("9104 appears twice"));
}

#[test]
fn model_2_unaligned_unpadded_keys_are_refused() {
    let mut d = good_model2_dgis();
    d[1] = Dgi::new(0x8000, vec![0x11; 47], DgiEncryption::Nopad);
    assert!(refused(d).contains("not a multiple of 8"));
}

#[test]
fn model_2_keys_in_clear_are_refused() {
    let mut d = good_model2_dgis();
    d[1] = Dgi::new(0x8000, vec![0x11; 48], DgiEncryption::None);
    assert!(refused(d).contains("must be encrypted"));
}

#[test]
fn model_2_oversized_dgi_is_refused() {
    let mut d = good_model2_dgis();
    d.push(Dgi::new(0x9200, vec![0; 70_000], DgiEncryption::None));
    assert!(refused(d).contains("longer than 65535"));
}

#[test]
fn model_2_invalid_identifier_is_refused() {
    let mut d = good_model2_dgis();
    d.push(Dgi::new(0x0042, vec![0], DgiEncryption::None));
    assert!(refused(d).contains("0042 is not a valid DGI identifier"));
}

#[test]
fn model_2_tag_57_of_another_pan_is_refused() {
    let mut d = good_model2_dgis();
    let rec = tlv::encode(
        0x57,
        &hex::decode("4761739001010028D28112010000012300000F").unwrap(),
    );
    d[0] = Dgi::new(0x0101, tlv::encode(0x70, &rec), DgiEncryption::None);
    assert!(refused(d).contains("57 PAN differs"));
}

#[test]
fn model_2_empty_set_is_refused() {
    assert!(refused(Vec::new()).contains("no DGI"));
}

#[test]
fn a_consistent_track_2_override_goes_to_the_stripe_as_given() {
    let (_d, ks) = dev_keystore();
    let mut input = order();
    let t2 = ";4761739001010010=28112011234567800000?";
    input.track2_override = Some(Zeroizing::new(t2.into()));
    let card = prepare(&input, &profile("visa_vsdc_cvn10"), &keys(), &ks).unwrap();
    assert_eq!(card.magstripe_track2.as_deref().unwrap().as_str(), t2);
    assert!(card
        .track2_equivalent
        .starts_with("4761739001010010D2811201"));
}

#[test]
fn a_track_2_override_with_another_service_code_is_refused() {
    let mut input = order();
    input.track2_override = Some(Zeroizing::new(
        ";4761739001010010=28111011234567800000?".into(),
    ));
    assert!(data_exception(&input).contains("service code differs"));
}

#[test]
fn a_service_code_override_reaches_5f30_and_tag_57() {
    let (_d, ks) = dev_keystore();
    let mut input = order();
    input.service_code = Some("221".into());
    let card = prepare(&input, &profile("visa_vsdc_cvn10"), &keys(), &ks).unwrap();
    assert_eq!(
        hex::encode(find_in_records(&card.dgis, 0x5F30).unwrap()),
        "0221"
    );
    assert!(card
        .track2_equivalent
        .starts_with("4761739001010010D2811221"));
}

#[test]
fn without_a_cv_key_index_the_icvv_cannot_be_computed() {
    let (_d, ks) = dev_keystore();
    let mut k = keys();
    k.cv = None;
    let e = prepare(&order(), &profile("visa_vsdc_cvn10"), &k, &ks).unwrap_err();
    assert!(e.to_string().contains("cvKeyIndex is missing"), "{e}");
    assert_eq!(e.code(), "DATA_EXCEPTION");
}

#[test]
fn a_four_digit_pvv_takes_its_pvki_from_the_pv_key_index() {
    let (_d, ks) = dev_keystore();
    let mut input = order();
    input.pvv = Some(Zeroizing::new("2345".into()));
    let card = prepare(&input, &profile("visa_vsdc_cvn10"), &keys(), &ks).unwrap();
    assert!(card.track2_equivalent.contains("D281120112345"));
    let mut k = keys();
    k.pv = None;
    let e = prepare(&input, &profile("visa_vsdc_cvn10"), &k, &ks).unwrap_err();
    assert!(e.to_string().contains("pvKeyIndex"), "{e}");
}

#[test]
fn a_nineteen_digit_pan_overflowing_track_2_is_refused() {
    let mut input = order();
    input.pan = Zeroizing::new("4761739001010010123".into());
    let r = data_exception(&input);
    assert!(r.contains("maximum is 37"), "{r}");
}

#[test]
fn an_mchip_card_gets_its_card_risk_management_data_in_its_own_dgi() {
    let (_d, ks) = dev_keystore();
    for name in ["mc_mchip_cvn16", "mc_mchip_cvn17"] {
        let card = prepare(&order(), &profile(name), &keys(), &ks).unwrap();
        let crm = record(&card.dgis, 0xB100);
        let tags: Vec<u32> = tlv::parse(&crm).unwrap().iter().map(|t| t.tag).collect();
        assert_eq!(
            tags,
            vec![0xC3, 0xC4, 0xC5, 0xC7, 0xC8, 0xC9, 0xCA, 0xCB, 0xD5, 0xD6],
            "{name}"
        );
        // C7, the CDOL1 related data length, must equal what CDOL1 asks for.
        let cdol1 = find_in_records(&card.dgis, 0x8C).unwrap();
        let len: usize = tlv::parse_dol(&cdol1).unwrap().iter().map(|d| d.1).sum();
        assert_eq!(
            tlv::find(&crm, 0xC7).unwrap().unwrap(),
            vec![len as u8],
            "{name}"
        );
    }
}
