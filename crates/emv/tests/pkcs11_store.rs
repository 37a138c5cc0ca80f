//! The PKCS#11 key store on a SoftHSM2 token holding the development keys: the same
//! published vectors as the software store, with the same results.
//!
//! Needs SoftHSM2 (`cargo xtask setup` installs it).

use std::path::Path;
use std::sync::OnceLock;

use station_emv::card_data::{Pan, YearMonth};
use station_emv::crypto::{aes_cbc_encrypt, pad80, tdes_cbc_encrypt, tdes_ecb_encrypt};
use station_emv::data::cryptogram::{visa_cvn10, Cvn10Input};
use station_emv::data::derive::MasterKeyDerivation;
use station_emv::data::derive::{parse_date, Psn, ServiceCode};
use station_emv::data::profile::CryptogramVersion;
use station_emv::dgi::SealedIccKeys;
use station_emv::gp::diversify::{derive, Diversification, KeyRole};
use station_emv::gp::scp::{
    scp02_derivation_data, KeySource, Protocol, SensitiveData, SCP02_CONSTANTS,
};
use station_emv::keys::{
    fresh_softhsm2_dir_for_test, softhsm2_dir_for_test, write_dev_keystore, write_dev_token,
    IccKeyMaterial, KeyIndex, KeyStore, KeyUsage, PinSource, Pkcs11Config, Pkcs11KeyStore,
    SoftwareKeyStore, SOFTHSM2_MODULE,
};
use zeroize::Zeroizing;

/// Runs an HSM future to its end on a runtime of this thread.
fn block_on<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(f)
}

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
    config: Pkcs11Config,
}

impl Stores {
    /// How the shared store reached its token.
    fn hsm_token(&self) -> Pkcs11Config {
        self.config.clone()
    }
}

/// Every token this test process uses. They are all written before any test opens
/// one: a token initialized in this process while another test was opening its store
/// gave that store invalid object handles (SoftHSM2 2.6), which a station never sees
/// (its tokens are written by `keys init`, another process).
struct Tokens {
    stores: Stores,
    scp03: Scp03,
    oda: Oda,
    earlier: Pkcs11Config,
    /// A shared HSM partition: the station's keys and a bank's ZMK (wraps, unwraps).
    shared: Pkcs11Config,
    /// A station key imported by hand as extractable.
    extractable: Pkcs11Config,
    /// A station key imported by hand as readable (not sensitive).
    readable: Pkcs11Config,
}

fn tokens() -> &'static Tokens {
    static TOKENS: OnceLock<Tokens> = OnceLock::new();
    TOKENS.get_or_init(|| {
        let stores = make_stores();
        let scp03 = make_scp03();
        let earlier = make_earlier_version_token(&scp03.software);
        let with = |token, label, usage| token_with_key(&scp03.software, token, label, usage);
        let shared = with("station-shared", "bank.zmk", BANK_ZMK);
        let extractable = with(
            "station-extractable",
            "imk.09.ac",
            KeyUsage {
                extractable: true,
                ..KeyUsage::DERIVE
            },
        );
        let readable = with(
            "station-readable",
            "cvk.09",
            KeyUsage {
                sensitive: false,
                ..KeyUsage::ENCRYPT
            },
        );
        Tokens {
            stores,
            scp03,
            oda: make_oda(),
            earlier,
            shared,
            extractable,
            readable,
        }
    })
}

/// One token per test process, in the SoftHSM2 folder Cargo names in SOFTHSM2_CONF.
fn make_stores() -> Stores {
    assert!(
        Path::new(SOFTHSM2_MODULE).is_file(),
        "SoftHSM2 is not installed ({SOFTHSM2_MODULE}): run cargo xtask setup"
    );
    // Cargo sets SOFTHSM2_CONF for tests (.cargo/config.toml): tokens go there.
    let hsm_dir = fresh_softhsm2_dir_for_test().unwrap();
    let dir = Box::leak(Box::new(tempfile::tempdir().unwrap()));
    let token = write_dev_token(&hsm_dir, Path::new(SOFTHSM2_MODULE), "station-test").unwrap();
    let config = Pkcs11Config {
        module: SOFTHSM2_MODULE.into(),
        token: token.token.clone(),
        pin: PinSource::File(token.pin_file.clone()),
        sessions: 2,
        development: true,
    };
    let hsm = Pkcs11KeyStore::open(&config).unwrap();
    let software = SoftwareKeyStore::load(&write_dev_keystore(dir.path()).unwrap()).unwrap();
    Stores {
        hsm,
        software,
        config,
    }
}

