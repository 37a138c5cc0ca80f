//! `card issue` through the real PC/SC stack (pcscd + vpcd) for every card product an
//! issuer host accepts: the order is prepared, the blank card of the product's stock
//! personalized, then read by the terminal read-back, which takes CDOL1 and the
//! cryptogram version from the card itself and verifies the ARQC under IMK 01.

mod hil;
mod station;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use hil::{serial, vpcd_port, Inserted, SLOT0};
use station::{card_data, card_stock, dev, order};
use station_emv::data::profile::CryptogramVersion;
use station_emv::terminal::{read_card, TerminalParams};
use station_pcsc::{PcscEncoder, ReaderConfig};
use station_sim::card::SimCard;
use station_sim::vpcd::SharedCard;
use time::macros::date;

/// Issues one card of `profile` as `card issue` does, then reads it back again as a
/// second, independent terminal would; returns the IAD of that second read.
async fn issue_through_pcsc(port: u16, profile: &str, product: &str, n: u32) -> Vec<u8> {
    let _g = serial().await;
    let d = dev();
    let card = Arc::new(Mutex::new(SimCard::new(card_stock(&d, product))));
    let link: SharedCard = card.clone();
    let inserted = Inserted::new(port, link);
    let mut enc = PcscEncoder::open(ReaderConfig::new(SLOT0).unwrap())
        .await
        .unwrap();
    enc.wait_for_card(Duration::from_secs(10)).await.unwrap();

    let o = order(&d, profile, "01", &card_data(n));
    let job = d.production.prepare(&o, date!(2026 - 11 - 22)).unwrap();
    d.production.personalize(&mut enc, &job).await.unwrap();
    d.production
        .verify(&mut enc, &job)
        .await
        .unwrap_or_else(|r| panic!("{profile}: {r}"));
    let aid = d.production.profiles.get(profile).unwrap().aid.clone();
    let again = read_card(&mut enc, &aid, &TerminalParams::default())
        .await
        .unwrap();
    enc.release().await.unwrap();
    inserted.remove().await;
    again.generate_ac.iad
}

#[tokio::test(flavor = "multi_thread")]
async fn a_visa_cvn18_card_issued_through_pcsc_reports_cvn_18_and_verifies() {
    let Some(port) = vpcd_port() else { return };
    let iad = issue_through_pcsc(port, "visa_vsdc_cvn18", "DEV-VISA", 31).await;
    assert_eq!((iad[1], iad[2]), (0x01, CryptogramVersion::VisaCvn18.cvn()));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_mastercard_cvn16_card_issued_through_pcsc_reports_cvn_16_and_verifies() {
    let Some(port) = vpcd_port() else { return };
    let iad = issue_through_pcsc(port, "mc_mchip_cvn16", "DEV-MC", 32).await;
    assert_eq!(
        (iad[0], iad[1]),
        (0x01, CryptogramVersion::MchipCvn16.cvn())
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_mastercard_cvn17_card_issued_through_pcsc_reports_cvn_17_and_verifies() {
    let Some(port) = vpcd_port() else { return };
    let iad = issue_through_pcsc(port, "mc_mchip_cvn17", "DEV-MC", 33).await;
    assert_eq!(
        (iad[0], iad[1]),
        (0x01, CryptogramVersion::MchipCvn17.cvn())
    );
}
