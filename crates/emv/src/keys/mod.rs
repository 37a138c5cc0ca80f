//! Where issuer keys live and where operations with them happen.
//!
//! [`KeyStore`] is shaped for a PKCS#11 HSM: callers name keys by index or card product
//! and ask for results (derived ICC keys for transport, a CVV, an ARQC check); raw
//! issuer keys never cross the trait. [`SoftwareKeyStore`] is the development and
//! small-branch implementation backed by a TOML key file readable by its owner only
//! ([`software`]).
//!
//! Key file layout (hex values):
//!
//! ```toml
//! [imk.01]            # issuer master keys, derivationKeyIndex 01
//! ac = "…"; smi = "…"; smc = "…"
//! [cvk.01]            # card verification keys A and B, cvKeyIndex 01
//! a = "…"; b = "…"
//! [pvk]
//! 01 = "…"            # accepted for older files; unused (orders carry the PVV)
//! [transport.DEV-VISA]  # GlobalPlatform keys per cardProductId
//! kmc = "…"; diversification = "emv-cpg202"; scp = "scp02"; i = "55"; kvn = "20"
//! isd = "A000000151000000"  # optional: personalize through this ISD (INSTALL [for personalization])
//! [oda.01]            # optional: SDA issuer key, odaKeyIndex 01
//! ca_index = "92"; issuer_pk_certificate = "…"; issuer_pk_exponent = "03"; issuer_pk_remainder = "…"
//! issuer_modulus = "…"; issuer_private_exponent = "…"  # as long as the modulus (left-pad 00)
//! [ca.A000000004.92]  # optional: a CA public key (RID, index) the read-back checks
//! modulus = "…"; exponent = "03"  # SDA/DDA/CDA cards with, as a terminal holds it (public)
//! ```

use std::path::PathBuf;
use std::sync::Arc;

use thiserror::Error;
use zeroize::Zeroizing;

use crate::card_data::{Pan, YearMonth};
use crate::data::cryptogram::{cryptogram_data, CardCryptogram, SessionKey};
use crate::data::derive::{key_check_value, MasterKeyDerivation, Psn, ServiceCode};
use crate::data::profile::CryptogramVersion;
use crate::gp::diversify::Diversification;
use crate::gp::scp::{HsmCardKeys, KeySource, Protocol, StaticKeys};
use crate::oda::CaPublicKey;

mod pkcs11;
mod software;

pub use pkcs11::{
    fresh_softhsm2_dir_for_test, softhsm2_conf_in, softhsm2_dir_for_test, softhsm2_dir_from_env,
    write_dev_token, write_softhsm2_token, DevToken, KeyLabel, KeyUsage, PinSource, Pkcs11Config,
    Pkcs11KeyStore, SOFTHSM2_MODULE,
};
pub use software::{write_dev_keystore, SoftwareKeyStore, DEV_KEY_FILE};

/// Check values of the public development keys (IMKs, CVK pairs, KMCs): a store
/// holding any of them is a development store.
pub fn development_kcvs() -> Vec<[u8; 3]> {
    software::development_store()
        .map(|s| {
            s.import_keys()
                .iter()
                .filter_map(|k| crate::crypto::tdes_kcv(k.value.expose()).ok())
                .collect()
        })
        .unwrap_or_default()
}

/// A key index as orders carry it (`derivationKeyIndex` etc.): two hex digits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct KeyIndex(pub u8);

impl KeyIndex {
    /// Parses two upper-case hex digits (`"01"`, `"0A"`).
    pub fn parse(s: &str) -> Option<Self> {
        if s.len() == 2
            && s.bytes()
                .all(|b| b.is_ascii_digit() || (b'A'..=b'F').contains(&b))
        {
            u8::from_str_radix(s, 16).ok().map(KeyIndex)
        } else {
            None
        }
    }
}

impl std::fmt::Display for KeyIndex {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:02X}", self.0)
    }
}

/// Secret bytes: zeroized on drop, never shown by `Debug`.
#[derive(Clone, PartialEq, Eq)]
pub struct SecretBytes(Zeroizing<Vec<u8>>);

impl SecretBytes {
    /// Wraps bytes that are already secret.
    pub fn new(bytes: Zeroizing<Vec<u8>>) -> Self {
        SecretBytes(bytes)
    }

