//! What the counter reads and writes in the journal: blank-card stock loads
//! (append-only, like the transitions), card movements per product for stock and
//! reconciliation, and the audit rows the export is made of.
//!
//! Time bounds are RFC 3339 UTC strings (as stored), `from` inclusive and `until`
//! exclusive; a bare date such as `2026-11-30` compares as that day's midnight.

use rusqlite::params;
use serde::Serialize;

use super::state::JobState;
use super::{
    finish_job, job_from_row, now, parse_state, Job, Journal, JournalError, JOB_COLUMNS,
    JOB_COLUMN_COUNT,
};

/// Lower bound that includes everything.
pub const BEGINNING: &str = "";
/// Upper bound that includes everything.
pub const END: &str = "9999";

/// Blanks of one card product put in the feeder (or the branch safe), as recorded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StockLoad {
    /// When (RFC 3339).
    pub at: String,
    /// Card product.
    pub product: String,
    /// Blanks loaded.
    pub count: u32,
    /// Batch or lot number printed on the stock's box.
    pub batch: String,
    /// Who loaded them.
    pub actor: String,
    /// Who approved, if anyone.
    pub approver: Option<String>,
}

/// How many blanks of one product moved, between two times.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CardMoves {
    /// Card product (`unknown` for jobs from before products were recorded).
    pub product: String,
    /// Blanks loaded.
    pub loaded: u64,
    /// Feeds started.
    pub fed: u64,
    /// Feeds that found the feeder empty (no blank left it).
    pub feeder_empty: u64,
    /// Cards that reached the output tray.
    pub issued: u64,
    /// Cards that went to the reject box (or were spoiled after a restart).
    pub spoiled: u64,
}

impl CardMoves {
    /// Blanks that left the feeder.
    pub fn used(&self) -> u64 {
        self.fed.saturating_sub(self.feeder_empty)
    }
}

/// One audited move of a job, with what the job says about the card.
#[derive(Debug, Clone, PartialEq)]
pub struct AuditRow {
    /// When (RFC 3339).
    pub at: String,
    /// Operation.
    pub operation_id: String,
    /// Card.
    pub card_id: String,
    /// Masked PAN, once known.
    pub masked_pan: Option<String>,
    /// Line that took the card, once fed.
    pub line: Option<String>,
    /// Card product, once known.
    pub product: Option<String>,
    /// State before (none for the order's arrival).
    pub from: Option<JobState>,
    /// State after.
    pub to: JobState,
    /// Why, when given.
    pub reason: Option<String>,
    /// `agent` or the staff member.
    pub actor: String,
    /// Second staff member under dual control.
    pub approver: Option<String>,
}

impl Journal {
    /// Whether a job rejected, left in doubt or stuck in the printer got there once its
    /// chip was being written (the card may carry live card data).
    pub fn chip_written(&self, operation_id: &str) -> Result<bool, JournalError> {
        let Some(job) = self.job(operation_id)? else {
            return Ok(false);
        };
        let came_from = self
            .history(operation_id)?
            .into_iter()
            .rev()
            .find(|t| t.to == job.state.as_str())
            .and_then(|t| t.from);
        Ok(chip_written(job.state, came_from.as_deref()))
    }

    /// The newest `limit` jobs, newest first, each with [`Journal::chip_written`] — in
    /// one query, for the console's queue (polled every few seconds).
    pub fn queue(&self, limit: u32) -> Result<Vec<(Job, bool)>, JournalError> {
        let conn = self.lock();
        let mut stmt = conn.prepare(&format!(
            "SELECT {JOB_COLUMNS}, \
                CASE WHEN state IN (?2, ?3, ?4) THEN \
                  (SELECT t.from_state FROM transitions t \
                   WHERE t.operation_id = jobs.operation_id AND t.to_state = jobs.state \
                   ORDER BY t.id DESC LIMIT 1) END \
             FROM jobs ORDER BY created_at DESC, rowid DESC LIMIT ?1"
        ))?;
        // Only the few jobs waiting for a staff decision look up how they got there.
        let waiting = WAITING_FOR_A_DECISION;
        let rows = stmt
            .query_map(
                params![
                    limit,
                    waiting[0].as_str(),
                    waiting[1].as_str(),
                    waiting[2].as_str()
                ],
                |r| {
                    Ok((
                        job_from_row(r)?,
                        r.get::<_, Option<String>>(JOB_COLUMN_COUNT)?,
                    ))
                },
            )?
            .collect::<Result<Vec<_>, _>>()?;
        rows.into_iter()
            .map(|(row, came_from)| {
                let job = finish_job(row)?;
                let written = chip_written(job.state, came_from.as_deref());
                Ok((job, written))
            })
            .collect()
    }

