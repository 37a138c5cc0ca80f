//! Combined DDA / application cryptogram generation: a CDA profile gets a certified ICC
//! key pair, the card signs its cryptogram in GENERATE AC, and the read-back checks the
//! signature with the CA and issuer keys the card was personalized with before it
//! verifies the ARQC the signature carries.

mod emv_support;

use emv_support::{keys, lab, order, personalized_chip, sent};
use station_emv::data::prep::{prepare, KeyIndexes, PreparedCard};
use station_emv::data::profile::Profile;
use station_emv::keys::{KeyIndex, SoftwareKeyStore};
use station_emv::oda::CaPublicKey;
use station_emv::terminal::verify::{verify_card, CardExpectations};
use station_emv::terminal::{read_card, CardReadout, TerminalParams};

const CDA: &str = include_str!("../config/emv/mc_mchip_cvn17_cda.toml");

fn cda_profile() -> Profile {
    Profile::from_toml("mc_mchip_cvn17_cda", CDA).unwrap()
}

fn cda_keys() -> KeyIndexes {
    KeyIndexes {
        oda: Some(KeyIndex(1)),
        ..keys()
    }
}

/// The lab CA key, registered for Mastercard's RID as a terminal would hold it.
fn mastercard_ca(mut ca: CaPublicKey) -> CaPublicKey {
    ca.rid = [0xA0, 0x00, 0x00, 0x00, 0x04];
    ca
}

struct Issued {
    _dir: tempfile::TempDir,
    ks: SoftwareKeyStore,
    ca: CaPublicKey,
    card: PreparedCard,
    read: CardReadout,
    commands: Vec<Vec<u8>>,
}

async fn issue_and_read() -> Issued {
    let (dir, ks, ca) = lab();
    let card = prepare(&order(), &cda_profile(), &cda_keys(), &ks).unwrap();
    let mut chip = personalized_chip(&card);
    let read = read_card(&mut chip, &card.aid, &TerminalParams::default())
        .await
        .unwrap();
    Issued {
        _dir: dir,
        ks,
        ca: mastercard_ca(ca),
        commands: sent(&chip),
        card,
        read,
    }
}

fn expectations(i: &Issued) -> CardExpectations {
    CardExpectations::new(&order(), &i.card, &cda_profile())
        .unwrap()
        .with_ca_keys(vec![i.ca.clone()])
}

#[tokio::test]
async fn a_cda_card_signs_its_arqc_and_the_read_back_verifies_signature_and_cryptogram() {
    let i = issue_and_read().await;
    let g = &i.read.generate_ac;
    assert_eq!(g.ac, None, "the cryptogram travels inside the signature");
    assert_eq!(g.sdad.as_ref().map(Vec::len), Some(128), "1024-bit ICC key");
    verify_card(&i.read, &expectations(&i), &i.ks, KeyIndex(1)).unwrap();
}

#[tokio::test]
async fn the_terminal_asks_for_cda_in_generate_ac_and_skips_internal_authenticate() {
    let i = issue_and_read().await;
    let genac = i.commands.iter().find(|c| c[1] == 0xAE).unwrap();
    assert_eq!(genac[2], 0x90, "ARQC with CDA signature requested");
    assert!(i.commands.iter().all(|c| c[1] != 0x88));
    assert!(i.read.internal_authenticate.is_none());
}

#[tokio::test]
async fn a_changed_response_object_breaks_the_transaction_data_hash() {
    let mut i = issue_and_read().await;
    // The IAD (last object) as if altered on the way: the signed hash no longer matches.
    let n = i.read.generate_ac.signed_objects.len();
    i.read.generate_ac.signed_objects[n - 1] ^= 0x01;
    let e = verify_card(&i.read, &expectations(&i), &i.ks, KeyIndex(1)).unwrap_err();
    assert!(
        e.to_string()
            .contains("CDA: the signed transaction data hash does not match"),
        "{e}"
    );
}

#[tokio::test]
async fn a_signature_over_another_unpredictable_number_is_refused() {
    let mut i = issue_and_read().await;
    let un = i.read.cdol1_data.len() - 3 - 8 - 2 - 1 - 4;
    i.read.cdol1_data[un] ^= 0x01;
    let e = verify_card(&i.read, &expectations(&i), &i.ks, KeyIndex(1)).unwrap_err();
    assert!(
        e.to_string()
            .contains("CDA: signed dynamic data does not match the terminal data"),
        "{e}"
    );
}

#[tokio::test]
async fn without_the_schemes_ca_key_the_card_fails_naming_the_missing_key() {
    let i = issue_and_read().await;
    let visa_only = CardExpectations::new(&order(), &i.card, &cda_profile())
        .unwrap()
        .with_ca_keys(vec![CaPublicKey {
            rid: [0xA0, 0x00, 0x00, 0x00, 0x03],
            ..i.ca.clone()
        }]);
    let e = verify_card(&i.read, &visa_only, &i.ks, KeyIndex(1)).unwrap_err();
    assert!(
        e.to_string()
            .contains("CDA: no CA public key A000000004 index 92"),
        "{e}"
    );
}

#[tokio::test]
async fn a_cda_card_prepared_with_another_imk_fails_on_the_signed_arqc() {
    let (_d, ks, ca) = lab();
    let wrong = KeyIndexes {
        derivation: KeyIndex(2),
        ..cda_keys()
    };
    let card = prepare(&order(), &cda_profile(), &wrong, &ks).unwrap();
    let mut chip = personalized_chip(&card);
    let read = read_card(&mut chip, &card.aid, &TerminalParams::default())
        .await
        .unwrap();
    let expected = CardExpectations::new(&order(), &card, &cda_profile())
        .unwrap()
        .with_ca_keys(vec![mastercard_ca(ca)]);
    let e = verify_card(&read, &expected, &ks, KeyIndex(1)).unwrap_err();
    assert!(e.to_string().contains("ARQC does not verify"), "{e}");
}
