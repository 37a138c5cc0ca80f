//! What is derived from an order before anything reaches the chip: the ICC master
//! keys (EMV Book 2 Annex A1.4, "Option A") and the EMV data elements built from the
//! card data (5A, 57, 5F24, 5F25, 5F34, 5F20, 9F1F).
//!
//! Card data is secret: every type here that holds a PAN or track data zeroizes it on
//! drop and redacts it from `Debug`.

use thiserror::Error;
use zeroize::Zeroizing;

use crate::card_data::{Pan, PanError, YearMonth};
use crate::crypto::{tdes_ecb_encrypt, tdes_kcv, with_odd_parity, CryptoError};

/// Why card data cannot be turned into EMV data elements.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum DeriveError {
    /// The PAN is not 12 to 19 decimal digits (the value itself is never shown).
    #[error(transparent)]
    Pan(#[from] PanError),
    /// The PAN sequence number is not two decimal digits.
    #[error("PAN sequence number must be 2 digits")]
    Psn,
    /// A date is not a valid YYMM.
    #[error("{field} must be YYMM with a month 01-12")]
    Date {
        /// Which field.
        field: &'static str,
    },
    /// A service code is not three digits.
    #[error("service code must be 3 digits")]
    ServiceCode,
    /// The track 2 discretionary-data pattern cannot be filled.
    #[error("track 2 discretionary data: {0}")]
    Track2(String),
    /// The cardholder name does not fit ISO 7813 / tag 5F20.
    #[error("cardholder name: {0}")]
    Name(String),
    /// A key had the wrong length.
    #[error(transparent)]
    Crypto(#[from] CryptoError),
}

/// Packs decimal (or hex) digits two per byte, `F`-padding an odd count.
pub fn bcd_f_padded(digits: &str) -> Vec<u8> {
    let mut s: Vec<u8> = digits.bytes().collect();
    if s.len() % 2 == 1 {
        s.push(b'F');
    }
    s.chunks(2)
        .map(|c| (nibble(c[0]) << 4) | nibble(c[1]))
        .collect()
}

/// Packs an even count of decimal digits as BCD (numeric `n` format).
pub fn bcd(digits: &str) -> Vec<u8> {
    bcd_f_padded(digits)
}

fn nibble(c: u8) -> u8 {
    match c {
        b'0'..=b'9' => c - b'0',
        b'A'..=b'F' => c - b'A' + 10,
        b'a'..=b'f' => c - b'a' + 10,
        _ => 0,
    }
}

/// PAN sequence number (tag 5F34), two digits, `00` when the order gives none.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Psn(u8);

impl Psn {
    /// Parses two decimal digits.
    pub fn new(digits: &str) -> Result<Self, DeriveError> {
        if digits.len() == 2 && digits.bytes().all(|b| b.is_ascii_digit()) {
            Ok(Psn(digits.parse().map_err(|_| DeriveError::Psn)?))
        } else {
            Err(DeriveError::Psn)
        }
    }

    /// Two decimal digits.
    pub fn digits(&self) -> String {
        format!("{:02}", self.0)
    }

    /// Tag 5F34 value (one BCD byte).
    pub fn to_5f34(&self) -> [u8; 1] {
        [((self.0 / 10) << 4) | (self.0 % 10)]
    }
}

/// Parses an order's `YYMM` date; `field` names the order field in the error.
pub fn parse_date(yymm: &str, field: &'static str) -> Result<YearMonth, DeriveError> {
    YearMonth::parse(yymm).map_err(|_| DeriveError::Date { field })
}

/// A three-digit magnetic-stripe service code (also tag 5F30).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceCode(String);

impl ServiceCode {
    /// Parses three decimal digits.
    pub fn new(digits: &str) -> Result<Self, DeriveError> {
        if digits.len() == 3 && digits.bytes().all(|b| b.is_ascii_digit()) {
            Ok(ServiceCode(digits.to_string()))
        } else {
            Err(DeriveError::ServiceCode)
        }
    }

    /// The three digits.
    pub fn digits(&self) -> &str {
        &self.0
    }

    /// Tag 5F30: `0` ‖ three digits as two BCD bytes.
    pub fn to_5f30(&self) -> Vec<u8> {
        bcd(&format!("0{}", self.0))
    }
}

/// Values the track 2 discretionary-data pattern can refer to.
pub struct DiscretionaryValues<'a> {
    /// PIN verification key index (one digit), `0` when no PVV.
    pub pvki: Option<char>,
    /// PVV, four digits, when the order supplies one.
    pub pvv: Option<&'a str>,
    /// The card verification value for this track (CVV1 on the stripe, iCVV in tag 57).
    pub cvv: Option<&'a str>,
}

