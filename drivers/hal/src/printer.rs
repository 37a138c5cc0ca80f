//! Card printer: the feed → chip station → print/mag → eject|reject cycle every vendor shares.

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use thiserror::Error;
use zeroize::Zeroize;

use crate::StaffFacing;

/// Where the card currently is inside the printer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CardPosition {
    /// No card in the transport path.
    NoCard,
    /// A card is in the path (print or magstripe position).
    InPrinter,
    /// A card is held at the contact chip station.
    AtChipStation,
    /// A card is held at the contactless station.
    AtContactlessStation,
}

/// A snapshot of the printer, in terms staff and the hub's fleet monitor understand.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PrinterStatus {
    /// Model name as the printer reports it.
    pub model: String,
    /// Firmware version.
    pub firmware: String,
    /// Serial number.
    pub serial_number: String,
    /// Card position.
    pub position: CardPosition,
    /// Whether the printer can start a card now.
    pub ready: bool,
    /// Faults currently raised (empty when ready).
    pub faults: Vec<PrinterError>,
    /// Remaining ribbon panels, if the printer reports it.
    pub ribbon_remaining: Option<u32>,
    /// Cards left in the feeder, if the printer reports it.
    pub feeder_cards: Option<u32>,
}

/// Which face of the card a panel is printed on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PanelSide {
    /// The front (chip side).
    Front,
    /// The back (magstripe side).
    Back,
}

/// One monochrome or colour panel, already rasterised to the printer's dot size.
#[derive(Clone, PartialEq, Eq)]
pub struct PanelImage {
    /// Which face.
    pub side: PanelSide,
    /// Ribbon panel name as the printer calls it (`y`, `m`, `c`, `k`, `o`).
    pub panel: String,
    /// Width in dots.
    pub width: u32,
    /// Height in dots.
    pub height: u32,
    /// Bits per dot (1 for `k`/`o`, 6 or 8 for colour panels).
    pub bits_per_dot: u8,
    /// Row-major packed dots, MSB first.
    pub data: Vec<u8>,
}

impl std::fmt::Debug for PanelImage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PanelImage")
            .field("side", &self.side)
            .field("panel", &self.panel)
            .field("width", &self.width)
            .field("height", &self.height)
            .field("bits_per_dot", &self.bits_per_dot)
            .field("bytes", &self.data.len())
            .finish()
    }
}

/// The card a set of staged panels was rendered for: its order and attempt. A label for
/// logs and for the line's bookkeeping; the driver decides what to print by the panels'
/// content, never by this label alone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StagedCard {
    /// The order's operation id.
    pub operation_id: String,
    /// The journal's attempt at that card (a card made again is a new attempt).
    pub attempt: u32,
}

/// ISO 7811 track contents. Holds card data: zeroized on drop, never printed by `Debug`.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct MagTracks {
    /// Track 1 (IATA, 7-bit) without sentinels, or `None` to leave blank.
    pub track1: Option<String>,
    /// Track 2 (ABA, 5-bit) without sentinels.
    pub track2: Option<String>,
    /// Track 3 (5-bit) without sentinels.
    pub track3: Option<String>,
}

impl std::fmt::Debug for MagTracks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let len = |t: &Option<String>| t.as_ref().map(|s| s.len());
        f.debug_struct("MagTracks")
            .field("track1_len", &len(&self.track1))
            .field("track2_len", &len(&self.track2))
            .field("track3_len", &len(&self.track3))
            .finish()
    }
}

impl Drop for MagTracks {
    fn drop(&mut self) {
        self.track1.zeroize();
        self.track2.zeroize();
        self.track3.zeroize();
    }
}

