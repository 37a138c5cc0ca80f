//! Card data carried encrypted in `encryptedData`, checked field by field.
//!
//! What is enforced (each error names `encryptedData.<field>`, never the value):
//!
//! | field                    | rule                                                            | code on failure |
//! |--------------------------|-----------------------------------------------------------------|-----------------|
//! | `pan` (required)         | 12–19 ASCII digits                                              | FORMAT          |
//! |                          | Luhn check digit                                                | VALUE           |
//! | `exp` (required)         | `YYMM`, 4 digits                                                | FORMAT          |
//! |                          | month 01–12; not before the month of `today`                    | VALUE           |
//! | `encodedName`            | ISO 7813 track 1 name: 2–26 chars of `A–Z 0–9 space / . - '`   | FORMAT          |
//! | `cvv1`                   | 3 digits                                                        | FORMAT          |
//! | `pvv`                    | 4 digits                                                        | FORMAT          |
//! | `panSequenceNumber`      | 2 digits, `00` when absent                                      | FORMAT          |
//! | `effectiveDate`          | `YYMM`; month 01–12 and not after `exp`                         | FORMAT / VALUE  |
//! | `paymentAccountReference`| 29 chars `A–Z 0–9`                                              | FORMAT          |
//! | `trackData.track1`       | ISO 7811 track 1 charset (0x20–0x5F), 1–79 chars                | FORMAT          |
//! | `trackData.track2`/`3`   | ISO 7811 BCD charset (`0–9 : ; < = > ?`), 1–40 / 1–107 chars    | FORMAT          |
//! | `chipData.aid`           | hex, 5–16 bytes                                                 | FORMAT          |
//! | `chipData.dgis`          | at least one, DGI ids unique                                    | VALUE           |
//! | `chipData.dgis[i].dgi`   | 4 hex digits                                                    | FORMAT          |
//! | `chipData.dgis[i].data`  | hex, at most 65535 bytes                                        | FORMAT          |
//! | `chipData.dgis[i].encryption` | `none` \| `pad` \| `nopad`; `nopad` data a multiple of 8 bytes | VALUE     |
//!
//! A missing required field or a wrong JSON type is `FIELD_INVALID_FORMAT`.
//! Years are `20YY`. Track overrides are used as is (no LRC or sentinel check).
//! Fields not listed (a `cvv2`, which never goes on a card, included) are ignored
//! and wiped with the rest of the parsed payload.

use serde_json::{Map, Value};
use time::Date;
use zeroize::{Zeroize, Zeroizing};

use super::error::{D1Error, D1ErrorCode};
use station_emv::card_data::{Pan, PanError, YearMonth, YearMonthError};
use station_emv::dgi::{Dgi, DgiEncryption};

const ROOT: &str = "encryptedData";

/// The month containing `date`.
fn month_of(date: Date) -> YearMonth {
    YearMonth {
        year: date.year().clamp(0, i32::from(u16::MAX)) as u16,
        month: u8::from(date.month()),
    }
}

/// True when a card expiring in `exp` is no longer valid on `today`
/// (a card is valid through the last day of its expiry month).
fn is_expired(exp: YearMonth, today: Date) -> bool {
    exp < month_of(today)
}

/// Track data overrides, written to the stripe as given.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct TrackData {
    /// Track 1 (IATA, alphanumeric).
    pub track1: Option<String>,
    /// Track 2 (ABA, numeric).
    pub track2: Option<String>,
    /// Track 3 (THRIFT, numeric).
    pub track3: Option<String>,
}

impl Drop for TrackData {
    fn drop(&mut self) {
        self.track1.zeroize();
        self.track2.zeroize();
        self.track3.zeroize();
    }
}

impl std::fmt::Debug for TrackData {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let shown = |t: &Option<String>| if t.is_some() { "<redacted>" } else { "-" };
        f.debug_struct("TrackData")
            .field("track1", &shown(&self.track1))
            .field("track2", &shown(&self.track2))
            .field("track3", &shown(&self.track3))
            .finish()
    }
}

/// "Model 2" chip data: an EMV data set prepared by the issuer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChipData {
    /// Application identifier to personalize.
    pub aid: Vec<u8>,
    /// The DGIs, in the order to send them (each zeroizes its data on drop).
    pub dgis: Vec<Dgi>,
}

