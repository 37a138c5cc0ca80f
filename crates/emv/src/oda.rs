//! Offline data authentication, static flavour (SDA, EMV Book 2 §5): signing the
//! static application data at preparation and checking it on read-back as a
//! terminal would (CA key → issuer public key certificate 90 → signed static
//! application data 93).
//!
//! Dynamic data authentication (DDA, EMV Book 2 §6) adds an ICC key pair certified by
//! the issuer (9F46-9F48, private key in DGIs 8201-8205) and INTERNAL AUTHENTICATE.
//! CDA is not implemented.
//! RSA here is the raw operation EMV uses (message recovery, no PKCS#1 padding);
//! SHA-1 is the only hash algorithm EMV defines for these certificates (indicator 01).

use openssl::bn::{BigNum, BigNumContext};
use thiserror::Error;

use crate::card_data::Pan;
use crate::tlv;

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
    let b = crate::data::derive::bcd_f_padded(&s);
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
    // Below 37 bytes a format 02 certificate has no room for its fixed fields.
    if n_ca < 37 {
        return Err(invalid("the CA key is too short for an issuer certificate"));
    }
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
    if n_i < 27 {
        return Err(invalid(
            "the issuer key is too short for signed static data",
        ));
    }
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

/// The application PAN as certificates carry it: 10 bytes, `F`-padded.
fn certificate_pan(pan: &Pan) -> [u8; 10] {
    let s = format!("{:F<20}", pan.digits());
    let b = crate::data::derive::bcd_f_padded(&s);
    b.try_into().expect("20 digits")
}

/// Makes the ICC public key certificate (9F46) and remainder (9F48) with the issuer
/// private key (EMV Book 2 §6.4, format 04): the hash also covers the static data to
/// be authenticated, so the certificate binds the card's signed records.
#[allow(clippy::too_many_arguments)]
pub fn icc_certificate(
    issuer_modulus: &[u8],
    issuer_private_exponent: &[u8],
    icc: &RsaPublicKey,
    pan: &Pan,
    expiry_mmyy: [u8; 2],
    serial: [u8; 3],
    static_data: &[u8],
) -> Result<(Vec<u8>, Vec<u8>), OdaError> {
    let (block, remainder) = icc_certificate_block(
        issuer_modulus.len(),
        icc,
        pan,
        expiry_mmyy,
        serial,
        static_data,
    )?;
    Ok((
        rsa_raw(issuer_modulus, issuer_private_exponent, &block)?,
        remainder,
    ))
}

/// The ICC public key certificate's recovered form (`6A 04 … hash BC`, as long as the
/// issuer modulus of `n_i` bytes) and the ICC key remainder: what the issuer private
/// key signs raw (an HSM with `CKM_RSA_X_509`).
pub fn icc_certificate_block(
    n_i: usize,
    icc: &RsaPublicKey,
    pan: &Pan,
    expiry_mmyy: [u8; 2],
    serial: [u8; 3],
    static_data: &[u8],
) -> Result<(Vec<u8>, Vec<u8>), OdaError> {
    let room = n_i
        .checked_sub(42)
        .ok_or_else(|| invalid("issuer key too short to certify an ICC key"))?;
    let n_ic = icc.modulus.len();
    let (head, remainder) = if n_ic <= room {
        let mut h = icc.modulus.clone();
        h.resize(room, 0xBB);
        (h, Vec::new())
    } else {
        (icc.modulus[..room].to_vec(), icc.modulus[room..].to_vec())
    };
    let mut fields = vec![0x04];
    fields.extend_from_slice(&certificate_pan(pan));
    fields.extend_from_slice(&expiry_mmyy);
    fields.extend_from_slice(&serial);
    fields.extend_from_slice(&[
        SHA1,
        RSA,
        u8::try_from(n_ic).map_err(|_| invalid("ICC key longer than 255 bytes"))?,
        icc.exponent.len() as u8,
    ]);
    fields.extend_from_slice(&head);
    let mut hashed = fields.clone();
    hashed.extend_from_slice(&remainder);
    hashed.extend_from_slice(&icc.exponent);
    hashed.extend_from_slice(static_data);
    let mut block = vec![0x6A];
    block.extend_from_slice(&fields);
    block.extend_from_slice(&openssl::sha::sha1(&hashed));
    block.push(0xBC);
    Ok((block, remainder))
}

