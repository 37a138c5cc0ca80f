//! The station journal is the outbox the event sender drains.

use super::outbox::{Outbox, OutboxError, OutboxEvent};
use super::wire::StatusEvent;
use crate::journal::{Journal, JournalError};

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
                    reason: e.reason,
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
