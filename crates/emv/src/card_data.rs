//! The card's account data as one type each: the PAN (Luhn, masking, zeroized, never
//! shown in clear) and a card year-month (expiry or effective date, `YYMM`).
//!
//! Masking and the Luhn check live here once; the agent's order checks, log scrubbing
//! and sandbox hub use these functions rather than their own.

use thiserror::Error;
use zeroize::Zeroizing;

/// A primary account number: 12 to 19 decimal digits, zeroized on drop.
/// `Display` and `Debug` show only the mask (see [`mask_digits`]).
#[derive(Clone, PartialEq, Eq)]
pub struct Pan(Zeroizing<String>);

/// Why a string is not a PAN (the value itself is never shown).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum PanError {
    /// Not 12 to 19 ASCII digits; carries the length seen.
    #[error("PAN must be 12 to 19 digits, got {0} characters")]
    Format(usize),
    /// The check digit is wrong.
    #[error("PAN check digit (Luhn) is wrong")]
    Luhn,
}

impl Pan {
    /// Checks 12 to 19 digits and the Luhn check digit: the rule for a PAN an order carries.
    pub fn parse(digits: &str) -> Result<Pan, PanError> {
        let pan = Pan::new(digits)?;
        if !luhn_ok(digits.as_bytes()) {
            return Err(PanError::Luhn);
        }
        Ok(pan)
    }

    /// Checks 12 to 19 digits only: data preparation takes PANs the order layer has
    /// already checked, and published test vectors whose check digit is not Luhn.
    pub fn new(digits: &str) -> Result<Pan, PanError> {
        let ok = (12..=19).contains(&digits.len()) && digits.bytes().all(|b| b.is_ascii_digit());
        if ok {
            Ok(Pan(Zeroizing::new(digits.to_owned())))
        } else {
            Err(PanError::Format(digits.len()))
        }
    }

    /// The clear digits, for cryptography and encoding only; never log them.
    pub fn digits(&self) -> &str {
        &self.0
    }

    /// The masked form, e.g. `476173******0010` (fewer leading digits below 16) — the only
    /// form fit for logs, screens and printed previews.
    pub fn masked(&self) -> String {
        mask_digits(&self.0)
    }

    /// Number of digits.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Always false (a PAN has at least 12 digits); present for API symmetry.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Tag 5A: BCD, padded with `F` to a whole byte.
    pub fn to_5a(&self) -> Vec<u8> {
        crate::data::derive::bcd_f_padded(&self.0)
    }
}

impl std::fmt::Display for Pan {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.masked())
    }
}

impl std::fmt::Debug for Pan {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Pan({})", self.masked())
    }
}

/// Digits a mask always hides: with the Luhn digit that still leaves 10^5 candidates,
/// so a masked PAN never narrows the account to a handful (PCI DSS 3.4.1).
pub const MASK_HIDDEN_MIN: usize = 6;

/// Masks a digit string as head ‖ `*`… ‖ last 4. The head is the BIN (first 6) only
/// from 16 digits up; shorter PANs show fewer so that at least [`MASK_HIDDEN_MIN`]
/// digits stay hidden. Strings too short to keep both ends are masked entirely.
pub fn mask_digits(digits: &str) -> String {
    let n = digits.chars().count();
    if n < 12 {
        return "*".repeat(n);
    }
    let shown_head = 6.min(n - 4 - MASK_HIDDEN_MIN);
    let head: String = digits.chars().take(shown_head).collect();
    let tail: String = digits.chars().skip(n - 4).collect();
    format!("{head}{}{tail}", "*".repeat(n - 4 - shown_head))
}

/// Whether `value` is masked at least as far as [`mask_digits`] masks: no more than 10
/// digits shown, at least [`MASK_HIDDEN_MIN`] hidden (`*`), and no 7 digits in a row.
/// For values that arrive already masked (from the hub, for the journal).
pub fn looks_masked(value: &str) -> bool {
    let shown = value.chars().filter(char::is_ascii_digit).count();
    let hidden = value.chars().filter(|c| *c == '*').count();
    let mut run = 0;
    let longest = value.chars().fold(0, |longest, c| {
        run = if c.is_ascii_digit() { run + 1 } else { 0 };
        longest.max(run)
    });
    shown <= 10 && hidden >= MASK_HIDDEN_MIN && longest < 7
}

