//! BER-TLV as EMV uses it (EMV Book 3 Annex B): multi-byte tags, short and long
//! lengths, constructed templates.

use thiserror::Error;

/// Why a byte string is not well-formed BER-TLV.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum TlvError {
    /// The data ended inside a tag.
    #[error("TLV truncated in tag at offset {0}")]
    TruncatedTag(usize),
    /// The data ended inside a length field.
    #[error("TLV truncated in length at offset {0}")]
    TruncatedLength(usize),
    /// A length field is longer than 4 bytes or uses the indefinite form.
    #[error("TLV length form not supported at offset {0}")]
    BadLength(usize),
    /// The value is longer than the data that is left.
    #[error("TLV value of tag {tag:X} needs {need} bytes, {left} left")]
    TruncatedValue {
        /// The tag whose value is cut.
        tag: u32,
        /// Bytes declared.
        need: usize,
        /// Bytes available.
        left: usize,
    },
    /// A tag longer than 4 bytes.
    #[error("TLV tag longer than 4 bytes at offset {0}")]
    TagTooLong(usize),
}

/// One data object: tag and raw value (the value of a constructed tag is itself TLV).
#[derive(Clone, PartialEq, Eq)]
pub struct Tlv {
    /// Tag as its bytes read big-endian (`0x9F36`, `0x5A`, `0xBF0C`).
    pub tag: u32,
    /// Value bytes.
    pub value: Vec<u8>,
}

impl std::fmt::Debug for Tlv {
    // Values can be card data (5A, 57, 5F20): show the tag and length only.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Tlv({:X}, {} bytes)", self.tag, self.value.len())
    }
}

/// Whether a tag's first byte marks a constructed object (bit 6 of the first byte).
pub fn is_constructed(tag: u32) -> bool {
    tag_bytes(tag)[0] & 0x20 != 0
}

/// The bytes of a tag as they appear on the wire.
pub fn tag_bytes(tag: u32) -> Vec<u8> {
    let b = tag.to_be_bytes();
    let skip = b.iter().take_while(|&&x| x == 0).count().min(3);
    b[skip..].to_vec()
}

/// BER length field for a value of `len` bytes.
pub fn encode_length(len: usize) -> Vec<u8> {
    match len {
        0..=0x7F => vec![len as u8],
        0x80..=0xFF => vec![0x81, len as u8],
        0x100..=0xFFFF => vec![0x82, (len >> 8) as u8, len as u8],
        _ => vec![0x83, (len >> 16) as u8, (len >> 8) as u8, len as u8],
    }
}

/// Encodes one data object.
pub fn encode(tag: u32, value: &[u8]) -> Vec<u8> {
    let mut out = tag_bytes(tag);
    out.extend(encode_length(value.len()));
    out.extend_from_slice(value);
    out
}

impl Tlv {
    /// Makes a data object.
    pub fn new(tag: u32, value: impl Into<Vec<u8>>) -> Self {
        Tlv {
            tag,
            value: value.into(),
        }
    }

    /// Encodes this data object.
    pub fn to_bytes(&self) -> Vec<u8> {
        encode(self.tag, &self.value)
    }

    /// Parses the children of a constructed object.
    pub fn children(&self) -> Result<Vec<Tlv>, TlvError> {
        parse(&self.value)
    }
}

fn read_tag(data: &[u8], pos: &mut usize) -> Result<u32, TlvError> {
    let start = *pos;
    let first = *data.get(*pos).ok_or(TlvError::TruncatedTag(start))?;
    *pos += 1;
    let mut tag = first as u32;
    if first & 0x1F == 0x1F {
        loop {
            let b = *data.get(*pos).ok_or(TlvError::TruncatedTag(start))?;
            *pos += 1;
            if *pos - start > 4 {
                return Err(TlvError::TagTooLong(start));
            }
            tag = (tag << 8) | b as u32;
            if b & 0x80 == 0 {
                break;
            }
        }
    }
    Ok(tag)
}

fn read_length(data: &[u8], pos: &mut usize) -> Result<usize, TlvError> {
    let start = *pos;
    let first = *data.get(*pos).ok_or(TlvError::TruncatedLength(start))?;
    *pos += 1;
    if first < 0x80 {
        return Ok(first as usize);
    }
    let n = (first & 0x7F) as usize;
    if n == 0 || n > 4 {
        return Err(TlvError::BadLength(start));
    }
    let bytes = data
        .get(*pos..*pos + n)
        .ok_or(TlvError::TruncatedLength(start))?;
    *pos += n;
    Ok(bytes.iter().fold(0usize, |acc, &b| (acc << 8) | b as usize))
}

