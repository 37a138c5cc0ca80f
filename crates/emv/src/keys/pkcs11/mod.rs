//! The PKCS#11 key store: issuer keys live in an HSM token as non-extractable objects
//! and every operation that uses them runs inside it.
//!
//! Objects are found by label (`CKA_LABEL`), one per key and index:
//!
//! | label                          | object                      | used for |
//! |--------------------------------|-----------------------------|----------|
//! | `imk.01.ac`, `.smi`, `.smc`    | DES2, `CKA_DERIVE`          | Option A ICC master keys (`CKM_DES3_ECB_ENCRYPT_DATA`) |
//! | `cvk.01`                       | DES2 A‖B, `CKA_ENCRYPT`     | CVV / iCVV, second step |
//! | `cvk.01.a`                     | DES2 A‖A, `CKA_ENCRYPT`     | CVV / iCVV, first (single-DES) step |
//! | `transport.DEV-VISA.kmc`       | DES2 (AES for SCP03 static), `CKA_DERIVE` | card keys per KDD, then session keys |
//! | `transport.DEV-VISA` (`CKO_DATA`) | TOML: diversification, scp, i, kvn, isd | secure channel parameters (public) |
//! | `oda.01.issuer`                | RSA private key, `CKA_SIGN` | SDA signatures, ICC key certificates (`CKM_RSA_X_509`) |
//! | `oda.01` (`CKO_DATA`)          | TOML: CA index, issuer certificate, exponent, remainder, modulus | ODA public data |
//! | `ca.A000000004.92` (`CKO_DATA`) | TOML: modulus, exponent     | CA public keys for the read-back |
//!
//! Every key object the store creates, imported or derived, sets every usage attribute
//! ([`KeyUsage`]), true only where its role needs it; no key both wraps and decrypts,
//! and a production store refuses a token on which one of the station's keys (the
//! labels above) does, or can be read or extracted (written by an earlier version or
//! by hand); keys with other labels belong to whoever shares the partition.
//! These attributes keep this station's code paths and a mis-built template from
//! exposing a key; they do not stop someone holding the user PIN, who chooses the
//! attributes of whatever they derive from an IMK or KMC. That needs the HSM's derive
//! policy (`CKA_DERIVE_TEMPLATE`, or the vendor's), which SoftHSM2 2.6 lacks
//! (docs/keys.md, "What the attributes do not stop").
//!
//! Sessions: one logged-in session per production line, each on its own thread with its
//! own job queue (PKCS#11 calls block). Each card's personalization is pinned to one
//! session for as long as its [`TransportKeySet`] lives (the session with the fewest
//! pinned cards), so one line's HSM traffic never queues behind another line's; other
//! operations go to the least busy session. Async code awaits the answer through a
//! future the session thread completes, so no executor thread blocks on the HSM. A job
//! that finds the token gone (session closed, device removed, not logged in) reconnects
//! on its own session — finds the token by label again, logs in with the PIN — and runs
//! once more.
//!
//! The station never brings ICC master keys onto the host in clear (but see the
//! development read-out below). Preparation gets their check values
//! (computed inside) and a [`SealedIccKeys`] recipe; when the secure channel is open the
//! session thread derives the card's DEK from the KMC (SCP02: then the S-DEK with
//! `CKM_DES3_CBC_ENCRYPT_DATA`, zero ICV), derives the ICC keys again as sensitive,
//! wrappable session objects and `C_WrapKey`s them under the DEK:
//!
//! - SCP02 (DES DEK): `CKM_DES3_ECB` first (what production HSMs offer); else each key
//!   half derived as a `CKK_DES` object and wrapped with `CKM_DES3_CBC`, zero ICV (one
//!   block under CBC is ECB); else — SoftHSM2 2.6, which wraps no key under a DES key —
//!   on development stations only, the key is read once into zeroizing memory and
//!   encrypted as data under the S-DEK inside. A production station tries the DES
//!   ways with throw-away keys at start ([`Pkcs11KeyStore::check_icc_key_wrapping`])
//!   and does not start when its SCP02 products need one the token lacks.
//! - SCP03 (AES DEK): `CKM_AES_CBC`, each 16-byte key one block, the ICV the previous
//!   block's ciphertext: one CBC pass over the DGI. SoftHSM2 does this.
//!
//! Derived DES keys have odd parity in SoftHSM2 as in the software store, so the card
//! receives the same bytes through both stores.
//!
//! A DDA/CDA card's own RSA key pair is generated on the host and only its certificate
//! is signed inside: PKCS#11 wraps an RSA private key as a PKCS#8 blob, not as the CRT
//! parts CPS puts in DGIs 8201-8205 (which are then encrypted under the DEK inside).
//!
//! What still leaves the token, and why: S-ENC and S-MAC (PKCS#11 has no SCP02 C-MAC
//! chaining or retail-MAC mechanism, and SoftHSM2 no SP 800-108 KDF output as a key), so
//! secure messaging runs on the host with these per-card, per-session keys. The KMC, the
//! card's static keys, the DEKs and the ICC master keys do not.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU8, AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Mutex, OnceLock};

use cryptoki::context::{CInitializeArgs, Pkcs11};
use cryptoki::error::{Error as P11Error, RvError};
use cryptoki::mechanism::misc::KeyDerivationStringData;
use cryptoki::mechanism::vendor_defined::VendorDefinedMechanism;
use cryptoki::mechanism::{Mechanism, MechanismType};
use cryptoki::object::{Attribute, AttributeType, KeyType, ObjectClass, ObjectHandle};
use cryptoki::session::{Session, UserType};
use cryptoki::types::AuthPin;
use serde::Deserialize;
use zeroize::Zeroizing;

use crate::card_data::{Pan, YearMonth};
use crate::crypto::{pad80, pad_zero, with_odd_parity, CryptoError, AES_BLOCK, DES_BLOCK};
use crate::data::cryptogram::{cryptogram_data, CardCryptogram, Padding, SessionKey};
use crate::data::cvv::{cvv_data, decimalize};
use crate::data::derive::{bcd, MasterKeyDerivation, Psn, ServiceCode};
use crate::data::profile::CryptogramVersion;
use crate::dgi::SealedIccKeys;
use crate::gp::diversify::{derivation_data, Diversification, KeyRole};
use crate::gp::scp::{
    scp02_derivation_data, scp03_kdf_input, HsmCardKeys, HsmFuture, Protocol, SensitiveData,
    SessionKeyValues, SCP02_CONSTANTS,
};
use crate::oda::CaPublicKey;

use super::{
    parse_diversification, IccKeyMaterial, IccKeys, IccRsaKey, KeyIndex, KeyStore, KeyStoreError,
    OdaIssuerKey, SecretBytes, TransportKey, TransportKeySet,
};

pub(crate) mod labels;
mod token;
mod workers;
mod wrap;

pub use token::{
    fresh_softhsm2_dir_for_test, softhsm2_conf_in, softhsm2_dir_for_test, softhsm2_dir_from_env,
    write_dev_token, write_softhsm2_token, DevToken,
};
pub(crate) use token::{ImportKey, ImportRsa};
use workers::{Lease, Worker, Workers};
use wrap::{icc_key_to_wrap, imks, scp02_icc_keys, scp03_icc_keys, unsupported, DesWrap};

/// Where SoftHSM2's PKCS#11 module is on Debian and Ubuntu.
pub const SOFTHSM2_MODULE: &str = "/usr/lib/softhsm/libsofthsm2.so";

/// Where the user PIN comes from: never the station configuration itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PinSource {
    /// A file readable by its owner only; surrounding white space is ignored.
    File(PathBuf),
    /// An environment variable of the service.
    Env(String),
}

impl PinSource {
    /// Reads the PIN; errors name the file or variable, never the PIN.
    pub fn read(&self, token: &str) -> Result<Zeroizing<String>, KeyStoreError> {
        let err = |reason: String| KeyStoreError::Token {
            token: token.to_string(),
            reason,
        };
        let raw = match self {
            PinSource::File(p) => Zeroizing::new(
                std::fs::read_to_string(p)
                    .map_err(|e| err(format!("PIN file {}: {e}", p.display())))?,
            ),
            PinSource::Env(v) => Zeroizing::new(
                std::env::var(v).map_err(|_| err(format!("PIN variable {v} is not set")))?,
            ),
        };
        let pin = Zeroizing::new(raw.trim().to_string());
        if pin.is_empty() {
            return Err(err("the PIN is empty".into()));
        }
        Ok(pin)
    }
}

