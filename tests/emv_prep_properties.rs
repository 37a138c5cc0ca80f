//! Property tests: for any well-formed card data, Model 1 preparation yields records
//! that are single 70 templates and a tag 57 that agrees with the order.

mod emv_support;

use emv_support::{dev_keystore, keys, profile};
use proptest::prelude::*;
use station_emv::card_data::{Pan, YearMonth};
use station_emv::data::prep::{is_record_dgi, prepare, PrepInput};
use station_emv::tlv;
use zeroize::Zeroizing;

fn card_data() -> impl Strategy<Value = (String, u8, u8, u8, String)> {
    (
        "[1-9][0-9]{11,15}",
        0u8..100,
        1u8..=12,
        0u8..100,
        "[A-Z][A-Z /.'-]{1,25}",
    )
        .prop_map(|(pan, yy, mm, psn, name)| (pan, yy, mm, psn, name))
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    #[test]
    fn prepared_records_are_templates_and_57_agrees_with_the_order(
        (pan, yy, mm, psn, name) in card_data(),
        which in prop_oneof![Just("visa_vsdc_cvn10"), Just("mc_mchip_cvn16")],
    ) {
        let (_d, ks) = dev_keystore();
        let exp = format!("{yy:02}{mm:02}");
        let input = PrepInput {
            pan: Zeroizing::new(pan.clone()),
            exp_yymm: exp.clone(),
            psn: format!("{psn:02}"),
            encoded_name: Some(name.clone()),
            ..PrepInput::default()
        };
        let card = prepare(&input, &profile(which), &keys(), &ks).unwrap();
        for d in card.dgis.iter().filter(|d| is_record_dgi(d.id)) {
            let top = tlv::parse(&d.data).unwrap();
            prop_assert_eq!(top.len(), 1);
            prop_assert_eq!(top[0].tag, 0x70);
            prop_assert!(top[0].children().is_ok());
        }
        let chip_prefix = format!("{pan}D{exp}201");
        prop_assert!(card.track2_equivalent.starts_with(&chip_prefix));
        let find = |tag| card.dgis.iter().filter(|d| is_record_dgi(d.id)).find_map(|d| tlv::find(&d.data, tag).unwrap());
        prop_assert_eq!(find(0x5A).unwrap(), Pan::new(&pan).unwrap().to_5a());
        prop_assert_eq!(find(0x5F24).unwrap(), YearMonth::parse(&exp).unwrap().to_5f24());
        prop_assert_eq!(find(0x5F20).unwrap(), name.into_bytes());
        let stripe = card.magstripe_track2.as_deref().unwrap();
        let stripe_prefix = format!("{pan}={exp}201");
        prop_assert!(stripe.starts_with(&stripe_prefix));
    }
}
