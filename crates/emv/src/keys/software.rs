//! The software key store: issuer keys in a TOML key file readable by its owner only
//! (layout in the [`super`] module documentation), and the development key file.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Deserializer};
use zeroize::{Zeroize, Zeroizing};

use crate::card_data::{Pan, YearMonth};
use crate::data::cryptogram::{application_cryptogram, visa_cvn10, CardCryptogram, Cvn10Input};
use crate::data::cvv::visa_cvv;
use crate::data::derive::{
    icc_master_key, option_a_icc_master_key, MasterKeyDerivation, Psn, ServiceCode,
};
use crate::data::profile::CryptogramVersion;
use crate::gp::diversify::Diversification;
use crate::gp::scp::Protocol;
use crate::oda::{rsa_raw, ssad_block, CaPublicKey, RsaPublicKey};

use super::{
    parse_diversification, IccKeys, IccRsaKey, KeyIndex, KeyStore, KeyStoreError, OdaIssuerKey,
    SecretBytes, TransportKey, TransportKeySet,
};

/// Hex in the key file, decoded straight into a zeroizing buffer.
struct HexField(Zeroizing<String>);

impl<'de> Deserialize<'de> for HexField {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Ok(HexField(Zeroizing::new(String::deserialize(d)?)))
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    #[serde(default)]
    imk: BTreeMap<String, RawImk>,
    #[serde(default)]
    cvk: BTreeMap<String, RawCvk>,
    #[serde(default)]
    pvk: BTreeMap<String, HexField>,
    #[serde(default)]
    transport: BTreeMap<String, RawTransport>,
    #[serde(default)]
    oda: BTreeMap<String, RawOda>,
    #[serde(default)]
    ca: BTreeMap<String, BTreeMap<String, RawCa>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCa {
    modulus: String,
    exponent: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawImk {
    ac: HexField,
    smi: HexField,
    smc: HexField,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCvk {
    a: HexField,
    b: HexField,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTransport {
    kmc: HexField,
    diversification: String,
    scp: String,
    i: String,
    kvn: String,
    #[serde(default)]
    isd: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawOda {
    ca_index: String,
    issuer_pk_certificate: String,
    issuer_pk_exponent: String,
    #[serde(default)]
    issuer_pk_remainder: String,
    issuer_modulus: Option<String>,
    issuer_private_exponent: Option<HexField>,
}

/// The issuer RSA private key for SDA signing (modulus public, exponent secret).
struct IssuerPrivateKey {
    modulus: Vec<u8>,
    exponent: SecretBytes,
}

struct Imk {
    ac: SecretBytes,
    smi: SecretBytes,
    smc: SecretBytes,
}

struct Cvk {
    a: SecretBytes,
    b: SecretBytes,
}

/// Issuer keys loaded from a TOML file that only its owner can read.
pub struct SoftwareKeyStore {
    imk: BTreeMap<KeyIndex, Imk>,
    cvk: BTreeMap<KeyIndex, Cvk>,
    transport: BTreeMap<String, TransportKeySet>,
    oda: BTreeMap<KeyIndex, OdaIssuerKey>,
    oda_private: BTreeMap<KeyIndex, IssuerPrivateKey>,
    ca: Vec<CaPublicKey>,
}

impl std::fmt::Debug for SoftwareKeyStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SoftwareKeyStore")
            .field(
                "imk_indexes",
                &self.imk.keys().map(|k| k.to_string()).collect::<Vec<_>>(),
            )
            .field(
                "cvk_indexes",
                &self.cvk.keys().map(|k| k.to_string()).collect::<Vec<_>>(),
            )
            .field("card_products", &self.transport.keys().collect::<Vec<_>>())
            .field(
                "oda_indexes",
                &self.oda.keys().map(|k| k.to_string()).collect::<Vec<_>>(),
            )
            .finish_non_exhaustive()
    }
}

/// Parses one file with the path at hand for error messages.
struct Loader<'a> {
    path: &'a Path,
}

impl Loader<'_> {
    fn err(&self, reason: impl Into<String>) -> KeyStoreError {
        KeyStoreError::File {
            path: self.path.to_path_buf(),
            reason: reason.into(),
        }
    }

    fn index(&self, kind: &str, s: &str) -> Result<KeyIndex, KeyStoreError> {
        KeyIndex::parse(s).ok_or_else(|| {
            self.err(format!(
                "{kind}.{s}: the index must be two hex digits (00-FF)"
            ))
        })
    }

    fn key(
        &self,
        entry: &str,
        h: &HexField,
        lengths: &[usize],
    ) -> Result<SecretBytes, KeyStoreError> {
        let bytes = Zeroizing::new(
            hex::decode(h.0.as_str()).map_err(|_| self.err(format!("{entry}: not hex")))?,
        );
        if !lengths.contains(&bytes.len()) {
            return Err(self.err(format!(
                "{entry}: {} bytes, expected {}",
                bytes.len(),
                lengths
                    .iter()
                    .map(|l| l.to_string())
                    .collect::<Vec<_>>()
                    .join(" or ")
            )));
        }
        Ok(SecretBytes(bytes))
    }

    fn byte(&self, entry: &str, s: &str) -> Result<u8, KeyStoreError> {
        match hex::decode(s).as_deref() {
            Ok([b]) => Ok(*b),
            _ => Err(self.err(format!("{entry}: one byte as two hex digits"))),
        }
    }

    fn public_hex(&self, entry: &str, s: &str) -> Result<Vec<u8>, KeyStoreError> {
        hex::decode(s).map_err(|_| self.err(format!("{entry}: not hex")))
    }

    fn load(&self, text: &str) -> Result<SoftwareKeyStore, KeyStoreError> {
        // The parser's message may quote the offending line, which can hold a key:
        // report only where it is.
        let raw: RawFile = toml::from_str(text).map_err(|e| {
            let line = e
                .span()
                .map(|s| text[..s.start.min(text.len())].matches('\n').count() + 1)
                .map(|l| format!(" at line {l}"))
                .unwrap_or_default();
            self.err(format!("not a valid key file{line}"))
        })?;
        let mut ks = SoftwareKeyStore {
            imk: BTreeMap::new(),
            cvk: BTreeMap::new(),
            transport: BTreeMap::new(),
            oda: BTreeMap::new(),
            oda_private: BTreeMap::new(),
            ca: Vec::new(),
        };
        for (idx, e) in &raw.imk {
            let k = self.index("imk", idx)?;
            let imk = Imk {
                ac: self.key(&format!("imk.{idx}.ac"), &e.ac, &[16])?,
                smi: self.key(&format!("imk.{idx}.smi"), &e.smi, &[16])?,
                smc: self.key(&format!("imk.{idx}.smc"), &e.smc, &[16])?,
            };
            ks.imk.insert(k, imk);
        }
        for (idx, e) in &raw.cvk {
            let k = self.index("cvk", idx)?;
            let cvk = Cvk {
                a: self.key(&format!("cvk.{idx}.a"), &e.a, &[8])?,
                b: self.key(&format!("cvk.{idx}.b"), &e.b, &[8])?,
            };
            ks.cvk.insert(k, cvk);
        }
        for (idx, e) in &raw.pvk {
            // Still checked so a typo is caught, then dropped: orders carry the PVV and
            // no operation here takes a clear PIN.
            self.index("pvk", idx)?;
            drop(self.key(&format!("pvk.{idx}"), e, &[16])?);
        }
        for (product, e) in &raw.transport {
            let entry = format!("transport.{product}");
            let i = self.byte(&format!("{entry}.i"), &e.i)?;
            let protocol = match e.scp.as_str() {
                "scp02" => Protocol::Scp02 { i },
                "scp03" => Protocol::Scp03 { i },
                _ => return Err(self.err(format!("{entry}.scp: \"scp02\" or \"scp03\""))),
            };
            let diversification = parse_diversification(&e.diversification).ok_or_else(|| {
                self.err(format!(
                    "{entry}.diversification: one of none, emv-cpg202, visa2"
                ))
            })?;
            // CPG 2.02 and VISA2 are 3DES derivations: their KMC is a 16-byte key.
            let lengths: &[usize] = match (protocol, diversification) {
                (_, Diversification::EmvCpg202 | Diversification::Visa2) => &[16],
                (Protocol::Scp02 { .. }, Diversification::None) => &[16],
                (Protocol::Scp03 { .. }, Diversification::None) => &[16, 24, 32],
            };
            let set = TransportKeySet {
                kmc: TransportKey::Clear(self.key(&format!("{entry}.kmc"), &e.kmc, lengths)?),
                diversification,
                protocol,
                kvn: self.byte(&format!("{entry}.kvn"), &e.kvn)?,
                isd: match &e.isd {
                    None => None,
                    Some(s) => match self.public_hex(&format!("{entry}.isd"), s)? {
                        // ISO 7816-4: an AID is 5 to 16 bytes.
                        aid if (5..=16).contains(&aid.len()) => Some(aid),
                        _ => return Err(self.err(format!("{entry}.isd: an AID of 5 to 16 bytes"))),
                    },
                },
            };
            ks.transport.insert(product.clone(), set);
        }
        for (idx, e) in &raw.oda {
            let k = self.index("oda", idx)?;
            let entry = format!("oda.{idx}");
            ks.oda.insert(
                k,
                OdaIssuerKey {
                    ca_index: self.byte(&format!("{entry}.ca_index"), &e.ca_index)?,
                    issuer_pk_certificate: self.public_hex(
                        &format!("{entry}.issuer_pk_certificate"),
                        &e.issuer_pk_certificate,
                    )?,
                    issuer_pk_exponent: self.public_hex(
                        &format!("{entry}.issuer_pk_exponent"),
                        &e.issuer_pk_exponent,
                    )?,
                    issuer_pk_remainder: self.public_hex(
                        &format!("{entry}.issuer_pk_remainder"),
                        &e.issuer_pk_remainder,
                    )?,
                },
            );
            match (&e.issuer_modulus, &e.issuer_private_exponent) {
                (None, None) => {}
                (Some(m), Some(d)) => {
                    let modulus = self.public_hex(&format!("{entry}.issuer_modulus"), m)?;
                    let n = modulus.len();
                    if !(64..=248).contains(&n) {
                        return Err(self.err(format!(
                            "{entry}.issuer_modulus: {n} bytes, EMV issuer keys are 64 to 248"
                        )));
                    }
                    let exponent =
                        self.key(&format!("{entry}.issuer_private_exponent"), d, &[n])?;
                    ks.oda_private
                        .insert(k, IssuerPrivateKey { modulus, exponent });
                }
                _ => {
                    return Err(self.err(format!(
                        "{entry}: issuer_modulus and issuer_private_exponent go together"
                    )))
                }
            }
        }
        for (rid_hex, keys) in &raw.ca {
            let rid: [u8; 5] = hex::decode(rid_hex)
                .ok()
                .and_then(|r| r.try_into().ok())
                .ok_or_else(|| self.err(format!("ca.{rid_hex}: the RID must be 5 bytes in hex")))?;
            for (idx, e) in keys {
                let entry = format!("ca.{rid_hex}.{idx}");
                let modulus = self.public_hex(&format!("{entry}.modulus"), &e.modulus)?;
                if !(64..=248).contains(&modulus.len()) {
                    return Err(self.err(format!(
                        "{entry}.modulus: {} bytes, EMV CA keys are 64 to 248",
                        modulus.len()
                    )));
                }
                let exponent = self.public_hex(&format!("{entry}.exponent"), &e.exponent)?;
                if ![vec![0x03], vec![0x01, 0x00, 0x01]].contains(&exponent) {
                    return Err(self.err(format!("{entry}.exponent: EMV allows 03 or 010001")));
                }
                ks.ca.push(CaPublicKey {
                    rid,
                    index: self.byte(&format!("{entry} (index)"), idx)?,
                    key: RsaPublicKey { modulus, exponent },
                });
            }
        }
        Ok(ks)
    }
}

impl SoftwareKeyStore {
    /// Loads a key file, refusing it when group or others may read it (Unix).
    pub fn load(path: &Path) -> Result<Self, KeyStoreError> {
        let loader = Loader { path };
        let meta = std::fs::metadata(path).map_err(|e| loader.err(e.to_string()))?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = meta.permissions().mode() & 0o777;
            if mode & 0o077 != 0 {
                return Err(KeyStoreError::Permissions {
                    path: path.to_path_buf(),
                    mode,
                });
            }
        }
        #[cfg(not(unix))]
        let _ = meta;
        let mut text = std::fs::read_to_string(path).map_err(|e| loader.err(e.to_string()))?;
        let result = loader.load(&text);
        text.zeroize();
        result
    }