    /// The bytes, for the cryptographic operation that needs them.
    pub fn expose(&self) -> &[u8] {
        &self.0
    }

    /// Length in bytes.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether there are no bytes.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl std::fmt::Debug for SecretBytes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SecretBytes({} bytes, redacted)", self.0.len())
    }
}

/// The three ICC master keys derived for one card, on their way into DGI 8000.
///
/// The software store returns them in clear inside zeroizing containers because CPS
/// encrypts DGI 8000 with the session DEK it computes itself. The PKCS#11 store keeps
/// them inside ([`IccKeyMaterial::Sealed`]) and wraps them under the DEK when the
/// secure channel is open.
#[derive(Clone, PartialEq, Eq)]
pub struct IccKeys {
    /// ICC master key for application cryptograms.
    pub mk_ac: SecretBytes,
    /// ICC master key for secure messaging integrity.
    pub mk_smi: SecretBytes,
    /// ICC master key for secure messaging confidentiality.
    pub mk_smc: SecretBytes,
}

impl IccKeys {
    /// MK-AC ‖ MK-SMI ‖ MK-SMC, the content of DGI 8000.
    pub fn concatenated(&self) -> Zeroizing<Vec<u8>> {
        let mut v = Zeroizing::new(Vec::with_capacity(48));
        v.extend_from_slice(self.mk_ac.expose());
        v.extend_from_slice(self.mk_smi.expose());
        v.extend_from_slice(self.mk_smc.expose());
        v
    }

    /// KCV(MK-AC) ‖ KCV(MK-SMI) ‖ KCV(MK-SMC), the content of DGI 9000.
    pub fn check_values(&self) -> Result<Vec<u8>, KeyStoreError> {
        let mut v = Vec::with_capacity(9);
        for k in [&self.mk_ac, &self.mk_smi, &self.mk_smc] {
            v.extend_from_slice(
                &key_check_value(k.expose()).map_err(|e| KeyStoreError::Crypto(e.to_string()))?,
            );
        }
        Ok(v)
    }
}

impl std::fmt::Debug for IccKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("IccKeys(redacted)")
    }
}

/// One card's ICC master keys as preparation receives them: in clear (software store),
/// or sealed in the HSM with only their check values outside.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IccKeyMaterial {
    /// The keys themselves, zeroizing; CPS encrypts them under the session DEK.
    Clear(IccKeys),
    /// Keys the HSM derives again and wraps under the session DEK when the secure
    /// channel is open; they never exist on the host.
    Sealed {
        /// What the HSM derives them from.
        keys: crate::dgi::SealedIccKeys,
        /// KCV(MK-AC) ‖ KCV(MK-SMI) ‖ KCV(MK-SMC), computed inside the HSM (DGI 9000).
        check_values: Vec<u8>,
    },
}

/// Raw RSA with the issuer private key over a recovery block.
pub(crate) type RawSign<'a> = dyn Fn(&[u8]) -> Result<Vec<u8>, KeyStoreError> + 'a;

/// Generates an ICC RSA key pair of `bits` on the host (OpenSSL) and certifies it for
/// DDA/CDA: `sign` applies the issuer private key of `n_i` bytes raw to the certificate
/// block (in software, or inside an HSM). The private CRT parts come back zeroizing,
/// each half the modulus long, as cards expect fixed-size fields.
pub(crate) fn certified_icc_key(
    n_i: usize,
    bits: u16,
    pan: &Pan,
    exp: YearMonth,
    static_data: &[u8],
    sign: &RawSign<'_>,
) -> Result<IccRsaKey, KeyStoreError> {
    let crypto = |e: &dyn std::fmt::Display| KeyStoreError::Crypto(e.to_string());
    let pair = openssl::rsa::Rsa::generate(bits as u32).map_err(|e| crypto(&e))?;
    let public = crate::oda::RsaPublicKey {
        modulus: pair.n().to_vec(),
        exponent: pair.e().to_vec(),
    };
    let mmyy = crate::data::derive::bcd(&format!("{:02}{:02}", exp.month, exp.year % 100));
    let serial: [u8; 3] = rand::random();
    let (block, remainder) = crate::oda::icc_certificate_block(
        n_i,
        &public,
        pan,
        [mmyy[0], mmyy[1]],
        serial,
        static_data,
    )
    .map_err(|e| crypto(&e))?;
    let certificate = sign(&block)?;
    let half = public.modulus.len().div_ceil(2) as i32;
    let part = |b: Option<&openssl::bn::BigNumRef>| -> Result<SecretBytes, KeyStoreError> {
        let b = b.ok_or_else(|| KeyStoreError::Crypto("RSA key without CRT parts".into()))?;
        Ok(SecretBytes(Zeroizing::new(
            b.to_vec_padded(half).map_err(|e| crypto(&e))?,
        )))
    };
    Ok(IccRsaKey {
        certificate,
        exponent: public.exponent.clone(),
        remainder,
        modulus_len: public.modulus.len(),
        crt: IccRsaCrt {
            p: part(pair.p())?,
            q: part(pair.q())?,
            dp: part(pair.dmp1())?,
            dq: part(pair.dmq1())?,
            qinv: part(pair.iqmp())?,
        },
    })
}