/// Luhn (mod 10) check over ASCII digits.
pub fn luhn_ok(digits: &[u8]) -> bool {
    let mut sum = 0u32;
    for (i, d) in digits.iter().rev().enumerate() {
        let mut v = (d - b'0') as u32;
        if i % 2 == 1 {
            v *= 2;
            if v > 9 {
                v -= 9;
            }
        }
        sum += v;
    }
    sum % 10 == 0
}

/// Whether `pan` is at least two ASCII digits and passes the Luhn check.
pub fn luhn_valid(pan: &str) -> bool {
    pan.len() >= 2 && pan.bytes().all(|b| b.is_ascii_digit()) && luhn_ok(pan.as_bytes())
}

/// Luhn check digit for `digits` (the PAN without its last digit).
pub fn luhn_check_digit(digits: &str) -> char {
    let sum: u32 = digits
        .bytes()
        .rev()
        .enumerate()
        .map(|(i, b)| {
            let d = u32::from(b - b'0');
            if i % 2 == 0 {
                let x = d * 2;
                if x > 9 {
                    x - 9
                } else {
                    x
                }
            } else {
                d
            }
        })
        .sum();
    char::from(b'0' + ((10 - sum % 10) % 10) as u8)
}

/// Lengths of a PAN-shaped number the scrubber masks (as many digits as a [`Pan`] may have).
pub const SCRUB_DIGITS: std::ops::RangeInclusive<usize> = 12..=19;

/// The one PAN scrubber, for log lines, journal reasons and the audit export: every
/// PAN-shaped number in `text` is masked as [`mask_digits`] masks it (so at least
/// [`MASK_HIDDEN_MIN`] digits hidden). PAN-shaped: 12 to 19 digits that pass the Luhn
/// check, anywhere (letters around it do not protect it), written in one run or in
/// groups separated by one space or dash (`4761 7390 0101 0010`, `4761-7390-…`); the
/// separators are kept. Any consecutive groups that together form a PAN are masked, so
/// a number written just before a grouped PAN does not shield it. Other numbers (ids,
/// times, counts, a digit run longer than 19) are left as they are.
/// Only ASCII digits change, so valid UTF-8 stays valid UTF-8.
pub fn scrub_pans(text: &[u8]) -> Vec<u8> {
    let mut out = text.to_vec();
    let mut i = 0;
    while i < text.len() {
        if !text[i].is_ascii_digit() {
            i += 1;
            continue;
        }
        // One sequence of digit groups joined by single separators.
        let mut groups: Vec<std::ops::Range<usize>> = Vec::new();
        loop {
            let start = i;
            while i < text.len() && text[i].is_ascii_digit() {
                i += 1;
            }
            groups.push(start..i);
            let joined = i + 1 < text.len()
                && matches!(text[i], b' ' | b'-')
                && text[i + 1].is_ascii_digit();
            if !joined {
                break;
            }
            i += 1;
        }
        mask_groups(text, &groups, &mut out);
    }
    out
}

/// [`scrub_pans`] over text.
pub fn scrub_pans_text(text: &str) -> String {
    String::from_utf8(scrub_pans(text.as_bytes())).expect("only ASCII digits are replaced")
}

/// Shortest digit run [`scrub_for_export`] hides whole.
pub const EXPORT_DIGIT_RUN: usize = 7;

/// The PAN scrubber for free text that leaves the station (audit export, end-of-day
/// report): [`scrub_pans_text`], then every remaining run of [`EXPORT_DIGIT_RUN`] or
/// more consecutive digits is replaced by `*`. Such a run may be a PAN fragment, a PAN
/// inside a longer number, or track discretionary data (PVV, CVV) that fails the Luhn
/// check; a reason needs none of them, and the auditor's numbers (card id, batch) are
/// fields of their own.
pub fn scrub_for_export(text: &str) -> String {
    let text = scrub_pans_text(text);
    let mut out = String::with_capacity(text.len());
    let mut run = 0;
    for (i, c) in text.char_indices() {
        if c.is_ascii_digit() {
            run += 1;
            continue;
        }
        flush_run(&text[i - run..i], &mut out);
        run = 0;
        out.push(c);
    }
    flush_run(&text[text.len() - run..], &mut out);
    out
}

fn flush_run(digits: &str, out: &mut String) {
    if digits.len() >= EXPORT_DIGIT_RUN {
        out.extend(std::iter::repeat('*').take(digits.len()));
    } else {
        out.push_str(digits);
    }
}

