//! A CDA card made the way `card issue` makes it: the station's key file holds the
//! issuer ODA key and the CA public key a terminal would hold, the profile comes from
//! the station's profile directory, and the read-back checks the GENERATE AC signature
//! with those keys before it verifies the ARQC the signature carries.

mod emv_support;
mod station;

use std::io::Write;
use std::sync::{Arc, Mutex};

use emv_support::lab;
use station::{card_data, card_stock, dev_with, dev_with_stock, order, Dev};
use station_emv::data::profile::ProfileSet;
use station_emv::keys::{KeyStore, SoftwareKeyStore, DEV_KEY_FILE};
use station_sim::card::{InProcessTransport, SimCard};
use time::macros::date;

const CDA: &str = include_str!("../config/emv/mc_mchip_cvn17_cda.toml");

/// The lab key file (dev keys + issuer ODA key 01), plus the lab CA under Mastercard's
/// RID when `with_ca`, and the CDA profile in a profile directory.
fn cda_station(with_ca: bool) -> (Dev, tempfile::TempDir) {
    let (keys_dir, path) = lab_key_file(with_ca);
    let keystore: Arc<dyn KeyStore> = Arc::new(SoftwareKeyStore::load(&path).unwrap());
    let (profiles, profiles_dir) = cda_profiles();
    (dev_with(keys_dir, keystore, profiles), profiles_dir)
}

/// The CDA profile in a profile directory (kept by the returned guard).
fn cda_profiles() -> (ProfileSet, tempfile::TempDir) {
    let profiles_dir = tempfile::tempdir().unwrap();
    std::fs::write(profiles_dir.path().join("mc_mchip_cvn17_cda.toml"), CDA).unwrap();
    (
        ProfileSet::with_dir(profiles_dir.path()).unwrap(),
        profiles_dir,
    )
}

/// The lab key file, plus the lab CA under Mastercard's RID when `with_ca`.
fn lab_key_file(with_ca: bool) -> (tempfile::TempDir, std::path::PathBuf) {
    let (keys_dir, _, ca) = lab();
    let path = keys_dir.path().join(DEV_KEY_FILE);
    if with_ca {
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .unwrap();
        write!(
            f,
            "\n[ca.A000000004.92]\nmodulus = \"{}\"\nexponent = \"{}\"\n",
            hex::encode_upper(&ca.key.modulus),
            hex::encode_upper(&ca.key.exponent)
        )
        .unwrap();
    }
    (keys_dir, path)
}

async fn issue(d: &Dev, n: u32) -> Result<(), station_agent::job::production::Refusal> {
    let mut o = order(d, "mc_mchip_cvn17_cda", "01", &card_data(n));
    o["paymentApplication"]["odaKeyIndex"] = "01".into();
    let job = d.production.prepare(&o, date!(2026 - 11 - 22))?;
    let card = Arc::new(Mutex::new(SimCard::new(card_stock(d, "DEV-MC"))));
    let mut t = InProcessTransport::new(card);
    d.production.personalize(&mut t, &job).await.unwrap();
    d.production.verify(&mut t, &job).await
}

#[tokio::test]
async fn a_cda_card_issued_by_the_station_passes_its_read_back_with_the_key_files_ca_key() {
    let (d, _profiles) = cda_station(true);
    issue(&d, 41).await.unwrap();
}

#[tokio::test]
async fn without_a_ca_key_in_the_key_file_a_cda_card_is_a_card_prod_exception() {
    let (d, _profiles) = cda_station(false);
    let e = issue(&d, 42).await.unwrap_err();
    assert!(
        e.to_string()
            .contains("CDA: no CA public key A000000004 index 92 is configured"),
        "{e}"
    );
}

#[tokio::test]
async fn a_cda_card_issued_with_the_issuer_keys_in_the_hsm_passes_its_read_back() {
    // The same key file moved into a SoftHSM2 token: the issuer ODA key signs the ICC
    // key certificate inside it (CKM_RSA_X_509), the CA key is public data beside it.
    use station_emv::keys::{
        fresh_softhsm2_dir_for_test, write_softhsm2_token, PinSource, Pkcs11Config, Pkcs11KeyStore,
        SOFTHSM2_MODULE,
    };
    let (keys_dir, path) = lab_key_file(true);
    let software = SoftwareKeyStore::load(&path).unwrap();
    let token = write_softhsm2_token(
        &fresh_softhsm2_dir_for_test().unwrap(),
        std::path::Path::new(SOFTHSM2_MODULE),
        "station-cda",
        &software,
    )
    .unwrap();
    let hsm = Pkcs11KeyStore::open(&Pkcs11Config {
        module: SOFTHSM2_MODULE.into(),
        token: token.token,
        pin: PinSource::File(token.pin_file),
        sessions: 1,
        development: true,
    })
    .unwrap();
    let (profiles, _profiles_dir) = cda_profiles();
    let d = dev_with_stock(keys_dir, Arc::new(hsm), Arc::new(software), profiles);
    issue(&d, 43).await.unwrap();
}
