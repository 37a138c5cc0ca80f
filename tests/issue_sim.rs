//! Encoder-only issuance on the simulated card: order → decrypt → data preparation →
//! personalization → terminal read-back with ARQC, for both shipped profiles.

mod station;

use std::sync::{Arc, Mutex};

use station::{card_data, card_stock, dev, order};
use station_agent::plastic::magstripe::discretionary;
use station_sim::card::{AppState, InProcessTransport, SimCard};
use time::macros::date;

async fn issue(
    profile: &str,
    derivation: &str,
) -> Result<(), station_agent::job::production::Refusal> {
    let d = dev();
    let product = if profile.starts_with("mc") {
        "DEV-MC"
    } else {
        "DEV-VISA"
    };
    let o = order(&d, profile, derivation, &card_data(7));
    let job = d.production.prepare(&o, date!(2026 - 11 - 22))?;
    assert_eq!(
        job.masked_pan,
        "476173******0078".replace("0078", &job.masked_pan[12..])
    );
    let card = Arc::new(Mutex::new(SimCard::new(card_stock(&d, product))));
    let mut t = InProcessTransport::new(card.clone());
    let apdus = d.production.personalize(&mut t, &job).await.unwrap();
    assert!(apdus >= 5);
    assert_eq!(card.lock().unwrap().state(), AppState::Personalized);
    d.production.verify(&mut t, &job).await
}

#[tokio::test]
async fn the_visa_profile_personalizes_and_passes_the_read_back() {
    issue("visa_vsdc_cvn10", "01").await.unwrap();
}

#[tokio::test]
async fn a_visa_cvn18_card_personalizes_and_its_arqc_verifies_under_imk_01() {
    issue("visa_vsdc_cvn18", "01").await.unwrap();
}

#[tokio::test]
async fn a_mastercard_cvn16_card_personalizes_and_its_arqc_verifies_under_imk_01() {
    issue("mc_mchip_cvn16", "01").await.unwrap();
}

#[tokio::test]
async fn a_mastercard_cvn17_card_personalizes_and_its_arqc_verifies_under_imk_01() {
    issue("mc_mchip_cvn17", "01").await.unwrap();
}

#[tokio::test]
async fn a_card_personalized_with_another_imk_fails_verification() {
    // Index 02 exists in the dev key store: the card is written with IMK 02 keys but
    // the read-back checks the ARQC under the index the order names — so we tamper by
    // preparing with 02 and verifying with 01.
    let d = dev();
    let o = order(&d, "visa_vsdc_cvn10", "02", &card_data(8));
    let mut job = d.production.prepare(&o, date!(2026 - 11 - 22)).unwrap();
    let card = Arc::new(Mutex::new(SimCard::new(card_stock(&d, "DEV-VISA"))));
    let mut t = InProcessTransport::new(card.clone());
    d.production.personalize(&mut t, &job).await.unwrap();
    job.derivation_index = station_emv::keys::KeyIndex(1);
    let e = d.production.verify(&mut t, &job).await.unwrap_err();
    assert_eq!(e.code, "CARD_PROD_EXCEPTION");
    assert!(e.reason.contains("ARQC"), "{e}");
}

#[test]
fn an_order_for_another_station_is_refused_before_any_device() {
    let d = dev();
    let mut o = order(&d, "visa_vsdc_cvn10", "01", &card_data(9));
    o["persoStation"] = "BR-OTHER".into();
    let e = d.production.prepare(&o, date!(2026 - 11 - 22)).unwrap_err();
    assert_eq!(e.code, "OPERATION_NOT_ALLOWED");
}

#[test]
fn an_unknown_profile_is_a_data_exception() {
    let d = dev();
    let o = order(&d, "no_such_profile", "01", &card_data(9));
    let e = d.production.prepare(&o, date!(2026 - 11 - 22)).unwrap_err();
    assert_eq!(e.code, "DATA_EXCEPTION");
}

#[tokio::test]
async fn the_stripe_agrees_with_the_chips_track_2_equivalent() {
    let d = dev();
    let o = order(&d, "visa_vsdc_cvn10", "01", &card_data(11));
    let job = d.production.prepare(&o, date!(2026 - 11 - 22)).unwrap();
    let card = Arc::new(Mutex::new(SimCard::new(card_stock(&d, "DEV-VISA"))));
    let mut t = InProcessTransport::new(card.clone());
    d.production.personalize(&mut t, &job).await.unwrap();
    // Tag 57 as the personalized chip holds it, in the records.
    let chip_57 = (0x0101u16..0x0120)
        .filter_map(|id| card.lock().unwrap().dgi(id).map(|r| r.to_vec()))
        .find_map(|r| station_emv::tlv::find(&r, 0x57).ok().flatten())
        .expect("tag 57 in a record");
    let chip = hex::encode_upper(chip_57);
    let chip = chip.trim_end_matches('F');
    let stripe = job.tracks.track2.clone().unwrap();
    // Where the product's pattern puts the CVV: the digits that change when only the
    // CVV does.
    let pattern = &d
        .production
        .profiles
        .get("visa_vsdc_cvn10")
        .unwrap()
        .track2_discretionary;
    let with = |cvv| discretionary(pattern, "", "", cvv).unwrap();
    let (a, b) = (with("000"), with("111"));
    let cvv_at: Vec<usize> = (0..a.len()).filter(|&i| a[i..=i] != b[i..=i]).collect();
    assert_eq!(cvv_at.len(), 3);
    let dd_start = stripe.find('=').unwrap() + 1 + 4 + 3;
    let cvv_field = dd_start + cvv_at[0]..dd_start + cvv_at[2] + 1;
    // Byte for byte the same track, '=' written 'D' in the chip, except the CVV field:
    // CVV on the stripe, iCVV (service code 999) in the chip, as the scheme requires.
    let chip_as_stripe = chip.replacen('D', "=", 1);
    assert_eq!(chip_as_stripe.len(), stripe.len(), "track length");
    assert_eq!(chip_as_stripe[..cvv_field.start], stripe[..cvv_field.start]);
    assert_eq!(chip_as_stripe[cvv_field.end..], stripe[cvv_field.end..]);
    assert_ne!(
        chip_as_stripe[cvv_field.clone()],
        stripe[cvv_field],
        "the chip carries the iCVV, not the stripe's CVV"
    );
}
