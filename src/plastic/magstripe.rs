//! ISO 7811/7813 magnetic stripe: track 1 (IATA, 7-bit) and track 2 (ABA, 5-bit) from
//! the card data, discretionary data by the card product's pattern, LRC, and the chip's
//! track 2 equivalent (tag 57) so that stripe and chip agree.

use thiserror::Error;
use zeroize::Zeroizing;

/// A track that cannot be encoded. Never carries the track content.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum MagError {
    /// A character outside the track's character set.
    #[error("track {track}: character not allowed at position {position}")]
    Charset {
        /// Track number.
        track: u8,
        /// 0-based position in the track data.
        position: usize,
    },
    /// The track (with sentinels and LRC) is longer than the standard allows.
    #[error("track {track}: {len} characters, at most {max}")]
    TooLong {
        /// Track number.
        track: u8,
        /// Length with sentinels and LRC.
        len: usize,
        /// Maximum.
        max: usize,
    },
    /// A field of the card data has the wrong shape for the track.
    #[error("track data field {0} is not usable")]
    Field(&'static str),
}

/// Maximum characters per track including start/end sentinels and LRC.
pub const MAX_LEN: [usize; 3] = [79, 40, 107];

/// Whether a character is in the track's set (without sentinels and separators rules).
fn allowed(track: u8, c: char) -> bool {
    match track {
        // 6-bit + parity set: space (0x20) .. underscore (0x5F), minus the sentinels.
        1 => (' '..='_').contains(&c) && c != '%' && c != '?',
        // 4-bit + parity set: digits, '=' field separator and the other controls.
        _ => c.is_ascii_digit() || c == '=',
    }
}

/// Checks the characters and length of a track's data (sentinels and LRC excluded).
pub fn validate(track: u8, data: &str) -> Result<(), MagError> {
    if let Some(position) = data.chars().position(|c| !allowed(track, c)) {
        return Err(MagError::Charset { track, position });
    }
    let len = data.chars().count() + 3;
    let max = MAX_LEN[(track - 1) as usize];
    if len > max {
        return Err(MagError::TooLong { track, len, max });
    }
    Ok(())
}

/// Longitudinal redundancy check over start sentinel ‖ data ‖ end sentinel: the XOR of
/// the characters' data bits (6 bits on track 1 from 0x20, 4 bits on track 2 from 0x30),
/// returned as the track character.
pub fn lrc(track: u8, data: &str) -> char {
    let (start, end, base, mask) = if track == 1 {
        ('%', '?', 0x20u8, 0x3Fu8)
    } else {
        (';', '?', 0x30u8, 0x0Fu8)
    };
    let x = std::iter::once(start)
        .chain(data.chars())
        .chain(std::iter::once(end))
        .fold(0u8, |acc, c| acc ^ ((c as u8).wrapping_sub(base) & mask));
    (x + base) as char
}

/// Card fields the stripe is built from. Holds card data: zeroized, never printed.
pub struct TrackInput<'a> {
    /// PAN digits.
    pub pan: &'a str,
    /// Expiry YYMM.
    pub exp_yymm: &'a str,
    /// Cardholder name as encoded (ISO 7813 `SURNAME/FIRST`).
    pub name: &'a str,
    /// Service code (3 digits).
    pub service_code: &'a str,
    /// Discretionary data (already expanded from the product's pattern).
    pub discretionary: &'a str,
}

/// Expands a discretionary-data pattern: `{pvki}`, `{pvv}`, `{cvv}` are replaced by
/// the values given (missing ones by zeros of the field's length), digits are kept.
pub fn discretionary(
    pattern: &str,
    pvki: &str,
    pvv: &str,
    cvv: &str,
) -> Result<Zeroizing<String>, MagError> {
    let mut out = Zeroizing::new(String::new());
    let mut rest = pattern;
    while let Some(open) = rest.find('{') {
        out.push_str(&rest[..open]);
        let close = rest[open..]
            .find('}')
            .ok_or(MagError::Field("discretionary pattern"))?
            + open;
        let (value, width) = match &rest[open + 1..close] {
            "pvki" => (pvki, 1),
            "pvv" => (pvv, 4),
            "cvv" => (cvv, 3),
            _ => return Err(MagError::Field("discretionary pattern")),
        };
        if value.is_empty() {
            out.push_str(&"0".repeat(width));
        } else if value.len() == width && value.chars().all(|c| c.is_ascii_digit()) {
            out.push_str(value);
        } else {
            return Err(MagError::Field("discretionary value"));
        }
        rest = &rest[close + 1..];
    }
    out.push_str(rest);
    if !out.chars().all(|c| c.is_ascii_digit()) {
        return Err(MagError::Field("discretionary pattern"));
    }
    Ok(out)
}

fn check_fields(t: &TrackInput<'_>) -> Result<(), MagError> {
    let digits = |s: &str, n: std::ops::RangeInclusive<usize>| {
        n.contains(&s.len()) && s.chars().all(|c| c.is_ascii_digit())
    };
    if !digits(t.pan, 12..=19) {
        return Err(MagError::Field("pan"));
    }
    if !digits(t.exp_yymm, 4..=4) {
        return Err(MagError::Field("exp"));
    }
    if !digits(t.service_code, 3..=3) {
        return Err(MagError::Field("serviceCode"));
    }
    Ok(())
}

