//! The Pismo sandbox's SQLite database (`pismo.sqlite` in the state directory):
//! cards, idempotency keys, access tokens (hashed), embossing triggers and the
//! event feed. Card data is kept only as a JWE sealed to the hub key.

use crate::sandbox::SandboxError;
use rusqlite::{params, Connection, OptionalExtension};
use serde_json::Value;
use std::path::Path;
use std::sync::Mutex;

/// Card statuses a card may be resent for embossing in (on-demand customers).
pub const RESENDABLE: &[&str] = &["CREATED", "NORMAL", "BLOCKED", "PENDING", "WARNING"];

/// A card as the sandbox keeps it.
#[derive(Debug, Clone, PartialEq)]
pub struct SandboxCard {
    /// Pismo card id.
    pub id: i64,
    /// Owner.
    pub customer_id: i64,
    /// `PLASTIC`, `VIRTUAL`, …
    pub card_type: String,
    /// Alias (`PLASTIC` for plastic cards).
    pub name: String,
    /// Card status (`CREATED` at first).
    pub status: String,
    /// Embossed name, when given.
    pub printed_name: Option<String>,
    /// Embossing group.
    pub embossing_group: String,
    /// The create response body.
    pub response: Value,
    /// Unix milliseconds when the PCI data is ready.
    pub ready_at_ms: i64,
    /// The ingress event was emitted: the card may be added to embossing.
    pub ingress_done: bool,
    /// Waiting for the next run of its group.
    pub queued: bool,
    /// Runs that carried this card.
    pub embossed_count: i64,
    /// Resent and not yet carried by a run.
    pub reembossing_pending: bool,
    /// Resends so far.
    pub reembossing_counter: i64,
    /// Masked PAN (after ingress).
    pub masked_pan: Option<String>,
    /// Product from `metadata.product`.
    pub product: Option<String>,
}

/// A start-embossing call waiting for the worker.
#[derive(Debug, Clone, PartialEq)]
pub struct Trigger {
    /// Row id.
    pub id: i64,
    /// Configuration to run.
    pub config_id: String,
    /// Only these cards, when not empty.
    pub cards: Vec<i64>,
    /// Only these programs, when not empty.
    pub programs: Vec<i64>,
}

/// A stored event with its feed position.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredEvent {
    /// Feed position.
    pub seq: i64,
    /// The documented envelope.
    pub envelope: Value,
}

