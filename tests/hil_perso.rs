//! Personalization of the simulated card through the real PC/SC stack (pcscd + vpcd),
//! then a terminal read-back whose ARQC verifies.

mod hil;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use hil::{serial, vpcd_port, Inserted, SLOT0};
use station_emv::cps::{personalize, PersoTarget};
use station_emv::data::cryptogram::{visa_cvn10, Cvn10Input};
use station_emv::dgi::{Dgi, DgiEncryption};
use station_emv::gp;
use station_emv::gp::scp::{KeySource, Protocol, ScpParams, SecurityLevel};
use station_emv::tlv;
use station_hal::ApduTransport;
use station_pcsc::{PcscEncoder, ReaderConfig};
use station_sim::card::{AppState, KeyFile, SimCard, DEFAULT_ISD_AID};
use station_sim::vpcd::SharedCard;

const KEYS: &str = r#"
scp = "02"
i = 0x55
kvn = 0x20
kdd = "00010203040506070809"
kmc = "404142434445464748494A4B4C4D4E4F"
diversification = "emv_cpg202"
"#;

fn h(s: &str) -> Vec<u8> {
    hex::decode(s).unwrap()
}

/// MK-AC written into DGI 8000 of the reference set.
const MK_AC: &str = "2F02C8B0E9CBC7B05B5167F7A1CDE6E5";

/// A small Visa DGI set: a record, FCI, GPO answer and the encrypted key DGI.
fn reference_dgis() -> Vec<Dgi> {
    let rec = tlv::encode(
        0x70,
        &[
            tlv::encode(0x5A, &h("4761739001010010")),
            tlv::encode(0x8C, &h("9F02069F03069F1A0295055F2A029A039C019F3704")),
        ]
        .concat(),
    );
    vec![
        Dgi::new(0x0101, rec, DgiEncryption::None),
        Dgi::new(0x9102, h("500456495341"), DgiEncryption::None),
        Dgi::new(0x9104, h("82021800940408010100"), DgiEncryption::None),
        // IAD template: Visa layout, derivation key index 01, CVN 10.
        Dgi::new(0x3000, h("9F100706010A03000000"), DgiEncryption::None),
        Dgi::new(
            0x8000,
            h(&format!("{MK_AC}{}", "33".repeat(32))),
            DgiEncryption::Nopad,
        ),
    ]
}

#[tokio::test(flavor = "multi_thread")]
async fn a_blank_card_is_personalized_through_pcsc_and_reads_back_with_a_valid_arqc() {
    let Some(port) = vpcd_port() else { return };
    let _g = serial().await;
    let config = KeyFile::parse(KEYS).unwrap().to_config().unwrap();
    let keys: KeySource = config.keys.clone();
    let card = Arc::new(Mutex::new(SimCard::new(config)));
    let link: SharedCard = card.clone();
    let inserted = Inserted::new(port, link);
    let mut enc = PcscEncoder::open(ReaderConfig::new(SLOT0).unwrap())
        .await
        .unwrap();
    enc.wait_for_card(Duration::from_secs(10)).await.unwrap();

    let mk = MK_AC;
    let dgis = reference_dgis();
    let report = personalize(
        &mut enc,
        &PersoTarget {
            aid: h("A0000000031010"),
            via_isd: None,
        },
        &keys,
        ScpParams {
            protocol: Protocol::Scp02 { i: 0x55 },
            kvn: 0x20,
            level: SecurityLevel::CDEC_CMAC,
        },
        &dgis,
        rand::random(),
    )
    .await
    .unwrap();
    assert_eq!(card.lock().unwrap().state(), AppState::Personalized);
    assert_eq!(report.store_data_count, 2); // clear run, then the encrypted 8000

    enc.exchange(&gp::select(&h("A0000000031010")).to_bytes())
        .await
        .unwrap();
    let gpo = enc.exchange(&h("80A8000002830000")).await.unwrap();
    assert_eq!(gp::status_word(&gpo), 0x9000);
    let data = h("0000000010000000000000000840000000000008402611220012345678");
    let mut gen = vec![0x80, 0xAE, 0x80, 0x00, data.len() as u8];
    gen.extend_from_slice(&data);
    gen.push(0);
    let r = enc.exchange(&gen).await.unwrap();
    let body = &r[..r.len() - 2];
    let atc: [u8; 2] = tlv::find(body, 0x9F36)
        .unwrap()
        .unwrap()
        .try_into()
        .unwrap();
    let ac = tlv::find(body, 0x9F26).unwrap().unwrap();
    let iad = tlv::find(body, 0x9F10).unwrap().unwrap();
    let expected = visa_cvn10(
        &h(mk),
        &Cvn10Input {
            amount: h("000000001000").try_into().unwrap(),
            amount_other: [0; 6],
            terminal_country: [0x08, 0x40],
            tvr: [0; 5],
            currency: [0x08, 0x40],
            date: [0x26, 0x11, 0x22],
            tx_type: 0,
            unpredictable_number: [0x12, 0x34, 0x56, 0x78],
            aip: [0x18, 0x00],
            atc,
            cvr: iad[3..7].try_into().unwrap(),
        },
    )
    .unwrap();
    assert_eq!(ac, expected);
    enc.release().await.unwrap();
    inserted.remove().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_card_open_only_through_its_isd_is_personalized_through_pcsc() {
    let Some(port) = vpcd_port() else { return };
    let _g = serial().await;
    let config = KeyFile::parse(KEYS).unwrap().to_config().unwrap();
    let keys: KeySource = config.keys.clone();
    let card = Arc::new(Mutex::new(
        SimCard::new(config).personalized_only_through_isd(),
    ));
    let link: SharedCard = card.clone();
    let inserted = Inserted::new(port, link);
    let mut enc = PcscEncoder::open(ReaderConfig::new(SLOT0).unwrap())
        .await
        .unwrap();
    enc.wait_for_card(Duration::from_secs(10)).await.unwrap();
    let report = personalize(
        &mut enc,
        &PersoTarget {
            aid: h("A0000000031010"),
            via_isd: Some(DEFAULT_ISD_AID.to_vec()),
        },
        &keys,
        ScpParams {
            protocol: Protocol::Scp02 { i: 0x55 },
            kvn: 0x20,
            level: SecurityLevel::CDEC_CMAC,
        },
        &reference_dgis(),
        rand::random(),
    )
    .await
    .unwrap();
    assert_eq!(report.store_data_count, 2);
    assert_eq!(card.lock().unwrap().state(), AppState::Personalized);
    enc.release().await.unwrap();
    inserted.remove().await;
}
