//! The counter requests in the station journal (`pismo_requests`, `pismo_steps`,
//! migration v6): every step is written, durably, before the next call to Pismo,
//! so a restart knows exactly where each request stands.
//!
//! The tables live in the station journal and every call runs on the journal's own
//! thread ([`JournalThread`]), like the job API: an fsync never blocks a tokio worker.

use super::error::PismoError;
use super::model::{CustomerId, PismoCardId, PrintedName, RequestId};
use crate::journal::{Journal, JournalThread};
use rusqlite::{params, Connection, OptionalExtension};
use serde::Serialize;
use std::path::Path;
use std::sync::Arc;

/// Where a counter request stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RequestStep {
    /// Journaled; create card not yet confirmed by Pismo.
    Requested,
    /// Pismo created the card; waiting until it can be added to the next embossing.
    Created,
    /// Added to the next embossing run.
    Queued,
    /// An embossing run was started for it (test environments only).
    RunStarted,
    /// Staff asked to make it again; resend for embossing not yet confirmed.
    Resending,
    /// Pismo refused the request; staff must correct it and ask again.
    Refused,
}

impl RequestStep {
    /// Stable storage code.
    pub fn as_str(self) -> &'static str {
        match self {
            RequestStep::Requested => "requested",
            RequestStep::Created => "created",
            RequestStep::Queued => "queued",
            RequestStep::RunStarted => "run_started",
            RequestStep::Resending => "resending",
            RequestStep::Refused => "refused",
        }
    }

    fn parse(s: &str) -> Result<Self, PismoError> {
        Ok(match s {
            "requested" => RequestStep::Requested,
            "created" => RequestStep::Created,
            "queued" => RequestStep::Queued,
            "run_started" => RequestStep::RunStarted,
            "resending" => RequestStep::Resending,
            "refused" => RequestStep::Refused,
            other => return Err(PismoError::Journal(format!("unknown Pismo step '{other}'"))),
        })
    }

    /// Words for the staff queue.
    pub fn label(self) -> &'static str {
        match self {
            RequestStep::Requested => "Requested at Pismo",
            RequestStep::Created => "Requested at Pismo — card being prepared",
            RequestStep::Queued => "Requested at Pismo — waiting for the embossing run",
            RequestStep::RunStarted => "Requested at Pismo — embossing run started",
            RequestStep::Resending => "Sending again to Pismo",
            RequestStep::Refused => "Refused by Pismo",
        }
    }

    /// Whether the flow still has a Pismo call to make for this step.
    pub fn has_work(self) -> bool {
        matches!(
            self,
            RequestStep::Requested | RequestStep::Created | RequestStep::Resending
        )
    }
}

/// A counter request as journaled.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CounterRequest {
    /// Request id (= idempotency key).
    pub request_id: String,
    /// Pismo customer.
    pub customer_id: i64,
    /// Embossed name.
    pub printed_name: String,
    /// Product chosen by staff.
    pub product: Option<String>,
    /// Pismo card id once created.
    pub card_id: Option<i64>,
    /// Where it stands.
    pub step: RequestStep,
    /// Last outcome in staff words.
    pub message: Option<String>,
    /// Resends for embossing so far.
    pub resend_count: i64,
    /// Staff member who asked.
    pub requested_by: String,
    /// RFC 3339.
    pub created_at: String,
    /// RFC 3339.
    pub updated_at: String,
}

/// One audited step.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StepRecord {
    /// Step reached (or attempted).
    pub step: String,
    /// Outcome in staff words.
    pub outcome: String,
    /// Pismo card id, when known.
    pub card_id: Option<i64>,
    /// Who.
    pub actor: String,
}

/// The request tables of the journal: an async handle served by the journal thread.
#[derive(Clone)]
pub struct RequestStore {
    journal: JournalThread,
}

fn jerr(e: impl std::fmt::Display) -> PismoError {
    PismoError::Journal(e.to_string())
}