/// Fills a discretionary-data pattern such as `"{pvki}{pvv}{cvv}0000"`: placeholders
/// `{pvki}` (1 digit), `{pvv}` (4 digits), `{cvv}` (3 digits); everything else must
/// be decimal digits and is copied as fixed fill. A missing PVKI/PVV becomes zeros
/// (the stripe convention for "no PVV"); a missing CVV is an error.
pub fn fill_discretionary(
    pattern: &str,
    v: &DiscretionaryValues<'_>,
) -> Result<Zeroizing<String>, DeriveError> {
    let mut out = Zeroizing::new(String::new());
    let mut rest = pattern;
    while !rest.is_empty() {
        if let Some(after) = rest.strip_prefix('{') {
            let end = after
                .find('}')
                .ok_or_else(|| DeriveError::Track2("unclosed '{' in pattern".into()))?;
            match &after[..end] {
                "pvki" => out.push(v.pvki.unwrap_or('0')),
                "pvv" => out.push_str(v.pvv.unwrap_or("0000")),
                "cvv" => out.push_str(
                    v.cvv
                        .ok_or_else(|| DeriveError::Track2("no CVV for {cvv}".into()))?,
                ),
                other => {
                    return Err(DeriveError::Track2(format!(
                        "unknown placeholder {{{other}}}"
                    )))
                }
            }
            rest = &after[end + 1..];
        } else {
            let c = rest.chars().next().expect("not empty");
            if !c.is_ascii_digit() {
                return Err(DeriveError::Track2(format!(
                    "fixed fill must be digits, found '{c}'"
                )));
            }
            out.push(c);
            rest = &rest[1..];
        }
    }
    Ok(out)
}

/// Checks a pattern's syntax without card data (used when a profile loads).
pub fn check_discretionary_pattern(pattern: &str) -> Result<usize, DeriveError> {
    let filled = fill_discretionary(
        pattern,
        &DiscretionaryValues {
            pvki: Some('0'),
            pvv: Some("0000"),
            cvv: Some("000"),
        },
    )?;
    Ok(filled.len())
}

/// Track 2 data as digits: PAN ‖ `D` ‖ YYMM ‖ service code ‖ discretionary data.
/// This is the content of chip tag 57 before BCD packing, and of the stripe's track 2
/// with `=` for `D`.
pub fn track2_digits(
    pan: &Pan,
    exp: YearMonth,
    service_code: &ServiceCode,
    discretionary: &str,
) -> Result<Zeroizing<String>, DeriveError> {
    let s = Zeroizing::new(format!(
        "{}D{}{}{}",
        pan.digits(),
        exp.to_yymm(),
        service_code.digits(),
        discretionary
    ));
    // ISO 7813 track 2 holds at most 37 characters between the sentinels.
    if s.len() > 37 {
        return Err(DeriveError::Track2(format!(
            "track 2 would be {} characters, the maximum is 37",
            s.len()
        )));
    }
    Ok(s)
}

/// Tag 57 (track 2 equivalent data): the track 2 digits with `D` as separator, BCD,
/// `F`-padded to a whole byte.
pub fn track2_to_57(track2: &str) -> Zeroizing<Vec<u8>> {
    Zeroizing::new(bcd_f_padded(track2))
}

/// Tag 5F20 from the order's ISO 7813 encoded name: 2-26 characters from the
/// ISO 7813 track 1 name set (upper-case letters, space, `/`, `.`, `-`, `'`).
pub fn name_to_5f20(encoded_name: &str) -> Result<Vec<u8>, DeriveError> {
    let ok_char = |c: char| c.is_ascii_uppercase() || " /.-'".contains(c);
    if let Some(c) = encoded_name.chars().find(|c| !ok_char(*c)) {
        let shown = if c.is_ascii_graphic() || c == ' ' {
            c.to_string()
        } else {
            format!("U+{:04X}", c as u32)
        };
        return Err(DeriveError::Name(format!(
            "character '{shown}' is not in the ISO 7813 name set"
        )));
    }
    if !(2..=26).contains(&encoded_name.len()) {
        return Err(DeriveError::Name(format!(
            "must be 2 to 26 characters, got {}",
            encoded_name.len()
        )));
    }
    Ok(encoded_name.as_bytes().to_vec())
}