/// How to reach the token.
#[derive(Debug, Clone)]
pub struct Pkcs11Config {
    /// PKCS#11 module (shared library).
    pub module: PathBuf,
    /// Token label.
    pub token: String,
    /// User PIN source.
    pub pin: PinSource,
    /// Sessions (worker threads) to open: one per production line.
    pub sessions: usize,
    /// A development station: a token without DES key wrapping (SoftHSM2) may hand the
    /// ICC master keys out once to be encrypted under the DEK; production refuses.
    pub development: bool,
}

/// A key's label and its check value, as `keys list` shows them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyLabel {
    /// `CKA_LABEL`.
    pub label: String,
    /// Key type (`DES2`, `AES`).
    pub kind: String,
    /// KCV (`CKA_CHECK_VALUE`), upper-case hex; empty when the token has none.
    pub kcv: String,
}

fn hsm(e: P11Error) -> KeyStoreError {
    KeyStoreError::Hsm(e.to_string())
}

/// Whether a PKCS#11 error means the session or token went away (reconnect and retry).
fn token_gone(e: &KeyStoreError) -> bool {
    matches!(e, KeyStoreError::Token { .. })
}

fn classify(token: &str, e: P11Error) -> KeyStoreError {
    match &e {
        P11Error::Pkcs11(
            RvError::SessionHandleInvalid
            | RvError::SessionClosed
            | RvError::DeviceRemoved
            | RvError::DeviceError
            | RvError::TokenNotPresent
            | RvError::TokenNotRecognized
            | RvError::UserNotLoggedIn
            | RvError::CryptokiNotInitialized
            // A session left in a bad state by a failure is replaced by a fresh one.
            | RvError::OperationActive
            | RvError::GeneralError,
            _,
        ) => KeyStoreError::Token {
            token: token.to_string(),
            reason: e.to_string(),
        },
        _ => hsm(e),
    }
}

/// A mechanism `cryptoki` does not name (`CKM_DES3_ECB_ENCRYPT_DATA`,
/// `CKM_DES3_CBC_ENCRYPT_DATA`, PKCS#11 2.40 §2.10.10), by its FFI constant.
// The one unsafe block of this crate: an FFI constant `cryptoki` has no safe constructor for.
#[allow(unsafe_code)]
fn mechanism(value: cryptoki_sys::CK_MECHANISM_TYPE) -> MechanismType {
    // SAFETY: `MechanismType` is `#[repr(transparent)]` over `CK_MECHANISM_TYPE` and
    // holds no invariant beyond the value; callers pass the FFI constant of a mechanism.
    unsafe { std::mem::transmute::<cryptoki_sys::CK_MECHANISM_TYPE, MechanismType>(value) }
}

/// What a key object may do: every usage attribute, set explicitly on every key the
/// station creates (imported or derived) and read back to check a token. A token's
/// defaults are not trusted: SoftHSM2 lets a key encrypt, decrypt, wrap and unwrap
/// unless told otherwise, and a key that wraps and decrypts hands out what it wraps.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct KeyUsage {
    /// `CKA_ENCRYPT`.
    pub encrypt: bool,
    /// `CKA_DECRYPT`.
    pub decrypt: bool,
    /// `CKA_WRAP`.
    pub wrap: bool,
    /// `CKA_UNWRAP`.
    pub unwrap: bool,
    /// `CKA_SIGN` (AES CMAC, RSA signatures).
    pub sign: bool,
    /// `CKA_VERIFY`.
    pub verify: bool,
    /// `CKA_DERIVE`.
    pub derive: bool,
    /// `CKA_EXTRACTABLE`: it can be wrapped.
    pub extractable: bool,
    /// `CKA_SENSITIVE`: its value cannot be read.
    pub sensitive: bool,
}

impl KeyUsage {
    /// Nothing but kept secret: the base every role adds to.
    pub const NONE: KeyUsage = KeyUsage {
        encrypt: false,
        decrypt: false,
        wrap: false,
        unwrap: false,
        sign: false,
        verify: false,
        derive: false,
        extractable: false,
        sensitive: true,
    };
    /// An IMK, or a KMC that diversifies: derives, nothing else.
    pub const DERIVE: KeyUsage = KeyUsage {
        derive: true,
        ..KeyUsage::NONE
    };
    /// A CVK, an SCP02 card key (session keys by 3DES CBC), a key a check value or
    /// MAC is computed under: encrypts, nothing else.
    pub const ENCRYPT: KeyUsage = KeyUsage {
        encrypt: true,
        ..KeyUsage::NONE
    };
    /// An SCP03 card key: session keys by AES CMAC, nothing else.
    pub const CMAC: KeyUsage = KeyUsage {
        sign: true,
        ..KeyUsage::NONE
    };
    /// A DEK (SCP02 S-DEK, SCP03 card DEK): wraps the ICC keys and encrypts the padding
    /// block and the other sensitive DGIs; never decrypts or unwraps, so what it wrapped
    /// stays wrapped.
    pub const DEK: KeyUsage = KeyUsage {
        encrypt: true,
        wrap: true,
        ..KeyUsage::NONE
    };
    /// An undiversified SCP02 KMC, the card's own key: session keys by 3DES CBC, the
    /// S-DEK derived from it.
    pub const SCP02_CARD_KEY_SET: KeyUsage = KeyUsage {
        encrypt: true,
        derive: true,
        ..KeyUsage::NONE
    };
    /// An undiversified SCP03 KMC, the card's own key: session keys by AES CMAC, and
    /// as the DEK wraps and encrypts.
    pub const SCP03_CARD_KEY_SET: KeyUsage = KeyUsage {
        sign: true,
        ..KeyUsage::DEK
    };
    /// An issuer ODA private key: signs, nothing else.
    pub const RSA_SIGN: KeyUsage = KeyUsage {
        sign: true,
        ..KeyUsage::NONE
    };
    /// An ICC master key on its way to the card: leaves only wrapped, does nothing.
    pub const WRAPPABLE: KeyUsage = KeyUsage {
        extractable: true,
        ..KeyUsage::NONE
    };
    /// Read out once (tokens without DES key wrapping, development stations only).
    pub const READABLE: KeyUsage = KeyUsage {
        extractable: true,
        sensitive: false,
        ..KeyUsage::NONE
    };

    /// The template attributes of a secret key.
    fn secret_template(self) -> [Attribute; 9] {
        [
            Attribute::Encrypt(self.encrypt),
            Attribute::Decrypt(self.decrypt),
            Attribute::Wrap(self.wrap),
            Attribute::Unwrap(self.unwrap),
            Attribute::Sign(self.sign),
            Attribute::Verify(self.verify),
            Attribute::Derive(self.derive),
            Attribute::Extractable(self.extractable),
            Attribute::Sensitive(self.sensitive),
        ]
    }

    /// The template attributes of a private key (which has no encrypt, wrap or verify).
    fn private_template(self) -> [Attribute; 7] {
        [
            Attribute::Decrypt(self.decrypt),
            Attribute::Unwrap(self.unwrap),
            Attribute::Sign(self.sign),
            Attribute::SignRecover(false),
            Attribute::Derive(self.derive),
            Attribute::Extractable(self.extractable),
            Attribute::Sensitive(self.sensitive),
        ]
    }

    /// The attributes to read back from a token.
    const TYPES: [AttributeType; 9] = [
        AttributeType::Encrypt,
        AttributeType::Decrypt,
        AttributeType::Wrap,
        AttributeType::Unwrap,
        AttributeType::Sign,
        AttributeType::Verify,
        AttributeType::Derive,
        AttributeType::Extractable,
        AttributeType::Sensitive,
    ];

    /// From attributes a token returned; one it does not have is false.
    fn from_attributes(attrs: &[Attribute]) -> KeyUsage {
        let mut u = KeyUsage {
            sensitive: false,
            ..KeyUsage::NONE
        };
        for a in attrs {
            match *a {
                Attribute::Encrypt(v) => u.encrypt = v,
                Attribute::Decrypt(v) => u.decrypt = v,
                Attribute::Wrap(v) => u.wrap = v,
                Attribute::Unwrap(v) => u.unwrap = v,
                Attribute::Sign(v) => u.sign = v,
                Attribute::Verify(v) => u.verify = v,
                Attribute::Derive(v) => u.derive = v,
                Attribute::Extractable(v) => u.extractable = v,
                Attribute::Sensitive(v) => u.sensitive = v,
                _ => {}
            }
        }
        u
    }