/// Reads a diversification method as the key file spells it.
fn parse_diversification(s: &str) -> Option<Diversification> {
    Some(match s {
        "none" => Diversification::None,
        "emv-cpg202" => Diversification::EmvCpg202,
        "visa2" => Diversification::Visa2,
        _ => return None,
    })
}

/// The master key for a card product's transport keys.
#[derive(Clone)]
pub enum TransportKey {
    /// Software store: the KMC itself, zeroizing.
    Clear(SecretBytes),
    /// PKCS#11 store: the KMC stays in the HSM, which diversifies it per card and
    /// derives the session keys.
    Hsm(Arc<dyn HsmCardKeys>),
}

impl std::fmt::Debug for TransportKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TransportKey::Clear(k) => write!(f, "TransportKey::Clear({k:?})"),
            TransportKey::Hsm(_) => f.write_str("TransportKey::Hsm"),
        }
    }
}

/// What CPS needs to open a secure channel with a card product.
#[derive(Debug, Clone)]
pub struct TransportKeySet {
    /// Master key for card keys.
    pub kmc: TransportKey,
    /// Card key diversification method.
    pub diversification: Diversification,
    /// Secure channel protocol and its i parameter.
    pub protocol: Protocol,
    /// Key version number on the card.
    pub kvn: u8,
    /// AID of the Issuer Security Domain to personalize through; `None` = SELECT the application.
    pub isd: Option<Vec<u8>>,
}

impl TransportKeySet {
    /// The secure channel key source for CPS (diversified per card, or the static keys).
    pub fn key_source(&self) -> KeySource {
        match (&self.kmc, self.diversification) {
            (TransportKey::Hsm(h), _) => KeySource::Hsm(h.clone()),
            (TransportKey::Clear(k), Diversification::None) => {
                let k = k.expose();
                KeySource::Static(StaticKeys::new(k, k, k))
            }
            (TransportKey::Clear(k), method) => KeySource::Kmc {
                kmc: Zeroizing::new(k.expose().to_vec()),
                method,
            },
        }
    }
}

/// Issuer public key data a card needs for offline data authentication (all public).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OdaIssuerKey {
    /// Certification authority public key index (8F).
    pub ca_index: u8,
    /// Issuer public key certificate (90).
    pub issuer_pk_certificate: Vec<u8>,
    /// Issuer public key exponent (9F32).
    pub issuer_pk_exponent: Vec<u8>,
    /// Issuer public key remainder (92), empty when the key fits the certificate.
    pub issuer_pk_remainder: Vec<u8>,
}

/// The ICC private key in CRT form, on its way into DGIs 8201-8205.
#[derive(Clone, PartialEq, Eq)]
pub struct IccRsaCrt {
    /// Prime p.
    pub p: SecretBytes,
    /// Prime q.
    pub q: SecretBytes,
    /// d mod (p − 1).
    pub dp: SecretBytes,
    /// d mod (q − 1).
    pub dq: SecretBytes,
    /// q⁻¹ mod p.
    pub qinv: SecretBytes,
}

impl std::fmt::Debug for IccRsaCrt {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("IccRsaCrt(redacted)")
    }
}

