//! The final check of a personalized card: what a terminal reads back must be what the
//! order asked for, and the card's first ARQC must verify under the issuer keys.
//!
//! Every failure is a [`VerifyError::CardProdException`] (D1 status
//! `CARD_PROD_EXCEPTION`) with a reason staff and auditors can read; reasons never
//! contain a clear PAN or track data.

use thiserror::Error;
use zeroize::Zeroizing;

use crate::card_data::{mask_digits, Pan};
use crate::data::cryptogram::{CardCryptogram, IadLayout, TransactionData};
use crate::data::derive::Psn;
use crate::data::prep::{track2_from_57, PrepError, PrepInput, PreparedCard};
use crate::data::profile::{CryptogramVersion, Profile};
use crate::keys::{KeyIndex, KeyStore, KeyStoreError};
use crate::oda::{
    cda_transaction_data_hash, recover_cda, recover_icc_key, recover_issuer_key,
    static_data_to_authenticate, verify_sdad, verify_ssad, CaPublicKey, RsaPublicKey,
};
use crate::terminal::CardReadout;
use crate::tlv::parse_dol;

/// The value sent for each tag of a DOL, split back out of the data sent.
fn dol_values(dol: &[(u32, usize)], data: &[u8]) -> std::collections::BTreeMap<u32, Vec<u8>> {
    let mut out = std::collections::BTreeMap::new();
    let mut pos = 0;
    for &(tag, len) in dol {
        if let Some(v) = data.get(pos..pos + len) {
            out.insert(tag, v.to_vec());
        }
        pos += len;
    }
    out
}

/// Why a card fails its read-back verification.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum VerifyError {
    /// The card does not hold what was ordered, or its cryptogram is wrong.
    #[error("card personalization check failed: {0}")]
    CardProdException(String),
    /// The key store could not check the cryptogram.
    #[error(transparent)]
    Key(#[from] KeyStoreError),
}

impl station_hal::StaffFacing for VerifyError {
    fn code(&self) -> &'static str {
        match self {
            VerifyError::CardProdException(_) => "CARD_PROD_EXCEPTION",
            VerifyError::Key(e) => e.code(),
        }
    }

    fn staff_message(&self) -> String {
        match self {
            VerifyError::CardProdException(r) => {
                format!("The card is not right ({r}): reject it and start a new card.")
            }
            VerifyError::Key(e) => e.staff_message(),
        }
    }
}

fn fail(reason: impl Into<String>) -> VerifyError {
    VerifyError::CardProdException(reason.into())
}

/// What the card must show, taken from the order and its prepared data.
#[derive(Clone)]
pub struct CardExpectations {
    /// Application.
    pub aid: Vec<u8>,
    /// The ordered PAN.
    pub pan: Pan,
    /// 5F24 as prepared.
    pub exp_5f24: Vec<u8>,
    /// PAN sequence number.
    pub psn: Psn,
    /// 5F20, when the order has a name.
    pub name_5f20: Option<Vec<u8>>,
    /// Tag 57 as prepared (digits, `D` separator).
    pub track2_equivalent: Zeroizing<String>,
    /// How the ARQC is checked.
    pub cryptogram: CryptogramVersion,
    /// AIP as prepared (from the GPO response DGI), when known.
    pub aip: Option<[u8; 2]>,
    /// A fresh card's PIN try counter: the profile's limit.
    pub pin_try_limit: u8,
    /// Data authentication code the signed static data must carry (SDA profiles).
    pub dac: Option<[u8; 2]>,
    /// CA public keys to check SDA with, as a terminal holds them.
    pub ca_keys: Vec<CaPublicKey>,
}

impl std::fmt::Debug for CardExpectations {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CardExpectations")
            .field("aid", &hex::encode_upper(&self.aid))
            .field("pan", &self.pan)
            .field("cryptogram", &self.cryptogram)
            .finish_non_exhaustive()
    }
}

impl CardExpectations {
    /// Expectations for a card prepared from `input` with `profile`.
    pub fn new(
        input: &PrepInput,
        prepared: &PreparedCard,
        profile: &Profile,
    ) -> Result<Self, PrepError> {
        let data = |e: crate::data::derive::DeriveError| PrepError::DataException(e.to_string());
        let psn = if input.psn.is_empty() {
            "00"
        } else {
            &input.psn
        };
        Ok(CardExpectations {
            aid: prepared.aid.clone(),
            pan: Pan::new(&input.pan).map_err(|e| data(e.into()))?,
            exp_5f24: crate::data::derive::parse_date(&input.exp_yymm, "exp")
                .map_err(data)?
                .to_5f24(),
            psn: Psn::new(psn).map_err(data)?,
            name_5f20: input
                .encoded_name
                .as_deref()
                .map(crate::data::derive::name_to_5f20)
                .transpose()
                .map_err(data)?,
            track2_equivalent: prepared.track2_equivalent.clone(),
            cryptogram: profile.cryptogram,
            aip: prepared
                .dgis
                .iter()
                .filter(|d| !crate::data::prep::is_record_dgi(d.id))
                .find_map(|d| crate::tlv::find(&d.data, 0x82).ok().flatten())
                .and_then(|v| v.try_into().ok()),
            pin_try_limit: profile.pin_try_limit,
            dac: profile.oda.dac,
            ca_keys: Vec::new(),
        })
    }