/// EMV Book 2 Annex A1.4.1 Option A: the 16-byte ICC master key from a 16-byte
/// issuer master key. X = rightmost 16 digits of PAN ‖ PSN (left-padded with zeros
/// when shorter), Y = X as 8 BCD bytes, key = 3DES(IMK, Y) ‖ 3DES(IMK, Y ⊕ FF..FF),
/// with odd parity.
pub fn option_a_icc_master_key(
    imk: &[u8],
    pan: &Pan,
    psn: Psn,
) -> Result<Zeroizing<Vec<u8>>, DeriveError> {
    let mut x = Zeroizing::new(format!("{}{}", pan.digits(), psn.digits()));
    if x.len() < 16 {
        *x = format!("{:0>16}", x.as_str());
    }
    let y = Zeroizing::new(bcd(&x[x.len() - 16..]));
    let left = Zeroizing::new(tdes_ecb_encrypt(imk, &y)?);
    let y_inv: Zeroizing<Vec<u8>> = Zeroizing::new(y.iter().map(|b| b ^ 0xFF).collect());
    let right = Zeroizing::new(tdes_ecb_encrypt(imk, &y_inv)?);
    let mut both = Zeroizing::new(Vec::with_capacity(16));
    both.extend_from_slice(&left);
    both.extend_from_slice(&right);
    Ok(Zeroizing::new(with_odd_parity(&both)))
}

/// How ICC master keys are derived from an issuer master key (EMV Book 2 A1.4).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MasterKeyDerivation {
    /// Option A: the rightmost 16 digits of PAN ‖ PSN.
    OptionA,
    /// Option B: as Option A for PANs of up to 16 digits; for longer PANs, 16 digits
    /// decimalized from SHA-1(PAN ‖ PSN).
    OptionB,
}

/// ICC master key by EMV Option B (EMV Book 2 A1.4.2).
pub fn option_b_icc_master_key(
    imk: &[u8],
    pan: &Pan,
    psn: Psn,
) -> Result<Zeroizing<Vec<u8>>, DeriveError> {
    if pan.digits().len() <= 16 {
        return option_a_icc_master_key(imk, pan, psn);
    }
    // PAN ‖ PSN as BCD, a leading 0 making the digit count even.
    let mut x = Zeroizing::new(format!("{}{}", pan.digits(), psn.digits()));
    if x.len() % 2 == 1 {
        x.insert(0, '0');
    }
    let digest = Zeroizing::new(openssl::sha::sha1(&bcd(&x)));
    let nibbles: Zeroizing<Vec<u8>> =
        Zeroizing::new(digest.iter().flat_map(|b| [b >> 4, b & 0x0F]).collect());
    // The decimal nibbles in order, then (if fewer than 16) the hex letters A-F in
    // order, decimalized A→0 … F→5.
    let y: Zeroizing<Vec<u8>> = Zeroizing::new(
        nibbles
            .iter()
            .filter(|n| **n < 10)
            .chain(nibbles.iter().filter(|n| **n >= 10))
            .take(16)
            .map(|n| if *n >= 10 { n - 10 } else { *n })
            .collect(),
    );
    let digits: Zeroizing<String> =
        Zeroizing::new(y.iter().map(|d| char::from(b'0' + d)).collect());
    let y = Zeroizing::new(bcd(&digits));
    let left = Zeroizing::new(tdes_ecb_encrypt(imk, &y)?);
    let y_inv: Zeroizing<Vec<u8>> = Zeroizing::new(y.iter().map(|b| b ^ 0xFF).collect());
    let right = Zeroizing::new(tdes_ecb_encrypt(imk, &y_inv)?);
    let mut both = Zeroizing::new(Vec::with_capacity(16));
    both.extend_from_slice(&left);
    both.extend_from_slice(&right);
    Ok(Zeroizing::new(with_odd_parity(&both)))
}

/// ICC master key by `method`.
pub fn icc_master_key(
    method: MasterKeyDerivation,
    imk: &[u8],
    pan: &Pan,
    psn: Psn,
) -> Result<Zeroizing<Vec<u8>>, DeriveError> {
    match method {
        MasterKeyDerivation::OptionA => option_a_icc_master_key(imk, pan, psn),
        MasterKeyDerivation::OptionB => option_b_icc_master_key(imk, pan, psn),
    }
}

