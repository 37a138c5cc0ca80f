//! The durable journal: one row per job keyed by operationId, an append-only audit
//! of transitions, and the outbox of status reports for the hub.
//!
//! SQLite in WAL mode with `synchronous=FULL`: when [`Journal::transition`] returns,
//! the new state is on disk. The pipeline calls it *before* the device step the new
//! state authorizes, so after any crash the journal tells where every card can be.
//!
//! No clear card data is ever written here: the order is kept with its
//! `encryptedData` still encrypted (and purged when the job ends, per retention),
//! and only a masked PAN is stored.

pub mod counter;
pub mod engineering;
mod instance;
mod migrations;
pub mod state;
mod thread;
pub mod upkeep;

pub use instance::{InstanceLock, LockError};
pub use thread::JournalThread;

use std::path::Path;
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use rusqlite::{params, Connection, OptionalExtension, Transaction};
use serde::Serialize;
use thiserror::Error;
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use self::state::{D1Status, JobState};

/// Why a journal operation failed.
#[derive(Debug, Error)]
pub enum JournalError {
    /// SQLite refused or failed.
    #[error("journal database error: {0}")]
    Db(#[from] rusqlite::Error),
    /// No job has this operationId.
    #[error("no job with operationId '{0}'")]
    NotFound(String),
    /// The state machine does not allow this move.
    #[error("job '{operation_id}' cannot go from {from} to {to}")]
    IllegalTransition {
        /// The job.
        operation_id: String,
        /// Its current state.
        from: JobState,
        /// The refused target.
        to: JobState,
    },
    /// A value that must never be stored (e.g. an unmasked PAN) was refused.
    #[error("refused to store {0}")]
    Refused(&'static str),
    /// The database was written by a newer agent.
    #[error("journal schema version {found} is newer than this agent ({supported})")]
    TooNew {
        /// Version on disk.
        found: i64,
        /// Latest version this build knows.
        supported: i64,
    },
    /// A stored row could not be read back.
    #[error("journal row unreadable: {0}")]
    Corrupt(String),
}

impl JournalError {
    /// Stable code for logs and the console.
    pub fn code(&self) -> &'static str {
        match self {
            JournalError::Db(_) => "JRN_DB",
            JournalError::NotFound(_) => "JRN_NOT_FOUND",
            JournalError::IllegalTransition { .. } => "JRN_ILLEGAL_TRANSITION",
            JournalError::Refused(_) => "JRN_REFUSED",
            JournalError::TooNew { .. } => "JRN_TOO_NEW",
            JournalError::Corrupt(_) => "JRN_CORRUPT",
        }
    }
}

/// How long ended jobs keep their (still encrypted) card data.
#[derive(Debug, Clone, Copy, Default)]
pub struct JournalOptions {
    /// Zero purges `encryptedData` in the same transaction that ends the job.
    pub retention: Duration,
}

/// A new order to journal.
#[derive(Debug, Clone)]
pub struct NewJob {
    /// D1 operationId (the job key).
    pub operation_id: String,
    /// Issuer.
    pub issuer_id: String,
    /// Card.
    pub card_id: String,
    /// persoStation the order is addressed to.
    pub perso_station: String,
    /// The order body, `encryptedData` still encrypted.
    pub order_json: serde_json::Value,
}

/// What inserting an order did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InsertOutcome {
    /// A new job was created.
    Created,
    /// The order repeats a job that exists (same operationId, or same card while pending/done).
    Duplicate {
        /// The job that already exists.
        existing_operation_id: String,
        /// Its state.
        state: JobState,
    },
}

