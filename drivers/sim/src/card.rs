//! A simulated GlobalPlatform card carrying a CPS-conformant payment application.
//!
//! Before personalization it accepts SELECT of its application instance, opens a
//! secure channel (verifying the host cryptogram and every C-MAC, decrypting C-DEC),
//! and takes STORE DATA in block order, decrypting sensitive DGIs with the DEK. The
//! same data can reach the application through the Issuer Security Domain instead
//! (GlobalPlatform Card Specification 2.3, INSTALL [for personalization]): SELECT the
//! ISD, open the secure channel with it, name the application in an INSTALL
//! [for personalization] sent inside that channel, and the ISD hands the following
//! STORE DATA commands to the application. The last block makes it PERSONALIZED; from then on it answers as an EMV card: SELECT →
//! FCI, GET PROCESSING OPTIONS, READ RECORD, GET DATA, GENERATE AC with the
//! cryptogram version its IAD template names (Visa CVN 10/18 for a Visa AID, M/Chip
//! CVN 16/17 for a Mastercard AID) under the personalized MK-AC, and INTERNAL AUTHENTICATE (DDA)
//! signed with the ICC private key from DGIs `8201`–`8205` when the profile puts one.
//!
//! Terminal tests can skip personalization: [`SimCard::personalized`] is the card as
//! CPS leaves it, built from prepared DGIs.
//!
//! Data conventions (the station's profiles follow them): DGI `9102` holds the content
//! of the FCI proprietary template `A5`; `9104` holds the GPO response data objects
//! (`82` AIP, `94` AFL); record DGIs `SSRR` hold the `70` template of SFI `SS` record
//! `RR`; `8000` holds MK-AC ‖ MK-SMI ‖ MK-SMC; `9010` holds the PIN try counter ‖
//! limit; the issuer application data template `9F10` (Visa `06 DKI CVN 03 CVR [IDD]`,
//! M/Chip `KDI CVN CVR DAC/IDN counters`) comes in another non-record DGI (the shipped
//! profiles use `3000`); the card fills in the CVR and MACs what its version covers.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use serde::Deserialize;
use station_emv::data::cryptogram::{application_cryptogram, IadLayout, TransactionData};
use station_emv::data::profile::CryptogramVersion;
use station_emv::dgi;
use station_emv::gp::card::CardChannel;
use station_emv::gp::diversify::Diversification;
use station_emv::gp::scp::{unpad80, KeySource, Protocol, StaticKeys};
use station_emv::gp::Command;
use station_emv::oda::{
    cda_dynamic_data, cda_transaction_data_hash, sign_icc_dynamic_data, IccPrivateCrt,
};
use station_emv::tlv;
use station_hal::{ApduTransport, TransportError};
use zeroize::Zeroizing;

use crate::vpcd::{self, VirtualCard};

/// Transport keys and identity of a blank card, as in a card-stock key file.
#[derive(Clone, Debug)]
pub struct SimCardConfig {
    /// Secure channel protocol and i parameter.
    pub protocol: Protocol,
    /// Key version number of the ISD keys.
    pub kvn: u8,
    /// Key diversification data the card returns.
    pub kdd: [u8; 10],
    /// Where the card's keys come from (diversified from a KMC, or static).
    pub keys: KeySource,
    /// Application instances present on the card.
    pub instances: Vec<Vec<u8>>,
    /// DGIs the card strips `80 00..` padding from after decryption.
    pub padded_dgis: Vec<u16>,
}

/// The key file `sim-card --keys` reads (TOML).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyFile {
    /// "02" or "03".
    pub scp: String,
    /// i parameter (e.g. 0x55 for SCP02, 0x70 for SCP03).
    pub i: u8,
    /// Key version number.
    pub kvn: u8,
    /// KDD, 10 bytes hex.
    pub kdd: String,
    /// Master key (hex) for diversified cards.
    pub kmc: Option<String>,
    /// `emv_cpg202`, `visa2` or `none`.
    pub diversification: Option<Diversification>,
    /// Static ENC key (hex) when not diversified.
    pub enc: Option<String>,
    /// Static MAC key (hex).
    pub mac: Option<String>,
    /// Static DEK (hex).
    pub dek: Option<String>,
    /// AID of the Issuer Security Domain (hex), when not the GlobalPlatform default.
    #[serde(default)]
    pub isd: Option<String>,
}

