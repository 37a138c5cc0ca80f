//! Data Grouping Identifiers (EMV CPS): the unit of STORE DATA.
//!
//! Wire form: DGI (2 bytes) ‖ length (1 byte when ≤ 254, else `FF` ‖ 2 bytes) ‖ data.

use serde::{Deserialize, Serialize};
use thiserror::Error;
use zeroize::Zeroize;

/// How a DGI is protected in STORE DATA.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DgiEncryption {
    /// Sent in clear.
    None,
    /// Padded with `80 00..` to the cipher block, then encrypted.
    Pad,
    /// Encrypted as is (already a whole number of blocks).
    Nopad,
}

/// One DGI with its data and how it must be protected. Data may be key material:
/// zeroized on drop, never shown by `Debug`, and deliberately not `Serialize`: a DGI
/// may hold clear ICC keys, which must never reach a file or the journal.
#[derive(Clone, PartialEq, Eq)]
pub struct Dgi {
    /// The identifier, e.g. `0x0101` (record SFI 1 rec 1) or `0x8000` (ICC keys).
    pub id: u16,
    /// The clear data.
    pub data: Vec<u8>,
    /// Protection in transit.
    pub encryption: DgiEncryption,
    /// ICC master keys kept in an HSM: `data` is empty and the HSM writes the
    /// encrypted content when the secure channel is open.
    pub sealed: Option<SealedIccKeys>,
}

/// What an HSM needs to derive one card's ICC master keys again (EMV Option A): the
/// issuer master keys' index and the derivation input Y ‖ (Y ⊕ FF…) from PAN and PSN.
/// The keys themselves never exist outside the HSM. Zeroized; `Debug` redacted.
#[derive(Clone, PartialEq, Eq)]
pub struct SealedIccKeys {
    /// `derivationKeyIndex` of the IMKs (AC, SMI, SMC).
    pub imk_index: u8,
    /// Y ‖ (Y ⊕ FF…), Y the rightmost 16 digits of PAN ‖ PSN in BCD.
    pub derivation_data: zeroize::Zeroizing<[u8; 16]>,
}

impl SealedIccKeys {
    /// MK-AC ‖ MK-SMI ‖ MK-SMC: three double-length keys.
    pub const LEN: usize = 48;
}

impl std::fmt::Debug for SealedIccKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SealedIccKeys(imk {:02X}, redacted)", self.imk_index)
    }
}

impl Drop for Dgi {
    fn drop(&mut self) {
        self.data.zeroize();
    }
}

impl std::fmt::Debug for Dgi {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "Dgi({:04X}, {} bytes, {:?}{})",
            self.id,
            self.len(),
            self.encryption,
            if self.sealed.is_some() {
                ", sealed in the HSM"
            } else {
                ""
            }
        )
    }
}

/// Why bytes are not a well-formed DGI sequence.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum DgiError {
    /// Fewer bytes than a DGI header needs.
    #[error("DGI header truncated at offset {0}")]
    TruncatedHeader(usize),
    /// The data is shorter than the declared length.
    #[error("DGI {dgi:04X} declares {need} bytes, {left} left")]
    TruncatedData {
        /// DGI whose data is cut.
        dgi: u16,
        /// Declared length.
        need: usize,
        /// Bytes remaining.
        left: usize,
    },
    /// More than 65535 bytes cannot be encoded.
    #[error("DGI {0:04X} data longer than 65535 bytes")]
    TooLong(u16),
    /// The DGI holds ICC keys sealed in an HSM: only the HSM can encode it.
    #[error("DGI {0:04X} holds ICC keys sealed in the HSM: only a secure channel can encode it")]
    Sealed(u16),
}

/// Length field for DGI data of `len` bytes.
pub fn encode_length(len: usize) -> Vec<u8> {
    if len <= 254 {
        vec![len as u8]
    } else {
        vec![0xFF, (len >> 8) as u8, len as u8]
    }
}

impl Dgi {
    /// Makes a DGI.
    pub fn new(id: u16, data: impl Into<Vec<u8>>, encryption: DgiEncryption) -> Self {
        Dgi {
            id,
            data: data.into(),
            encryption,
            sealed: None,
        }
    }

    /// A DGI of ICC master keys that stay in an HSM until it encrypts them for the card.
    pub fn sealed(id: u16, keys: SealedIccKeys, encryption: DgiEncryption) -> Self {
        Dgi {
            id,
            data: Vec::new(),
            encryption,
            sealed: Some(keys),
        }
    }

    /// Length of the clear data (for sealed keys, the keys' length).
    pub fn len(&self) -> usize {
        match self.sealed {
            Some(_) => SealedIccKeys::LEN,
            None => self.data.len(),
        }
    }

    /// Whether the DGI has no data.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Header (DGI ‖ length) for `data_len` bytes of data as sent.
    pub fn header(id: u16, data_len: usize) -> Result<Vec<u8>, DgiError> {
        if data_len > 0xFFFF {
            return Err(DgiError::TooLong(id));
        }
        let mut out = id.to_be_bytes().to_vec();
        out.extend(encode_length(data_len));
        Ok(out)
    }