    fn issuer_private(&self, index: KeyIndex) -> Result<&IssuerPrivateKey, KeyStoreError> {
        self.oda_private.get(&index).ok_or(KeyStoreError::Missing {
            kind: "oda issuer private",
            index: index.to_string(),
        })
    }

    fn imk(&self, index: KeyIndex) -> Result<&Imk, KeyStoreError> {
        self.imk.get(&index).ok_or(KeyStoreError::Missing {
            kind: "imk",
            index: index.to_string(),
        })
    }
}

fn crypto(e: impl std::fmt::Display) -> KeyStoreError {
    KeyStoreError::Crypto(e.to_string())
}

impl KeyStore for SoftwareKeyStore {
    fn derive_icc_master_keys(
        &self,
        index: KeyIndex,
        pan: &Pan,
        psn: Psn,
    ) -> Result<IccKeys, KeyStoreError> {
        let imk = self.imk(index)?;
        let derive = |k: &SecretBytes| {
            option_a_icc_master_key(k.expose(), pan, psn)
                .map(SecretBytes)
                .map_err(crypto)
        };
        Ok(IccKeys {
            mk_ac: derive(&imk.ac)?,
            mk_smi: derive(&imk.smi)?,
            mk_smc: derive(&imk.smc)?,
        })
    }