fn stores() -> &'static Stores {
    &tokens().stores
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
    let got = block_on(hsm.session_keys(t.protocol, &kdd, &seq, &[])).unwrap();
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
    assert_eq!([&*got.enc, &*got.mac], [&want[0], &want[1]]);
    // The S-DEK stays inside: what it encrypts there equals the software S-DEK's result.
    let block = vec![0x5Au8; 8];
    let sent = block_on(hsm.encrypt_sensitive(
        t.protocol,
        &kdd,
        &seq,
        vec![SensitiveData::Clear(Zeroizing::new(block.clone()))],
    ))
    .unwrap();
    assert_eq!(sent, vec![tdes_ecb_encrypt(&want[2], &block).unwrap()]);
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
    let kmc = SCP03_KMC;
    let hsm = Pkcs11KeyStore::open(&scp03().config).unwrap();
    let t = hsm.transport_keys("SCP03-CARD").unwrap();
    let KeySource::Hsm(keys) = t.key_source() else {
        panic!("an HSM key source");
    };
    let kdd: [u8; 10] = hex::decode("00010203040506070809")
        .unwrap()
        .try_into()
        .unwrap();
    let context = [0x11u8; 16];
    let got = block_on(keys.session_keys(t.protocol, &kdd, &[], &context)).unwrap();
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
}

/// The Option A vector's card: its PAN and PSN.
fn option_a_card() -> (Pan, Psn) {
    let v = &vectors()["option_a"];
    (
        Pan::new(s(v, "pan")).unwrap(),
        Psn::new(s(v, "psn")).unwrap(),
    )
}

/// The sealed ICC keys and their check values, as the HSM gives them to preparation.
fn sealed(hsm: &Pkcs11KeyStore) -> (SealedIccKeys, Vec<u8>) {
    let (pan, psn) = option_a_card();
    match hsm
        .icc_key_material(MasterKeyDerivation::OptionA, KeyIndex(1), &pan, psn)
        .unwrap()
    {
        IccKeyMaterial::Sealed { keys, check_values } => (keys, check_values),
        IccKeyMaterial::Clear(_) => panic!("the HSM store hands ICC keys out in clear"),
    }
}

#[test]
fn scp02_dgi_8000_bytes_from_the_hsm_equal_the_software_stores() {
    let st = stores();
    let (pan, psn) = option_a_card();
    let (keys, kcvs) = sealed(&st.hsm);
    let clear = st
        .software
        .derive_icc_master_keys(KeyIndex(1), &pan, psn)
        .unwrap();
    assert_eq!(kcvs, clear.check_values().unwrap());

    let kdd: [u8; 10] = h(&vectors()["key_diversification"], "kdd")
        .try_into()
        .unwrap();
    let seq = [0x00, 0x07];
    let card_dek = st
        .software
        .transport_keys("DEV-VISA")
        .unwrap()
        .key_source()
        .card_keys(&kdd)
        .unwrap()
        .dek;
    let s_dek = tdes_cbc_encrypt(
        &card_dek,
        &[0; 8],
        &scp02_derivation_data(SCP02_CONSTANTS[2], &seq),
    )
    .unwrap();
    let t = st.hsm.transport_keys("DEV-VISA").unwrap();
    let KeySource::Hsm(hsm) = t.key_source() else {
        panic!("an HSM key source");
    };
    let got = block_on(hsm.encrypt_sensitive(
        t.protocol,
        &kdd,
        &seq,
        vec![
            SensitiveData::IccKeys {
                keys: keys.clone(),
                pad: true,
            },
            SensitiveData::IccKeys { keys, pad: false },
        ],
    ))
    .unwrap();
    let concatenated = clear.concatenated();
    assert_eq!(
        got[0],
        tdes_ecb_encrypt(&s_dek, &pad80(&concatenated, 8)).unwrap()
    );
    assert_eq!(got[1], tdes_ecb_encrypt(&s_dek, &concatenated).unwrap());
}

