//! GlobalPlatform secure channels SCP02 and SCP03, transport-agnostic.
//!
//! What both ends share: keys, session key derivation, cryptograms and MAC chaining.
//! The station's end is [`super::host::HostChannel`]; the card's end (for the simulated
//! card only) is `super::card::CardChannel`, compiled with the `card` feature.

use serde::{Deserialize, Serialize};
use station_hal::TransportError;
use thiserror::Error;
use zeroize::Zeroizing;

use crate::crypto::{
    aes_cbc_decrypt, aes_cbc_encrypt, aes_cmac, aes_ecb_encrypt, des_ecb_encrypt, pad80,
    retail_mac, tdes_cbc_decrypt, tdes_cbc_encrypt, tdes_cbc_mac, tdes_ecb_decrypt,
    tdes_ecb_encrypt, CryptoError, AES_BLOCK, DES_BLOCK,
};
use crate::dgi::SealedIccKeys;
use crate::gp::diversify::{self, Diversification, KeyRole};
use crate::gp::Command;

/// A secure channel failure, naming the step.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum ScError {
    /// The chip link failed.
    #[error(transparent)]
    Transport(#[from] TransportError),
    /// A key or block had the wrong size.
    #[error("secure channel crypto: {0}")]
    Crypto(#[from] CryptoError),
    /// The card refused a command.
    #[error("{command} refused by the card: SW {sw:04X} ({meaning})")]
    Refused {
        /// Which command.
        command: &'static str,
        /// Status word.
        sw: u16,
        /// Its meaning.
        meaning: &'static str,
    },
    /// The card's cryptogram does not match: the transport keys are not this card's.
    #[error("card keys do not match the transport key (card cryptogram mismatch)")]
    CardCryptogram,
    /// The host's cryptogram or a C-MAC did not verify (card side).
    #[error("host authentication failed: {0}")]
    HostAuth(&'static str),
    /// The card answered something that is not a valid INITIALIZE UPDATE response.
    #[error("malformed INITIALIZE UPDATE response: {0}")]
    Malformed(String),
    /// The card runs a different protocol than configured.
    #[error("card uses SCP{card:02X}, the transport key is for SCP{configured:02X}")]
    ProtocolMismatch {
        /// Protocol in the card's response.
        card: u8,
        /// Protocol configured.
        configured: u8,
    },
}

impl ScError {
    /// Stable code.
    pub fn code(&self) -> &'static str {
        match self {
            ScError::Transport(_) => "SC_TRANSPORT",
            ScError::Crypto(_) => "SC_CRYPTO",
            ScError::Refused { .. } => "SC_REFUSED",
            ScError::CardCryptogram => "SC_CARD_CRYPTOGRAM",
            ScError::HostAuth(_) => "SC_HOST_AUTH",
            ScError::Malformed(_) => "SC_MALFORMED",
            ScError::ProtocolMismatch { .. } => "SC_PROTOCOL_MISMATCH",
        }
    }
}

/// Which secure channel protocol and its `i` parameter.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "scp", rename_all = "lowercase")]
pub enum Protocol {
    /// SCP02 with its i parameter (0x15, 0x55).
    Scp02 {
        /// i parameter.
        i: u8,
    },
    /// SCP03 with its i parameter (0x00, 0x10, 0x70).
    Scp03 {
        /// i parameter.
        i: u8,
    },
}

impl Protocol {
    pub(super) fn id(self) -> u8 {
        match self {
            Protocol::Scp02 { .. } => 0x02,
            Protocol::Scp03 { .. } => 0x03,
        }
    }
}

/// Security level of the session (EXTERNAL AUTHENTICATE P1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct SecurityLevel(pub u8);

impl SecurityLevel {
    /// C-MAC only.
    pub const CMAC: SecurityLevel = SecurityLevel(0x01);
    /// C-DEC and C-MAC.
    pub const CDEC_CMAC: SecurityLevel = SecurityLevel(0x03);

    pub(super) fn mac(self) -> bool {
        self.0 & 0x01 != 0
    }
    pub(super) fn enc(self) -> bool {
        self.0 & 0x02 != 0
    }
}

/// The card's static secure channel keys. Zeroized on drop; `Debug` redacted.
#[derive(Clone)]
pub struct StaticKeys {
    /// ENC key.
    pub enc: Zeroizing<Vec<u8>>,
    /// MAC key.
    pub mac: Zeroizing<Vec<u8>>,
    /// DEK.
    pub dek: Zeroizing<Vec<u8>>,
}

impl std::fmt::Debug for StaticKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "StaticKeys(<redacted, {} bytes>)", self.enc.len())
    }
}

