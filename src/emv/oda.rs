//! Offline data authentication, static flavour (SDA, EMV Book 2 §5): signing the
//! static application data at preparation and checking it on read-back as a
//! terminal would (CA key → issuer public key certificate 90 → signed static
//! application data 93).
//!
//! DDA and CDA (ICC key pair, 9F46-9F48, DGIs 8201-8205) are not implemented.
//! RSA here is the raw operation EMV uses (message recovery, no PKCS#1 padding);
//! SHA-1 is the only hash algorithm EMV defines for these certificates (indicator 01).

use openssl::bn::{BigNum, BigNumContext};
use thiserror::Error;

use super::derive::Pan;
use super::tlv;

/// SHA-1 output length.
const HASH_LEN: usize = 20;
/// Hash algorithm indicator for SHA-1.
const SHA1: u8 = 0x01;
/// RSA public key algorithm indicator.
const RSA: u8 = 0x01;

/// Why an ODA structure cannot be built or does not check out.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum OdaError {
    /// A recovered certificate or signature is not what EMV requires (reason in words).
    #[error("{0}")]
    Invalid(String),
    /// The RSA operation itself failed (bad key or input size).
    #[error("RSA operation failed: {0}")]
    Rsa(String),
}

fn invalid(r: impl Into<String>) -> OdaError {
    OdaError::Invalid(r.into())
}

/// An RSA public key (modulus and exponent, big-endian).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RsaPublicKey {
    /// Modulus.
    pub modulus: Vec<u8>,
    /// Public exponent (03 or 010001).
    pub exponent: Vec<u8>,
}

/// A payment system's certification authority public key, as terminals hold it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CaPublicKey {
    /// Registered application provider identifier (first 5 bytes of the AID).
    pub rid: [u8; 5],
    /// CA public key index (tag 8F on the card).
    pub index: u8,
    /// The key.
    pub key: RsaPublicKey,
}

/// `block` raised to `exponent` modulo `modulus`, left-padded to the modulus length.
/// With a private exponent this is the signing operation, with a public one recovery.
pub fn rsa_raw(modulus: &[u8], exponent: &[u8], block: &[u8]) -> Result<Vec<u8>, OdaError> {
    let rsa = |e: openssl::error::ErrorStack| OdaError::Rsa(e.to_string());
    if block.len() != modulus.len() {
        return Err(OdaError::Rsa(format!(
            "input of {} bytes for a {}-byte modulus",
            block.len(),
            modulus.len()
        )));
    }
    let n = BigNum::from_slice(modulus).map_err(rsa)?;
    let mut e = BigNum::from_slice(exponent).map_err(rsa)?;
    // The exponent may be private: ask OpenSSL for its constant-time exponentiation.
    e.set_const_time();
    let m = BigNum::from_slice(block).map_err(rsa)?;
    if m >= n {
        return Err(OdaError::Rsa(
            "input is not smaller than the modulus".into(),
        ));
    }
    let mut ctx = BigNumContext::new().map_err(rsa)?;
    let mut out = BigNum::new().map_err(rsa)?;
    out.mod_exp(&m, &e, &n, &mut ctx).map_err(rsa)?;
    out.to_vec_padded(modulus.len() as i32).map_err(rsa)
}

/// The static data to be authenticated (EMV Book 2 §5.4): the ODA records in AFL
/// order — for SFI 1-10 the content of the `70` template, for SFI 11-30 the whole
/// record — followed by the values of the tags in the SDA tag list (9F4A).
pub fn static_data_to_authenticate(
    records: &[(u8, &[u8])],
    tag_list_values: &[u8],
) -> Result<Vec<u8>, OdaError> {
    let mut out = Vec::new();
    for (sfi, rec) in records {
        if *sfi <= 10 {
            let top = tlv::parse(rec).map_err(|e| invalid(format!("ODA record SFI {sfi}: {e}")))?;
            match top.as_slice() {
                [t] if t.tag == 0x70 => out.extend_from_slice(&t.value),
                _ => {
                    return Err(invalid(format!(
                        "ODA record in SFI {sfi} is not a 70 template"
                    )))
                }
            }
        } else {
            out.extend_from_slice(rec);
        }
    }
    out.extend_from_slice(tag_list_values);
    Ok(out)
}

/// The signed static application data block before signing (N_I bytes):
/// `6A ‖ 03 ‖ 01 ‖ DAC ‖ BB…BB ‖ SHA-1(03 … BB ‖ static data) ‖ BC`.
pub fn ssad_block(n_i: usize, dac: [u8; 2], static_data: &[u8]) -> Result<Vec<u8>, OdaError> {
    if n_i < 26 + 1 {
        return Err(invalid(format!(
            "issuer key of {n_i} bytes is too short for SDA"
        )));
    }
    let mut body = vec![0x03, SHA1, dac[0], dac[1]];
    body.resize(4 + (n_i - 26), 0xBB);
    let mut hashed = body.clone();
    hashed.extend_from_slice(static_data);
    let mut block = vec![0x6A];
    block.extend_from_slice(&body);
    block.extend_from_slice(&openssl::sha::sha1(&hashed));
    block.push(0xBC);
    debug_assert_eq!(block.len(), n_i);
    Ok(block)
}