    /// Whether what this key wraps could come back out in clear: wrapping with a key
    /// that also decrypts (or unwraps as a readable key) is reading the wrapped key.
    pub fn unwraps_what_it_wraps(&self) -> bool {
        self.wrap && (self.decrypt || self.unwrap)
    }
}

/// Modules are initialized once per process and shared by every store using them.
static MODULES: OnceLock<Mutex<BTreeMap<PathBuf, Pkcs11>>> = OnceLock::new();

fn module(path: &Path) -> Result<Pkcs11, KeyStoreError> {
    let mut map = MODULES
        .get_or_init(|| Mutex::new(BTreeMap::new()))
        .lock()
        .unwrap_or_else(|p| p.into_inner());
    if let Some(m) = map.get(path) {
        return Ok(m.clone());
    }
    let err = |e: P11Error| KeyStoreError::Token {
        token: String::new(),
        reason: format!("PKCS#11 module {}: {e}", path.display()),
    };
    let m = Pkcs11::new(path).map_err(err)?;
    match m.initialize(CInitializeArgs::new(
        cryptoki::context::CInitializeFlags::OS_LOCKING_OK,
    )) {
        Ok(()) => {}
        Err(P11Error::Pkcs11(RvError::CryptokiAlreadyInitialized, _)) => {}
        Err(e) => return Err(err(e)),
    }
    map.insert(path.to_path_buf(), m.clone());
    Ok(m)
}

/// Finds the slot holding the token labelled `token`.
fn find_slot(m: &Pkcs11, token: &str) -> Result<cryptoki::slot::Slot, KeyStoreError> {
    for slot in m.get_slots_with_token().map_err(hsm)? {
        if let Ok(info) = m.get_token_info(slot) {
            if info.label().trim() == token {
                return Ok(slot);
            }
        }
    }
    Err(KeyStoreError::Token {
        token: token.to_string(),
        reason: "no token with this label is present".into(),
    })
}

/// One logged-in session, reopened when the token goes away.
struct Connection {
    module: Pkcs11,
    token: String,
    pin: Arc<Zeroizing<String>>,
    session: Option<Session>,
}

impl Connection {
    fn session(&mut self) -> Result<&Session, KeyStoreError> {
        if self.session.is_none() {
            let slot = find_slot(&self.module, &self.token)?;
            let s = self
                .module
                .open_rw_session(slot)
                .map_err(|e| classify(&self.token, e))?;
            let pin = AuthPin::from(self.pin.as_str().to_string());
            match s.login(UserType::User, Some(&pin)) {
                Ok(()) | Err(P11Error::Pkcs11(RvError::UserAlreadyLoggedIn, _)) => {}
                Err(P11Error::Pkcs11(RvError::PinIncorrect, _)) => {
                    return Err(KeyStoreError::Token {
                        token: self.token.clone(),
                        reason: "the user PIN is wrong".into(),
                    })
                }
                Err(e) => return Err(classify(&self.token, e)),
            }
            self.session = Some(s);
        }
        Ok(self.session.as_ref().expect("just opened"))
    }

    /// Runs `op`; when the token went away, reconnects and runs it once more.
    fn run<T>(
        &mut self,
        op: &dyn Fn(&Ops) -> Result<T, KeyStoreError>,
    ) -> Result<T, KeyStoreError> {
        let first = {
            let token = self.token.clone();
            match self.session() {
                Ok(s) => op(&Ops { s, token: &token }),
                Err(e) => Err(e),
            }
        };
        // A token that was removed and put back, or logged out, shows its private
        // objects to no one: a key missing may be a lost login (perhaps already
        // restored by another session), so it is looked for once more after a login.
        match first {
            Err(e @ KeyStoreError::Missing { .. }) => {
                let token = self.token.clone();
                let pin = AuthPin::from(self.pin.as_str().to_string());
                let s = self.session()?;
                match s.login(UserType::User, Some(&pin)) {
                    Ok(()) | Err(P11Error::Pkcs11(RvError::UserAlreadyLoggedIn, _)) => {
                        op(&Ops { s, token: &token })
                    }
                    Err(_) => Err(e),
                }
            }
            Err(e) if token_gone(&e) => {
                tracing::warn!(token = %self.token, error = %e, "HSM session lost; reconnecting");
                self.session = None;
                let token = self.token.clone();
                let s = self.session()?;
                op(&Ops { s, token: &token })
            }
            other => other,
        }
    }
}

type Job = Box<dyn FnOnce(&mut Connection) + Send>;

/// Operations on one open session.
struct Ops<'a> {
    s: &'a Session,
    token: &'a str,
}

/// A session object destroyed when dropped (derived keys never outlive their use).
struct Temp<'a> {
    s: &'a Session,
    h: ObjectHandle,
}

impl Drop for Temp<'_> {
    fn drop(&mut self) {
        let _ = self.s.destroy_object(self.h);
    }
}

impl<'a> Ops<'a> {
    fn err(&self, e: P11Error) -> KeyStoreError {
        classify(self.token, e)
    }

    fn find(&self, class: ObjectClass, label: &str) -> Result<Option<ObjectHandle>, KeyStoreError> {
        let found = self
            .s
            .find_objects(&[
                Attribute::Class(class),
                Attribute::Label(label.as_bytes().to_vec()),
            ])
            .map_err(|e| self.err(e))?;
        match found.as_slice() {
            [] => Ok(None),
            [h] => Ok(Some(*h)),
            _ => Err(KeyStoreError::Hsm(format!(
                "{} objects are labelled {label}: labels must be unique",
                found.len()
            ))),
        }
    }

    fn key(
        &self,
        kind: &'static str,
        index: String,
        label: &str,
    ) -> Result<ObjectHandle, KeyStoreError> {
        self.find(ObjectClass::SECRET_KEY, label)?
            .ok_or(KeyStoreError::Missing { kind, index })
    }