    /// Records blanks loaded, durably; the load is never changed or removed afterwards.
    pub fn record_stock_load(
        &self,
        product: &str,
        count: u32,
        batch: &str,
        actor: &str,
        approver: Option<&str>,
    ) -> Result<StockLoad, JournalError> {
        let at = now();
        self.lock().execute(
            "INSERT INTO stock_loads (at, product, count, batch, actor, approver) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            params![at, product, count, batch, actor, approver],
        )?;
        Ok(StockLoad {
            at,
            product: product.to_string(),
            count,
            batch: batch.to_string(),
            actor: actor.to_string(),
            approver: approver.map(str::to_string),
        })
    }

    /// Stock loads in `[from, until)`, oldest first.
    pub fn stock_loads(&self, from: &str, until: &str) -> Result<Vec<StockLoad>, JournalError> {
        let conn = self.lock();
        let mut stmt = conn.prepare(
            "SELECT at, product, count, batch, actor, approver FROM stock_loads \
             WHERE at >= ?1 AND at < ?2 ORDER BY id",
        )?;
        let rows = stmt
            .query_map(params![from, until], |r| {
                Ok(StockLoad {
                    at: r.get(0)?,
                    product: r.get(1)?,
                    count: r.get(2)?,
                    batch: r.get(3)?,
                    actor: r.get(4)?,
                    approver: r.get(5)?,
                })
            })?
            .collect::<Result<_, _>>()?;
        Ok(rows)
    }

    /// Blanks loaded and cards moved per product in `[from, until)`, by product name.
    pub fn card_moves(&self, from: &str, until: &str) -> Result<Vec<CardMoves>, JournalError> {
        Ok(card_moves(&self.lock(), from, until)?)
    }

    /// Every audited move in `[from, until)`, oldest first, with the job's card facts.
    pub fn audit_rows(&self, from: &str, until: &str) -> Result<Vec<AuditRow>, JournalError> {
        let conn = self.lock();
        let mut stmt = conn.prepare(
            "SELECT t.at, t.operation_id, j.card_id, j.masked_pan, j.line, j.product, \
                    t.from_state, t.to_state, t.reason, t.actor, t.approver \
             FROM transitions t JOIN jobs j ON j.operation_id = t.operation_id \
             WHERE t.at >= ?1 AND t.at < ?2 ORDER BY t.id",
        )?;
        let raw = stmt
            .query_map(params![from, until], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, String>(2)?,
                    r.get::<_, Option<String>>(3)?,
                    r.get::<_, Option<String>>(4)?,
                    r.get::<_, Option<String>>(5)?,
                    r.get::<_, Option<String>>(6)?,
                    r.get::<_, String>(7)?,
                    r.get::<_, Option<String>>(8)?,
                    r.get::<_, String>(9)?,
                    r.get::<_, Option<String>>(10)?,
                ))
            })?
            .collect::<Result<Vec<_>, _>>()?;
        raw.into_iter()
            .map(
                |(
                    at,
                    operation_id,
                    card_id,
                    masked_pan,
                    line,
                    product,
                    from,
                    to,
                    reason,
                    actor,
                    approver,
                )| {
                    Ok(AuditRow {
                        at,
                        operation_id,
                        card_id,
                        masked_pan,
                        line,
                        product,
                        from: from.as_deref().map(parse_state).transpose()?,
                        to: parse_state(&to)?,
                        reason,
                        actor,
                        approver,
                    })
                },
            )
            .collect()
    }
}

/// States in which a card waits for staff to decide on it (make again / give up, confirm /
/// spoil, card removed): a spoil there may need dual control.
const WAITING_FOR_A_DECISION: [JobState; 3] = [
    JobState::Rejected,
    JobState::InDoubt,
    JobState::AwaitingRemoval,
];