/// A key file that cannot be used, naming the field.
#[derive(Debug, thiserror::Error)]
#[error("card key file: {0}")]
pub struct KeyFileError(pub String);

fn hex_field(name: &str, v: &Option<String>) -> Result<Zeroizing<Vec<u8>>, KeyFileError> {
    let v = v
        .as_ref()
        .ok_or_else(|| KeyFileError(format!("{name} is missing")))?;
    hex::decode(v)
        .map(Zeroizing::new)
        .map_err(|_| KeyFileError(format!("{name} is not hex")))
}

impl KeyFile {
    /// Parses TOML text.
    pub fn parse(text: &str) -> Result<Self, KeyFileError> {
        toml::from_str(text).map_err(|e| KeyFileError(e.to_string()))
    }

    /// A blank card with these keys (and this ISD, if the file names one).
    pub fn blank_card(&self) -> Result<SimCard, KeyFileError> {
        let card = SimCard::new(self.to_config()?);
        match &self.isd {
            None => Ok(card),
            Some(hex_aid) => match hex::decode(hex_aid) {
                Ok(aid) if (5..=16).contains(&aid.len()) => Ok(card.with_isd_aid(aid)),
                _ => Err(KeyFileError(
                    "isd is not an AID of 5 to 16 bytes in hex".into(),
                )),
            },
        }
    }

    /// The card configuration this file describes (Visa and Mastercard instances).
    pub fn to_config(&self) -> Result<SimCardConfig, KeyFileError> {
        let protocol = match self.scp.as_str() {
            "02" => Protocol::Scp02 { i: self.i },
            "03" => Protocol::Scp03 { i: self.i },
            other => return Err(KeyFileError(format!("scp '{other}' is not 02 or 03"))),
        };
        let kdd: [u8; 10] = hex::decode(&self.kdd)
            .ok()
            .and_then(|v| v.try_into().ok())
            .ok_or_else(|| KeyFileError("kdd must be 10 bytes hex".into()))?;
        let keys = if self.kmc.is_some() {
            KeySource::Kmc {
                kmc: hex_field("kmc", &self.kmc)?,
                method: self.diversification.unwrap_or(Diversification::EmvCpg202),
            }
        } else {
            KeySource::Static(StaticKeys::new(
                &hex_field("enc", &self.enc)?,
                &hex_field("mac", &self.mac)?,
                &hex_field("dek", &self.dek)?,
            ))
        };
        Ok(SimCardConfig {
            protocol,
            kvn: self.kvn,
            kdd,
            keys,
            instances: default_instances(),
            padded_dgis: vec![0x8010, 0x8201, 0x8202, 0x8203, 0x8204, 0x8205],
        })
    }
}

/// Visa and Mastercard credit/debit AIDs.
pub fn default_instances() -> Vec<Vec<u8>> {
    vec![
        hex::decode("A0000000031010").expect("hex"),
        hex::decode("A0000000041010").expect("hex"),
    ]
}

/// Default AID of the Issuer Security Domain (GlobalPlatform Card Specification).
pub const DEFAULT_ISD_AID: [u8; 8] = [0xA0, 0x00, 0x00, 0x01, 0x51, 0x00, 0x00, 0x00];

/// Behaviour switches for testing the station's error handling.
#[derive(Debug, Clone, Default)]
pub struct Faults {
    /// Answer `61xx` and serve the data through GET RESPONSE.
    pub t0_get_response: bool,
    /// Answer `6Cxx` to a case-2 command whose Le is not the data length.
    pub t0_wrong_le: bool,
    /// Answer this status word to the Nth command (1-based, counted from power-on).
    pub status_at: Option<(u32, u16)>,
    /// Leave the reader (connection dropped) at the Nth command.
    pub drop_at: Option<u32>,
    /// Delay before each response (in-process transport: tokio time).
    pub delay: Option<Duration>,
    /// A mute chip: present in the reader, but it cannot be powered up. Through vpcd
    /// it answers the ATR request with [`vpcd::unreadable_atr`], which the reader
    /// driver refuses; in-process every exchange fails with [`TransportError::CardMute`].
    pub mute: bool,
}

/// Life cycle of the payment application.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AppState {
    /// Installed, waiting for personalization.
    Selectable,
    /// Personalization data complete.
    Personalized,
}