    fn derive_icc_master_keys_by(
        &self,
        method: MasterKeyDerivation,
        index: KeyIndex,
        pan: &Pan,
        psn: Psn,
    ) -> Result<IccKeys, KeyStoreError> {
        let imk = self.imk(index)?;
        let derive = |k: &SecretBytes| {
            icc_master_key(method, k.expose(), pan, psn)
                .map(SecretBytes)
                .map_err(crypto)
        };
        Ok(IccKeys {
            mk_ac: derive(&imk.ac)?,
            mk_smi: derive(&imk.smi)?,
            mk_smc: derive(&imk.smc)?,
        })
    }

    fn cvv(
        &self,
        index: KeyIndex,
        pan: &Pan,
        exp: YearMonth,
        service_code: &ServiceCode,
    ) -> Result<Zeroizing<String>, KeyStoreError> {
        let cvk = self.cvk.get(&index).ok_or(KeyStoreError::Missing {
            kind: "cvk",
            index: index.to_string(),
        })?;
        visa_cvv(cvk.a.expose(), cvk.b.expose(), pan, exp, service_code).map_err(crypto)
    }

    fn verify_arqc(
        &self,
        index: KeyIndex,
        pan: &Pan,
        psn: Psn,
        version: CryptogramVersion,
        data: &[u8],
        arqc: &[u8; 8],
    ) -> Result<bool, KeyStoreError> {
        if version != CryptogramVersion::VisaCvn10 {
            return Err(KeyStoreError::NotSupported(format!(
                "ARQC verification for {}",
                version.name()
            )));
        }
        let input = cvn10_input_from_bytes(data).ok_or_else(|| {
            KeyStoreError::Crypto(format!("CVN 10 data must be 37 bytes, got {}", data.len()))
        })?;
        let imk = self.imk(index)?;
        let mk_ac = option_a_icc_master_key(imk.ac.expose(), pan, psn).map_err(crypto)?;
        let expected = visa_cvn10(&mk_ac, &input).map_err(crypto)?;
        // Not a secret comparison in the timing sense (the ARQC is public), but keep it
        // constant-time by habit.
        Ok(expected.iter().zip(arqc).fold(0u8, |a, (x, y)| a | (x ^ y)) == 0)
    }