#[test]
fn a_production_store_refuses_a_token_that_cannot_wrap_scp02_icc_keys() {
    // SoftHSM2 2.6 wraps no key under a DES key: its SCP02 products' ICC keys could reach
    // the card only through the host, so a production store does not open on it.
    let token = stores().hsm_token();
    let production = Pkcs11KeyStore::open(&Pkcs11Config {
        development: false,
        ..token
    })
    .unwrap();
    let (keys, _) = sealed(&production);
    let t = production.transport_keys("DEV-VISA").unwrap();
    let KeySource::Hsm(hsm) = t.key_source() else {
        panic!("an HSM key source");
    };
    match production.check_icc_key_wrapping() {
        Err(e) => {
            assert!(
                e.to_string()
                    .contains("cannot wrap keys under a DES key (C_WrapKey takes neither"),
                "{e}"
            );
            // Were it started anyway, its SCP02 cards would be refused, not made on the host.
            let e = block_on(hsm.encrypt_sensitive(
                t.protocol,
                &[0x11; 10],
                &[0, 1],
                vec![SensitiveData::IccKeys { keys, pad: true }],
            ))
            .unwrap_err();
            assert!(
                e.to_string()
                    .contains("wrapping ICC keys under a DES key in token 'station-test'"),
                "{e}"
            );
        }
        Ok(()) => {
            // A token with DES key wrapping: DGI 8000 is wrapped inside.
            let c = block_on(hsm.encrypt_sensitive(
                t.protocol,
                &[0x11; 10],
                &[0, 1],
                vec![SensitiveData::IccKeys { keys, pad: true }],
            ))
            .unwrap();
            assert_eq!(c[0].len(), 56);
        }
    }
}

#[test]
fn a_production_store_never_reads_icc_keys_out() {
    let hsm = Pkcs11KeyStore::open(&scp03().config).unwrap();
    let (pan, psn) = option_a_card();
    let e = hsm
        .derive_icc_master_keys(KeyIndex(1), &pan, psn)
        .unwrap_err();
    assert!(e.to_string().contains("reading ICC master keys out"), "{e}");
}

/// A SoftHSM2 token with an SCP03 card product and IMKs, and the same keys in a
/// software store, in the folder of the shared token.
struct Scp03 {
    software: SoftwareKeyStore,
    config: Pkcs11Config,
}

const SCP03_KMC: &str = "404142434445464748494A4B4C4D4E4F";

fn make_scp03() -> Scp03 {
    use station_emv::keys::write_softhsm2_token;
    let dir = Box::leak(Box::new(tempfile::tempdir().unwrap()));
    let file = dir.path().join("scp03.toml");
    std::fs::write(
        &file,
        format!(
            "[transport.SCP03-CARD]\nkmc = \"{SCP03_KMC}\"\ndiversification = \"emv-cpg202\"\n\
                 scp = \"scp03\"\ni = \"70\"\nkvn = \"30\"\n\n\
                 [transport.SCP03-STATIC]\nkmc = \"{SCP03_KMC}\"\ndiversification = \"none\"\n\
                 scp = \"scp03\"\ni = \"70\"\nkvn = \"30\"\n\n[imk.01]\n\
                 ac = \"0123456789ABCDEFFEDCBA9876543210\"\n\
                 smi = \"1032547698BADCFEEFCDAB8967452301\"\n\
                 smc = \"F0E1D2C3B4A5968778695A4B3C2D1E0F\"\n"
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
        &softhsm2_dir_for_test().unwrap(),
        Path::new(SOFTHSM2_MODULE),
        "station-scp03",
        &software,
    )
    .unwrap();
    Scp03 {
        software,
        config: Pkcs11Config {
            module: SOFTHSM2_MODULE.into(),
            token: token.token,
            pin: PinSource::File(token.pin_file),
            sessions: 2,
            development: false,
        },
    }
}

fn scp03() -> &'static Scp03 {
    &tokens().scp03
}