/// The simulated card.
pub struct SimCard {
    config: SimCardConfig,
    /// Fault switches.
    pub faults: Faults,
    state: AppState,
    selected: Option<Vec<u8>>,
    channel: Option<CardChannel>,
    sequence: u32,
    next_block: u16,
    pending: Vec<u8>,
    pending_encrypted: bool,
    dgis: BTreeMap<u16, Zeroizing<Vec<u8>>>,
    aid: Option<Vec<u8>>,
    atc: u16,
    commands: u32,
    held_response: Option<Vec<u8>>,
    removed: bool,
    isd_aid: Vec<u8>,
    direct_perso: bool,
    /// Application named by INSTALL [for personalization] in the ISD's current session.
    perso_target: Option<Vec<u8>>,
    /// Commands received, when the card was asked to keep them (terminal tests).
    received: Option<Vec<Vec<u8>>>,
    /// PDOL data of the last GET PROCESSING OPTIONS (CDA hashes it).
    pdol_data: Vec<u8>,
}

/// Response of a removed card (the transport reports it as such).
pub const REMOVED: Vec<u8> = Vec::new();

fn sw(s: u16) -> Vec<u8> {
    s.to_be_bytes().to_vec()
}

fn ok(mut data: Vec<u8>) -> Vec<u8> {
    data.extend_from_slice(&[0x90, 0x00]);
    data
}

impl SimCard {
    /// A blank card.
    pub fn new(config: SimCardConfig) -> Self {
        SimCard {
            config,
            faults: Faults::default(),
            state: AppState::Selectable,
            selected: None,
            channel: None,
            sequence: 0,
            next_block: 0,
            pending: vec![],
            pending_encrypted: false,
            dgis: BTreeMap::new(),
            aid: None,
            atc: 0,
            commands: 0,
            held_response: None,
            removed: false,
            isd_aid: DEFAULT_ISD_AID.to_vec(),
            direct_perso: true,
            perso_target: None,
            received: None,
            pdol_data: Vec::new(),
        }
    }

    /// A card as CPS leaves it: application `aid` personalized with `dgis` (clear,
    /// unpadded, as data preparation produces them). It keeps every command it receives
    /// ([`SimCard::received`]). Its transport keys are GlobalPlatform's well-known
    /// test keys (`40`..`4F`), as no secure channel is needed to read a card.
    pub fn personalized(aid: &[u8], dgis: impl IntoIterator<Item = (u16, Vec<u8>)>) -> Self {
        let test_key: Vec<u8> = (0x40..=0x4F).collect();
        let mut card = SimCard::new(SimCardConfig {
            protocol: Protocol::Scp02 { i: 0x55 },
            kvn: 0x20,
            kdd: [0; 10],
            keys: KeySource::Static(StaticKeys::new(&test_key, &test_key, &test_key)),
            instances: vec![aid.to_vec()],
            padded_dgis: Vec::new(),
        });
        card.dgis = dgis
            .into_iter()
            .map(|(id, data)| (id, Zeroizing::new(data)))
            .collect();
        card.aid = Some(aid.to_vec());
        card.state = AppState::Personalized;
        card.received = Some(Vec::new());
        card
    }

    /// Commands received so far, when the card keeps them (see [`SimCard::personalized`]).
    pub fn received(&self) -> &[Vec<u8>] {
        self.received.as_deref().unwrap_or_default()
    }

    /// The same card with its Issuer Security Domain at `aid` (default [`DEFAULT_ISD_AID`]).
    pub fn with_isd_aid(mut self, aid: Vec<u8>) -> Self {
        self.isd_aid = aid;
        self
    }

    /// The same card with applications that have no secure channel keys of their own:
    /// INITIALIZE UPDATE on a selected application is refused (`6D00`), so the only way
    /// to personalize is through the ISD, as on card stock whose applications rely on
    /// the ISD's secure channel.
    pub fn personalized_only_through_isd(mut self) -> Self {
        self.direct_perso = false;
        self
    }

    /// AID of the Issuer Security Domain.
    pub fn isd_aid(&self) -> &[u8] {
        &self.isd_aid
    }

    /// Application life cycle state.
    pub fn state(&self) -> AppState {
        self.state
    }

    /// Personalized DGI data (decrypted), for assertions in tests.
    pub fn dgi(&self, id: u16) -> Option<&[u8]> {
        self.dgis.get(&id).map(|v| v.as_slice())
    }

    /// Commands processed since power-on.
    pub fn command_count(&self) -> u32 {
        self.commands
    }