/// Key check value of a double-length DES key (first 3 bytes of 3DES(key, 0…0)).
pub fn key_check_value(key: &[u8]) -> Result<[u8; 3], DeriveError> {
    Ok(tdes_kcv(key)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::card_data::mask_digits;

    #[test]
    fn pan_is_masked_six_and_four() {
        let p = Pan::new("4761739001010010").unwrap();
        assert_eq!(p.masked(), "476173******0010");
        assert_eq!(format!("{p:?}"), "Pan(476173******0010)");
    }

    #[test]
    fn masking_a_malformed_value_does_not_panic() {
        assert_eq!(mask_digits("4761é39001010010"), "4761é3******0010");
        assert_eq!(mask_digits("12345"), "*****");
    }

    #[test]
    fn odd_length_pan_is_f_padded_in_5a() {
        let p = Pan::new("4761739001010").unwrap();
        assert_eq!(hex::encode_upper(p.to_5a()), "4761739001010F");
    }

    #[test]
    fn expiry_is_the_last_day_of_the_month() {
        let e = parse_date("2704", "exp").unwrap();
        assert_eq!(hex::encode(e.to_5f24()), "270430");
        let e = parse_date("2612", "exp").unwrap();
        assert_eq!(hex::encode(e.to_5f24()), "261231");
    }

    #[test]
    fn february_of_a_leap_year_ends_on_the_29th() {
        assert_eq!(
            hex::encode(parse_date("2802", "exp").unwrap().to_5f24()),
            "280229"
        );
        assert_eq!(
            hex::encode(parse_date("2702", "exp").unwrap().to_5f24()),
            "270228"
        );
        // 2000 is a leap year (divisible by 400).
        assert_eq!(parse_date("0002", "exp").unwrap().last_day(), 29);
    }

    #[test]
    fn effective_date_is_the_first_of_the_month() {
        let e = parse_date("2511", "effectiveDate").unwrap();
        assert_eq!(hex::encode(e.to_5f25()), "251101");
    }

    #[test]
    fn month_13_is_refused_naming_the_field() {
        assert_eq!(
            parse_date("2613", "exp"),
            Err(DeriveError::Date { field: "exp" })
        );
    }

    #[test]
    fn discretionary_pattern_places_the_values() {
        let v = DiscretionaryValues {
            pvki: Some('1'),
            pvv: Some("2345"),
            cvv: Some("678"),
        };
        let d = fill_discretionary("{pvki}{pvv}{cvv}00", &v).unwrap();
        assert_eq!(d.as_str(), "1234567800");
    }

    #[test]
    fn pattern_with_letters_is_refused() {
        assert!(check_discretionary_pattern("{cvv}AB").is_err());
        assert!(check_discretionary_pattern("{cv}").is_err());
    }

    #[test]
    fn tag_57_is_bcd_with_d_separator_and_f_pad() {
        let pan = Pan::new("4761739001010010").unwrap();
        let t = track2_digits(
            &pan,
            parse_date("2812", "exp").unwrap(),
            &ServiceCode::new("201").unwrap(),
            "123",
        )
        .unwrap();
        assert_eq!(t.as_str(), "4761739001010010D2812201123");
        assert_eq!(
            hex::encode_upper(&*track2_to_57(&t)),
            "4761739001010010D2812201123F"
        );
    }

    #[test]
    fn option_a_matches_the_published_vector() {
        // vectors/emv-gp-vectors.json option_a
        let imk = hex::decode("0123456789ABCDEFFEDCBA9876543210").unwrap();
        let mk = option_a_icc_master_key(
            &imk,
            &Pan::new("4761739001010010").unwrap(),
            Psn::new("01").unwrap(),
        )
        .unwrap();
        assert_eq!(hex::encode_upper(&*mk), "2F02C8B0E9CBC7B05B5167F7A1CDE6E5");
        assert_eq!(hex::encode_upper(key_check_value(&mk).unwrap()), "F23EFA");
    }

    #[test]
    fn name_outside_iso_7813_is_refused() {
        assert!(name_to_5f20("DUPONT/JEAN").is_ok());
        assert!(name_to_5f20("dupont").is_err());
        assert!(name_to_5f20("X").is_err());
    }

    #[test]
    fn option_b_matches_pyemv_for_long_pans_and_equals_option_a_up_to_16_digits() {
        let all: serde_json::Value = serde_json::from_str(include_str!(
            "../../../../tests/fixtures/cryptograms/cryptogram-vectors.json"
        ))
        .unwrap();
        for v in all["option_b"].as_array().unwrap() {
            let s = |k: &str| v[k].as_str().unwrap();
            let mk = option_b_icc_master_key(
                &hex::decode(s("imk")).unwrap(),
                &Pan::new(s("pan")).unwrap(),
                Psn::new(s("psn")).unwrap(),
            )
            .unwrap();
            assert_eq!(
                hex::encode_upper(&*mk),
                s("icc_mk"),
                "PAN of {} digits",
                s("pan").len()
            );
        }
        let imk = hex::decode("0123456789ABCDEFFEDCBA9876543210").unwrap();
        let pan = Pan::new("4761739001010010").unwrap();
        let psn = Psn::new("01").unwrap();
        assert_eq!(
            option_b_icc_master_key(&imk, &pan, psn).unwrap(),
            option_a_icc_master_key(&imk, &pan, psn).unwrap()
        );
    }
}