impl StaticKeys {
    /// Three keys given directly.
    pub fn new(enc: &[u8], mac: &[u8], dek: &[u8]) -> Self {
        StaticKeys {
            enc: Zeroizing::new(enc.to_vec()),
            mac: Zeroizing::new(mac.to_vec()),
            dek: Zeroizing::new(dek.to_vec()),
        }
    }
}

/// Session keys of one secure channel as an HSM hands them out: the card's static keys,
/// the KMC they come from and the DEK stay inside it. Zeroized on drop.
pub struct SessionKeyValues {
    /// S-ENC.
    pub enc: Zeroizing<Vec<u8>>,
    /// S-MAC.
    pub mac: Zeroizing<Vec<u8>>,
}

/// What an HSM answers with, later: its calls run on its own threads, so the async
/// personalization awaits them instead of blocking an executor thread.
pub type HsmFuture<T> =
    std::pin::Pin<Box<dyn std::future::Future<Output = Result<T, CryptoError>> + Send>>;

/// The data of one sensitive DGI, to be encrypted under the session's DEK inside the HSM.
pub enum SensitiveData {
    /// Clear data, already padded to the cipher block when the profile asks for it.
    Clear(Zeroizing<Vec<u8>>),
    /// ICC master keys that exist only inside the HSM: it derives them again and wraps
    /// them under the DEK; `pad` appends the `80 00…` block, encrypted there too.
    IccKeys {
        /// How the HSM derives them.
        keys: SealedIccKeys,
        /// Whether the profile pads the DGI.
        pad: bool,
    },
}

impl std::fmt::Debug for SensitiveData {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SensitiveData::Clear(d) => write!(f, "SensitiveData::Clear({} bytes)", d.len()),
            SensitiveData::IccKeys { pad, .. } => write!(f, "SensitiveData::IccKeys(pad {pad})"),
        }
    }
}

/// Card keys held in an HSM: it diversifies them from the KMC for the card's KDD and
/// derives the session keys there.
pub trait HsmCardKeys: Send + Sync {
    /// S-ENC and S-MAC for the card with `kdd`: SCP02 uses `sequence` (the card's
    /// sequence counter), SCP03 `context` (host challenge ‖ card challenge).
    fn session_keys(
        &self,
        protocol: Protocol,
        kdd: &[u8; 10],
        sequence: &[u8],
        context: &[u8],
    ) -> HsmFuture<SessionKeyValues>;

    /// Encrypts sensitive DGI data under the session DEK (SCP02: S-DEK from the card's
    /// DEK and `sequence`, 3DES ECB; SCP03: the card's static DEK, AES CBC with a zero
    /// ICV per DGI) without the DEK leaving the HSM; one result per item, in order.
    fn encrypt_sensitive(
        &self,
        protocol: Protocol,
        kdd: &[u8; 10],
        sequence: &[u8],
        items: Vec<SensitiveData>,
    ) -> HsmFuture<Vec<Vec<u8>>>;

    /// The HSM session this card's personalization is pinned to, when the HSM has several.
    fn session(&self) -> Option<usize> {
        None
    }
}

/// Where the card's static keys come from. `Debug` names the kind only, never a key.
#[derive(Clone)]
pub enum KeySource {
    /// Static keys as they are in the card.
    Static(StaticKeys),
    /// A master key diversified per card with the KDD the card returns.
    Kmc {
        /// Master key (3DES).
        kmc: Zeroizing<Vec<u8>>,
        /// Method.
        method: Diversification,
    },
    /// Card keys that never leave an HSM (see [`HsmCardKeys`]).
    Hsm(std::sync::Arc<dyn HsmCardKeys>),
}

impl std::fmt::Debug for KeySource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            KeySource::Static(k) => write!(f, "KeySource::Static({k:?})"),
            KeySource::Kmc { method, .. } => {
                write!(f, "KeySource::Kmc(<redacted>, {method:?})")
            }
            KeySource::Hsm(_) => f.write_str("KeySource::Hsm"),
        }
    }
}