/// The decrypted card data of one order. Zeroized on drop; `Debug` shows only
/// the masked PAN and which fields are present.
pub struct CardData {
    /// The PAN.
    pub pan: Pan,
    /// Expiry month.
    pub exp: YearMonth,
    /// ISO 7813 cardholder name for track 1 and the chip.
    pub encoded_name: Option<String>,
    /// CVV for the magnetic stripe.
    pub cvv1: Option<String>,
    /// PIN verification value.
    pub pvv: Option<String>,
    /// PAN sequence number, `00` unless given.
    pub pan_sequence_number: String,
    /// First month of validity.
    pub effective_date: Option<YearMonth>,
    /// Payment account reference (29 characters).
    pub payment_account_reference: Option<String>,
    /// Track overrides.
    pub track_data: Option<TrackData>,
    /// "Model 2" EMV data set.
    pub chip_data: Option<ChipData>,
}

impl Drop for CardData {
    fn drop(&mut self) {
        self.exp = YearMonth { year: 0, month: 0 };
        self.effective_date = None;
        self.encoded_name.zeroize();
        self.cvv1.zeroize();
        self.pvv.zeroize();
        self.pan_sequence_number.zeroize();
        self.payment_account_reference.zeroize();
        if let Some(chip) = &mut self.chip_data {
            chip.aid.zeroize();
        }
    }
}

impl std::fmt::Debug for CardData {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let present = |b: bool| if b { "<redacted>" } else { "-" };
        f.debug_struct("CardData")
            .field("pan", &self.pan)
            .field("exp", &"<redacted>")
            .field("encodedName", &present(self.encoded_name.is_some()))
            .field("cvv1", &present(self.cvv1.is_some()))
            .field("pvv", &present(self.pvv.is_some()))
            .field("panSequenceNumber", &"<redacted>")
            .field("trackData", &self.track_data)
            .field(
                "chipData",
                &self
                    .chip_data
                    .as_ref()
                    .map(|c| c.dgis.len())
                    .map(|n| format!("{n} DGIs")),
            )
            .finish_non_exhaustive()
    }
}

/// Wipes every string of a parsed payload when it goes out of scope.
struct Wiped(Value);

impl Drop for Wiped {
    fn drop(&mut self) {
        fn wipe(v: &mut Value) {
            match v {
                Value::String(s) => s.zeroize(),
                Value::Array(items) => items.iter_mut().for_each(wipe),
                Value::Object(map) => map.values_mut().for_each(wipe),
                _ => {}
            }
        }
        wipe(&mut self.0);
    }
}

impl CardData {
    /// Parses and checks the decrypted payload. Not JSON → `PARSING_ERROR`
    /// (`encryptedData`); a bad field → `FIELD_INVALID_*` at `encryptedData.<field>`.
    ///
    /// Strings of the parsed document are wiped after use; numbers sent where
    /// strings belong (already an error) are not.
    pub fn from_json(payload: &[u8], today: Date) -> Result<CardData, D1Error> {
        let doc = Wiped(
            serde_json::from_slice(payload)
                .map_err(|_| D1Error::new(D1ErrorCode::ParsingError, ROOT))?,
        );
        let obj = doc.0.as_object().ok_or_else(|| D1Error::format(ROOT))?;
        Self::from_object(obj, today)
    }

