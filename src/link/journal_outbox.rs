//! The station journal is the outbox the event sender drains.

use super::outbox::{Outbox, OutboxError, OutboxEvent};
use super::wire::StatusEvent;
use crate::journal::{Journal, JournalError};

/// The longest `reason` the station link accepts (`StatusEvent.reason`, maxLength 256).
pub const REASON_MAX_CHARS: usize = 256;

/// A reason cut to what the hub accepts (the journal keeps it whole): a longer one is
/// refused for good and the card would never reach a final status upstream.
fn wire_reason(reason: Option<String>) -> Option<String> {
    reason.map(|r| {
        if r.chars().count() <= REASON_MAX_CHARS {
            r
        } else {
            let mut cut: String = r.chars().take(REASON_MAX_CHARS - 1).collect();
            cut.push('…');
            cut
        }
    })
}

fn outbox_error(e: JournalError) -> OutboxError {
    OutboxError(format!("{}: {e}", e.code()))
}

impl Outbox for Journal {
    fn pending_events(&self, limit: usize) -> Result<Vec<OutboxEvent>, OutboxError> {
        Ok(Journal::pending_events(self, limit)
            .map_err(outbox_error)?
            .into_iter()
            .map(|e| OutboxEvent {
                operation_id: e.operation_id,
                event: StatusEvent {
                    sequence: e.sequence,
                    status: e.status.as_str().to_string(),
                    reason: wire_reason(e.reason),
                    time: e.time,
                    masked_pan: e.masked_pan,
                    apdu_count: Some(e.apdu_count),
                },
            })
            .collect())
    }

    fn mark_delivered(&self, operation_id: &str, sequence: u64) -> Result<(), OutboxError> {
        Journal::mark_delivered(self, operation_id, sequence).map_err(outbox_error)
    }

    fn mark_parked(
        &self,
        operation_id: &str,
        sequence: u64,
        error: &str,
    ) -> Result<(), OutboxError> {
        Journal::mark_parked(self, operation_id, sequence, error).map_err(outbox_error)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::journal::state::JobState;
    use crate::journal::NewJob;

    #[test]
    fn a_reason_longer_than_the_link_accepts_is_cut_to_its_limit_and_the_journal_keeps_it_whole() {
        let j = Journal::open_in_memory().unwrap();
        j.insert_order(&NewJob {
            operation_id: "op".into(),
            issuer_id: "ISS".into(),
            card_id: "card".into(),
            perso_station: "BR-1".into(),
            order_json: serde_json::json!({}),
        })
        .unwrap();
        let long = "PRN_CARD_JAM: card jammed; ".repeat(20);
        j.transition("op", JobState::Failed, Some(&long)).unwrap();

        let sent = Outbox::pending_events(&j, 10).unwrap();

        let reason = sent.last().unwrap().event.reason.clone().unwrap();
        assert_eq!(reason.chars().count(), REASON_MAX_CHARS);
        assert!(long.starts_with(reason.trim_end_matches('…')));
        assert_eq!(j.job("op").unwrap().unwrap().reason.unwrap(), long);
    }
}