    fn verify_application_cryptogram(
        &self,
        index: KeyIndex,
        pan: &Pan,
        psn: Psn,
        c: &CardCryptogram<'_>,
    ) -> Result<bool, KeyStoreError> {
        let imk = self.imk(index)?;
        let method = c.version.algorithm().master_key;
        let mk_ac = icc_master_key(method, imk.ac.expose(), pan, psn).map_err(crypto)?;
        let expected = application_cryptogram(c.version, &mk_ac, c.tx, c.iad).map_err(crypto)?;
        Ok(expected
            .iter()
            .zip(&c.ac)
            .fold(0u8, |a, (x, y)| a | (x ^ y))
            == 0)
    }

    fn ca_public_keys(&self) -> Vec<CaPublicKey> {
        self.ca.clone()
    }

    fn transport_keys(&self, card_product_id: &str) -> Result<TransportKeySet, KeyStoreError> {
        self.transport
            .get(card_product_id)
            .cloned()
            .ok_or_else(|| KeyStoreError::Missing {
                kind: "transport",
                index: card_product_id.to_string(),
            })
    }

    fn oda_issuer_key(&self, index: KeyIndex) -> Result<OdaIssuerKey, KeyStoreError> {
        self.oda.get(&index).cloned().ok_or(KeyStoreError::Missing {
            kind: "oda",
            index: index.to_string(),
        })
    }

    fn generate_icc_key(
        &self,
        index: KeyIndex,
        bits: u16,
        pan: &Pan,
        exp: YearMonth,
        static_data: &[u8],
    ) -> Result<IccRsaKey, KeyStoreError> {
        let key = self.issuer_private(index)?;
        super::certified_icc_key(key.modulus.len(), bits, pan, exp, static_data, &|block| {
            rsa_raw(&key.modulus, key.exponent.expose(), block).map_err(crypto)
        })
    }

    fn sign_static_data(
        &self,
        index: KeyIndex,
        dac: [u8; 2],
        static_data: &[u8],
    ) -> Result<Vec<u8>, KeyStoreError> {
        let key = self.issuer_private(index)?;
        let block = ssad_block(key.modulus.len(), dac, static_data).map_err(crypto)?;
        rsa_raw(&key.modulus, key.exponent.expose(), &block).map_err(crypto)
    }
}

/// Splits the 37 bytes CVN 10 MACs back into their fields (the inverse of
/// [`Cvn10Input::to_bytes`]).
fn cvn10_input_from_bytes(d: &[u8]) -> Option<Cvn10Input> {
    if d.len() != 37 {
        return None;
    }
    let a = |r: std::ops::Range<usize>| d[r].to_vec();
    Some(Cvn10Input {
        amount: a(0..6).try_into().ok()?,
        amount_other: a(6..12).try_into().ok()?,
        terminal_country: a(12..14).try_into().ok()?,
        tvr: a(14..19).try_into().ok()?,
        currency: a(19..21).try_into().ok()?,
        date: a(21..24).try_into().ok()?,
        tx_type: d[24],
        unpredictable_number: a(25..29).try_into().ok()?,
        aip: a(29..31).try_into().ok()?,
        atc: a(31..33).try_into().ok()?,
        cvr: a(33..37).try_into().ok()?,
    })
}