    /// Adds the CA public keys that SDA cards are checked with.
    pub fn with_ca_keys(mut self, keys: Vec<CaPublicKey>) -> Self {
        self.ca_keys = keys;
        self
    }
}

/// Checks a read-back against the order and verifies the ARQC with the issuer master
/// keys at `derivation_key_index`.
pub fn verify_card(
    read: &CardReadout,
    expected: &CardExpectations,
    keystore: &dyn KeyStore,
    derivation_key_index: KeyIndex,
) -> Result<(), VerifyError> {
    if read.aid != expected.aid {
        return Err(fail("the card answered for another application"));
    }
    let pan = read
        .record_tag(0x5A)
        .ok_or_else(|| fail("the card has no PAN (5A)"))?;
    if *pan != expected.pan.to_5a() {
        let shown = mask_digits(track2_from_57(&pan).trim_end_matches('F'));
        return Err(fail(format!(
            "the card's PAN {shown} differs from the ordered {}",
            expected.pan.masked()
        )));
    }
    let exp = read
        .record_tag(0x5F24)
        .ok_or_else(|| fail("the card has no expiry date (5F24)"))?;
    if *exp != expected.exp_5f24 {
        return Err(fail(format!(
            "the card's expiry date {} differs from the ordered {}",
            hex::encode(&*exp),
            hex::encode(&expected.exp_5f24)
        )));
    }
    let psn = read.record_tag(0x5F34);
    let psn_ok = match &psn {
        Some(v) => **v == expected.psn.to_5f34(),
        None => expected.psn.digits() == "00",
    };
    if !psn_ok {
        return Err(fail(format!(
            "the card's PAN sequence number differs from the ordered {}",
            expected.psn.digits()
        )));
    }
    match (&expected.name_5f20, read.record_tag(0x5F20)) {
        (None, _) => {}
        (Some(want), Some(got)) if *want == *got => {}
        (Some(_), Some(_)) => {
            return Err(fail("the cardholder name (5F20) differs from the order"))
        }
        (Some(_), None) => return Err(fail("the card has no cardholder name (5F20)")),
    }
    let t57 = read
        .record_tag(0x57)
        .ok_or_else(|| fail("the card has no track 2 equivalent (57)"))?;
    if *track2_from_57(&t57) != *expected.track2_equivalent {
        return Err(fail(
            "the card's track 2 equivalent (57) differs from the prepared data",
        ));
    }
    if let Some(aip) = expected.aip {
        if read.aip != aip {
            return Err(fail(format!(
                "the card's AIP {} differs from the prepared {}",
                hex::encode_upper(read.aip),
                hex::encode_upper(aip)
            )));
        }
    }
    // A fresh card must not have used PIN tries: a lower counter means the PIN data or
    // the limit was personalized wrongly.
    if let Some(ptc) = read.pin_try_counter {
        if ptc != expected.pin_try_limit {
            return Err(fail(format!(
                "the card's PIN try counter is {ptc}, a new card must have {}",
                expected.pin_try_limit
            )));
        }
    }
    let oda_bits = read.aip[0] & 0x61;
    let cda_ac = if oda_bits & 0x01 != 0 {
        Some(verify_cda(read, expected)?)
    } else {
        if oda_bits & 0x20 != 0 {
            verify_dda(read, expected)?;
        } else if oda_bits == 0x40 {
            verify_sda(read, expected)?;
        }
        None
    };
    let ac = match (cda_ac, read.generate_ac.ac) {
        (Some(ac), _) | (None, Some(ac)) => ac,
        (None, None) => {
            return Err(fail(
                "the card returned a signature (9F4B) instead of a cryptogram but does not announce CDA",
            ))
        }
    };
    verify_arqc(read, expected, keystore, derivation_key_index, &ac)
}

/// What SDA and DDA share: the issuer public key recovered from 90/92/9F32 with the
/// CA key named by 8F, and the static data to be authenticated as the AFL flags it.
struct OdaContext {
    issuer: RsaPublicKey,
    static_data: Zeroizing<Vec<u8>>,
}

