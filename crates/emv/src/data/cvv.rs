//! Visa card verification values: CVV / CVC1 on the stripe, iCVV in the chip's
//! track 2 equivalent (the same algorithm with service code `999`). PVVs come with the order:
//! no operation here takes a clear PIN.
//!
//! These functions take raw keys and are called inside a [`crate::keys::KeyStore`]
//! implementation only, so that an HSM-backed store can replace them.

use zeroize::Zeroizing;

use crate::card_data::{Pan, YearMonth};
use crate::crypto::{des_ecb_encrypt, tdes_ecb_encrypt, CryptoError};
use crate::data::derive::{bcd, ServiceCode};

/// Service code the iCVV is computed with instead of the card's own.
pub const ICVV_SERVICE_CODE: &str = "999";

/// Visa's decimalization: the decimal nibbles of `block` in order, then the
/// hexadecimal ones minus 10, truncated to `n` digits.
pub(crate) fn decimalize(block: &[u8], n: usize) -> Zeroizing<String> {
    let nibbles: Vec<u8> = block.iter().flat_map(|b| [b >> 4, b & 0x0F]).collect();
    let mut out = Zeroizing::new(String::with_capacity(n));
    for d in nibbles.iter().filter(|d| **d < 10) {
        out.push((b'0' + d) as char);
    }
    for d in nibbles.iter().filter(|d| **d >= 10) {
        out.push((b'0' + d - 10) as char);
    }
    out.truncate(n);
    out
}

/// The CVV input: PAN ‖ YYMM ‖ service code, zero-filled to 32 digits, as 16 BCD bytes.
pub fn cvv_data(pan: &Pan, exp: YearMonth, service_code: &ServiceCode) -> Zeroizing<Vec<u8>> {
    let mut digits = Zeroizing::new(format!(
        "{}{}{}",
        pan.digits(),
        exp.to_yymm(),
        service_code.digits()
    ));
    // PAN up to 19 + 4 + 3 = 26 digits always fits in the 32-digit field.
    while digits.len() < 32 {
        digits.push('0');
    }
    Zeroizing::new(bcd(&digits))
}

/// Visa CVV with CVK A and CVK B (8 bytes each) over PAN ‖ YYMM ‖ service code,
/// zero-filled to 32 digits: DES(A, block 1) ⊕ block 2, then 3DES(A‖B), decimalized
/// to 3 digits.
pub fn visa_cvv(
    cvk_a: &[u8],
    cvk_b: &[u8],
    pan: &Pan,
    exp: YearMonth,
    service_code: &ServiceCode,
) -> Result<Zeroizing<String>, CryptoError> {
    let data = cvv_data(pan, exp, service_code);
    let mut step = Zeroizing::new(des_ecb_encrypt(cvk_a, &data[..8])?);
    for (x, b) in step.iter_mut().zip(&data[8..16]) {
        *x ^= b;
    }
    let mut ab = Zeroizing::new(Vec::with_capacity(16));
    ab.extend_from_slice(cvk_a);
    ab.extend_from_slice(cvk_b);
    let out = Zeroizing::new(tdes_ecb_encrypt(&ab, &step)?);
    Ok(decimalize(&out, 3))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cvv_matches_the_published_visa_example() {
        // vectors/emv-gp-vectors.json cvv
        let cvv = visa_cvv(
            &hex::decode("0123456789ABCDEF").unwrap(),
            &hex::decode("FEDCBA9876543210").unwrap(),
            &Pan::new("4123456789012345").unwrap(),
            crate::data::derive::parse_date("8701", "exp").unwrap(),
            &ServiceCode::new("101").unwrap(),
        )
        .unwrap();
        assert_eq!(cvv.as_str(), "561");
    }

    #[test]
    fn icvv_differs_from_cvv_because_the_service_code_does() {
        let a = hex::decode("0123456789ABCDEF").unwrap();
        let b = hex::decode("FEDCBA9876543210").unwrap();
        let pan = Pan::new("4123456789012345").unwrap();
        let exp = crate::data::derive::parse_date("8701", "exp").unwrap();
        let cvv = visa_cvv(&a, &b, &pan, exp, &ServiceCode::new("101").unwrap()).unwrap();
        let icvv = visa_cvv(
            &a,
            &b,
            &pan,
            exp,
            &ServiceCode::new(ICVV_SERVICE_CODE).unwrap(),
        )
        .unwrap();
        assert_eq!(icvv.len(), 3);
        assert_ne!(cvv, icvv);
    }

    #[test]
    fn decimalization_takes_digits_first_then_letters() {
        assert_eq!(decimalize(&[0xAB, 0x1C, 0xD2, 0x00], 4).as_str(), "1200");
        assert_eq!(decimalize(&[0xAB, 0xCD, 0xEF, 0x12], 3).as_str(), "120");
        assert_eq!(decimalize(&[0xAB, 0xCD, 0xEF, 0xFF], 3).as_str(), "012");
    }
}