/// Recovers and checks the ICC public key from 9F46 (format 04, hash over the static
/// data too, PAN equal to the card's).
pub fn recover_icc_key(
    issuer: &RsaPublicKey,
    certificate: &[u8],
    remainder: &[u8],
    exponent: &[u8],
    pan: &Pan,
    static_data: &[u8],
) -> Result<RsaPublicKey, OdaError> {
    let n_i = issuer.modulus.len();
    if n_i < 43 {
        return Err(invalid(
            "the issuer key is too short for an ICC certificate",
        ));
    }
    if certificate.len() != n_i {
        return Err(invalid(format!(
            "ICC certificate (9F46) is {} bytes, the issuer key {n_i}",
            certificate.len()
        )));
    }
    let r = rsa_raw(&issuer.modulus, &issuer.exponent, certificate)?;
    if r[0] != 0x6A || r[1] != 0x04 || r[n_i - 1] != 0xBC {
        return Err(invalid(
            "ICC certificate (9F46) does not recover under the issuer key",
        ));
    }
    let fields = &r[1..n_i - 1 - HASH_LEN];
    let mut hashed = fields.to_vec();
    hashed.extend_from_slice(remainder);
    hashed.extend_from_slice(exponent);
    hashed.extend_from_slice(static_data);
    if openssl::sha::sha1(&hashed) != r[n_i - 1 - HASH_LEN..n_i - 1] {
        return Err(invalid(
            "ICC certificate (9F46) hash does not match the card's static data",
        ));
    }
    if r[2..12] != certificate_pan(pan) {
        return Err(invalid("ICC certificate (9F46) is for another PAN"));
    }
    if r[17] != SHA1 || r[18] != RSA {
        return Err(invalid("ICC certificate (9F46) names an unknown algorithm"));
    }
    let n_ic = r[19] as usize;
    if r[20] as usize != exponent.len() {
        return Err(invalid(
            "ICC exponent (9F47) length differs from the certificate",
        ));
    }
    let room = n_i - 42;
    let modulus = if n_ic <= room {
        r[21..21 + n_ic].to_vec()
    } else {
        if remainder.len() != n_ic - room {
            return Err(invalid("ICC key remainder (9F48) has the wrong length"));
        }
        let mut m = r[21..21 + room].to_vec();
        m.extend_from_slice(remainder);
        m
    };
    Ok(RsaPublicKey {
        modulus,
        exponent: exponent.to_vec(),
    })
}

/// The ICC private key as the card stores it (CRT form, DGIs 8201-8205).
pub struct IccPrivateCrt<'a> {
    /// Prime p.
    pub p: &'a [u8],
    /// Prime q.
    pub q: &'a [u8],
    /// d mod (p − 1).
    pub dp: &'a [u8],
    /// d mod (q − 1).
    pub dq: &'a [u8],
    /// q⁻¹ mod p.
    pub qinv: &'a [u8],
}

/// What the card does for INTERNAL AUTHENTICATE: signs the dynamic application data
/// block (format 05) over its dynamic number and the terminal's DDOL data with the CRT
/// key. `n_ic` is the ICC modulus length.
pub fn sign_dynamic_data(
    key: &IccPrivateCrt<'_>,
    n_ic: usize,
    icc_dynamic_number: &[u8],
    ddol_data: &[u8],
) -> Result<Vec<u8>, OdaError> {
    if icc_dynamic_number.len() > 8 {
        return Err(invalid("ICC dynamic number too long for the key"));
    }
    let mut dd = vec![icc_dynamic_number.len() as u8];
    dd.extend_from_slice(icc_dynamic_number);
    sign_icc_dynamic_data(key, n_ic, &dd, ddol_data)
}

/// ICC dynamic data of a CDA signature (EMV Book 2 §6.6.1): dynamic number length ‖
/// dynamic number ‖ CID ‖ application cryptogram ‖ transaction data hash code.
pub fn cda_dynamic_data(
    icc_dynamic_number: &[u8],
    cid: u8,
    ac: &[u8; 8],
    transaction_data_hash: &[u8; 20],
) -> Vec<u8> {
    let mut dd = vec![icc_dynamic_number.len() as u8];
    dd.extend_from_slice(icc_dynamic_number);
    dd.push(cid);
    dd.extend_from_slice(ac);
    dd.extend_from_slice(transaction_data_hash);
    dd
}

