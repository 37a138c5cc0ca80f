//! The job state machine and its mapping to D1 production statuses.
//!
//! ```text
//!  Received ──▶ Validated ──▶ WaitingForStaff ──▶ Feeding ──▶ AtChipStation ──▶ Personalizing
//!     │            │   └──────────────────────────▲                                   │
//!     │            │                                                                  ▼
//!     ├──▶ Failed ◀┤                  Printing ◀── Verifying ◀────────────────────────┘
//!     └──▶ Cancelled (also from Validated / WaitingForStaff)
//!                                        │
//!                                        ▼
//!                              EncodingStripe ──▶ Ejecting ──▶ Ejected ──▶ HandedOver
//!
//!  any hardware state (Feeding … Ejecting) ──▶ Spoiled   (card sent to the reject box)
//!  any hardware state ──(staff start policy)──▶ Rejected ──make again──▶ WaitingForStaff
//!                                                  └──give up──▶ Spoiled
//!  any hardware state ──(the reject failed)──▶ AwaitingRemoval ──staff──▶ Spoiled
//!  Feeding ──(feeder empty, no card fed)──▶ WaitingForStaff
//!  any hardware state ──(agent restart)──▶ InDoubt ──staff──▶ Ejected (confirm) | Spoiled (spoil)
//! ```
//!
//! A card is physically in the printer exactly in the hardware states; a restart that
//! finds a job there never re-runs it: the job becomes `InDoubt` for staff to decide.
//! The stripe write (with its read-back) and the eject are states of their own so a
//! card caught before its stripe was read back can never be confirmed as good.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// Where a job is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum JobState {
    /// Order received and journaled, not yet checked.
    Received,
    /// Order valid, card data decrypted and prepared.
    Validated,
    /// Waiting for staff to start the card with the customer at the counter.
    WaitingForStaff,
    /// A blank card is being fed.
    Feeding,
    /// The card is held at the contact chip station.
    AtChipStation,
    /// The chip is being personalized.
    Personalizing,
    /// The chip is being read back as a terminal would.
    Verifying,
    /// The card face is being printed.
    Printing,
    /// The magstripe is being written and read back.
    EncodingStripe,
    /// The finished card (stripe read back) is being ejected.
    Ejecting,
    /// The finished card is in the output hopper.
    Ejected,
    /// Staff handed the card to the customer.
    HandedOver,
    /// The card was spoiled and sent to the reject box.
    Spoiled,
    /// The order could not be produced; no card was consumed.
    Failed,
    /// The order was cancelled before a card was fed.
    Cancelled,
    /// The agent restarted while the card was in the printer; staff must decide.
    InDoubt,
    /// A spoiled card could not be sent to the reject box: its line stays stopped
    /// until staff confirm they took it out by hand.
    AwaitingRemoval,
    /// The card went to the reject box; staff make it again or give up (nothing
    /// reported upstream until they give up).
    Rejected,
}

use JobState::*;

/// Every state, for exhaustive tests and listings.
pub const ALL_STATES: [JobState; 18] = [
    Received,
    Validated,
    WaitingForStaff,
    Feeding,
    AtChipStation,
    Personalizing,
    Verifying,
    Printing,
    EncodingStripe,
    Ejecting,
    Ejected,
    HandedOver,
    Spoiled,
    Failed,
    Cancelled,
    InDoubt,
    AwaitingRemoval,
    Rejected,
];