/// The development keys, parsed (for importing them into a development token).
pub(crate) fn development_store() -> Result<SoftwareKeyStore, KeyStoreError> {
    Loader {
        path: Path::new("<development keys>"),
    }
    .load(DEV_KEYS)
}

impl SoftwareKeyStore {
    /// Every key as the PKCS#11 store labels it (see `pkcs11`), for an import.
    pub(crate) fn import_keys(&self) -> Vec<super::pkcs11::ImportKey> {
        use super::pkcs11::{labels, ImportKey};
        use cryptoki::object::KeyType;
        let mut out = Vec::new();
        for (idx, imk) in &self.imk {
            for (part, k) in [("ac", &imk.ac), ("smi", &imk.smi), ("smc", &imk.smc)] {
                out.push(ImportKey {
                    label: labels::imk(*idx, part),
                    key_type: KeyType::DES2,
                    value: k.clone(),
                    derive: true,
                    encrypt: false,
                    wrap: false,
                });
            }
        }
        for (idx, cvk) in &self.cvk {
            let pair = |x: &SecretBytes, y: &SecretBytes| {
                let mut v = Zeroizing::new(Vec::with_capacity(16));
                v.extend_from_slice(x.expose());
                v.extend_from_slice(y.expose());
                SecretBytes::new(v)
            };
            out.push(ImportKey {
                label: labels::cvk(*idx),
                key_type: KeyType::DES2,
                value: pair(&cvk.a, &cvk.b),
                derive: false,
                encrypt: true,
                wrap: false,
            });
            // Single DES under A, as 3DES with A‖A: PKCS#11 has no Visa CVV mechanism.
            out.push(ImportKey {
                label: labels::cvk_a(*idx),
                key_type: KeyType::DES2,
                value: pair(&cvk.a, &cvk.a),
                derive: false,
                encrypt: true,
                wrap: false,
            });
        }
        for (product, t) in &self.transport {
            if let TransportKey::Clear(k) = &t.kmc {
                let aes = matches!(t.protocol, Protocol::Scp03 { .. })
                    && t.diversification == Diversification::None;
                out.push(ImportKey {
                    label: labels::transport_kmc(product),
                    key_type: if aes { KeyType::AES } else { KeyType::DES2 },
                    value: k.clone(),
                    derive: true,
                    // Undiversified, the KMC is the card key and encrypts (or MACs) itself.
                    encrypt: t.diversification == Diversification::None,
                    wrap: t.diversification == Diversification::None,
                });
            }
        }
        out
    }

    /// Each issuer ODA key with its private part, for an import: the private key as an
    /// RSA object `oda.NN.issuer`, the public data as `CKO_DATA` `oda.NN` (TOML).
    pub(crate) fn oda_imports(&self) -> Vec<super::pkcs11::ImportRsa> {
        self.oda_private
            .iter()
            .filter_map(|(idx, private)| {
                let public = self.oda.get(idx)?;
                Some(super::pkcs11::ImportRsa {
                    index: *idx,
                    modulus: private.modulus.clone(),
                    public_exponent: public.issuer_pk_exponent.clone(),
                    private_exponent: private.exponent.clone(),
                    params: format!(
                        "ca_index = \"{:02X}\"\nissuer_pk_certificate = \"{}\"\n\
                         issuer_pk_exponent = \"{}\"\nissuer_pk_remainder = \"{}\"\n\
                         issuer_modulus = \"{}\"\n",
                        public.ca_index,
                        hex::encode_upper(&public.issuer_pk_certificate),
                        hex::encode_upper(&public.issuer_pk_exponent),
                        hex::encode_upper(&public.issuer_pk_remainder),
                        hex::encode_upper(&private.modulus),
                    ),
                })
            })
            .collect()
    }

    /// The CA public keys as `CKO_DATA` objects: label `ca.RID.IDX`, TOML text.
    pub(crate) fn ca_imports(&self) -> Vec<(String, String)> {
        self.ca
            .iter()
            .map(|c| {
                (
                    format!("ca.{}.{:02X}", hex::encode_upper(c.rid), c.index),
                    format!(
                        "modulus = \"{}\"\nexponent = \"{}\"\n",
                        hex::encode_upper(&c.key.modulus),
                        hex::encode_upper(&c.key.exponent)
                    ),
                )
            })
            .collect()
    }