fn oda_context(
    read: &CardReadout,
    expected: &CardExpectations,
    what: &str,
) -> Result<OdaContext, VerifyError> {
    let err = |e: crate::oda::OdaError| fail(format!("{what}: {e}"));
    let tag = |t: u32, name: &str| {
        read.record_tag(t)
            .ok_or_else(|| fail(format!("{what}: the card has no {name} ({t:X})")))
    };
    let ca_index = tag(0x8F, "CA public key index")?;
    let ca_index = *ca_index
        .first()
        .ok_or_else(|| fail(format!("{what}: empty 8F")))?;
    let rid = read
        .aid
        .get(..5)
        .ok_or_else(|| fail(format!("{what}: AID shorter than a RID")))?;
    let ca = expected
        .ca_keys
        .iter()
        .find(|k| k.rid == rid && k.index == ca_index)
        .ok_or_else(|| {
            fail(format!(
                "{what}: no CA public key {} index {ca_index:02X} is configured to check the card",
                hex::encode_upper(rid)
            ))
        })?;
    let cert = tag(0x90, "issuer public key certificate")?;
    let exponent = tag(0x9F32, "issuer public key exponent")?;
    let remainder = read.record_tag(0x92).unwrap_or_default();
    let issuer =
        recover_issuer_key(ca, &cert, &remainder, &exponent, &expected.pan).map_err(err)?;

    let mut records = Vec::new();
    for e in read.afl.chunks(4) {
        let (sfi, first, count) = (e[0] >> 3, e[1], e[3]);
        for rec in first..first.saturating_add(count) {
            let r = read
                .records
                .iter()
                .find(|r| r.sfi == sfi && r.record == rec)
                .ok_or_else(|| {
                    fail(format!(
                        "{what}: ODA record SFI {sfi} record {rec} was not read"
                    ))
                })?;
            records.push((sfi, r.data.as_slice()));
        }
    }
    let tag_values = match read.record_tag(0x9F4A) {
        None => Vec::new(),
        Some(list) if list.as_slice() == [0x82] => read.aip.to_vec(),
        Some(_) => {
            return Err(fail(format!(
                "{what}: the tag list (9F4A) may only name 82"
            )))
        }
    };
    let static_data =
        Zeroizing::new(static_data_to_authenticate(&records, &tag_values).map_err(err)?);
    Ok(OdaContext {
        issuer,
        static_data,
    })
}

/// Checks SDA as a terminal does: 93 over the static data under the issuer key.
fn verify_sda(read: &CardReadout, expected: &CardExpectations) -> Result<(), VerifyError> {
    let ctx = oda_context(read, expected, "SDA")?;
    let ssad = read
        .record_tag(0x93)
        .ok_or_else(|| fail("SDA: the card has no signed static application data (93)"))?;
    let dac =
        verify_ssad(&ctx.issuer, &ssad, &ctx.static_data).map_err(|e| fail(format!("SDA: {e}")))?;
    if let Some(want) = expected.dac {
        if dac != want {
            return Err(fail(format!(
                "SDA: data authentication code {} differs from the profile's {}",
                hex::encode_upper(dac),
                hex::encode_upper(want)
            )));
        }
    }
    Ok(())
}

/// Checks DDA as a terminal does: the ICC key from 9F46/9F48/9F47 (certified over the
/// static data), then the INTERNAL AUTHENTICATE signature over the DDOL data.
fn verify_dda(read: &CardReadout, expected: &CardExpectations) -> Result<(), VerifyError> {
    let err = |e: crate::oda::OdaError| fail(format!("DDA: {e}"));
    let icc = icc_key(read, expected, "DDA")?;
    let ia = read
        .internal_authenticate
        .as_ref()
        .ok_or_else(|| fail("DDA: the card was not asked for INTERNAL AUTHENTICATE"))?;
    verify_sdad(&icc, &ia.sdad, &ia.ddol_data).map_err(err)?;
    Ok(())
}

/// The ICC public key as a terminal recovers it for DDA and CDA: the issuer key from
/// the CA key, then 9F46/9F48/9F47 certified over the static data.
fn icc_key(
    read: &CardReadout,
    expected: &CardExpectations,
    what: &str,
) -> Result<RsaPublicKey, VerifyError> {
    let ctx = oda_context(read, expected, what)?;
    let tag = |t: u32, name: &str| {
        read.record_tag(t)
            .ok_or_else(|| fail(format!("{what}: the card has no {name} ({t:X})")))
    };
    let cert = tag(0x9F46, "ICC public key certificate")?;
    let exponent = tag(0x9F47, "ICC public key exponent")?;
    let remainder = read.record_tag(0x9F48).unwrap_or_default();
    recover_icc_key(
        &ctx.issuer,
        &cert,
        &remainder,
        &exponent,
        &expected.pan,
        &ctx.static_data,
    )
    .map_err(|e| fail(format!("{what}: {e}")))
}

