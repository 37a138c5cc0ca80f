//! CPS personalization of the simulated card in-process, then a terminal-style read-back
//! whose ARQC verifies under the MK-AC that was personalized.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use proptest::prelude::*;
use station_emv::cps::{personalize, CpsError, PersoTarget};
use station_emv::data::cryptogram::{visa_cvn10, Cvn10Input};
use station_emv::dgi::{Dgi, DgiEncryption};
use station_emv::gp::diversify::Diversification;
use station_emv::gp::host::HostChannel;
use station_emv::gp::scp::{KeySource, Protocol, ScError, ScpParams, SecurityLevel, StaticKeys};
use station_emv::gp::{self, Command};
use station_emv::tlv;
use station_hal::ApduTransport;
use station_sim::card::{AppState, Faults, InProcessTransport, SimCard, SimCardConfig};
use zeroize::Zeroizing;

const AID: &str = "A0000000031010";
const MK_AC: &str = "2F02C8B0E9CBC7B05B5167F7A1CDE6E5";
const KDD: [u8; 10] = [0x00, 0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08, 0x09];

fn h(s: &str) -> Vec<u8> {
    hex::decode(s).unwrap()
}

fn record(items: &[(u32, &str)]) -> Vec<u8> {
    let body: Vec<u8> = items
        .iter()
        .flat_map(|(t, v)| tlv::encode(*t, &h(v)))
        .collect();
    tlv::encode(0x70, &body)
}

/// A small Visa-like data set: two records, FCI, GPO data, ICC keys, KCVs, PIN try limit.
fn visa_dgis() -> Vec<Dgi> {
    let cdol1 = "9F02069F03069F1A0295055F2A029A039C019F3704";
    let keys = h(&format!("{MK_AC}{}{}", "11".repeat(16), "22".repeat(16)));
    vec![
        Dgi::new(
            0x0101,
            record(&[
                (0x57, "4761739001010010D25122010000000000000F"),
                (0x5F20, "444F452F4A4F484E"),
            ]),
            DgiEncryption::None,
        ),
        Dgi::new(
            0x0102,
            record(&[
                (0x5A, "4761739001010010"),
                (0x5F24, "251231"),
                (0x5F34, "01"),
                (0x8C, cdol1),
                (0x8E, "000000000000000042031E031F00"),
                (0x9F07, "FF00"),
            ]),
            DgiEncryption::None,
        ),
        Dgi::new(
            0x9102,
            h("500B56495341204352454449548701019F38039F1A02"),
            DgiEncryption::None,
        ),
        Dgi::new(0x9104, h("82021800940408010200"), DgiEncryption::None),
        // IAD template: Visa layout, derivation key index 01, CVN 10.
        Dgi::new(0x3000, h("9F100706010A03000000"), DgiEncryption::None),
        Dgi::new(0x8000, keys, DgiEncryption::Nopad),
        Dgi::new(0x9000, h("F23EFA000000000000"), DgiEncryption::None),
        Dgi::new(0x9010, h("0303"), DgiEncryption::None),
    ]
}

fn card(protocol: Protocol, keys: KeySource) -> Arc<Mutex<SimCard>> {
    Arc::new(Mutex::new(SimCard::new(SimCardConfig {
        protocol,
        kvn: 0x20,
        kdd: KDD,
        keys,
        instances: station_sim::card::default_instances(),
        padded_dgis: vec![],
    })))
}

fn static_keys() -> KeySource {
    KeySource::Static(StaticKeys::new(&[0x40; 16], &[0x41; 16], &[0x42; 16]))
}

fn kmc() -> KeySource {
    KeySource::Kmc {
        kmc: Zeroizing::new(h("404142434445464748494A4B4C4D4E4F")),
        method: Diversification::EmvCpg202,
    }
}

fn params(protocol: Protocol, level: SecurityLevel) -> ScpParams {
    ScpParams {
        protocol,
        kvn: 0x20,
        level,
    }
}

fn target() -> PersoTarget {
    PersoTarget {
        aid: h(AID),
        via_isd: None,
    }
}

async fn perso(
    c: &Arc<Mutex<SimCard>>,
    keys: &KeySource,
    p: ScpParams,
) -> Result<station_emv::cps::PersoReport, CpsError> {
    let mut t = InProcessTransport::new(c.clone());
    personalize(&mut t, &target(), keys, p, &visa_dgis(), [7; 8]).await
}