    /// Each card product's secure channel parameters in the token's `CKO_DATA` format.
    pub(crate) fn transport_params(&self) -> Vec<(String, String)> {
        self.transport
            .iter()
            .map(|(product, t)| {
                let (scp, i) = match t.protocol {
                    Protocol::Scp02 { i } => ("scp02", i),
                    Protocol::Scp03 { i } => ("scp03", i),
                };
                let div = match t.diversification {
                    Diversification::None => "none",
                    Diversification::EmvCpg202 => "emv-cpg202",
                    Diversification::Visa2 => "visa2",
                };
                let mut text = format!(
                    "diversification = \"{div}\"\nscp = \"{scp}\"\ni = \"{i:02X}\"\nkvn = \"{:02X}\"\n",
                    t.kvn
                );
                if let Some(isd) = &t.isd {
                    text.push_str(&format!("isd = \"{}\"\n", hex::encode_upper(isd)));
                }
                (product.clone(), text)
            })
            .collect()
    }

    /// Every key by its PKCS#11 label, with type and check value — never a value.
    pub fn list(&self) -> Vec<super::KeyLabel> {
        self.import_keys()
            .iter()
            .map(|k| super::KeyLabel {
                label: k.label.clone(),
                kind: if k.key_type == cryptoki::object::KeyType::AES {
                    "AES".into()
                } else {
                    "DES2".into()
                },
                kcv: if k.key_type == cryptoki::object::KeyType::AES {
                    crate::crypto::aes_kcv(k.value.expose())
                } else {
                    crate::crypto::tdes_kcv(k.value.expose())
                }
                .map(hex::encode_upper)
                .unwrap_or_default(),
            })
            .collect()
    }

    /// Whether any key here is one of the public development keys (by check value).
    pub fn holds_development_keys(&self) -> bool {
        let dev = super::development_kcvs();
        self.import_keys().iter().any(|k| {
            crate::crypto::tdes_kcv(k.value.expose())
                .map(|kcv| dev.contains(&kcv))
                .unwrap_or(false)
        })
    }
}

/// Name of the development key file [`write_dev_keystore`] writes.
pub const DEV_KEY_FILE: &str = "dev-keys.toml";

/// The development key file. Every value is a public test key (the IMK and CVKs are
/// the ones of the published vectors, the KMC is GlobalPlatform's well-known
/// 40..4F test key), so cards made with it are worthless outside a lab.
const DEV_KEYS: &str = r#"# station-agent DEVELOPMENT key file. Public test keys only: NEVER use in production.
# Cards personalized with these keys are test cards.

# Issuer master keys for derivationKeyIndex 01 (AC = the Option A test vector IMK) and 02.
[imk.01]
ac = "0123456789ABCDEFFEDCBA9876543210"
smi = "1123456789ABCDEFFEDCBA9876543211"
smc = "2123456789ABCDEFFEDCBA9876543212"

[imk.02]
ac = "02020202020202020202020202020202"
smi = "12121212121212121212121212121212"
smc = "22222222222222222222222222222222"

# CVK A/B for cvKeyIndex 01 (the classic Visa CVV example keys).
[cvk.01]
a = "0123456789ABCDEF"
b = "FEDCBA9876543210"

[pvk]
01 = "0123456789ABCDEFFEDCBA9876543210"

# GlobalPlatform transport keys per cardProductId: KMC 40..4F, EMV CPG 2.02
# diversification, SCP02 i=55, key version 20.
[transport.DEV-VISA]
kmc = "404142434445464748494A4B4C4D4E4F"
diversification = "emv-cpg202"
scp = "scp02"
i = "55"
kvn = "20"

[transport.DEV-MC]
kmc = "404142434445464748494A4B4C4D4E4F"
diversification = "emv-cpg202"
scp = "scp02"
i = "55"
kvn = "20"
"#;

