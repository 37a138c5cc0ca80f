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
//!
//! One worker thread per session (one session per production line) takes jobs from a
//! channel: PKCS#11 calls block. A job that finds the token gone (session closed,
//! device removed, not logged in) reconnects — finds the token by label again, logs in
//! with the PIN — and runs once more.
//!
//! What stays on the host, and why: PKCS#11 has no EMV retail-MAC or SCP02 C-MAC
//! mechanism, so the secure channel's *session* keys (S-ENC, S-MAC, S-DEK; for SCP03
//! the card's static DEK) are handed out for secure messaging, while the KMC and the
//! card's static keys stay inside. SoftHSM2 2.6 cannot wrap a DES key under a DES key
//! (`C_WrapKey` with `CKM_DES3_ECB` is missing), so the ICC master keys are derived
//! inside the token into extractable *session* objects, read once into zeroizing
//! memory for DGI 8000 and destroyed. A production HSM with `CKM_DES3_ECB` wrapping
//! would wrap them under the S-DEK instead; this store does not do that yet.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
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
use crate::crypto::{pad80, pad_zero, with_odd_parity, CryptoError, DES_BLOCK};
use crate::data::cryptogram::{cryptogram_data, CardCryptogram, Padding, SessionKey};
use crate::data::cvv::decimalize;
use crate::data::derive::{bcd, MasterKeyDerivation, Psn, ServiceCode};
use crate::data::profile::CryptogramVersion;
use crate::gp::diversify::{derivation_data, Diversification, KeyRole};
use crate::gp::scp::{
    scp02_derivation_data, scp03_kdf_input, HsmCardKeys, Protocol, SessionKeyValues,
    SCP02_CONSTANTS,
};

use super::{
    parse_diversification, IccKeys, KeyIndex, KeyStore, KeyStoreError, OdaIssuerKey, SecretBytes,
    TransportKey, TransportKeySet,
};

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

/// `CKM_DES3_ECB_ENCRYPT_DATA` (PKCS#11 2.40 §2.10.10), which `cryptoki` does not name.
// The one unsafe block of this crate: an FFI constant `cryptoki` has no safe constructor for.
#[allow(unsafe_code)]
fn des3_ecb_encrypt_data() -> MechanismType {
    // SAFETY: `MechanismType` is `#[repr(transparent)]` over `CK_MECHANISM_TYPE` and
    // holds no invariant beyond the value; this is the FFI constant for the mechanism.
    unsafe {
        std::mem::transmute::<cryptoki_sys::CK_MECHANISM_TYPE, MechanismType>(
            cryptoki_sys::CKM_DES3_ECB_ENCRYPT_DATA,
        )
    }
}