impl KeySource {
    /// The card's static keys for this KDD.
    pub fn card_keys(&self, kdd: &[u8; 10]) -> Result<StaticKeys, CryptoError> {
        match self {
            KeySource::Static(k) => Ok(k.clone()),
            KeySource::Kmc { kmc, method } => {
                let d = |r| diversify::derive(kmc, kdd, *method, r).map(Zeroizing::new);
                Ok(StaticKeys {
                    enc: d(KeyRole::Enc)?,
                    mac: d(KeyRole::Mac)?,
                    dek: d(KeyRole::Dek)?,
                })
            }
            KeySource::Hsm(_) => Err(CryptoError::Hsm(
                "the card's static keys stay in the HSM; ask it for session keys".into(),
            )),
        }
    }
}

/// Session parameters the host chooses.
#[derive(Debug, Clone, Copy)]
pub struct ScpParams {
    /// Protocol expected from the card.
    pub protocol: Protocol,
    /// Key version number (00 = the card's default).
    pub kvn: u8,
    /// Security level requested.
    pub level: SecurityLevel,
}

/// The card's answer to INITIALIZE UPDATE, split into its fields.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InitUpdateResponse {
    /// Key diversification data.
    pub kdd: [u8; 10],
    /// Key version number.
    pub kvn: u8,
    /// Protocol id (02 or 03).
    pub scp: u8,
    /// SCP02 sequence counter (2 bytes) or SCP03 counter (3 bytes, may be empty).
    pub sequence: Vec<u8>,
    /// Card challenge (SCP02: 6 bytes, SCP03: 8 bytes).
    pub card_challenge: Vec<u8>,
    /// Card cryptogram (8 bytes).
    pub card_cryptogram: [u8; 8],
}

impl InitUpdateResponse {
    /// Parses the response data (without SW).
    pub fn parse(d: &[u8]) -> Result<Self, ScError> {
        if d.len() < 28 {
            return Err(ScError::Malformed(format!("{} bytes", d.len())));
        }
        let kdd: [u8; 10] = d[..10].try_into().expect("10");
        let kvn = d[10];
        let scp = d[11];
        match scp {
            0x02 => Ok(InitUpdateResponse {
                kdd,
                kvn,
                scp,
                sequence: d[12..14].to_vec(),
                card_challenge: d[14..20].to_vec(),
                card_cryptogram: d[20..28].try_into().expect("8"),
            }),
            0x03 if d.len() >= 29 => Ok(InitUpdateResponse {
                kdd,
                kvn,
                scp,
                card_challenge: d[13..21].to_vec(),
                card_cryptogram: d[21..29].try_into().expect("8"),
                sequence: d[29..].to_vec(),
            }),
            other => Err(ScError::Malformed(format!("unknown SCP id {other:02X}"))),
        }
    }

    /// Encodes (card side).
    pub fn to_bytes(&self, i: u8) -> Vec<u8> {
        let mut out = self.kdd.to_vec();
        out.push(self.kvn);
        out.push(self.scp);
        if self.scp == 0x02 {
            out.extend_from_slice(&self.sequence);
            out.extend_from_slice(&self.card_challenge);
            out.extend_from_slice(&self.card_cryptogram);
        } else {
            out.push(i);
            out.extend_from_slice(&self.card_challenge);
            out.extend_from_slice(&self.card_cryptogram);
            out.extend_from_slice(&self.sequence);
        }
        out
    }
}

/// Session keys of one secure channel session. Zeroized on drop.
pub(super) struct SessionKeys {
    enc: Zeroizing<Vec<u8>>,
    mac: Zeroizing<Vec<u8>>,
    /// SCP02: session DEK; SCP03: the static DEK (SCP03 has no session DEK).
    dek: Zeroizing<Vec<u8>>,
}

fn scp02_session_key(key: &[u8], constant: [u8; 2], seq: &[u8]) -> Result<Vec<u8>, CryptoError> {
    tdes_cbc_encrypt(key, &[0; 8], &scp02_derivation_data(constant, seq))
}

/// NIST SP 800-108 KDF in counter mode with AES-CMAC, as SCP03 defines its inputs.
fn scp03_kdf(key: &[u8], constant: u8, bits: u16, context: &[u8]) -> Result<Vec<u8>, CryptoError> {
    let mut out = Vec::new();
    let mut counter = 1u8;
    while out.len() * 8 < bits as usize {
        let input = scp03_kdf_input(constant, bits, counter, context);
        out.extend_from_slice(&aes_cmac(key, &input)?);
        counter += 1;
    }
    out.truncate(bits as usize / 8);
    Ok(out)
}