    /// Derives a session key: `base` encrypts `data` (3DES ECB) into a new DES2 (or
    /// AES) object that may do `usage` only.
    fn derive(
        &self,
        base: ObjectHandle,
        data: &[u8; 16],
        key_type: KeyType,
        usage: KeyUsage,
    ) -> Result<Temp<'a>, KeyStoreError> {
        self.derive_by(base, data, key_type, usage)
            .map_err(|e| self.err(e))
    }

    /// `CKM_DES3_ECB_ENCRYPT_DATA` over 8 or 16 bytes, the raw PKCS#11 error kept for
    /// the caller to tell an unsupported mechanism from a failure.
    fn derive_by(
        &self,
        base: ObjectHandle,
        data: &[u8],
        key_type: KeyType,
        usage: KeyUsage,
    ) -> Result<Temp<'a>, P11Error> {
        let params = KeyDerivationStringData::new(data);
        let mech = Mechanism::VendorDefined(VendorDefinedMechanism::new(
            mechanism(cryptoki_sys::CKM_DES3_ECB_ENCRYPT_DATA),
            Some(&params),
        ));
        self.derive_with(&mech, base, key_type, usage)
    }

    fn derive_with(
        &self,
        mech: &Mechanism,
        base: ObjectHandle,
        key_type: KeyType,
        usage: KeyUsage,
    ) -> Result<Temp<'a>, P11Error> {
        let mut template = vec![
            Attribute::Class(ObjectClass::SECRET_KEY),
            Attribute::KeyType(key_type),
            Attribute::Token(false),
        ];
        template.extend(usage.secret_template());
        if key_type == KeyType::AES {
            template.push(Attribute::ValueLen(16.into()));
        }
        let h = self.s.derive_key(mech, base, &template)?;
        Ok(Temp { s: self.s, h })
    }

    /// SCP02 S-DEK from the card's DEK: `CKM_DES3_CBC_ENCRYPT_DATA` with a zero ICV over
    /// `01 81 ‖ sequence ‖ 00…`, exactly the spec's 3DES CBC; kept inside as a wrapping key.
    fn scp02_session_dek(
        &self,
        card_dek: ObjectHandle,
        sequence: &[u8],
    ) -> Result<Temp<'a>, KeyStoreError> {
        let data = scp02_derivation_data(SCP02_CONSTANTS[2], sequence);
        let params = cryptoki_sys::CK_DES_CBC_ENCRYPT_DATA_PARAMS {
            iv: [0; 8],
            pData: data.as_ptr() as *mut u8,
            length: data.len() as _,
        };
        let mech = Mechanism::VendorDefined(VendorDefinedMechanism::new(
            mechanism(cryptoki_sys::CKM_DES3_CBC_ENCRYPT_DATA),
            Some(&params),
        ));
        self.derive_with(&mech, card_dek, KeyType::DES2, KeyUsage::DEK)
            .map_err(|e| self.err(e))
    }

    /// Which [`DesWrap`] way this token takes, tried with throw-away session keys;
    /// `None` when it wraps no key under a DES key.
    fn des_wrap_way(&self) -> Result<Option<DesWrap>, KeyStoreError> {
        let gen = |mech: &Mechanism, usage: KeyUsage| -> Result<Temp<'a>, KeyStoreError> {
            let mut template = vec![Attribute::Token(false)];
            template.extend(usage.secret_template());
            let h = self
                .s
                .generate_key(mech, &template)
                .map_err(|e| self.err(e))?;
            Ok(Temp { s: self.s, h })
        };
        let kek = gen(&Mechanism::Des2KeyGen, KeyUsage::DEK)?;
        let key = gen(&Mechanism::Des2KeyGen, KeyUsage::WRAPPABLE)?;
        match self.s.wrap_key(&Mechanism::Des3Ecb, kek.h, key.h) {
            Ok(c) if c.len() == 16 => return Ok(Some(DesWrap::Ecb)),
            Ok(_) => {}
            Err(e) if unsupported(&e) => {}
            Err(e) => return Err(self.err(e)),
        }
        let half = gen(&Mechanism::DesKeyGen, KeyUsage::WRAPPABLE)?;
        match self.s.wrap_key(&Mechanism::Des3Cbc([0; 8]), kek.h, half.h) {
            Ok(c) if c.len() == 8 => Ok(Some(DesWrap::CbcHalves)),
            Ok(_) => Ok(None),
            Err(e) if unsupported(&e) => Ok(None),
            Err(e) => Err(self.err(e)),
        }
    }

    fn usage(&self, h: ObjectHandle) -> Result<KeyUsage, KeyStoreError> {
        let attrs = self
            .s
            .get_attributes(h, &KeyUsage::TYPES)
            .map_err(|e| self.err(e))?;
        Ok(KeyUsage::from_attributes(&attrs))
    }

    fn label(&self, h: ObjectHandle) -> Result<String, KeyStoreError> {
        let attrs = self
            .s
            .get_attributes(h, &[AttributeType::Label])
            .map_err(|e| self.err(e))?;
        Ok(attrs
            .into_iter()
            .find_map(|a| match a {
                Attribute::Label(l) => Some(String::from_utf8_lossy(&l).into_owned()),
                _ => None,
            })
            .unwrap_or_default())
    }

    fn value(&self, h: ObjectHandle) -> Result<Zeroizing<Vec<u8>>, KeyStoreError> {
        let attrs = self
            .s
            .get_attributes(h, &[AttributeType::Value])
            .map_err(|e| self.err(e))?;
        match attrs.into_iter().next() {
            Some(Attribute::Value(mut v)) => {
                let out = Zeroizing::new(v.clone());
                zeroize::Zeroize::zeroize(&mut v);
                Ok(out)
            }
            _ => Err(KeyStoreError::Hsm(
                "the token did not return the derived key".into(),
            )),
        }
    }

    fn encrypt(
        &self,
        mech: &Mechanism,
        key: ObjectHandle,
        data: &[u8],
    ) -> Result<Vec<u8>, KeyStoreError> {
        self.s.encrypt(mech, key, data).map_err(|e| self.err(e))
    }

    fn cmac(&self, key: ObjectHandle, data: &[u8]) -> Result<Vec<u8>, KeyStoreError> {
        self.s
            .sign(&Mechanism::AesCMac, key, data)
            .map_err(|e| self.err(e))
    }
}

/// Option A's Y ‖ (Y ⊕ FF…): the rightmost 16 digits of PAN ‖ PSN, BCD.
fn option_a_data(pan: &Pan, psn: Psn) -> Zeroizing<[u8; 16]> {
    let mut x = Zeroizing::new(format!("{}{}", pan.digits(), psn.digits()));
    if x.len() < 16 {
        *x = format!("{:0>16}", x.as_str());
    }
    let y = Zeroizing::new(bcd(&x[x.len() - 16..]));
    let mut d = Zeroizing::new([0u8; 16]);
    d[..8].copy_from_slice(&y);
    for (o, b) in d[8..].iter_mut().zip(y.iter()) {
        *o = b ^ 0xFF;
    }
    d
}

/// Secure channel parameters stored beside a KMC as a `CKO_DATA` object.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TransportParams {
    diversification: String,
    scp: String,
    i: String,
    kvn: String,
    #[serde(default)]
    isd: Option<String>,
}

/// The per-card key source of one card product, answered by the store's workers on
/// the session it is pinned to for the whole personalization.
struct HsmTransport {
    lease: Lease,
    product: String,
    method: Diversification,
}

/// What a card's static key for `role` is inside the token: its type, and what it may
/// do. ENC and MAC make session keys only (3DES CBC for SCP02, AES CMAC for SCP03); the
/// SCP02 DEK only derives the S-DEK, which wraps; the SCP03 DEK wraps and encrypts itself.
fn card_key_kind(protocol: Protocol, role: KeyRole) -> (KeyType, KeyUsage) {
    match (protocol, role) {
        (Protocol::Scp02 { .. }, KeyRole::Dek) => (KeyType::DES2, KeyUsage::DERIVE),
        (Protocol::Scp02 { .. }, _) => (KeyType::DES2, KeyUsage::ENCRYPT),
        (Protocol::Scp03 { .. }, KeyRole::Dek) => (KeyType::AES, KeyUsage::DEK),
        (Protocol::Scp03 { .. }, _) => (KeyType::AES, KeyUsage::CMAC),
    }
}

/// The card's static key for `role`: derived inside from the KMC and the KDD as
/// [`card_key_kind`] says (`None`: the KMC itself, when the product does not diversify).
fn card_key<'a>(
    o: &Ops<'a>,
    kmc: ObjectHandle,
    kdd: &[u8; 10],
    method: Diversification,
    protocol: Protocol,
    role: KeyRole,
) -> Result<Option<Temp<'a>>, KeyStoreError> {
    let (key_type, usage) = card_key_kind(protocol, role);
    match derivation_data(kdd, method, role) {
        None => Ok(None),
        Some(d) => o.derive(kmc, &d, key_type, usage).map(Some),
    }
}

/// The key that encrypts a card's sensitive data, derived inside, with the keys it was
/// derived through (all destroyed when this is dropped).
struct Dek<'a> {
    /// The product's KMC (the card's own DEK when it does not diversify).
    kmc: ObjectHandle,
    /// The card's static DEK, when diversified from the KMC.
    card: Option<Temp<'a>>,
    /// SCP02's S-DEK; SCP03 has none (the card's static DEK encrypts).
    session: Option<Temp<'a>>,
}

impl Dek<'_> {
    /// The key that wraps and encrypts.
    fn handle(&self) -> ObjectHandle {
        self.session
            .as_ref()
            .or(self.card.as_ref())
            .map(|t| t.h)
            .unwrap_or(self.kmc)
    }
}

/// Derives the DEK of the card `kdd` of `product` inside: for SCP02 the card's DEK only
/// derives the S-DEK, which wraps and encrypts; for SCP03 the card's DEK does.
fn dek<'a>(
    o: &Ops<'a>,
    product: &str,
    method: Diversification,
    protocol: Protocol,
    kdd: &[u8; 10],
    sequence: &[u8],
) -> Result<Dek<'a>, KeyStoreError> {
    let kmc = o.key(
        "transport",
        product.to_string(),
        &labels::transport_kmc(product),
    )?;
    let card = card_key(o, kmc, kdd, method, protocol, KeyRole::Dek)?;
    let session = match protocol {
        Protocol::Scp02 { .. } => {
            if sequence.len() != 2 {
                return Err(KeyStoreError::Crypto(
                    "SCP02 sequence counter must be 2 bytes".into(),
                ));
            }
            let base = card.as_ref().map(|t| t.h).unwrap_or(kmc);
            Some(o.scp02_session_dek(base, sequence)?)
        }
        Protocol::Scp03 { .. } => None,
    };
    Ok(Dek { kmc, card, session })
}

impl HsmTransport {
    fn run<T: Send + 'static>(
        &self,
        op: impl Fn(&Ops) -> Result<T, KeyStoreError> + Send + 'static,
    ) -> HsmFuture<T> {
        let fut = self.lease.workers.call_async(Some(self.lease.n), op);
        Box::pin(async move { fut.await.map_err(|e| CryptoError::Hsm(e.to_string())) })
    }
}