#[test]
fn scp03_dgi_8000_is_wrapped_inside_the_hsm_equal_to_the_software_bytes() {
    // A production store: the keys leave the token only wrapped (CKM_AES_CBC).
    let sc = scp03();
    let hsm = Pkcs11KeyStore::open(&sc.config).unwrap();
    hsm.check_icc_key_wrapping().unwrap();
    let (pan, psn) = option_a_card();
    let (keys, kcvs) = sealed(&hsm);
    let clear = sc
        .software
        .derive_icc_master_keys(KeyIndex(1), &pan, psn)
        .unwrap();
    assert_eq!(kcvs, clear.check_values().unwrap());
    let kdd: [u8; 10] = hex::decode("00010203040506070809")
        .unwrap()
        .try_into()
        .unwrap();
    let card_dek = derive(
        &hex::decode(SCP03_KMC).unwrap(),
        &kdd,
        Diversification::EmvCpg202,
        KeyRole::Dek,
    )
    .unwrap();
    let t = hsm.transport_keys("SCP03-CARD").unwrap();
    let KeySource::Hsm(keys_in_hsm) = t.key_source() else {
        panic!("an HSM key source");
    };
    let pin_block = vec![0x24u8; 16];
    let got = block_on(keys_in_hsm.encrypt_sensitive(
        t.protocol,
        &kdd,
        &[],
        vec![
            SensitiveData::IccKeys {
                keys: keys.clone(),
                pad: true,
            },
            SensitiveData::IccKeys { keys, pad: false },
            SensitiveData::Clear(Zeroizing::new(pin_block.clone())),
        ],
    ))
    .unwrap();
    let concatenated = clear.concatenated();
    assert_eq!(
        got[0],
        aes_cbc_encrypt(&card_dek, &[0; 16], &pad80(&concatenated, 16)).unwrap()
    );
    assert_eq!(
        got[1],
        aes_cbc_encrypt(&card_dek, &[0; 16], &concatenated).unwrap()
    );
    assert_eq!(
        got[2],
        aes_cbc_encrypt(&card_dek, &[0; 16], &pin_block).unwrap()
    );
}

#[test]
fn an_undiversified_scp03_kmc_is_the_cards_dek_and_wraps_the_icc_keys_inside() {
    let sc = scp03();
    let hsm = Pkcs11KeyStore::open(&sc.config).unwrap();
    let (pan, psn) = option_a_card();
    let (keys, _) = sealed(&hsm);
    let t = hsm.transport_keys("SCP03-STATIC").unwrap();
    let KeySource::Hsm(card) = t.key_source() else {
        panic!("an HSM key source");
    };
    let got = block_on(card.encrypt_sensitive(
        t.protocol,
        &[5; 10],
        &[],
        vec![SensitiveData::IccKeys { keys, pad: false }],
    ))
    .unwrap();
    let clear = sc
        .software
        .derive_icc_master_keys(KeyIndex(1), &pan, psn)
        .unwrap();
    assert_eq!(
        got[0],
        aes_cbc_encrypt(
            &hex::decode(SCP03_KMC).unwrap(),
            &[0; 16],
            &clear.concatenated()
        )
        .unwrap()
    );
}

#[test]
fn each_personalization_is_pinned_to_its_own_session_and_never_waits_behind_another() {
    let hsm = Pkcs11KeyStore::open(&scp03().config).unwrap();
    let line_a = hsm.transport_keys("SCP03-CARD").unwrap();
    let line_b = hsm.transport_keys("SCP03-CARD").unwrap();
    let (KeySource::Hsm(a), KeySource::Hsm(b)) = (line_a.key_source(), line_b.key_source()) else {
        panic!("HSM key sources");
    };
    assert_eq!((a.session(), b.session()), (Some(0), Some(1)));
    // Line A's session is busy with a long operation; line B's card goes on.
    let release = hsm.hold_session_for_test(0).unwrap();
    block_on(b.session_keys(line_b.protocol, &[7; 10], &[], &[1; 16])).unwrap();
    release
        .send(())
        .expect("line A's operation was still running when line B's finished");
    block_on(a.session_keys(line_a.protocol, &[7; 10], &[], &[1; 16])).unwrap();
}

#[test]
fn a_session_given_back_is_pinned_again_first() {
    let hsm = Pkcs11KeyStore::open(&scp03().config).unwrap();
    let first = hsm.transport_keys("SCP03-CARD").unwrap();
    let second = hsm.transport_keys("SCP03-CARD").unwrap();
    let session = |t: &station_emv::keys::TransportKeySet| match t.key_source() {
        KeySource::Hsm(k) => k.session(),
        _ => None,
    };
    assert_eq!(session(&second), Some(1));
    drop(first);
    let third = hsm.transport_keys("SCP03-CARD").unwrap();
    assert_eq!(session(&third), Some(0));
}

