//! Shared fixtures for the EMV tests: the development key store, a sample order and a
//! fake card that answers a terminal from prepared DGIs.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;

use async_trait::async_trait;
use openssl::rsa::Rsa;
use station_agent::emv::cryptogram::{visa_cvn10, Cvn10Input};
use station_agent::emv::derive::Pan;
use station_agent::emv::keystore::{write_dev_keystore, KeyIndex, SoftwareKeyStore};
use station_agent::emv::oda::{
    issuer_certificate, issuer_identifier, sign_dynamic_data, CaPublicKey, IccPrivateCrt,
    RsaPublicKey,
};
use station_agent::emv::prep::{is_record_dgi, KeyIndexes, PrepInput, PreparedCard};
use station_agent::emv::profile::{Profile, ProfileSet};
use station_agent::emv::tlv::{self, encode, parse_dol};
use station_hal::{ApduTransport, TransportError};
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

/// A personalized card as a terminal sees it, built from prepared DGIs the way an
/// applet would store them: FCI from 9102, GPO response from 9104, records from the
/// record DGIs, MK-AC from 8000, IAD template from whichever DGI holds 9F10. It
/// computes Visa CVN 10 ARQCs under the MK-AC it was given.
pub struct FakeCard {
    aid: Vec<u8>,
    fci_a5: Vec<u8>,
    gpo: Vec<u8>,
    records: BTreeMap<(u8, u8), Vec<u8>>,
    mk_ac: Vec<u8>,
    iad: Vec<u8>,
    ptc: u8,
    atc: u16,
    /// ICC private key parts from DGIs 8201-8205 (qinv, dq, dp, q, p), for DDA.
    crt: Option<[Vec<u8>; 5]>,
    selected: bool,
    /// Commands received, in order.
    pub sent: Vec<Vec<u8>>,
}

impl FakeCard {
    pub fn from_prepared(p: &PreparedCard) -> Self {
        let dgi = |id: u16| p.dgis.iter().find(|d| d.id == id).map(|d| d.data.clone());
        let mut records = BTreeMap::new();
        for d in p.dgis.iter().filter(|d| is_record_dgi(d.id)) {
            let [sfi, rec] = d.id.to_be_bytes();
            records.insert((sfi, rec), d.data.clone());
        }
        let iad = p
            .dgis
            .iter()
            .filter(|d| !is_record_dgi(d.id) && d.id != 0x8000)
            .find_map(|d| tlv::find(&d.data, 0x9F10).ok().flatten())
            .expect("a DGI with the IAD template");
        let keys = dgi(0x8000).expect("DGI 8000");
        FakeCard {
            aid: p.aid.clone(),
            fci_a5: dgi(0x9102).expect("DGI 9102"),
            gpo: encode(0x77, &dgi(0x9104).expect("DGI 9104")),
            records,
            mk_ac: keys[..16].to_vec(),
            iad,
            ptc: dgi(0x9010).expect("DGI 9010")[0],
            atc: 0,
            crt: (0x8201..=0x8205)
                .map(dgi)
                .collect::<Option<Vec<_>>>()
                .map(|v| v.try_into().unwrap()),
            selected: false,
            sent: Vec::new(),
        }
    }

    fn answer(&mut self, c: &[u8]) -> Vec<u8> {
        let ok = |mut d: Vec<u8>| {
            d.extend_from_slice(&[0x90, 0x00]);
            d
        };
        match (c[0], c[1]) {
            (0x00, 0xA4) => {
                let aid = &c[5..5 + c[4] as usize];
                if aid != self.aid.as_slice() {
                    return vec![0x6A, 0x82];
                }
                self.selected = true;
                let mut body = encode(0x84, &self.aid);
                body.extend(encode(0xA5, &self.fci_a5));
                ok(encode(0x6F, &body))
            }
            _ if !self.selected => vec![0x69, 0x85],
            (0x80, 0xA8) => ok(self.gpo.clone()),
            (0x00, 0xB2) => match self.records.get(&(c[3] >> 3, c[2])) {
                Some(r) => ok(r.clone()),
                None => vec![0x6A, 0x83],
            },
            (0x80, 0xCA) => match (c[2], c[3]) {
                (0x9F, 0x17) => ok(encode(0x9F17, &[self.ptc])),
                (0x9F, 0x36) => ok(encode(0x9F36, &self.atc.to_be_bytes())),
                _ => vec![0x6A, 0x88],
            },
            (0x80, 0xAE) => self.generate_ac(&c[5..5 + c[4] as usize]),
            (0x00, 0x88) => match &self.crt {
                Some([qinv, dq, dp, q, p]) => {
                    let key = IccPrivateCrt { p, q, dp, dq, qinv };
                    let n_ic = p.len() + q.len();
                    let dynamic_number = [0x00, self.atc as u8, 0x5A];
                    let sdad =
                        sign_dynamic_data(&key, n_ic, &dynamic_number, &c[5..5 + c[4] as usize])
                            .unwrap();
                    ok(encode(0x80, &sdad))
                }
                None => vec![0x6D, 0x00],
            },
            _ => vec![0x6D, 0x00],
        }
    }

    fn generate_ac(&mut self, cdol_data: &[u8]) -> Vec<u8> {
        self.atc += 1;
        let cdol1 = self
            .records
            .values()
            .find_map(|r| tlv::find(r, 0x8C).ok().flatten())
            .unwrap();
        let mut fields = BTreeMap::new();
        let mut pos = 0;
        for (tag, len) in parse_dol(&cdol1).unwrap() {
            fields.insert(tag, cdol_data[pos..pos + len].to_vec());
            pos += len;
        }
        let aip = tlv::find(&self.gpo, 0x82).unwrap().unwrap();
        let f = |t: u32| fields[&t].clone();
        // CVR: ARQC returned in the first GENERATE AC.
        let cvr = [0x03, 0xA0, 0x00, 0x00];
        let input = Cvn10Input {
            amount: f(0x9F02).try_into().unwrap(),
            amount_other: f(0x9F03).try_into().unwrap(),
            terminal_country: f(0x9F1A).try_into().unwrap(),
            tvr: f(0x95).try_into().unwrap(),
            currency: f(0x5F2A).try_into().unwrap(),
            date: f(0x9A).try_into().unwrap(),
            tx_type: f(0x9C)[0],
            unpredictable_number: f(0x9F37).try_into().unwrap(),
            aip: aip.try_into().unwrap(),
            atc: self.atc.to_be_bytes(),
            cvr,
        };
        let ac = visa_cvn10(&self.mk_ac, &input).unwrap();
        let mut iad = self.iad.clone();
        iad[3..7].copy_from_slice(&cvr);
        let mut body = encode(0x9F27, &[0x80]);
        body.extend(encode(0x9F36, &self.atc.to_be_bytes()));
        body.extend(encode(0x9F26, &ac));
        body.extend(encode(0x9F10, &iad));
        let mut r = encode(0x77, &body);
        r.extend_from_slice(&[0x90, 0x00]);
        r
    }
}

#[async_trait]
impl ApduTransport for FakeCard {
    async fn transmit(&mut self, command: &[u8]) -> Result<Vec<u8>, TransportError> {
        self.sent.push(command.to_vec());
        Ok(self.answer(command))
    }
}