/// Whether a job in `state`, which it entered from `came_from` (a stored state code),
/// may hold a written chip: rejected, in doubt or stuck once its chip was being written.
fn chip_written(state: JobState, came_from: Option<&str>) -> bool {
    WAITING_FOR_A_DECISION.contains(&state)
        && came_from
            .and_then(|f| f.parse::<JobState>().ok())
            .is_some_and(JobState::chip_may_be_written)
}

/// Blanks loaded and cards moved per product in `[from, until)`, on any connection to
/// the journal (the metrics scrape reads on its own).
pub fn card_moves(
    conn: &rusqlite::Connection,
    from: &str,
    until: &str,
) -> rusqlite::Result<Vec<CardMoves>> {
    let mut all: std::collections::BTreeMap<String, CardMoves> = Default::default();
    let mut stmt = conn.prepare(
        "SELECT product, SUM(count) FROM stock_loads WHERE at >= ?1 AND at < ?2 GROUP BY product",
    )?;
    for row in stmt.query_map(params![from, until], |r| {
        Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?))
    })? {
        let (product, loaded) = row?;
        all.entry(product.clone())
            .or_insert_with(|| CardMoves {
                product,
                ..Default::default()
            })
            .loaded = loaded as u64;
    }
    // A card spoiled after make-again's reject was counted when it was rejected.
    let mut stmt = conn.prepare(
        "SELECT COALESCE(j.product, 'unknown'), \
            SUM(t.to_state = 'feeding'), \
            SUM(t.from_state = 'feeding' AND t.to_state = 'waiting_for_staff'), \
            SUM(t.to_state = 'ejected'), \
            SUM(t.to_state = 'rejected' OR (t.to_state = 'spoiled' AND COALESCE(t.from_state, '') <> 'rejected')) \
         FROM transitions t JOIN jobs j ON j.operation_id = t.operation_id \
         WHERE t.at >= ?1 AND t.at < ?2 \
           AND t.to_state IN ('feeding', 'waiting_for_staff', 'ejected', 'rejected', 'spoiled') \
         GROUP BY 1",
    )?;
    for row in stmt.query_map(params![from, until], |r| {
        Ok((
            r.get::<_, String>(0)?,
            r.get::<_, i64>(1)?,
            r.get::<_, i64>(2)?,
            r.get::<_, i64>(3)?,
            r.get::<_, i64>(4)?,
        ))
    })? {
        let (product, fed, empty, issued, spoiled) = row?;
        let m = all.entry(product.clone()).or_insert_with(|| CardMoves {
            product,
            ..Default::default()
        });
        m.fed = fed as u64;
        m.feeder_empty = empty as u64;
        m.issued = issued as u64;
        m.spoiled = spoiled as u64;
    }
    Ok(all.into_values().collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::journal::NewJob;

    fn job(j: &Journal, op: &str) {
        j.insert_order(&NewJob {
            operation_id: op.into(),
            issuer_id: "iss".into(),
            card_id: format!("card-{op}"),
            perso_station: "st".into(),
            order_json: serde_json::json!({}),
        })
        .unwrap();
        j.transition(op, JobState::Validated, None).unwrap();
        j.set_card_facts(op, "476173******0010", "VISA-DEBIT", "JOHN DOE")
            .unwrap();
        j.transition(op, JobState::WaitingForStaff, None).unwrap();
    }

    /// Two cards fed on line-1 and then moved to `to` with `reason`: `written` after its
    /// chip was personalized, `blank` from the chip station before any write.
    fn fed_then(j: &Journal, to: JobState, reason: &str) {
        for (op, written) in [("written", true), ("blank", false)] {
            job(j, op);
            j.feed(op, "line-1", "amartin").unwrap();
            j.transition(op, JobState::AtChipStation, None).unwrap();
            if written {
                j.transition(op, JobState::Personalizing, None).unwrap();
            }
            j.transition(op, to, Some(reason)).unwrap();
        }
    }

    #[test]
    fn a_card_stuck_in_the_printer_after_its_chip_was_written_needs_dual_control() {
        let j = Journal::open_in_memory().unwrap();
        fed_then(&j, JobState::AwaitingRemoval, "reject failed");
        assert!(j.chip_written("written").unwrap());
        assert!(!j.chip_written("blank").unwrap());
        let spoiled = j.card_removed("written", "amartin", Some("bsup")).unwrap();
        assert_eq!(spoiled.state, JobState::Spoiled);
        let last = j.history("written").unwrap().pop().unwrap();
        assert_eq!(last.approver.as_deref(), Some("bsup"));
    }

    #[test]
    fn the_queue_tells_in_one_read_which_cards_need_dual_control() {
        let j = Journal::open_in_memory().unwrap();
        fed_then(&j, JobState::Rejected, "jam");
        job(&j, "waiting");
        let queue = j.queue(10).unwrap();
        let written: Vec<_> = queue
            .iter()
            .map(|(job, w)| (job.operation_id.as_str(), *w))
            .collect();
        assert_eq!(
            written,
            [("waiting", false), ("blank", false), ("written", true)]
        );
        for (job, w) in &queue {
            assert_eq!(j.chip_written(&job.operation_id).unwrap(), *w);
        }
    }

    #[test]
    fn stock_loads_cannot_be_changed_or_removed() {
        let j = Journal::open_in_memory().unwrap();
        j.record_stock_load("VISA-DEBIT", 50, "LOT-7", "sup", None)
            .unwrap();
        let conn = j.lock();
        assert!(conn
            .execute("UPDATE stock_loads SET count = 5", [])
            .is_err());
        assert!(conn.execute("DELETE FROM stock_loads", []).is_err());
    }

    #[test]
    fn a_rejected_card_made_again_counts_one_spoiled_and_one_issued() {
        let j = Journal::open_in_memory().unwrap();
        j.record_stock_load("VISA-DEBIT", 10, "LOT-7", "sup", None)
            .unwrap();
        job(&j, "op1");
        j.feed("op1", "line-1", "amartin").unwrap();
        j.transition("op1", JobState::AtChipStation, None).unwrap();
        j.transition("op1", JobState::Rejected, Some("PRN_JAM: jam"))
            .unwrap();
        let again = j.make_again("op1", "make again", "amartin", None).unwrap();
        assert_eq!(again.attempt, 2);
        j.feed("op1", "line-1", "amartin").unwrap();
        for s in [
            JobState::AtChipStation,
            JobState::Personalizing,
            JobState::Verifying,
            JobState::Printing,
            JobState::EncodingStripe,
            JobState::Ejecting,
        ] {
            j.transition("op1", s, None).unwrap();
        }
        j.eject("op1", 10, 1.0).unwrap();
        let m = &j.card_moves(BEGINNING, END).unwrap()[0];
        assert_eq!(
            (m.loaded, m.used(), m.issued, m.spoiled),
            (10, 2, 1, 1),
            "{m:?}"
        );
    }

    #[test]
    fn a_feeder_found_empty_used_no_blank() {
        let j = Journal::open_in_memory().unwrap();
        job(&j, "op1");
        j.feed("op1", "line-1", "amartin").unwrap();
        j.transition("op1", JobState::WaitingForStaff, Some("feeder empty"))
            .unwrap();
        let m = &j.card_moves(BEGINNING, END).unwrap()[0];
        assert_eq!((m.fed, m.used()), (1, 0));
    }

    #[test]
    fn audit_rows_carry_actor_approver_and_card_facts() {
        let j = Journal::open_in_memory().unwrap();
        job(&j, "op1");
        j.transition_approved(
            "op1",
            JobState::Cancelled,
            Some("cancelled by staff"),
            "amartin",
            Some("bnoor"),
        )
        .unwrap();
        let rows = j.audit_rows(BEGINNING, END).unwrap();
        let last = rows.last().unwrap();
        assert_eq!(last.to, JobState::Cancelled);
        assert_eq!(last.from, Some(JobState::WaitingForStaff));
        assert_eq!(
            (last.actor.as_str(), last.approver.as_deref()),
            ("amartin", Some("bnoor"))
        );
        assert_eq!(last.masked_pan.as_deref(), Some("476173******0010"));
        assert_eq!(rows[0].from, None);
    }
}