/// Track 1 data without sentinels: `B PAN ^ NAME ^ YYMM SVC DD`.
pub fn track1(t: &TrackInput<'_>) -> Result<Zeroizing<String>, MagError> {
    check_fields(t)?;
    if t.name.is_empty() || t.name.len() > 26 || t.name.contains('^') {
        return Err(MagError::Field("encodedName"));
    }
    let s = Zeroizing::new(format!(
        "B{}^{}^{}{}{}",
        t.pan, t.name, t.exp_yymm, t.service_code, t.discretionary
    ));
    validate(1, &s)?;
    Ok(s)
}

/// Track 2 data without sentinels: `PAN = YYMM SVC DD`.
pub fn track2(t: &TrackInput<'_>) -> Result<Zeroizing<String>, MagError> {
    check_fields(t)?;
    let s = Zeroizing::new(format!(
        "{}={}{}{}",
        t.pan, t.exp_yymm, t.service_code, t.discretionary
    ));
    validate(2, &s)?;
    Ok(s)
}

/// A whole track as written: start sentinel ‖ data ‖ end sentinel ‖ LRC.
pub fn with_sentinels(track: u8, data: &str) -> Zeroizing<String> {
    let start = if track == 1 { '%' } else { ';' };
    Zeroizing::new(format!("{start}{data}?{}", lrc(track, data)))
}

/// The chip's track 2 equivalent data (tag 57) for track 2 data: BCD digits with `D`
/// as separator, padded with `F` to whole bytes.
pub fn track2_equivalent(track2: &str) -> Result<Zeroizing<Vec<u8>>, MagError> {
    validate(2, track2)?;
    let mut nibbles: Vec<u8> = track2
        .chars()
        .map(|c| if c == '=' { 0x0D } else { c as u8 - b'0' })
        .collect();
    if nibbles.len() % 2 == 1 {
        nibbles.push(0x0F);
    }
    Ok(Zeroizing::new(
        nibbles.chunks(2).map(|p| (p[0] << 4) | p[1]).collect(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn input<'a>(pan: &'a str, name: &'a str, dd: &'a str) -> TrackInput<'a> {
        TrackInput {
            pan,
            exp_yymm: "2512",
            name,
            service_code: "201",
            discretionary: dd,
        }
    }

    #[test]
    fn track2_layout_and_lrc() {
        let t = track2(&input("4761739001010010", "DOE/JOHN", "00000561")).unwrap();
        assert_eq!(t.as_str(), "4761739001010010=251220100000561");
        let full = with_sentinels(2, &t);
        assert!(full.starts_with(';') && full.as_bytes()[full.len() - 2] == b'?');
        // LRC makes the XOR of all characters' data bits zero.
        let x = full.chars().fold(0u8, |a, c| a ^ ((c as u8 - 0x30) & 0x0F));
        assert_eq!(x, 0);
    }

    #[test]
    fn track1_carries_the_iso_7813_name() {
        let t = track1(&input("4761739001010010", "DOE/JOHN Q", "0000")).unwrap();
        assert_eq!(t.as_str(), "B4761739001010010^DOE/JOHN Q^25122010000");
        let full = with_sentinels(1, &t);
        let x = full.chars().fold(0u8, |a, c| a ^ ((c as u8 - 0x20) & 0x3F));
        assert_eq!(x, 0);
    }

    #[test]
    fn a_19_digit_pan_and_26_char_name_fit_track1() {
        let name = "ABCDEFGHIJKLMNOPQRST/UVWXY";
        assert_eq!(name.len(), 26);
        let t = track1(&input("6011000990139424123", name, "0000000000")).unwrap();
        assert!(with_sentinels(1, &t).len() <= 79);
    }

    #[test]
    fn lowercase_is_outside_the_track1_set() {
        assert_eq!(
            track1(&input("4761739001010010", "Doe/John", "")).unwrap_err(),
            MagError::Charset {
                track: 1,
                position: 19
            }
        );
    }

    #[test]
    fn track2_over_40_characters_is_refused() {
        let e = track2(&input("6011000990139424123", "X", "00000000000000")).unwrap_err();
        assert!(
            matches!(
                e,
                MagError::TooLong {
                    track: 2,
                    max: 40,
                    ..
                }
            ),
            "{e}"
        );
    }

    #[test]
    fn discretionary_pattern_places_the_cvv() {
        let dd = discretionary("{pvki}{pvv}{cvv}00", "1", "4821", "561").unwrap();
        assert_eq!(dd.as_str(), "1482156100");
        let dd = discretionary("0000{cvv}", "", "", "561").unwrap();
        assert_eq!(dd.as_str(), "0000561");
        assert!(discretionary("{cvv}", "", "", "56").is_err());
    }

    #[test]
    fn tag_57_is_track2_in_bcd_with_d_separator_and_f_pad() {
        let t2 = track2(&input("4761739001010010", "X", "00000561")).unwrap();
        let t57 = track2_equivalent(&t2).unwrap();
        assert_eq!(hex::encode_upper(&*t57), "4761739001010010D251220100000561");
        let odd = track2_equivalent("4761739001010010=25122010000051").unwrap();
        assert_eq!(hex::encode_upper(&*odd), "4761739001010010D25122010000051F");
    }

    #[test]
    fn errors_never_show_the_pan() {
        let e = track1(&input("4761739001010010", "doe", "")).unwrap_err();
        assert!(!format!("{e} {e:?}").contains("4761739001010010"));
    }
}