/// Masks every run of consecutive groups that forms a PAN; where such runs overlap, a
/// digit any of them hides stays hidden.
fn mask_groups(text: &[u8], groups: &[std::ops::Range<usize>], out: &mut [u8]) {
    for a in 0..groups.len() {
        let mut digits: Vec<u8> = Vec::new();
        for b in a..groups.len() {
            digits.extend_from_slice(&text[groups[b].clone()]);
            if digits.len() > *SCRUB_DIGITS.end() {
                break;
            }
            if !(SCRUB_DIGITS.contains(&digits.len()) && luhn_ok(&digits)) {
                continue;
            }
            let masked = mask_digits(std::str::from_utf8(&digits).expect("ASCII digits"));
            let positions = groups[a..=b].iter().flat_map(|g| g.clone());
            for (pos, m) in positions.zip(masked.bytes()) {
                if m == b'*' {
                    out[pos] = b'*';
                }
            }
        }
    }
}

/// A card date `YYMM` (expiry or effective date), year taken as `20YY`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct YearMonth {
    /// Full year, 2000–2099.
    pub year: u16,
    /// Month, 1–12.
    pub month: u8,
}

/// Why a string is not a `YYMM` date.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum YearMonthError {
    /// Not four digits.
    #[error("date must be four digits YYMM")]
    Format,
    /// Month outside 01–12.
    #[error("month must be 01 to 12")]
    Month,
}

impl YearMonth {
    /// Parses `YYMM`.
    pub fn parse(s: &str) -> Result<YearMonth, YearMonthError> {
        let b = s.as_bytes();
        if b.len() != 4 || !b.iter().all(u8::is_ascii_digit) {
            return Err(YearMonthError::Format);
        }
        let year = 2000 + u16::from(b[0] - b'0') * 10 + u16::from(b[1] - b'0');
        let month = (b[2] - b'0') * 10 + (b[3] - b'0');
        if !(1..=12).contains(&month) {
            return Err(YearMonthError::Month);
        }
        Ok(YearMonth { year, month })
    }

    /// The `YYMM` text.
    pub fn to_yymm(&self) -> String {
        format!("{:02}{:02}", self.year % 100, self.month)
    }

    /// Last day of the month; February follows the Gregorian leap-year rule.
    pub fn last_day(&self) -> u8 {
        match self.month {
            4 | 6 | 9 | 11 => 30,
            2 => {
                let year = u32::from(self.year);
                let leap = (year % 4 == 0 && year % 100 != 0) || year % 400 == 0;
                if leap {
                    29
                } else {
                    28
                }
            }
            _ => 31,
        }
    }

    /// Tag 5F24 (application expiration date): YYMMDD on the last day of the month.
    pub fn to_5f24(&self) -> Vec<u8> {
        crate::data::derive::bcd(&format!("{}{:02}", self.to_yymm(), self.last_day()))
    }