#[test]
fn a_lost_login_is_recovered_on_the_pinned_session() {
    let hsm = Pkcs11KeyStore::open(&scp03().config).unwrap();
    let t = hsm.transport_keys("SCP03-CARD").unwrap();
    let KeySource::Hsm(keys) = t.key_source() else {
        panic!("an HSM key source");
    };
    hsm.drop_sessions_for_test().unwrap();
    block_on(keys.session_keys(t.protocol, &[3; 10], &[], &[2; 16])).unwrap();
}

#[test]
fn an_hsm_call_in_flight_leaves_the_async_runtime_free() {
    let hsm = Pkcs11KeyStore::open(&scp03().config).unwrap();
    let t = hsm.transport_keys("SCP03-CARD").unwrap();
    let KeySource::Hsm(keys) = t.key_source() else {
        panic!("an HSM key source");
    };
    let session = keys.session().unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .start_paused(true)
        .build()
        .unwrap();
    rt.block_on(async move {
        // The HSM session is busy: the call below waits in its queue.
        let release = hsm.hold_session_for_test(session).unwrap();
        let call = tokio::spawn(keys.session_keys(t.protocol, &[9; 10], &[], &[4; 16]));
        tokio::task::yield_now().await;
        // One thread only: this timer fires, and this task runs, because the HSM call
        // does not block the thread while it waits.
        tokio::time::sleep(std::time::Duration::from_secs(1)).await;
        release
            .send(())
            .expect("the runtime ran this task while the HSM call was in flight");
        call.await.unwrap().unwrap();
    });
}

/// A lab issuer ODA key (1152 bits, certified by a 1408-bit lab CA so the certificate
/// needs a remainder) in a token and in a software store.
struct Oda {
    software: SoftwareKeyStore,
    hsm: Pkcs11KeyStore,
    issuer: station_emv::oda::RsaPublicKey,
}

fn make_oda() -> Oda {
    use station_emv::keys::write_softhsm2_token;
    use station_emv::oda::{issuer_certificate, issuer_identifier, RsaPublicKey};
    let ca = openssl::rsa::Rsa::generate(1408).unwrap();
    let issuer = openssl::rsa::Rsa::generate(1152).unwrap();
    let issuer_pub = RsaPublicKey {
        modulus: issuer.n().to_vec(),
        exponent: issuer.e().to_vec(),
    };
    let (pan, _) = option_a_card();
    let (cert, rem) = issuer_certificate(
        &ca.n().to_vec(),
        &ca.d().to_vec_padded(ca.n().num_bytes()).unwrap(),
        &issuer_pub,
        issuer_identifier(&pan, 6),
        [0x12, 0x30],
        [0, 0, 1],
    )
    .unwrap();
    let dir = Box::leak(Box::new(tempfile::tempdir().unwrap()));
    let file = dir.path().join("oda.toml");
    std::fs::write(
        &file,
        format!(
            "[oda.01]\nca_index = \"92\"\nissuer_pk_certificate = \"{}\"\n\
                 issuer_pk_exponent = \"{}\"\nissuer_pk_remainder = \"{}\"\n\
                 issuer_modulus = \"{}\"\nissuer_private_exponent = \"{}\"\n\n\
                 [ca.A000000004.92]\nmodulus = \"{}\"\nexponent = \"{}\"\n",
            hex::encode_upper(cert),
            hex::encode_upper(&issuer_pub.exponent),
            hex::encode_upper(rem),
            hex::encode_upper(&issuer_pub.modulus),
            hex::encode_upper(issuer.d().to_vec_padded(issuer.n().num_bytes()).unwrap()),
            hex::encode_upper(ca.n().to_vec()),
            hex::encode_upper(ca.e().to_vec()),
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
        &softhsm2_dir_for_test().unwrap(),
        Path::new(SOFTHSM2_MODULE),
        "station-oda",
        &software,
    )
    .unwrap();
    let hsm = Pkcs11KeyStore::open(&Pkcs11Config {
        module: SOFTHSM2_MODULE.into(),
        token: token.token,
        pin: PinSource::File(token.pin_file),
        sessions: 1,
        development: false,
    })
    .unwrap();
    Oda {
        software,
        hsm,
        issuer: issuer_pub,
    }
}

fn oda() -> &'static Oda {
    &tokens().oda
}

