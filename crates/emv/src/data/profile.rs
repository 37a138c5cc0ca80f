//! EMV card profiles as data: one TOML file per card product under `config/emv/`,
//! selected by the order's `paymentApplication.config`.
//!
//! A profile says everything data preparation needs that is not card-holder data:
//! the application (AID, label, priority, PDOL, AIP), where each data element lives
//! (SFI/record layout, from which the AFL is computed), risk-management data (CDOLs,
//! CVM list, IACs, AUC, version, country, currency), the track 2 discretionary-data
//! pattern, the cryptogram version, and the DGI map with each DGI's protection.
//! A new card product is a new file; profiles are checked when they load, and every
//! error names the offending key.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use serde::Deserialize;
use thiserror::Error;

use crate::data::cryptogram::{Algorithm, IadLayout, TERMINAL_TAGS};
use crate::data::derive::{check_discretionary_pattern, ServiceCode};
use crate::dgi::DgiEncryption;
use crate::tlv::{encode, parse_dol};

/// Profiles shipped with the agent, embedded so that a bare install works.
const BUILTIN: &[(&str, &str)] = &[
    (
        "visa_vsdc_cvn10",
        include_str!("../../../../config/emv/visa_vsdc_cvn10.toml"),
    ),
    (
        "visa_vsdc_cvn18",
        include_str!("../../../../config/emv/visa_vsdc_cvn18.toml"),
    ),
    (
        "mc_mchip_cvn16",
        include_str!("../../../../config/emv/mc_mchip_cvn16.toml"),
    ),
    (
        "mc_mchip_cvn17",
        include_str!("../../../../config/emv/mc_mchip_cvn17.toml"),
    ),
];

/// Why a profile cannot be used.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum ProfileError {
    /// The order names a profile that is neither shipped nor in the profile directory.
    #[error("EMV profile '{0}' is not configured on this station")]
    NotFound(String),
    /// The file is not valid TOML or has unknown/missing keys.
    #[error("EMV profile '{profile}': {reason}")]
    Syntax {
        /// Profile name (file stem).
        profile: String,
        /// The parser's words, which name the key.
        reason: String,
    },
    /// A key has a value the agent cannot use.
    #[error("EMV profile '{profile}', key '{key}': {reason}")]
    Invalid {
        /// Profile name.
        profile: String,
        /// The offending key, as written in the file (`record[2].tags`, `aip`).
        key: String,
        /// What is wrong, in plain words.
        reason: String,
    },
    /// The profile asks for something this agent version does not implement yet.
    #[error("EMV profile '{profile}', key '{key}': {what} is not supported yet")]
    NotSupported {
        /// Profile name.
        profile: String,
        /// The offending key.
        key: String,
        /// The feature.
        what: String,
    },
    /// The profile directory cannot be read.
    #[error("cannot read EMV profile directory {path}: {reason}")]
    Io {
        /// Directory or file.
        path: PathBuf,
        /// OS error.
        reason: String,
    },
}

impl station_hal::StaffFacing for ProfileError {
    fn code(&self) -> &'static str {
        match self {
            ProfileError::NotFound(_) => "EMV_PROFILE_NOT_FOUND",
            ProfileError::Syntax { .. } | ProfileError::Invalid { .. } => "EMV_PROFILE_INVALID",
            ProfileError::NotSupported { .. } => "EMV_PROFILE_NOT_SUPPORTED",
            ProfileError::Io { .. } => "EMV_PROFILE_IO",
        }
    }

    fn staff_message(&self) -> String {
        format!("The card product configuration is wrong: {self}. Call IT support.")
    }
}

/// How the application cryptogram is computed; decides the IAD layout and how the
/// read-back ARQC is checked. The algorithm behind each is data ([`Algorithm`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CryptogramVersion {
    /// Visa CVN 10: MAC algorithm 3 under the ICC MK-AC, no session key, CVR only.
    VisaCvn10,
    /// Visa CVN 18: EMV common session key (ATC), the whole IAD in the MAC, `80` padding.
    VisaCvn18,
    /// Mastercard M/Chip CVN 16: Mastercard session key (ATC, UN), 6-byte CVR.
    MchipCvn16,
    /// Mastercard M/Chip CVN 17: as CVN 16, with the IAD counters in the MAC.
    MchipCvn17,
}

impl CryptogramVersion {
    /// Every version, in the order profiles document them.
    pub const ALL: [CryptogramVersion; 4] = [
        CryptogramVersion::VisaCvn10,
        CryptogramVersion::VisaCvn18,
        CryptogramVersion::MchipCvn16,
        CryptogramVersion::MchipCvn17,
    ];

    /// Name as written in a profile.
    pub fn name(&self) -> &'static str {
        match self {
            CryptogramVersion::VisaCvn10 => "visa-cvn10",
            CryptogramVersion::VisaCvn18 => "visa-cvn18",
            CryptogramVersion::MchipCvn16 => "mchip-cvn16",
            CryptogramVersion::MchipCvn17 => "mchip-cvn17",
        }
    }

    /// The cryptogram version number the card reports in its IAD.
    pub fn cvn(&self) -> u8 {
        match self {
            CryptogramVersion::VisaCvn10 => 0x0A,
            CryptogramVersion::VisaCvn18 => 0x12,
            CryptogramVersion::MchipCvn16 => 0x10,
            CryptogramVersion::MchipCvn17 => 0x11,
        }
    }

    /// IAD layout, session key, padding and card data of this version.
    pub fn algorithm(&self) -> Algorithm {
        use crate::data::cryptogram::{CardData, Padding, SessionKey};
        use crate::data::derive::MasterKeyDerivation::{OptionA, OptionB};
        let (master_key, iad, session_key, padding, card_data) = match self {
            CryptogramVersion::VisaCvn10 => (
                OptionA,
                IadLayout::Visa,
                SessionKey::None,
                Padding::Zeros,
                CardData::Cvr,
            ),
            CryptogramVersion::VisaCvn18 => (
                OptionB,
                IadLayout::Visa,
                SessionKey::EmvCommonAtc,
                Padding::Method2,
                CardData::WholeIad,
            ),
            CryptogramVersion::MchipCvn16 => (
                OptionA,
                IadLayout::Mchip,
                SessionKey::MastercardAtcUn,
                Padding::Method2,
                CardData::Cvr,
            ),
            CryptogramVersion::MchipCvn17 => (
                OptionA,
                IadLayout::Mchip,
                SessionKey::MastercardAtcUn,
                Padding::Method2,
                CardData::CvrAndCounters,
            ),
        };
        Algorithm {
            master_key,
            iad,
            session_key,
            padding,
            card_data,
        }
    }

    /// The version a card reports: the CVN read at its place in the scheme's IAD layout.
    pub fn from_iad(layout: IadLayout, iad: &[u8]) -> Option<Self> {
        let cvn = *iad.get(layout.cvn_offset())?;
        Self::ALL
            .into_iter()
            .find(|v| v.algorithm().iad == layout && v.cvn() == cvn)
    }

    fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|v| v.name() == s)
    }
}

