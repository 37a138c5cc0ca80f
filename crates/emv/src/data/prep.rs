//! Data preparation: from an order's card data, a profile and the issuer keys to the
//! DGIs CPS stores on the chip.
//!
//! Model 1: the EMV data set is computed here from the profile and key indexes.
//! Model 2: the issuer supplied the DGIs; they are checked and passed through.
//! Either way the result carries the chip's track 2 equivalent so that the magnetic
//! stripe can be checked against it, and a summary fit for logs (masked PAN only).
//!
//! ODA profiles get 8F, 90, 92, 9F32 from the key store; SDA adds 93 signed through
//! it, DDA a certified ICC key pair (9F46-9F48, DGIs 8201-8205).
//!
//! Not in scope: DGI 8010 (offline PIN block) — orders carry no PIN block, so no
//! profile may ask for it (refused when the profile loads); CDA profiles are refused
//! as not supported yet.

use std::collections::{BTreeMap, BTreeSet};

use thiserror::Error;
use zeroize::Zeroizing;

use crate::card_data::{Pan, YearMonth};
use crate::data::cvv::ICVV_SERVICE_CODE;
use crate::data::derive::{
    fill_discretionary, name_to_5f20, track2_digits, track2_to_57, DiscretionaryValues, Psn,
    ServiceCode,
};
use crate::data::profile::{DgiContent, OdaMode, Profile};
use crate::dgi::{Dgi, DgiEncryption};
use crate::keys::{IccKeyMaterial, IccRsaCrt, KeyIndex, KeyStore, KeyStoreError};
use crate::oda::static_data_to_authenticate;
use crate::tlv::{self, encode};

/// Longest record a READ RECORD may return (template 70 with its tag and length).
pub const MAX_RECORD_LEN: usize = 254;

/// Why a card cannot be prepared.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum PrepError {
    /// The order's data is wrong or inconsistent (D1 status `DATA_EXCEPTION`). The
    /// reason names the field and never contains card data.
    #[error("card data problem: {0}")]
    DataException(String),
    /// The key store could not do what the order asks (missing key index, bad key file).
    #[error(transparent)]
    Key(#[from] KeyStoreError),
}

impl station_hal::StaffFacing for PrepError {
    fn code(&self) -> &'static str {
        match self {
            PrepError::DataException(_) => "DATA_EXCEPTION",
            PrepError::Key(e) => e.code(),
        }
    }

    fn staff_message(&self) -> String {
        match self {
            PrepError::DataException(r) => {
                format!("The card order has a data problem ({r}); the issuer must correct it.")
            }
            PrepError::Key(e) => e.staff_message(),
        }
    }
}

fn data(reason: impl Into<String>) -> PrepError {
    PrepError::DataException(reason.into())
}

/// An issuer-prepared EMV data set (Model 2).
#[derive(Clone, PartialEq, Eq)]
pub struct Model2Data {
    /// The application to personalize.
    pub aid: Vec<u8>,
    /// The DGIs as the issuer prepared them, with their protection flags.
    pub dgis: Vec<Dgi>,
}

impl std::fmt::Debug for Model2Data {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "Model2Data(aid {}, {:?})",
            hex::encode_upper(&self.aid),
            self.dgis
        )
    }
}

/// The card data of one order, as data preparation needs it. Built by the order
/// layer from the decrypted D1 card data; secrets are zeroized on drop.
#[derive(Clone, Default)]
pub struct PrepInput {
    /// `pan`: 12-19 digits.
    pub pan: Zeroizing<String>,
    /// `exp`: YYMM.
    pub exp_yymm: String,
    /// `panSequenceNumber`: two digits (D1 default `00`).
    pub psn: String,
    /// `encodedName`: ISO 7813 name for 5F20 (and track 1, elsewhere).
    pub encoded_name: Option<String>,
    /// `effectiveDate`: YYMM.
    pub effective_yymm: Option<String>,
    /// A service code that replaces the profile's.
    pub service_code: Option<String>,
    /// `cvv1`: the stripe CVV when the issuer computed it.
    pub cvv1: Option<Zeroizing<String>>,
    /// `pvv`: 4 digits, or PVKI ‖ PVV as 5 digits.
    pub pvv: Option<Zeroizing<String>>,
    /// `trackData.track2`: the stripe's track 2 used as is.
    pub track2_override: Option<Zeroizing<String>>,
    /// Model 2 chip data; `None` for Model 1.
    pub chip_data: Option<Model2Data>,
}