/// The transaction data hash code CDA signs (EMV Book 2 §6.6.1): SHA-1 of the PDOL
/// data, the CDOL1 data and the GENERATE AC response's data objects other than 9F4B,
/// in the order they came.
pub fn cda_transaction_data_hash(
    pdol_data: &[u8],
    cdol_data: &[u8],
    response_tlvs: &[u8],
) -> [u8; 20] {
    let mut d = pdol_data.to_vec();
    d.extend_from_slice(cdol_data);
    d.extend_from_slice(response_tlvs);
    openssl::sha::sha1(&d)
}

/// Signs ICC dynamic data (DDA: the dynamic number; CDA: [`cda_dynamic_data`]) in the
/// signed dynamic application data format 05, the hash also covering the terminal's
/// dynamic data (DDA: the DDOL data; CDA: the unpredictable number).
pub fn sign_icc_dynamic_data(
    key: &IccPrivateCrt<'_>,
    n_ic: usize,
    icc_dynamic_data: &[u8],
    terminal_data: &[u8],
) -> Result<Vec<u8>, OdaError> {
    let rsa = |e: openssl::error::ErrorStack| OdaError::Rsa(e.to_string());
    let l_dd = icc_dynamic_data.len();
    if l_dd > 255 || n_ic < l_dd + 25 {
        return Err(invalid("ICC dynamic data too long for the key"));
    }
    let mut body = vec![0x05, SHA1, l_dd as u8];
    body.extend_from_slice(icc_dynamic_data);
    body.resize(body.len() + (n_ic - l_dd - 25), 0xBB);
    let mut hashed = body.clone();
    hashed.extend_from_slice(terminal_data);
    let mut block = vec![0x6A];
    block.extend_from_slice(&body);
    block.extend_from_slice(&openssl::sha::sha1(&hashed));
    block.push(0xBC);
    // m1 = c^dp mod p, m2 = c^dq mod q, h = qinv (m1 − m2) mod p, s = m2 + h q.
    let bn = |b: &[u8]| BigNum::from_slice(b).map_err(rsa);
    let (p, q, c) = (bn(key.p)?, bn(key.q)?, bn(&block)?);
    let (mut dp, mut dq) = (bn(key.dp)?, bn(key.dq)?);
    dp.set_const_time();
    dq.set_const_time();
    let mut ctx = BigNumContext::new().map_err(rsa)?;
    let mut m1 = BigNum::new().map_err(rsa)?;
    m1.mod_exp(&c, &dp, &p, &mut ctx).map_err(rsa)?;
    let mut m2 = BigNum::new().map_err(rsa)?;
    m2.mod_exp(&c, &dq, &q, &mut ctx).map_err(rsa)?;
    let mut diff = BigNum::new().map_err(rsa)?;
    diff.mod_sub(&m1, &m2, &p, &mut ctx).map_err(rsa)?;
    let qinv = bn(key.qinv)?;
    let mut h = BigNum::new().map_err(rsa)?;
    h.mod_mul(&qinv, &diff, &p, &mut ctx).map_err(rsa)?;
    let mut hq = BigNum::new().map_err(rsa)?;
    hq.checked_mul(&h, &q, &mut ctx).map_err(rsa)?;
    let mut s = BigNum::new().map_err(rsa)?;
    s.checked_add(&m2, &hq).map_err(rsa)?;
    s.to_vec_padded(n_ic as i32).map_err(rsa)
}

/// Checks signed dynamic application data (9F4B) against the DDOL data the terminal
/// sent; returns the ICC dynamic number.
pub fn verify_sdad(icc: &RsaPublicKey, sdad: &[u8], ddol_data: &[u8]) -> Result<Vec<u8>, OdaError> {
    let dd = recover_icc_dynamic_data(icc, sdad, ddol_data)?;
    let n = dd[0] as usize;
    if n + 1 > dd.len() {
        return Err(invalid(
            "signed dynamic data has a bad dynamic number length",
        ));
    }
    Ok(dd[1..1 + n].to_vec())
}

