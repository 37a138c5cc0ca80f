//! Terminal read-back and verification against the simulated card personalized with prepared DGIs.

mod emv_support;

use emv_support::{dev_keystore, keys, order, personalized_chip, profile, sent};
use station_emv::data::prep::prepare;
use station_emv::keys::KeyIndex;
use station_emv::terminal::verify::{verify_card, CardExpectations, VerifyError};
use station_emv::terminal::{read_card, TerminalError, TerminalParams};
use station_hal::StaffFacing;
use station_sim::card::InProcessTransport;

#[tokio::test]
async fn a_card_prepared_from_any_shipped_profile_reads_back_and_verifies() {
    let (_d, ks) = dev_keystore();
    for name in [
        "visa_vsdc_cvn10",
        "visa_vsdc_cvn18",
        "mc_mchip_cvn16",
        "mc_mchip_cvn17",
    ] {
        let p = profile(name);
        let input = order();
        let card = prepare(&input, &p, &keys(), &ks).unwrap();
        let mut chip = personalized_chip(&card);
        let read = read_card(&mut chip, &card.aid, &TerminalParams::default())
            .await
            .unwrap();
        assert_eq!(read.pin_try_counter, Some(3), "{name}");
        assert_eq!(read.atc_before, Some([0, 0]), "{name}");
        assert_eq!(read.generate_ac.atc, [0, 1], "{name}");
        let expected = CardExpectations::new(&input, &card, &p).unwrap();
        verify_card(&read, &expected, &ks, KeyIndex(1)).unwrap_or_else(|e| panic!("{name}: {e}"));
    }
}

#[tokio::test]
async fn gpo_carries_pdol_data_only_when_the_card_has_a_pdol() {
    let (_d, ks) = dev_keystore();
    let gpo_of =
        |c: &InProcessTransport| sent(c).into_iter().find(|c| c[1] == 0xA8).unwrap().clone();
    // Visa profile: no PDOL → 83 00.
    let card = prepare(&order(), &profile("visa_vsdc_cvn10"), &keys(), &ks).unwrap();
    let mut chip = personalized_chip(&card);
    read_card(&mut chip, &card.aid, &TerminalParams::default())
        .await
        .unwrap();
    assert_eq!(
        gpo_of(&chip),
        vec![0x80, 0xA8, 0x00, 0x00, 0x02, 0x83, 0x00, 0x00]
    );
    // Mastercard profile: PDOL 9F35 01 → terminal type 22.
    let card = prepare(&order(), &profile("mc_mchip_cvn16"), &keys(), &ks).unwrap();
    let mut chip = personalized_chip(&card);
    read_card(&mut chip, &card.aid, &TerminalParams::default())
        .await
        .unwrap();
    assert_eq!(
        gpo_of(&chip),
        vec![0x80, 0xA8, 0x00, 0x00, 0x03, 0x83, 0x01, 0x22, 0x00]
    );
}

#[tokio::test]
async fn generate_ac_asks_for_an_arqc_with_the_cdol1_data() {
    let (_d, ks) = dev_keystore();
    let card = prepare(&order(), &profile("visa_vsdc_cvn10"), &keys(), &ks).unwrap();
    let mut chip = personalized_chip(&card);
    read_card(&mut chip, &card.aid, &TerminalParams::default())
        .await
        .unwrap();
    let genac = sent(&chip).into_iter().find(|c| c[1] == 0xAE).unwrap();
    let expect = [
        "80AE80001D",
        "000000001000",
        "000000000000",
        "0840",
        "0000000000",
        "0840",
        "261122",
        "00",
        "12345678",
        "00",
    ]
    .concat();
    assert_eq!(hex::encode_upper(genac), expect);
}

#[tokio::test]
async fn a_card_prepared_with_the_wrong_imk_index_fails_on_its_arqc() {
    let (_d, ks) = dev_keystore();
    let p = profile("visa_vsdc_cvn10");
    let input = order();
    let mut wrong = keys();
    wrong.derivation = KeyIndex(2);
    let card = prepare(&input, &p, &wrong, &ks).unwrap();
    let mut chip = personalized_chip(&card);
    let read = read_card(&mut chip, &card.aid, &TerminalParams::default())
        .await
        .unwrap();
    let expected = CardExpectations::new(&input, &card, &p).unwrap();
    let e = verify_card(&read, &expected, &ks, KeyIndex(1)).unwrap_err();
    assert_eq!(e.code(), "CARD_PROD_EXCEPTION");
    assert!(
        e.to_string()
            .contains("ARQC does not verify under issuer master key index 01"),
        "{e}"
    );
}