impl std::fmt::Debug for PrepInput {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PrepInput")
            .field("pan", &crate::card_data::mask_digits(&self.pan))
            .field("model", &if self.chip_data.is_some() { 2 } else { 1 })
            .finish_non_exhaustive()
    }
}

/// The key indexes an order names (`paymentApplication`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeyIndexes {
    /// `derivationKeyIndex`: issuer master keys for the ICC keys.
    pub derivation: KeyIndex,
    /// `cvKeyIndex`: CVK for CVV1 and iCVV.
    pub cv: Option<KeyIndex>,
    /// `pvKeyIndex`: also the PVKI when a 4-digit PVV comes without one.
    pub pv: Option<KeyIndex>,
    /// `odaKeyIndex`: issuer key for SDA/DDA.
    pub oda: Option<KeyIndex>,
}

/// How the chip data was obtained.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChipDataModel {
    /// Computed from the profile.
    Model1,
    /// Supplied by the issuer.
    Model2,
}

/// What can be logged about a prepared card.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PrepSummary {
    /// Profile name.
    pub profile: String,
    /// Model 1 or 2.
    pub model: ChipDataModel,
    /// First 6 and last 4 digits.
    pub masked_pan: String,
    /// Each DGI: identifier, clear length, protection.
    pub dgis: Vec<(u16, usize, DgiEncryption)>,
}

/// The result of data preparation, ready for CPS.
#[derive(Clone)]
pub struct PreparedCard {
    /// Application to select and personalize.
    pub aid: Vec<u8>,
    /// DGIs in STORE DATA order, each with its protection.
    pub dgis: Vec<Dgi>,
    /// The chip's track 2 equivalent (tag 57) as digits with `D` separator, for the
    /// magnetic-stripe consistency check.
    pub track2_equivalent: Zeroizing<String>,
    /// Track 2 for the stripe (`PAN=YYMM SVC DD`, without sentinels): the override as
    /// given, or built from the profile pattern with CVV1. `None` in Model 2 when the
    /// order gives neither an override nor a way to get CVV1.
    pub magstripe_track2: Option<Zeroizing<String>>,
    /// Loggable summary.
    pub summary: PrepSummary,
}

impl std::fmt::Debug for PreparedCard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PreparedCard")
            .field("aid", &hex::encode_upper(&self.aid))
            .field("summary", &self.summary)
            .finish_non_exhaustive()
    }
}

/// Card data checked and parsed once.
struct CardFacts {
    pan: Pan,
    exp: YearMonth,
    psn: Psn,
    name: Option<Vec<u8>>,
    effective: Option<YearMonth>,
    service_code: ServiceCode,
    pvki: Option<char>,
    pvv: Option<Zeroizing<String>>,
}

