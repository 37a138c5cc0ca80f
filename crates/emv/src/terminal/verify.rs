//! The final check of a personalized card: what a terminal reads back must be what the
//! order asked for, and the card's first ARQC must verify under the issuer keys.
//!
//! Every failure is a [`VerifyError::CardProdException`] (D1 status
//! `CARD_PROD_EXCEPTION`) with a reason staff and auditors can read; reasons never
//! contain a clear PAN or track data.

use thiserror::Error;
use zeroize::Zeroizing;

use crate::card_data::{mask_digits, Pan};
use crate::data::cryptogram::Cvn10Input;
use crate::data::derive::Psn;
use crate::data::prep::{track2_from_57, PrepError, PrepInput, PreparedCard};
use crate::data::profile::{CryptogramVersion, Profile};
use crate::keys::{KeyIndex, KeyStore, KeyStoreError};
use crate::oda::{
    recover_icc_key, recover_issuer_key, static_data_to_authenticate, verify_sdad, verify_ssad,
    CaPublicKey, RsaPublicKey,
};
use crate::terminal::CardReadout;

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
    if oda_bits & 0x01 != 0 {
        // CDA cards cannot be checked by this version; they are not produced by it
        // either (such profiles are refused), so this is a Model 2 card.
        tracing::warn!(aip = %hex::encode_upper(read.aip), "card announces CDA: not checked");
    } else if oda_bits & 0x20 != 0 {
        verify_dda(read, expected)?;
    } else if oda_bits == 0x40 {
        verify_sda(read, expected)?;
    }
    verify_arqc(read, expected, keystore, derivation_key_index)
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
    let ctx = oda_context(read, expected, "DDA")?;
    let cert = read
        .record_tag(0x9F46)
        .ok_or_else(|| fail("DDA: the card has no ICC public key certificate (9F46)"))?;
    let exponent = read
        .record_tag(0x9F47)
        .ok_or_else(|| fail("DDA: the card has no ICC public key exponent (9F47)"))?;
    let remainder = read.record_tag(0x9F48).unwrap_or_default();
    let icc = recover_icc_key(
        &ctx.issuer,
        &cert,
        &remainder,
        &exponent,
        &expected.pan,
        &ctx.static_data,
    )
    .map_err(err)?;
    let ia = read
        .internal_authenticate
        .as_ref()
        .ok_or_else(|| fail("DDA: the card was not asked for INTERNAL AUTHENTICATE"))?;
    verify_sdad(&icc, &ia.sdad, &ia.ddol_data).map_err(err)?;
    Ok(())
}

fn verify_arqc(
    read: &CardReadout,
    expected: &CardExpectations,
    keystore: &dyn KeyStore,
    index: KeyIndex,
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
    if expected.cryptogram != CryptogramVersion::VisaCvn10 {
        return Err(VerifyError::Key(KeyStoreError::NotSupported(format!(
            "ARQC verification for {}",
            expected.cryptogram.name()
        ))));
    }
    // Visa IAD: length 06 ‖ DKI ‖ CVN ‖ CVR (4 bytes, starting with its length 03).
    let iad = &g.iad;
    if iad.len() < 7 || iad[0] < 6 {
        return Err(fail(format!(
            "the card's issuer application data (9F10) is {} bytes, too short for a Visa IAD",
            iad.len()
        )));
    }
    if iad[2] != expected.cryptogram.cvn() {
        return Err(fail(format!(
            "the card reports cryptogram version {:02X}, the profile expects {:02X}",
            iad[2],
            expected.cryptogram.cvn()
        )));
    }
    let t = &read.terminal;
    let input = Cvn10Input {
        amount: t.amount,
        amount_other: t.amount_other,
        terminal_country: t.country,
        tvr: t.tvr,
        currency: t.currency,
        date: t.date,
        tx_type: t.tx_type,
        unpredictable_number: t.unpredictable_number,
        aip: read.aip,
        atc: g.atc,
        cvr: [iad[3], iad[4], iad[5], iad[6]],
    };
    let ok = keystore.verify_arqc(
        index,
        &expected.pan,
        expected.psn,
        expected.cryptogram,
        &input.to_bytes(),
        &g.ac,
    )?;
    if !ok {
        return Err(fail(format!(
            "the ARQC does not verify under issuer master key index {index}: the chip holds other ICC keys"
        )));
    }
    if iad[1] != index.0 {
        return Err(fail(format!(
            "the card's IAD names derivation key index {:02X}, the order {index}",
            iad[1]
        )));
    }
    Ok(())
}