/// Modules are initialized once per process and shared by every store using them.
fn module(path: &Path) -> Result<Pkcs11, KeyStoreError> {
    static MODULES: OnceLock<Mutex<BTreeMap<PathBuf, Pkcs11>>> = OnceLock::new();
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
    /// AES) object. `readable` objects can be read once (SoftHSM2's stand-in for
    /// wrapping); the others never leave the token.
    fn derive(
        &self,
        base: ObjectHandle,
        data: &[u8; 16],
        key_type: KeyType,
        readable: bool,
    ) -> Result<Temp<'a>, KeyStoreError> {
        let params = KeyDerivationStringData::new(data);
        let mech = Mechanism::VendorDefined(VendorDefinedMechanism::new(
            des3_ecb_encrypt_data(),
            Some(&params),
        ));
        let mut template = vec![
            Attribute::Class(ObjectClass::SECRET_KEY),
            Attribute::KeyType(key_type),
            Attribute::Token(false),
            Attribute::Sensitive(!readable),
            Attribute::Extractable(readable),
            Attribute::Encrypt(true),
            // An ICC master key derives its session keys inside too.
            Attribute::Derive(!readable),
        ];
        if key_type == KeyType::AES {
            template.push(Attribute::ValueLen(16.into()));
            template.push(Attribute::Sign(true));
        }
        let h = self
            .s
            .derive_key(&mech, base, &template)
            .map_err(|e| self.err(e))?;
        Ok(Temp { s: self.s, h })
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

/// The per-card key source of one card product, answered by the store's workers.
struct HsmTransport {
    store: Arc<Workers>,
    product: String,
    method: Diversification,
}

impl HsmCardKeys for HsmTransport {
    fn session_keys(
        &self,
        protocol: Protocol,
        kdd: &[u8; 10],
        sequence: &[u8],
        context: &[u8],
    ) -> Result<SessionKeyValues, CryptoError> {
        let label = format!("transport.{}.kmc", self.product);
        let product = self.product.clone();
        let method = self.method;
        let kdd = *kdd;
        let sequence = sequence.to_vec();
        let context = context.to_vec();
        self.store
            .call(move |o: &Ops| {
                let kmc = o.key("transport", product.clone(), &label)?;
                let aes = matches!(protocol, Protocol::Scp03 { .. });
                let key_type = if aes { KeyType::AES } else { KeyType::DES2 };
                // The card's static keys: derived inside, never readable — except the
                // SCP03 DEK, which is the session DEK there.
                let card = |role: KeyRole| -> Result<Option<Temp>, KeyStoreError> {
                    match derivation_data(&kdd, method, role) {
                        None => Ok(None),
                        Some(d) => {
                            let readable = aes && role == KeyRole::Dek;
                            o.derive(kmc, &d, key_type, readable).map(Some)
                        }
                    }
                };
                let keys = [
                    card(KeyRole::Enc)?,
                    card(KeyRole::Mac)?,
                    card(KeyRole::Dek)?,
                ];
                let handle = |i: usize| keys[i].as_ref().map(|t| t.h).unwrap_or(kmc);
                match protocol {
                    Protocol::Scp02 { .. } => {
                        if sequence.len() != 2 {
                            return Err(KeyStoreError::Crypto(
                                "SCP02 sequence counter must be 2 bytes".into(),
                            ));
                        }
                        let mut out = Vec::new();
                        for (i, c) in SCP02_CONSTANTS.iter().enumerate() {
                            let d = scp02_derivation_data(*c, &sequence);
                            out.push(Zeroizing::new(o.encrypt(
                                &Mechanism::Des3Cbc([0; 8]),
                                handle(i),
                                &d,
                            )?));
                        }
                        let dek = out.pop().expect("3");
                        let mac = out.pop().expect("3");
                        let enc = out.pop().expect("3");
                        Ok(SessionKeyValues { enc, mac, dek })
                    }
                    Protocol::Scp03 { .. } => {
                        let kdf = |h: ObjectHandle, constant: u8| {
                            o.cmac(h, &scp03_kdf_input(constant, 128, 1, &context))
                                .map(Zeroizing::new)
                        };
                        let dek =
                            match &keys[2] {
                                Some(t) => o.value(t.h)?,
                                None => return Err(KeyStoreError::NotSupported(
                                    "SCP03 with an undiversified KMC in the HSM (the static DEK \
                                     would have to leave it)"
                                        .into(),
                                )),
                            };
                        Ok(SessionKeyValues {
                            enc: kdf(handle(0), 0x04)?,
                            mac: kdf(handle(1), 0x06)?,
                            dek,
                        })
                    }
                }
            })
            .map_err(|e| CryptoError::Hsm(e.to_string()))
    }
}

/// The worker threads and the channel they take jobs from.
struct Workers {
    jobs: Mutex<Option<mpsc::Sender<Job>>>,
    threads: Mutex<Vec<std::thread::JoinHandle<()>>>,
    token: String,
}

impl Workers {
    fn call<T: Send + 'static>(
        &self,
        op: impl Fn(&Ops) -> Result<T, KeyStoreError> + Send + 'static,
    ) -> Result<T, KeyStoreError> {
        let (tx, rx) = mpsc::channel();
        let job: Job = Box::new(move |c: &mut Connection| {
            let _ = tx.send(c.run(&op));
        });
        let gone = || KeyStoreError::Token {
            token: self.token.clone(),
            reason: "the key store is shut down".into(),
        };
        self.jobs
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .as_ref()
            .ok_or_else(gone)?
            .send(job)
            .map_err(|_| gone())?;
        rx.recv().map_err(|_| gone())?
    }
}