fn card_facts(
    input: &PrepInput,
    profile: &Profile,
    keys: &KeyIndexes,
) -> Result<CardFacts, PrepError> {
    let pan = Pan::new(&input.pan).map_err(|e| data(format!("pan: {e}")))?;
    let exp =
        crate::data::derive::parse_date(&input.exp_yymm, "exp").map_err(|e| data(e.to_string()))?;
    let psn_digits = if input.psn.is_empty() {
        "00"
    } else {
        &input.psn
    };
    let psn = Psn::new(psn_digits).map_err(|e| data(format!("panSequenceNumber: {e}")))?;
    let name = input
        .encoded_name
        .as_deref()
        .map(name_to_5f20)
        .transpose()
        .map_err(|e| data(format!("encodedName: {e}")))?;
    let effective = input
        .effective_yymm
        .as_deref()
        .map(|s| crate::data::derive::parse_date(s, "effectiveDate"))
        .transpose()
        .map_err(|e| data(e.to_string()))?;
    if let Some(eff) = effective {
        if eff > exp {
            return Err(data("effectiveDate is after exp"));
        }
    }
    let service_code = match &input.service_code {
        Some(s) => ServiceCode::new(s).map_err(|e| data(format!("service code override: {e}")))?,
        None => profile.service_code.clone(),
    };
    let (pvki, pvv) = match input.pvv.as_deref().map(String::as_str) {
        None => (None, None),
        Some(p) if !p.bytes().all(|b| b.is_ascii_digit()) => {
            return Err(data("pvv: must be digits"))
        }
        Some(p) if p.len() == 5 => (p.chars().next(), Some(Zeroizing::new(p[1..].to_string()))),
        Some(p) if p.len() == 4 => {
            let pvki = match keys.pv {
                Some(KeyIndex(i)) if i <= 9 => char::from(b'0' + i),
                _ => {
                    return Err(data(
                        "pvv: 4 digits need a pvKeyIndex 00-09 to give the PVKI",
                    ))
                }
            };
            (Some(pvki), Some(Zeroizing::new(p.to_string())))
        }
        Some(_) => return Err(data("pvv: 4 digits, or PVKI and PVV as 5 digits")),
    };
    Ok(CardFacts {
        pan,
        exp,
        psn,
        name,
        effective,
        service_code,
        pvki,
        pvv,
    })
}

/// Prepares the chip data of one card (Model 1 or Model 2, by `input.chip_data`).
pub fn prepare(
    input: &PrepInput,
    profile: &Profile,
    keys: &KeyIndexes,
    keystore: &dyn KeyStore,
) -> Result<PreparedCard, PrepError> {
    let facts = card_facts(input, profile, keys)?;
    let cvv1 = stripe_cvv(input, &facts, keys, keystore)?;
    let magstripe_track2 =
        magstripe_track2(input, profile, &facts, cvv1.as_deref().map(String::as_str))?;

    let (aid, dgis, track2_equivalent, model) = match &input.chip_data {
        None => {
            let (dgis, t2) = model1(profile, &facts, keys, keystore)?;
            (profile.aid.clone(), dgis, t2, ChipDataModel::Model1)
        }
        Some(m2) => {
            if !(5..=16).contains(&m2.aid.len()) {
                return Err(data("chip data: an AID is 5 to 16 bytes"));
            }
            validate_dgis(&m2.dgis, crate::crypto::DES_BLOCK)?;
            let t2 = model2_track2(&m2.dgis, &facts)?;
            (m2.aid.clone(), m2.dgis.clone(), t2, ChipDataModel::Model2)
        }
    };
    check_stripe_agrees(
        magstripe_track2.as_deref().map(String::as_str),
        &track2_equivalent,
    )?;
    let summary = PrepSummary {
        profile: profile.name.clone(),
        model,
        masked_pan: facts.pan.masked(),
        dgis: dgis.iter().map(|d| (d.id, d.len(), d.encryption)).collect(),
    };
    Ok(PreparedCard {
        aid,
        dgis,
        track2_equivalent,
        magstripe_track2,
        summary,
    })
}

/// CVV1 for the stripe: the order's, else computed with `cvKeyIndex`, else none.
fn stripe_cvv(
    input: &PrepInput,
    facts: &CardFacts,
    keys: &KeyIndexes,
    keystore: &dyn KeyStore,
) -> Result<Option<Zeroizing<String>>, PrepError> {
    if let Some(c) = &input.cvv1 {
        if c.len() != 3 || !c.bytes().all(|b| b.is_ascii_digit()) {
            return Err(data("cvv1: must be 3 digits"));
        }
        return Ok(Some(c.clone()));
    }
    match keys.cv {
        Some(cv) => Ok(Some(keystore.cvv(
            cv,
            &facts.pan,
            facts.exp,
            &facts.service_code,
        )?)),
        None => Ok(None),
    }
}