#[tokio::test]
async fn a_card_holding_another_name_fails_naming_5f20() {
    let (_d, ks) = dev_keystore();
    let p = profile("visa_vsdc_cvn10");
    let card = prepare(&order(), &p, &keys(), &ks).unwrap();
    let mut chip = personalized_chip(&card);
    let read = read_card(&mut chip, &card.aid, &TerminalParams::default())
        .await
        .unwrap();
    let mut other = order();
    other.encoded_name = Some("MARTIN/PAUL".into());
    let expected = CardExpectations::new(&other, &card, &p).unwrap();
    let e = verify_card(&read, &expected, &ks, KeyIndex(1)).unwrap_err();
    assert!(
        matches!(&e, VerifyError::CardProdException(r) if r.contains("5F20")),
        "{e}"
    );
}

#[tokio::test]
async fn a_card_holding_another_pan_fails_with_masked_pans_only() {
    let (_d, ks) = dev_keystore();
    let p = profile("visa_vsdc_cvn10");
    let card = prepare(&order(), &p, &keys(), &ks).unwrap();
    let mut chip = personalized_chip(&card);
    let read = read_card(&mut chip, &card.aid, &TerminalParams::default())
        .await
        .unwrap();
    let mut other = order();
    other.pan = zeroize::Zeroizing::new("4761739001010028".into());
    let expected = CardExpectations::new(&other, &card, &p).unwrap();
    let e = verify_card(&read, &expected, &ks, KeyIndex(1))
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("476173******0010") && e.contains("476173******0028"),
        "{e}"
    );
    assert!(
        !e.contains("4761739001010010") && !e.contains("4761739001010028"),
        "{e}"
    );
}

#[tokio::test]
async fn a_card_that_does_not_know_the_aid_is_a_card_prod_exception() {
    let (_d, ks) = dev_keystore();
    let card = prepare(&order(), &profile("visa_vsdc_cvn10"), &keys(), &ks).unwrap();
    let mut chip = personalized_chip(&card);
    let e = read_card(
        &mut chip,
        &hex::decode("A0000000041010").unwrap(),
        &TerminalParams::default(),
    )
    .await
    .unwrap_err();
    assert_eq!(
        e,
        TerminalError::Status {
            command: "SELECT",
            sw: 0x6A82
        }
    );
    assert_eq!(e.code(), "CARD_PROD_EXCEPTION");
}

/// The card behind a T=0 reader: every answer with data comes as `61xx` first
/// and is fetched with GET RESPONSE, as PC/SC leaves it to the application.
struct T0Reader {
    card: InProcessTransport,
    pending: Option<Vec<u8>>,
    get_responses: usize,
}

#[async_trait::async_trait]
impl station_hal::ApduTransport for T0Reader {
    async fn transmit(&mut self, c: &[u8]) -> Result<Vec<u8>, station_hal::TransportError> {
        if c[1] == 0xC0 {
            self.get_responses += 1;
            return Ok(self
                .pending
                .take()
                .expect("GET RESPONSE without pending data"));
        }
        let r = self.card.transmit(c).await?;
        if r.len() > 2 {
            let n = (r.len() - 2) as u8;
            self.pending = Some(r);
            Ok(vec![0x61, n])
        } else {
            Ok(r)
        }
    }
}

#[tokio::test]
async fn read_back_works_through_t0_get_response() {
    let (_d, ks) = dev_keystore();
    let p = profile("visa_vsdc_cvn10");
    let input = order();
    let card = prepare(&input, &p, &keys(), &ks).unwrap();
    let mut reader = T0Reader {
        card: personalized_chip(&card),
        pending: None,
        get_responses: 0,
    };
    let read = read_card(&mut reader, &card.aid, &TerminalParams::default())
        .await
        .unwrap();
    // SELECT, GPO, 3 records, 2 GET DATA, GENERATE AC.
    assert_eq!(reader.get_responses, 8);
    let expected = CardExpectations::new(&input, &card, &p).unwrap();
    verify_card(&read, &expected, &ks, KeyIndex(1)).unwrap();
}

#[tokio::test]
async fn other_terminal_data_still_verifies_because_the_arqc_is_recomputed_from_it() {
    let (_d, ks) = dev_keystore();
    let p = profile("visa_vsdc_cvn10");
    let input = order();
    let card = prepare(&input, &p, &keys(), &ks).unwrap();
    let mut chip = personalized_chip(&card);
    let params = TerminalParams {
        amount: [0, 0, 0, 0, 0x00, 0x01],
        date: [0x27, 0x02, 0x28],
        unpredictable_number: [0xDE, 0xAD, 0xBE, 0xEF],
        ..TerminalParams::default()
    };
    let read = read_card(&mut chip, &card.aid, &params).await.unwrap();
    let expected = CardExpectations::new(&input, &card, &p).unwrap();
    verify_card(&read, &expected, &ks, KeyIndex(1)).unwrap();
}