impl JobState {
    /// The states this one may move to.
    pub fn allowed_next(self) -> &'static [JobState] {
        match self {
            Received => &[Validated, Failed, Cancelled],
            Validated => &[WaitingForStaff, Feeding, Failed, Cancelled],
            WaitingForStaff => &[Feeding, Failed, Cancelled],
            // Feeder empty: no card left the hopper, the order waits for staff again.
            Feeding => &[
                AtChipStation,
                Spoiled,
                Rejected,
                InDoubt,
                WaitingForStaff,
                AwaitingRemoval,
            ],
            AtChipStation => &[Personalizing, Spoiled, Rejected, InDoubt, AwaitingRemoval],
            Personalizing => &[Verifying, Spoiled, Rejected, InDoubt, AwaitingRemoval],
            Verifying => &[Printing, Spoiled, Rejected, InDoubt, AwaitingRemoval],
            Printing => &[EncodingStripe, Spoiled, Rejected, InDoubt, AwaitingRemoval],
            EncodingStripe => &[Ejecting, Spoiled, Rejected, InDoubt, AwaitingRemoval],
            Ejecting => &[Ejected, Spoiled, Rejected, InDoubt, AwaitingRemoval],
            Ejected => &[HandedOver],
            InDoubt => &[Ejected, Spoiled],
            AwaitingRemoval => &[Spoiled],
            // Make again (a new blank, a new attempt) or give up: never back to a good card.
            Rejected => &[WaitingForStaff, Spoiled],
            HandedOver | Spoiled | Failed | Cancelled => &[],
        }
    }

    /// Whether `next` is an allowed move from here.
    pub fn can_go_to(self, next: JobState) -> bool {
        self.allowed_next().contains(&next)
    }

    /// Whether the job has ended (no card in the printer, nothing left to do).
    pub fn is_terminal(self) -> bool {
        matches!(self, HandedOver | Spoiled | Failed | Cancelled)
    }

    /// Whether a card is physically in the printer in this state.
    pub fn is_hardware(self) -> bool {
        matches!(
            self,
            Feeding
                | AtChipStation
                | Personalizing
                | Verifying
                | Printing
                | EncodingStripe
                | Ejecting
        )
    }

    /// Whether a card of this job may still be in its line's printer, so the line
    /// must not feed another until staff have dealt with it.
    pub fn blocks_line(self) -> bool {
        matches!(self, InDoubt | AwaitingRemoval)
    }

    /// Whether a card that left the line from this state may carry a written chip
    /// (live card data): destroying it is under dual control.
    pub fn chip_may_be_written(self) -> bool {
        matches!(
            self,
            Personalizing | Verifying | Printing | EncodingStripe | Ejecting
        )
    }

    /// Whether the job may still need its card data (false once the card is out or the job ended).
    pub fn card_data_needed(self) -> bool {
        !(self.is_terminal() || self == Ejected || self == AwaitingRemoval)
    }

    /// Whether an order for the same card counts as still pending or done (D1 re-order rule).
    pub fn blocks_reorder(self) -> bool {
        !matches!(self, Spoiled | Failed | Cancelled)
    }

    /// The D1 `details.status` reported on entering this state, if any.
    pub fn reported_status(self) -> Option<D1Status> {
        match self {
            Received => Some(D1Status::CardProdRequested),
            Validated => Some(D1Status::CardProdReady),
            Ejected => Some(D1Status::CardProdDone),
            Failed => Some(D1Status::DataException),
            Spoiled => Some(D1Status::CardProdException),
            Cancelled => Some(D1Status::CardProdCanceled),
            _ => None,
        }
    }

    /// Stable storage code.
    pub fn as_str(self) -> &'static str {
        match self {
            Received => "received",
            Validated => "validated",
            WaitingForStaff => "waiting_for_staff",
            Feeding => "feeding",
            AtChipStation => "at_chip_station",
            Personalizing => "personalizing",
            Verifying => "verifying",
            Printing => "printing",
            EncodingStripe => "encoding_stripe",
            Ejecting => "ejecting",
            Ejected => "ejected",
            HandedOver => "handed_over",
            Spoiled => "spoiled",
            Failed => "failed",
            Cancelled => "cancelled",
            InDoubt => "in_doubt",
            AwaitingRemoval => "awaiting_removal",
            Rejected => "rejected",
        }
    }

    /// Words for branch staff.
    pub fn label(self) -> &'static str {
        match self {
            Received => "Received",
            Validated => "Ready",
            WaitingForStaff => "Ready — press Start with the customer present",
            Feeding => "Feeding a blank card",
            AtChipStation => "Card at the chip encoder",
            Personalizing => "Writing the chip",
            Verifying => "Checking the chip",
            Printing => "Printing the card face",
            EncodingStripe => "Encoding and checking the stripe",
            Ejecting => "Ejecting the finished card",
            Ejected => "Card ready in the output tray",
            HandedOver => "Handed over",
            Spoiled => "Spoiled — card in the reject box",
            Failed => "Could not be produced",
            Cancelled => "Cancelled",
            InDoubt => "Check the printer — confirm or spoil this card",
            AwaitingRemoval => "Stuck in the printer — take it out, then press Card removed",
            Rejected => "Spoiled — card in the reject box: make it again or give up",
        }
    }
}

impl fmt::Display for JobState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A stored state code that is not one of ours.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown job state '{0}'")]
pub struct UnknownState(pub String);

impl FromStr for JobState {
    type Err = UnknownState;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        ALL_STATES
            .iter()
            .copied()
            .find(|st| st.as_str() == s)
            .ok_or_else(|| UnknownState(s.to_string()))
    }
}

/// D1 `details.status` of a PRODUCE operation (unknown values tolerated).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum D1Status {
    /// Requested.
    CardProdRequested,
    /// Data processed.
    CardProdReady,
    /// Card personalized.
    CardProdDone,
    /// Data problem.
    DataException,
    /// Personalization problem.
    CardProdException,
    /// Cancelled.
    CardProdCanceled,
    /// A value this version does not know (forward compatible).
    Unknown(String),
}

impl D1Status {
    /// The wire string.
    pub fn as_str(&self) -> &str {
        match self {
            D1Status::CardProdRequested => "CARD_PROD_REQUESTED",
            D1Status::CardProdReady => "CARD_PROD_READY",
            D1Status::CardProdDone => "CARD_PROD_DONE",
            D1Status::DataException => "DATA_EXCEPTION",
            D1Status::CardProdException => "CARD_PROD_EXCEPTION",
            D1Status::CardProdCanceled => "CARD_PROD_CANCELED",
            D1Status::Unknown(s) => s,
        }
    }