fn magstripe_track2(
    input: &PrepInput,
    profile: &Profile,
    facts: &CardFacts,
    cvv1: Option<&str>,
) -> Result<Option<Zeroizing<String>>, PrepError> {
    if let Some(t) = &input.track2_override {
        return Ok(Some(t.clone()));
    }
    let Some(cvv1) = cvv1 else {
        return Ok(None);
    };
    let disc = fill_discretionary(
        &profile.track2_discretionary,
        &DiscretionaryValues {
            pvki: facts.pvki,
            pvv: facts.pvv.as_deref().map(String::as_str),
            cvv: Some(cvv1),
        },
    )
    .map_err(|e| data(e.to_string()))?;
    let t = track2_digits(&facts.pan, facts.exp, &facts.service_code, &disc)
        .map_err(|e| data(e.to_string()))?;
    Ok(Some(Zeroizing::new(t.replace('D', "="))))
}

/// The stripe's track 2 must carry the chip's PAN, expiry and service code (the
/// discretionary data legitimately differs: CVV1 against iCVV).
fn check_stripe_agrees(stripe: Option<&str>, chip: &str) -> Result<(), PrepError> {
    let Some(stripe) = stripe else { return Ok(()) };
    let stripe = stripe.trim_start_matches(';').trim_end_matches('?');
    let head = |s: &str, sep: char| -> Option<(String, String)> {
        let (pan, rest) = s.split_once(sep)?;
        Some((pan.to_string(), rest.get(..7)?.to_string()))
    };
    let digits7 = |r: &String| r.len() == 7 && r.bytes().all(|b| b.is_ascii_digit());
    let (Some((sp, sr)), Some((cp, cr))) = (head(stripe, '='), head(chip, 'D')) else {
        return Err(data("trackData.track2: not PAN=YYMM service code"));
    };
    if !digits7(&sr) || !digits7(&cr) {
        return Err(data("trackData.track2: not PAN=YYMM service code"));
    }
    let sp = Zeroizing::new(sp);
    let cp = Zeroizing::new(cp);
    if *sp != *cp {
        return Err(data("trackData.track2: PAN differs from the card data pan"));
    }
    if sr[..4] != cr[..4] {
        return Err(data("trackData.track2: expiry differs from exp"));
    }
    if sr[4..] != cr[4..] {
        return Err(data(
            "trackData.track2: service code differs from the chip's",
        ));
    }
    Ok(())
}