/// An ICC RSA key pair generated and certified for one card (DDA).
///
/// The software store generates it with OpenSSL and returns the private parts in
/// zeroizing containers for CPS to encrypt; an HSM store would generate the pair inside
/// the HSM and return the CRT parts already encrypted under the session DEK handle.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IccRsaKey {
    /// ICC public key certificate (9F46), signed by the issuer key.
    pub certificate: Vec<u8>,
    /// ICC public key exponent (9F47).
    pub exponent: Vec<u8>,
    /// ICC public key remainder (9F48), empty when the key fits the certificate.
    pub remainder: Vec<u8>,
    /// ICC modulus length in bytes.
    pub modulus_len: usize,
    /// Private key parts.
    pub crt: IccRsaCrt,
}

/// Why a key operation failed. Messages name keys by kind and index, never by value.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum KeyStoreError {
    /// No key of that kind at that index.
    #[error("no {kind} key with index {index} in the key store")]
    Missing {
        /// Key kind (`imk`, `cvk`, `pvk`, `transport`, `oda`).
        kind: &'static str,
        /// Index or card product id.
        index: String,
    },
    /// The key file cannot be read or is malformed.
    #[error("key file {path}: {reason}")]
    File {
        /// The file.
        path: PathBuf,
        /// What is wrong (names the entry, never the value).
        reason: String,
    },
    /// The key file is readable by group or others.
    #[error(
        "key file {path} is readable by group or others (mode {mode:03o}): run chmod 600 on it"
    )]
    Permissions {
        /// The file.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
    },
    /// The operation exists in the trait but this store or algorithm does not do it yet.
    #[error("{0} is not supported by this key store")]
    NotSupported(String),
    /// A cryptographic primitive refused its input.
    #[error("key operation failed: {0}")]
    Crypto(String),
    /// The HSM cannot be reached, logged into, or found by its token label.
    #[error("HSM token '{token}': {reason}")]
    Token {
        /// Token label.
        token: String,
        /// What went wrong (PKCS#11 return value; never a key or PIN).
        reason: String,
    },
    /// The HSM refused an operation.
    #[error("HSM operation failed: {0}")]
    Hsm(String),
}

impl station_hal::StaffFacing for KeyStoreError {
    fn code(&self) -> &'static str {
        match self {
            KeyStoreError::Missing { .. } => "KEY_MISSING",
            KeyStoreError::File { .. } => "KEY_FILE_INVALID",
            KeyStoreError::Permissions { .. } => "KEY_FILE_PERMISSIONS",
            KeyStoreError::NotSupported(_) => "KEY_NOT_SUPPORTED",
            KeyStoreError::Crypto(_) => "KEY_CRYPTO_ERROR",
            KeyStoreError::Token { .. } => "KEY_HSM_UNAVAILABLE",
            KeyStoreError::Hsm(_) => "KEY_HSM_ERROR",
        }
    }

    fn staff_message(&self) -> String {
        format!("Card keys problem: {self}. Call IT support; do not retry the card.")
    }
}

/// Refuses what Option A cannot stand in for: EMV Option B for a PAN of more than 16
/// digits (up to 16 the two derivations are the same).
pub(crate) fn option_a_covers(
    method: MasterKeyDerivation,
    index: KeyIndex,
    pan: &Pan,
) -> Result<(), KeyStoreError> {
    if method == MasterKeyDerivation::OptionB && pan.digits().len() > 16 {
        return Err(KeyStoreError::NotSupported(format!(
            "EMV Option B ICC master key derivation for a PAN of {} digits (issuer key {index})",
            pan.digits().len()
        )));
    }
    Ok(())
}

/// Issuer key operations, shaped so that a PKCS#11 HSM can implement them.
pub trait KeyStore: Send + Sync {
    /// Derives MK-AC, MK-SMI and MK-SMC (EMV Option A) for one card from the issuer
    /// master keys at `index`.
    fn derive_icc_master_keys(
        &self,
        index: KeyIndex,
        pan: &Pan,
        psn: Psn,
    ) -> Result<IccKeys, KeyStoreError>;

    /// Derives the ICC master keys by `method` (EMV Book 2 A1.4; the cryptogram version
    /// decides it). The default covers Option A, and Option B for PANs of up to 16
    /// digits, where both are the same; a store that implements Option B for longer
    /// PANs overrides it.
    fn derive_icc_master_keys_by(
        &self,
        method: MasterKeyDerivation,
        index: KeyIndex,
        pan: &Pan,
        psn: Psn,
    ) -> Result<IccKeys, KeyStoreError> {
        option_a_covers(method, index, pan)?;
        self.derive_icc_master_keys(index, pan, psn)
    }