/// Offline data authentication the card is set up for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OdaMode {
    /// No offline data authentication (AIP bits for SDA/DDA/CDA clear).
    None,
    /// Static data authentication (issuer-signed static data, tag 93).
    Sda,
    /// Dynamic data authentication (ICC key pair, 9F46/9F47/9F48, DGIs 8201-8205).
    Dda,
    /// Combined DDA / application cryptogram generation: the DDA key set, and the card
    /// signs its cryptogram in GENERATE AC (9F4B).
    Cda,
}

impl OdaMode {
    /// Whether the card gets its own RSA key pair (DDA and CDA).
    pub fn uses_icc_key(self) -> bool {
        matches!(self, OdaMode::Dda | OdaMode::Cda)
    }
}

/// ODA settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OdaConfig {
    /// The ODA method.
    pub mode: OdaMode,
    /// ICC RSA modulus length in bits for DDA.
    pub icc_key_bits: Option<u16>,
    /// Static data authentication tag list (9F4A), usually `82`.
    pub sda_tag_list: Vec<u8>,
    /// Protection of the ICC RSA CRT DGIs 8201-8205.
    pub rsa_dgi_encryption: DgiEncryption,
    /// Data authentication code the issuer puts in the signed static data (SDA).
    pub dac: Option<[u8; 2]>,
    /// Dynamic data authentication data object list (9F49) for DDA.
    pub ddol: Vec<u8>,
}

/// One record of the card: which data elements go in SFI `sfi`, record `record`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordLayout {
    /// Short file identifier (1-30).
    pub sfi: u8,
    /// Record number (1-254).
    pub record: u8,
    /// Data elements in order.
    pub tags: Vec<u32>,
    /// Whether the record takes part in offline data authentication.
    pub oda: bool,
    /// Protection of the record DGI in STORE DATA.
    pub encryption: DgiEncryption,
}

impl RecordLayout {
    /// The record's DGI: SFI ‖ record number.
    pub fn dgi_id(&self) -> u16 {
        u16::from_be_bytes([self.sfi, self.record])
    }
}

/// What a non-record DGI holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DgiContent {
    /// The listed data elements as concatenated TLV (FCI data 9102/9103, GPO response 9104, …).
    Tlv(Vec<u32>),
    /// ICC master keys MK-AC ‖ MK-SMI ‖ MK-SMC (DGI 8000).
    IccKeys,
    /// Key check values of the three ICC keys (DGI 9000).
    KeyCheckValues,
    /// PIN try counter ‖ PIN try limit (DGI 9010).
    PinTry,
}

/// One DGI of the profile's map.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DgiLayout {
    /// DGI identifier.
    pub id: u16,
    /// Content.
    pub content: DgiContent,
    /// Protection in STORE DATA.
    pub encryption: DgiEncryption,
}

/// Issuer action codes (9F0D default, 9F0E denial, 9F0F online).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IssuerActionCodes {
    /// 9F0D.
    pub default: [u8; 5],
    /// 9F0E.
    pub denial: [u8; 5],
    /// 9F0F.
    pub online: [u8; 5],
}

/// A validated EMV profile.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Profile {
    /// Name, equal to the file stem and to `paymentApplication.config`.
    pub name: String,
    /// Free text for operators.
    pub description: String,
    /// Application identifier (4F / 84).
    pub aid: Vec<u8>,
    /// Application label (50).
    pub label: String,
    /// Application priority indicator (87).
    pub priority: u8,
    /// Language preference (5F2D), ISO 639-1 codes concatenated.
    pub language: String,
    /// PDOL (9F38); empty when the card asks for no terminal data at GPO.
    pub pdol: Vec<u8>,
    /// Application interchange profile (82).
    pub aip: [u8; 2],
    /// Record layout; the AFL is computed from it.
    pub records: Vec<RecordLayout>,
    /// CDOL1 (8C).
    pub cdol1: Vec<u8>,
    /// CDOL2 (8D).
    pub cdol2: Vec<u8>,
    /// CVM list (8E).
    pub cvm_list: Vec<u8>,
    /// Issuer action codes.
    pub iac: IssuerActionCodes,
    /// Application usage control (9F07).
    pub auc: [u8; 2],
    /// Application version number (9F08).
    pub application_version: [u8; 2],
    /// Issuer country code (5F28), numeric ISO 3166, as 2 BCD bytes.
    pub issuer_country: [u8; 2],
    /// Application currency code (9F42), numeric ISO 4217, as 2 BCD bytes.
    pub currency: [u8; 2],
    /// Application currency exponent (9F44).
    pub currency_exponent: u8,
    /// Service code used unless the order overrides it.
    pub service_code: ServiceCode,
    /// Track 2 discretionary data pattern (`{pvki}`, `{pvv}`, `{cvv}` and digit fill).
    pub track2_discretionary: String,
    /// Cryptogram version.
    pub cryptogram: CryptogramVersion,
    /// Issuer discretionary data the Visa IAD carries after the CVR (`length ‖ data`);
    /// empty for none.
    pub issuer_discretionary_data: Vec<u8>,
    /// PIN try limit (also the initial PIN try counter).
    pub pin_try_limit: u8,
    /// Non-record DGIs, in the order they are sent.
    pub dgis: Vec<DgiLayout>,
    /// Fixed-value data elements (hex in the file) for tags the agent does not compute.
    pub fixed_tags: BTreeMap<u32, Vec<u8>>,
    /// Offline data authentication.
    pub oda: OdaConfig,
}