#[tokio::test]
async fn a_tampered_cryptogram_fails_verification() {
    let (_d, ks) = dev_keystore();
    let p = profile("visa_vsdc_cvn10");
    let input = order();
    let card = prepare(&input, &p, &keys(), &ks).unwrap();
    let mut chip = personalized_chip(&card);
    let mut read = read_card(&mut chip, &card.aid, &TerminalParams::default())
        .await
        .unwrap();
    read.generate_ac.ac.as_mut().unwrap()[7] ^= 0x01;
    let expected = CardExpectations::new(&input, &card, &p).unwrap();
    let e = verify_card(&read, &expected, &ks, KeyIndex(1)).unwrap_err();
    assert!(e.to_string().contains("ARQC does not verify"), "{e}");
}

#[tokio::test]
async fn a_card_that_declines_with_an_aac_fails_saying_so() {
    let (_d, ks) = dev_keystore();
    let p = profile("visa_vsdc_cvn10");
    let input = order();
    let card = prepare(&input, &p, &keys(), &ks).unwrap();
    let mut chip = personalized_chip(&card);
    let mut read = read_card(&mut chip, &card.aid, &TerminalParams::default())
        .await
        .unwrap();
    read.generate_ac.cid = 0x00;
    let expected = CardExpectations::new(&input, &card, &p).unwrap();
    let e = verify_card(&read, &expected, &ks, KeyIndex(1)).unwrap_err();
    assert!(e.to_string().contains("declined (AAC)"), "{e}");
}

#[tokio::test]
async fn a_card_reporting_another_cryptogram_version_fails_naming_it() {
    let (_d, ks) = dev_keystore();
    let p = profile("visa_vsdc_cvn10");
    let input = order();
    let card = prepare(&input, &p, &keys(), &ks).unwrap();
    let mut chip = personalized_chip(&card);
    let mut read = read_card(&mut chip, &card.aid, &TerminalParams::default())
        .await
        .unwrap();
    read.generate_ac.iad[2] = 0x12;
    let expected = CardExpectations::new(&input, &card, &p).unwrap();
    let e = verify_card(&read, &expected, &ks, KeyIndex(1)).unwrap_err();
    assert!(
        e.to_string()
            .contains("cryptogram version 12 (visa-cvn18), the profile expects 0A (visa-cvn10)"),
        "{e}"
    );
}

#[tokio::test]
async fn a_card_with_a_used_pin_try_counter_fails() {
    let (_d, ks) = dev_keystore();
    let p = profile("visa_vsdc_cvn10");
    let input = order();
    let card = prepare(&input, &p, &keys(), &ks).unwrap();
    let mut chip = personalized_chip(&card);
    let mut read = read_card(&mut chip, &card.aid, &TerminalParams::default())
        .await
        .unwrap();
    read.pin_try_counter = Some(2);
    let expected = CardExpectations::new(&input, &card, &p).unwrap();
    let e = verify_card(&read, &expected, &ks, KeyIndex(1)).unwrap_err();
    assert!(
        e.to_string()
            .contains("PIN try counter is 2, a new card must have 3"),
        "{e}"
    );
}

/// Reads a card prepared from `p` and checks it; returns what was read.
async fn read_and_verify(
    p: &station_emv::data::profile::Profile,
) -> station_emv::terminal::CardReadout {
    let (_d, ks) = dev_keystore();
    let input = order();
    let card = prepare(&input, p, &keys(), &ks).unwrap();
    let mut chip = personalized_chip(&card);
    let read = read_card(&mut chip, &card.aid, &TerminalParams::default())
        .await
        .unwrap();
    let expected = CardExpectations::new(&input, &card, p).unwrap();
    verify_card(&read, &expected, &ks, KeyIndex(1)).unwrap();
    read
}

#[tokio::test]
async fn a_visa_cvn18_card_reports_its_cvn_key_index_and_discretionary_data_in_the_iad() {
    let read = read_and_verify(&profile("visa_vsdc_cvn18")).await;
    assert_eq!(
        hex::encode_upper(&read.generate_ac.iad),
        "06011203A000000F010000000000000000000000000000"
    );
}

#[tokio::test]
async fn an_mchip_card_reports_key_index_cvn_and_cvr_in_the_mchip_layout() {
    for (name, cvn) in [("mc_mchip_cvn16", "10"), ("mc_mchip_cvn17", "11")] {
        let read = read_and_verify(&profile(name)).await;
        assert_eq!(
            hex::encode_upper(&read.generate_ac.iad),
            format!("01{cvn}A0000000000000000000000000000000"),
            "{name}"
        );
    }
}