/// Writes the development key file into `dir` with mode 0600 and returns its path.
/// An existing file is replaced.
pub fn write_dev_keystore(dir: &Path) -> Result<PathBuf, KeyStoreError> {
    use std::io::Write;
    let path = dir.join(DEV_KEY_FILE);
    let err = |e: std::io::Error| KeyStoreError::File {
        path: path.clone(),
        reason: e.to_string(),
    };
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let mut f = opts.open(&path).map_err(err)?;
    // A pre-existing file keeps its old mode on open: tighten it explicitly.
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        f.set_permissions(std::fs::Permissions::from_mode(0o600))
            .map_err(err)?;
    }
    f.write_all(DEV_KEYS.as_bytes()).map_err(err)?;
    f.sync_all().map_err(err)?;
    Ok(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dev() -> (tempfile::TempDir, SoftwareKeyStore) {
        let dir = tempfile::tempdir().unwrap();
        let path = write_dev_keystore(dir.path()).unwrap();
        let ks = SoftwareKeyStore::load(&path).unwrap();
        (dir, ks)
    }

    #[test]
    fn dev_key_file_is_owner_only_and_loads() {
        let (dir, ks) = dev();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(dir.path().join(DEV_KEY_FILE))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        let t = ks.transport_keys("DEV-VISA").unwrap();
        assert_eq!(t.protocol, Protocol::Scp02 { i: 0x55 });
        assert_eq!(t.kvn, 0x20);
        assert_eq!(t.diversification, Diversification::EmvCpg202);
        assert!(ks.transport_keys("DEV-MC").is_ok());
    }

    #[cfg(unix)]
    #[test]
    fn a_group_readable_key_file_is_refused_naming_the_file() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = write_dev_keystore(dir.path()).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o640)).unwrap();
        let e = SoftwareKeyStore::load(&path).unwrap_err();
        assert!(
            matches!(e, KeyStoreError::Permissions { mode: 0o640, .. }),
            "{e}"
        );
        assert!(e.to_string().contains(DEV_KEY_FILE), "{e}");
    }

    #[test]
    fn icc_keys_of_index_01_match_the_option_a_vector() {
        let (_d, ks) = dev();
        let keys = ks
            .derive_icc_master_keys(
                KeyIndex(1),
                &Pan::new("4761739001010010").unwrap(),
                Psn::new("01").unwrap(),
            )
            .unwrap();
        assert_eq!(
            hex::encode_upper(keys.mk_ac.expose()),
            "2F02C8B0E9CBC7B05B5167F7A1CDE6E5"
        );
        assert_eq!(
            hex::encode_upper(&keys.check_values().unwrap()[..3]),
            "F23EFA"
        );
        assert_eq!(keys.concatenated().len(), 48);
    }

    #[test]
    fn cvv_of_index_01_matches_the_visa_example() {
        let (_d, ks) = dev();
        let cvv = ks
            .cvv(
                KeyIndex(1),
                &Pan::new("4123456789012345").unwrap(),
                crate::data::derive::parse_date("8701", "exp").unwrap(),
                &ServiceCode::new("101").unwrap(),
            )
            .unwrap();
        assert_eq!(cvv.as_str(), "561");
    }

    #[test]
    fn arqc_verifies_with_the_cvn10_vector_and_fails_with_another_imk() {
        let (_d, ks) = dev();
        // vectors/emv-gp-vectors.json visa_cvn10_arqc, in MAC order.
        let data = hex::decode(
            [
                "000000001000",
                "000000000000",
                "0840",
                "0000000000",
                "0840",
                "261122",
                "00",
                "12345678",
                "1800",
                "0001",
                "03A00000",
            ]
            .concat(),
        )
        .unwrap();
        let arqc: [u8; 8] = hex::decode("283462ACC9C2B3FE").unwrap().try_into().unwrap();
        let pan = Pan::new("4761739001010010").unwrap();
        let psn = Psn::new("01").unwrap();
        assert!(ks
            .verify_arqc(
                KeyIndex(1),
                &pan,
                psn,
                CryptogramVersion::VisaCvn10,
                &data,
                &arqc
            )
            .unwrap());
        assert!(!ks
            .verify_arqc(
                KeyIndex(2),
                &pan,
                psn,
                CryptogramVersion::VisaCvn10,
                &data,
                &arqc
            )
            .unwrap());
    }

    /// The pyemv vectors made under the development IMK 01
    /// (tests/fixtures/cryptograms), one per session-key version.
    fn imk01_vectors() -> Vec<(CryptogramVersion, serde_json::Value)> {
        let all: serde_json::Value = serde_json::from_str(include_str!(
            "../../../../tests/fixtures/cryptograms/cryptogram-vectors.json"
        ))
        .unwrap();
        [
            (CryptogramVersion::VisaCvn18, "visa_cvn18"),
            (CryptogramVersion::MchipCvn16, "mchip_cvn16"),
            (CryptogramVersion::MchipCvn17, "mchip_cvn17"),
        ]
        .into_iter()
        .flat_map(|(v, key)| {
            all[key]
                .as_array()
                .unwrap()
                .iter()
                .filter(|x| x["imk_ac"] == "0123456789ABCDEFFEDCBA9876543210")
                .map(move |x| (v, x.clone()))
                .collect::<Vec<_>>()
        })
        .collect()
    }

    #[test]
    fn session_key_cryptograms_from_pyemv_verify_under_imk_01_and_not_imk_02() {
        let (_d, ks) = dev();
        let vectors = imk01_vectors();
        assert_eq!(
            vectors.len(),
            4,
            "CVN 18 twice (one with a 19-digit PAN), CVN 16, CVN 17"
        );
        for (version, v) in vectors {
            let h = |k: &str| hex::decode(v[k].as_str().unwrap()).unwrap();
            let t = |k: &str| hex::decode(v["tx"][k].as_str().unwrap()).unwrap();
            let tx = crate::data::cryptogram::TransactionData::from_tags(
                |tag| Some(t(&format!("{tag:X}"))),
                t("82").try_into().unwrap(),
                t("9F36").try_into().unwrap(),
            );
            let pan = Pan::new(v["pan"].as_str().unwrap()).unwrap();
            let psn = Psn::new(v["psn"].as_str().unwrap()).unwrap();
            let ac: [u8; 8] = h("ac").try_into().unwrap();
            let check = |i| {
                let iad = h("iad");
                let c = CardCryptogram {
                    version,
                    tx: &tx,
                    iad: &iad,
                    ac,
                };
                ks.verify_application_cryptogram(KeyIndex(i), &pan, psn, &c)
                    .unwrap()
            };
            assert!(check(1), "{} under IMK 01", version.name());
            assert!(!check(2), "{} under IMK 02", version.name());
        }
    }

    #[test]
    fn missing_keys_are_named_by_kind_and_index() {
        let (_d, ks) = dev();
        let e = ks
            .derive_icc_master_keys(
                KeyIndex(9),
                &Pan::new("4761739001010010").unwrap(),
                Psn::new("00").unwrap(),
            )
            .unwrap_err();
        assert_eq!(e.to_string(), "no imk key with index 09 in the key store");
        assert!(matches!(
            ks.oda_issuer_key(KeyIndex(1)),
            Err(KeyStoreError::Missing { kind: "oda", .. })
        ));
        assert!(matches!(
            ks.sign_static_data(KeyIndex(1), [0xDA, 0xC1], b"x"),
            Err(KeyStoreError::Missing { .. })
        ));
    }

    #[test]
    fn a_short_key_is_refused_naming_the_entry_not_the_value() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("k.toml");
        std::fs::write(
            &path,
            "[imk.01]\nac = \"0011\"\nsmi = \"0011\"\nsmc = \"0011\"\n",
        )
        .unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        }
        let e = SoftwareKeyStore::load(&path).unwrap_err().to_string();
        assert!(e.contains("imk.01.ac: 2 bytes, expected 16"), "{e}");
        assert!(!e.contains("0011"), "{e}");
    }

    /// The dev key file with `extra` appended, loaded.
    fn dev_plus(extra: &str) -> Result<SoftwareKeyStore, KeyStoreError> {
        let dir = tempfile::tempdir().unwrap();
        let path = write_dev_keystore(dir.path()).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        std::fs::write(&path, format!("{text}\n{extra}")).unwrap();
        SoftwareKeyStore::load(&path)
    }

    #[test]
    fn ca_public_keys_are_read_by_rid_and_index() {
        let modulus = "C1".repeat(144);
        let ks = dev_plus(&format!(
            "[ca.A000000004.EF]\nmodulus = \"{modulus}\"\nexponent = \"03\"\n"
        ))
        .unwrap();
        let ca = ks.ca_public_keys();
        assert_eq!(ca.len(), 1);
        assert_eq!((ca[0].rid, ca[0].index), ([0xA0, 0, 0, 0, 0x04], 0xEF));
        assert_eq!(ca[0].key.modulus.len(), 144);
    }

    #[test]
    fn a_ca_key_with_a_short_rid_is_refused_naming_the_entry() {
        let e = dev_plus("[ca.A0000000.92]\nmodulus = \"00\"\nexponent = \"03\"\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("ca.A0000000: the RID must be 5 bytes"), "{e}");
    }

    #[test]
    fn an_issuer_private_exponent_without_its_modulus_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = write_dev_keystore(dir.path()).unwrap();
        let mut text = std::fs::read_to_string(&path).unwrap();
        text.push_str(
            "\n[oda.01]\nca_index = \"92\"\nissuer_pk_certificate = \"00\"\n\
             issuer_pk_exponent = \"03\"\nissuer_private_exponent = \"0102\"\n",
        );
        std::fs::write(&path, text).unwrap();
        let e = SoftwareKeyStore::load(&path).unwrap_err().to_string();
        assert!(
            e.contains("oda.01: issuer_modulus and issuer_private_exponent go together"),
            "{e}"
        );
        assert!(!e.contains("0102"), "{e}");
    }

    #[test]
    fn debug_shows_indexes_not_keys() {
        let (_d, ks) = dev();
        let s = format!("{ks:?}");
        assert!(s.contains("imk_indexes: [\"01\", \"02\"]"), "{s}");
        assert!(!s.contains("0123456789"), "{s}");
        let keys = ks
            .derive_icc_master_keys(
                KeyIndex(1),
                &Pan::new("4761739001010010").unwrap(),
                Psn::new("01").unwrap(),
            )
            .unwrap();
        assert_eq!(format!("{keys:?}"), "IccKeys(redacted)");
        assert_eq!(
            format!("{:?}", keys.mk_ac),
            "SecretBytes(16 bytes, redacted)"
        );
    }
}