    /// Parses a wire string; unknown values are kept, not refused.
    pub fn parse(s: &str) -> Self {
        match s {
            "CARD_PROD_REQUESTED" => D1Status::CardProdRequested,
            "CARD_PROD_READY" => D1Status::CardProdReady,
            "CARD_PROD_DONE" => D1Status::CardProdDone,
            "DATA_EXCEPTION" => D1Status::DataException,
            "CARD_PROD_EXCEPTION" => D1Status::CardProdException,
            "CARD_PROD_CANCELED" => D1Status::CardProdCanceled,
            other => D1Status::Unknown(other.to_string()),
        }
    }

    /// The operation's top-level status; `None` for an unknown detail status.
    pub fn operation_status(&self) -> Option<OperationStatus> {
        match self {
            D1Status::CardProdRequested | D1Status::CardProdReady => Some(OperationStatus::Pending),
            D1Status::CardProdDone => Some(OperationStatus::Successful),
            D1Status::DataException | D1Status::CardProdException | D1Status::CardProdCanceled => {
                Some(OperationStatus::Failed)
            }
            D1Status::Unknown(_) => None,
        }
    }
}

impl Serialize for D1Status {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for D1Status {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Ok(D1Status::parse(&String::deserialize(d)?))
    }
}

/// Top-level status of a D1 operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum OperationStatus {
    /// Requested or ready.
    Pending,
    /// Done.
    Successful,
    /// An exception or cancellation.
    Failed,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn storage_codes_round_trip_for_every_state() {
        for s in ALL_STATES {
            assert_eq!(s.as_str().parse::<JobState>().unwrap(), s);
        }
        assert!("printing_now".parse::<JobState>().is_err());
    }

    #[test]
    fn terminal_states_allow_no_move() {
        for s in ALL_STATES.into_iter().filter(|s| s.is_terminal()) {
            assert!(s.allowed_next().is_empty(), "{s}");
        }
    }

    #[test]
    fn the_stripe_write_and_the_eject_are_journaled_states_of_their_own() {
        assert!(
            !Printing.can_go_to(Ejected),
            "a printed card still has its stripe to write"
        );
        assert!(Printing.can_go_to(EncodingStripe));
        assert!(
            !EncodingStripe.can_go_to(Ejected),
            "the eject is journaled first"
        );
        assert!(EncodingStripe.can_go_to(Ejecting));
        assert!(Ejecting.can_go_to(Ejected));
        assert!(EncodingStripe.is_hardware() && Ejecting.is_hardware());
    }

    #[test]
    fn a_card_the_reject_box_did_not_take_blocks_its_line_until_staff_remove_it() {
        for s in ALL_STATES.into_iter().filter(|s| s.is_hardware()) {
            assert!(s.can_go_to(AwaitingRemoval), "{s}");
        }
        assert_eq!(AwaitingRemoval.allowed_next(), &[Spoiled]);
        assert!(AwaitingRemoval.blocks_line() && InDoubt.blocks_line());
        assert!(
            !AwaitingRemoval.is_hardware(),
            "a restart leaves it waiting for staff"
        );
    }

    #[test]
    fn every_hardware_state_can_spoil_and_go_in_doubt() {
        for s in ALL_STATES.into_iter().filter(|s| s.is_hardware()) {
            assert!(s.can_go_to(Spoiled) && s.can_go_to(InDoubt), "{s}");
        }
    }

    #[test]
    fn no_state_before_feeding_can_reach_spoiled() {
        // Spoiled means a card went to the reject box: impossible without a fed card.
        for s in [Received, Validated, WaitingForStaff] {
            assert!(!s.can_go_to(Spoiled), "{s}");
        }
    }

    #[test]
    fn a_rejected_card_is_made_again_or_given_up_never_ejected() {
        assert_eq!(Rejected.allowed_next(), &[WaitingForStaff, Spoiled]);
        assert!(!Rejected.is_terminal() && Rejected.card_data_needed());
        assert_eq!(
            Rejected.reported_status(),
            None,
            "nothing reported until staff give up"
        );
        assert!(
            Rejected.blocks_reorder(),
            "the order is still being worked on"
        );
        assert!(!Ejected.can_go_to(Rejected) && !HandedOver.can_go_to(Rejected));
    }

    #[test]
    fn ejected_reports_done_and_exceptions_map_to_failed() {
        assert_eq!(Ejected.reported_status(), Some(D1Status::CardProdDone));
        assert_eq!(
            Spoiled.reported_status().unwrap().operation_status(),
            Some(OperationStatus::Failed)
        );
        assert_eq!(
            Validated.reported_status().unwrap().operation_status(),
            Some(OperationStatus::Pending)
        );
    }

    #[test]
    fn unknown_d1_status_is_tolerated() {
        let s: D1Status = serde_json::from_str("\"CARD_PROD_SHIPPED\"").unwrap();
        assert_eq!(s, D1Status::Unknown("CARD_PROD_SHIPPED".into()));
        assert_eq!(s.operation_status(), None);
        assert_eq!(serde_json::to_string(&s).unwrap(), "\"CARD_PROD_SHIPPED\"");
    }
}