#[tokio::test]
async fn the_terminal_sends_the_cdol1_the_card_holds_not_the_profiles() {
    // The card's CDOL1 asks for terminal type first; the terminal, reading 8C from the
    // card, puts it there, and the ARQC still verifies from the data sent.
    let mut p = profile("visa_vsdc_cvn18");
    p.cdol1 = [vec![0x9F, 0x35, 0x01], p.cdol1.clone()].concat();
    let (_d, ks) = dev_keystore();
    let card = prepare(&order(), &p, &keys(), &ks).unwrap();
    let mut chip = personalized_chip(&card);
    let read = read_card(&mut chip, &card.aid, &TerminalParams::default())
        .await
        .unwrap();
    assert_eq!(read.cdol1_data[0], 0x22);
    let expected = CardExpectations::new(&order(), &card, &p).unwrap();
    verify_card(&read, &expected, &ks, KeyIndex(1)).unwrap();
}

/// Verifies `read` after `tamper`, expecting the ARQC check to fail.
async fn tampered_fails(name: &str, tamper: impl Fn(&mut station_emv::terminal::CardReadout)) {
    let (_d, ks) = dev_keystore();
    let p = profile(name);
    let input = order();
    let card = prepare(&input, &p, &keys(), &ks).unwrap();
    let mut chip = personalized_chip(&card);
    let mut read = read_card(&mut chip, &card.aid, &TerminalParams::default())
        .await
        .unwrap();
    tamper(&mut read);
    let expected = CardExpectations::new(&input, &card, &p).unwrap();
    let e = verify_card(&read, &expected, &ks, KeyIndex(1)).unwrap_err();
    assert!(
        e.to_string().contains("ARQC does not verify"),
        "{name}: {e}"
    );
}

#[tokio::test]
async fn cvn18_covers_the_whole_iad_including_the_discretionary_data() {
    tampered_fails("visa_vsdc_cvn18", |r| r.generate_ac.iad[9] ^= 0x01).await;
}

#[tokio::test]
async fn cvn17_covers_the_counters_and_cvn16_does_not() {
    tampered_fails("mc_mchip_cvn17", |r| r.generate_ac.iad[12] ^= 0x01).await;
    // CVN 16 leaves the counters out of the MAC: the same change still verifies.
    let (_d, ks) = dev_keystore();
    let p = profile("mc_mchip_cvn16");
    let card = prepare(&order(), &p, &keys(), &ks).unwrap();
    let mut chip = personalized_chip(&card);
    let mut read = read_card(&mut chip, &card.aid, &TerminalParams::default())
        .await
        .unwrap();
    read.generate_ac.iad[12] ^= 0x01;
    let expected = CardExpectations::new(&order(), &card, &p).unwrap();
    verify_card(&read, &expected, &ks, KeyIndex(1)).unwrap();
}

#[tokio::test]
async fn mchip_session_keys_depend_on_the_unpredictable_number() {
    tampered_fails("mc_mchip_cvn16", |r| {
        let un = r.cdol1_data.len() - 3 - 8 - 2 - 1 - 4;
        r.cdol1_data[un] ^= 0x01;
    })
    .await;
}

#[tokio::test]
async fn a_cvn18_card_with_a_19_digit_pan_verifies_under_option_b_keys() {
    let (_d, ks) = dev_keystore();
    let mut p = profile("visa_vsdc_cvn18");
    p.track2_discretionary = "{pvki}{pvv}{cvv}".into();
    let input = station_emv::data::prep::PrepInput {
        pan: zeroize::Zeroizing::new("4761739001010000015".into()),
        psn: "00".into(),
        ..order()
    };
    let card = prepare(&input, &p, &keys(), &ks).unwrap();
    let mut chip = personalized_chip(&card);
    let read = read_card(&mut chip, &card.aid, &TerminalParams::default())
        .await
        .unwrap();
    let expected = CardExpectations::new(&input, &card, &p).unwrap();
    verify_card(&read, &expected, &ks, KeyIndex(1)).unwrap();
}

#[tokio::test]
async fn a_card_reporting_a_cvn_no_version_has_fails_naming_the_iad() {
    let (_d, ks) = dev_keystore();
    let p = profile("mc_mchip_cvn16");
    let card = prepare(&order(), &p, &keys(), &ks).unwrap();
    let mut chip = personalized_chip(&card);
    let mut read = read_card(&mut chip, &card.aid, &TerminalParams::default())
        .await
        .unwrap();
    // M/Chip layout: the CVN is the second byte.
    read.generate_ac.iad[1] = 0x99;
    let expected = CardExpectations::new(&order(), &card, &p).unwrap();
    let e = verify_card(&read, &expected, &ks, KeyIndex(1)).unwrap_err();
    assert!(
        e.to_string().contains(
            "issuer application data (9F10, 18 bytes) names no cryptogram version this terminal checks"
        ),
        "{e}"
    );
}
