//! EMV on the chip: BER-TLV and DGI encoding, block-cipher primitives, the
//! GlobalPlatform secure channels, CPS personalization, data preparation from a
//! card profile, and the terminal read-back that proves the card.
//!
//! The core is transport-agnostic: it speaks to any [`station_hal::ApduTransport`].

pub mod cps;
pub mod crypto;
pub mod cryptogram;
pub mod cvv;
pub mod derive;
pub mod dgi;
pub mod diversify;
pub mod gp;
pub mod keystore;
pub mod oda;
pub mod prep;
pub mod profile;
pub mod secure_channel;
pub mod terminal;
pub mod tlv;
pub mod verify;