    /// The ICC master keys for DGI 8000 and their check values for DGI 9000. The default
    /// hands them out in clear ([`KeyStore::derive_icc_master_keys_by`]); an HSM store
    /// overrides it to keep them inside ([`IccKeyMaterial::Sealed`]).
    fn icc_key_material(
        &self,
        method: MasterKeyDerivation,
        index: KeyIndex,
        pan: &Pan,
        psn: Psn,
    ) -> Result<IccKeyMaterial, KeyStoreError> {
        self.derive_icc_master_keys_by(method, index, pan, psn)
            .map(IccKeyMaterial::Clear)
    }

    /// Visa CVV for the stripe (or iCVV with service code 999) with the CVKs at `index`.
    fn cvv(
        &self,
        index: KeyIndex,
        pan: &Pan,
        exp: YearMonth,
        service_code: &ServiceCode,
    ) -> Result<Zeroizing<String>, KeyStoreError>;

    /// Checks an ARQC the card produced over `data` (the bytes the cryptogram version
    /// MACs) against the ICC MK-AC derived from the issuer keys at `index`.
    fn verify_arqc(
        &self,
        index: KeyIndex,
        pan: &Pan,
        psn: Psn,
        version: CryptogramVersion,
        data: &[u8],
        arqc: &[u8; 8],
    ) -> Result<bool, KeyStoreError>;

    /// Checks an application cryptogram of any [`CryptogramVersion`]: derives the ICC
    /// MK-AC from the issuer master keys at `index`, the session key the version uses
    /// (from the ATC, and for Mastercard the unpredictable number, both in `tx`) and
    /// MACs `tx` with the card data the version takes from `iad`.
    ///
    /// The default covers versions without a session key through
    /// [`KeyStore::verify_arqc`]; a store that can derive session keys (the software
    /// store; an HSM with EMV session-key mechanisms) overrides it.
    fn verify_application_cryptogram(
        &self,
        index: KeyIndex,
        pan: &Pan,
        psn: Psn,
        c: &CardCryptogram<'_>,
    ) -> Result<bool, KeyStoreError> {
        let version = c.version;
        if version.algorithm().session_key != SessionKey::None {
            return Err(KeyStoreError::NotSupported(format!(
                "ARQC verification for {} (session keys)",
                version.name()
            )));
        }
        let data = cryptogram_data(version, c.tx, c.iad)
            .map_err(|e| KeyStoreError::Crypto(e.to_string()))?;
        self.verify_arqc(index, pan, psn, version, &data, &c.ac)
    }

    /// The payment systems' CA public keys a terminal holds (public data): the read-back
    /// checks SDA, DDA and CDA cards with them. None by default.
    fn ca_public_keys(&self) -> Vec<CaPublicKey> {
        Vec::new()
    }

    /// Keys and parameters to open a GlobalPlatform secure channel with cards of a product.
    fn transport_keys(&self, card_product_id: &str) -> Result<TransportKeySet, KeyStoreError>;

    /// Issuer public key data for ODA at `index` (8F, 90, 9F32, 92).
    fn oda_issuer_key(&self, index: KeyIndex) -> Result<OdaIssuerKey, KeyStoreError>;

    /// Generates an ICC RSA key pair of `bits` for DDA and certifies it with the issuer
    /// key at `index` over the card's static data to be authenticated.
    fn generate_icc_key(
        &self,
        index: KeyIndex,
        _bits: u16,
        _pan: &Pan,
        _exp: YearMonth,
        _static_data: &[u8],
    ) -> Result<IccRsaKey, KeyStoreError> {
        Err(KeyStoreError::NotSupported(format!(
            "generating ICC keys for DDA (issuer key {index})"
        )))
    }

    /// Signed static application data (93) for SDA: formats the recovery block
    /// (`6A 03 01 DAC BB… SHA-1 BC`, the issuer modulus long) over `static_data` and
    /// applies the issuer RSA private key at `index` (PKCS#11: `CKM_RSA_X_509`).
    fn sign_static_data(
        &self,
        index: KeyIndex,
        _dac: [u8; 2],
        _static_data: &[u8],
    ) -> Result<Vec<u8>, KeyStoreError> {
        Err(KeyStoreError::NotSupported(format!(
            "signing static data for ODA (issuer key {index})"
        )))
    }
}