/// A journaled job.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Job {
    /// D1 operationId.
    pub operation_id: String,
    /// Issuer.
    pub issuer_id: String,
    /// Card.
    pub card_id: String,
    /// persoStation.
    pub perso_station: String,
    /// Current state.
    pub state: JobState,
    /// The order, `encryptedData` encrypted or purged (null).
    pub order_json: serde_json::Value,
    /// Reason of the last transition, if any.
    pub reason: Option<String>,
    /// Masked PAN once known.
    pub masked_pan: Option<String>,
    /// APDUs exchanged with the chip.
    pub apdu_count: u32,
    /// Seconds from feed to eject.
    pub seconds: Option<f64>,
    /// The printer/encoder pair that took the card, once fed.
    pub line: Option<String>,
    /// Card product (blank stock) once the order is validated.
    pub product: Option<String>,
    /// Cardholder name as printed, once the order is validated.
    pub holder: Option<String>,
    /// Which attempt at the card this is (1, then one more per make again).
    pub attempt: u32,
    /// When the order was received (RFC 3339).
    pub created_at: String,
    /// Last change (RFC 3339).
    pub updated_at: String,
}

/// One status report waiting for (or past) delivery to the hub.
#[derive(Debug, Clone, PartialEq)]
pub struct OutboxEvent {
    /// Operation.
    pub operation_id: String,
    /// Per-operation sequence from 1.
    pub sequence: u64,
    /// D1 `details.status`.
    pub status: D1Status,
    /// Why, on exceptions.
    pub reason: Option<String>,
    /// When (RFC 3339).
    pub time: String,
    /// Masked PAN at the time of the event.
    pub masked_pan: Option<String>,
    /// APDUs exchanged so far.
    pub apdu_count: u32,
}

/// What a transition writes besides the state.
enum Extra<'a> {
    Nothing,
    Metrics(u32, f64),
    Line(&'a str),
    NextAttempt,
}

/// One row of a job's audit trail.
#[derive(Debug, Clone, Serialize)]
pub struct Transition {
    /// Previous state code (none for the first row).
    pub from: Option<String>,
    /// New state code.
    pub to: String,
    /// When (RFC 3339).
    pub at: String,
    /// Why, if given.
    pub reason: Option<String>,
    /// `agent` or the staff member.
    pub actor: String,
    /// The second staff member who approved it (dual control), if any.
    pub approver: Option<String>,
}

/// Who made a move: the actor, and the approver under dual control.
#[derive(Clone, Copy)]
struct Who<'a> {
    actor: &'a str,
    approver: Option<&'a str>,
}

impl<'a> Who<'a> {
    fn alone(actor: &'a str) -> Self {
        Who {
            actor,
            approver: None,
        }
    }

    fn agent() -> Self {
        Who::alone("agent")
    }
}

/// How staff resolved a job left in doubt by a restart.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resolution {
    /// The card in the output tray is good.
    Confirm,
    /// The card is spoiled (staff put it in the spoiled box).
    Spoil,
}

/// The journal. Cheap to share behind an `Arc`; calls are serialized on one connection.
pub struct Journal {
    conn: Mutex<Connection>,
    options: JournalOptions,
}

fn now() -> String {
    OffsetDateTime::now_utc()
        .format(&Rfc3339)
        .expect("RFC 3339 formatting of the current time")
}

const JOB_COLUMNS: &str = "operation_id, issuer_id, card_id, perso_station, state, order_json, \
     reason, masked_pan, apdu_count, seconds, created_at, updated_at, line, product, holder, attempt";
/// How many columns [`JOB_COLUMNS`] names (the index of a column selected after them).
const JOB_COLUMN_COUNT: usize = 16;

fn job_from_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<(Job, String)> {
    let state: String = row.get(4)?;
    let order: String = row.get(5)?;
    Ok((
        Job {
            operation_id: row.get(0)?,
            issuer_id: row.get(1)?,
            card_id: row.get(2)?,
            perso_station: row.get(3)?,
            state: JobState::Received,
            order_json: serde_json::from_str(&order).unwrap_or(serde_json::Value::Null),
            reason: row.get(6)?,
            masked_pan: row.get(7)?,
            apdu_count: row.get(8)?,
            seconds: row.get(9)?,
            created_at: row.get(10)?,
            updated_at: row.get(11)?,
            line: row.get(12)?,
            product: row.get(13)?,
            holder: row.get(14)?,
            attempt: row.get(15)?,
        },
        state,
    ))
}