    /// Encodes DGI ‖ length ‖ data with the clear data (not for sealed ICC keys).
    pub fn to_bytes(&self) -> Result<Vec<u8>, DgiError> {
        if self.sealed.is_some() {
            return Err(DgiError::Sealed(self.id));
        }
        let mut out = Self::header(self.id, self.data.len())?;
        out.extend_from_slice(&self.data);
        Ok(out)
    }
}

/// Parses a concatenation of DGIs (as a card receives them in STORE DATA), all marked
/// [`DgiEncryption::None`] since the wire does not say.
pub fn parse(mut data: &[u8]) -> Result<Vec<Dgi>, DgiError> {
    let total = data.len();
    let mut out = Vec::new();
    while !data.is_empty() {
        let offset = total - data.len();
        if data.len() < 3 {
            return Err(DgiError::TruncatedHeader(offset));
        }
        let id = u16::from_be_bytes([data[0], data[1]]);
        let (len, hdr) = if data[2] == 0xFF {
            if data.len() < 5 {
                return Err(DgiError::TruncatedHeader(offset));
            }
            (u16::from_be_bytes([data[3], data[4]]) as usize, 5)
        } else {
            (data[2] as usize, 3)
        };
        let left = data.len() - hdr;
        if len > left {
            return Err(DgiError::TruncatedData {
                dgi: id,
                need: len,
                left,
            });
        }
        out.push(Dgi::new(id, &data[hdr..hdr + len], DgiEncryption::None));
        data = &data[hdr + len..];
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Whether `T` implements `Serialize`, decided at compile time by method resolution.
    struct Probe<T>(std::marker::PhantomData<T>);
    trait Serializes {
        fn serializes(&self) -> bool {
            true
        }
    }
    impl<T: serde::Serialize> Serializes for Probe<T> {}
    trait DoesNotSerialize {
        fn serializes(&self) -> bool {
            false
        }
    }
    impl<T> DoesNotSerialize for &Probe<T> {}

    #[test]
    // The borrow is what lets the fallback trait answer; clippy sees only the u16 case.
    #[allow(clippy::needless_borrow)]
    fn a_dgi_cannot_be_serialized_because_it_may_hold_clear_icc_keys() {
        assert!(!(&Probe::<Dgi>(std::marker::PhantomData)).serializes());
        // The probe itself tells a serializable type apart.
        assert!((&Probe::<u16>(std::marker::PhantomData)).serializes());
    }

    #[test]
    fn up_to_254_bytes_use_a_one_byte_length() {
        let d = Dgi::new(0x0101, vec![0xAA; 254], DgiEncryption::None);
        let b = d.to_bytes().unwrap();
        assert_eq!(&b[..3], &[0x01, 0x01, 254]);
        assert_eq!(b.len(), 257);
    }

    #[test]
    fn from_255_bytes_the_length_is_ff_and_two_bytes() {
        let d = Dgi::new(0x8201, vec![0xAA; 255], DgiEncryption::Pad);
        let b = d.to_bytes().unwrap();
        assert_eq!(&b[..5], &[0x82, 0x01, 0xFF, 0x00, 0xFF]);
    }

    #[test]
    fn parse_reads_back_mixed_length_forms() {
        let mut wire = Dgi::new(0x9000, vec![1, 2, 3], DgiEncryption::None)
            .to_bytes()
            .unwrap();
        wire.extend(
            Dgi::new(0x0202, vec![7; 300], DgiEncryption::None)
                .to_bytes()
                .unwrap(),
        );
        let p = parse(&wire).unwrap();
        assert_eq!(p.len(), 2);
        assert_eq!((p[0].id, p[0].data.len()), (0x9000, 3));
        assert_eq!((p[1].id, p[1].data.len()), (0x0202, 300));
    }

    #[test]
    fn truncated_data_names_the_dgi() {
        assert_eq!(
            parse(&[0x80, 0x00, 0x10, 1, 2]),
            Err(DgiError::TruncatedData {
                dgi: 0x8000,
                need: 16,
                left: 2
            })
        );
    }

    #[test]
    fn debug_hides_the_data() {
        let d = Dgi::new(0x8000, vec![0x11; 48], DgiEncryption::Pad);
        assert_eq!(format!("{d:?}"), "Dgi(8000, 48 bytes, Pad)");
    }

    #[test]
    fn sealed_icc_keys_are_never_encoded_as_clear_data() {
        let keys = SealedIccKeys {
            imk_index: 1,
            derivation_data: zeroize::Zeroizing::new([0x12; 16]),
        };
        let d = Dgi::sealed(0x8000, keys, DgiEncryption::Pad);
        assert_eq!(d.len(), 48);
        assert_eq!(d.to_bytes(), Err(DgiError::Sealed(0x8000)));
        assert_eq!(
            format!("{d:?}"),
            "Dgi(8000, 48 bytes, Pad, sealed in the HSM)"
        );
    }
}
