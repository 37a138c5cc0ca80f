//! Versioned schema: `PRAGMA user_version` is the number of migrations applied.

use rusqlite::Connection;

use super::JournalError;

/// Each entry moves the schema one version up; never edit a shipped entry, add one.
const MIGRATIONS: &[&str] = &[
    // v1: jobs, audit trail, outbox.
    "CREATE TABLE jobs (
        operation_id  TEXT PRIMARY KEY,
        issuer_id     TEXT NOT NULL,
        card_id       TEXT NOT NULL,
        perso_station TEXT NOT NULL,
        state         TEXT NOT NULL,
        order_json    TEXT NOT NULL,
        reason        TEXT,
        masked_pan    TEXT,
        apdu_count    INTEGER NOT NULL DEFAULT 0,
        created_at    TEXT NOT NULL,
        updated_at    TEXT NOT NULL
    );
    CREATE INDEX jobs_card ON jobs (issuer_id, card_id);
    CREATE INDEX jobs_state ON jobs (state);
    CREATE TABLE transitions (
        id           INTEGER PRIMARY KEY AUTOINCREMENT,
        operation_id TEXT NOT NULL REFERENCES jobs (operation_id),
        from_state   TEXT,
        to_state     TEXT NOT NULL,
        at           TEXT NOT NULL,
        reason       TEXT,
        actor        TEXT NOT NULL
    );
    CREATE TABLE outbox (
        id           INTEGER PRIMARY KEY AUTOINCREMENT,
        operation_id TEXT NOT NULL REFERENCES jobs (operation_id),
        sequence     INTEGER NOT NULL,
        status       TEXT NOT NULL,
        reason       TEXT,
        time         TEXT NOT NULL,
        masked_pan   TEXT,
        apdu_count   INTEGER NOT NULL DEFAULT 0,
        delivered_at TEXT,
        parked       INTEGER NOT NULL DEFAULT 0,
        last_error   TEXT,
        UNIQUE (operation_id, sequence)
    );",
    // v2: how long each card took, for the console and the demo summary.
    "ALTER TABLE jobs ADD COLUMN seconds REAL;",
    // v3: the audit trail is append-only, as card-production auditors expect.
    "CREATE TRIGGER transitions_no_update BEFORE UPDATE ON transitions
        BEGIN SELECT RAISE(ABORT, 'the transition audit is append-only'); END;
     CREATE TRIGGER transitions_no_delete BEFORE DELETE ON transitions
        BEGIN SELECT RAISE(ABORT, 'the transition audit is append-only'); END;",
    // v4: which printer/encoder pair took the card, so a card in doubt stops only its line.
    "ALTER TABLE jobs ADD COLUMN line TEXT;",
    // v5: field-engineering actions that use production keys outside a job
    // (`card perso`, `card issue`), append-only like the transitions.
    "CREATE TABLE engineering (
        id         INTEGER PRIMARY KEY AUTOINCREMENT,
        at         TEXT NOT NULL,
        actor      TEXT NOT NULL,
        command    TEXT NOT NULL,
        card_id    TEXT,
        masked_pan TEXT,
        reader     TEXT NOT NULL,
        keys       TEXT NOT NULL,
        outcome    TEXT NOT NULL,
        detail     TEXT
     );
     CREATE TRIGGER engineering_no_update BEFORE UPDATE ON engineering
        BEGIN SELECT RAISE(ABORT, 'the engineering record is append-only'); END;
     CREATE TRIGGER engineering_no_delete BEFORE DELETE ON engineering
        BEGIN SELECT RAISE(ABORT, 'the engineering record is append-only'); END;",
    // v6: Pismo counter requests (issue 12): one row per request, keyed by the request id
    // that is also Pismo's idempotency key, and an append-only audit of every step.
    "CREATE TABLE pismo_requests (
        request_id    TEXT PRIMARY KEY,
        customer_id   INTEGER NOT NULL,
        printed_name  TEXT NOT NULL,
        product       TEXT,
        card_id       INTEGER,
        step          TEXT NOT NULL,
        message       TEXT,
        resend_count  INTEGER NOT NULL DEFAULT 0,
        requested_by  TEXT NOT NULL,
        created_at    TEXT NOT NULL,
        updated_at    TEXT NOT NULL
    );
    CREATE INDEX pismo_requests_card ON pismo_requests (card_id);
    CREATE TABLE pismo_steps (
        id          INTEGER PRIMARY KEY AUTOINCREMENT,
        request_id  TEXT NOT NULL REFERENCES pismo_requests (request_id),
        step        TEXT NOT NULL,
        outcome     TEXT NOT NULL,
        card_id     INTEGER,
        at          TEXT NOT NULL,
        actor       TEXT NOT NULL
    );
    CREATE TRIGGER pismo_steps_no_update BEFORE UPDATE ON pismo_steps
        BEGIN SELECT RAISE(ABORT, 'the Pismo step audit is append-only'); END;
    CREATE TRIGGER pismo_steps_no_delete BEFORE DELETE ON pismo_steps
        BEGIN SELECT RAISE(ABORT, 'the Pismo step audit is append-only'); END;",
];

/// The schema version this build writes.
pub const LATEST: i64 = MIGRATIONS.len() as i64;

/// Applies every migration above the database's version, each in its own transaction.
pub fn apply(conn: &Connection) -> Result<(), JournalError> {
    let found: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
    if found > LATEST {
        return Err(JournalError::TooNew {
            found,
            supported: LATEST,
        });
    }
    for (i, sql) in MIGRATIONS.iter().enumerate().skip(found as usize) {
        let version = i as i64 + 1;
        conn.execute_batch(&format!(
            "BEGIN; {sql}; PRAGMA user_version = {version}; COMMIT;"
        ))?;
    }
    Ok(())
}
