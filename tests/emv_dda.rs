//! Dynamic data authentication: a DDA profile gets a certified ICC key pair at
//! preparation, and the read-back checks INTERNAL AUTHENTICATE as a terminal would.

mod emv_support;

use emv_support::{keys, lab, order, personalized_chip};
use station_emv::data::prep::{prepare, KeyIndexes};
use station_emv::data::profile::{Profile, ProfileError};
use station_emv::dgi::DgiEncryption;
use station_emv::keys::KeyIndex;
use station_emv::terminal::verify::{verify_card, CardExpectations};
use station_emv::terminal::{read_card, TerminalParams};

const VISA: &str = include_str!("../config/emv/visa_vsdc_cvn10.toml");

/// The Visa profile turned into a DDA product: AIP 3800, a 768-bit ICC key, record
/// SFI 2 rec 1 signed, issuer and ICC key data in SFI 3.
fn dda_text() -> String {
    let t = VISA
        .replace("name = \"visa_vsdc_cvn10\"", "name = \"visa_dda\"")
        .replace("aip = \"1800\"", "aip = \"3800\"")
        .replace(
            "[oda]\nmode = \"none\"",
            "[oda]\nmode = \"dda\"\nicc_key_bits = 768\nsda_tag_list = \"82\"",
        )
        .replace("sfi = 2\nrecord = 1\n", "sfi = 2\nrecord = 1\noda = true\n");
    t + "\n[[record]]\nsfi = 3\nrecord = 1\ntags = [\"8F\", \"90\", \"92\", \"9F32\"]\n\n\
         [[record]]\nsfi = 3\nrecord = 2\ntags = [\"9F46\", \"9F47\", \"9F48\", \"9F49\", \"9F4A\"]\n"
}

fn dda_profile() -> Profile {
    Profile::from_toml("visa_dda", &dda_text()).unwrap()
}

fn dda_keys() -> KeyIndexes {
    KeyIndexes {
        oda: Some(KeyIndex(1)),
        ..keys()
    }
}

#[test]
fn a_dda_card_carries_its_private_key_in_encrypted_crt_dgis() {
    let (_d, ks, _ca) = lab();
    let card = prepare(&order(), &dda_profile(), &dda_keys(), &ks).unwrap();
    let crt: Vec<_> = card
        .dgis
        .iter()
        .filter(|d| (0x8201..=0x8205).contains(&d.id))
        .collect();
    assert_eq!(crt.len(), 5);
    for d in crt {
        assert_eq!(d.encryption, DgiEncryption::Pad, "{d:?}");
        assert_eq!(d.data.len(), 48, "768-bit key: every CRT part is 48 bytes");
    }
}

#[tokio::test]
async fn a_dda_card_reads_back_and_its_dynamic_signature_verifies() {
    let (_d, ks, ca) = lab();
    let p = dda_profile();
    let input = order();
    let card = prepare(&input, &p, &dda_keys(), &ks).unwrap();
    let mut chip = personalized_chip(&card);
    let read = read_card(&mut chip, &card.aid, &TerminalParams::default())
        .await
        .unwrap();
    let ia = read
        .internal_authenticate
        .as_ref()
        .expect("DDA card was asked to sign");
    assert_eq!(ia.ddol_data, vec![0x12, 0x34, 0x56, 0x78]);
    assert_eq!(ia.sdad.len(), 96);
    let expected = CardExpectations::new(&input, &card, &p)
        .unwrap()
        .with_ca_keys(vec![ca]);
    verify_card(&read, &expected, &ks, KeyIndex(1)).unwrap();
}

#[tokio::test]
async fn a_signature_over_other_terminal_data_fails_dda() {
    let (_d, ks, ca) = lab();
    let p = dda_profile();
    let input = order();
    let card = prepare(&input, &p, &dda_keys(), &ks).unwrap();
    let mut chip = personalized_chip(&card);
    let mut read = read_card(&mut chip, &card.aid, &TerminalParams::default())
        .await
        .unwrap();
    read.internal_authenticate.as_mut().unwrap().ddol_data = vec![0, 0, 0, 0];
    let expected = CardExpectations::new(&input, &card, &p)
        .unwrap()
        .with_ca_keys(vec![ca]);
    let e = verify_card(&read, &expected, &ks, KeyIndex(1)).unwrap_err();
    assert!(
        e.to_string()
            .contains("DDA: signed dynamic data does not match the terminal data"),
        "{e}"
    );
}

#[tokio::test]
async fn a_signed_record_altered_after_certification_fails_dda() {
    let (_d, ks, ca) = lab();
    let p = dda_profile();
    let input = order();
    let card = prepare(&input, &p, &dda_keys(), &ks).unwrap();
    let mut chip = personalized_chip(&card);
    let mut read = read_card(&mut chip, &card.aid, &TerminalParams::default())
        .await
        .unwrap();
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
            .contains("DDA: ICC certificate (9F46) hash does not match"),
        "{e}"
    );
}

fn refused(from: &str, to: &str) -> ProfileError {
    let text = dda_text();
    let changed = text.replacen(from, to, 1);
    assert_ne!(changed, text, "test edit did not apply");
    Profile::from_toml("visa_dda", &changed).unwrap_err()
}

#[test]
fn dda_without_an_icc_key_length_is_refused() {
    let e = refused("icc_key_bits = 768\n", "");
    assert!(
        matches!(&e, ProfileError::Invalid { key, .. } if key == "oda.icc_key_bits"),
        "{e}"
    );
}

#[test]
fn icc_private_key_dgis_in_clear_are_refused() {
    let e = refused(
        "icc_key_bits = 768\n",
        "icc_key_bits = 768\nrsa_dgi_encryption = \"none\"\n",
    );
    assert!(
        matches!(&e, ProfileError::Invalid { key, .. } if key == "oda.rsa_dgi_encryption"),
        "{e}"
    );
}

#[test]
fn the_icc_certificate_cannot_sit_in_a_signed_record() {
    let e = refused(
        "tags = [\"9F46\", \"9F47\", \"9F48\", \"9F49\", \"9F4A\"]",
        "oda = true\ntags = [\"9F46\", \"9F47\", \"9F48\", \"9F49\", \"9F4A\"]",
    );
    assert!(e.to_string().contains("9F46 signs the ODA records"), "{e}");
}