fn now() -> String {
    time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

const COLUMNS: &str = "request_id, customer_id, printed_name, product, card_id, step, message, \
    resend_count, requested_by, created_at, updated_at";

fn row(r: &rusqlite::Row<'_>) -> rusqlite::Result<(CounterRequest, String)> {
    Ok((
        CounterRequest {
            request_id: r.get(0)?,
            customer_id: r.get(1)?,
            printed_name: r.get(2)?,
            product: r.get(3)?,
            card_id: r.get(4)?,
            step: RequestStep::Requested,
            message: r.get(6)?,
            resend_count: r.get(7)?,
            requested_by: r.get(8)?,
            created_at: r.get(9)?,
            updated_at: r.get(10)?,
        },
        r.get(5)?,
    ))
}

fn finish((mut req, step): (CounterRequest, String)) -> Result<CounterRequest, PismoError> {
    req.step = RequestStep::parse(&step)?;
    Ok(req)
}

impl RequestStore {
    /// The request tables of the journal served by `journal`.
    pub fn new(journal: JournalThread) -> Self {
        RequestStore { journal }
    }

    /// Open the journal at `path` (migrating it if needed) on a journal thread of its
    /// own, for the command line and tests.
    pub fn open(path: &Path) -> Result<Self, PismoError> {
        let journal = Journal::open(path).map_err(jerr)?;
        Ok(Self::new(JournalThread::start(Arc::new(journal))))
    }

    async fn on_journal<R: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Connection) -> Result<R, PismoError> + Send + 'static,
    ) -> Result<R, PismoError> {
        self.journal.call(move |j| j.with_connection(f)).await
    }

    /// Journal a new request (step `requested`).
    pub async fn insert(
        &self,
        id: &RequestId,
        customer: CustomerId,
        name: &PrintedName,
        product: Option<&str>,
        by: &str,
    ) -> Result<CounterRequest, PismoError> {
        let (id, name, product, by) = (
            id.to_string(),
            name.as_str().to_string(),
            product.map(str::to_string),
            by.to_string(),
        );
        self.on_journal(move |c| insert(c, &id, customer, &name, product.as_deref(), &by))
            .await
    }

    /// Move a request to `step` (with the card id once known), audited, in one transaction.
    pub async fn advance(
        &self,
        id: &str,
        step: RequestStep,
        card: Option<PismoCardId>,
        outcome: &str,
        actor: &str,
    ) -> Result<CounterRequest, PismoError> {
        self.write(id, Some(step), card, outcome, actor, false)
            .await
    }

    /// Record an outcome that leaves the step as it is (a retryable failure).
    pub async fn note(
        &self,
        id: &str,
        outcome: &str,
        actor: &str,
    ) -> Result<CounterRequest, PismoError> {
        self.write(id, None, None, outcome, actor, false).await
    }

    /// Staff asked to make the card again: step `resending`, one more resend counted
    /// ([`begin_resend_in`] in a transaction of its own).
    pub async fn begin_resend(
        &self,
        id: &str,
        card: PismoCardId,
        actor: &str,
    ) -> Result<CounterRequest, PismoError> {
        let (id, actor) = (id.to_string(), actor.to_string());
        self.on_journal(move |c| {
            let tx = c.transaction().map_err(jerr)?;
            let r = begin_resend_in(&tx, &id, card, &actor)?;
            tx.commit().map_err(jerr)?;
            Ok(r)
        })
        .await
    }

    async fn write(
        &self,
        id: &str,
        step: Option<RequestStep>,
        card: Option<PismoCardId>,
        outcome: &str,
        actor: &str,
        count_resend: bool,
    ) -> Result<CounterRequest, PismoError> {
        let (id, outcome, actor) = (id.to_string(), outcome.to_string(), actor.to_string());
        self.on_journal(move |c| write(c, &id, step, card, &outcome, &actor, count_resend))
            .await
    }

    /// One request.
    pub async fn get(&self, id: &str) -> Result<Option<CounterRequest>, PismoError> {
        let id = id.to_string();
        self.on_journal(move |c| get(c, &id)).await
    }

    /// The request of a Pismo card.
    pub async fn by_card(&self, card: PismoCardId) -> Result<Option<CounterRequest>, PismoError> {
        self.on_journal(move |c| {
            c.query_row(
                &format!(
                    "SELECT {COLUMNS} FROM pismo_requests WHERE card_id = ?1
                     ORDER BY created_at DESC LIMIT 1"
                ),
                params![card.0],
                row,
            )
            .optional()
            .map_err(jerr)?
            .map(finish)
            .transpose()
        })
        .await
    }

    /// The most recent requests, newest first.
    pub async fn recent(&self, limit: u32) -> Result<Vec<CounterRequest>, PismoError> {
        self.on_journal(move |c| {
            let mut stmt = c
                .prepare(&format!(
                    "SELECT {COLUMNS} FROM pismo_requests ORDER BY created_at DESC, rowid DESC LIMIT ?1"
                ))
                .map_err(jerr)?;
            let rows = stmt.query_map(params![limit], row).map_err(jerr)?;
            rows.map(|r| r.map_err(jerr).and_then(finish)).collect()
        })
        .await
    }

    /// Requests with a Pismo call still to make (resumed after a restart).
    pub async fn unfinished(&self) -> Result<Vec<CounterRequest>, PismoError> {
        self.on_journal(|c| {
            let mut stmt = c
                .prepare(&format!(
                    "SELECT {COLUMNS} FROM pismo_requests
                     WHERE step IN ('requested', 'created', 'resending', 'queued') ORDER BY created_at"
                ))
                .map_err(jerr)?;
            let rows = stmt.query_map([], row).map_err(jerr)?;
            rows.map(|r| r.map_err(jerr).and_then(finish)).collect()
        })
        .await
    }

    /// The audit trail of a request, oldest first.
    pub async fn steps(&self, id: &str) -> Result<Vec<StepRecord>, PismoError> {
        let id = id.to_string();
        self.on_journal(move |c| {
            let mut stmt = c
                .prepare(
                    "SELECT step, outcome, card_id, actor FROM pismo_steps WHERE request_id = ?1 ORDER BY id",
                )
                .map_err(jerr)?;
            let rows = stmt
                .query_map(params![id], |r| {
                    Ok(StepRecord {
                        step: r.get(0)?,
                        outcome: r.get(1)?,
                        card_id: r.get(2)?,
                        actor: r.get(3)?,
                    })
                })
                .map_err(jerr)?;
            rows.map(|r| r.map_err(jerr)).collect()
        })
        .await
    }
}

