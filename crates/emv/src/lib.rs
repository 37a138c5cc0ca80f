//! EMV on the chip: BER-TLV and DGI encoding, block-cipher primitives, the
//! GlobalPlatform commands and secure channels, CPS personalization, data preparation
//! from a card profile, issuer key custody, and the terminal read-back that proves
//! the card.
//!
//! The core is transport-agnostic: it speaks to any [`station_hal::ApduTransport`]. It
//! depends on no runtime, database or agent code, so the simulators and drivers can
//! use it without pulling in the station.

// Denied, not forbidden: keys::pkcs11 names one PKCS#11 mechanism through FFI.
#![deny(unsafe_code)]

pub mod card_data;
pub mod cps;
pub mod crypto;
pub mod data;
pub mod dgi;
pub mod gp;
pub mod keys;
pub mod oda;
pub mod terminal;
pub mod tlv;