/// What went wrong at the printer, typed so the pipeline can decide and staff can act.
#[derive(Debug, Error, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum PrinterError {
    /// The feeder holds no blank cards.
    #[error("feeder empty")]
    FeederEmpty,
    /// The ribbon is finished or missing.
    #[error("ribbon out")]
    RibbonOut,
    /// The ribbon is nearly finished (a warning: printing still possible).
    #[error("ribbon near end")]
    RibbonNearEnd,
    /// The printer cover is open.
    #[error("cover open")]
    CoverOpen,
    /// A card is stuck in the transport path.
    #[error("card jam")]
    CardJam,
    /// The magstripe could not be written.
    #[error("magstripe write error")]
    MagWrite,
    /// The magstripe read-back did not match what was written.
    #[error("magstripe verify error: {0}")]
    MagVerify(String),
    /// The printer does not answer or the link is down.
    #[error("printer offline: {0}")]
    Offline(String),
    /// The printer is busy with another job.
    #[error("printer busy")]
    Busy,
    /// The configuration names a printer model the driver has no profile for.
    #[error("no printer model profile named '{0}'")]
    UnknownModel(String),
    /// The printer refused a command; names the command and the reply.
    #[error("printer refused '{command}': {reply}")]
    Protocol {
        /// The command as sent (no card data is ever in a command named here).
        command: String,
        /// The printer's reply.
        reply: String,
    },
}

impl StaffFacing for PrinterError {
    fn code(&self) -> &'static str {
        match self {
            PrinterError::FeederEmpty => "PRN_FEEDER_EMPTY",
            PrinterError::RibbonOut => "PRN_RIBBON_OUT",
            PrinterError::RibbonNearEnd => "PRN_RIBBON_NEAR_END",
            PrinterError::CoverOpen => "PRN_COVER_OPEN",
            PrinterError::CardJam => "PRN_CARD_JAM",
            PrinterError::MagWrite => "PRN_MAG_WRITE",
            PrinterError::MagVerify(_) => "PRN_MAG_VERIFY",
            PrinterError::Offline(_) => "PRN_OFFLINE",
            PrinterError::Busy => "PRN_BUSY",
            PrinterError::UnknownModel(_) => "PRN_UNKNOWN_MODEL",
            PrinterError::Protocol { .. } => "PRN_PROTOCOL",
        }
    }

    fn staff_message(&self) -> String {
        match self {
            PrinterError::FeederEmpty => "Feeder empty: load blank cards.".into(),
            PrinterError::RibbonOut => "Ribbon out: replace the ribbon.".into(),
            PrinterError::RibbonNearEnd => "Ribbon nearly finished: have a spare ready.".into(),
            PrinterError::CoverOpen => "Printer cover open: close it.".into(),
            PrinterError::CardJam => {
                "Card jammed: open the printer, remove the card and put it in the spoiled box."
                    .into()
            }
            PrinterError::MagWrite | PrinterError::MagVerify(_) => {
                "Magnetic stripe could not be encoded: the card is spoiled.".into()
            }
            PrinterError::Offline(_) => "Printer not answering: check its power and cable.".into(),
            PrinterError::Busy => "Printer busy: wait for the current card.".into(),
            PrinterError::UnknownModel(name) => format!(
                "No printer model profile named '{name}': correct the printer model in the \
                 station configuration, or remove it to use the model the printer reports."
            ),
            PrinterError::Protocol { .. } => format!("Printer error: {self}."),
        }
    }
}

