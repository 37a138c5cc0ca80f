//! The hub's SQLite database: operations, station queues, events, heartbeats
//! and the issuer notification outbox.

use super::error::SandboxError;
use crate::link::wire::{StationOrder, StatusEvent};
use rusqlite::{params, Connection, OptionalExtension};
use serde_json::{json, Value};
use std::path::Path;
use std::sync::Mutex;

/// Top-level status of a PRODUCE operation.
pub const PENDING: &str = "PENDING";
/// Card produced.
pub const SUCCESSFUL: &str = "SUCCESSFUL";
/// Production failed; a new order for the card is allowed.
pub const FAILED: &str = "FAILED";

/// One PRODUCE operation as the hub knows it.
#[derive(Debug, Clone, PartialEq)]
pub struct Operation {
    /// Hub-assigned operation id.
    pub operation_id: String,
    /// Ordering issuer.
    pub issuer_id: String,
    /// Issuer's card id.
    pub card_id: String,
    /// THALES, INSTANT or CENTRAL.
    pub channel: String,
    /// Station the order is routed to (INSTANT only).
    pub perso_station: Option<String>,
    /// PENDING, SUCCESSFUL or FAILED.
    pub status: String,
    /// D1 `details.status`.
    pub details_status: String,
    /// `details.reason` on exceptions.
    pub reason: Option<String>,
    /// RFC 3339.
    pub start_time: String,
    /// RFC 3339, once final.
    pub end_time: Option<String>,
    /// Issuer's own request id, echoed back.
    pub issuer_request_id: Option<String>,
}

impl Operation {
    /// The D1 operation object of notifications and `productionStatus`.
    pub fn to_d1(&self) -> Value {
        let mut details = json!({ "status": self.details_status });
        if let Some(r) = &self.reason {
            details["reason"] = json!(r);
        }
        let mut op = json!({
            "operationId": self.operation_id,
            "operation": "PRODUCE",
            "status": self.status,
            "startTime": self.start_time,
            "cardId": self.card_id,
            "details": details,
        });
        if let Some(t) = &self.end_time {
            op["endTime"] = json!(t);
        }
        if let Some(id) = &self.issuer_request_id {
            op["issuerRequestId"] = json!(id);
        }
        op
    }
}

/// Why a new operation was not created.
#[derive(Debug, PartialEq, Eq)]
pub enum CreateRefusal {
    /// The card's last PRODUCE operation is PENDING or SUCCESSFUL.
    CardBusy,
}

/// Result of recording a station event.
#[derive(Debug, PartialEq)]
pub enum EventOutcome {
    /// New event; the operation as it stands afterwards.
    Recorded(Box<Operation>),
    /// Same (operationId, sequence) seen before: nothing changed.
    Duplicate,
    /// No such operation routed to this station.
    UnknownOperation,
}

/// A queued issuer notification.
#[derive(Debug, Clone, PartialEq)]
pub struct Notification {
    /// Row id.
    pub id: i64,
    /// Issuer to notify.
    pub issuer_id: String,
    /// Stable `x-correlation-id` across retries.
    pub correlation_id: String,
    /// The `{"operations":[...]}` body.
    pub body: Value,
}

/// The hub database (one connection behind a mutex: the sandbox is a development tool).
pub struct HubStore {
    conn: Mutex<Connection>,
}