impl HsmCardKeys for HsmTransport {
    fn session_keys(
        &self,
        protocol: Protocol,
        kdd: &[u8; 10],
        sequence: &[u8],
        context: &[u8],
    ) -> HsmFuture<SessionKeyValues> {
        let label = labels::transport_kmc(&self.product);
        let product = self.product.clone();
        let method = self.method;
        let kdd = *kdd;
        let sequence = sequence.to_vec();
        let context = context.to_vec();
        self.run(move |o: &Ops| {
            let kmc = o.key("transport", product.clone(), &label)?;
            // The card's static keys: derived inside, never readable.
            let card = |role| card_key(o, kmc, &kdd, method, protocol, role);
            let (enc, mac) = (card(KeyRole::Enc)?, card(KeyRole::Mac)?);
            let handle = |k: &Option<Temp>| k.as_ref().map(|t| t.h).unwrap_or(kmc);
            match protocol {
                Protocol::Scp02 { .. } => {
                    if sequence.len() != 2 {
                        return Err(KeyStoreError::Crypto(
                            "SCP02 sequence counter must be 2 bytes".into(),
                        ));
                    }
                    let session = |k: &Option<Temp>, c| {
                        o.encrypt(
                            &Mechanism::Des3Cbc([0; 8]),
                            handle(k),
                            &scp02_derivation_data(c, &sequence),
                        )
                        .map(Zeroizing::new)
                    };
                    Ok(SessionKeyValues {
                        enc: session(&enc, SCP02_CONSTANTS[0])?,
                        mac: session(&mac, SCP02_CONSTANTS[1])?,
                    })
                }
                Protocol::Scp03 { .. } => {
                    let kdf = |k: &Option<Temp>, constant: u8| {
                        o.cmac(handle(k), &scp03_kdf_input(constant, 128, 1, &context))
                            .map(Zeroizing::new)
                    };
                    Ok(SessionKeyValues {
                        enc: kdf(&enc, 0x04)?,
                        mac: kdf(&mac, 0x06)?,
                    })
                }
            }
        })
    }

    fn encrypt_sensitive(
        &self,
        protocol: Protocol,
        kdd: &[u8; 10],
        sequence: &[u8],
        items: Vec<SensitiveData>,
    ) -> HsmFuture<Vec<Vec<u8>>> {
        let product = self.product.clone();
        let method = self.method;
        let kdd = *kdd;
        let sequence = sequence.to_vec();
        let workers = self.lease.workers.clone();
        let items = Arc::new(items);
        self.run(move |o: &Ops| {
            let scp02 = matches!(protocol, Protocol::Scp02 { .. });
            let deks = dek(o, &product, method, protocol, &kdd, &sequence)?;
            let dek = deks.handle();
            items
                .iter()
                .map(|item| match (item, scp02) {
                    (SensitiveData::Clear(d), true) => o.encrypt(&Mechanism::Des3Ecb, dek, d),
                    (SensitiveData::Clear(d), false) => {
                        o.encrypt(&Mechanism::AesCbc([0; 16]), dek, d)
                    }
                    (SensitiveData::IccKeys { keys, pad }, true) => {
                        scp02_icc_keys(o, &workers, dek, keys, *pad)
                    }
                    (SensitiveData::IccKeys { keys, pad }, false) => {
                        scp03_icc_keys(o, &workers, dek, keys, *pad)
                    }
                })
                .collect()
        })
    }

    fn session(&self) -> Option<usize> {
        Some(self.lease.n)
    }
}

/// Issuer keys in a PKCS#11 token (labels in the module documentation).
pub struct Pkcs11KeyStore {
    workers: Arc<Workers>,
    transport: BTreeMap<String, ProductChannel>,
    /// Issuer ODA keys: public data and modulus length; the private key is `oda.NN.issuer`.
    oda: BTreeMap<KeyIndex, (OdaIssuerKey, usize)>,
    /// The payment systems' CA public keys (public data, `CKO_DATA` `ca.RID.IDX`).
    ca: Vec<CaPublicKey>,
}

/// A CA public key as its `CKO_DATA` object holds it.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CaParams {
    modulus: String,
    exponent: String,
}

/// An issuer ODA key's public data, stored beside its private key as a `CKO_DATA` object.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct OdaParams {
    ca_index: String,
    issuer_pk_certificate: String,
    issuer_pk_exponent: String,
    #[serde(default)]
    issuer_pk_remainder: String,
    issuer_modulus: String,
}

/// A card product's secure channel parameters, as its `CKO_DATA` object gives them.
#[derive(Debug, Clone)]
struct ProductChannel {
    diversification: Diversification,
    protocol: Protocol,
    kvn: u8,
    isd: Option<Vec<u8>>,
}

impl std::fmt::Debug for Pkcs11KeyStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pkcs11KeyStore")
            .field("token", &self.workers.token)
            .field("card_products", &self.transport.keys().collect::<Vec<_>>())
            .finish()
    }
}

impl Pkcs11KeyStore {
    /// Opens `sessions` logged-in sessions on the token, each on its own thread, and
    /// reads the card products' secure channel parameters.
    pub fn open(cfg: &Pkcs11Config) -> Result<Self, KeyStoreError> {
        let module = module(&cfg.module)?;
        let pin = Arc::new(cfg.pin.read(&cfg.token)?);
        let mut threads = Vec::new();
        let mut workers = Vec::new();
        for n in 0..cfg.sessions.max(1) {
            let mut conn = Connection {
                module: module.clone(),
                token: cfg.token.clone(),
                pin: pin.clone(),
                session: None,
            };
            // Log in now so a wrong PIN or a missing token shows at start, not at the first card.
            conn.session()?;
            let (tx, rx) = mpsc::channel::<Job>();
            let t = std::thread::Builder::new()
                .name(format!("hsm-{n}"))
                .spawn(move || {
                    while let Ok(job) = rx.recv() {
                        job(&mut conn);
                    }
                })
                .map_err(|e| KeyStoreError::Hsm(format!("cannot start an HSM thread: {e}")))?;
            threads.push(t);
            workers.push(Worker {
                jobs: tx,
                busy: Arc::new(AtomicUsize::new(0)),
            });
        }
        let workers = Arc::new(Workers {
            leases: Mutex::new(vec![0; workers.len()]),
            workers: Mutex::new(Some(workers)),
            threads: Mutex::new(threads),
            token: cfg.token.clone(),
            development: cfg.development,
            des_wrap: AtomicU8::new(DesWrap::Ecb as u8),
        });
        let params = workers.call(|o: &Ops| {
            let handles =
                o.s.find_objects(&[Attribute::Class(ObjectClass::DATA)])
                    .map_err(|e| o.err(e))?;
            let mut out = Vec::new();
            for h in handles {
                let attrs =
                    o.s.get_attributes(h, &[AttributeType::Label, AttributeType::Value])
                        .map_err(|e| o.err(e))?;
                let (mut label, mut value) = (String::new(), Vec::new());
                for a in attrs {
                    match a {
                        Attribute::Label(l) => label = String::from_utf8_lossy(&l).into_owned(),
                        Attribute::Value(v) => value = v,
                        _ => {}
                    }
                }
                if ["transport.", "oda.", "ca."]
                    .iter()
                    .any(|p| label.starts_with(p))
                {
                    out.push((label, String::from_utf8_lossy(&value).into_owned()));
                }
            }
            Ok(out)
        })?;
        let mut transport = BTreeMap::new();
        let mut oda = BTreeMap::new();
        let mut ca = Vec::new();
        for (label, text) in params {
            if let Some(id) = label.strip_prefix("ca.") {
                let bad = |what: &str| KeyStoreError::Hsm(format!("{label}: {what}"));
                let (rid, index) = id.split_once('.').ok_or_else(|| bad("ca.RID.INDEX"))?;
                let p: CaParams = toml::from_str(&text).map_err(|e| bad(&e.to_string()))?;
                ca.push(CaPublicKey {
                    rid: hex::decode(rid)
                        .ok()
                        .and_then(|r| r.try_into().ok())
                        .ok_or_else(|| bad("the RID must be 5 bytes in hex"))?,
                    index: u8::from_str_radix(index, 16)
                        .map_err(|_| bad("the index must be two hex digits"))?,
                    key: crate::oda::RsaPublicKey {
                        modulus: hex::decode(&p.modulus).map_err(|_| bad("modulus: hex"))?,
                        exponent: hex::decode(&p.exponent).map_err(|_| bad("exponent: hex"))?,
                    },
                });
                continue;
            }
            if let Some(index) = label.strip_prefix("oda.") {
                let bad = |what: String| KeyStoreError::Hsm(format!("{label}: {what}"));
                let index = KeyIndex::parse(index).ok_or_else(|| bad("two hex digits".into()))?;
                let p: OdaParams = toml::from_str(&text).map_err(|e| bad(e.to_string()))?;
                let hex =
                    |field: &str, v: &str| hex::decode(v).map_err(|_| bad(format!("{field}: hex")));
                let key = OdaIssuerKey {
                    ca_index: u8::from_str_radix(&p.ca_index, 16)
                        .map_err(|_| bad("ca_index: two hex digits".into()))?,
                    issuer_pk_certificate: hex("issuer_pk_certificate", &p.issuer_pk_certificate)?,
                    issuer_pk_exponent: hex("issuer_pk_exponent", &p.issuer_pk_exponent)?,
                    issuer_pk_remainder: hex("issuer_pk_remainder", &p.issuer_pk_remainder)?,
                };
                let n_i = hex("issuer_modulus", &p.issuer_modulus)?.len();
                oda.insert(index, (key, n_i));
                continue;
            }
            let Some(product) = label.strip_prefix("transport.").map(str::to_string) else {
                continue;
            };
            let bad = |what: String| KeyStoreError::Hsm(format!("transport.{product}: {what}"));
            let p: TransportParams = toml::from_str(&text).map_err(|e| bad(e.to_string()))?;
            let byte = |field: &str, v: &str| {
                u8::from_str_radix(v, 16).map_err(|_| bad(format!("{field}: two hex digits")))
            };
            let i = byte("i", &p.i)?;
            let protocol = match p.scp.as_str() {
                "scp02" => Protocol::Scp02 { i },
                "scp03" => Protocol::Scp03 { i },
                _ => return Err(bad("scp: \"scp02\" or \"scp03\"".into())),
            };
            let diversification = parse_diversification(&p.diversification)
                .ok_or_else(|| bad("diversification: one of none, emv-cpg202, visa2".into()))?;
            let isd = match &p.isd {
                None => None,
                Some(s) => Some(hex::decode(s).map_err(|_| bad("isd: hex".into()))?),
            };
            let set = ProductChannel {
                diversification,
                protocol,
                kvn: byte("kvn", &p.kvn)?,
                isd,
            };
            transport.insert(product, set);
        }
        Ok(Pkcs11KeyStore {
            workers,
            transport,
            oda,
            ca,
        })
    }