/// A card printer with a contact chip station and a magstripe encoder.
///
/// A card is always in exactly one place: callers that feed a card must end it with
/// [`CardPrinter::eject`] or [`CardPrinter::reject`], never leave it at the chip station.
#[async_trait]
pub trait CardPrinter: Send {
    /// Reads model, sensors and faults.
    async fn status(&mut self) -> Result<PrinterStatus, PrinterError>;
    /// Takes one blank card from the feeder into the printer.
    async fn feed(&mut self) -> Result<(), PrinterError>;
    /// Moves the card to the contact chip station and holds it there for the encoder.
    async fn park_at_chip_station(&mut self) -> Result<(), PrinterError>;
    /// Downloads the panels of `card` into the printer's bitmap memory, so [`CardPrinter::print`]
    /// only has to say "print what you hold". Returns once the download is queued on the
    /// link, not when it has crossed: later commands follow it on the link in order, and a
    /// download that fails is forgotten (the panels then go with `print`). Called while
    /// staff are still at the counter with the customer (the card not started) or while
    /// the card is at the chip station. Printers that cannot keep a downloaded panel do
    /// nothing here and receive the panels with `print`.
    async fn stage_panels(
        &mut self,
        _card: &StagedCard,
        _panels: &[PanelImage],
    ) -> Result<(), PrinterError> {
        Ok(())
    }
    /// Parks the card at the chip station and, when the panels are not staged yet, sends
    /// their download right behind the park on the link without waiting for the park to
    /// answer, so the bytes cross while the card moves. A failed park fails the card and
    /// the download is never used. By default: the park, then [`CardPrinter::stage_panels`].
    async fn park_and_stage(
        &mut self,
        card: &StagedCard,
        panels: &[PanelImage],
    ) -> Result<(), PrinterError> {
        self.park_at_chip_station().await?;
        self.stage_panels(card, panels).await
    }
    /// The card whose panels the printer holds (or is receiving), as far as the driver
    /// knows; `None` after any printer error, a reset, an eject or a reject.
    fn staged(&self) -> Option<&StagedCard> {
        None
    }
    /// Clears the staged panels from the printer's memory (the card was cancelled or
    /// given up, or the line stops), when the printer can; otherwise only forgets them.
    /// Like a download, the clearing is queued on the link and not awaited, so the line
    /// stays free to answer Start. Called with no card in the printer, and also when
    /// nothing is staged: the memory may still hold a download forgotten after an error.
    async fn discard_staged(&mut self) -> Result<(), PrinterError> {
        Ok(())
    }
    /// Waits until the commands queued and not awaited (a download, a clearing) are
    /// answered, and clears a memory that may still hold a face, so the printer is left
    /// in a known state when the line stops.
    async fn settle(&mut self) -> Result<(), PrinterError> {
        Ok(())
    }
    /// Prints the given panels on the card. Staged panels are printed from the printer's
    /// memory only when they are exactly these panels; anything else is sent again.
    async fn print(&mut self, panels: &[PanelImage]) -> Result<(), PrinterError>;
    /// Writes the magstripe, reads it back and compares; `MagVerify` on a mismatch.
    async fn write_magstripe(&mut self, tracks: &MagTracks) -> Result<(), PrinterError>;
    /// Ejects the finished card to the output hopper.
    async fn eject(&mut self) -> Result<(), PrinterError>;
    /// Sends the card to the reject box (spoiled).
    async fn reject(&mut self) -> Result<(), PrinterError>;
    /// Clears a raised fault after staff fixed it, so the next card can start.
    async fn clear_fault(&mut self) -> Result<(), PrinterError>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mag_tracks_debug_never_shows_track_data() {
        let t = MagTracks {
            track1: Some("B4761739001010010^DOE/J^2512101".into()),
            track2: Some("4761739001010010=2512101".into()),
            track3: None,
        };
        let shown = format!("{t:?}");
        assert!(!shown.contains("4761739001010010"), "{shown}");
        assert!(shown.contains("track2_len"));
    }

    #[test]
    fn every_printer_error_has_a_distinct_stable_code() {
        let all = [
            PrinterError::FeederEmpty,
            PrinterError::RibbonOut,
            PrinterError::RibbonNearEnd,
            PrinterError::CoverOpen,
            PrinterError::CardJam,
            PrinterError::MagWrite,
            PrinterError::MagVerify(String::new()),
            PrinterError::Offline(String::new()),
            PrinterError::Busy,
            PrinterError::UnknownModel(String::new()),
            PrinterError::Protocol {
                command: String::new(),
                reply: String::new(),
            },
        ];
        let mut codes: Vec<_> = all.iter().map(|e| e.code()).collect();
        codes.sort();
        codes.dedup();
        assert_eq!(codes.len(), all.len());
    }
}