fn model1(
    profile: &Profile,
    facts: &CardFacts,
    keys: &KeyIndexes,
    keystore: &dyn KeyStore,
) -> Result<(Vec<Dgi>, Zeroizing<String>), PrepError> {
    // Chip track 2 and 9F1F carry the iCVV, computed with service code 999.
    let icvv = match keys.cv {
        Some(cv) => Some(keystore.cvv(
            cv,
            &facts.pan,
            facts.exp,
            &ServiceCode::new(ICVV_SERVICE_CODE).expect("3 digits"),
        )?),
        None => None,
    };
    let disc = fill_discretionary(
        &profile.track2_discretionary,
        &DiscretionaryValues {
            pvki: facts.pvki,
            pvv: facts.pvv.as_deref().map(String::as_str),
            cvv: icvv.as_deref().map(String::as_str),
        },
    )
    .map_err(|e| match e {
        crate::data::derive::DeriveError::Track2(r) if r.contains("no CVV") => {
            data("cvKeyIndex is missing: the iCVV for the chip cannot be computed")
        }
        e => data(e.to_string()),
    })?;
    let t2 = track2_digits(&facts.pan, facts.exp, &facts.service_code, &disc)
        .map_err(|e| data(e.to_string()))?;

    let mut values: TagValues = profile
        .profile_tag_values(keys.derivation.0)
        .into_iter()
        .map(|(t, v)| (t, Zeroizing::new(v)))
        .collect();
    values.insert(0x5F30, Zeroizing::new(facts.service_code.to_5f30()));
    values.insert(0x5A, Zeroizing::new(facts.pan.to_5a()));
    values.insert(0x57, track2_to_57(&t2));
    values.insert(0x9F1F, Zeroizing::new(disc.as_bytes().to_vec()));
    values.insert(0x5F24, Zeroizing::new(facts.exp.to_5f24()));
    values.insert(0x5F34, Zeroizing::new(facts.psn.to_5f34().to_vec()));
    if let Some(eff) = facts.effective {
        values.insert(0x5F25, Zeroizing::new(eff.to_5f25()));
    }
    if let Some(n) = &facts.name {
        values.insert(0x5F20, Zeroizing::new(n.clone()));
    }
    let icc_rsa = if profile.oda.mode == OdaMode::None {
        None
    } else {
        add_oda_data(profile, facts, keys, keystore, &mut values)?
    };
    let tlvs = |tags: &[u32]| concat_tlv(&values, tags);

    let mut dgis = Vec::new();
    let mut records: Vec<_> = profile.records.iter().collect();
    records.sort_by_key(|r| (r.sfi, r.record));
    for r in records {
        let body = tlvs(&r.tags)?;
        let rec = Zeroizing::new(encode(0x70, &body));
        if rec.len() > MAX_RECORD_LEN {
            return Err(data(format!(
                "SFI {} record {} would be {} bytes, more than the {MAX_RECORD_LEN} a record holds (name or PAN too long for this profile)",
                r.sfi,
                r.record,
                rec.len()
            )));
        }
        dgis.push(Dgi::new(r.dgi_id(), rec.to_vec(), r.encryption));
    }
    let icc = keystore.icc_key_material(
        profile.cryptogram.algorithm().master_key,
        keys.derivation,
        &facts.pan,
        facts.psn,
    )?;
    for d in &profile.dgis {
        let content: Zeroizing<Vec<u8>> = match (&d.content, &icc) {
            (DgiContent::Tlv(tags), _) => tlvs(tags)?,
            (DgiContent::IccKeys, IccKeyMaterial::Clear(k)) => k.concatenated(),
            (DgiContent::IccKeys, IccKeyMaterial::Sealed { keys, .. }) => {
                dgis.push(Dgi::sealed(d.id, keys.clone(), d.encryption));
                continue;
            }
            (DgiContent::KeyCheckValues, IccKeyMaterial::Clear(k)) => {
                Zeroizing::new(k.check_values()?)
            }
            (DgiContent::KeyCheckValues, IccKeyMaterial::Sealed { check_values, .. }) => {
                Zeroizing::new(check_values.clone())
            }
            // The counter starts at the limit.
            (DgiContent::PinTry, _) => {
                Zeroizing::new(vec![profile.pin_try_limit, profile.pin_try_limit])
            }
        };
        dgis.push(Dgi::new(d.id, content.to_vec(), d.encryption));
    }
    if let Some(crt) = &icc_rsa {
        dgis.extend(icc_rsa_dgis(crt, profile.oda.rsa_dgi_encryption));
    }
    validate_dgis(&dgis, crate::crypto::DES_BLOCK)?;
    Ok((dgis, t2))
}

/// Tags left out of the card when there is no value for them: name and effective
/// date when the order has none, the issuer key remainder when the key fits its
/// certificate (92, 9F48).
const OPTIONAL_TAGS: &[u32] = &[0x5F20, 0x5F25, 0x92, 0x9F48];

type TagValues = BTreeMap<u32, Zeroizing<Vec<u8>>>;

/// The listed data elements as concatenated TLV.
fn concat_tlv(values: &TagValues, tags: &[u32]) -> Result<Zeroizing<Vec<u8>>, PrepError> {
    let mut out = Zeroizing::new(Vec::new());
    for t in tags {
        match values.get(t) {
            // Encoded through a zeroizing buffer: values include track data.
            Some(v) => out.extend_from_slice(&Zeroizing::new(encode(*t, v))),
            None if OPTIONAL_TAGS.contains(t) => {}
            None => return Err(data(format!("no value for tag {t:X}"))),
        }
    }
    Ok(out)
}