#[test]
fn the_issuer_oda_key_data_comes_from_the_token_as_from_the_software_store() {
    let o = oda();
    assert_eq!(
        o.hsm.oda_issuer_key(KeyIndex(1)).unwrap(),
        o.software.oda_issuer_key(KeyIndex(1)).unwrap()
    );
    let e = o.hsm.oda_issuer_key(KeyIndex(2)).unwrap_err();
    assert_eq!(e.to_string(), "no oda key with index 02 in the key store");
    // The CA keys the read-back checks ODA cards with are public data beside it.
    let ca = o.hsm.ca_public_keys();
    assert_eq!(ca, o.software.ca_public_keys());
    assert_eq!((ca.len(), ca[0].index), (1, 0x92));
    // keys list shows the issuer private key by label, never its value.
    let listed = o.hsm.list().unwrap();
    assert!(
        listed
            .iter()
            .any(|k| k.label == "oda.01.issuer" && k.kind == "RSA"),
        "{listed:?}"
    );
}

#[test]
fn sda_signed_static_data_from_the_token_equals_the_software_stores() {
    // Raw RSA with the same key over the same recovery block: the same bytes.
    let o = oda();
    let static_data = b"\x5A\x08\x47\x61\x73\x90\x01\x01\x00\x10\x5F\x24\x03\x28\x11\x30";
    let hsm = o
        .hsm
        .sign_static_data(KeyIndex(1), [0xDA, 0xC1], static_data)
        .unwrap();
    assert_eq!(
        hsm,
        o.software
            .sign_static_data(KeyIndex(1), [0xDA, 0xC1], static_data)
            .unwrap()
    );
    assert_eq!(hsm.len(), o.issuer.modulus.len());
}

#[test]
fn an_icc_key_certified_inside_the_token_recovers_under_the_issuer_public_key() {
    use station_emv::oda::recover_icc_key;
    let o = oda();
    let (pan, _) = option_a_card();
    let exp = parse_date("2811", "exp").unwrap();
    let static_data = b"\x82\x02\x39\x00";
    let icc = o
        .hsm
        .generate_icc_key(KeyIndex(1), 1024, &pan, exp, static_data)
        .unwrap();
    let recovered = recover_icc_key(
        &o.issuer,
        &icc.certificate,
        &icc.remainder,
        &icc.exponent,
        &pan,
        static_data,
    )
    .unwrap();
    assert_eq!(recovered.modulus.len(), 128);
    assert_eq!(icc.crt.p.len(), 64);
}

/// A token holding `keys` as this version writes them (a development station's
/// configuration: open it with `development: false` for production).
fn token_of(keys: &SoftwareKeyStore, token: &str) -> Pkcs11Config {
    use station_emv::keys::write_softhsm2_token;
    let token = write_softhsm2_token(
        &softhsm2_dir_for_test().unwrap(),
        Path::new(SOFTHSM2_MODULE),
        token,
        keys,
    )
    .unwrap();
    Pkcs11Config {
        module: SOFTHSM2_MODULE.into(),
        token: token.token,
        pin: PinSource::File(token.pin_file),
        sessions: 1,
        development: true,
    }
}

/// A token as versions before the usage attributes wrote it: the SCP03 keys, and an
/// undiversified SCP03 KMC that wraps with decrypt and unwrap left to SoftHSM2 (true).
fn make_earlier_version_token(keys: &SoftwareKeyStore) -> Pkcs11Config {
    let config = token_of(keys, "station-earlier");
    Pkcs11KeyStore::open(&config)
        .unwrap()
        .import_as_earlier_versions_did_for_test(
            "transport.EARLIER.kmc",
            hex::decode(SCP03_KMC).unwrap(),
        )
        .unwrap();
    config
}

/// A bank's zone master key: wraps and unwraps keys for other systems, as it should.
const BANK_ZMK: KeyUsage = KeyUsage {
    encrypt: true,
    decrypt: true,
    wrap: true,
    unwrap: true,
    sensitive: true,
    ..KeyUsage::NONE
};