    /// Processes one command APDU; an empty result means the card left the reader.
    pub fn process(&mut self, apdu: &[u8]) -> Vec<u8> {
        if self.removed {
            return REMOVED;
        }
        if let Some(log) = self.received.as_mut() {
            log.push(apdu.to_vec());
        }
        self.commands += 1;
        if self.faults.drop_at == Some(self.commands) {
            self.removed = true;
            return REMOVED;
        }
        if let Some((n, s)) = self.faults.status_at {
            if n == self.commands {
                return sw(s);
            }
        }
        let Some(cmd) = Command::parse(apdu) else {
            return sw(0x6700);
        };
        if cmd.cla == 0x00 && cmd.ins == 0xC0 {
            return match self.held_response.take() {
                Some(r) => r,
                None => sw(0x6985),
            };
        }
        let response = self.dispatch(&cmd);
        self.t0(&cmd, response)
    }

    fn t0(&mut self, cmd: &Command, response: Vec<u8>) -> Vec<u8> {
        let data_len = response.len() - 2;
        if self.faults.t0_wrong_le && cmd.data.is_empty() && data_len > 0 {
            if let Some(le) = cmd.le {
                if le as usize != data_len % 256 {
                    return vec![0x6C, data_len as u8];
                }
            }
        }
        if self.faults.t0_get_response && data_len > 0 {
            self.held_response = Some(response);
            return vec![0x61, data_len as u8];
        }
        response
    }

    fn dispatch(&mut self, cmd: &Command) -> Vec<u8> {
        match (cmd.cla & 0xF0, cmd.ins) {
            (_, 0xA4) => self.select(cmd),
            (0x80, 0x50) => self.initialize_update(cmd),
            (0x80, 0x82) => self.external_authenticate(cmd),
            (0x80, 0xE2) => self.store_data(cmd),
            (0x80, 0xE6) => self.install(cmd),
            (0x80, 0xA8) => self.gpo(cmd),
            (0x00, 0xB2) => self.read_record(cmd),
            (0x80, 0xCA) => self.get_data(cmd),
            (0x80, 0xAE) => self.generate_ac(cmd),
            (0x00, 0x88) => self.internal_authenticate(cmd),
            (0x00 | 0x80, _) => sw(0x6D00),
            _ => sw(0x6E00),
        }
    }

    fn isd_selected(&self) -> bool {
        self.selected.as_deref() == Some(self.isd_aid.as_slice())
    }

    fn select(&mut self, cmd: &Command) -> Vec<u8> {
        self.channel = None;
        self.perso_target = None;
        if cmd.data == self.isd_aid {
            self.selected = Some(cmd.data.clone());
            // FCI: AID and, in the proprietary template, the largest command data field.
            let mut fci = tlv::encode(0x84, &cmd.data);
            fci.extend(tlv::encode(0xA5, &tlv::encode(0x9F65, &[0xFF])));
            return ok(tlv::encode(0x6F, &fci));
        }
        if !self.config.instances.contains(&cmd.data) {
            self.selected = None;
            return sw(0x6A82);
        }
        self.selected = Some(cmd.data.clone());
        let mut fci = tlv::encode(0x84, &cmd.data);
        if self.state == AppState::Personalized && self.aid.as_deref() == Some(&cmd.data) {
            fci.extend(tlv::encode(0xA5, self.dgi(0x9102).unwrap_or_default()));
        }
        ok(tlv::encode(0x6F, &fci))
    }

    fn initialize_update(&mut self, cmd: &Command) -> Vec<u8> {
        if self.selected.is_none() {
            return sw(0x6985);
        }
        // The ISD always opens a channel; an application only while it takes perso data.
        if !self.isd_selected() {
            if !self.direct_perso {
                return sw(0x6D00);
            }
            if self.state == AppState::Personalized {
                return sw(0x6985);
            }
        }
        if cmd.p1 != 0 && cmd.p1 != self.config.kvn {
            return sw(0x6A88);
        }
        let Ok(host) = <[u8; 8]>::try_from(cmd.data.as_slice()) else {
            return sw(0x6700);
        };
        let Ok(keys) = self.config.keys.card_keys(&self.config.kdd) else {
            return sw(0x6F00);
        };
        self.sequence += 1;
        let (seq, challenge) = match self.config.protocol {
            Protocol::Scp02 { .. } => (
                (self.sequence as u16).to_be_bytes().to_vec(),
                rand::random::<[u8; 6]>().to_vec(),
            ),
            Protocol::Scp03 { .. } => (
                self.sequence.to_be_bytes()[1..].to_vec(),
                rand::random::<[u8; 8]>().to_vec(),
            ),
        };
        match CardChannel::initialize_update(
            self.config.protocol,
            keys,
            self.config.kdd,
            self.config.kvn,
            seq,
            challenge,
            host,
        ) {
            Ok((ch, data)) => {
                self.channel = Some(ch);
                ok(data)
            }
            Err(_) => sw(0x6F00),
        }
    }

