//! Hardware abstraction for the station agent.
//!
//! Every device the agent drives sits behind one of two small traits so that the
//! pipeline, the tests and the simulators share one contract:
//! [`CardPrinter`] (feed, chip station, print, magstripe, eject/reject) and
//! [`ApduTransport`] (bytes in, bytes out to a contact chip).

pub mod apdu;
pub mod printer;

pub use apdu::{ApduTransport, ChipEncoder, TransportError};
pub use printer::{
    CardPosition, CardPrinter, MagTracks, PanelImage, PanelSide, PrinterError, PrinterStatus,
    StagedCard,
};

/// A stable machine code plus a plain-words message staff can act on.
pub trait StaffFacing {
    /// Stable code, never renamed once shipped (used in journal, reports and alerts).
    fn code(&self) -> &'static str;
    /// One sentence a branch employee can act on.
    fn staff_message(&self) -> String;
}