fn get(c: &Connection, id: &str) -> Result<Option<CounterRequest>, PismoError> {
    c.query_row(
        &format!("SELECT {COLUMNS} FROM pismo_requests WHERE request_id = ?1"),
        params![id],
        row,
    )
    .optional()
    .map_err(jerr)?
    .map(finish)
    .transpose()
}

fn insert(
    conn: &mut Connection,
    id: &str,
    customer: CustomerId,
    name: &str,
    product: Option<&str>,
    by: &str,
) -> Result<CounterRequest, PismoError> {
    let tx = conn.transaction().map_err(jerr)?;
    let at = now();
    tx.execute(
        "INSERT INTO pismo_requests (request_id, customer_id, printed_name, product, step,
             requested_by, created_at, updated_at) VALUES (?1, ?2, ?3, ?4, 'requested', ?5, ?6, ?6)",
        params![id, customer.0, name, product, by, at],
    )
    .map_err(jerr)?;
    tx.execute(
        "INSERT INTO pismo_steps (request_id, step, outcome, card_id, at, actor)
         VALUES (?1, 'requested', 'asked at the counter', NULL, ?2, ?3)",
        params![id, at, by],
    )
    .map_err(jerr)?;
    tx.commit().map_err(jerr)?;
    get(conn, id)?.ok_or_else(|| PismoError::UnknownRequest(id.to_string()))
}

fn write(
    conn: &mut Connection,
    id: &str,
    step: Option<RequestStep>,
    card: Option<PismoCardId>,
    outcome: &str,
    actor: &str,
    count_resend: bool,
) -> Result<CounterRequest, PismoError> {
    let tx = conn.transaction().map_err(jerr)?;
    write_in(&tx, id, step, card, outcome, actor, count_resend)?;
    tx.commit().map_err(jerr)?;
    get(conn, id)?.ok_or_else(|| PismoError::UnknownRequest(id.to_string()))
}