/// Parses a sequence of data objects at one level. `00` and `FF` padding between
/// objects (allowed by EMV Book 3) is skipped.
pub fn parse(data: &[u8]) -> Result<Vec<Tlv>, TlvError> {
    let mut out = Vec::new();
    let mut pos = 0;
    while pos < data.len() {
        if data[pos] == 0x00 || data[pos] == 0xFF {
            pos += 1;
            continue;
        }
        let tag = read_tag(data, &mut pos)?;
        let len = read_length(data, &mut pos)?;
        let left = data.len() - pos;
        if len > left {
            return Err(TlvError::TruncatedValue {
                tag,
                need: len,
                left,
            });
        }
        out.push(Tlv::new(tag, &data[pos..pos + len]));
        pos += len;
    }
    Ok(out)
}

/// Finds the first object with `tag`, searching constructed objects depth-first.
pub fn find(data: &[u8], tag: u32) -> Result<Option<Vec<u8>>, TlvError> {
    for t in parse(data)? {
        if t.tag == tag {
            return Ok(Some(t.value));
        }
        if is_constructed(t.tag) {
            if let Some(v) = find(&t.value, tag)? {
                return Ok(Some(v));
            }
        }
    }
    Ok(None)
}

/// Parses a DOL (PDOL, CDOL): a list of tag ‖ length pairs without values.
pub fn parse_dol(dol: &[u8]) -> Result<Vec<(u32, usize)>, TlvError> {
    let mut out = Vec::new();
    let mut pos = 0;
    while pos < dol.len() {
        let tag = read_tag(dol, &mut pos)?;
        let len = read_length(dol, &mut pos)?;
        out.push((tag, len));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn parses_nested_fci_and_finds_a_deep_tag() {
        // 6F { 84 A0000000031010, A5 { 50 "VISA" } }
        let fci = hex::decode("6F118407A0000000031010A506500456495341").unwrap();
        assert_eq!(find(&fci, 0x50).unwrap(), Some(b"VISA".to_vec()));
        assert_eq!(
            find(&fci, 0x84).unwrap(),
            Some(hex::decode("A0000000031010").unwrap())
        );
    }

    #[test]
    fn two_byte_tags_and_long_lengths_encode_per_ber() {
        assert_eq!(encode(0x9F36, &[0, 1]), vec![0x9F, 0x36, 2, 0, 1]);
        let v = vec![0xAB; 200];
        let e = encode(0x70, &v);
        assert_eq!(&e[..3], &[0x70, 0x81, 200]);
        let v = vec![0xAB; 300];
        assert_eq!(&encode(0x70, &v)[..4], &[0x70, 0x82, 0x01, 0x2C]);
    }

    #[test]
    fn truncated_value_is_an_error_naming_the_tag() {
        assert_eq!(
            parse(&[0x5A, 0x08, 0x47, 0x61]),
            Err(TlvError::TruncatedValue {
                tag: 0x5A,
                need: 8,
                left: 2
            })
        );
    }

    #[test]
    fn dol_lists_tags_and_lengths() {
        let cdol = hex::decode("9F02069F03069F1A0295055F2A029A039C019F3704").unwrap();
        let d = parse_dol(&cdol).unwrap();
        assert_eq!(d[0], (0x9F02, 6));
        assert_eq!(d.last().unwrap(), &(0x9F37, 4));
        assert_eq!(d.iter().map(|x| x.1).sum::<usize>(), 29);
    }

    #[test]
    fn debug_does_not_show_values() {
        let t = Tlv::new(0x5A, hex::decode("4761739001010010").unwrap());
        assert_eq!(format!("{t:?}"), "Tlv(5A, 8 bytes)");
    }

    fn arb_tag() -> impl Strategy<Value = u32> {
        prop_oneof![
            (0x41u32..0x5F).prop_filter("not multi", |t| t & 0x1F != 0x1F),
            (0x01u32..0x7F).prop_map(|b| 0x9F00 | b),
            (0x01u32..0x7F).prop_map(|b| 0x5F00 | b),
        ]
    }

    proptest! {
        #[test]
        fn encode_then_parse_round_trips(
            items in proptest::collection::vec((arb_tag(), proptest::collection::vec(any::<u8>(), 0..400)), 0..6)
        ) {
            let mut bytes = Vec::new();
            for (t, v) in &items { bytes.extend(encode(*t, v)); }
            let parsed = parse(&bytes).unwrap();
            prop_assert_eq!(parsed.len(), items.len());
            for (p, (t, v)) in parsed.iter().zip(&items) {
                prop_assert_eq!(p.tag, *t);
                prop_assert_eq!(&p.value, v);
            }
        }

        #[test]
        fn parse_never_panics(data in proptest::collection::vec(any::<u8>(), 0..300)) {
            let _ = parse(&data);
        }
    }
}