/// What a CDA signature carries, once recovered and checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CdaSigned {
    /// ICC dynamic number.
    pub icc_dynamic_number: Vec<u8>,
    /// Cryptogram information data as signed.
    pub cid: u8,
    /// The application cryptogram.
    pub ac: [u8; 8],
    /// Transaction data hash code as signed.
    pub transaction_data_hash: [u8; 20],
}

/// Recovers a CDA signature (EMV Book 2 §6.6.2) with the ICC key, checks its hash over
/// the unpredictable number the terminal sent, and splits the ICC dynamic data.
pub fn recover_cda(
    icc: &RsaPublicKey,
    sdad: &[u8],
    unpredictable_number: &[u8],
) -> Result<CdaSigned, OdaError> {
    let dd = recover_icc_dynamic_data(icc, sdad, unpredictable_number)?;
    let n = dd[0] as usize;
    if !(2..=8).contains(&n) || dd.len() != 1 + n + 1 + 8 + HASH_LEN {
        return Err(invalid("CDA dynamic data has a bad layout"));
    }
    let rest = &dd[1 + n..];
    Ok(CdaSigned {
        icc_dynamic_number: dd[1..1 + n].to_vec(),
        cid: rest[0],
        ac: rest[1..9].try_into().expect("8"),
        transaction_data_hash: rest[9..29].try_into().expect("20"),
    })
}