pub(super) struct Cryptograms {
    pub(super) card: [u8; 8],
    pub(super) host: [u8; 8],
}

pub(super) fn derive_session(
    protocol: Protocol,
    keys: &StaticKeys,
    host_challenge: &[u8; 8],
    iu: &InitUpdateResponse,
) -> Result<(SessionKeys, Cryptograms), CryptoError> {
    let s = match protocol {
        Protocol::Scp02 { .. } => {
            let seq = &iu.sequence;
            SessionKeys {
                enc: Zeroizing::new(scp02_session_key(&keys.enc, [0x01, 0x82], seq)?),
                mac: Zeroizing::new(scp02_session_key(&keys.mac, [0x01, 0x01], seq)?),
                dek: Zeroizing::new(scp02_session_key(&keys.dek, [0x01, 0x81], seq)?),
            }
        }
        Protocol::Scp03 { .. } => {
            let ctx = [&host_challenge[..], &iu.card_challenge[..]].concat();
            let bits = (keys.enc.len() * 8) as u16;
            SessionKeys {
                enc: Zeroizing::new(scp03_kdf(&keys.enc, 0x04, bits, &ctx)?),
                mac: Zeroizing::new(scp03_kdf(&keys.mac, 0x06, bits, &ctx)?),
                dek: keys.dek.clone(),
            }
        }
    };
    let c = cryptograms(protocol, &s, host_challenge, iu)?;
    Ok((s, c))
}

/// The host's end of the session: from static keys, or from an HSM that keeps them
/// (then the session's DEK stays in the HSM and the returned keys hold none).
pub(super) async fn host_session(
    protocol: Protocol,
    keys: &KeySource,
    host_challenge: &[u8; 8],
    iu: &InitUpdateResponse,
) -> Result<(SessionKeys, Cryptograms), CryptoError> {
    match keys {
        KeySource::Hsm(hsm) => {
            let ctx = [&host_challenge[..], &iu.card_challenge[..]].concat();
            let v = hsm
                .session_keys(protocol, &iu.kdd, &iu.sequence, &ctx)
                .await?;
            let s = SessionKeys {
                enc: v.enc,
                mac: v.mac,
                dek: Zeroizing::new(Vec::new()),
            };
            let c = cryptograms(protocol, &s, host_challenge, iu)?;
            Ok((s, c))
        }
        other => derive_session(protocol, &other.card_keys(&iu.kdd)?, host_challenge, iu),
    }
}

/// SCP02 session key: 3DES CBC (zero ICV) of `constant ‖ sequence ‖ 00…` under `key`.
pub fn scp02_derivation_data(constant: [u8; 2], seq: &[u8]) -> [u8; 16] {
    let mut d = [0u8; 16];
    d[..2].copy_from_slice(&constant);
    d[2..4].copy_from_slice(seq);
    d
}

/// The SCP02 constants of S-ENC, S-MAC and S-DEK.
pub const SCP02_CONSTANTS: [[u8; 2]; 3] = [[0x01, 0x82], [0x01, 0x01], [0x01, 0x81]];

/// One block of SCP03's KDF input (NIST SP 800-108 counter mode, AES-CMAC PRF).
pub fn scp03_kdf_input(constant: u8, bits: u16, counter: u8, context: &[u8]) -> Vec<u8> {
    let mut input = vec![0u8; 11];
    input.push(constant);
    input.push(0x00);
    input.extend_from_slice(&bits.to_be_bytes());
    input.push(counter);
    input.extend_from_slice(context);
    input
}

fn cryptograms(
    protocol: Protocol,
    s: &SessionKeys,
    host_challenge: &[u8; 8],
    iu: &InitUpdateResponse,
) -> Result<Cryptograms, CryptoError> {
    match protocol {
        Protocol::Scp02 { .. } => {
            let seq = &iu.sequence;
            let card_in = pad80(&[&host_challenge[..], seq, &iu.card_challenge].concat(), 8);
            let host_in = pad80(
                &[seq, &iu.card_challenge[..], &host_challenge[..]].concat(),
                8,
            );
            Ok(Cryptograms {
                card: tdes_cbc_mac(&s.enc, &[0; 8], &card_in)?,
                host: tdes_cbc_mac(&s.enc, &[0; 8], &host_in)?,
            })
        }
        Protocol::Scp03 { .. } => {
            let ctx = [&host_challenge[..], &iu.card_challenge[..]].concat();
            let cg = |c| -> Result<[u8; 8], CryptoError> {
                Ok(scp03_kdf(&s.mac, c, 64, &ctx)?.try_into().expect("8 bytes"))
            };
            Ok(Cryptograms {
                card: cg(0x00)?,
                host: cg(0x01)?,
            })
        }
    }
}