/// A token holding `keys` and one more key, `label`, that may do `usage`.
fn token_with_key(
    keys: &SoftwareKeyStore,
    token: &str,
    label: &str,
    usage: KeyUsage,
) -> Pkcs11Config {
    let config = token_of(keys, token);
    Pkcs11KeyStore::open(&config)
        .unwrap()
        .import_with_usage_for_test(label, vec![0x5A; 16], usage)
        .unwrap();
    config
}

/// The store of `config` as a production station opens it.
fn production(config: &Pkcs11Config) -> Pkcs11KeyStore {
    Pkcs11KeyStore::open(&Pkcs11Config {
        development: false,
        ..config.clone()
    })
    .unwrap()
}

/// What `label` may do on the token of `hsm`.
fn usage_of(hsm: &Pkcs11KeyStore, label: &str) -> KeyUsage {
    hsm.key_usages()
        .unwrap()
        .into_iter()
        .find(|(l, _)| l == label)
        .unwrap_or_else(|| panic!("no key {label} on the token"))
        .1
}

#[test]
fn imported_keys_may_do_only_what_their_role_needs() {
    // docs/keys.md: an IMK and a diversifying KMC only derive, a CVK only encrypts, an
    // undiversified SCP03 KMC (the card's own keys) CMACs, wraps and encrypts, an
    // issuer key only signs; none decrypts, unwraps, verifies or leaves the token.
    let dev = &stores().hsm;
    for part in ["ac", "smi", "smc"] {
        assert_eq!(usage_of(dev, &format!("imk.01.{part}")), KeyUsage::DERIVE);
    }
    assert_eq!(usage_of(dev, "cvk.01"), KeyUsage::ENCRYPT);
    assert_eq!(usage_of(dev, "cvk.01.a"), KeyUsage::ENCRYPT);
    assert_eq!(usage_of(dev, "transport.DEV-VISA.kmc"), KeyUsage::DERIVE);
    let scp03 = Pkcs11KeyStore::open(&scp03().config).unwrap();
    assert_eq!(
        usage_of(&scp03, "transport.SCP03-CARD.kmc"),
        KeyUsage::DERIVE
    );
    assert_eq!(
        usage_of(&scp03, "transport.SCP03-STATIC.kmc"),
        KeyUsage {
            encrypt: true,
            wrap: true,
            sign: true,
            sensitive: true,
            ..KeyUsage::default()
        }
    );
    assert_eq!(usage_of(&oda().hsm, "oda.01.issuer"), KeyUsage::RSA_SIGN);
}

#[test]
fn no_key_the_station_writes_wraps_and_decrypts() {
    for hsm in [&stores().hsm, &oda().hsm] {
        for (label, usage) in hsm.key_usages().unwrap() {
            assert!(!usage.unwraps_what_it_wraps(), "{label}: {usage:?}");
            assert!(usage.sensitive && !usage.extractable, "{label}: {usage:?}");
        }
    }
}

#[test]
fn scp02_session_keys_derived_inside_may_do_only_what_their_role_needs() {
    // The card's DEK only derives the S-DEK; the S-DEK wraps and encrypts, never
    // decrypts; ICC master keys leave only wrapped and do nothing else.
    let got = stores()
        .hsm
        .session_key_usages_for_test("DEV-VISA", [0x11; 10], vec![0, 1])
        .unwrap();
    assert_eq!(
        got,
        vec![
            ("card DEK", KeyUsage::DERIVE),
            ("S-DEK", KeyUsage::DEK),
            ("card ENC", KeyUsage::ENCRYPT),
            ("card MAC", KeyUsage::ENCRYPT),
            ("ICC MK wrappable", KeyUsage::WRAPPABLE),
        ]
    );
    assert_eq!(
        KeyUsage::DEK,
        KeyUsage {
            encrypt: true,
            wrap: true,
            sensitive: true,
            ..KeyUsage::default()
        }
    );
    assert_eq!(
        KeyUsage::WRAPPABLE,
        KeyUsage {
            extractable: true,
            sensitive: true,
            ..KeyUsage::default()
        }
    );
}

