//! The PKCS#11 key store on a SoftHSM2 token holding the development keys: the same
//! published vectors as the software store, with the same results.
//!
//! Needs SoftHSM2 (`cargo xtask setup` installs it).

use std::path::Path;
use std::sync::OnceLock;

use station_emv::card_data::{Pan, YearMonth};
use station_emv::crypto::tdes_cbc_encrypt;
use station_emv::data::cryptogram::{visa_cvn10, Cvn10Input};
use station_emv::data::derive::{parse_date, Psn, ServiceCode};
use station_emv::data::profile::CryptogramVersion;
use station_emv::gp::diversify::{derive, Diversification, KeyRole};
use station_emv::gp::scp::{scp02_derivation_data, KeySource, Protocol, SCP02_CONSTANTS};
use station_emv::keys::{
    write_dev_keystore, write_dev_token, KeyIndex, KeyStore, PinSource, Pkcs11Config,
    Pkcs11KeyStore, SoftwareKeyStore, SOFTHSM2_MODULE,
};

fn vectors() -> serde_json::Value {
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../tests/fixtures/emv-gp-vectors.json"
    ))
    .unwrap();
    serde_json::from_str(&text).unwrap()
}

fn s<'a>(v: &'a serde_json::Value, k: &str) -> &'a str {
    v[k].as_str().unwrap()
}

fn h(v: &serde_json::Value, k: &str) -> Vec<u8> {
    hex::decode(s(v, k)).unwrap()
}

struct Stores {
    hsm: Pkcs11KeyStore,
    software: SoftwareKeyStore,
}

/// One token per test process: SoftHSM2 reads its configuration once per process.
fn stores() -> &'static Stores {
    static STORES: OnceLock<Stores> = OnceLock::new();
    STORES.get_or_init(|| {
        assert!(
            Path::new(SOFTHSM2_MODULE).is_file(),
            "SoftHSM2 is not installed ({SOFTHSM2_MODULE}): run cargo xtask setup"
        );
        let dir = Box::leak(Box::new(tempfile::tempdir().unwrap()));
        let token =
            write_dev_token(dir.path(), Path::new(SOFTHSM2_MODULE), "station-test").unwrap();
        let hsm = Pkcs11KeyStore::open(&Pkcs11Config {
            module: SOFTHSM2_MODULE.into(),
            token: token.token.clone(),
            pin: PinSource::File(token.pin_file.clone()),
            sessions: 2,
        })
        .unwrap();
        let software = SoftwareKeyStore::load(&write_dev_keystore(dir.path()).unwrap()).unwrap();
        Stores { hsm, software }
    })
}

#[test]
fn option_a_icc_master_keys_match_the_vector_and_the_software_store() {
    let v = &vectors()["option_a"];
    let (pan, psn) = (
        Pan::new(s(v, "pan")).unwrap(),
        Psn::new(s(v, "psn")).unwrap(),
    );
    let st = stores();
    let hsm = st
        .hsm
        .derive_icc_master_keys(KeyIndex(1), &pan, psn)
        .unwrap();
    let soft = st
        .software
        .derive_icc_master_keys(KeyIndex(1), &pan, psn)
        .unwrap();
    assert_eq!(hex::encode_upper(hsm.mk_ac.expose()), s(v, "icc_mk"));
    assert_eq!(
        hex::encode_upper(&hsm.check_values().unwrap()[..3]),
        s(v, "kcv")
    );
    assert_eq!(*hsm.concatenated(), *soft.concatenated());
}

#[test]
fn cvv_matches_the_published_visa_example_and_the_software_store() {
    let v = &vectors()["cvv"];
    let pan = Pan::new(s(v, "pan")).unwrap();
    let exp: YearMonth = parse_date(s(v, "exp_yymm"), "exp").unwrap();
    let st = stores();
    for code in [s(v, "service_code"), "999"] {
        let sc = ServiceCode::new(code).unwrap();
        let hsm = st.hsm.cvv(KeyIndex(1), &pan, exp, &sc).unwrap();
        assert_eq!(*hsm, *st.software.cvv(KeyIndex(1), &pan, exp, &sc).unwrap());
        if code == s(v, "service_code") {
            assert_eq!(hsm.as_str(), s(v, "cvv"));
        }
    }
}

