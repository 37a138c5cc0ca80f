//! The labels of the station's objects on a token (the table of the module
//! documentation): the one place they are spelled, for the import, the store and the
//! check of a token's keys.

use super::KeyIndex;

/// How each of the station's key labels begins. A key with another label belongs to
/// someone else on a shared HSM partition (a bank's KEK, a ZMK) and is not the
/// station's to judge.
pub(crate) const STATION_KEY_PREFIXES: [&str; 4] = ["imk.", "cvk.", "transport.", "oda."];

/// Whether `label` names one of the station's keys.
pub(crate) fn is_station_key(label: &str) -> bool {
    STATION_KEY_PREFIXES.iter().any(|p| label.starts_with(p))
}

/// One of the three IMKs at `index` (`ac`, `smi`, `smc`).
pub(crate) fn imk(index: KeyIndex, part: &str) -> String {
    format!("imk.{index}.{part}")
}

/// CVK A ‖ B at `index`.
pub(crate) fn cvk(index: KeyIndex) -> String {
    format!("cvk.{index}")
}

/// CVK A ‖ A at `index` (single DES under A, as 3DES).
pub(crate) fn cvk_a(index: KeyIndex) -> String {
    format!("cvk.{index}.a")
}

/// A card product's KMC.
pub(crate) fn transport_kmc(product: &str) -> String {
    format!("transport.{product}.kmc")
}

/// A card product's secure channel parameters (`CKO_DATA`).
pub(crate) fn transport_params(product: &str) -> String {
    format!("transport.{product}")
}

/// An issuer ODA private key.
pub(crate) fn oda_issuer(index: KeyIndex) -> String {
    format!("oda.{index}.issuer")
}

/// An issuer ODA key's public data (`CKO_DATA`).
pub(crate) fn oda_params(index: KeyIndex) -> String {
    format!("oda.{index}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_label_the_station_writes_is_a_station_key_and_a_bank_key_is_not() {
        let i = KeyIndex(1);
        for label in [
            imk(i, "ac"),
            cvk(i),
            cvk_a(i),
            transport_kmc("DEV-VISA"),
            oda_issuer(i),
        ] {
            assert!(is_station_key(&label), "{label}");
        }
        assert_eq!(imk(i, "smi"), "imk.01.smi");
        for foreign in ["bank.zmk", "KEK", "zmk.imk.01"] {
            assert!(!is_station_key(foreign), "{foreign}");
        }
    }
}