/// MAC chaining and command encryption state, identical at both ends.
pub(super) struct Wrapper {
    pub(super) protocol: Protocol,
    keys: SessionKeys,
    pub(super) level: SecurityLevel,
    /// SCP02: ICV (8 bytes); SCP03: MAC chaining value (16 bytes).
    chain: Vec<u8>,
    /// SCP03 encryption counter.
    pub(super) counter: u128,
    /// Whether a C-MAC was already computed in this session (SCP02 ICV encryption starts after).
    started: bool,
}

impl Wrapper {
    pub(super) fn new(protocol: Protocol, keys: SessionKeys, level: SecurityLevel) -> Self {
        let chain = match protocol {
            Protocol::Scp02 { .. } => vec![0; 8],
            Protocol::Scp03 { .. } => vec![0; 16],
        };
        Wrapper {
            protocol,
            keys,
            level,
            chain,
            counter: 0,
            started: false,
        }
    }

    /// The C-MAC of `cla' ins p1 p2 lc' ‖ data` and the chain update.
    fn mac(&mut self, header: &[u8; 5], data: &[u8]) -> Result<[u8; 8], CryptoError> {
        match self.protocol {
            Protocol::Scp02 { i } => {
                let mut icv: [u8; 8] = self.chain[..8].try_into().expect("8");
                if self.started && i & 0x10 != 0 {
                    let e = des_ecb_encrypt(&self.keys.mac[..8], &icv)?;
                    icv.copy_from_slice(&e);
                }
                let m = retail_mac(
                    &self.keys.mac,
                    &icv,
                    &pad80(&[&header[..], data].concat(), 8),
                )?;
                self.chain = m.to_vec();
                self.started = true;
                Ok(m)
            }
            Protocol::Scp03 { .. } => {
                let full = aes_cmac(&self.keys.mac, &[&self.chain[..], header, data].concat())?;
                self.chain = full.to_vec();
                Ok(full[..8].try_into().expect("8"))
            }
        }
    }

    fn encrypt_data(&mut self, data: &[u8]) -> Result<Vec<u8>, CryptoError> {
        match self.protocol {
            Protocol::Scp02 { .. } => {
                tdes_cbc_encrypt(&self.keys.enc, &[0; 8], &pad80(data, DES_BLOCK))
            }
            Protocol::Scp03 { .. } => {
                let icv = self.scp03_icv()?;
                aes_cbc_encrypt(&self.keys.enc, &icv, &pad80(data, AES_BLOCK))
            }
        }
    }

    // Only the card end unwraps and decrypts.
    #[cfg_attr(not(feature = "card"), allow(dead_code))]
    fn decrypt_data(&self, data: &[u8]) -> Result<Option<Vec<u8>>, CryptoError> {
        let plain = match self.protocol {
            Protocol::Scp02 { .. } => tdes_cbc_decrypt(&self.keys.enc, &[0; 8], data)?,
            Protocol::Scp03 { .. } => {
                let icv = self.scp03_icv()?;
                aes_cbc_decrypt(&self.keys.enc, &icv, data)?
            }
        };
        Ok(unpad80(&plain))
    }

    fn scp03_icv(&self) -> Result<[u8; 16], CryptoError> {
        let e = aes_ecb_encrypt(&self.keys.enc, &self.counter.to_be_bytes())?;
        Ok(e.try_into().expect("16"))
    }