fn finish_job((mut job, state): (Job, String)) -> Result<Job, JournalError> {
    job.state = state
        .parse()
        .map_err(|e: self::state::UnknownState| JournalError::Corrupt(e.to_string()))?;
    Ok(job)
}

impl Journal {
    /// Opens (creating and migrating as needed) the journal at `path` with no retention.
    pub fn open(path: &Path) -> Result<Self, JournalError> {
        Self::open_with(path, JournalOptions::default())
    }

    /// Opens the journal with the given options.
    pub fn open_with(path: &Path, options: JournalOptions) -> Result<Self, JournalError> {
        if let Some(dir) = path.parent() {
            if !dir.as_os_str().is_empty() {
                let _ = std::fs::create_dir_all(dir);
            }
        }
        let conn = Connection::open(path)?;
        Self::setup(conn, options)
    }

    /// A private in-memory journal for tests.
    pub fn open_in_memory() -> Result<Self, JournalError> {
        Self::setup(Connection::open_in_memory()?, JournalOptions::default())
    }

    fn setup(conn: Connection, options: JournalOptions) -> Result<Self, JournalError> {
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "FULL")?;
        conn.pragma_update(None, "foreign_keys", "ON")?;
        // Purged ciphertext is overwritten, not left in free pages.
        conn.pragma_update(None, "secure_delete", "ON")?;
        conn.busy_timeout(Duration::from_secs(5))?;
        migrations::apply(&conn)?;
        Ok(Journal {
            conn: Mutex::new(conn),
            options,
        })
    }

    fn lock(&self) -> MutexGuard<'_, Connection> {
        // A panic while holding the lock cannot leave SQLite half-written (transactions
        // roll back), so the connection stays usable.
        self.conn.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Runs `f` on the journal's connection, for the tables another module owns in the
    /// journal (the Pismo counter requests); call it on the journal thread.
    pub(crate) fn with_connection<R>(&self, f: impl FnOnce(&mut Connection) -> R) -> R {
        f(&mut self.lock())
    }

    /// Reads a pragma, for diagnostics and tests.
    pub fn pragma(&self, name: &str) -> Result<String, JournalError> {
        let conn = self.lock();
        let v: rusqlite::types::Value =
            conn.query_row(&format!("PRAGMA {name}"), [], |r| r.get(0))?;
        Ok(match v {
            rusqlite::types::Value::Integer(i) => i.to_string(),
            rusqlite::types::Value::Text(t) => t,
            other => format!("{other:?}"),
        })
    }

    /// Journals a new order, or says which existing job it repeats.
    pub fn insert_order(&self, job: &NewJob) -> Result<InsertOutcome, JournalError> {
        let mut conn = self.lock();
        let tx = conn.transaction()?;
        if let Some(state) = tx
            .query_row(
                "SELECT state FROM jobs WHERE operation_id = ?1",
                [&job.operation_id],
                |r| r.get::<_, String>(0),
            )
            .optional()?
        {
            return Ok(InsertOutcome::Duplicate {
                existing_operation_id: job.operation_id.clone(),
                state: parse_state(&state)?,
            });
        }
        let mut stmt = tx.prepare(
            "SELECT operation_id, state FROM jobs WHERE issuer_id = ?1 AND card_id = ?2 \
             ORDER BY created_at DESC",
        )?;
        let same_card: Vec<(String, String)> = stmt
            .query_map(params![job.issuer_id, job.card_id], |r| {
                Ok((r.get(0)?, r.get(1)?))
            })?
            .collect::<Result<_, _>>()?;
        drop(stmt);
        for (op, state) in same_card {
            let state = parse_state(&state)?;
            if state.blocks_reorder() {
                return Ok(InsertOutcome::Duplicate {
                    existing_operation_id: op,
                    state,
                });
            }
        }
        let at = now();
        tx.execute(
            "INSERT INTO jobs (operation_id, issuer_id, card_id, perso_station, state, order_json, \
             apdu_count, created_at, updated_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, 0, ?7, ?7)",
            params![
                job.operation_id,
                job.issuer_id,
                job.card_id,
                job.perso_station,
                JobState::Received.as_str(),
                job.order_json.to_string(),
                at
            ],
        )?;
        tx.execute(
            "INSERT INTO transitions (operation_id, from_state, to_state, at, reason, actor) \
             VALUES (?1, NULL, ?2, ?3, NULL, 'agent')",
            params![job.operation_id, JobState::Received.as_str(), at],
        )?;
        push_event(
            &tx,
            &job.operation_id,
            &D1Status::CardProdRequested,
            None,
            &at,
        )?;
        tx.commit()?;
        Ok(InsertOutcome::Created)
    }

    /// Moves a job to `to`, durably, with its audit row and (when the reported D1
    /// status changes) its next outbox event — all in one transaction.
    ///
    /// Contract: the caller performs the device step that `to` authorizes only after
    /// this returns `Ok`.
    pub fn transition(
        &self,
        operation_id: &str,
        to: JobState,
        reason: Option<&str>,
    ) -> Result<Job, JournalError> {
        self.transition_by(operation_id, to, reason, "agent")
    }

    /// The card left through the output hopper: `Ejected`, with the production
    /// figures of the job, in one durable write (one fsync on the printer's time).
    pub fn eject(
        &self,
        operation_id: &str,
        apdu_count: u32,
        seconds: f64,
    ) -> Result<Job, JournalError> {
        self.write_transition(
            operation_id,
            JobState::Ejected,
            None,
            Who::agent(),
            Extra::Metrics(apdu_count, seconds),
        )
    }

    /// A card is fed on `line` for this job, set going by `actor`: `Feeding` and the
    /// line in one durable write. Only one line can take a job: a second claim finds it
    /// already fed and is refused.
    pub fn feed(&self, operation_id: &str, line: &str, actor: &str) -> Result<Job, JournalError> {
        self.write_transition(
            operation_id,
            JobState::Feeding,
            None,
            Who::alone(actor),
            Extra::Line(line),
        )
    }

    /// Moves a job to `to` on behalf of `actor` (a staff id, or "agent"), audited.
    pub fn transition_by(
        &self,
        operation_id: &str,
        to: JobState,
        reason: Option<&str>,
        actor: &str,
    ) -> Result<Job, JournalError> {
        self.write_transition(operation_id, to, reason, Who::alone(actor), Extra::Nothing)
    }

    /// Moves a job to `to` on behalf of `actor` with `approver`'s second sign-in
    /// (dual control), both audited.
    pub fn transition_approved(
        &self,
        operation_id: &str,
        to: JobState,
        reason: Option<&str>,
        actor: &str,
        approver: Option<&str>,
    ) -> Result<Job, JournalError> {
        self.write_transition(
            operation_id,
            to,
            reason,
            Who { actor, approver },
            Extra::Nothing,
        )
    }

    /// Make again: a rejected card's order goes back to staff as a new attempt (a new
    /// blank will be fed), in one durable write with its audit row.
    pub fn make_again(
        &self,
        operation_id: &str,
        reason: &str,
        actor: &str,
        approver: Option<&str>,
    ) -> Result<Job, JournalError> {
        self.write_transition(
            operation_id,
            JobState::WaitingForStaff,
            Some(reason),
            Who { actor, approver },
            Extra::NextAttempt,
        )
    }

    /// Records what the order says about the card once it is validated: masked PAN
    /// (anything that could be a clear PAN is refused), card product and printed name.
    pub fn set_card_facts(
        &self,
        operation_id: &str,
        masked: &str,
        product: &str,
        holder: &str,
    ) -> Result<(), JournalError> {
        self.set_masked_pan(operation_id, masked)?;
        self.lock().execute(
            "UPDATE jobs SET product = ?2, holder = ?3 WHERE operation_id = ?1",
            params![operation_id, product, holder],
        )?;
        Ok(())
    }

    /// Moves a job to `to` on behalf of `actor` (and `approver`), and `also` writes in
    /// the same transaction: both are durable, or neither (an error from `also` rolls
    /// the move back).
    pub fn transition_approved_with<R, E: From<JournalError>>(
        &self,
        operation_id: &str,
        to: JobState,
        reason: Option<&str>,
        actor: &str,
        approver: Option<&str>,
        also: impl FnOnce(&Transaction<'_>) -> Result<R, E>,
    ) -> Result<(Job, R), E> {
        let mut conn = self.lock();
        let tx = conn.transaction().map_err(JournalError::from)?;
        self.write_moves(
            &tx,
            operation_id,
            to,
            reason,
            Who { actor, approver },
            Extra::Nothing,
        )?;
        let r = also(&tx)?;
        tx.commit().map_err(JournalError::from)?;
        drop(conn);
        let job = self
            .job(operation_id)?
            .ok_or_else(|| JournalError::NotFound(operation_id.to_string()))?;
        Ok((job, r))
    }

    fn write_transition(
        &self,
        operation_id: &str,
        to: JobState,
        reason: Option<&str>,
        who: Who<'_>,
        extra: Extra<'_>,
    ) -> Result<Job, JournalError> {
        let mut conn = self.lock();
        let tx = conn.transaction()?;
        self.write_moves(&tx, operation_id, to, reason, who, extra)?;
        tx.commit()?;
        drop(conn);
        self.job(operation_id)?
            .ok_or_else(|| JournalError::NotFound(operation_id.to_string()))
    }

    /// The writes of one move (state, audit row, extra, outbox event, purge), uncommitted.
    fn write_moves(
        &self,
        tx: &Transaction<'_>,
        operation_id: &str,
        to: JobState,
        reason: Option<&str>,
        who: Who<'_>,
        extra: Extra<'_>,
    ) -> Result<(), JournalError> {
        let from: String = tx
            .query_row(
                "SELECT state FROM jobs WHERE operation_id = ?1",
                [operation_id],
                |r| r.get(0),
            )
            .optional()?
            .ok_or_else(|| JournalError::NotFound(operation_id.to_string()))?;
        let from = parse_state(&from)?;
        if !from.can_go_to(to) {
            return Err(JournalError::IllegalTransition {
                operation_id: operation_id.to_string(),
                from,
                to,
            });
        }
        let at = now();
        tx.execute(
            "UPDATE jobs SET state = ?2, reason = ?3, updated_at = ?4 WHERE operation_id = ?1",
            params![operation_id, to.as_str(), reason, at],
        )?;
        tx.execute(
            "INSERT INTO transitions (operation_id, from_state, to_state, at, reason, actor, approver) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            params![
                operation_id,
                from.as_str(),
                to.as_str(),
                at,
                reason,
                who.actor,
                who.approver
            ],
        )?;
        match extra {
            Extra::Nothing => {}
            Extra::NextAttempt => {
                tx.execute(
                    "UPDATE jobs SET attempt = attempt + 1 WHERE operation_id = ?1",
                    [operation_id],
                )?;
            }
            Extra::Metrics(apdu_count, seconds) => {
                tx.execute(
                    "UPDATE jobs SET apdu_count = ?2, seconds = ?3 WHERE operation_id = ?1",
                    params![operation_id, apdu_count, seconds],
                )?;
            }
            Extra::Line(line) => {
                tx.execute(
                    "UPDATE jobs SET line = ?2 WHERE operation_id = ?1",
                    params![operation_id, line],
                )?;
            }
        }
        if let Some(status) = to.reported_status() {
            push_event(tx, operation_id, &status, reason, &at)?;
        }
        if !to.card_data_needed() && self.options.retention.is_zero() {
            purge_one(tx, operation_id)?;
        }
        Ok(())
    }

    /// The job with this operationId.
    pub fn job(&self, operation_id: &str) -> Result<Option<Job>, JournalError> {
        let conn = self.lock();
        let row = conn
            .query_row(
                &format!("SELECT {JOB_COLUMNS} FROM jobs WHERE operation_id = ?1"),
                [operation_id],
                job_from_row,
            )
            .optional()?;
        row.map(finish_job).transpose()
    }

    /// Jobs in any of `states`, oldest first.
    ///
    /// Asked by the index on `state`: the producer asks every loop, and a branch's
    /// journal keeps years of ended jobs that must not be read each time.
    pub fn jobs(&self, states: &[JobState]) -> Result<Vec<Job>, JournalError> {
        if states.is_empty() {
            return Ok(Vec::new());
        }
        let conn = self.lock();
        let marks = vec!["?"; states.len()].join(", ");
        let mut stmt = conn.prepare(&format!(
            "SELECT {JOB_COLUMNS} FROM jobs WHERE state IN ({marks}) ORDER BY created_at, rowid"
        ))?;
        let rows = stmt
            .query_map(
                rusqlite::params_from_iter(states.iter().map(|s| s.as_str())),
                job_from_row,
            )?
            .collect::<Result<Vec<_>, _>>()?;
        rows.into_iter().map(finish_job).collect()
    }

    /// The most recent `limit` jobs, newest first.
    pub fn all_jobs(&self, limit: u32) -> Result<Vec<Job>, JournalError> {
        let conn = self.lock();
        let mut stmt = conn.prepare(&format!(
            "SELECT {JOB_COLUMNS} FROM jobs ORDER BY created_at DESC, rowid DESC LIMIT ?1"
        ))?;
        let rows = stmt
            .query_map([limit], job_from_row)?
            .collect::<Result<Vec<_>, _>>()?;
        rows.into_iter().map(finish_job).collect()
    }

    /// After a restart: every job found with a card in the printer becomes `InDoubt`
    /// (returned, for staff); queued jobs stay queued. Nothing is re-run.
    pub fn recover_after_restart(&self) -> Result<Vec<Job>, JournalError> {
        let in_printer: Vec<JobState> = self::state::ALL_STATES
            .into_iter()
            .filter(|s| s.is_hardware())
            .collect();
        let hardware = self.jobs(&in_printer)?;
        hardware
            .iter()
            .map(|j| {
                self.transition(
                    &j.operation_id,
                    JobState::InDoubt,
                    Some("agent restarted while the card was in the printer"),
                )
            })
            .collect()
    }

    /// Records the staff decision on a job left in doubt.
    pub fn resolve_in_doubt(
        &self,
        operation_id: &str,
        resolution: Resolution,
        staff: &str,
    ) -> Result<Job, JournalError> {
        self.resolve_in_doubt_approved(operation_id, resolution, staff, None)
    }

    /// Records the staff decision on a job left in doubt, with the approver's second
    /// sign-in when one was needed (a spoil after the chip was written).
    pub fn resolve_in_doubt_approved(
        &self,
        operation_id: &str,
        resolution: Resolution,
        staff: &str,
        approver: Option<&str>,
    ) -> Result<Job, JournalError> {
        let (to, reason) = match resolution {
            Resolution::Confirm => (
                JobState::Ejected,
                "staff confirmed the card after a restart",
            ),
            Resolution::Spoil => (JobState::Spoiled, "staff spoiled the card after a restart"),
        };
        let current = self
            .job(operation_id)?
            .ok_or_else(|| JournalError::NotFound(operation_id.to_string()))?;
        if current.state != JobState::InDoubt {
            return Err(JournalError::IllegalTransition {
                operation_id: operation_id.to_string(),
                from: current.state,
                to,
            });
        }
        // Only a card whose chip was verified and whose stripe was read back (it was
        // being ejected) can be good: one caught earlier may be blank somewhere.
        let went_in_doubt_from = self
            .history(operation_id)?
            .into_iter()
            .rev()
            .find(|t| t.to == JobState::InDoubt.as_str())
            .and_then(|t| t.from);
        if resolution == Resolution::Confirm
            && went_in_doubt_from.as_deref() != Some(JobState::Ejecting.as_str())
        {
            return Err(JournalError::Refused(
                "to confirm a card whose chip or stripe was not checked before the restart: spoil it",
            ));
        }
        self.transition_approved(operation_id, to, Some(reason), staff, approver)
    }

    /// Staff took out by hand a spoiled card the reject box did not take: the job ends
    /// `Spoiled` under their id and its line may go on.
    pub fn card_removed(
        &self,
        operation_id: &str,
        staff: &str,
        approver: Option<&str>,
    ) -> Result<Job, JournalError> {
        let current = self
            .job(operation_id)?
            .ok_or_else(|| JournalError::NotFound(operation_id.to_string()))?;
        if current.state != JobState::AwaitingRemoval {
            return Err(JournalError::IllegalTransition {
                operation_id: operation_id.to_string(),
                from: current.state,
                to: JobState::Spoiled,
            });
        }
        let reason = match current.reason {
            Some(r) => format!("{r}; staff removed the card from the printer"),
            None => "staff removed the card from the printer".to_string(),
        };
        self.transition_approved(
            operation_id,
            JobState::Spoiled,
            Some(&reason),
            staff,
            approver,
        )
    }

    /// Copies the write-ahead log into the database and empties it, so purged card data
    /// does not survive in the log either. Returns whether the log was fully emptied
    /// (a reader elsewhere can hold part of it back until the next time).
    pub fn checkpoint(&self) -> Result<bool, JournalError> {
        let busy: i64 = self
            .lock()
            .query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |r| r.get(0))?;
        Ok(busy == 0)
    }

    /// The retention period for ended jobs' card data.
    pub fn retention(&self) -> Duration {
        self.options.retention
    }

    /// Audit trail of a job, oldest first.
    pub fn history(&self, operation_id: &str) -> Result<Vec<Transition>, JournalError> {
        let conn = self.lock();
        let mut stmt = conn.prepare(
            "SELECT from_state, to_state, at, reason, actor, approver FROM transitions \
             WHERE operation_id = ?1 ORDER BY id",
        )?;
        let rows = stmt
            .query_map([operation_id], |r| {
                Ok(Transition {
                    from: r.get(0)?,
                    to: r.get(1)?,
                    at: r.get(2)?,
                    reason: r.get(3)?,
                    actor: r.get(4)?,
                    approver: r.get(5)?,
                })
            })?
            .collect::<Result<_, _>>()?;
        Ok(rows)
    }

    /// Undelivered, unparked events: per operation only its lowest undelivered
    /// sequence and those after it in order, operations oldest first.
    pub fn pending_events(&self, limit: usize) -> Result<Vec<OutboxEvent>, JournalError> {
        let conn = self.lock();
        // An operation with a parked event sends nothing after it: order per operation
        // matters more than delivery of later events.
        let mut stmt = conn.prepare(
            "SELECT o.operation_id, o.sequence, o.status, o.reason, o.time, o.masked_pan, \
                    o.apdu_count \
             FROM outbox o \
             WHERE o.delivered_at IS NULL \
               AND NOT EXISTS (SELECT 1 FROM outbox p WHERE p.operation_id = o.operation_id \
                               AND p.parked = 1 AND p.sequence <= o.sequence) \
             ORDER BY o.id LIMIT ?1",
        )?;
        let rows = stmt
            .query_map([limit as i64], |r| {
                Ok(OutboxEvent {
                    operation_id: r.get(0)?,
                    sequence: r.get::<_, i64>(1)? as u64,
                    status: D1Status::parse(&r.get::<_, String>(2)?),
                    reason: r.get(3)?,
                    time: r.get(4)?,
                    masked_pan: r.get(5)?,
                    apdu_count: r.get(6)?,
                })
            })?
            .collect::<Result<_, _>>()?;
        Ok(rows)
    }

    /// The hub acknowledged this event (idempotent).
    pub fn mark_delivered(&self, operation_id: &str, sequence: u64) -> Result<(), JournalError> {
        self.lock().execute(
            "UPDATE outbox SET delivered_at = COALESCE(delivered_at, ?3) \
             WHERE operation_id = ?1 AND sequence = ?2",
            params![operation_id, sequence as i64, now()],
        )?;
        Ok(())
    }

    /// The hub refused this event for good: keep it aside for a supervisor.
    pub fn mark_parked(
        &self,
        operation_id: &str,
        sequence: u64,
        error: &str,
    ) -> Result<(), JournalError> {
        self.lock().execute(
            "UPDATE outbox SET parked = 1, last_error = ?3 WHERE operation_id = ?1 AND sequence = ?2",
            params![operation_id, sequence as i64, error],
        )?;
        Ok(())
    }

    /// Puts an operation's parked events back in the queue (after the cause was fixed).
    pub fn unpark(&self, operation_id: &str) -> Result<(), JournalError> {
        self.lock().execute(
            "UPDATE outbox SET parked = 0 WHERE operation_id = ?1",
            [operation_id],
        )?;
        Ok(())
    }

    /// Number of events parked (for alerts and the console).
    pub fn parked_count(&self) -> Result<u64, JournalError> {
        Ok(self.lock().query_row(
            "SELECT COUNT(*) FROM outbox WHERE parked = 1 AND delivered_at IS NULL",
            [],
            |r| r.get::<_, i64>(0),
        )? as u64)
    }

    /// Stores the masked PAN of a job; anything that could be a clear PAN is refused.
    pub fn set_masked_pan(&self, operation_id: &str, masked: &str) -> Result<(), JournalError> {
        if !station_emv::card_data::looks_masked(masked) {
            return Err(JournalError::Refused("a PAN that is not masked"));
        }
        let n = self.lock().execute(
            "UPDATE jobs SET masked_pan = ?2 WHERE operation_id = ?1",
            params![operation_id, masked],
        )?;
        if n == 0 {
            return Err(JournalError::NotFound(operation_id.to_string()));
        }
        Ok(())
    }

    /// Removes `encryptedData` from ended jobs whose last change is older than the retention.
    pub fn purge_card_data(&self, now: OffsetDateTime) -> Result<usize, JournalError> {
        let cutoff = (now - self.options.retention)
            .format(&Rfc3339)
            .expect("RFC 3339");
        let mut conn = self.lock();
        let tx = conn.transaction()?;
        let ended: Vec<String> = {
            let mut stmt = tx.prepare(
                "SELECT operation_id FROM jobs WHERE state IN ('handed_over','spoiled','failed','cancelled','ejected') \
                 AND updated_at <= ?1 AND json_extract(order_json, '$.encryptedData') IS NOT NULL",
            )?;
            let rows = stmt
                .query_map([cutoff], |r| r.get(0))?
                .collect::<Result<_, _>>()?;
            rows
        };
        for op in &ended {
            purge_one(&tx, op)?;
        }
        tx.commit()?;
        Ok(ended.len())
    }
}