/// Tags whose values prep computes from the profile itself.
const PROFILE_TAGS: &[u32] = &[
    0x4F, 0x50, 0x87, 0x5F2D, 0x9F38, 0x82, 0x94, 0x8C, 0x8D, 0x8E, 0x9F0D, 0x9F0E, 0x9F0F, 0x9F07,
    0x9F08, 0x5F28, 0x9F42, 0x9F44, 0x5F30, 0x9F10,
];

/// Tags whose values prep computes from the order's card data.
const CARD_TAGS: &[u32] = &[0x5A, 0x57, 0x5F24, 0x5F25, 0x5F34, 0x5F20, 0x9F1F];

/// Tags that only come with offline data authentication (from the key store or signing).
const ODA_TAGS: &[u32] = &[
    0x8F, 0x90, 0x92, 0x9F32, 0x93, 0x9F46, 0x9F47, 0x9F48, 0x9F49, 0x9F4A,
];

/// The ODA tags an SDA card carries: CA index, issuer certificate, remainder,
/// exponent, signed static data, SDA tag list.
const SDA_TAGS: &[u32] = &[0x8F, 0x90, 0x92, 0x9F32, 0x93, 0x9F4A];

/// The ODA tags a DDA card carries: issuer key data, ICC key certificate, exponent,
/// remainder, DDOL, SDA tag list.
const DDA_TAGS: &[u32] = &[
    0x8F, 0x90, 0x92, 0x9F32, 0x9F46, 0x9F47, 0x9F48, 0x9F49, 0x9F4A,
];

/// AIP byte 1 bit for SDA.
const AIP_SDA: u8 = 0x40;
/// AIP byte 1 bit for DDA.
const AIP_DDA: u8 = 0x20;
/// AIP byte 1 bit for CDA.
const AIP_CDA: u8 = 0x01;

/// The AIP bits that announce SDA (0x40), DDA (0x20) and CDA (0x01) in byte 1.
const AIP_ODA_BITS: u8 = 0x61;

impl Profile {
    /// Parses and validates a profile; `name` is the file stem the order refers to.
    pub fn from_toml(name: &str, text: &str) -> Result<Self, ProfileError> {
        let raw: RawProfile = toml::from_str(text).map_err(|e| ProfileError::Syntax {
            profile: name.to_string(),
            reason: e.message().to_string() + &span_hint(text, e.span()),
        })?;
        Check { profile: name }.profile(raw)
    }

    /// Application file locator (94), four bytes per run of consecutive records of one
    /// SFI: SFI << 3, first record, last record, number of ODA records from the first.
    pub fn afl(&self) -> Vec<u8> {
        let mut out = Vec::new();
        for run in runs(&self.records) {
            let (first, last) = (run[0], run[run.len() - 1]);
            let oda = run.iter().take_while(|r| r.oda).count() as u8;
            out.extend_from_slice(&[first.sfi << 3, first.record, last.record, oda]);
        }
        out
    }

    /// The records in AFL order (by SFI, then record number).
    pub fn records_in_afl_order(&self) -> Vec<&RecordLayout> {
        runs(&self.records).into_iter().flatten().collect()
    }

    /// The data elements whose values come from the profile, given the derivation key
    /// index the order uses (it appears in the Visa IAD).
    pub fn profile_tag_values(&self, derivation_key_index: u8) -> BTreeMap<u32, Vec<u8>> {
        let mut m = BTreeMap::new();
        m.insert(0x4F, self.aid.clone());
        m.insert(0x50, self.label.as_bytes().to_vec());
        m.insert(0x87, vec![self.priority]);
        m.insert(0x5F2D, self.language.as_bytes().to_vec());
        if !self.pdol.is_empty() {
            m.insert(0x9F38, self.pdol.clone());
        }
        m.insert(0x82, self.aip.to_vec());
        m.insert(0x94, self.afl());
        m.insert(0x8C, self.cdol1.clone());
        m.insert(0x8D, self.cdol2.clone());
        m.insert(0x8E, self.cvm_list.clone());
        m.insert(0x9F0D, self.iac.default.to_vec());
        m.insert(0x9F0E, self.iac.denial.to_vec());
        m.insert(0x9F0F, self.iac.online.to_vec());
        m.insert(0x9F07, self.auc.to_vec());
        m.insert(0x9F08, self.application_version.to_vec());
        m.insert(0x5F28, self.issuer_country.to_vec());
        m.insert(0x9F42, self.currency.to_vec());
        m.insert(0x9F44, vec![self.currency_exponent]);
        m.insert(0x5F30, self.service_code.to_5f30());
        m.insert(0x9F10, self.iad_template(derivation_key_index));
        if !self.oda.sda_tag_list.is_empty() {
            m.insert(0x9F4A, self.oda.sda_tag_list.clone());
        }
        if self.oda.mode.uses_icc_key() {
            m.insert(0x9F49, self.oda.ddol.clone());
        }
        for (t, v) in &self.fixed_tags {
            m.insert(*t, v.clone());
        }
        m
    }

    /// The issuer application data the card starts from, in the layout of the
    /// cryptogram version: key index and CVN set, CVR and counters zero (see
    /// [`IadLayout::template`]).
    pub fn iad_template(&self, derivation_key_index: u8) -> Vec<u8> {
        self.cryptogram.algorithm().iad.template(
            derivation_key_index,
            self.cryptogram.cvn(),
            &self.issuer_discretionary_data,
        )
    }

    /// The FCI a SELECT of this application is expected to return (for tests and the
    /// simulator): `6F { 84 AID, A5 { 50, 87, [9F38], 5F2D } }`.
    pub fn expected_fci(&self) -> Vec<u8> {
        let mut a5 = encode(0x50, self.label.as_bytes());
        a5.extend(encode(0x87, &[self.priority]));
        if !self.pdol.is_empty() {
            a5.extend(encode(0x9F38, &self.pdol));
        }
        a5.extend(encode(0x5F2D, self.language.as_bytes()));
        let mut body = encode(0x84, &self.aid);
        body.extend(encode(0xA5, &a5));
        encode(0x6F, &body)
    }
}

/// Profiles available on this station: the shipped ones, overridden or extended by a
/// directory of `*.toml` files.
#[derive(Debug, Clone, Default)]
pub struct ProfileSet {
    profiles: BTreeMap<String, Profile>,
}