const SCHEMA: &str = "
PRAGMA journal_mode = WAL;
CREATE TABLE IF NOT EXISTS cards (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    customer_id INTEGER NOT NULL,
    card_type TEXT NOT NULL,
    name TEXT NOT NULL,
    status TEXT NOT NULL,
    printed_name TEXT,
    embossing_group TEXT NOT NULL,
    response TEXT NOT NULL,
    ready_at_ms INTEGER NOT NULL,
    ingress_done INTEGER NOT NULL DEFAULT 0,
    queued INTEGER NOT NULL DEFAULT 0,
    embossed_count INTEGER NOT NULL DEFAULT 0,
    reembossing_pending INTEGER NOT NULL DEFAULT 0,
    reembossing_counter INTEGER NOT NULL DEFAULT 0,
    card_data_jwe TEXT,
    masked_pan TEXT,
    product TEXT,
    created_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS idempotency (
    key TEXT PRIMARY KEY,
    card_id INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS tokens (
    token_hash TEXT PRIMARY KEY,
    expires_ms INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS triggers (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    config_id TEXT NOT NULL,
    cards TEXT NOT NULL,
    programs TEXT NOT NULL,
    done INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS group_runs (
    embossing_group TEXT PRIMARY KEY,
    last_run_ms INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS events (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    event_id TEXT NOT NULL UNIQUE,
    envelope TEXT NOT NULL
);
";

const CARD_COLUMNS: &str =
    "id, customer_id, card_type, name, status, printed_name, embossing_group, \
    response, ready_at_ms, ingress_done, queued, embossed_count, reembossing_pending, \
    reembossing_counter, masked_pan, product";

fn row_to_card(r: &rusqlite::Row<'_>) -> rusqlite::Result<SandboxCard> {
    let response: String = r.get(7)?;
    Ok(SandboxCard {
        id: r.get(0)?,
        customer_id: r.get(1)?,
        card_type: r.get(2)?,
        name: r.get(3)?,
        status: r.get(4)?,
        printed_name: r.get(5)?,
        embossing_group: r.get(6)?,
        response: serde_json::from_str(&response).unwrap_or(Value::Null),
        ready_at_ms: r.get(8)?,
        ingress_done: r.get::<_, i64>(9)? != 0,
        queued: r.get::<_, i64>(10)? != 0,
        embossed_count: r.get(11)?,
        reembossing_pending: r.get::<_, i64>(12)? != 0,
        reembossing_counter: r.get(13)?,
        masked_pan: r.get(14)?,
        product: r.get(15)?,
    })
}

/// A new card to store.
pub struct NewCard<'a> {
    /// Owner.
    pub customer_id: i64,
    /// Card type.
    pub card_type: &'a str,
    /// Alias.
    pub name: &'a str,
    /// Embossed name.
    pub printed_name: Option<&'a str>,
    /// Group.
    pub embossing_group: &'a str,
    /// Product from metadata.
    pub product: Option<&'a str>,
    /// When PCI data will be ready.
    pub ready_at_ms: i64,
    /// Idempotency key, if any.
    pub idempotency_key: Option<&'a str>,
}

/// What a create did.
#[derive(Debug, Clone, PartialEq)]
pub enum CreateResult {
    /// New card (201).
    Created(SandboxCard),
    /// Same idempotency key as before (200).
    Replayed(SandboxCard),
    /// An active card of that type and name exists for the customer (409).
    Conflict,
}

/// The sandbox database.
pub struct PismoStore {
    conn: Mutex<Connection>,
}

fn db(e: impl std::fmt::Display) -> SandboxError {
    SandboxError::Database(e.to_string())
}

impl PismoStore {
    /// Open (creating if needed) the database at `path`; card ids start at 100001.
    pub fn open(path: &Path) -> Result<Self, SandboxError> {
        let conn = Connection::open(path)?;
        conn.execute_batch(SCHEMA)?;
        conn.execute(
            "INSERT INTO sqlite_sequence (name, seq) SELECT 'cards', 100000
             WHERE NOT EXISTS (SELECT 1 FROM sqlite_sequence WHERE name = 'cards')",
            [],
        )?;
        Ok(PismoStore {
            conn: Mutex::new(conn),
        })
    }

    fn conn(&self) -> std::sync::MutexGuard<'_, Connection> {
        self.conn.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Keep a token (by hash) until `expires_ms`.
    pub fn add_token(&self, token_hash: &str, expires_ms: i64) -> Result<(), SandboxError> {
        let conn = self.conn();
        conn.execute(
            "DELETE FROM tokens WHERE expires_ms < ?1",
            params![now_ms()],
        )?;
        conn.execute(
            "INSERT OR REPLACE INTO tokens (token_hash, expires_ms) VALUES (?1, ?2)",
            params![token_hash, expires_ms],
        )?;
        Ok(())
    }

    /// Whether a token hash is known and not expired.
    pub fn token_valid(&self, token_hash: &str, now_ms: i64) -> Result<bool, SandboxError> {
        let exp: Option<i64> = self
            .conn()
            .query_row(
                "SELECT expires_ms FROM tokens WHERE token_hash = ?1",
                params![token_hash],
                |r| r.get(0),
            )
            .optional()?;
        Ok(exp.is_some_and(|e| e > now_ms))
    }

    /// Create a card unless the idempotency key was seen (replay) or the customer
    /// has an active card of the same type and name (conflict); emits `card-created`.
    pub fn create_card(
        &self,
        card: &NewCard<'_>,
        response: impl Fn(i64) -> Value,
        event: impl Fn(&SandboxCard) -> Value,
    ) -> Result<CreateResult, SandboxError> {
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        if let Some(key) = card.idempotency_key {
            let found: Option<i64> = tx
                .query_row(
                    "SELECT card_id FROM idempotency WHERE key = ?1",
                    params![key],
                    |r| r.get(0),
                )
                .optional()?;
            if let Some(id) = found {
                let c = tx.query_row(
                    &format!("SELECT {CARD_COLUMNS} FROM cards WHERE id = ?1"),
                    params![id],
                    row_to_card,
                )?;
                return Ok(CreateResult::Replayed(c));
            }
        }
        let active: i64 = tx.query_row(
            "SELECT COUNT(*) FROM cards WHERE customer_id = ?1 AND card_type = ?2 AND name = ?3
             AND status IN ('CREATED','NORMAL','BLOCKED','PENDING','WARNING')",
            params![card.customer_id, card.card_type, card.name],
            |r| r.get(0),
        )?;
        if active > 0 {
            return Ok(CreateResult::Conflict);
        }
        tx.execute(
            "INSERT INTO cards (customer_id, card_type, name, status, printed_name, embossing_group,
                 response, ready_at_ms, product, created_at)
             VALUES (?1, ?2, ?3, 'CREATED', ?4, ?5, '{}', ?6, ?7, ?8)",
            params![
                card.customer_id,
                card.card_type,
                card.name,
                card.printed_name,
                card.embossing_group,
                card.ready_at_ms,
                card.product,
                now_rfc3339()
            ],
        )?;
        let id = tx.last_insert_rowid();
        tx.execute(
            "UPDATE cards SET response = ?2 WHERE id = ?1",
            params![id, response(id).to_string()],
        )?;
        if let Some(key) = card.idempotency_key {
            tx.execute(
                "INSERT INTO idempotency (key, card_id) VALUES (?1, ?2)",
                params![key, id],
            )?;
        }
        let c = tx.query_row(
            &format!("SELECT {CARD_COLUMNS} FROM cards WHERE id = ?1"),
            params![id],
            row_to_card,
        )?;
        push_event(&tx, &event(&c))?;
        tx.commit()?;
        Ok(CreateResult::Created(c))
    }

    /// One card.
    pub fn card(&self, id: i64) -> Result<Option<SandboxCard>, SandboxError> {
        Ok(self
            .conn()
            .query_row(
                &format!("SELECT {CARD_COLUMNS} FROM cards WHERE id = ?1"),
                params![id],
                row_to_card,
            )
            .optional()?)
    }

    /// Every card, by id.
    pub fn cards(&self) -> Result<Vec<SandboxCard>, SandboxError> {
        let conn = self.conn();
        let mut stmt = conn.prepare(&format!("SELECT {CARD_COLUMNS} FROM cards ORDER BY id"))?;
        let rows = stmt.query_map([], row_to_card)?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Cards whose PCI data is due but whose ingress event was not emitted yet.
    pub fn due_for_ingress(&self, now_ms: i64) -> Result<Vec<SandboxCard>, SandboxError> {
        let conn = self.conn();
        let mut stmt = conn.prepare(&format!(
            "SELECT {CARD_COLUMNS} FROM cards WHERE ingress_done = 0 AND ready_at_ms <= ?1 ORDER BY id"
        ))?;
        let rows = stmt.query_map(params![now_ms], row_to_card)?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Store the sealed card data and emit the ingress events, in one transaction.
    pub fn complete_ingress(
        &self,
        id: i64,
        card_data_jwe: &str,
        masked_pan: &str,
        events: &[Value],
    ) -> Result<(), SandboxError> {
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        tx.execute(
            "UPDATE cards SET ingress_done = 1, card_data_jwe = ?2, masked_pan = ?3 WHERE id = ?1",
            params![id, card_data_jwe, masked_pan],
        )?;
        for e in events {
            push_event(&tx, e)?;
        }
        tx.commit()?;
        Ok(())
    }

    /// The sealed card data of a card.
    pub fn card_data_jwe(&self, id: i64) -> Result<Option<String>, SandboxError> {
        Ok(self
            .conn()
            .query_row(
                "SELECT card_data_jwe FROM cards WHERE id = ?1",
                params![id],
                |r| r.get::<_, Option<String>>(0),
            )
            .optional()?
            .flatten())
    }

    /// Put a card in the next run of its group.
    pub fn queue(&self, id: i64) -> Result<(), SandboxError> {
        self.conn()
            .execute("UPDATE cards SET queued = 1 WHERE id = ?1", params![id])?;
        Ok(())
    }

    /// Resend cards: queued again, flagged and counted, one `reembossing` event each.
    pub fn resend(
        &self,
        ids: &[i64],
        event: impl Fn(&SandboxCard) -> Value,
    ) -> Result<(), SandboxError> {
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        for id in ids {
            tx.execute(
                "UPDATE cards SET queued = 1, reembossing_pending = 1,
                     reembossing_counter = reembossing_counter + 1 WHERE id = ?1",
                params![id],
            )?;
            let c = tx.query_row(
                &format!("SELECT {CARD_COLUMNS} FROM cards WHERE id = ?1"),
                params![id],
                row_to_card,
            )?;
            push_event(&tx, &event(&c))?;
        }
        tx.commit()?;
        Ok(())
    }

    /// Cards waiting for the next run of `group`.
    pub fn queued_in_group(&self, group: &str) -> Result<Vec<SandboxCard>, SandboxError> {
        let conn = self.conn();
        let mut stmt = conn.prepare(&format!(
            "SELECT {CARD_COLUMNS} FROM cards WHERE queued = 1 AND embossing_group = ?1 ORDER BY id"
        ))?;
        let rows = stmt.query_map(params![group], row_to_card)?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// A run carried the card: out of the queue, counted, its `embossing` event stored.
    pub fn embossed(&self, id: i64, event: &Value) -> Result<(), SandboxError> {
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        tx.execute(
            "UPDATE cards SET queued = 0, reembossing_pending = 0,
                 embossed_count = embossed_count + 1 WHERE id = ?1",
            params![id],
        )?;
        push_event(&tx, event)?;
        tx.commit()?;
        Ok(())
    }

    /// Store an event on its own.
    pub fn push_event(&self, event: &Value) -> Result<(), SandboxError> {
        let conn = self.conn();
        conn.execute(
            "INSERT OR IGNORE INTO events (event_id, envelope) VALUES (?1, ?2)",
            params![
                event["event_id"].as_str().unwrap_or_default(),
                event.to_string()
            ],
        )?;
        Ok(())
    }

    /// Events after feed position `after`, oldest first.
    pub fn events_after(&self, after: i64, limit: usize) -> Result<Vec<StoredEvent>, SandboxError> {
        let conn = self.conn();
        let mut stmt =
            conn.prepare("SELECT seq, envelope FROM events WHERE seq > ?1 ORDER BY seq LIMIT ?2")?;
        let rows = stmt.query_map(params![after, limit as i64], |r| {
            Ok((r.get::<_, i64>(0)?, r.get::<_, String>(1)?))
        })?;
        let mut out = Vec::new();
        for row in rows {
            let (seq, text) = row?;
            out.push(StoredEvent {
                seq,
                envelope: serde_json::from_str(&text).map_err(db)?,
            });
        }
        Ok(out)
    }

    /// Record a start-embossing call for the worker.
    pub fn add_trigger(
        &self,
        config_id: &str,
        cards: &[i64],
        programs: &[i64],
    ) -> Result<(), SandboxError> {
        self.conn().execute(
            "INSERT INTO triggers (config_id, cards, programs) VALUES (?1, ?2, ?3)",
            params![
                config_id,
                serde_json::to_string(cards).map_err(db)?,
                serde_json::to_string(programs).map_err(db)?
            ],
        )?;
        Ok(())
    }

    /// Start-embossing calls not run yet.
    pub fn open_triggers(&self) -> Result<Vec<Trigger>, SandboxError> {
        let conn = self.conn();
        let mut stmt = conn.prepare(
            "SELECT id, config_id, cards, programs FROM triggers WHERE done = 0 ORDER BY id",
        )?;
        let rows = stmt.query_map([], |r| {
            Ok((
                r.get::<_, i64>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, String>(2)?,
                r.get::<_, String>(3)?,
            ))
        })?;
        let mut out = Vec::new();
        for row in rows {
            let (id, config_id, cards, programs) = row?;
            out.push(Trigger {
                id,
                config_id,
                cards: serde_json::from_str(&cards).map_err(db)?,
                programs: serde_json::from_str(&programs).map_err(db)?,
            });
        }
        Ok(out)
    }

    /// A trigger was run.
    pub fn trigger_done(&self, id: i64) -> Result<(), SandboxError> {
        self.conn()
            .execute("UPDATE triggers SET done = 1 WHERE id = ?1", params![id])?;
        Ok(())
    }

    /// When the group's scheduled run last happened (0 = never).
    pub fn last_run_ms(&self, group: &str) -> Result<i64, SandboxError> {
        Ok(self
            .conn()
            .query_row(
                "SELECT last_run_ms FROM group_runs WHERE embossing_group = ?1",
                params![group],
                |r| r.get(0),
            )
            .optional()?
            .unwrap_or(0))
    }

    /// Note a scheduled run of the group.
    pub fn set_last_run_ms(&self, group: &str, at: i64) -> Result<(), SandboxError> {
        self.conn().execute(
            "INSERT INTO group_runs (embossing_group, last_run_ms) VALUES (?1, ?2)
             ON CONFLICT(embossing_group) DO UPDATE SET last_run_ms = excluded.last_run_ms",
            params![group, at],
        )?;
        Ok(())
    }
}

/// The sandbox database on a thread of its own: the HTTP handlers await their calls
/// there, so an SQLite write (and its fsync) never holds a tokio worker.
pub type StoreThread = crate::dedicated::DedicatedThread<PismoStore>;

fn push_event(tx: &rusqlite::Transaction<'_>, event: &Value) -> rusqlite::Result<()> {
    tx.execute(
        "INSERT OR IGNORE INTO events (event_id, envelope) VALUES (?1, ?2)",
        params![
            event["event_id"].as_str().unwrap_or_default(),
            event.to_string()
        ],
    )?;
    Ok(())
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// Now, RFC 3339.
pub fn now_rfc3339() -> String {
    time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}