fn parse_state(s: &str) -> Result<JobState, JournalError> {
    s.parse()
        .map_err(|e: self::state::UnknownState| JournalError::Corrupt(e.to_string()))
}

fn push_event(
    tx: &Transaction<'_>,
    operation_id: &str,
    status: &D1Status,
    reason: Option<&str>,
    at: &str,
) -> Result<(), JournalError> {
    tx.execute(
        "INSERT INTO outbox (operation_id, sequence, status, reason, time, masked_pan, apdu_count, parked) \
         SELECT ?1, COALESCE(MAX(o.sequence), 0) + 1, ?2, ?3, ?4, j.masked_pan, j.apdu_count, 0 \
         FROM jobs j LEFT JOIN outbox o ON o.operation_id = j.operation_id \
         WHERE j.operation_id = ?1",
        params![operation_id, status.as_str(), reason, at],
    )?;
    Ok(())
}

fn purge_one(tx: &Transaction<'_>, operation_id: &str) -> Result<(), JournalError> {
    tx.execute(
        "UPDATE jobs SET order_json = json_set(order_json, '$.encryptedData', json('null')) \
         WHERE operation_id = ?1 AND json_type(order_json, '$.encryptedData') IS NOT NULL",
        [operation_id],
    )?;
    Ok(())
}

#[cfg(test)]
mod tests;