    fn external_authenticate(&mut self, cmd: &Command) -> Vec<u8> {
        let Some(ch) = self.channel.as_mut() else {
            return sw(0x6985);
        };
        match ch.external_authenticate(cmd) {
            Ok(()) => {
                self.next_block = 0;
                self.pending.clear();
                self.perso_target = None;
                sw(0x9000)
            }
            Err(_) => {
                self.channel = None;
                sw(0x6300)
            }
        }
    }

    /// The command as sent inside the open secure channel; a command outside it or with
    /// a bad MAC is refused with 6982, and a bad MAC also closes the channel.
    fn unwrap_secured(&mut self, cmd: &Command) -> Result<Command, Vec<u8>> {
        let Some(ch) = self.channel.as_mut().filter(|c| c.is_open()) else {
            return Err(sw(0x6982));
        };
        ch.unwrap(cmd).map_err(|_| {
            self.channel = None;
            sw(0x6982)
        })
    }

    fn store_data(&mut self, cmd: &Command) -> Vec<u8> {
        let plain = match self.unwrap_secured(cmd) {
            Ok(p) => p,
            Err(refusal) => return refusal,
        };
        // The ISD's own STORE DATA (its personalization) is not modelled: through the
        // ISD, STORE DATA only reaches an application named by INSTALL first.
        if self.isd_selected() && self.perso_target.is_none() {
            return sw(0x6985);
        }
        if plain.p2 as u16 != self.next_block {
            return sw(0x6A86);
        }
        let encrypted = plain.p1 & 0x60 == 0x60;
        if !self.pending.is_empty() && encrypted != self.pending_encrypted {
            return sw(0x6A80);
        }
        self.next_block += 1;
        self.pending_encrypted = encrypted;
        self.pending.extend_from_slice(&plain.data);
        if let Err(s) = self.take_complete_dgis() {
            return sw(s);
        }
        if plain.p1 & 0x80 != 0 {
            if !self.pending.is_empty() {
                return sw(0x6A80);
            }
            self.state = AppState::Personalized;
            self.aid = if self.isd_selected() {
                self.perso_target.take()
            } else {
                self.selected.clone()
            };
            self.channel = None;
        }
        sw(0x9000)
    }

    /// INSTALL [for personalization] (P1 `20`), the only INSTALL the ISD takes: data =
    /// `00` (no load file) ‖ `00` (no module) ‖ len ‖ application AID ‖ `00 00 00` (no
    /// privileges, parameters or token). It must come inside the authenticated secure
    /// channel, with the C-MAC (and C-DEC) the session's level requires.
    fn install(&mut self, cmd: &Command) -> Vec<u8> {
        if !self.isd_selected() {
            return sw(0x6D00);
        }
        let plain = match self.unwrap_secured(cmd) {
            Ok(p) => p,
            Err(refusal) => return refusal,
        };
        if plain.p1 != 0x20 || plain.p2 != 0x00 {
            return sw(0x6A86);
        }
        let d = &plain.data;
        let aid = match d.as_slice() {
            [0x00, 0x00, len, rest @ ..] if rest.len() == usize::from(*len) + 3 => {
                let (aid, tail) = rest.split_at(usize::from(*len));
                if tail != [0x00, 0x00, 0x00] || aid.is_empty() {
                    return sw(0x6A80);
                }
                aid.to_vec()
            }
            _ => return sw(0x6A80),
        };
        if !self.config.instances.contains(&aid) {
            return sw(0x6A88);
        }
        if self.state == AppState::Personalized {
            return sw(0x6985);
        }
        self.perso_target = Some(aid);
        self.next_block = 0;
        self.pending.clear();
        // The response data of INSTALL is a single byte 00.
        ok(vec![0x00])
    }