/// ODA data: the issuer key data (8F, 90, 92, 9F32) from the key store, then for SDA
/// the signed static application data (93), for DDA a certified ICC key pair (9F46,
/// 9F47, 9F48) whose private part is returned for DGIs 8201-8205.
fn add_oda_data(
    profile: &Profile,
    facts: &CardFacts,
    keys: &KeyIndexes,
    keystore: &dyn KeyStore,
    values: &mut TagValues,
) -> Result<Option<IccRsaCrt>, PrepError> {
    let index = keys.oda.ok_or_else(|| {
        data("odaKeyIndex is missing: this card product uses offline data authentication")
    })?;
    let issuer = keystore.oda_issuer_key(index)?;
    values.insert(0x8F, Zeroizing::new(vec![issuer.ca_index]));
    values.insert(0x90, Zeroizing::new(issuer.issuer_pk_certificate.clone()));
    values.insert(0x9F32, Zeroizing::new(issuer.issuer_pk_exponent.clone()));
    if !issuer.issuer_pk_remainder.is_empty() {
        values.insert(0x92, Zeroizing::new(issuer.issuer_pk_remainder.clone()));
    }
    let mut records = Vec::new();
    for r in profile.records_in_afl_order().into_iter().filter(|r| r.oda) {
        let body = concat_tlv(values, &r.tags)?;
        records.push((r.sfi, Zeroizing::new(encode(0x70, &body))));
    }
    let refs: Vec<(u8, &[u8])> = records.iter().map(|(s, r)| (*s, r.as_slice())).collect();
    // The profile allows only 82 in the SDA tag list.
    let tag_values = if profile.oda.sda_tag_list.is_empty() {
        Vec::new()
    } else {
        profile.aip.to_vec()
    };
    let static_data = Zeroizing::new(
        static_data_to_authenticate(&refs, &tag_values).map_err(|e| data(format!("ODA: {e}")))?,
    );
    match profile.oda.mode {
        OdaMode::Sda => {
            let dac = profile
                .oda
                .dac
                .ok_or_else(|| data("the profile has no oda.dac"))?;
            let ssad = keystore.sign_static_data(index, dac, &static_data)?;
            values.insert(0x93, Zeroizing::new(ssad));
            Ok(None)
        }
        OdaMode::Dda | OdaMode::Cda => {
            let bits = profile
                .oda
                .icc_key_bits
                .ok_or_else(|| data("the profile has no oda.icc_key_bits"))?;
            let icc =
                keystore.generate_icc_key(index, bits, &facts.pan, facts.exp, &static_data)?;
            values.insert(0x9F46, Zeroizing::new(icc.certificate.clone()));
            values.insert(0x9F47, Zeroizing::new(icc.exponent.clone()));
            if !icc.remainder.is_empty() {
                values.insert(0x9F48, Zeroizing::new(icc.remainder.clone()));
            }
            Ok(Some(icc.crt))
        }
        OdaMode::None => Ok(None),
    }
}

/// DGIs 8201-8205: the ICC private key in CRT form (q⁻¹ mod p, d mod (q−1),
/// d mod (p−1), q, p), per EMV CPS; check the numbering against the applet's guide.
fn icc_rsa_dgis(crt: &IccRsaCrt, encryption: DgiEncryption) -> Vec<Dgi> {
    [
        (0x8201, &crt.qinv),
        (0x8202, &crt.dq),
        (0x8203, &crt.dp),
        (0x8204, &crt.q),
        (0x8205, &crt.p),
    ]
    .into_iter()
    .map(|(id, part)| Dgi::new(id, part.expose().to_vec(), encryption))
    .collect()
}

/// Decodes tag 57 to digits with `D` separator, dropping the `F` pad.
pub fn track2_from_57(v: &[u8]) -> Zeroizing<String> {
    let mut s = Zeroizing::new(hex::encode_upper(v));
    if s.ends_with('F') {
        s.pop();
    }
    s
}