    /// Checks an application cryptogram inside the token: the ICC MK-AC is derived from
    /// the IMK (Option A; Option B equals it for PANs of up to 16 digits), then the
    /// session key from `r` when the version uses one (EMV common session key, byte 2
    /// F0 / 0F), then ISO 9797-1 MAC algorithm 3 over `padded`. Every key is a
    /// non-readable session object; only MAC intermediates reach the host.
    #[allow(clippy::too_many_arguments)]
    fn mac_check(
        &self,
        index: KeyIndex,
        pan: &Pan,
        psn: Psn,
        version: CryptogramVersion,
        r: Option<[u8; 8]>,
        padded: Vec<u8>,
        ac: [u8; 8],
    ) -> Result<bool, KeyStoreError> {
        super::option_a_covers(version.algorithm().master_key, index, pan)?;
        let y = option_a_data(pan, psn);
        self.workers.call(move |o: &Ops| {
            let imk = o.key("imk", index.to_string(), &labels::imk(index, "ac"))?;
            // A‖A is single DES under A as 3DES: MAC algorithm 3 is single-DES CBC
            // under A over all blocks but the last, then 3DES under A‖B.
            let halves = |d: &[u8; 16]| {
                let mut l = [0u8; 16];
                l[..8].copy_from_slice(&d[..8]);
                l[8..].copy_from_slice(&d[..8]);
                l
            };
            let (aa, ab, _mk) = match r {
                None => (
                    o.derive(imk, &halves(&y), KeyType::DES2, KeyUsage::ENCRYPT)?,
                    o.derive(imk, &y, KeyType::DES2, KeyUsage::ENCRYPT)?,
                    None,
                ),
                Some(r) => {
                    let mk = o.derive(imk, &y, KeyType::DES2, KeyUsage::DERIVE)?;
                    let mut d = [0u8; 16];
                    d[..8].copy_from_slice(&r);
                    d[2] = 0xF0;
                    d[8..].copy_from_slice(&r);
                    d[10] = 0x0F;
                    (
                        o.derive(mk.h, &halves(&d), KeyType::DES2, KeyUsage::ENCRYPT)?,
                        o.derive(mk.h, &d, KeyType::DES2, KeyUsage::ENCRYPT)?,
                        Some(mk),
                    )
                }
            };
            let (head, last) = padded.split_at(padded.len() - DES_BLOCK);
            let mut x = [0u8; 8];
            if !head.is_empty() {
                let c = o.encrypt(&Mechanism::Des3Cbc([0; 8]), aa.h, head)?;
                x.copy_from_slice(&c[c.len() - DES_BLOCK..]);
            }
            for (v, b) in x.iter_mut().zip(last) {
                *v ^= b;
            }
            let mac = o.encrypt(&Mechanism::Des3Ecb, ab.h, &x)?;
            Ok(mac.iter().zip(&ac).fold(0u8, |a, (p, q)| a | (p ^ q)) == 0)
        })
    }

    /// Whether the ICC master keys of every card product can reach the card without
    /// leaving the token: for SCP02 products the token must wrap keys under a DES key,
    /// tried with throw-away session keys (SoftHSM2 lists `CKF_WRAP` for DES mechanisms
    /// it refuses). A development store may read them out instead and always passes.
    /// The station checks this at start, so it is said before the first card.
    ///
    /// A production store also refuses a token whose station key (the labels of the
    /// module documentation) wraps and decrypts (or unwraps), can be read, or can be extracted:
    /// tokens written by earlier versions left those attributes to the token's defaults.
    /// Other keys on a shared partition (a bank's KEK or ZMK wraps and unwraps by
    /// design) are not the station's and are left alone.
    pub fn check_icc_key_wrapping(&self) -> Result<(), KeyStoreError> {
        if !self.workers.development {
            for (label, usage) in self.key_usages()? {
                if !labels::is_station_key(&label) {
                    continue;
                }
                let reason = if usage.unwraps_what_it_wraps() {
                    format!(
                        "key {label} may both wrap and decrypt (or unwrap) keys, so a key it \
                         wraps could be read on the host"
                    )
                } else if !usage.sensitive || usage.extractable {
                    format!(
                        "key {label} is {}, so its value could leave the token",
                        match (usage.sensitive, usage.extractable) {
                            (false, true) => "readable (CKA_SENSITIVE false) and extractable",
                            (false, false) => "readable (CKA_SENSITIVE false)",
                            _ => "extractable (CKA_EXTRACTABLE true)",
                        }
                    )
                } else {
                    continue;
                };
                return Err(KeyStoreError::Token {
                    token: self.workers.token.clone(),
                    reason: format!(
                        "{reason}; the token was written by an earlier version or by hand: \
                         write it again (station-agent keys init), or import the key again \
                         sensitive, not extractable, with CKA_DECRYPT and CKA_UNWRAP false \
                         (docs/keys.md, What each key may do)"
                    ),
                });
            }
        }
        let scp02 = self
            .transport
            .values()
            .any(|p| matches!(p.protocol, Protocol::Scp02 { .. }));
        if self.workers.development || !scp02 {
            return Ok(());
        }
        match self.workers.call(|o: &Ops| o.des_wrap_way())? {
            Some(way) => {
                self.workers.des_wrap.store(way as u8, Ordering::Relaxed);
                Ok(())
            }
            None => Err(KeyStoreError::Token {
                token: self.workers.token.clone(),
                reason: "cannot wrap keys under a DES key (C_WrapKey takes neither \
                         CKM_DES3_ECB nor CKM_DES3_CBC), so the ICC master keys of SCP02 card \
                         products cannot reach the card without leaving the HSM; use an HSM \
                         that can, or SCP03 card products"
                    .into(),
            }),
        }
    }

    fn issuer_modulus_len(&self, index: KeyIndex) -> Result<usize, KeyStoreError> {
        self.oda
            .get(&index)
            .map(|(_, n)| *n)
            .ok_or(KeyStoreError::Missing {
                kind: "oda",
                index: index.to_string(),
            })
    }