    /// Host side: protects one command per the session's level.
    pub(super) fn wrap(&mut self, cmd: &Command) -> Result<Command, CryptoError> {
        if matches!(self.protocol, Protocol::Scp03 { .. }) {
            self.counter += 1;
        }
        if !self.level.mac() {
            return Ok(cmd.clone());
        }
        let cla = cmd.cla | 0x04;
        let (data, mac_over) = if self.level.enc() && !cmd.data.is_empty() {
            let e = self.encrypt_data(&cmd.data)?;
            match self.protocol {
                // SCP02 MACs the clear data; SCP03 MACs what is sent.
                Protocol::Scp02 { .. } => (e, cmd.data.clone()),
                Protocol::Scp03 { .. } => (e.clone(), e),
            }
        } else {
            (cmd.data.clone(), cmd.data.clone())
        };
        let lc_mac = match self.protocol {
            Protocol::Scp02 { .. } => mac_over.len() + 8,
            Protocol::Scp03 { .. } => data.len() + 8,
        };
        let header = [cla, cmd.ins, cmd.p1, cmd.p2, lc_mac as u8];
        let m = self.mac(&header, &mac_over)?;
        let mut out = data;
        out.extend_from_slice(&m);
        Ok(Command {
            cla,
            ins: cmd.ins,
            p1: cmd.p1,
            p2: cmd.p2,
            data: out,
            le: cmd.le,
        })
    }

    /// Card side: checks and removes the protection of one command.
    // Only the card end unwraps and decrypts.
    #[cfg_attr(not(feature = "card"), allow(dead_code))]
    pub(super) fn unwrap(&mut self, cmd: &Command) -> Result<Command, ScError> {
        if matches!(self.protocol, Protocol::Scp03 { .. }) {
            self.counter += 1;
        }
        if !self.level.mac() {
            return Ok(cmd.clone());
        }
        if cmd.cla & 0x04 == 0 || cmd.data.len() < 8 {
            return Err(ScError::HostAuth("command without C-MAC in a MAC session"));
        }
        let (body, mac) = cmd.data.split_at(cmd.data.len() - 8);
        let plain = if self.level.enc() && !body.is_empty() {
            self.decrypt_data(body)?
                .ok_or(ScError::HostAuth("bad C-DEC padding"))?
        } else {
            body.to_vec()
        };
        let (mac_over, lc_mac) = match self.protocol {
            Protocol::Scp02 { .. } => (plain.clone(), plain.len() + 8),
            Protocol::Scp03 { .. } => (body.to_vec(), body.len() + 8),
        };
        let header = [cmd.cla, cmd.ins, cmd.p1, cmd.p2, lc_mac as u8];
        let expected = self.mac(&header, &mac_over)?;
        if expected != mac {
            return Err(ScError::HostAuth("C-MAC does not verify"));
        }
        Ok(Command {
            cla: cmd.cla & !0x04,
            ins: cmd.ins,
            p1: cmd.p1,
            p2: cmd.p2,
            data: plain,
            le: cmd.le,
        })
    }

    /// Encrypts sensitive DGI data for STORE DATA (already padded when required).
    pub(super) fn encrypt_dgi(&self, data: &[u8]) -> Result<Vec<u8>, CryptoError> {
        match self.protocol {
            Protocol::Scp02 { .. } => tdes_ecb_encrypt(&self.keys.dek, data),
            Protocol::Scp03 { .. } => aes_cbc_encrypt(&self.keys.dek, &[0; 16], data),
        }
    }

    // Only the card end unwraps and decrypts.
    #[cfg_attr(not(feature = "card"), allow(dead_code))]
    pub(super) fn decrypt_dgi(&self, data: &[u8]) -> Result<Vec<u8>, CryptoError> {
        match self.protocol {
            Protocol::Scp02 { .. } => tdes_ecb_decrypt(&self.keys.dek, data),
            Protocol::Scp03 { .. } => aes_cbc_decrypt(&self.keys.dek, &[0; 16], data),
        }
    }

    pub(super) fn dgi_block(&self) -> usize {
        match self.protocol {
            Protocol::Scp02 { .. } => DES_BLOCK,
            Protocol::Scp03 { .. } => AES_BLOCK,
        }
    }
}

/// Removes ISO 9797-1 method 2 padding; `None` if there is none.
pub fn unpad80(data: &[u8]) -> Option<Vec<u8>> {
    let end = data.iter().rposition(|&b| b != 0)?;
    (data[end] == 0x80).then(|| data[..end].to_vec())
}

/// Most clear data bytes that fit one short command after secure messaging.
pub fn max_plain_data(protocol: Protocol, level: SecurityLevel) -> usize {
    let block = match protocol {
        Protocol::Scp02 { .. } => DES_BLOCK,
        Protocol::Scp03 { .. } => AES_BLOCK,
    };
    let mac = if level.mac() { 8 } else { 0 };
    let mut n = 255 - mac;
    if level.enc() {
        while (n / block + 1) * block + mac > 255 {
            n -= 1;
        }
    }
    n
}

#[cfg(test)]
mod tests;