/// Reads the card as a terminal and returns (ATC, ARQC) after checking the data.
async fn terminal_read(c: &Arc<Mutex<SimCard>>) -> ([u8; 2], [u8; 8], Vec<u8>) {
    let mut t = InProcessTransport::new(c.clone());
    let fci = t.exchange(&gp::select(&h(AID)).to_bytes()).await.unwrap();
    assert_eq!(gp::status_word(&fci), 0x9000);
    assert_eq!(
        tlv::find(&fci[..fci.len() - 2], 0x50).unwrap().unwrap(),
        b"VISA CREDIT"
    );
    let gpo = t.exchange(&h("80A8000002830000")).await.unwrap();
    let aip = tlv::find(&gpo[..gpo.len() - 2], 0x82).unwrap().unwrap();
    let afl = tlv::find(&gpo[..gpo.len() - 2], 0x94).unwrap().unwrap();
    assert_eq!((aip.clone(), afl), (h("1800"), h("08010200")));
    let rec2 = t.exchange(&h("00B2020C00")).await.unwrap();
    assert_eq!(
        tlv::find(&rec2[..rec2.len() - 2], 0x5A).unwrap().unwrap(),
        h("4761739001010010")
    );
    let cdol_data = h("0000000010000000000000000840000000000008402611220012345678");
    let mut gen = vec![0x80, 0xAE, 0x80, 0x00, cdol_data.len() as u8];
    gen.extend_from_slice(&cdol_data);
    gen.push(0x00);
    let r = t.exchange(&gen).await.unwrap();
    assert_eq!(gp::status_word(&r), 0x9000);
    let body = &r[..r.len() - 2];
    let atc: [u8; 2] = tlv::find(body, 0x9F36)
        .unwrap()
        .unwrap()
        .try_into()
        .unwrap();
    let ac: [u8; 8] = tlv::find(body, 0x9F26)
        .unwrap()
        .unwrap()
        .try_into()
        .unwrap();
    let iad = tlv::find(body, 0x9F10).unwrap().unwrap();
    (atc, ac, iad)
}

fn expected_arqc(atc: [u8; 2], iad: &[u8]) -> [u8; 8] {
    let a = |s: &str| h(s);
    let input = Cvn10Input {
        amount: a("000000001000").try_into().unwrap(),
        amount_other: a("000000000000").try_into().unwrap(),
        terminal_country: a("0840").try_into().unwrap(),
        tvr: a("0000000000").try_into().unwrap(),
        currency: a("0840").try_into().unwrap(),
        date: a("261122").try_into().unwrap(),
        tx_type: 0,
        unpredictable_number: a("12345678").try_into().unwrap(),
        aip: a("1800").try_into().unwrap(),
        atc,
        cvr: iad[3..7].try_into().unwrap(),
    };
    visa_cvn10(&h(MK_AC), &input).unwrap()
}

#[tokio::test]
async fn static_keys_scp02_personalize_and_the_arqc_verifies() {
    let c = card(Protocol::Scp02 { i: 0x55 }, static_keys());
    let report = perso(
        &c,
        &static_keys(),
        params(Protocol::Scp02 { i: 0x55 }, SecurityLevel::CDEC_CMAC),
    )
    .await
    .unwrap();
    assert_eq!(c.lock().unwrap().state(), AppState::Personalized);
    assert_eq!(c.lock().unwrap().dgi(0x8000).unwrap()[..16], h(MK_AC)[..]);
    assert_eq!(report.store_data_count, 3); // clear run, encrypted 8000, clear run
    let (atc, ac, iad) = terminal_read(&c).await;
    assert_eq!(atc, [0, 1]);
    assert_eq!(iad[2], 0x0A, "CVN 10");
    assert_eq!(ac, expected_arqc(atc, &iad));
}

#[tokio::test]
async fn kmc_diversified_keys_personalize_the_card() {
    let c = card(Protocol::Scp02 { i: 0x55 }, kmc());
    perso(
        &c,
        &kmc(),
        params(Protocol::Scp02 { i: 0x55 }, SecurityLevel::CMAC),
    )
    .await
    .unwrap();
    let (atc, ac, iad) = terminal_read(&c).await;
    assert_eq!(ac, expected_arqc(atc, &iad));
}

#[tokio::test]
async fn scp03_c_dec_session_personalizes_the_card() {
    let c = card(Protocol::Scp03 { i: 0x70 }, static_keys());
    perso(
        &c,
        &static_keys(),
        params(Protocol::Scp03 { i: 0x70 }, SecurityLevel::CDEC_CMAC),
    )
    .await
    .unwrap();
    assert_eq!(c.lock().unwrap().dgi(0x8000).unwrap()[..16], h(MK_AC)[..]);
    let (atc, ac, iad) = terminal_read(&c).await;
    assert_eq!(ac, expected_arqc(atc, &iad));
}

#[tokio::test]
async fn wrong_transport_keys_are_reported_as_a_key_mismatch() {
    let c = card(Protocol::Scp02 { i: 0x55 }, kmc());
    let e = perso(
        &c,
        &static_keys(),
        params(Protocol::Scp02 { i: 0x55 }, SecurityLevel::CMAC),
    )
    .await
    .unwrap_err();
    assert_eq!(e, CpsError::SecureChannel(ScError::CardCryptogram));
    assert_eq!(e.code(), "CPS_TRANSPORT_KEY_MISMATCH");
    assert_eq!(c.lock().unwrap().state(), AppState::Selectable);
}