fn cvn10_input(v: &serde_json::Value) -> Cvn10Input {
    Cvn10Input {
        amount: h(v, "9F02").try_into().unwrap(),
        amount_other: h(v, "9F03").try_into().unwrap(),
        terminal_country: h(v, "9F1A").try_into().unwrap(),
        tvr: h(v, "95").try_into().unwrap(),
        currency: h(v, "5F2A").try_into().unwrap(),
        date: h(v, "9A").try_into().unwrap(),
        tx_type: h(v, "9C")[0],
        unpredictable_number: h(v, "9F37").try_into().unwrap(),
        aip: h(v, "82").try_into().unwrap(),
        atc: h(v, "9F36").try_into().unwrap(),
        cvr: h(v, "cvr").try_into().unwrap(),
    }
}

#[test]
fn the_hsm_accepts_the_published_cvn10_arqc_and_refuses_a_changed_one() {
    let v = &vectors()["visa_cvn10_arqc"];
    let o = &vectors()["option_a"];
    // The vector's ICC MK-AC is the Option A key of this PAN and PSN under IMK 01.
    let (pan, psn) = (
        Pan::new(s(o, "pan")).unwrap(),
        Psn::new(s(o, "psn")).unwrap(),
    );
    let input = cvn10_input(v);
    let arqc: [u8; 8] = h(v, "arqc").try_into().unwrap();
    assert_eq!(visa_cvn10(&h(v, "icc_mk_ac"), &input).unwrap(), arqc);
    let st = stores();
    let data = input.to_bytes();
    let version = CryptogramVersion::VisaCvn10;
    assert!(st
        .hsm
        .verify_arqc(KeyIndex(1), &pan, psn, version, &data, &arqc)
        .unwrap());
    let mut wrong = arqc;
    wrong[7] ^= 1;
    assert!(!st
        .hsm
        .verify_arqc(KeyIndex(1), &pan, psn, version, &data, &wrong)
        .unwrap());
}

#[test]
fn scp02_session_keys_come_from_the_hsm_equal_to_the_software_derivation() {
    let v = &vectors()["key_diversification"];
    let kdd: [u8; 10] = h(v, "kdd").try_into().unwrap();
    let seq = [0x00, 0x2A];
    let st = stores();
    let t = st.hsm.transport_keys("DEV-VISA").unwrap();
    assert_eq!(t.protocol, Protocol::Scp02 { i: 0x55 });
    let KeySource::Hsm(hsm) = t.key_source() else {
        panic!("the PKCS#11 store hands out an HSM key source");
    };
    let got = hsm.session_keys(t.protocol, &kdd, &seq, &[]).unwrap();
    let kmc = h(v, "kmc");
    let roles = [KeyRole::Enc, KeyRole::Mac, KeyRole::Dek];
    let want: Vec<Vec<u8>> = roles
        .iter()
        .zip(SCP02_CONSTANTS)
        .map(|(r, c)| {
            let card = derive(&kmc, &kdd, Diversification::EmvCpg202, *r).unwrap();
            tdes_cbc_encrypt(&card, &[0; 8], &scp02_derivation_data(c, &seq)).unwrap()
        })
        .collect();
    assert_eq!(
        [&*got.enc, &*got.mac, &*got.dek],
        [&want[0], &want[1], &want[2]]
    );
}

