//! Card key diversification from a master key (KMC) and the card's key
//! diversification data (KDD, the first 10 bytes of the INITIALIZE UPDATE response).

use serde::{Deserialize, Serialize};

use crate::crypto::{tdes_ecb_encrypt, CryptoError};

/// How the card's static keys were derived from the KMC.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Diversification {
    /// The KMC is the card key itself.
    None,
    /// EMV CPS / CPG 2.02: KDD[4..10] ‖ F0 ‖ k ‖ KDD[4..10] ‖ 0F ‖ k.
    EmvCpg202,
    /// VISA2: KDD[0..2] ‖ KDD[4..8] ‖ F0 ‖ k ‖ KDD[0..2] ‖ KDD[4..8] ‖ 0F ‖ k.
    Visa2,
}

/// Which of the three card keys (the `k` in the templates).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyRole {
    /// Secure channel encryption key.
    Enc = 1,
    /// Secure channel MAC key.
    Mac = 2,
    /// Data encryption key.
    Dek = 3,
}

/// The 16 bytes the KMC encrypts (3DES ECB) to give one card key; `None` when the
/// method is [`Diversification::None`] (the KMC is the card key). An HSM derives with
/// exactly this data (`CKM_DES3_ECB_ENCRYPT_DATA`).
pub fn derivation_data(kdd: &[u8; 10], method: Diversification, role: KeyRole) -> Option<[u8; 16]> {
    let k = role as u8;
    let id: Vec<u8> = match method {
        Diversification::EmvCpg202 => kdd[4..10].to_vec(),
        Diversification::Visa2 => [&kdd[0..2], &kdd[4..8]].concat(),
        Diversification::None => return None,
    };
    let mut d = [0u8; 16];
    d[..6].copy_from_slice(&id);
    d[6..8].copy_from_slice(&[0xF0, k]);
    d[8..14].copy_from_slice(&id);
    d[14..].copy_from_slice(&[0x0F, k]);
    Some(d)
}

/// Derives one card key from a 3DES KMC.
pub fn derive(
    kmc: &[u8],
    kdd: &[u8; 10],
    method: Diversification,
    role: KeyRole,
) -> Result<Vec<u8>, CryptoError> {
    match derivation_data(kdd, method, role) {
        None => Ok(kmc.to_vec()),
        Some(d) => tdes_ecb_encrypt(kmc, &d),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::tdes_kcv;

    fn kcvs(method: Diversification) -> Vec<String> {
        let kmc = hex::decode("404142434445464748494A4B4C4D4E4F").unwrap();
        let kdd: [u8; 10] = hex::decode("00010203040506070809")
            .unwrap()
            .try_into()
            .unwrap();
        [KeyRole::Enc, KeyRole::Mac, KeyRole::Dek]
            .into_iter()
            .map(|r| hex::encode_upper(tdes_kcv(&derive(&kmc, &kdd, method, r).unwrap()).unwrap()))
            .collect()
    }

    #[test]
    fn emv_cpg202_keys_have_the_published_check_values() {
        assert_eq!(
            kcvs(Diversification::EmvCpg202),
            ["C33013", "6F4CA6", "BB8179"]
        );
    }

    #[test]
    fn visa2_keys_have_the_published_check_values() {
        assert_eq!(kcvs(Diversification::Visa2), ["2BE598", "58DA38", "3C328E"]);
    }
}