/// Checks CDA as a terminal does (EMV Book 2 §6.6.2): the GENERATE AC signature
/// recovers under the ICC key over the unpredictable number sent, signs the CID the
/// card returned and the hash of the PDOL data, CDOL1 data and response objects.
/// Returns the application cryptogram the signature carries.
fn verify_cda(read: &CardReadout, expected: &CardExpectations) -> Result<[u8; 8], VerifyError> {
    let icc = icc_key(read, expected, "CDA")?;
    let g = &read.generate_ac;
    let sdad = g
        .sdad
        .as_ref()
        .ok_or_else(|| fail("CDA: the card returned no signature (9F4B) to GENERATE AC"))?;
    let cdol1 = read
        .record_tag(0x8C)
        .ok_or_else(|| fail("CDA: the card has no CDOL1 (8C)"))?;
    let cdol1 = parse_dol(&cdol1).map_err(|e| fail(format!("CDA: the card's CDOL1: {e}")))?;
    let un = dol_values(&cdol1, &read.cdol1_data)
        .remove(&0x9F37)
        .ok_or_else(|| {
            fail("CDA: the card's CDOL1 does not ask for the unpredictable number (9F37)")
        })?;
    let signed = recover_cda(&icc, sdad, &un).map_err(|e| fail(format!("CDA: {e}")))?;
    if signed.cid != g.cid {
        return Err(fail(format!(
            "CDA: the card signed CID {:02X} but returned {:02X}",
            signed.cid, g.cid
        )));
    }
    let hash = cda_transaction_data_hash(&read.pdol_data, &read.cdol1_data, &g.signed_objects);
    if hash != signed.transaction_data_hash {
        return Err(fail(
            "CDA: the signed transaction data hash does not match the data exchanged",
        ));
    }
    Ok(signed.ac)
}

fn verify_arqc(
    read: &CardReadout,
    expected: &CardExpectations,
    keystore: &dyn KeyStore,
    index: KeyIndex,
    ac: &[u8; 8],
) -> Result<(), VerifyError> {
    let g = &read.generate_ac;
    match g.cid & 0xC0 {
        0x80 => {}
        0x40 => {
            return Err(fail(
                "the card approved offline (TC) instead of asking for an ARQC",
            ))
        }
        _ => return Err(fail("the card declined (AAC) its first GENERATE AC")),
    }
    // As an independent terminal: the IAD layout from the scheme (RID), the cryptogram
    // version from the IAD the card returned, the data from the CDOL1 the card holds.
    let rid = read.aid.get(..5).unwrap_or_default();
    let layout = IadLayout::of_application(&read.aid).ok_or_else(|| {
        fail(format!(
            "no issuer application data layout is known for RID {}",
            hex::encode_upper(rid)
        ))
    })?;
    let iad = &g.iad;
    let version = CryptogramVersion::from_iad(layout, iad).ok_or_else(|| {
        fail(format!(
            "the card's issuer application data (9F10, {} bytes) names no cryptogram version this terminal checks",
            iad.len()
        ))
    })?;
    if version != expected.cryptogram {
        return Err(fail(format!(
            "the card reports cryptogram version {:02X} ({}), the profile expects {:02X} ({})",
            version.cvn(),
            version.name(),
            expected.cryptogram.cvn(),
            expected.cryptogram.name()
        )));
    }
    if iad.len() < layout.min_len() {
        return Err(fail(format!(
            "the card's issuer application data (9F10) is {} bytes, {} needs {}",
            iad.len(),
            version.name(),
            layout.min_len()
        )));
    }
    let cdol1 = read
        .record_tag(0x8C)
        .ok_or_else(|| fail("the card has no CDOL1 (8C)"))?;
    let cdol1 = parse_dol(&cdol1).map_err(|e| fail(format!("the card's CDOL1: {e}")))?;
    let sent = dol_values(&cdol1, &read.cdol1_data);
    let tx = TransactionData::from_tags(|tag| sent.get(&tag).cloned(), read.aip, g.atc);
    let c = CardCryptogram {
        version,
        tx: &tx,
        iad,
        ac: *ac,
    };
    let ok = keystore.verify_application_cryptogram(index, &expected.pan, expected.psn, &c)?;
    if !ok {
        return Err(fail(format!(
            "the ARQC does not verify under issuer master key index {index}: the chip holds other ICC keys"
        )));
    }
    let dki = iad[layout.dki_offset()];
    if dki != index.0 {
        return Err(fail(format!(
            "the card's IAD names derivation key index {dki:02X}, the order {index}"
        )));
    }
    Ok(())
}
