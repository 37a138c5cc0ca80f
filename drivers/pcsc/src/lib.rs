//! PC/SC encoder transport: the `pcsc` crate on a dedicated thread per reader.
//!
//! [`PcscEncoder`] is the contact chip encoder of the station as an
//! [`station_hal::ApduTransport`]. PC/SC failures are mapped to the staff-facing
//! [`station_hal::TransportError`]s; only command headers and status words are logged.

pub mod encoder;
pub mod pattern;
pub mod pcsc_errors;

pub use encoder::{CardSession, PcscEncoder, ProtocolChoice, ReaderConfig, Sharing};
pub use pattern::{PatternError, ReaderPattern};
pub use pcsc_errors::map_error;