const SCHEMA: &str = "
PRAGMA journal_mode = WAL;
CREATE TABLE IF NOT EXISTS operations (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    operation_id TEXT NOT NULL UNIQUE,
    issuer_id TEXT NOT NULL,
    card_id TEXT NOT NULL,
    channel TEXT NOT NULL,
    perso_station TEXT,
    status TEXT NOT NULL,
    details_status TEXT NOT NULL,
    reason TEXT,
    start_time TEXT NOT NULL,
    end_time TEXT,
    issuer_request_id TEXT,
    last_sequence INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS operations_card ON operations(issuer_id, card_id, seq);
CREATE TABLE IF NOT EXISTS station_queue (
    operation_id TEXT PRIMARY KEY,
    perso_station TEXT NOT NULL,
    station_order TEXT NOT NULL,
    acknowledged INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS station_events (
    operation_id TEXT NOT NULL,
    sequence INTEGER NOT NULL,
    status TEXT NOT NULL,
    reason TEXT,
    time TEXT NOT NULL,
    masked_pan TEXT,
    apdu_count INTEGER,
    received_at TEXT NOT NULL,
    PRIMARY KEY (operation_id, sequence)
);
CREATE TABLE IF NOT EXISTS heartbeats (
    perso_station TEXT PRIMARY KEY,
    body TEXT NOT NULL,
    received_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS notifications (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    operation_id TEXT NOT NULL,
    details_status TEXT NOT NULL,
    issuer_id TEXT NOT NULL,
    correlation_id TEXT NOT NULL,
    body TEXT NOT NULL,
    delivered INTEGER NOT NULL DEFAULT 0,
    attempts INTEGER NOT NULL DEFAULT 0,
    UNIQUE (operation_id, details_status)
);
";

const OP_COLUMNS: &str = "operation_id, issuer_id, card_id, channel, perso_station, status, \
     details_status, reason, start_time, end_time, issuer_request_id";

fn row_to_op(r: &rusqlite::Row<'_>) -> rusqlite::Result<Operation> {
    Ok(Operation {
        operation_id: r.get(0)?,
        issuer_id: r.get(1)?,
        card_id: r.get(2)?,
        channel: r.get(3)?,
        perso_station: r.get(4)?,
        status: r.get(5)?,
        details_status: r.get(6)?,
        reason: r.get(7)?,
        start_time: r.get(8)?,
        end_time: r.get(9)?,
        issuer_request_id: r.get(10)?,
    })
}

/// Top-level status for a `details.status`; `None` for values this hub does not know.
pub fn top_level_status(details_status: &str) -> Option<&'static str> {
    use crate::journal::state::{D1Status, OperationStatus};
    D1Status::parse(details_status)
        .operation_status()
        .map(|s| match s {
            OperationStatus::Pending => PENDING,
            OperationStatus::Successful => SUCCESSFUL,
            OperationStatus::Failed => FAILED,
        })
}

fn now_rfc3339() -> String {
    time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

fn enqueue_notification(tx: &rusqlite::Transaction<'_>, op: &Operation) -> rusqlite::Result<()> {
    let body = json!({ "operations": [op.to_d1()] }).to_string();
    tx.execute(
        "INSERT OR IGNORE INTO notifications (operation_id, details_status, issuer_id, correlation_id, body)
         VALUES (?1, ?2, ?3, ?4, ?5)",
        params![
            op.operation_id,
            op.details_status,
            op.issuer_id,
            uuid::Uuid::new_v4().to_string(),
            body
        ],
    )?;
    Ok(())
}

impl HubStore {
    /// Open (creating if needed) the database at `path`.
    pub fn open(path: &Path) -> Result<Self, SandboxError> {
        let conn = Connection::open(path)?;
        conn.execute_batch(SCHEMA)?;
        Ok(HubStore {
            conn: Mutex::new(conn),
        })
    }

    fn conn(&self) -> std::sync::MutexGuard<'_, Connection> {
        // A panic while holding the lock leaves SQLite consistent (transactions roll back).
        self.conn.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Create a PENDING operation unless the card's last one is PENDING or SUCCESSFUL;
    /// queue `station_order` for its station in the same transaction.
    pub fn create_operation(
        &self,
        op: &Operation,
        station_order: Option<&StationOrder>,
    ) -> Result<Result<(), CreateRefusal>, SandboxError> {
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        let last: Option<String> = tx
            .query_row(
                "SELECT status FROM operations WHERE issuer_id = ?1 AND card_id = ?2
                 ORDER BY seq DESC LIMIT 1",
                params![op.issuer_id, op.card_id],
                |r| r.get(0),
            )
            .optional()?;
        if matches!(last.as_deref(), Some(PENDING) | Some(SUCCESSFUL)) {
            return Ok(Err(CreateRefusal::CardBusy));
        }
        tx.execute(
            &format!(
                "INSERT INTO operations ({OP_COLUMNS}) VALUES (?1,?2,?3,?4,?5,?6,?7,?8,?9,?10,?11)"
            ),
            params![
                op.operation_id,
                op.issuer_id,
                op.card_id,
                op.channel,
                op.perso_station,
                op.status,
                op.details_status,
                op.reason,
                op.start_time,
                op.end_time,
                op.issuer_request_id
            ],
        )?;
        if let (Some(order), Some(station)) = (station_order, &op.perso_station) {
            let text =
                serde_json::to_string(order).map_err(|e| SandboxError::Database(e.to_string()))?;
            tx.execute(
                "INSERT INTO station_queue (operation_id, perso_station, station_order) VALUES (?1, ?2, ?3)",
                params![op.operation_id, station, text],
            )?;
        }
        enqueue_notification(&tx, op)?;
        tx.commit()?;
        Ok(Ok(()))
    }

    /// All operations of a card, oldest first.
    pub fn operations_for_card(
        &self,
        issuer_id: &str,
        card_id: &str,
    ) -> Result<Vec<Operation>, SandboxError> {
        let conn = self.conn();
        let mut stmt = conn.prepare(&format!(
            "SELECT {OP_COLUMNS} FROM operations WHERE issuer_id = ?1 AND card_id = ?2 ORDER BY seq"
        ))?;
        let rows = stmt.query_map(params![issuer_id, card_id], row_to_op)?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// One operation by id.
    pub fn operation(&self, operation_id: &str) -> Result<Option<Operation>, SandboxError> {
        let conn = self.conn();
        Ok(conn
            .query_row(
                &format!("SELECT {OP_COLUMNS} FROM operations WHERE operation_id = ?1"),
                params![operation_id],
                row_to_op,
            )
            .optional()?)
    }

    /// Orders queued for `station` and not yet acknowledged by a status event, oldest first.
    pub fn pending_station_orders(&self, station: &str) -> Result<Vec<StationOrder>, SandboxError> {
        let conn = self.conn();
        let mut stmt = conn.prepare(
            "SELECT q.station_order FROM station_queue q JOIN operations o USING (operation_id)
             WHERE q.perso_station = ?1 AND q.acknowledged = 0 ORDER BY o.seq",
        )?;
        let rows = stmt.query_map(params![station], |r| r.get::<_, String>(0))?;
        let mut out = Vec::new();
        for text in rows {
            out.push(
                serde_json::from_str(&text?).map_err(|e| SandboxError::Database(e.to_string()))?,
            );
        }
        Ok(out)
    }

    /// Record a station event; idempotent on (operationId, sequence). The first event
    /// acknowledges the order (it leaves the station's queue); an event with a higher
    /// sequence than any applied before updates the operation and queues a notification.
    pub fn record_event(
        &self,
        station: &str,
        operation_id: &str,
        event: &StatusEvent,
    ) -> Result<EventOutcome, SandboxError> {
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        let found: Option<(Option<String>, i64)> = tx
            .query_row(
                "SELECT perso_station, last_sequence FROM operations WHERE operation_id = ?1",
                params![operation_id],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()?;
        let last_sequence = match found {
            Some((Some(s), last)) if s == station => last,
            _ => return Ok(EventOutcome::UnknownOperation),
        };
        let inserted = tx.execute(
            "INSERT OR IGNORE INTO station_events
             (operation_id, sequence, status, reason, time, masked_pan, apdu_count, received_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
            params![
                operation_id,
                event.sequence as i64,
                event.status,
                event.reason,
                event.time,
                event.masked_pan,
                event.apdu_count,
                now_rfc3339()
            ],
        )?;
        if inserted == 0 {
            return Ok(EventOutcome::Duplicate);
        }
        tx.execute(
            "UPDATE station_queue SET acknowledged = 1 WHERE operation_id = ?1",
            params![operation_id],
        )?;
        if event.sequence as i64 > last_sequence {
            let top = top_level_status(&event.status);
            let reason = if top == Some(FAILED) {
                event.reason.clone()
            } else {
                None
            };
            let end_time = match top {
                Some(SUCCESSFUL) | Some(FAILED) => Some(event.time.clone()),
                _ => None,
            };
            tx.execute(
                "UPDATE operations SET last_sequence = ?2, details_status = ?3, reason = ?4,
                     status = COALESCE(?5, status), end_time = COALESCE(?6, end_time)
                 WHERE operation_id = ?1",
                params![
                    operation_id,
                    event.sequence as i64,
                    event.status,
                    reason,
                    top,
                    end_time
                ],
            )?;
        }
        let op = tx.query_row(
            &format!("SELECT {OP_COLUMNS} FROM operations WHERE operation_id = ?1"),
            params![operation_id],
            row_to_op,
        )?;
        enqueue_notification(&tx, &op)?;
        tx.commit()?;
        Ok(EventOutcome::Recorded(Box::new(op)))
    }

    /// Events of an operation in sequence order.
    pub fn events(&self, operation_id: &str) -> Result<Vec<StatusEvent>, SandboxError> {
        let conn = self.conn();
        let mut stmt = conn.prepare(
            "SELECT sequence, status, reason, time, masked_pan, apdu_count FROM station_events
             WHERE operation_id = ?1 ORDER BY sequence",
        )?;
        let rows = stmt.query_map(params![operation_id], |r| {
            Ok(StatusEvent {
                sequence: r.get::<_, i64>(0)? as u64,
                status: r.get(1)?,
                reason: r.get(2)?,
                time: r.get(3)?,
                masked_pan: r.get(4)?,
                apdu_count: r.get(5)?,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Keep the latest heartbeat of a station.
    pub fn record_heartbeat(&self, station: &str, body: &Value) -> Result<(), SandboxError> {
        self.conn().execute(
            "INSERT INTO heartbeats (perso_station, body, received_at) VALUES (?1, ?2, ?3)
             ON CONFLICT(perso_station) DO UPDATE SET body = excluded.body, received_at = excluded.received_at",
            params![station, body.to_string(), now_rfc3339()],
        )?;
        Ok(())
    }

    /// Latest heartbeat body of a station.
    pub fn heartbeat(&self, station: &str) -> Result<Option<Value>, SandboxError> {
        let text: Option<String> = self
            .conn()
            .query_row(
                "SELECT body FROM heartbeats WHERE perso_station = ?1",
                params![station],
                |r| r.get(0),
            )
            .optional()?;
        text.map(|t| serde_json::from_str(&t).map_err(|e| SandboxError::Database(e.to_string())))
            .transpose()
    }

    /// Undelivered issuer notifications, oldest first.
    pub fn pending_notifications(&self, limit: usize) -> Result<Vec<Notification>, SandboxError> {
        let conn = self.conn();
        let mut stmt = conn.prepare(
            "SELECT id, issuer_id, correlation_id, body FROM notifications
             WHERE delivered = 0 ORDER BY id LIMIT ?1",
        )?;
        let rows = stmt.query_map(params![limit as i64], |r| {
            Ok((
                r.get::<_, i64>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, String>(2)?,
                r.get::<_, String>(3)?,
            ))
        })?;
        let mut out = Vec::new();
        for row in rows {
            let (id, issuer_id, correlation_id, body) = row?;
            out.push(Notification {
                id,
                issuer_id,
                correlation_id,
                body: serde_json::from_str(&body)
                    .map_err(|e| SandboxError::Database(e.to_string()))?,
            });
        }
        Ok(out)
    }

    /// The issuer acknowledged the notification.
    pub fn mark_notified(&self, id: i64) -> Result<(), SandboxError> {
        self.conn().execute(
            "UPDATE notifications SET delivered = 1, attempts = attempts + 1 WHERE id = ?1",
            params![id],
        )?;
        Ok(())
    }

    /// A delivery attempt failed.
    pub fn note_notification_attempt(&self, id: i64) -> Result<(), SandboxError> {
        self.conn().execute(
            "UPDATE notifications SET attempts = attempts + 1 WHERE id = ?1",
            params![id],
        )?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn d1_details_statuses_map_to_top_level_statuses() {
        assert_eq!(top_level_status("CARD_PROD_REQUESTED"), Some(PENDING));
        assert_eq!(top_level_status("CARD_PROD_READY"), Some(PENDING));
        assert_eq!(top_level_status("CARD_PROD_DONE"), Some(SUCCESSFUL));
        assert_eq!(top_level_status("DATA_EXCEPTION"), Some(FAILED));
        assert_eq!(top_level_status("CARD_PROD_EXCEPTION"), Some(FAILED));
        assert_eq!(top_level_status("CARD_PROD_CANCELED"), Some(FAILED));
        assert_eq!(top_level_status("SOMETHING_NEW"), None);
    }
}