/// The writes of one step (request row and audit row), in the caller's transaction.
fn write_in(
    tx: &Connection,
    id: &str,
    step: Option<RequestStep>,
    card: Option<PismoCardId>,
    outcome: &str,
    actor: &str,
    count_resend: bool,
) -> Result<(), PismoError> {
    let at = now();
    let current: Option<String> = tx
        .query_row(
            "SELECT step FROM pismo_requests WHERE request_id = ?1",
            params![id],
            |r| r.get(0),
        )
        .optional()
        .map_err(jerr)?;
    let current = current.ok_or_else(|| PismoError::UnknownRequest(id.to_string()))?;
    let step_code = step
        .map(|s| s.as_str())
        .unwrap_or(current.as_str())
        .to_string();
    tx.execute(
        "UPDATE pismo_requests SET step = ?2, card_id = COALESCE(?3, card_id), message = ?4,
             resend_count = resend_count + ?5, updated_at = ?6 WHERE request_id = ?1",
        params![
            id,
            step_code,
            card.map(|c| c.0),
            outcome,
            i64::from(count_resend),
            at
        ],
    )
    .map_err(jerr)?;
    tx.execute(
        "INSERT INTO pismo_steps (request_id, step, outcome, card_id, at, actor)
         VALUES (?1, ?2, ?3, (SELECT card_id FROM pismo_requests WHERE request_id = ?1), ?4, ?5)",
        params![id, step_code, outcome, at, actor],
    )
    .map_err(jerr)?;
    Ok(())
}

/// "Make again" journaled inside a transaction the caller owns (the station gives the
/// spoiled order up in the same one): the request of `card` moves to `resending`, one
/// more resend counted. Refused unless the request was sent for embossing.
pub fn begin_resend_in(
    tx: &Connection,
    id: &str,
    card: PismoCardId,
    actor: &str,
) -> Result<CounterRequest, PismoError> {
    let r = get(tx, id)?.ok_or_else(|| PismoError::UnknownRequest(id.to_string()))?;
    if r.card_id != Some(card.0) {
        return Err(PismoError::NotNow(format!(
            "request {id} is for Pismo card {}, not card {}",
            r.card_id
                .map_or_else(|| "(none yet)".to_string(), |c| c.to_string()),
            card.0
        )));
    }
    if !matches!(r.step, RequestStep::Queued | RequestStep::RunStarted) {
        return Err(PismoError::NotNow(format!(
            "request {id} is '{}': only a card already sent for embossing can be made again",
            r.step.label()
        )));
    }
    write_in(
        tx,
        id,
        Some(RequestStep::Resending),
        None,
        "make again asked",
        actor,
        true,
    )?;
    get(tx, id)?.ok_or_else(|| PismoError::UnknownRequest(id.to_string()))
}

/// One journaled step of a counter request, for the audit export.
#[derive(Debug, Clone, PartialEq)]
pub struct AuditStep {
    /// When (RFC 3339).
    pub at: String,
    /// Who (a staff id, or `agent` for the calls the station makes).
    pub actor: String,
    /// The request.
    pub request_id: String,
    /// Step reached, as stored.
    pub step: String,
    /// Whether the request was already at this step (an outcome noted, no move).
    pub repeated: bool,
    /// Outcome in staff words.
    pub outcome: String,
    /// Pismo card id, once known.
    pub card_id: Option<i64>,
    /// Product chosen at the counter.
    pub product: Option<String>,
}

/// Every step of every counter request in `[from, until)` (RFC 3339 bounds), oldest
/// first, on the journal's connection.
pub fn audit_steps(c: &Connection, from: &str, until: &str) -> rusqlite::Result<Vec<AuditStep>> {
    let mut stmt = c.prepare(
        "SELECT s.at, s.actor, s.request_id, s.step, s.outcome, s.card_id, r.product, \
            (SELECT p.step FROM pismo_steps p WHERE p.request_id = s.request_id AND p.id < s.id \
             ORDER BY p.id DESC LIMIT 1) \
         FROM pismo_steps s JOIN pismo_requests r ON r.request_id = s.request_id \
         WHERE s.at >= ?1 AND s.at < ?2 ORDER BY s.id",
    )?;
    let rows = stmt.query_map(params![from, until], |r| {
        let step: String = r.get(3)?;
        let before: Option<String> = r.get(7)?;
        Ok(AuditStep {
            at: r.get(0)?,
            actor: r.get(1)?,
            request_id: r.get(2)?,
            repeated: before.as_deref() == Some(step.as_str()),
            step,
            outcome: r.get(4)?,
            card_id: r.get(5)?,
            product: r.get(6)?,
        })
    })?;
    rows.collect()
}
