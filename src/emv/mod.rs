//! EMV on the chip: BER-TLV and DGI encoding, block-cipher primitives, the
//! GlobalPlatform secure channels, CPS personalization, data preparation from a
//! card profile, and the terminal read-back that proves the card.
//!
//! The core is transport-agnostic: it speaks to any [`station_hal::ApduTransport`].

pub mod cps;
pub mod crypto;
pub mod cryptogram;
pub mod dgi;
pub mod diversify;
pub mod gp;
pub mod secure_channel;
pub mod tlv;