    /// Moves every complete DGI from the pending stream into the store.
    fn take_complete_dgis(&mut self) -> Result<(), u16> {
        loop {
            let p = &self.pending;
            if p.len() < 3 {
                return Ok(());
            }
            let (len, hdr) = if p[2] == 0xFF {
                if p.len() < 5 {
                    return Ok(());
                }
                (u16::from_be_bytes([p[3], p[4]]) as usize, 5)
            } else {
                (p[2] as usize, 3)
            };
            if p.len() < hdr + len {
                return Ok(());
            }
            let whole: Vec<u8> = self.pending.drain(..hdr + len).collect();
            let parsed = dgi::parse(&whole).map_err(|_| 0x6A80u16)?;
            let id = parsed[0].id;
            let mut data = parsed[0].data.clone();
            if self.pending_encrypted {
                let ch = self.channel.as_ref().ok_or(0x6985u16)?;
                data = ch.decrypt_dgi(&data).map_err(|_| 0x6A80u16)?;
                if self.config.padded_dgis.contains(&id) {
                    data = unpad80(&data).ok_or(0x6A80u16)?;
                }
            }
            self.dgis.insert(id, Zeroizing::new(data));
        }
    }

    fn personalized_app(&self) -> bool {
        self.state == AppState::Personalized && self.selected.is_some() && self.selected == self.aid
    }

    fn gpo(&mut self, cmd: &Command) -> Vec<u8> {
        if !self.personalized_app() {
            return sw(0x6985);
        }
        // Kept for the CDA transaction data hash: the value of the 83 template.
        self.pdol_data = match tlv::parse(&cmd.data).as_deref() {
            Ok([t]) if t.tag == 0x83 => t.value.clone(),
            _ => return sw(0x6A80),
        };
        let Some(gpo) = self.dgi(0x9104) else {
            return sw(0x6985);
        };
        ok(tlv::encode(0x77, gpo))
    }

    /// A data object from a non-record DGI (card-internal data such as AIP or IAD).
    fn internal_tag(&self, tag: u32) -> Option<Vec<u8>> {
        self.dgis
            .iter()
            .filter(|(id, _)| !(0x0100..0x1F00).contains(*id) && **id != 0x8000)
            .find_map(|(_, d)| tlv::find(d, tag).ok().flatten())
    }

    fn read_record(&mut self, cmd: &Command) -> Vec<u8> {
        if !self.personalized_app() {
            return sw(0x6985);
        }
        if cmd.p2 & 0x07 != 0x04 {
            return sw(0x6A86);
        }
        let id = ((cmd.p2 as u16 >> 3) << 8) | cmd.p1 as u16;
        match self.dgi(id) {
            Some(r) => ok(r.to_vec()),
            None => sw(0x6A83),
        }
    }

    fn get_data(&mut self, cmd: &Command) -> Vec<u8> {
        if !self.personalized_app() {
            return sw(0x6985);
        }
        match (cmd.p1, cmd.p2) {
            (0x9F, 0x36) => ok(tlv::encode(0x9F36, &self.atc.to_be_bytes())),
            (0x9F, 0x17) => match self.dgi(0x9010) {
                Some(d) if !d.is_empty() => ok(tlv::encode(0x9F17, &d[..1])),
                _ => sw(0x6A88),
            },
            _ => sw(0x6A88),
        }
    }

    /// Signs the terminal's DDOL data with the ICC private key (EMV Book 2 6.5); the
    /// ICC dynamic number is `00 ‖ low byte of the ATC ‖ 5A`.
    fn internal_authenticate(&mut self, cmd: &Command) -> Vec<u8> {
        if !self.personalized_app() {
            return sw(0x6985);
        }
        if (0x8201..=0x8205).any(|id| self.dgi(id).is_none()) {
            return sw(0x6D00);
        }
        let dd = [&[3u8][..], &[0x00, self.atc as u8, 0x5A]].concat();
        match self.sign_with_icc_key(&dd, &cmd.data) {
            Some(sdad) => ok(tlv::encode(0x80, &sdad)),
            None => sw(0x6F00),
        }
    }

    /// Signed dynamic application data over `dynamic_data` with the ICC private key
    /// from DGIs 8201-8205; `None` when the card has no key or signing fails.
    fn sign_with_icc_key(&self, dynamic_data: &[u8], terminal_data: &[u8]) -> Option<Vec<u8>> {
        let parts: Option<Vec<&[u8]>> = (0x8201..=0x8205).map(|id| self.dgi(id)).collect();
        let [qinv, dq, dp, q, p] = parts.as_deref()? else {
            return None;
        };
        let key = IccPrivateCrt { p, q, dp, dq, qinv };
        sign_icc_dynamic_data(&key, p.len() + q.len(), dynamic_data, terminal_data).ok()
    }