impl ProfileSet {
    /// The shipped profiles.
    pub fn builtin() -> Result<Self, ProfileError> {
        let mut set = ProfileSet::default();
        for (name, text) in BUILTIN {
            set.profiles
                .insert(name.to_string(), Profile::from_toml(name, text)?);
        }
        Ok(set)
    }

    /// The shipped profiles plus every `*.toml` in `dir` (a file with a shipped name
    /// replaces the shipped profile). One bad file fails the whole load, so that a
    /// typo is found at start-up, not at the counter.
    pub fn with_dir(dir: &Path) -> Result<Self, ProfileError> {
        let mut set = Self::builtin()?;
        let io = |path: &Path, e: std::io::Error| ProfileError::Io {
            path: path.to_path_buf(),
            reason: e.to_string(),
        };
        let mut paths: Vec<PathBuf> = std::fs::read_dir(dir)
            .map_err(|e| io(dir, e))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "toml"))
            .collect();
        paths.sort();
        for path in paths {
            let name = path
                .file_stem()
                .and_then(|s| s.to_str())
                .unwrap_or_default()
                .to_string();
            let text = std::fs::read_to_string(&path).map_err(|e| io(&path, e))?;
            set.profiles
                .insert(name.clone(), Profile::from_toml(&name, &text)?);
        }
        Ok(set)
    }

    /// The profile an order's `paymentApplication.config` names.
    pub fn get(&self, name: &str) -> Result<&Profile, ProfileError> {
        self.profiles
            .get(name)
            .ok_or_else(|| ProfileError::NotFound(name.to_string()))
    }

    /// Names of the available profiles.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.profiles.keys().map(String::as_str)
    }
}

/// Records sorted by SFI and record number, split into runs of consecutive records of
/// one SFI (one AFL entry each).
fn runs(records: &[RecordLayout]) -> Vec<Vec<&RecordLayout>> {
    let mut sorted: Vec<&RecordLayout> = records.iter().collect();
    sorted.sort_by_key(|r| (r.sfi, r.record));
    let mut out: Vec<Vec<&RecordLayout>> = Vec::new();
    for r in sorted {
        match out.last_mut() {
            Some(run)
                if run[run.len() - 1].sfi == r.sfi && run[run.len() - 1].record + 1 == r.record =>
            {
                run.push(r)
            }
            _ => out.push(vec![r]),
        }
    }
    out
}