#[test]
fn keys_list_shows_labels_and_check_values_never_values() {
    let listed = stores().hsm.list().unwrap();
    let imk = listed
        .iter()
        .find(|k| k.label == "imk.01.ac")
        .expect("imk.01.ac");
    // KCV of the Option A vector IMK.
    assert_eq!(imk.kind, "DES2");
    assert_eq!(imk.kcv.len(), 6);
    for label in ["cvk.01", "cvk.01.a", "transport.DEV-VISA.kmc", "imk.02.smc"] {
        assert!(listed.iter().any(|k| k.label == label), "{label} missing");
    }
    let shown = format!("{listed:?}");
    assert!(!shown.contains("0123456789ABCDEF"), "{shown}");
}

#[test]
fn a_lost_session_is_reopened_and_the_operation_runs() {
    let v = &vectors()["cvv"];
    let pan = Pan::new(s(v, "pan")).unwrap();
    let exp = parse_date(s(v, "exp_yymm"), "exp").unwrap();
    let sc = ServiceCode::new(s(v, "service_code")).unwrap();
    let st = stores();
    st.hsm.drop_sessions_for_test().unwrap();
    assert_eq!(
        st.hsm.cvv(KeyIndex(1), &pan, exp, &sc).unwrap().as_str(),
        s(v, "cvv")
    );
}

#[test]
fn a_missing_key_is_named_by_kind_and_index() {
    let v = &vectors()["cvv"];
    let pan = Pan::new(s(v, "pan")).unwrap();
    let exp = parse_date(s(v, "exp_yymm"), "exp").unwrap();
    let sc = ServiceCode::new("101").unwrap();
    let e = stores().hsm.cvv(KeyIndex(9), &pan, exp, &sc).unwrap_err();
    assert_eq!(e.to_string(), "no cvk key with index 09 in the key store");
}

#[test]
fn scp03_session_keys_come_from_the_hsm_equal_to_the_software_derivation() {
    use station_emv::crypto::aes_cmac;
    use station_emv::gp::scp::scp03_kdf_input;
    use station_emv::keys::write_softhsm2_token;
    // SoftHSM2 already runs in this process with the shared token's folder: the new
    // token lands there too, its PIN file in the folder given here.
    let _ = stores();
    let kmc = "404142434445464748494A4B4C4D4E4F";
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("scp03.toml");
    std::fs::write(
        &file,
        format!(
            "[transport.SCP03-CARD]\nkmc = \"{kmc}\"\ndiversification = \"emv-cpg202\"\n\
             scp = \"scp03\"\ni = \"70\"\nkvn = \"30\"\n"
        ),
    )
    .unwrap();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600)).unwrap();
    }
    let software = SoftwareKeyStore::load(&file).unwrap();
    let token = write_softhsm2_token(
        &dir.path().join("hsm"),
        Path::new(SOFTHSM2_MODULE),
        "station-scp03",
        &software,
    )
    .unwrap();
    let hsm = Pkcs11KeyStore::open(&Pkcs11Config {
        module: SOFTHSM2_MODULE.into(),
        token: token.token,
        pin: PinSource::File(token.pin_file),
        sessions: 1,
    })
    .unwrap();
    let t = hsm.transport_keys("SCP03-CARD").unwrap();
    let KeySource::Hsm(keys) = t.key_source() else {
        panic!("an HSM key source");
    };
    let kdd: [u8; 10] = hex::decode("00010203040506070809")
        .unwrap()
        .try_into()
        .unwrap();
    let context = [0x11u8; 16];
    let got = keys.session_keys(t.protocol, &kdd, &[], &context).unwrap();
    let card = |r| {
        derive(
            &hex::decode(kmc).unwrap(),
            &kdd,
            Diversification::EmvCpg202,
            r,
        )
        .unwrap()
    };
    let enc = aes_cmac(
        &card(KeyRole::Enc),
        &scp03_kdf_input(0x04, 128, 1, &context),
    )
    .unwrap();
    let mac = aes_cmac(
        &card(KeyRole::Mac),
        &scp03_kdf_input(0x06, 128, 1, &context),
    )
    .unwrap();
    assert_eq!(*got.enc, enc.to_vec());
    assert_eq!(*got.mac, mac.to_vec());
    assert_eq!(*got.dek, card(KeyRole::Dek));
}