    /// Tag 5F25 (application effective date): YYMMDD on the first day of the month.
    pub fn to_5f25(&self) -> Vec<u8> {
        crate::data::derive::bcd(&format!("{}01", self.to_yymm()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scrub(s: &str) -> String {
        scrub_pans_text(s)
    }

    #[test]
    fn export_text_hides_a_pan_inside_a_longer_number_and_non_luhn_track_digits() {
        // 16-digit PAN followed by expiry, service code and discretionary data, no separator.
        assert_eq!(
            scrub_for_export("stripe 47617390010100102512201 refused"),
            format!("stripe {} refused", "*".repeat(23))
        );
        assert_eq!(scrub_for_export("pvv 1234567 bad"), "pvv ******* bad");
    }

    #[test]
    fn export_text_keeps_short_numbers_and_masks_a_pan_as_everywhere() {
        assert_eq!(
            scrub_for_export("PRN_CARD_JAM at 12:30, 3 of 500 cards, lot 2026-11"),
            "PRN_CARD_JAM at 12:30, 3 of 500 cards, lot 2026-11"
        );
        assert_eq!(
            scrub_for_export("card 4761 7390 0101 0010 jammed"),
            "card 4761 73** **** 0010 jammed"
        );
    }

    #[test]
    fn scrub_masks_a_luhn_valid_pan_anywhere_in_a_line() {
        assert_eq!(
            scrub("card pan=4761739001010010 done"),
            "card pan=476173******0010 done"
        );
        assert_eq!(scrub("id4761739001010010x"), "id476173******0010x");
    }

    #[test]
    fn scrub_masks_a_pan_written_in_groups_keeping_the_separators() {
        assert_eq!(
            scrub("PAN 4761 7390 0101 0010 jammed"),
            "PAN 4761 73** **** 0010 jammed"
        );
        assert_eq!(scrub("4761-7390-0101-0010"), "4761-73**-****-0010");
    }

    #[test]
    fn scrub_finds_a_grouped_pan_after_another_number() {
        // "2 4761 7390 0101" is Luhn-valid too: what either mask hides stays hidden.
        assert_eq!(
            scrub("attempt 2 4761 7390 0101 0010"),
            "attempt 2 47** **** **** 0010"
        );
    }

    #[test]
    fn scrub_hides_at_least_six_digits_of_a_short_pan() {
        // 13 digits, Luhn-valid: 3 + 6 hidden + 4.
        assert_eq!(scrub("pan 4222222222222 x"), "pan 422******2222 x");
    }

    #[test]
    fn scrub_leaves_other_numbers_alone() {
        for line in [
            "op 1234567890123456 at 2026-12-01 10:30:00",
            "12345678901234567890123 is too long for a PAN",
            "3 cards, 2 spoiled",
            "café 4761739001010011",
        ] {
            assert_eq!(scrub(line), line);
        }
    }

    #[test]
    fn mask_keeps_first_six_and_last_four() {
        assert_eq!(mask_digits("4761739001010010"), "476173******0010");
        assert_eq!(mask_digits("4761739001010010123"), "476173*********0123");
    }

    #[test]
    fn a_short_pan_shows_fewer_leading_digits_so_six_stay_hidden() {
        // PCI DSS: at most the BIN (6) and the last 4, and never enough to narrow the
        // PAN to a handful: below 16 digits the shown head shrinks.
        assert_eq!(mask_digits("476173900101001"), "47617******1001");
        assert_eq!(mask_digits("47617390010100"), "4761******0100");
        assert_eq!(mask_digits("4761739001010"), "476******1010");
        assert_eq!(mask_digits("476173900101"), "47******0101");
    }

    #[test]
    fn every_mask_hides_at_least_six_digits_and_shows_at_most_ten() {
        for n in 12..=19 {
            let digits: String = "4761739001010010123".chars().take(n).collect();
            let m = mask_digits(&digits);
            assert_eq!(m.chars().count(), n);
            assert!(m.chars().filter(|c| *c == '*').count() >= 6, "{m}");
            assert!(m.chars().filter(char::is_ascii_digit).count() <= 10, "{m}");
            assert!(m.ends_with(&digits[n - 4..]), "{m}");
        }
    }

    #[test]
    fn every_mask_looks_masked_and_an_older_looser_mask_does_not() {
        for n in 12..=19 {
            let digits: String = "4761739001010010123".chars().take(n).collect();
            assert!(looks_masked(&mask_digits(&digits)), "{n} digits");
        }
        assert!(!looks_masked("476173***1010"), "13 digits showing 10");
        assert!(!looks_masked("4761739*****0010"), "7 leading digits");
        assert!(!looks_masked("4761739001010010"));
    }

    #[test]
    fn a_short_pan_displays_the_short_mask() {
        let p = Pan::new("476173900101").unwrap();
        assert_eq!(p.to_string(), "47******0101");
        assert_eq!(p.masked(), "47******0101");
    }

    #[test]
    fn a_pan_failing_luhn_is_refused_by_parse_only() {
        assert_eq!(Pan::parse("4761739001010011"), Err(PanError::Luhn));
        assert!(Pan::new("4761739001010011").is_ok());
    }

    #[test]
    fn a_pan_of_eleven_digits_is_a_format_error_naming_the_length() {
        assert_eq!(Pan::parse("47617390010"), Err(PanError::Format(11)));
    }

    #[test]
    fn pan_display_and_debug_show_only_the_mask() {
        let p = Pan::parse("4761739001010010").unwrap();
        assert_eq!(p.to_string(), "476173******0010");
        assert_eq!(format!("{p:?}"), "Pan(476173******0010)");
    }

    #[test]
    fn luhn_check_digit_matches_a_known_test_pan() {
        assert_eq!(luhn_check_digit("476173900101001"), '0');
        assert!(luhn_valid("4761739001010010"));
        assert!(!luhn_valid("4761739001010011"));
    }

    #[test]
    fn year_month_reads_20yy_and_refuses_month_13() {
        assert_eq!(
            YearMonth::parse("2611"),
            Ok(YearMonth {
                year: 2026,
                month: 11
            })
        );
        assert_eq!(YearMonth::parse("2613"), Err(YearMonthError::Month));
        assert_eq!(YearMonth::parse("26-1"), Err(YearMonthError::Format));
    }
}