/// Recovers signed dynamic application data, checks header, format, trailer and the
/// hash over the terminal's dynamic data, and returns the ICC dynamic data.
fn recover_icc_dynamic_data(
    icc: &RsaPublicKey,
    sdad: &[u8],
    terminal_data: &[u8],
) -> Result<Vec<u8>, OdaError> {
    let n_ic = icc.modulus.len();
    if n_ic < 27 {
        return Err(invalid("the ICC key is too short for signed dynamic data"));
    }
    if sdad.len() != n_ic {
        return Err(invalid(format!(
            "signed dynamic data is {} bytes, the ICC key {n_ic}",
            sdad.len()
        )));
    }
    let r = rsa_raw(&icc.modulus, &icc.exponent, sdad)?;
    if r[0] != 0x6A || r[1] != 0x05 || r[2] != SHA1 || r[n_ic - 1] != 0xBC {
        return Err(invalid(
            "signed dynamic data does not recover under the ICC key",
        ));
    }
    let l_dd = r[3] as usize;
    if l_dd == 0 || 4 + l_dd > n_ic - 1 - HASH_LEN {
        return Err(invalid("signed dynamic data has a bad dynamic data length"));
    }
    let mut hashed = r[1..n_ic - 1 - HASH_LEN].to_vec();
    hashed.extend_from_slice(terminal_data);
    if openssl::sha::sha1(&hashed) != r[n_ic - 1 - HASH_LEN..n_ic - 1] {
        return Err(invalid(
            "signed dynamic data does not match the terminal data",
        ));
    }
    Ok(r[4..4 + l_dd].to_vec())
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
    fn dda_certificate_and_crt_signature_verify() {
        let (issuer, issuer_d) = key(1152);
        let icc = Rsa::generate(768).unwrap();
        let icc_pub = RsaPublicKey {
            modulus: icc.n().to_vec(),
            exponent: icc.e().to_vec(),
        };
        let pan = Pan::new("4761739001010010").unwrap();
        let static_data = b"signed records".to_vec();
        let (cert, rem) = icc_certificate(
            &issuer.modulus,
            &issuer_d,
            &icc_pub,
            &pan,
            [0x12, 0x30],
            [0, 0, 2],
            &static_data,
        )
        .unwrap();
        assert!(
            rem.is_empty(),
            "a 96-byte ICC key fits a 144-byte issuer certificate"
        );
        let recovered =
            recover_icc_key(&issuer, &cert, &rem, &icc_pub.exponent, &pan, &static_data).unwrap();
        assert_eq!(recovered, icc_pub);
        assert!(recover_icc_key(&issuer, &cert, &rem, &icc_pub.exponent, &pan, b"other").is_err());

        let crt = IccPrivateCrt {
            p: &icc.p().unwrap().to_vec(),
            q: &icc.q().unwrap().to_vec(),
            dp: &icc.dmp1().unwrap().to_vec(),
            dq: &icc.dmq1().unwrap().to_vec(),
            qinv: &icc.iqmp().unwrap().to_vec(),
        };
        let ddol = [0x12, 0x34, 0x56, 0x78];
        let sdad = sign_dynamic_data(&crt, 96, &[0xA1, 0xB2], &ddol).unwrap();
        assert_eq!(
            verify_sdad(&recovered, &sdad, &ddol).unwrap(),
            vec![0xA1, 0xB2]
        );
        assert!(verify_sdad(&recovered, &sdad, &[0, 0, 0, 0]).is_err());
    }

    #[test]
    fn tiny_or_empty_keys_are_errors_not_panics() {
        let pan = Pan::new("4761739001010010").unwrap();
        let tiny = RsaPublicKey {
            modulus: vec![0xC5],
            exponent: vec![3],
        };
        let empty = RsaPublicKey {
            modulus: Vec::new(),
            exponent: vec![3],
        };
        for k in [&tiny, &empty] {
            let ca = CaPublicKey {
                rid: [0xA0, 0, 0, 0, 3],
                index: 1,
                key: k.clone(),
            };
            assert!(recover_issuer_key(&ca, &k.modulus, &[], &[3], &pan).is_err());
            assert!(recover_icc_key(k, &k.modulus, &[], &[3], &pan, b"").is_err());
            assert!(verify_ssad(k, &k.modulus, b"").is_err());
            assert!(verify_sdad(k, &k.modulus, b"").is_err());
        }
    }

    #[test]
    fn issuer_identifier_is_f_padded() {
        let pan = Pan::new("4761739001010010").unwrap();
        assert_eq!(issuer_identifier(&pan, 6), [0x47, 0x61, 0x73, 0xFF]);
    }

    fn cda_vector() -> (serde_json::Value, impl Fn(&str) -> Vec<u8>) {
        let v: serde_json::Value =
            serde_json::from_str(include_str!("../../../tests/fixtures/cda/cda-vector.json"))
                .unwrap();
        let w = v.clone();
        (v, move |k: &str| {
            hex::decode(w[k].as_str().unwrap()).unwrap()
        })
    }

    #[test]
    fn the_cda_transaction_data_hash_matches_the_independent_vector() {
        let (_, h) = cda_vector();
        let hash =
            cda_transaction_data_hash(&h("pdol_data"), &h("cdol1_data"), &h("response_objects"));
        assert_eq!(hash.to_vec(), h("transaction_data_hash"));
    }

    #[test]
    fn a_cda_signature_made_with_the_crt_key_matches_the_independent_vector() {
        let (_, h) = cda_vector();
        let (p, q, dp, dq, qinv) = (h("p"), h("q"), h("dp"), h("dq"), h("qinv"));
        let key = IccPrivateCrt {
            p: &p,
            q: &q,
            dp: &dp,
            dq: &dq,
            qinv: &qinv,
        };
        let dd = cda_dynamic_data(
            &h("icc_dynamic_number"),
            h("cid")[0],
            &h("ac").try_into().unwrap(),
            &h("transaction_data_hash").try_into().unwrap(),
        );
        let sdad = sign_icc_dynamic_data(&key, 128, &dd, &h("unpredictable_number")).unwrap();
        assert_eq!(hex::encode_upper(sdad), hex::encode_upper(h("sdad")));
    }

    #[test]
    fn the_independent_cda_signature_recovers_into_its_parts() {
        let (_, h) = cda_vector();
        let icc = RsaPublicKey {
            modulus: h("modulus"),
            exponent: h("exponent"),
        };
        let signed = recover_cda(&icc, &h("sdad"), &h("unpredictable_number")).unwrap();
        assert_eq!(signed.icc_dynamic_number, h("icc_dynamic_number"));
        assert_eq!(signed.cid, h("cid")[0]);
        assert_eq!(signed.ac.to_vec(), h("ac"));
        assert_eq!(
            signed.transaction_data_hash.to_vec(),
            h("transaction_data_hash")
        );
        let mut other_un = h("unpredictable_number");
        other_un[0] ^= 1;
        assert!(recover_cda(&icc, &h("sdad"), &other_un).is_err());
    }
}