/// The issuer identifier of a certificate: the leftmost 3 to 8 PAN digits, `F`-padded.
pub fn issuer_identifier(pan: &Pan, digits: usize) -> [u8; 4] {
    let d = digits.clamp(3, 8);
    let s = format!("{:F<8}", &pan.digits()[..d]);
    let b = super::derive::bcd_f_padded(&s);
    [b[0], b[1], b[2], b[3]]
}

/// Makes an issuer public key certificate (90) and remainder (92) with a CA private
/// key — what a scheme CA does. Here for lab CAs and tests only.
pub fn issuer_certificate(
    ca_modulus: &[u8],
    ca_private_exponent: &[u8],
    issuer: &RsaPublicKey,
    issuer_id: [u8; 4],
    expiry_mmyy: [u8; 2],
    serial: [u8; 3],
) -> Result<(Vec<u8>, Vec<u8>), OdaError> {
    let n_ca = ca_modulus.len();
    let room = n_ca
        .checked_sub(36)
        .ok_or_else(|| invalid("CA key too short"))?;
    let n_i = issuer.modulus.len();
    let (head, remainder) = if n_i <= room {
        let mut h = issuer.modulus.clone();
        h.resize(room, 0xBB);
        (h, Vec::new())
    } else {
        (
            issuer.modulus[..room].to_vec(),
            issuer.modulus[room..].to_vec(),
        )
    };
    let mut fields = vec![0x02];
    fields.extend_from_slice(&issuer_id);
    fields.extend_from_slice(&expiry_mmyy);
    fields.extend_from_slice(&serial);
    fields.extend_from_slice(&[
        SHA1,
        RSA,
        u8::try_from(n_i).map_err(|_| invalid("issuer key longer than 255 bytes"))?,
        issuer.exponent.len() as u8,
    ]);
    fields.extend_from_slice(&head);
    let mut hashed = fields.clone();
    hashed.extend_from_slice(&remainder);
    hashed.extend_from_slice(&issuer.exponent);
    let mut block = vec![0x6A];
    block.extend_from_slice(&fields);
    block.extend_from_slice(&openssl::sha::sha1(&hashed));
    block.push(0xBC);
    Ok((rsa_raw(ca_modulus, ca_private_exponent, &block)?, remainder))
}

/// Recovers and checks the issuer public key from its certificate (EMV Book 2 §5.3):
/// header, format 02, hash, algorithm indicators, and an issuer identifier that
/// matches the PAN.
pub fn recover_issuer_key(
    ca: &CaPublicKey,
    certificate: &[u8],
    remainder: &[u8],
    exponent: &[u8],
    pan: &Pan,
) -> Result<RsaPublicKey, OdaError> {
    let n_ca = ca.key.modulus.len();
    if certificate.len() != n_ca {
        return Err(invalid(format!(
            "issuer certificate (90) is {} bytes, the CA key {} bytes",
            certificate.len(),
            n_ca
        )));
    }
    let r = rsa_raw(&ca.key.modulus, &ca.key.exponent, certificate)?;
    if r[0] != 0x6A || r[n_ca - 1] != 0xBC || r[1] != 0x02 {
        return Err(invalid(
            "issuer certificate (90) does not recover under the CA key",
        ));
    }
    let fields = &r[1..n_ca - 1 - HASH_LEN];
    let hash = &r[n_ca - 1 - HASH_LEN..n_ca - 1];
    let mut hashed = fields.to_vec();
    hashed.extend_from_slice(remainder);
    hashed.extend_from_slice(exponent);
    if openssl::sha::sha1(&hashed) != hash {
        return Err(invalid("issuer certificate (90) hash does not match"));
    }
    if r[11] != SHA1 || r[12] != RSA {
        return Err(invalid(
            "issuer certificate (90) names an unknown algorithm",
        ));
    }
    let id = hex::encode_upper(&r[2..6]);
    let id = id.trim_end_matches('F');
    if id.len() < 3 || !pan.digits().starts_with(id) {
        return Err(invalid(
            "issuer certificate (90) is for another issuer identifier",
        ));
    }
    let n_i = r[13] as usize;
    if r[14] as usize != exponent.len() {
        return Err(invalid(
            "issuer exponent (9F32) length differs from the certificate",
        ));
    }
    let room = n_ca - 36;
    let modulus = if n_i <= room {
        r[15..15 + n_i].to_vec()
    } else {
        if remainder.len() != n_i - room {
            return Err(invalid("issuer key remainder (92) has the wrong length"));
        }
        let mut m = r[15..15 + room].to_vec();
        m.extend_from_slice(remainder);
        m
    };
    Ok(RsaPublicKey {
        modulus,
        exponent: exponent.to_vec(),
    })
}

