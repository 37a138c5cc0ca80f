//! The PC/SC encoder through a real pcscd and the vpcd virtual reader.

mod hil;

use std::time::Duration;

use hil::{serial, shared, vpcd_port, Inserted, SLOT0, SLOT1};
use station_hal::{ApduTransport, TransportError};
use station_pcsc::{PcscEncoder, ReaderConfig};
use station_sim::vpcd::EchoCard;

fn encoder(pattern: &str) -> PcscEncoder {
    PcscEncoder::open(ReaderConfig {
        name_pattern: pattern.into(),
    })
    .unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_card_in_the_virtual_reader_answers_through_pcsc() {
    let Some(port) = vpcd_port() else { return };
    let _g = serial().await;
    let (card, link) = shared(EchoCard::default());
    let inserted = Inserted::new(port, link);
    let mut enc = encoder(SLOT0);
    let name = enc.wait_for_card(Duration::from_secs(10)).await.unwrap();
    assert_eq!(name, SLOT0);
    let r = enc
        .exchange(&[0x00, 0xA4, 0x04, 0x00, 0x02, 0xA0, 0x00])
        .await
        .unwrap();
    assert_eq!(r, vec![0x90, 0x00]);
    let r = enc.exchange(&[0x80, 0x01, 0, 0, 3, 7, 8, 9]).await.unwrap();
    assert_eq!(r, vec![7, 8, 9, 0x90, 0x00]);
    assert!(card.lock().unwrap().commands >= 2);
    enc.release().await;
    inserted.remove().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_card_pulled_mid_session_is_reported_as_removed() {
    let Some(port) = vpcd_port() else { return };
    let _g = serial().await;
    let (_card, link) = shared(EchoCard::default());
    let inserted = Inserted::new(port, link);
    let mut enc = encoder(SLOT0);
    enc.wait_for_card(Duration::from_secs(10)).await.unwrap();
    inserted.remove().await;
    let e = enc
        .exchange(&[0x80, 0xE2, 0x00, 0x00, 1, 0])
        .await
        .unwrap_err();
    assert_eq!(e, TransportError::CardRemoved, "{e}");
}

#[tokio::test(flavor = "multi_thread")]
async fn waiting_on_an_empty_reader_times_out() {
    if vpcd_port().is_none() {
        return;
    }
    let enc = encoder(SLOT1);
    let e = enc
        .wait_for_card(Duration::from_millis(700))
        .await
        .unwrap_err();
    assert!(matches!(e, TransportError::Timeout(_)), "{e}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_pattern_matching_no_reader_names_the_pattern_and_the_readers() {
    if vpcd_port().is_none() {
        return;
    }
    let enc = encoder("Evolis Primacy");
    let e = enc.wait_for_card(Duration::from_secs(1)).await.unwrap_err();
    match e {
        TransportError::NoReader(m) => {
            assert!(
                m.contains("Evolis Primacy") && m.contains("Virtual PCD"),
                "{m}"
            )
        }
        other => panic!("expected NoReader, got {other}"),
    }
}