    /// Raw RSA (`CKM_RSA_X_509`) of a recovery block under the issuer private key.
    fn rsa_sign(&self, index: KeyIndex, block: &[u8]) -> Result<Vec<u8>, KeyStoreError> {
        let block = block.to_vec();
        self.workers.call(move |o: &Ops| {
            let key = o
                .find(ObjectClass::PRIVATE_KEY, &labels::oda_issuer(index))?
                .ok_or(KeyStoreError::Missing {
                    kind: "oda issuer private",
                    index: index.to_string(),
                })?;
            o.s.sign(&Mechanism::RsaX509, key, &block)
                .map_err(|e| o.err(e))
        })
    }

    /// Every secret key on the token: label, type and check value — never a value.
    pub fn list(&self) -> Result<Vec<KeyLabel>, KeyStoreError> {
        self.workers.call(|o: &Ops| {
            let mut handles = Vec::new();
            for class in [ObjectClass::SECRET_KEY, ObjectClass::PRIVATE_KEY] {
                handles.extend(
                    o.s.find_objects(&[Attribute::Class(class), Attribute::Token(true)])
                        .map_err(|e| o.err(e))?,
                );
            }
            let mut out = Vec::new();
            for h in handles {
                let attrs =
                    o.s.get_attributes(
                        h,
                        &[
                            AttributeType::Label,
                            AttributeType::KeyType,
                            AttributeType::CheckValue,
                        ],
                    )
                    .map_err(|e| o.err(e))?;
                let mut k = KeyLabel {
                    label: String::new(),
                    kind: String::new(),
                    kcv: String::new(),
                };
                for a in attrs {
                    match a {
                        Attribute::Label(l) => k.label = String::from_utf8_lossy(&l).into_owned(),
                        Attribute::KeyType(t) if t == KeyType::DES2 => k.kind = "DES2".into(),
                        Attribute::KeyType(t) if t == KeyType::DES3 => k.kind = "DES3".into(),
                        Attribute::KeyType(t) if t == KeyType::AES => k.kind = "AES".into(),
                        Attribute::KeyType(t) if t == KeyType::RSA => k.kind = "RSA".into(),
                        Attribute::KeyType(t) => k.kind = t.to_string(),
                        Attribute::CheckValue(v) => k.kcv = hex::encode_upper(&v[..v.len().min(3)]),
                        _ => {}
                    }
                }
                out.push(k);
            }
            out.sort_by(|a, b| a.label.cmp(&b.label));
            Ok(out)
        })
    }

    /// What each key on the token may do, by label, as the token says (the usage
    /// attributes of docs/keys.md's table).
    pub fn key_usages(&self) -> Result<Vec<(String, KeyUsage)>, KeyStoreError> {
        self.workers.call(|o: &Ops| {
            let mut out = Vec::new();
            for class in [ObjectClass::SECRET_KEY, ObjectClass::PRIVATE_KEY] {
                let handles =
                    o.s.find_objects(&[Attribute::Class(class), Attribute::Token(true)])
                        .map_err(|e| o.err(e))?;
                for h in handles {
                    let label = o.label(h)?;
                    out.push((label, o.usage(h)?));
                }
            }
            out.sort_by(|a, b| a.0.cmp(&b.0));
            Ok(out)
        })
    }

    /// What the session keys derived inside for card `kdd` of `product` may do, by
    /// role (`card DEK`, `S-DEK`, `card ENC`, `card MAC`, `ICC MK wrappable` from IMK 01), read
    /// back from the token. For the usage tests: these objects never outlive a call.
    #[doc(hidden)]
    pub fn session_key_usages_for_test(
        &self,
        product: &str,
        kdd: [u8; 10],
        sequence: Vec<u8>,
    ) -> Result<Vec<(&'static str, KeyUsage)>, KeyStoreError> {
        let p = self.product(product)?;
        let product = product.to_string();
        self.workers.call(move |o: &Ops| {
            let d = dek(o, &product, p.diversification, p.protocol, &kdd, &sequence)?;
            let mut out = Vec::new();
            if let Some(card) = &d.card {
                out.push(("card DEK", o.usage(card.h)?));
            }
            if let Some(session) = &d.session {
                out.push(("S-DEK", o.usage(session.h)?));
            }
            // The same calls as `session_keys` and `wrap.rs` make.
            for (role, name) in [(KeyRole::Enc, "card ENC"), (KeyRole::Mac, "card MAC")] {
                if let Some(k) = card_key(o, d.kmc, &kdd, p.diversification, p.protocol, role)? {
                    out.push((name, o.usage(k.h)?));
                }
            }
            let imk = o.key("imk", "01".into(), &labels::imk(KeyIndex(1), "ac"))?;
            let mk = icc_key_to_wrap(o, imk, &[0x11; 16], KeyType::DES2).map_err(|e| o.err(e))?;
            out.push(("ICC MK wrappable", o.usage(mk.h)?));
            Ok(out)
        })
    }

    /// Tries to decrypt `data` with the DEK derived for card `kdd` of `product` (the
    /// station's own DEK turned against what it wrapped): `None` when the token refuses
    /// (`CKR_KEY_FUNCTION_NOT_PERMITTED`). For the usage tests.
    #[doc(hidden)]
    pub fn decrypt_under_dek_for_test(
        &self,
        product: &str,
        kdd: [u8; 10],
        sequence: Vec<u8>,
        data: Vec<u8>,
    ) -> Result<Option<Vec<u8>>, KeyStoreError> {
        let p = self.product(product)?;
        let product = product.to_string();
        self.workers.call(move |o: &Ops| {
            let d = dek(o, &product, p.diversification, p.protocol, &kdd, &sequence)?;
            let mech = match p.protocol {
                Protocol::Scp02 { .. } => Mechanism::Des3Ecb,
                Protocol::Scp03 { .. } => Mechanism::AesCbc([0; 16]),
            };
            match o.s.decrypt(&mech, d.handle(), &data) {
                Ok(clear) => Ok(Some(clear)),
                Err(P11Error::Pkcs11(RvError::KeyFunctionNotPermitted, _)) => Ok(None),
                Err(e) => Err(o.err(e)),
            }
        })
    }

    /// Adds a key as versions before the usage attributes imported an undiversified
    /// SCP03 KMC (encrypt, wrap, derive, sign; the rest left to the token). For the
    /// test that a production store refuses such a token.
    #[doc(hidden)]
    pub fn import_as_earlier_versions_did_for_test(
        &self,
        label: &str,
        value: Vec<u8>,
    ) -> Result<(), KeyStoreError> {
        let label = label.to_string();
        let value = Zeroizing::new(value);
        self.workers.call(move |o: &Ops| {
            o.s.create_object(&[
                Attribute::Class(ObjectClass::SECRET_KEY),
                Attribute::KeyType(KeyType::AES),
                Attribute::Token(true),
                Attribute::Private(true),
                Attribute::Sensitive(true),
                Attribute::Extractable(false),
                Attribute::Label(label.as_bytes().to_vec()),
                Attribute::Value(value.to_vec()),
                Attribute::Derive(true),
                Attribute::Encrypt(true),
                Attribute::Wrap(true),
                Attribute::Sign(true),
            ])
            .map_err(|e| o.err(e))?;
            Ok(())
        })
    }

    /// Adds an AES key labelled `label` that may do `usage`, as a bank's own key on a
    /// shared partition or a key imported by hand would be. For the tests of what a
    /// production store refuses.
    #[doc(hidden)]
    pub fn import_with_usage_for_test(
        &self,
        label: &str,
        value: Vec<u8>,
        usage: KeyUsage,
    ) -> Result<(), KeyStoreError> {
        let label = label.to_string();
        let value = Zeroizing::new(value);
        self.workers.call(move |o: &Ops| {
            let mut template = vec![
                Attribute::Class(ObjectClass::SECRET_KEY),
                Attribute::KeyType(KeyType::AES),
                Attribute::Token(true),
                Attribute::Private(true),
                Attribute::Label(label.as_bytes().to_vec()),
                Attribute::Value(value.to_vec()),
            ];
            template.extend(usage.secret_template());
            let created = o.s.create_object(&template);
            for a in template.iter_mut() {
                if let Attribute::Value(v) = a {
                    zeroize::Zeroize::zeroize(v);
                }
            }
            created.map_err(|e| o.err(e))?;
            Ok(())
        })
    }

    fn product(&self, product: &str) -> Result<ProductChannel, KeyStoreError> {
        self.transport
            .get(product)
            .cloned()
            .ok_or_else(|| KeyStoreError::Missing {
                kind: "transport",
                index: product.to_string(),
            })
    }