    fn from_object(obj: &Map<String, Value>, today: Date) -> Result<CardData, D1Error> {
        let at = |f: &str| format!("{ROOT}.{f}");

        let pan_text = str_field(obj, "pan", ROOT)?.ok_or_else(|| D1Error::format(at("pan")))?;
        let pan = Pan::parse(pan_text).map_err(|e| match e {
            PanError::Format(_) => D1Error::format(at("pan")),
            PanError::Luhn => D1Error::value(at("pan")),
        })?;

        let exp_text = str_field(obj, "exp", ROOT)?.ok_or_else(|| D1Error::format(at("exp")))?;
        let exp = parse_yymm(exp_text, &at("exp"))?;
        if is_expired(exp, today) {
            return Err(D1Error::value(at("exp")));
        }

        let encoded_name = checked(obj, "encodedName", is_iso7813_name)?;
        let cvv1 = checked(obj, "cvv1", |s| digits(s, 3))?;
        let pvv = checked(obj, "pvv", |s| digits(s, 4))?;
        let pan_sequence_number =
            checked(obj, "panSequenceNumber", |s| digits(s, 2))?.unwrap_or_else(|| "00".into());

        let effective_date = match str_field(obj, "effectiveDate", ROOT)? {
            None => None,
            Some(s) => {
                let d = parse_yymm(s, &at("effectiveDate"))?;
                if d > exp {
                    return Err(D1Error::value(at("effectiveDate")));
                }
                Some(d)
            }
        };

        let payment_account_reference = checked(obj, "paymentAccountReference", |s| {
            s.len() == 29
                && s.bytes()
                    .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit())
        })?;

        let track_data = match obj_field(obj, "trackData", ROOT)? {
            None => None,
            Some(t) => Some(parse_tracks(t)?),
        };
        let chip_data = match obj_field(obj, "chipData", ROOT)? {
            None => None,
            Some(c) => Some(parse_chip(c)?),
        };

        Ok(CardData {
            pan,
            exp,
            encoded_name,
            cvv1,
            pvv,
            pan_sequence_number,
            effective_date,
            payment_account_reference,
            track_data,
            chip_data,
        })
    }
}

/// A string field; `Ok(None)` when absent, FORMAT when not a string.
fn str_field<'a>(
    obj: &'a Map<String, Value>,
    name: &str,
    parent: &str,
) -> Result<Option<&'a str>, D1Error> {
    match obj.get(name) {
        None => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(_) => Err(D1Error::format(format!("{parent}.{name}"))),
    }
}

fn obj_field<'a>(
    obj: &'a Map<String, Value>,
    name: &str,
    parent: &str,
) -> Result<Option<&'a Map<String, Value>>, D1Error> {
    match obj.get(name) {
        None => Ok(None),
        Some(Value::Object(m)) => Ok(Some(m)),
        Some(_) => Err(D1Error::format(format!("{parent}.{name}"))),
    }
}

/// An optional top-level string field that must satisfy `ok` (else FORMAT).
fn checked(
    obj: &Map<String, Value>,
    name: &str,
    ok: impl Fn(&str) -> bool,
) -> Result<Option<String>, D1Error> {
    match str_field(obj, name, ROOT)? {
        None => Ok(None),
        Some(s) if ok(s) => Ok(Some(s.to_owned())),
        Some(_) => Err(D1Error::format(format!("{ROOT}.{name}"))),
    }
}

fn parse_yymm(s: &str, path: &str) -> Result<YearMonth, D1Error> {
    YearMonth::parse(s).map_err(|e| match e {
        YearMonthError::Format => D1Error::format(path),
        YearMonthError::Month => D1Error::value(path),
    })
}

fn digits(s: &str, n: usize) -> bool {
    s.len() == n && s.bytes().all(|b| b.is_ascii_digit())
}

/// ISO/IEC 7813 track 1 name field: 2–26 characters; we accept the subset
/// `A–Z 0–9 space / . - '` (upper case, no field separator `^`).
pub fn is_iso7813_name(s: &str) -> bool {
    (2..=26).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b" /.-'".contains(&b))
}

fn parse_tracks(t: &Map<String, Value>) -> Result<TrackData, D1Error> {
    let parent = format!("{ROOT}.trackData");
    let track = |name: &str, max: usize, ok: fn(u8) -> bool| -> Result<Option<String>, D1Error> {
        match str_field(t, name, &parent)? {
            None => Ok(None),
            Some(s) if !s.is_empty() && s.len() <= max && s.bytes().all(ok) => {
                Ok(Some(s.to_owned()))
            }
            Some(_) => Err(D1Error::format(format!("{parent}.{name}"))),
        }
    };
    // ISO/IEC 7811: track 1 is 6-bit alphanumeric (0x20–0x5F), tracks 2 and 3 are 4-bit BCD (0x30–0x3F).
    Ok(TrackData {
        track1: track("track1", 79, |b| (0x20..=0x5F).contains(&b))?,
        track2: track("track2", 40, |b| (0x30..=0x3F).contains(&b))?,
        track3: track("track3", 107, |b| (0x30..=0x3F).contains(&b))?,
    })
}

