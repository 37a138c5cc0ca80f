//! Static data authentication: an SDA profile signs its ODA records at preparation,
//! and the read-back checks the signature as a terminal would.

mod emv_support;

use emv_support::{keys, lab, order, personalized_chip};
use station_emv::data::prep::{prepare, KeyIndexes};
use station_emv::data::profile::{Profile, ProfileError};
use station_emv::keys::KeyIndex;
use station_emv::terminal::verify::{verify_card, CardExpectations};
use station_emv::terminal::{read_card, TerminalParams};
use station_hal::StaffFacing;

const VISA: &str = include_str!("../config/emv/visa_vsdc_cvn10.toml");

/// The Visa profile turned into an SDA product: AIP 5800, record SFI 2 rec 1 signed,
/// issuer key data and the signature in SFI 3.
fn sda_text() -> String {
    let t = VISA
        .replace("name = \"visa_vsdc_cvn10\"", "name = \"visa_sda\"")
        .replace("aip = \"1800\"", "aip = \"5800\"")
        .replace(
            "[oda]\nmode = \"none\"",
            "[oda]\nmode = \"sda\"\ndac = \"DAC1\"\nsda_tag_list = \"82\"",
        )
        .replace("sfi = 2\nrecord = 1\n", "sfi = 2\nrecord = 1\noda = true\n");
    t + "\n[[record]]\nsfi = 3\nrecord = 1\ntags = [\"8F\", \"90\", \"92\", \"9F32\"]\n\n\
         [[record]]\nsfi = 3\nrecord = 2\ntags = [\"93\", \"9F4A\"]\n"
}

fn sda_profile() -> Profile {
    Profile::from_toml("visa_sda", &sda_text()).unwrap()
}

fn sda_keys() -> KeyIndexes {
    KeyIndexes {
        oda: Some(KeyIndex(1)),
        ..keys()
    }
}

#[tokio::test]
async fn an_sda_card_reads_back_and_its_signature_verifies() {
    let (_d, ks, ca) = lab();
    let p = sda_profile();
    assert_eq!(hex::encode_upper(p.afl()), "080101001001020118010200");
    let input = order();
    let card = prepare(&input, &p, &sda_keys(), &ks).unwrap();
    let mut chip = personalized_chip(&card);
    let read = read_card(&mut chip, &card.aid, &TerminalParams::default())
        .await
        .unwrap();
    assert_eq!(read.aip, [0x58, 0x00]);
    let expected = CardExpectations::new(&input, &card, &p)
        .unwrap()
        .with_ca_keys(vec![ca]);
    verify_card(&read, &expected, &ks, KeyIndex(1)).unwrap();
}

#[tokio::test]
async fn an_sda_card_cannot_be_verified_without_its_ca_key() {
    let (_d, ks, _ca) = lab();
    let p = sda_profile();
    let input = order();
    let card = prepare(&input, &p, &sda_keys(), &ks).unwrap();
    let mut chip = personalized_chip(&card);
    let read = read_card(&mut chip, &card.aid, &TerminalParams::default())
        .await
        .unwrap();
    let expected = CardExpectations::new(&input, &card, &p).unwrap();
    let e = verify_card(&read, &expected, &ks, KeyIndex(1)).unwrap_err();
    assert_eq!(e.code(), "CARD_PROD_EXCEPTION");
    assert!(
        e.to_string()
            .contains("no CA public key A000000003 index 92"),
        "{e}"
    );
}

#[tokio::test]
async fn a_signed_record_altered_after_signing_fails_sda() {
    let (_d, ks, ca) = lab();
    let p = sda_profile();
    let input = order();
    let card = prepare(&input, &p, &sda_keys(), &ks).unwrap();
    let mut chip = personalized_chip(&card);
    let mut read = read_card(&mut chip, &card.aid, &TerminalParams::default())
        .await
        .unwrap();
    // Change the application version (9F08) inside the signed SFI 2 record 1.
    let rec = read
        .records
        .iter_mut()
        .find(|r| (r.sfi, r.record) == (2, 1))
        .unwrap();
    let at = rec
        .data
        .windows(3)
        .position(|w| w == [0x9F, 0x08, 0x02])
        .unwrap();
    rec.data[at + 4] ^= 0x01;
    let expected = CardExpectations::new(&input, &card, &p)
        .unwrap()
        .with_ca_keys(vec![ca]);
    let e = verify_card(&read, &expected, &ks, KeyIndex(1)).unwrap_err();
    assert!(
        e.to_string()
            .contains("SDA: signed static data (93) does not match"),
        "{e}"
    );
}

#[test]
fn an_sda_product_without_an_oda_key_index_is_a_data_exception() {
    let (_d, ks, _ca) = lab();
    let e = prepare(&order(), &sda_profile(), &keys(), &ks).unwrap_err();
    assert_eq!(e.code(), "DATA_EXCEPTION");
    assert!(e.to_string().contains("odaKeyIndex"), "{e}");
}

fn refused(from: &str, to: &str) -> ProfileError {
    let text = sda_text();
    let changed = text.replacen(from, to, 1);
    assert_ne!(changed, text, "test edit did not apply");
    Profile::from_toml("visa_sda", &changed).unwrap_err()
}

#[test]
fn the_signature_cannot_sit_in_a_signed_record() {
    let e = refused(
        "tags = [\"93\", \"9F4A\"]",
        "oda = true\ntags = [\"93\", \"9F4A\"]",
    );
    assert!(e.to_string().contains("93 signs the ODA records"), "{e}");
}

#[test]
fn sda_without_the_aip_sda_bit_is_refused() {
    let e = refused("aip = \"5800\"", "aip = \"1800\"");
    assert!(
        matches!(&e, ProfileError::Invalid { key, .. } if key == "aip"),
        "{e}"
    );
}

#[test]
fn sda_without_a_dac_is_refused() {
    let e = refused("dac = \"DAC1\"\n", "");
    assert!(
        matches!(&e, ProfileError::Invalid { key, .. } if key == "oda.dac"),
        "{e}"
    );
}

#[test]
fn cda_with_the_sda_aip_is_refused_naming_the_aip() {
    let e = refused("mode = \"sda\"", "mode = \"cda\"");
    assert!(
        matches!(&e, ProfileError::Invalid { key, .. } if key == "aip"),
        "{e}"
    );
}