impl Drop for Workers {
    fn drop(&mut self) {
        self.jobs.lock().unwrap_or_else(|p| p.into_inner()).take();
        for t in self
            .threads
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .drain(..)
        {
            let _ = t.join();
        }
    }
}

/// Issuer keys in a PKCS#11 token (labels in the module documentation).
pub struct Pkcs11KeyStore {
    workers: Arc<Workers>,
    transport: BTreeMap<String, TransportKeySet>,
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
        let (tx, rx) = mpsc::channel::<Job>();
        let rx = Arc::new(Mutex::new(rx));
        let mut threads = Vec::new();
        for n in 0..cfg.sessions.max(1) {
            let mut conn = Connection {
                module: module.clone(),
                token: cfg.token.clone(),
                pin: pin.clone(),
                session: None,
            };
            // Log in now so a wrong PIN or a missing token shows at start, not at the first card.
            conn.session()?;
            let rx = rx.clone();
            let t = std::thread::Builder::new()
                .name(format!("hsm-{n}"))
                .spawn(move || loop {
                    let job = match rx.lock().unwrap_or_else(|p| p.into_inner()).recv() {
                        Ok(j) => j,
                        Err(_) => break,
                    };
                    job(&mut conn);
                })
                .map_err(|e| KeyStoreError::Hsm(format!("cannot start an HSM thread: {e}")))?;
            threads.push(t);
        }
        let workers = Arc::new(Workers {
            jobs: Mutex::new(Some(tx)),
            threads: Mutex::new(threads),
            token: cfg.token.clone(),
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
                if let Some(product) = label.strip_prefix("transport.") {
                    out.push((
                        product.to_string(),
                        String::from_utf8_lossy(&value).into_owned(),
                    ));
                }
            }
            Ok(out)
        })?;
        let mut transport = BTreeMap::new();
        for (product, text) in params {
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
            let set = TransportKeySet {
                kmc: TransportKey::Hsm(Arc::new(HsmTransport {
                    store: workers.clone(),
                    product: product.clone(),
                    method: diversification,
                })),
                diversification,
                protocol,
                kvn: byte("kvn", &p.kvn)?,
                isd,
            };
            transport.insert(product, set);
        }
        Ok(Pkcs11KeyStore { workers, transport })
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
        if version.algorithm().master_key == MasterKeyDerivation::OptionB && pan.digits().len() > 16
        {
            return Err(KeyStoreError::NotSupported(format!(
                "EMV Option B ICC master key derivation for a PAN of {} digits in the HSM",
                pan.digits().len()
            )));
        }
        let y = option_a_data(pan, psn);
        self.workers.call(move |o: &Ops| {
            let imk = o.key("imk", index.to_string(), &imk_label(index, "ac"))?;
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
                    o.derive(imk, &halves(&y), KeyType::DES2, false)?,
                    o.derive(imk, &y, KeyType::DES2, false)?,
                    None,
                ),
                Some(r) => {
                    let mk = o.derive(imk, &y, KeyType::DES2, false)?;
                    let mut d = [0u8; 16];
                    d[..8].copy_from_slice(&r);
                    d[2] = 0xF0;
                    d[8..].copy_from_slice(&r);
                    d[10] = 0x0F;
                    (
                        o.derive(mk.h, &halves(&d), KeyType::DES2, false)?,
                        o.derive(mk.h, &d, KeyType::DES2, false)?,
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

    /// Every secret key on the token: label, type and check value — never a value.
    pub fn list(&self) -> Result<Vec<KeyLabel>, KeyStoreError> {
        self.workers.call(|o: &Ops| {
            let handles =
                o.s.find_objects(&[
                    Attribute::Class(ObjectClass::SECRET_KEY),
                    Attribute::Token(true),
                ])
                .map_err(|e| o.err(e))?;
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

/// Label of one of the three IMKs at `index` (`ac`, `smi`, `smc`).
fn imk_label(index: KeyIndex, part: &str) -> String {
    format!("imk.{index}.{part}")
}

impl KeyStore for Pkcs11KeyStore {
    fn derive_icc_master_keys(
        &self,
        index: KeyIndex,
        pan: &Pan,
        psn: Psn,
    ) -> Result<IccKeys, KeyStoreError> {
        let data = option_a_data(pan, psn);
        self.workers.call(move |o: &Ops| {
            let mut keys = Vec::new();
            for part in ["ac", "smi", "smc"] {
                let imk = o.key("imk", index.to_string(), &imk_label(index, part))?;
                let mk = o.derive(imk, &data, KeyType::DES2, true)?;
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

    fn cvv(
        &self,
        index: KeyIndex,
        pan: &Pan,
        exp: YearMonth,
        service_code: &ServiceCode,
    ) -> Result<Zeroizing<String>, KeyStoreError> {
        let mut digits = Zeroizing::new(format!(
            "{}{}{}",
            pan.digits(),
            exp.to_yymm(),
            service_code.digits()
        ));
        while digits.len() < 32 {
            digits.push('0');
        }
        let data = Zeroizing::new(bcd(&digits));
        self.workers.call(move |o: &Ops| {
            let a = o.key("cvk", index.to_string(), &format!("cvk.{index}.a"))?;
            let ab = o.key("cvk", index.to_string(), &format!("cvk.{index}"))?;
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
        Err(KeyStoreError::NotSupported(format!(
            "offline data authentication keys in the PKCS#11 store (odaKeyIndex {index})"
        )))
    }
}

/// What [`write_dev_token`] wrote.
#[derive(Debug, Clone)]
pub struct DevToken {
    /// SoftHSM2 configuration (its token directory beside it); point `SOFTHSM2_CONF` here.
    pub softhsm2_conf: PathBuf,
    /// User PIN file (mode 0600).
    pub pin_file: PathBuf,
    /// Token label.
    pub token: String,
}

/// One key to import: label, type, value and what it may do.
pub(crate) struct ImportKey {
    pub label: String,
    pub key_type: KeyType,
    pub value: SecretBytes,
    pub derive: bool,
    pub encrypt: bool,
}

fn write_secret(path: &Path, text: &str) -> Result<(), KeyStoreError> {
    use std::io::Write;
    let err = |e: std::io::Error| KeyStoreError::File {
        path: path.to_path_buf(),
        reason: e.to_string(),
    };
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let mut f = opts.open(path).map_err(err)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        f.set_permissions(std::fs::Permissions::from_mode(0o600))
            .map_err(err)?;
    }
    f.write_all(text.as_bytes()).map_err(err)
}

/// Writes a SoftHSM2 token under `dir` (configuration `dir/softhsm2.conf`, tokens in
/// `dir/tokens`, user PIN in `dir/hsm.pin`) and imports the development keys as
/// non-extractable objects.
pub fn write_dev_token(
    dir: &Path,
    module_path: &Path,
    token: &str,
) -> Result<DevToken, KeyStoreError> {
    write_softhsm2_token(
        dir,
        module_path,
        token,
        &super::software::development_store()?,
    )
}

/// Writes a SoftHSM2 token under `dir` as [`write_dev_token`] does, importing the keys
/// of a software key store (labels in the module documentation): how a development or
/// test bench moves a key file into a token. Sets `SOFTHSM2_CONF` to `dir/softhsm2.conf`, which SoftHSM2
/// reads when it is first loaded: call this before anything else loads it in the process.
pub fn write_softhsm2_token(
    dir: &Path,
    module_path: &Path,
    token: &str,
    keys: &super::SoftwareKeyStore,
) -> Result<DevToken, KeyStoreError> {
    let io = |p: &Path, e: std::io::Error| KeyStoreError::File {
        path: p.to_path_buf(),
        reason: e.to_string(),
    };
    let tokens = dir.join("tokens");
    std::fs::create_dir_all(&tokens).map_err(|e| io(&tokens, e))?;
    let conf = dir.join("softhsm2.conf");
    std::fs::write(
        &conf,
        format!(
            "directories.tokendir = {}\nobjectstore.backend = file\nlog.level = ERROR\nslots.removable = false\n",
            tokens.display()
        ),
    )
    .map_err(|e| io(&conf, e))?;
    std::env::set_var("SOFTHSM2_CONF", &conf);
    let pin_file = dir.join("hsm.pin");
    let user_pin = Zeroizing::new(format!("{:08}", rand::random::<u32>() % 100_000_000));
    let so_pin = Zeroizing::new(format!("{:08}", rand::random::<u32>() % 100_000_000));
    write_secret(&pin_file, &format!("{}\n", user_pin.as_str()))?;

    let m = module(module_path)?;
    let slot = match find_slot(&m, token) {
        Ok(s) => s,
        Err(_) => m
            .get_slots_with_token()
            .map_err(hsm)?
            .into_iter()
            .find(|s| {
                m.get_token_info(*s)
                    .map(|i| !i.token_initialized())
                    .unwrap_or(false)
            })
            .ok_or_else(|| KeyStoreError::Token {
                token: token.to_string(),
                reason: "no free slot to initialize a token in".into(),
            })?,
    };
    let so = AuthPin::from(so_pin.as_str().to_string());
    m.init_token(slot, &so, token).map_err(hsm)?;
    // The token is re-initialized: find its (possibly new) slot again.
    let slot = find_slot(&m, token)?;
    let s = m.open_rw_session(slot).map_err(hsm)?;
    s.login(UserType::So, Some(&so)).map_err(hsm)?;
    s.init_pin(&AuthPin::from(user_pin.as_str().to_string()))
        .map_err(hsm)?;
    s.logout().map_err(hsm)?;
    s.login(
        UserType::User,
        Some(&AuthPin::from(user_pin.as_str().to_string())),
    )
    .map_err(hsm)?;
    for k in keys.import_keys() {
        let kcv = match k.key_type {
            t if t == KeyType::AES => crate::crypto::aes_kcv(k.value.expose()),
            _ => crate::crypto::tdes_kcv(k.value.expose()),
        }
        .map_err(|e| KeyStoreError::Crypto(e.to_string()))?;
        let mut template = vec![
            Attribute::Class(ObjectClass::SECRET_KEY),
            Attribute::KeyType(k.key_type),
            Attribute::Token(true),
            Attribute::Private(true),
            Attribute::Sensitive(true),
            Attribute::Extractable(false),
            Attribute::Label(k.label.as_bytes().to_vec()),
            Attribute::Value(k.value.expose().to_vec()),
            Attribute::CheckValue(kcv.to_vec()),
            Attribute::Derive(k.derive),
            Attribute::Encrypt(k.encrypt),
        ];
        if k.key_type == KeyType::AES {
            template.push(Attribute::Sign(k.encrypt));
        }
        let created = s.create_object(&template);
        // The template's copy of the value is wiped whatever happened.
        for a in template.iter_mut() {
            if let Attribute::Value(v) = a {
                zeroize::Zeroize::zeroize(v);
            }
        }
        created.map_err(|e| KeyStoreError::Hsm(format!("importing {}: {e}", k.label)))?;
    }
    for (product, params) in keys.transport_params() {
        s.create_object(&[
            Attribute::Class(ObjectClass::DATA),
            Attribute::Token(true),
            Attribute::Private(true),
            Attribute::Label(format!("transport.{product}").into_bytes()),
            Attribute::Value(params.into_bytes()),
        ])
        .map_err(|e| KeyStoreError::Hsm(format!("importing transport.{product}: {e}")))?;
    }
    Ok(DevToken {
        softhsm2_conf: conf,
        pin_file,
        token: token.to_string(),
    })
}