/// Checks signed static application data (93) against the static data; returns the
/// data authentication code it carries.
pub fn verify_ssad(
    issuer: &RsaPublicKey,
    ssad: &[u8],
    static_data: &[u8],
) -> Result<[u8; 2], OdaError> {
    let n_i = issuer.modulus.len();
    if ssad.len() != n_i {
        return Err(invalid(format!(
            "signed static data (93) is {} bytes, the issuer key {n_i}",
            ssad.len()
        )));
    }
    let r = rsa_raw(&issuer.modulus, &issuer.exponent, ssad)?;
    if r[0] != 0x6A || r[1] != 0x03 || r[n_i - 1] != 0xBC || r[2] != SHA1 {
        return Err(invalid(
            "signed static data (93) does not recover under the issuer key",
        ));
    }
    let mut hashed = r[1..n_i - 1 - HASH_LEN].to_vec();
    hashed.extend_from_slice(static_data);
    if openssl::sha::sha1(&hashed) != r[n_i - 1 - HASH_LEN..n_i - 1] {
        return Err(invalid(
            "signed static data (93) does not match the card's static data",
        ));
    }
    Ok([r[3], r[4]])
}

#[cfg(test)]
mod tests {
    use super::*;
    use openssl::rsa::Rsa;

    fn key(bits: u32) -> (RsaPublicKey, Vec<u8>) {
        let k = Rsa::generate(bits).unwrap();
        (
            RsaPublicKey {
                modulus: k.n().to_vec(),
                exponent: k.e().to_vec(),
            },
            k.d().to_vec(),
        )
    }

    #[test]
    fn sda_signs_and_verifies_through_a_certificate_with_a_remainder() {
        // CA 1408 bits (176 bytes) leaves 140 bytes in the certificate; the 1152-bit
        // (144-byte) issuer key needs a 4-byte remainder.
        let (ca, ca_d) = key(1408);
        let (issuer, issuer_d) = key(1152);
        let pan = Pan::new("4761739001010010").unwrap();
        let (cert, rem) = issuer_certificate(
            &ca.modulus,
            &ca_d,
            &issuer,
            issuer_identifier(&pan, 6),
            [0x12, 0x30],
            [0, 0, 1],
        )
        .unwrap();
        assert_eq!(rem.len(), 4);
        let ca_key = CaPublicKey {
            rid: [0xA0, 0, 0, 0, 3],
            index: 0x92,
            key: ca,
        };
        let recovered = recover_issuer_key(&ca_key, &cert, &rem, &issuer.exponent, &pan).unwrap();
        assert_eq!(recovered, issuer);

        let static_data = b"records and AIP".to_vec();
        let block = ssad_block(issuer.modulus.len(), [0xDA, 0xC1], &static_data).unwrap();
        let ssad = rsa_raw(&issuer.modulus, &issuer_d, &block).unwrap();
        assert_eq!(
            verify_ssad(&recovered, &ssad, &static_data).unwrap(),
            [0xDA, 0xC1]
        );
        assert!(verify_ssad(&recovered, &ssad, b"records and AIP!").is_err());
    }

    #[test]
    fn a_certificate_for_another_bin_is_refused() {
        let (ca, ca_d) = key(1024);
        let (issuer, _) = key(768);
        let pan = Pan::new("4761739001010010").unwrap();
        let other = Pan::new("5413330089010012").unwrap();
        let (cert, rem) = issuer_certificate(
            &ca.modulus,
            &ca_d,
            &issuer,
            issuer_identifier(&other, 6),
            [0x12, 0x30],
            [0, 0, 1],
        )
        .unwrap();
        let ca_key = CaPublicKey {
            rid: [0xA0, 0, 0, 0, 3],
            index: 1,
            key: ca,
        };
        let e = recover_issuer_key(&ca_key, &cert, &rem, &issuer.exponent, &pan).unwrap_err();
        assert!(e.to_string().contains("another issuer identifier"), "{e}");
    }

    #[test]
    fn static_data_takes_template_content_for_low_sfis_and_whole_records_above_10() {
        let rec1 = tlv::encode(0x70, &tlv::encode(0x5A, &[0x47, 0x61]));
        let rec11 = tlv::encode(0x70, &tlv::encode(0x9F08, &[0, 2]));
        let d = static_data_to_authenticate(&[(1, &rec1), (11, &rec11)], &[0x18, 0x00]).unwrap();
        assert_eq!(hex::encode_upper(d), "5A02476170059F080200021800");
    }

    #[test]
    fn issuer_identifier_is_f_padded() {
        let pan = Pan::new("4761739001010010").unwrap();
        assert_eq!(issuer_identifier(&pan, 6), [0x47, 0x61, 0x73, 0xFF]);
    }
}