    fn record_tag(&self, tag: u32) -> Option<Vec<u8>> {
        self.dgis
            .iter()
            .filter(|(id, _)| (0x0100..0x1F00).contains(*id) && (*id & 0xFF) != 0)
            .find_map(|(_, rec)| tlv::find(rec, tag).ok().flatten())
    }

    fn generate_ac(&mut self, cmd: &Command) -> Vec<u8> {
        if !self.personalized_app() {
            return sw(0x6985);
        }
        let Some(cdol1) = self.record_tag(0x8C) else {
            return sw(0x6985);
        };
        let Ok(dol) = tlv::parse_dol(&cdol1) else {
            return sw(0x6F00);
        };
        let total: usize = dol.iter().map(|(_, l)| l).sum();
        if cmd.data.len() != total {
            return sw(0x6700);
        }
        let mut values = BTreeMap::new();
        let mut pos = 0;
        for (tag, len) in dol {
            values.insert(tag, cmd.data[pos..pos + len].to_vec());
            pos += len;
        }
        let (Some(keys), Some(aip)) = (
            self.dgi(0x8000).map(|k| Zeroizing::new(k.to_vec())),
            self.internal_tag(0x82).filter(|a| a.len() == 2),
        ) else {
            return sw(0x6985);
        };
        // The applet knows its scheme's IAD layout; the personalized template says
        // which key index and cryptogram version it runs.
        let Some(aid) = self.aid.clone() else {
            return sw(0x6985);
        };
        let Some(layout) = IadLayout::of_application(&aid) else {
            return sw(0x6985);
        };
        let Some(template) = self
            .internal_tag(0x9F10)
            .filter(|t| t.len() >= layout.min_len())
        else {
            return sw(0x6985);
        };
        let Some(version) = CryptogramVersion::from_iad(layout, &template) else {
            return sw(0x6985);
        };
        if keys.len() < 16 {
            return sw(0x6985);
        }
        self.atc = self.atc.wrapping_add(1);
        let cid = match cmd.p1 & 0xC0 {
            0x80 => 0x80,
            0x40 => 0x40,
            _ => 0x00,
        };
        let mut iad = template;
        iad[layout.cvr_range()].copy_from_slice(&layout.first_generate_ac_cvr(cid));
        let tx = TransactionData::from_tags(
            |tag| values.get(&tag).cloned(),
            aip[..2].try_into().expect("2"),
            self.atc.to_be_bytes(),
        );
        let Ok(ac) = application_cryptogram(version, &keys[..16], &tx, &iad) else {
            return sw(0x6F00);
        };
        let cid_tlv = tlv::encode(0x9F27, &[cid]);
        let atc_tlv = tlv::encode(0x9F36, &self.atc.to_be_bytes());
        let iad_tlv = tlv::encode(0x9F10, &iad);
        // CDA: asked for (P1 bit 10) and announced in the AIP, the card signs the
        // cryptogram instead of returning it in clear (EMV Book 2 §6.6.1).
        if cmd.p1 & 0x10 != 0 && aip[0] & 0x01 != 0 {
            let un = values.get(&0x9F37).cloned().unwrap_or_default();
            let hash = cda_transaction_data_hash(
                &self.pdol_data,
                &cmd.data,
                &[&cid_tlv[..], &atc_tlv, &iad_tlv].concat(),
            );
            let dynamic_number = [0x00, self.atc as u8, 0x5A];
            let dd = cda_dynamic_data(&dynamic_number, cid, &ac, &hash);
            let Some(sdad) = self.sign_with_icc_key(&dd, &un) else {
                return sw(0x6985);
            };
            let body = [
                &cid_tlv[..],
                &atc_tlv,
                &tlv::encode(0x9F4B, &sdad),
                &iad_tlv,
            ]
            .concat();
            return ok(tlv::encode(0x77, &body));
        }
        let body = [&cid_tlv[..], &atc_tlv, &tlv::encode(0x9F26, &ac), &iad_tlv].concat();
        ok(tlv::encode(0x77, &body))
    }
}