fn model2_track2(dgis: &[Dgi], facts: &CardFacts) -> Result<Zeroizing<String>, PrepError> {
    let mut t57 = None;
    for d in dgis.iter().filter(|d| is_record_dgi(d.id)) {
        if let Some(v) = tlv::find(&d.data, 0x57)
            .map_err(|e| data(format!("chip data DGI {:04X}: {e}", d.id)))?
        {
            t57 = Some(Zeroizing::new(v));
        }
        if let Some(v) = tlv::find(&d.data, 0x5A)
            .map_err(|e| data(format!("chip data DGI {:04X}: {e}", d.id)))?
        {
            if v != facts.pan.to_5a() {
                return Err(data(format!(
                    "chip data DGI {:04X}: tag 5A differs from the card data pan",
                    d.id
                )));
            }
        }
    }
    let t57 = t57.ok_or_else(|| data("chip data: no record holds tag 57 (track 2 equivalent)"))?;
    let t2 = track2_from_57(&t57);
    let pan_part = Zeroizing::new(t2.split('D').next().unwrap_or_default().to_string());
    if *pan_part != facts.pan.digits() {
        return Err(data("chip data: tag 57 PAN differs from the card data pan"));
    }
    Ok(t2)
}

/// Whether a DGI identifier names a record (SFI 01-1E ‖ record).
pub fn is_record_dgi(id: u16) -> bool {
    (0x01..=0x1E).contains(&(id >> 8))
}

/// DGIs that hold secrets and must never travel in clear.
const SECRET_DGIS: &[u16] = &[0x8000, 0x8010, 0x8201, 0x8202, 0x8203, 0x8204, 0x8205];

/// Checks a DGI set before it is sent: valid identifiers, records that are a single
/// well-formed `70` template, no duplicates, lengths that fit the DGI length field,
/// secret DGIs encrypted, and `nopad` DGIs a whole number of `block`-byte blocks
/// (8 for SCP02; CPS re-checks with 16 when the channel is SCP03).
pub fn validate_dgis(dgis: &[Dgi], block: usize) -> Result<(), PrepError> {
    if dgis.is_empty() {
        return Err(data("chip data: no DGI"));
    }
    let mut seen = BTreeSet::new();
    for d in dgis {
        let id = d.id;
        if id >> 8 == 0 || id == 0xFFFF {
            return Err(data(format!(
                "chip data: {id:04X} is not a valid DGI identifier"
            )));
        }
        if !seen.insert(id) {
            return Err(data(format!("chip data: DGI {id:04X} appears twice")));
        }
        if d.data.len() > 0xFFFF {
            return Err(data(format!(
                "chip data: DGI {id:04X} is longer than 65535 bytes"
            )));
        }
        if is_record_dgi(id) {
            if id & 0xFF == 0 {
                return Err(data(format!("chip data: DGI {id:04X} names record 0")));
            }
            check_record(id, &d.data)?;
        }
        if SECRET_DGIS.contains(&id) && d.encryption == DgiEncryption::None {
            return Err(data(format!(
                "chip data: DGI {id:04X} holds keys and must be encrypted"
            )));
        }
        if d.encryption == DgiEncryption::Nopad && (d.is_empty() || d.len() % block != 0) {
            return Err(data(format!(
                "chip data: DGI {id:04X} is {} bytes, not a multiple of {block} as unpadded encryption needs",
                d.len()
            )));
        }
    }
    Ok(())
}

fn check_record(id: u16, bytes: &[u8]) -> Result<(), PrepError> {
    let bad = |why: String| data(format!("chip data: record DGI {id:04X} {why}"));
    let top = tlv::parse(bytes).map_err(|e| bad(format!("is not valid TLV ({e})")))?;
    match top.as_slice() {
        [t] if t.tag == 0x70 => {
            if bytes.len() > MAX_RECORD_LEN {
                return Err(bad(format!(
                    "is {} bytes, more than {MAX_RECORD_LEN}",
                    bytes.len()
                )));
            }
            // Padding bytes 00/FF are skipped by the parser; a record must not hold any
            // trailing data outside its template.
            if tlv::encode(0x70, &t.value).len() != bytes.len() {
                return Err(bad(
                    "has bytes outside its 70 template or a non-minimal length".into(),
                ));
            }
            t.children()
                .map_err(|e| bad(format!("holds a malformed 70 template ({e})")))?;
            Ok(())
        }
        _ => Err(bad("must hold exactly one 70 template".into())),
    }
}