#[test]
fn scp03_session_keys_derived_inside_may_do_only_what_their_role_needs() {
    let hsm = Pkcs11KeyStore::open(&scp03().config).unwrap();
    let got = hsm
        .session_key_usages_for_test("SCP03-CARD", [0x11; 10], vec![])
        .unwrap();
    assert_eq!(
        got,
        vec![
            ("card DEK", KeyUsage::DEK),
            ("card ENC", KeyUsage::CMAC),
            ("card MAC", KeyUsage::CMAC),
            ("ICC MK wrappable", KeyUsage::WRAPPABLE),
        ]
    );
}

#[test]
fn icc_keys_wrapped_under_the_dek_cannot_be_decrypted_with_it() {
    // Personalization wraps a card's ICC master keys under the card's DEK; asked to
    // decrypt them with that DEK, the token refuses: no code path of the station and no
    // mis-built template turns the DEK into a way out. This does not stop someone who
    // holds the PIN: they can derive a readable ICC key from the IMK, or wrap one under a
    // key of their own (docs/keys.md, "What the attributes do not stop").
    let hsm = Pkcs11KeyStore::open(&scp03().config).unwrap();
    let (keys, _) = sealed(&hsm);
    let kdd = [0x11; 10];
    for product in ["SCP03-CARD", "SCP03-STATIC"] {
        let t = hsm.transport_keys(product).unwrap();
        let KeySource::Hsm(in_hsm) = t.key_source() else {
            panic!("an HSM key source");
        };
        let wrapped = block_on(in_hsm.encrypt_sensitive(
            t.protocol,
            &kdd,
            &[],
            vec![SensitiveData::IccKeys {
                keys: keys.clone(),
                pad: false,
            }],
        ))
        .unwrap();
        assert_eq!(wrapped[0].len(), 48);
        let clear = hsm
            .decrypt_under_dek_for_test(product, kdd, vec![], wrapped[0].clone())
            .unwrap();
        assert_eq!(clear, None, "{product}: the DEK decrypted what it wrapped");
    }
}

#[test]
fn the_scp02_session_dek_does_not_decrypt() {
    // SoftHSM2 wraps nothing under DES keys, but the S-DEK must refuse decryption on
    // any token: it is what wraps the ICC keys there.
    let clear = stores()
        .hsm
        .decrypt_under_dek_for_test("DEV-VISA", [0x11; 10], vec![0, 1], vec![0x5A; 16])
        .unwrap();
    assert_eq!(clear, None);
}

#[test]
fn a_production_store_refuses_a_token_whose_key_wraps_and_decrypts() {
    // A token written before the usage attributes: its undiversified KMC could wrap an
    // ICC key and decrypt it on the host.
    let production = production(&tokens().earlier);
    assert!(usage_of(&production, "transport.EARLIER.kmc").unwraps_what_it_wraps());
    let e = production.check_icc_key_wrapping().unwrap_err().to_string();
    assert!(
        e.contains("key transport.EARLIER.kmc may both wrap and decrypt"),
        "{e}"
    );
    assert!(e.contains("station-agent keys init"), "{e}");
    assert!(e.contains("station-earlier"), "{e}");
}

#[test]
fn a_development_store_opens_a_token_written_by_an_earlier_version() {
    let dev = Pkcs11KeyStore::open(&tokens().earlier).unwrap();
    dev.check_icc_key_wrapping().unwrap();
}

#[test]
fn a_production_store_opens_a_shared_partition_whose_bank_key_wraps_and_unwraps() {
    // A bank's ZMK beside the station's keys is not the station's to judge.
    let production = production(&tokens().shared);
    assert_eq!(usage_of(&production, "bank.zmk"), BANK_ZMK);
    production.check_icc_key_wrapping().unwrap();
}

#[test]
fn a_production_store_refuses_a_token_whose_station_key_is_extractable() {
    let production = production(&tokens().extractable);
    let e = production.check_icc_key_wrapping().unwrap_err().to_string();
    assert!(
        e.contains("key imk.09.ac is extractable (CKA_EXTRACTABLE true)"),
        "{e}"
    );
    assert!(e.contains("station-extractable"), "{e}");
}

#[test]
fn a_production_store_refuses_a_token_whose_station_key_is_readable() {
    let production = production(&tokens().readable);
    let e = production.check_icc_key_wrapping().unwrap_err().to_string();
    assert!(
        e.contains("key cvk.09 is readable (CKA_SENSITIVE false)"),
        "{e}"
    );
    assert!(e.contains("station-readable"), "{e}");
}