    /// Whether the token holds any of the public development keys (by check value).
    pub fn holds_development_keys(&self) -> Result<bool, KeyStoreError> {
        let dev: Vec<String> = super::development_kcvs()
            .iter()
            .map(hex::encode_upper)
            .collect();
        Ok(self
            .list()?
            .iter()
            .any(|k| !k.kcv.is_empty() && dev.contains(&k.kcv)))
    }

    /// Keeps session `n` busy until the returned sender sends or is dropped (30 s at
    /// most), as a long HSM operation of one line would. For the pinning tests.
    #[doc(hidden)]
    pub fn hold_session_for_test(&self, n: usize) -> Result<mpsc::Sender<()>, KeyStoreError> {
        let (release, held) = mpsc::channel::<()>();
        let held = Mutex::new(held);
        self.workers.submit(
            Some(n),
            move |_: &Ops| {
                let _ = held
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .recv_timeout(std::time::Duration::from_secs(30));
                Ok(())
            },
            |_| {},
        )?;
        Ok(release)
    }

    /// Logs the token out as if it had been pulled and put back; the next operation
    /// must log in again. For the reconnection test.
    #[doc(hidden)]
    pub fn drop_sessions_for_test(&self) -> Result<(), KeyStoreError> {
        self.workers.call(|o: &Ops| {
            o.s.logout().map_err(|e| o.err(e))?;
            Ok(())
        })
    }
}

impl KeyStore for Pkcs11KeyStore {
    /// Reads the keys out of the token: development stations only (a token without DES
    /// key wrapping, comparisons with the software store); production uses
    /// [`KeyStore::icc_key_material`], which keeps them inside.
    fn derive_icc_master_keys(
        &self,
        index: KeyIndex,
        pan: &Pan,
        psn: Psn,
    ) -> Result<IccKeys, KeyStoreError> {
        if !self.workers.development {
            return Err(KeyStoreError::NotSupported(format!(
                "reading ICC master keys out of the HSM (issuer key {index}): they leave it \
                 only wrapped under the card's DEK"
            )));
        }
        let data = option_a_data(pan, psn);
        self.workers.call(move |o: &Ops| {
            let mut keys = Vec::new();
            for part in ["ac", "smi", "smc"] {
                let imk = o.key("imk", index.to_string(), &labels::imk(index, part))?;
                let mk = o.derive(imk, &data, KeyType::DES2, KeyUsage::READABLE)?;
                let v = o.value(mk.h)?;
                keys.push(SecretBytes::new(Zeroizing::new(with_odd_parity(&v))));
            }
            let mk_smc = keys.pop().expect("3");
            let mk_smi = keys.pop().expect("3");
            let mk_ac = keys.pop().expect("3");
            Ok(IccKeys {
                mk_ac,
                mk_smi,
                mk_smc,
            })
        })
    }

    /// Checks the IMKs and computes the ICC keys' check values inside (3DES of a zero
    /// block under each derived key); the keys themselves are derived again and wrapped
    /// under the card's DEK when the secure channel is open.
    fn icc_key_material(
        &self,
        method: MasterKeyDerivation,
        index: KeyIndex,
        pan: &Pan,
        psn: Psn,
    ) -> Result<IccKeyMaterial, KeyStoreError> {
        super::option_a_covers(method, index, pan)?;
        let sealed = SealedIccKeys {
            imk_index: index.0,
            derivation_data: option_a_data(pan, psn),
        };
        let keys = sealed.clone();
        let check_values = self.workers.call(move |o: &Ops| {
            let mut kcvs = Vec::with_capacity(9);
            for imk in imks(o, &keys)? {
                let mk = o.derive(imk, &keys.derivation_data, KeyType::DES2, KeyUsage::ENCRYPT)?;
                kcvs.extend_from_slice(&o.encrypt(&Mechanism::Des3Ecb, mk.h, &[0; 8])?[..3]);
            }
            Ok(kcvs)
        })?;
        Ok(IccKeyMaterial::Sealed {
            keys: sealed,
            check_values,
        })
    }

    fn cvv(
        &self,
        index: KeyIndex,
        pan: &Pan,
        exp: YearMonth,
        service_code: &ServiceCode,
    ) -> Result<Zeroizing<String>, KeyStoreError> {
        let data = cvv_data(pan, exp, service_code);
        self.workers.call(move |o: &Ops| {
            let a = o.key("cvk", index.to_string(), &labels::cvk_a(index))?;
            let ab = o.key("cvk", index.to_string(), &labels::cvk(index))?;
            let mut step = Zeroizing::new(o.encrypt(&Mechanism::Des3Ecb, a, &data[..8])?);
            for (x, b) in step.iter_mut().zip(&data[8..16]) {
                *x ^= b;
            }
            let out = Zeroizing::new(o.encrypt(&Mechanism::Des3Ecb, ab, &step)?);
            Ok(decimalize(&out, 3))
        })
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
        if version.algorithm().session_key != SessionKey::None {
            return Err(KeyStoreError::NotSupported(format!(
                "ARQC verification for {} without the transaction (session keys)",
                version.name()
            )));
        }
        let padded = match version.algorithm().padding {
            Padding::Zeros => pad_zero(data, DES_BLOCK),
            Padding::Method2 => pad80(data, DES_BLOCK),
        };
        self.mac_check(index, pan, psn, version, None, padded, *arqc)
    }

    fn verify_application_cryptogram(
        &self,
        index: KeyIndex,
        pan: &Pan,
        psn: Psn,
        c: &CardCryptogram<'_>,
    ) -> Result<bool, KeyStoreError> {
        let a = c.version.algorithm();
        let data = cryptogram_data(c.version, c.tx, c.iad)
            .map_err(|e| KeyStoreError::Crypto(e.to_string()))?;
        let padded = match a.padding {
            Padding::Zeros => pad_zero(&data, DES_BLOCK),
            Padding::Method2 => pad80(&data, DES_BLOCK),
        };
        let (atc, un) = (c.tx.atc, c.tx.unpredictable_number);
        let r = match a.session_key {
            SessionKey::None => None,
            SessionKey::EmvCommonAtc => Some([atc[0], atc[1], 0, 0, 0, 0, 0, 0]),
            SessionKey::MastercardAtcUn => Some([atc[0], atc[1], 0, 0, un[0], un[1], un[2], un[3]]),
        };
        self.mac_check(index, pan, psn, c.version, r, padded, c.ac)
    }

    /// Each call pins the card's personalization to one session (the one with the
    /// fewest pinned), held as long as the returned keys are.
    fn transport_keys(&self, card_product_id: &str) -> Result<TransportKeySet, KeyStoreError> {
        let p = self
            .transport
            .get(card_product_id)
            .ok_or_else(|| KeyStoreError::Missing {
                kind: "transport",
                index: card_product_id.to_string(),
            })?;
        Ok(TransportKeySet {
            kmc: TransportKey::Hsm(Arc::new(HsmTransport {
                lease: Lease::take(&self.workers),
                product: card_product_id.to_string(),
                method: p.diversification,
            })),
            diversification: p.diversification,
            protocol: p.protocol,
            kvn: p.kvn,
            isd: p.isd.clone(),
        })
    }

    fn ca_public_keys(&self) -> Vec<CaPublicKey> {
        self.ca.clone()
    }

    fn oda_issuer_key(&self, index: KeyIndex) -> Result<OdaIssuerKey, KeyStoreError> {
        self.oda
            .get(&index)
            .map(|(k, _)| k.clone())
            .ok_or(KeyStoreError::Missing {
                kind: "oda",
                index: index.to_string(),
            })
    }

    /// The ICC key pair is made on the host (see the module documentation); its
    /// certificate is signed inside with `CKM_RSA_X_509` under `oda.NN.issuer`.
    fn generate_icc_key(
        &self,
        index: KeyIndex,
        bits: u16,
        pan: &Pan,
        exp: YearMonth,
        static_data: &[u8],
    ) -> Result<IccRsaKey, KeyStoreError> {
        let n_i = self.issuer_modulus_len(index)?;
        super::certified_icc_key(n_i, bits, pan, exp, static_data, &|block| {
            self.rsa_sign(index, block)
        })
    }

    fn sign_static_data(
        &self,
        index: KeyIndex,
        dac: [u8; 2],
        static_data: &[u8],
    ) -> Result<Vec<u8>, KeyStoreError> {
        let n_i = self.issuer_modulus_len(index)?;
        let block = crate::oda::ssad_block(n_i, dac, static_data)
            .map_err(|e| KeyStoreError::Crypto(e.to_string()))?;
        self.rsa_sign(index, &block)
    }
}