impl VirtualCard for SimCard {
    fn atr(&self) -> Vec<u8> {
        if self.faults.mute {
            return vpcd::unreadable_atr();
        }
        // T=1 capable, historical bytes "STATION".
        let mut atr = vec![0x3B, 0x87, 0x80, 0x01];
        atr.extend_from_slice(b"STATION");
        let tck = atr[1..].iter().fold(0u8, |a, b| a ^ b);
        atr.push(tck);
        atr
    }

    fn power_on(&mut self) {
        self.reset();
    }

    fn power_off(&mut self) {
        self.selected = None;
        self.channel = None;
        self.perso_target = None;
    }

    fn reset(&mut self) {
        self.selected = None;
        self.channel = None;
        self.perso_target = None;
        self.held_response = None;
        self.commands = 0;
    }

    fn process(&mut self, apdu: &[u8]) -> Vec<u8> {
        SimCard::process(self, apdu)
    }
}

/// An in-process link to a simulated card (no pcscd), with the card's fault switches.
#[derive(Clone)]
pub struct InProcessTransport {
    card: Arc<Mutex<SimCard>>,
}

impl InProcessTransport {
    /// Links to a card.
    pub fn new(card: Arc<Mutex<SimCard>>) -> Self {
        InProcessTransport { card }
    }

    /// The card at the other end.
    pub fn card(&self) -> &Arc<Mutex<SimCard>> {
        &self.card
    }
}

#[async_trait]
impl ApduTransport for InProcessTransport {
    async fn transmit(&mut self, command: &[u8]) -> Result<Vec<u8>, TransportError> {
        let (delay, response) = {
            let mut c = self.card.lock().unwrap_or_else(|p| p.into_inner());
            if c.faults.mute {
                return Err(TransportError::CardMute);
            }
            (c.faults.delay, c.process(command))
        };
        if let Some(d) = delay {
            tokio::time::sleep(d).await;
        }
        if response.is_empty() {
            return Err(TransportError::CardRemoved);
        }
        Ok(response)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vpcd::{handle_payload, CTRL_GET_ATR, CTRL_POWER_ON, MAX_ATR_LEN};

    fn mute() -> SimCard {
        let mut card = SimCard::new(
            KeyFile::parse(
                "scp = \"02\"\ni = 0x55\nkvn = 0x20\nkdd = \"00010203040506070809\"\n\
                 kmc = \"404142434445464748494A4B4C4D4E4F\"\n",
            )
            .unwrap()
            .to_config()
            .unwrap(),
        );
        card.faults.mute = true;
        card
    }

    #[test]
    fn a_mute_card_answers_the_vpcd_atr_request_with_more_than_an_atr_can_hold() {
        let mut card = mute();
        assert_eq!(handle_payload(&mut card, &[CTRL_POWER_ON]), None);
        let atr = handle_payload(&mut card, &[CTRL_GET_ATR]).unwrap();
        assert_eq!(atr.len(), MAX_ATR_LEN + 1);
    }

    #[tokio::test]
    async fn a_mute_card_in_process_fails_every_exchange_as_card_mute() {
        let mut t = InProcessTransport::new(Arc::new(Mutex::new(mute())));
        let select = station_emv::gp::select(&default_instances()[0]).to_bytes();
        assert_eq!(t.exchange(&select).await, Err(TransportError::CardMute));
    }

    const KEYS: &str = "scp = \"02\"\ni = 0x55\nkvn = 0x20\nkdd = \"00010203040506070809\"\n\
                        kmc = \"404142434445464748494A4B4C4D4E4F\"\n";

    #[test]
    fn a_key_file_naming_an_isd_gives_a_card_with_that_isd() {
        let card = KeyFile::parse(&format!("{KEYS}isd = \"A000000003000000\"\n"))
            .unwrap()
            .blank_card()
            .unwrap();
        assert_eq!(card.isd_aid(), hex::decode("A000000003000000").unwrap());
        let plain = KeyFile::parse(KEYS).unwrap().blank_card().unwrap();
        assert_eq!(plain.isd_aid(), DEFAULT_ISD_AID);
    }

    #[test]
    fn a_key_file_with_a_malformed_isd_is_refused_naming_it() {
        let e = KeyFile::parse(&format!("{KEYS}isd = \"A0\"\n"))
            .unwrap()
            .blank_card()
            .err()
            .unwrap();
        assert!(e.to_string().contains("isd"), "{e}");
    }
}