fn span_hint(text: &str, span: Option<std::ops::Range<usize>>) -> String {
    match span {
        Some(s) => {
            let line = text[..s.start.min(text.len())].matches('\n').count() + 1;
            format!(" (line {line})")
        }
        None => String::new(),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawProfile {
    name: String,
    #[serde(default)]
    description: String,
    aid: String,
    label: String,
    priority: u8,
    language: String,
    #[serde(default)]
    pdol: String,
    aip: String,
    cdol1: String,
    cdol2: String,
    cvm_list: String,
    iac_default: String,
    iac_denial: String,
    iac_online: String,
    auc: String,
    application_version: String,
    issuer_country: String,
    currency: String,
    currency_exponent: u8,
    service_code: String,
    track2_discretionary: String,
    cryptogram: String,
    #[serde(default)]
    issuer_discretionary_data: String,
    pin_try_limit: u8,
    #[serde(default)]
    tags: BTreeMap<String, String>,
    oda: RawOda,
    #[serde(rename = "record")]
    records: Vec<RawRecord>,
    #[serde(rename = "dgi")]
    dgis: Vec<RawDgi>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawOda {
    mode: OdaMode,
    icc_key_bits: Option<u16>,
    #[serde(default)]
    sda_tag_list: String,
    #[serde(default = "default_rsa_encryption")]
    rsa_dgi_encryption: DgiEncryption,
    dac: Option<String>,
    #[serde(default = "default_ddol")]
    ddol: String,
}

fn default_ddol() -> String {
    "9F3704".into()
}

fn default_rsa_encryption() -> DgiEncryption {
    DgiEncryption::Pad
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRecord {
    sfi: u8,
    record: u8,
    tags: Vec<String>,
    #[serde(default)]
    oda: bool,
    #[serde(default = "default_none")]
    encryption: DgiEncryption,
}

fn default_none() -> DgiEncryption {
    DgiEncryption::None
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDgi {
    id: String,
    content: String,
    #[serde(default)]
    tags: Vec<String>,
    #[serde(default = "default_none")]
    encryption: DgiEncryption,
}

/// Validation with the profile name at hand for error messages.
struct Check<'a> {
    profile: &'a str,
}

impl Check<'_> {
    fn invalid(&self, key: impl Into<String>, reason: impl Into<String>) -> ProfileError {
        ProfileError::Invalid {
            profile: self.profile.to_string(),
            key: key.into(),
            reason: reason.into(),
        }
    }

    fn unsupported(&self, key: &str, what: &str) -> ProfileError {
        ProfileError::NotSupported {
            profile: self.profile.to_string(),
            key: key.to_string(),
            what: what.to_string(),
        }
    }

    fn hex(&self, key: &str, s: &str) -> Result<Vec<u8>, ProfileError> {
        hex::decode(s).map_err(|_| self.invalid(key, "must be an even number of hex digits"))
    }

    fn fixed<const N: usize>(&self, key: &str, s: &str) -> Result<[u8; N], ProfileError> {
        self.hex(key, s)?
            .try_into()
            .map_err(|_| self.invalid(key, format!("must be {N} bytes ({} hex digits)", 2 * N)))
    }

    fn tag(&self, key: &str, s: &str) -> Result<u32, ProfileError> {
        let b = self.hex(key, s)?;
        // A BER tag: one byte, or a first byte with low bits 1F followed by bytes whose
        // top bit says "more follows", the last with it clear.
        let well_formed = match b.as_slice() {
            [first] => first & 0x1F != 0x1F,
            [first, rest @ ..] if rest.len() <= 2 => {
                first & 0x1F == 0x1F
                    && rest[..rest.len() - 1].iter().all(|x| x & 0x80 != 0)
                    && rest[rest.len() - 1] & 0x80 == 0
            }
            _ => false,
        };
        if !well_formed {
            return Err(self.invalid(key, format!("'{s}' is not a well-formed BER tag")));
        }
        Ok(b.iter().fold(0u32, |a, x| (a << 8) | *x as u32))
    }

    fn dol(&self, key: &str, s: &str) -> Result<Vec<u8>, ProfileError> {
        let b = self.hex(key, s)?;
        parse_dol(&b).map_err(|e| self.invalid(key, format!("not a valid DOL: {e}")))?;
        Ok(b)
    }

    fn numeric3(&self, key: &str, s: &str) -> Result<[u8; 2], ProfileError> {
        if s.len() != 3 || !s.bytes().all(|b| b.is_ascii_digit()) {
            return Err(self.invalid(key, "must be a 3-digit numeric ISO code"));
        }
        let b = crate::data::derive::bcd(&format!("0{s}"));
        Ok([b[0], b[1]])
    }

    fn profile(&self, r: RawProfile) -> Result<Profile, ProfileError> {
        if r.name != self.profile {
            return Err(self.invalid(
                "name",
                format!("'{}' differs from the file name '{}'", r.name, self.profile),
            ));
        }
        let aid = self.hex("aid", &r.aid)?;
        if !(5..=16).contains(&aid.len()) {
            return Err(self.invalid("aid", "an AID is 5 to 16 bytes"));
        }
        if r.label.is_empty()
            || r.label.len() > 16
            || !r.label.bytes().all(|b| (0x20..0x7F).contains(&b))
        {
            return Err(self.invalid("label", "1 to 16 printable ASCII characters"));
        }
        if !(1..=15).contains(&r.priority) {
            return Err(self.invalid("priority", "must be 1 to 15"));
        }
        if r.language.is_empty()
            || r.language.len() % 2 != 0
            || r.language.len() > 8
            || !r.language.bytes().all(|b| b.is_ascii_lowercase())
        {
            return Err(self.invalid(
                "language",
                "1 to 4 ISO 639-1 codes, e.g. \"en\" or \"enfr\"",
            ));
        }
        let pdol = self.dol("pdol", &r.pdol)?;
        let aip: [u8; 2] = self.fixed("aip", &r.aip)?;
        let cdol1 = self.dol("cdol1", &r.cdol1)?;
        let cdol2 = self.dol("cdol2", &r.cdol2)?;
        let cvm_list = self.hex("cvm_list", &r.cvm_list)?;
        if cvm_list.len() < 10 || (cvm_list.len() - 8) % 2 != 0 {
            return Err(self.invalid(
                "cvm_list",
                "amount X (4) ‖ amount Y (4) ‖ at least one 2-byte CV rule",
            ));
        }
        let iac = IssuerActionCodes {
            default: self.fixed("iac_default", &r.iac_default)?,
            denial: self.fixed("iac_denial", &r.iac_denial)?,
            online: self.fixed("iac_online", &r.iac_online)?,
        };
        let auc = self.fixed("auc", &r.auc)?;
        let application_version = self.fixed("application_version", &r.application_version)?;
        let issuer_country = self.numeric3("issuer_country", &r.issuer_country)?;
        let currency = self.numeric3("currency", &r.currency)?;
        if r.currency_exponent > 9 {
            return Err(self.invalid("currency_exponent", "must be 0 to 9"));
        }
        let service_code = ServiceCode::new(&r.service_code)
            .map_err(|e| self.invalid("service_code", e.to_string()))?;
        let disc_len = check_discretionary_pattern(&r.track2_discretionary)
            .map_err(|e| self.invalid("track2_discretionary", e.to_string()))?;
        // Shortest track 2: 16-digit PAN ‖ D ‖ YYMM ‖ SVC; the 37-character ceiling is
        // checked again per card with the real PAN length.
        if 16 + 1 + 4 + 3 + disc_len > 37 {
            return Err(self.invalid(
                "track2_discretionary",
                format!("{disc_len} digits leave no room for a 16-digit PAN in 37 characters"),
            ));
        }
        let cryptogram = CryptogramVersion::parse(&r.cryptogram).ok_or_else(|| {
            let names: Vec<String> = CryptogramVersion::ALL
                .iter()
                .map(|v| format!("\"{}\"", v.name()))
                .collect();
            self.invalid("cryptogram", format!("one of {}", names.join(", ")))
        })?;
        // Every version MACs the same terminal data, so CDOL1 must ask for all of it
        // at the length the MAC takes.
        let requested = parse_dol(&cdol1).expect("checked");
        for (need, len) in TERMINAL_TAGS {
            match requested.iter().find(|d| d.0 == need) {
                Some(&(_, l)) if l == len => {}
                Some(&(_, l)) => {
                    return Err(self.invalid(
                        "cdol1",
                        format!(
                            "{} covers tag {need:X} as {len} bytes, CDOL1 asks for {l}",
                            cryptogram.name()
                        ),
                    ))
                }
                None => {
                    return Err(self.invalid(
                        "cdol1",
                        format!(
                            "{} covers tag {need:X}, which CDOL1 does not request",
                            cryptogram.name()
                        ),
                    ))
                }
            }
        }
        let issuer_discretionary_data =
            self.hex("issuer_discretionary_data", &r.issuer_discretionary_data)?;
        if !issuer_discretionary_data.is_empty() {
            if cryptogram.algorithm().iad != IadLayout::Visa {
                return Err(self.invalid(
                    "issuer_discretionary_data",
                    format!("only a Visa IAD carries it, not {}", cryptogram.name()),
                ));
            }
            // The whole IAD fits in 32 bytes: 7 scheme bytes, a length byte, the data.
            if issuer_discretionary_data.len() > 24 {
                return Err(self.invalid("issuer_discretionary_data", "at most 24 bytes"));
            }
        }
        if !(1..=15).contains(&r.pin_try_limit) {
            return Err(self.invalid("pin_try_limit", "must be 1 to 15"));
        }

        let oda = OdaConfig {
            mode: r.oda.mode,
            icc_key_bits: r.oda.icc_key_bits,
            sda_tag_list: self.hex("oda.sda_tag_list", &r.oda.sda_tag_list)?,
            rsa_dgi_encryption: r.oda.rsa_dgi_encryption,
            dac: r
                .oda
                .dac
                .as_deref()
                .map(|d| self.fixed::<2>("oda.dac", d))
                .transpose()?,
            ddol: self.hex("oda.ddol", &r.oda.ddol)?,
        };
        match oda.mode {
            OdaMode::None => {
                if aip[0] & AIP_ODA_BITS != 0 {
                    return Err(
                        self.invalid("aip", "announces SDA/DDA/CDA but oda.mode is \"none\"")
                    );
                }
            }
            OdaMode::Sda => {
                if aip[0] & AIP_ODA_BITS != AIP_SDA {
                    return Err(self.invalid(
                        "aip",
                        "oda.mode \"sda\" needs the SDA bit (40) and no DDA/CDA bits in byte 1",
                    ));
                }
                if oda.dac.is_none() {
                    return Err(
                        self.invalid("oda.dac", "SDA needs a 2-byte data authentication code")
                    );
                }
                if !(oda.sda_tag_list.is_empty() || oda.sda_tag_list == [0x82]) {
                    return Err(
                        self.invalid("oda.sda_tag_list", "EMV allows only \"82\" (or nothing)")
                    );
                }
            }
            OdaMode::Dda | OdaMode::Cda => {
                if oda.mode == OdaMode::Dda && aip[0] & AIP_ODA_BITS != AIP_DDA {
                    return Err(self.invalid(
                        "aip",
                        "oda.mode \"dda\" needs the DDA bit (20) and not the SDA (40) or CDA (01) bits in byte 1",
                    ));
                }
                // A CDA card also answers INTERNAL AUTHENTICATE for DDA-only terminals.
                if oda.mode == OdaMode::Cda && aip[0] & AIP_ODA_BITS != AIP_DDA | AIP_CDA {
                    return Err(self.invalid(
                        "aip",
                        "oda.mode \"cda\" needs the DDA (20) and CDA (01) bits and not the SDA bit (40) in byte 1",
                    ));
                }
                match oda.icc_key_bits {
                    Some(b) if b % 8 == 0 && (512..=1984).contains(&b) => {}
                    _ => {
                        return Err(self.invalid(
                            "oda.icc_key_bits",
                            "DDA needs the ICC key length: a multiple of 8 from 512 to 1984",
                        ))
                    }
                }
                if oda.rsa_dgi_encryption == DgiEncryption::None {
                    return Err(self.invalid(
                        "oda.rsa_dgi_encryption",
                        "the ICC private key DGIs must be encrypted (pad or nopad)",
                    ));
                }
                let ddol = parse_dol(&oda.ddol)
                    .map_err(|e| self.invalid("oda.ddol", format!("not a valid DOL: {e}")))?;
                if !ddol.iter().any(|d| d.0 == 0x9F37) {
                    return Err(self.invalid(
                        "oda.ddol",
                        "the DDOL must ask for the unpredictable number 9F37",
                    ));
                }
                if !(oda.sda_tag_list.is_empty() || oda.sda_tag_list == [0x82]) {
                    return Err(
                        self.invalid("oda.sda_tag_list", "EMV allows only \"82\" (or nothing)")
                    );
                }
            }
        }

        let mut fixed_tags = BTreeMap::new();
        for (k, v) in &r.tags {
            let key = format!("tags.{k}");
            let t = self.tag(&key, k)?;
            if PROFILE_TAGS.contains(&t) || CARD_TAGS.contains(&t) {
                return Err(self.invalid(
                    key,
                    "this tag is computed by the agent; set it through its own key",
                ));
            }
            if ODA_TAGS.contains(&t) {
                return Err(self.invalid(
                    key,
                    "ODA data comes from the key store and [oda], not [tags]",
                ));
            }
            fixed_tags.insert(t, self.hex(&key, v)?);
        }
        let known = |t: u32| {
            PROFILE_TAGS.contains(&t) || CARD_TAGS.contains(&t) || fixed_tags.contains_key(&t)
        };
        let mut records = Vec::new();
        let mut seen_records = BTreeSet::new();
        for (i, rr) in r.records.iter().enumerate() {
            let key = format!("record[{i}]");
            if !(1..=30).contains(&rr.sfi) {
                return Err(self.invalid(format!("{key}.sfi"), "SFI must be 1 to 30"));
            }
            if !(1..=254).contains(&rr.record) {
                return Err(self.invalid(format!("{key}.record"), "record number must be 1 to 254"));
            }
            if !seen_records.insert((rr.sfi, rr.record)) {
                return Err(self.invalid(
                    key,
                    format!("SFI {} record {} is listed twice", rr.sfi, rr.record),
                ));
            }
            if rr.tags.is_empty() {
                return Err(self.invalid(format!("{key}.tags"), "a record needs at least one tag"));
            }
            let mut tags = Vec::new();
            for (j, s) in rr.tags.iter().enumerate() {
                let tkey = format!("{key}.tags[{j}]");
                let t = self.tag(&tkey, s)?;
                self.check_source(&tkey, t, &pdol, oda.mode, &known)?;
                if rr.oda && (t == 0x93 || t == 0x9F46) {
                    return Err(self.invalid(
                        tkey,
                        format!("{t:X} signs the ODA records, so it cannot be in one"),
                    ));
                }
                if tags.contains(&t) {
                    return Err(self.invalid(tkey, format!("tag {t:X} twice in one record")));
                }
                tags.push(t);
            }
            records.push(RecordLayout {
                sfi: rr.sfi,
                record: rr.record,
                tags,
                oda: rr.oda,
                encryption: rr.encryption,
            });
        }
        if records.is_empty() {
            return Err(self.invalid("record", "at least one record is needed"));
        }
        for must in [0x5A, 0x57, 0x5F24, 0x8C, 0x8D] {
            if !records.iter().any(|r| r.tags.contains(&must)) {
                return Err(self.invalid(
                    "record",
                    format!("tag {must:X} must be in a record for a terminal to read it"),
                ));
            }
        }

        if oda.mode != OdaMode::None {
            if !records.iter().any(|r| r.oda) {
                return Err(self.invalid("record", "ODA needs at least one record with oda = true"));
            }
            let mut must: Vec<u32> = match oda.mode {
                OdaMode::Sda => vec![0x8F, 0x90, 0x9F32, 0x93],
                _ => vec![0x8F, 0x90, 0x9F32, 0x9F46, 0x9F47, 0x9F49],
            };
            if !oda.sda_tag_list.is_empty() {
                must.push(0x9F4A);
            }
            for t in must {
                if !records.iter().any(|r| r.tags.contains(&t)) {
                    return Err(self.invalid(
                        "record",
                        format!("{:?} needs tag {t:X} in a record", oda.mode),
                    ));
                }
            }
        }
        // The AFL can only flag the first records of each run for ODA.
        for run in runs(&records) {
            if let Some(pos) = run.iter().position(|r| !r.oda) {
                if let Some(late) = run[pos..].iter().find(|r| r.oda) {
                    return Err(self.invalid(
                        "record",
                        format!(
                            "SFI {} record {} has oda = true after a record without: ODA records come first in their SFI",
                            late.sfi, late.record
                        ),
                    ));
                }
            }
        }

        let mut dgis = Vec::new();
        let mut seen_dgis: BTreeSet<u16> = records.iter().map(|r| r.dgi_id()).collect();
        for (i, rd) in r.dgis.iter().enumerate() {
            let key = format!("dgi[{i}]");
            let idb: [u8; 2] = self.fixed(&format!("{key}.id"), &rd.id)?;
            let id = u16::from_be_bytes(idb);
            if (0x0001..=0x1EFF).contains(&id) {
                return Err(self.invalid(
                    format!("{key}.id"),
                    "0101-1EFF are record DGIs; describe records with [[record]]",
                ));
            }
            if (0x8201..=0x8205).contains(&id) {
                return Err(self.invalid(
                    format!("{key}.id"),
                    "DGIs 8201-8205 are added by the agent when oda.mode is \"dda\"",
                ));
            }
            if id == 0 || !seen_dgis.insert(id) {
                return Err(self.invalid(
                    format!("{key}.id"),
                    format!("DGI {id:04X} invalid or listed twice"),
                ));
            }
            let content = match rd.content.as_str() {
                "tlv" => {
                    if rd.tags.is_empty() {
                        return Err(self.invalid(format!("{key}.tags"), "a tlv DGI needs tags"));
                    }
                    let mut tags = Vec::new();
                    for (j, s) in rd.tags.iter().enumerate() {
                        let tkey = format!("{key}.tags[{j}]");
                        let t = self.tag(&tkey, s)?;
                        self.check_source(&tkey, t, &pdol, oda.mode, &known)?;
                        tags.push(t);
                    }
                    DgiContent::Tlv(tags)
                }
                "icc_keys" => DgiContent::IccKeys,
                "key_check_values" => DgiContent::KeyCheckValues,
                "pin_try" => DgiContent::PinTry,
                "offline_pin_block" => {
                    return Err(self.unsupported(
                        &format!("{key}.content"),
                        "the offline PIN block DGI (8010)",
                    ))
                }
                "icc_rsa_crt" => {
                    return Err(self.invalid(
                        format!("{key}.content"),
                        "DGIs 8201-8205 are added by the agent when oda.mode is \"dda\"; set their protection with oda.rsa_dgi_encryption",
                    ))
                }
                other => {
                    return Err(self.invalid(
                        format!("{key}.content"),
                        format!("'{other}' is not one of tlv, icc_keys, key_check_values, pin_try"),
                    ))
                }
            };
            if !matches!(content, DgiContent::Tlv(_)) && !rd.tags.is_empty() {
                return Err(self.invalid(format!("{key}.tags"), "only tlv DGIs list tags"));
            }
            if content == DgiContent::IccKeys && rd.encryption == DgiEncryption::None {
                return Err(self.invalid(
                    format!("{key}.encryption"),
                    "ICC keys must be encrypted (pad or nopad)",
                ));
            }
            dgis.push(DgiLayout {
                id,
                content,
                encryption: rd.encryption,
            });
        }
        for (content, what) in [
            (DgiContent::IccKeys, "icc_keys"),
            (DgiContent::PinTry, "pin_try"),
        ] {
            if !dgis.iter().any(|d| d.content == content) {
                return Err(
                    self.invalid("dgi", format!("a DGI with content \"{what}\" is required"))
                );
            }
        }
        let gpo = dgis.iter().any(
            |d| matches!(&d.content, DgiContent::Tlv(t) if t.contains(&0x82) && t.contains(&0x94)),
        );
        if !gpo {
            return Err(self.invalid(
                "dgi",
                "a tlv DGI holding the GPO response (82 and 94) is required",
            ));
        }

        let p = Profile {
            name: r.name,
            description: r.description,
            aid,
            label: r.label,
            priority: r.priority,
            language: r.language,
            pdol,
            aip,
            records,
            cdol1,
            cdol2,
            cvm_list,
            iac,
            auc,
            application_version,
            issuer_country,
            currency,
            currency_exponent: r.currency_exponent,
            service_code,
            track2_discretionary: r.track2_discretionary,
            cryptogram,
            issuer_discretionary_data,
            pin_try_limit: r.pin_try_limit,
            dgis,
            fixed_tags,
            oda,
        };
        Ok(p)
    }

    fn check_source(
        &self,
        key: &str,
        t: u32,
        pdol: &[u8],
        oda: OdaMode,
        known: &dyn Fn(u32) -> bool,
    ) -> Result<(), ProfileError> {
        if t == 0x9F38 && pdol.is_empty() {
            return Err(self.invalid(key, "tag 9F38 listed but no pdol is configured"));
        }
        if ODA_TAGS.contains(&t) {
            return match oda {
                OdaMode::Sda if SDA_TAGS.contains(&t) => Ok(()),
                OdaMode::Dda | OdaMode::Cda if DDA_TAGS.contains(&t) => Ok(()),
                OdaMode::Sda | OdaMode::Dda | OdaMode::Cda => {
                    Err(self.invalid(key, format!("{t:X} does not belong to oda.mode {:?}", oda)))
                }
                _ => Err(self.invalid(
                    key,
                    format!("ODA data element {t:X} needs oda.mode \"sda\""),
                )),
            };
        }
        if !known(t) {
            return Err(self.invalid(
                key,
                format!("tag {t:X} has no value: add it under [tags] or remove it"),
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn visa() -> Profile {
        ProfileSet::builtin()
            .unwrap()
            .get("visa_vsdc_cvn10")
            .unwrap()
            .clone()
    }

    #[test]
    fn shipped_profiles_load() {
        let set = ProfileSet::builtin().unwrap();
        assert_eq!(
            set.names().collect::<Vec<_>>(),
            vec![
                "mc_mchip_cvn16",
                "mc_mchip_cvn17",
                "visa_vsdc_cvn10",
                "visa_vsdc_cvn18"
            ]
        );
    }

    #[test]
    fn afl_groups_consecutive_records_and_counts_oda_records() {
        let mut p = visa();
        p.records = vec![
            RecordLayout {
                sfi: 1,
                record: 1,
                tags: vec![0x57],
                oda: false,
                encryption: DgiEncryption::None,
            },
            RecordLayout {
                sfi: 2,
                record: 1,
                tags: vec![0x5A],
                oda: true,
                encryption: DgiEncryption::None,
            },
            RecordLayout {
                sfi: 2,
                record: 2,
                tags: vec![0x8C],
                oda: true,
                encryption: DgiEncryption::None,
            },
            RecordLayout {
                sfi: 2,
                record: 3,
                tags: vec![0x8D],
                oda: false,
                encryption: DgiEncryption::None,
            },
            RecordLayout {
                sfi: 3,
                record: 2,
                tags: vec![0x8E],
                oda: false,
                encryption: DgiEncryption::None,
            },
        ];
        assert_eq!(hex::encode(p.afl()), "080101001001030218020200");
    }

    fn broken(from: &str, to: &str) -> ProfileError {
        let text = BUILTIN[0].1.replacen(from, to, 1);
        assert_ne!(text, BUILTIN[0].1, "test edit did not apply");
        Profile::from_toml("visa_vsdc_cvn10", &text).unwrap_err()
    }

    #[test]
    fn a_bad_aip_is_refused_naming_the_key() {
        match broken("aip = \"1800\"", "aip = \"18\"") {
            ProfileError::Invalid { key, .. } => assert_eq!(key, "aip"),
            e => panic!("{e}"),
        }
    }

    #[test]
    fn an_unknown_key_is_refused_naming_it() {
        let e = broken("pin_try_limit", "pin_tries_limit");
        assert!(e.to_string().contains("pin_tries_limit"), "{e}");
    }

    #[test]
    fn a_tag_without_a_value_is_refused_naming_the_record() {
        let e = broken("\"5F20\",", "\"9F99\", \"5F20\",");
        match e {
            ProfileError::Invalid { key, reason, .. } => {
                assert!(key.starts_with("record["), "{key}");
                assert!(reason.contains("9F99"), "{reason}");
            }
            e => panic!("{e}"),
        }
    }

    #[test]
    fn an_unknown_cryptogram_version_is_refused_listing_the_known_ones() {
        let e = broken("cryptogram = \"visa-cvn10\"", "cryptogram = \"visa-cvn99\"");
        assert!(
            e.to_string().contains(
                "one of \"visa-cvn10\", \"visa-cvn18\", \"mchip-cvn16\", \"mchip-cvn17\""
            ),
            "{e}"
        );
    }

    #[test]
    fn a_cdol1_without_the_unpredictable_number_is_refused_naming_the_tag() {
        let e = broken("9C019F3704\"", "9C01\"");
        assert!(
            matches!(&e, ProfileError::Invalid { key, .. } if key == "cdol1"),
            "{e}"
        );
        assert!(e.to_string().contains("9F37"), "{e}");
    }

    #[test]
    fn the_iad_template_follows_the_versions_layout() {
        let set = ProfileSet::builtin().unwrap();
        let visa = set.get("visa_vsdc_cvn18").unwrap().iad_template(0x01);
        assert_eq!(
            hex::encode_upper(visa),
            "06011203000000".to_string() + "0F010000000000000000000000000000"
        );
        let mc = set.get("mc_mchip_cvn17").unwrap().iad_template(0x01);
        assert_eq!(hex::encode_upper(mc), "0111".to_string() + &"00".repeat(16));
    }

    #[test]
    fn issuer_discretionary_data_is_refused_for_an_mchip_iad() {
        let text = ProfileSet::builtin()
            .unwrap()
            .get("mc_mchip_cvn16")
            .map(|_| include_str!("../../../../config/emv/mc_mchip_cvn16.toml"))
            .unwrap()
            .replace(
                "pin_try_limit = 3",
                "pin_try_limit = 3\nissuer_discretionary_data = \"01\"",
            );
        let e = Profile::from_toml("mc_mchip_cvn16", &text).unwrap_err();
        assert!(
            matches!(&e, ProfileError::Invalid { key, .. } if key == "issuer_discretionary_data"),
            "{e}"
        );
    }

    #[test]
    fn cda_without_the_dda_and_cda_aip_bits_is_refused_naming_the_aip() {
        let e = Profile::from_toml(
            "mc_mchip_cvn17_cda",
            &include_str!("../../../../config/emv/mc_mchip_cvn17_cda.toml")
                .replace("aip = \"3900\"", "aip = \"3800\""),
        )
        .unwrap_err();
        assert!(
            matches!(&e, ProfileError::Invalid { key, .. } if key == "aip"),
            "{e}"
        );
    }

    #[test]
    fn a_name_different_from_the_file_is_refused() {
        let e = Profile::from_toml("other", BUILTIN[0].1).unwrap_err();
        assert!(
            matches!(&e, ProfileError::Invalid { key, .. } if key == "name"),
            "{e}"
        );
    }

    #[test]
    fn icc_keys_in_clear_are_refused() {
        let text = BUILTIN[0].1.replace(
            "content = \"icc_keys\"\nencryption = \"nopad\"",
            "content = \"icc_keys\"\nencryption = \"none\"",
        );
        assert_ne!(text, BUILTIN[0].1);
        let e = Profile::from_toml("visa_vsdc_cvn10", &text).unwrap_err();
        assert!(e.to_string().contains("must be encrypted"), "{e}");
    }

    #[test]
    fn a_directory_profile_is_selected_by_file_name() {
        let dir = tempfile::tempdir().unwrap();
        let text = BUILTIN[0]
            .1
            .replace("name = \"visa_vsdc_cvn10\"", "name = \"bank_debit\"")
            .replace("label = \"VISA CREDIT\"", "label = \"BANK DEBIT\"");
        std::fs::write(dir.path().join("bank_debit.toml"), text).unwrap();
        let set = ProfileSet::with_dir(dir.path()).unwrap();
        assert_eq!(set.get("bank_debit").unwrap().label, "BANK DEBIT");
        assert!(set.get("visa_vsdc_cvn10").is_ok());
        assert!(matches!(set.get("nope"), Err(ProfileError::NotFound(_))));
    }
}