fn hex_bytes(s: &str) -> Option<Zeroizing<Vec<u8>>> {
    if s.len() % 2 != 0 {
        return None;
    }
    hex::decode(s).ok().map(Zeroizing::new)
}

/// A DGI identifier: exactly four hex digits.
fn dgi_id(s: &str) -> Option<u16> {
    if s.len() == 4 && s.bytes().all(|b| b.is_ascii_hexdigit()) {
        u16::from_str_radix(s, 16).ok()
    } else {
        None
    }
}

impl ChipData {
    /// Reads a Model 2 DGI set on its own (`{aid, dgis:[…]}`), as engineers give it to
    /// `card perso`; errors name the field as in card data.
    pub fn from_json_str(text: &str) -> Result<ChipData, D1Error> {
        match serde_json::from_str::<Value>(text) {
            Ok(Value::Object(m)) => parse_chip(&m),
            _ => Err(D1Error::format(format!("{ROOT}.chipData"))),
        }
    }
}

fn parse_chip(c: &Map<String, Value>) -> Result<ChipData, D1Error> {
    let parent = format!("{ROOT}.chipData");
    let aid_path = format!("{parent}.aid");
    let aid_text = str_field(c, "aid", &parent)?.ok_or_else(|| D1Error::format(&aid_path))?;
    let aid = hex_bytes(aid_text)
        .filter(|a| (5..=16).contains(&a.len()))
        .ok_or_else(|| D1Error::format(&aid_path))?;

    let dgis_path = format!("{parent}.dgis");
    let items = match c.get("dgis") {
        Some(Value::Array(items)) => items,
        _ => return Err(D1Error::format(dgis_path)),
    };
    if items.is_empty() {
        return Err(D1Error::value(dgis_path));
    }
    let mut dgis: Vec<Dgi> = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        let here = format!("{dgis_path}[{i}]");
        let item = item.as_object().ok_or_else(|| D1Error::format(&here))?;
        let id_path = format!("{here}.dgi");
        let id = str_field(item, "dgi", &here)?
            .and_then(dgi_id)
            .ok_or_else(|| D1Error::format(&id_path))?;
        if dgis.iter().any(|d| d.id == id) {
            return Err(D1Error::value(id_path));
        }
        let data_path = format!("{here}.data");
        let data = str_field(item, "data", &here)?
            .and_then(hex_bytes)
            .filter(|d| d.len() <= 0xFFFF)
            .ok_or_else(|| D1Error::format(&data_path))?;
        let enc_path = format!("{here}.encryption");
        let encryption = match str_field(item, "encryption", &here)? {
            None => return Err(D1Error::format(enc_path)),
            Some("none") => DgiEncryption::None,
            Some("pad") => DgiEncryption::Pad,
            Some("nopad") if data.len() % 8 == 0 => DgiEncryption::Nopad,
            Some(_) => return Err(D1Error::value(enc_path)),
        };
        dgis.push(Dgi::new(id, data.to_vec(), encryption));
    }
    Ok(ChipData {
        aid: aid.to_vec(),
        dgis,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn iso7813_name_accepts_surname_slash_given_name() {
        assert!(is_iso7813_name("DUPONT/JEAN-MARIE.MR"));
        assert!(is_iso7813_name("O'NEIL/ANN"));
        assert!(
            !is_iso7813_name("dupont/jean"),
            "lower case is outside track 1"
        );
        assert!(!is_iso7813_name("A"), "shorter than 2");
        assert!(
            !is_iso7813_name("ABCDEFGHIJKLMNOPQRSTUVWXYZA"),
            "longer than 26"
        );
        assert!(!is_iso7813_name("DUPONT^JEAN"), "field separator");
    }

    #[test]
    fn expiry_month_is_valid_through_its_last_day() {
        let exp = YearMonth::parse("2611").unwrap();
        assert!(!is_expired(exp, time::macros::date!(2026 - 11 - 30)));
        assert!(is_expired(exp, time::macros::date!(2026 - 12 - 01)));
    }
}
