//! Shared fixtures for the EMV tests: the development key store, a sample order and the
//! simulated card personalized with prepared DGIs.

#![allow(dead_code)]

use std::io::Write;
use std::path::Path;
use std::sync::{Arc, Mutex};

use openssl::rsa::Rsa;
use station_emv::card_data::Pan;
use station_emv::data::prep::{KeyIndexes, PrepInput, PreparedCard};
use station_emv::data::profile::{Profile, ProfileSet};
use station_emv::keys::{write_dev_keystore, KeyIndex, SoftwareKeyStore};
use station_emv::oda::{issuer_certificate, issuer_identifier, CaPublicKey, RsaPublicKey};
use station_sim::card::{InProcessTransport, SimCard};
use zeroize::Zeroizing;

/// A development key store in a temporary directory (kept alive by the returned guard).
pub fn dev_keystore() -> (tempfile::TempDir, SoftwareKeyStore) {
    let dir = tempfile::tempdir().unwrap();
    let path = write_dev_keystore(dir.path()).unwrap();
    let ks = SoftwareKeyStore::load(&path).unwrap();
    (dir, ks)
}

/// A lab CA (1408 bits) certifying a 1152-bit issuer key, so the certificate needs a
/// remainder; the issuer key goes into the development key file as odaKeyIndex 01.
pub fn lab() -> (tempfile::TempDir, SoftwareKeyStore, CaPublicKey) {
    let dir = tempfile::tempdir().unwrap();
    let path = write_dev_keystore(dir.path()).unwrap();
    let ca = Rsa::generate(1408).unwrap();
    let issuer = Rsa::generate(1152).unwrap();
    let issuer_pub = RsaPublicKey {
        modulus: issuer.n().to_vec(),
        exponent: issuer.e().to_vec(),
    };
    let pan = Pan::new("4761739001010010").unwrap();
    let (cert, rem) = issuer_certificate(
        &ca.n().to_vec(),
        &ca.d().to_vec_padded(ca.n().num_bytes()).unwrap(),
        &issuer_pub,
        issuer_identifier(&pan, 6),
        [0x12, 0x30],
        [0x00, 0x00, 0x01],
    )
    .unwrap();
    let n = issuer.n().num_bytes();
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(&path)
        .unwrap();
    write!(
        f,
        "\n[oda.01]\nca_index = \"92\"\nissuer_pk_certificate = \"{}\"\nissuer_pk_exponent = \"{}\"\n\
         issuer_pk_remainder = \"{}\"\nissuer_modulus = \"{}\"\nissuer_private_exponent = \"{}\"\n",
        hex::encode_upper(cert),
        hex::encode_upper(&issuer_pub.exponent),
        hex::encode_upper(rem),
        hex::encode_upper(&issuer_pub.modulus),
        hex::encode_upper(issuer.d().to_vec_padded(n).unwrap()),
    )
    .unwrap();
    drop(f);
    let ks = SoftwareKeyStore::load(&path).unwrap();
    let ca_key = CaPublicKey {
        rid: [0xA0, 0x00, 0x00, 0x00, 0x03],
        index: 0x92,
        key: RsaPublicKey {
            modulus: ca.n().to_vec(),
            exponent: ca.e().to_vec(),
        },
    };
    (dir, ks, ca_key)
}

/// A shipped profile by name.
pub fn profile(name: &str) -> Profile {
    ProfileSet::builtin().unwrap().get(name).unwrap().clone()
}

/// The card data of a typical order.
pub fn order() -> PrepInput {
    PrepInput {
        pan: Zeroizing::new("4761739001010010".into()),
        exp_yymm: "2811".into(),
        psn: "01".into(),
        encoded_name: Some("DUPONT/JEAN".into()),
        effective_yymm: Some("2511".into()),
        ..PrepInput::default()
    }
}

/// Key indexes 01 for everything.
pub fn keys() -> KeyIndexes {
    KeyIndexes {
        derivation: KeyIndex(1),
        cv: Some(KeyIndex(1)),
        pv: Some(KeyIndex(1)),
        oda: None,
    }
}

/// Writes a profile variant into `dir` under `name`.
pub fn write_profile(dir: &Path, name: &str, text: &str) {
    std::fs::write(dir.join(format!("{name}.toml")), text).unwrap();
}

/// The simulated card personalized with `p`'s DGIs, as CPS would leave it, on an
/// in-process link.
pub fn personalized_chip(p: &PreparedCard) -> InProcessTransport {
    let dgis = p.dgis.iter().map(|d| (d.id, d.data.to_vec()));
    InProcessTransport::new(Arc::new(Mutex::new(SimCard::personalized(&p.aid, dgis))))
}

/// The commands the card behind `chip` received, in order.
pub fn sent(chip: &InProcessTransport) -> Vec<Vec<u8>> {
    chip.card().lock().unwrap().received().to_vec()
}