async fn with_status_at(n: u32, status: u16) -> CpsError {
    let c = card(Protocol::Scp02 { i: 0x55 }, static_keys());
    c.lock().unwrap().faults.status_at = Some((n, status));
    perso(
        &c,
        &static_keys(),
        params(Protocol::Scp02 { i: 0x55 }, SecurityLevel::CMAC),
    )
    .await
    .unwrap_err()
}

#[tokio::test]
async fn a_refused_store_data_names_the_block_the_dgis_and_the_status() {
    // Commands: 1 SELECT, 2 INITIALIZE UPDATE, 3 EXTERNAL AUTHENTICATE, 4.. STORE DATA.
    for sw in [0x6985u16, 0x6A80, 0x6982, 0x6A88] {
        match with_status_at(5, sw).await {
            CpsError::Refused {
                command,
                sw: got,
                meaning,
            } => {
                assert_eq!(got, sw);
                assert_eq!(command, "STORE DATA block 1 (DGI 8000)");
                assert_ne!(meaning, "unexpected status");
            }
            other => panic!("{sw:04X}: {other}"),
        }
    }
}

#[tokio::test]
async fn a_refused_initialize_update_is_named() {
    match with_status_at(2, 0x6A88).await {
        CpsError::SecureChannel(ScError::Refused { command, sw, .. }) => {
            assert_eq!((command, sw), ("INITIALIZE UPDATE", 0x6A88))
        }
        other => panic!("{other}"),
    }
}

#[tokio::test]
async fn a_card_pulled_mid_store_data_is_card_removed_during_encoding() {
    let c = card(Protocol::Scp02 { i: 0x55 }, static_keys());
    c.lock().unwrap().faults.drop_at = Some(5);
    let e = perso(
        &c,
        &static_keys(),
        params(Protocol::Scp02 { i: 0x55 }, SecurityLevel::CMAC),
    )
    .await
    .unwrap_err();
    assert_eq!(e.code(), "CPS_CARD_REMOVED");
    assert!(
        e.to_string().starts_with("card removed during encoding"),
        "{e}"
    );
}

#[tokio::test]
async fn t0_get_response_and_wrong_le_are_handled_transparently() {
    let c = card(Protocol::Scp02 { i: 0x55 }, static_keys());
    c.lock().unwrap().faults = Faults {
        t0_get_response: true,
        t0_wrong_le: true,
        ..Faults::default()
    };
    perso(
        &c,
        &static_keys(),
        params(Protocol::Scp02 { i: 0x55 }, SecurityLevel::CMAC),
    )
    .await
    .unwrap();
    let (atc, ac, iad) = terminal_read(&c).await;
    assert_eq!(ac, expected_arqc(atc, &iad));
}

#[tokio::test(start_paused = true)]
async fn slow_responses_only_cost_time() {
    let c = card(Protocol::Scp02 { i: 0x55 }, static_keys());
    c.lock().unwrap().faults.delay = Some(Duration::from_millis(250));
    let start = tokio::time::Instant::now();
    let report = perso(
        &c,
        &static_keys(),
        params(Protocol::Scp02 { i: 0x55 }, SecurityLevel::CMAC),
    )
    .await
    .unwrap();
    assert_eq!(
        start.elapsed(),
        Duration::from_millis(250) * report.apdu_count
    );
}

#[tokio::test]
async fn the_card_refuses_store_data_blocks_out_of_order() {
    let c = card(Protocol::Scp02 { i: 0x55 }, static_keys());
    let mut t = InProcessTransport::new(c.clone());
    t.exchange(&gp::select(&h(AID)).to_bytes()).await.unwrap();
    let (mut ch, _) = HostChannel::open(
        &mut t,
        &static_keys(),
        params(Protocol::Scp02 { i: 0x55 }, SecurityLevel::CMAC),
        [1; 8],
    )
    .await
    .unwrap();
    let skip = ch
        .wrap(&Command::new(0x80, 0xE2, 0x00, 0x01, h("9010020303")))
        .unwrap();
    let r = t.exchange(&skip).await.unwrap();
    assert_eq!(gp::status_word(&r), 0x6A86);
}

proptest! {
    #[test]
    fn the_card_never_panics_on_arbitrary_commands(cmds in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..270), 1..20)) {
        let c = card(Protocol::Scp02 { i: 0x55 }, static_keys());
        let mut c = c.lock().unwrap();
        c.process(&gp::select(&h(AID)).to_bytes());
        for cmd in cmds {
            let r = c.process(&cmd);
            prop_assert!(r.len() >= 2);
        }
    }
}
