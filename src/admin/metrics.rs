//! `/metrics`: computed from the journal at scrape time (it already holds every card,
//! transition and report), plus the one live counter the journal cannot know:
//! upstream request errors.

use std::collections::HashMap;
use std::path::Path;
use std::sync::LazyLock;
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use rusqlite::{Connection, OpenFlags};
use station_hal::{PrinterError, StaffFacing};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use crate::job::state::JobState;

/// Metric names start with this (`station_cards_total`, ...).
pub const PREFIX: &str = "station";

/// Buckets of `station_state_seconds`: from a quick transition to a long wait for staff.
const STATE_SECONDS: [f64; 12] = [
    0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 1800.0, 7200.0,
];

/// Buckets of `station_apdus_per_card`.
const APDUS: [f64; 8] = [10.0, 20.0, 50.0, 100.0, 200.0, 500.0, 1000.0, 2000.0];

/// The journal could not be read for metrics.
#[derive(Debug, thiserror::Error)]
pub enum MetricsError {
    /// The journal file could not be opened or queried.
    #[error("cannot read the journal {path}: {source}")]
    Journal {
        /// Journal file.
        path: String,
        /// Cause.
        source: rusqlite::Error,
    },
    /// The registry could not be written as text.
    #[error("cannot encode the metrics: {0}")]
    Encode(std::fmt::Error),
}

impl MetricsError {
    /// Stable code.
    pub fn code(&self) -> &'static str {
        match self {
            MetricsError::Journal { .. } => "ADMIN_JOURNAL",
            MetricsError::Encode(_) => "ADMIN_ENCODE",
        }
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CardLabels {
    status: String,
    line: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StateLabels {
    state: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ProductLabels {
    product: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CodeLabels {
    code: String,
}

/// Upstream request errors since the process started, by error code (process-wide:
/// one agent runs per process).
static UPSTREAM_ERRORS: LazyLock<Family<CodeLabels, Counter>> = LazyLock::new(Family::default);

/// Counts one failed upstream request (order poll or status report) under its code.
pub fn upstream_error(code: &str) {
    UPSTREAM_ERRORS
        .get_or_create(&CodeLabels { code: code.into() })
        .inc();
}

/// Opens the journal read-only, on a connection of its own so a scrape never waits
/// on the agent's writer lock (WAL lets readers run beside it).
pub fn open_journal(path: &Path) -> Result<Connection, MetricsError> {
    let err = |source| MetricsError::Journal {
        path: path.display().to_string(),
        source,
    };
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(err)?;
    conn.busy_timeout(Duration::from_secs(2)).map_err(err)?;
    Ok(conn)
}

/// Undelivered status reports: how many, and how old the oldest is.
pub struct OutboxDepth {
    /// Events not yet delivered and not parked.
    pub waiting: u64,
    /// Age of the oldest of them.
    pub oldest: Option<Duration>,
    /// Events the hub refused, waiting for a supervisor.
    pub parked: u64,
}

/// Reads the outbox depth.
pub fn outbox_depth(conn: &Connection) -> rusqlite::Result<OutboxDepth> {
    let (waiting, oldest): (u64, Option<String>) = conn.query_row(
        "SELECT COUNT(*), MIN(time) FROM outbox WHERE delivered_at IS NULL AND parked = 0",
        [],
        |r| Ok((r.get(0)?, r.get(1)?)),
    )?;
    let parked: u64 = conn.query_row(
        "SELECT COUNT(*) FROM outbox WHERE delivered_at IS NULL AND parked <> 0",
        [],
        |r| r.get(0),
    )?;
    let oldest = oldest
        .and_then(|t| OffsetDateTime::parse(&t, &Rfc3339).ok())
        .map(|t| {
            (OffsetDateTime::now_utc() - t)
                .try_into()
                .unwrap_or_default()
        });
    Ok(OutboxDepth {
        waiting,
        oldest,
        parked,
    })
}

/// The printer fault code a journaled reason records, if any: spoils carry
/// `PRN_...: message`; an empty feeder puts the card back to staff with the message only.
fn printer_fault(reason: &str) -> Option<String> {
    if let Some(at) = reason.find("PRN_") {
        let code: String = reason[at..]
            .chars()
            .take_while(|c| c.is_ascii_uppercase() || *c == '_')
            .collect();
        return Some(code);
    }
    (reason == PrinterError::FeederEmpty.staff_message())
        .then(|| PrinterError::FeederEmpty.code().to_string())
}

/// Whether cards in this state are done with production (counted by final status).
fn is_final(state: &str) -> bool {
    state
        .parse::<JobState>()
        .map(|s| s.is_terminal() || s == JobState::Ejected || s == JobState::InDoubt)
        .unwrap_or(false)
}

/// Builds the registry from the journal and the live counters.
pub fn registry(conn: &Connection) -> rusqlite::Result<Registry> {
    let mut reg = Registry::with_prefix(PREFIX);

    let cards = Family::<CardLabels, Counter>::default();
    let mut stmt = conn
        .prepare("SELECT state, COALESCE(line, 'none'), COUNT(*) FROM jobs GROUP BY state, line")?;
    let rows = stmt.query_map([], |r| {
        Ok((
            r.get::<_, String>(0)?,
            r.get::<_, String>(1)?,
            r.get::<_, u64>(2)?,
        ))
    })?;
    for row in rows {
        let (status, line, n) = row?;
        if is_final(&status) {
            cards.get_or_create(&CardLabels { status, line }).inc_by(n);
        }
    }
    reg.register(
        "cards",
        "Cards by final status (ejected, handed_over, spoiled, failed, cancelled, in_doubt) and production line",
        cards,
    );

    let state_seconds = Family::<StateLabels, Histogram>::new_with_constructor(|| {
        Histogram::new(STATE_SECONDS.iter().copied())
    });
    let mut stmt = conn
        .prepare("SELECT operation_id, to_state, at FROM transitions ORDER BY operation_id, id")?;
    let mut rows = stmt.query([])?;
    let mut last: Option<(String, String, OffsetDateTime)> = None;
    while let Some(r) = rows.next()? {
        let (op, state, at): (String, String, String) = (r.get(0)?, r.get(1)?, r.get(2)?);
        let Ok(at) = OffsetDateTime::parse(&at, &Rfc3339) else {
            continue;
        };
        if let Some((prev_op, prev_state, prev_at)) = &last {
            if *prev_op == op {
                let secs = (at - *prev_at).as_seconds_f64().max(0.0);
                state_seconds
                    .get_or_create(&StateLabels {
                        state: prev_state.clone(),
                    })
                    .observe(secs);
            }
        }
        last = Some((op, state, at));
    }
    reg.register(
        "state_seconds",
        "Seconds a card spent in each state it has left",
        state_seconds,
    );

    let apdus = Histogram::new(APDUS.iter().copied());
    let mut stmt = conn.prepare("SELECT apdu_count FROM jobs WHERE apdu_count > 0")?;
    for n in stmt.query_map([], |r| r.get::<_, f64>(0))? {
        apdus.observe(n?);
    }
    reg.register(
        "apdus_per_card",
        "APDUs exchanged with the chip per personalized card",
        apdus,
    );

    let depth = outbox_depth(conn)?;
    let waiting = Gauge::<i64>::default();
    waiting.set(depth.waiting as i64);
    reg.register(
        "outbox_depth",
        "Status reports not yet delivered to the hub (parked ones excluded)",
        waiting,
    );
    let oldest = Gauge::<f64, std::sync::atomic::AtomicU64>::default();
    oldest.set(depth.oldest.map(|d| d.as_secs_f64()).unwrap_or(0.0));
    reg.register(
        "outbox_oldest_age_seconds",
        "Age of the oldest undelivered status report (0 when none)",
        oldest,
    );
    let parked = Gauge::<i64>::default();
    parked.set(depth.parked as i64);
    reg.register(
        "outbox_parked",
        "Status reports the hub refused, waiting for a supervisor",
        parked,
    );

    reg.register(
        "upstream_errors",
        "Failed upstream requests (order polls, status reports) by error code since start",
        UPSTREAM_ERRORS.clone(),
    );

    let mut faults: HashMap<String, u64> = HashMap::new();
    let mut stmt = conn.prepare("SELECT reason FROM transitions WHERE reason IS NOT NULL")?;
    for reason in stmt.query_map([], |r| r.get::<_, String>(0))? {
        if let Some(code) = printer_fault(&reason?) {
            *faults.entry(code).or_default() += 1;
        }
    }
    let printer_faults = Family::<CodeLabels, Counter>::default();
    for (code, n) in faults {
        printer_faults.get_or_create(&CodeLabels { code }).inc_by(n);
    }
    reg.register(
        "printer_faults",
        "Printer faults recorded in the journal, by fault code",
        printer_faults,
    );

    let in_doubt: i64 = conn.query_row(
        "SELECT COUNT(DISTINCT COALESCE(line, '')) FROM jobs WHERE state IN (?1, ?2)",
        [
            JobState::InDoubt.as_str(),
            JobState::AwaitingRemoval.as_str(),
        ],
        |r| r.get(0),
    )?;
    let lines_in_doubt = Gauge::<i64>::default();
    lines_in_doubt.set(in_doubt);
    reg.register(
        "lines_in_doubt",
        "Production lines stopped by a card in doubt or stuck in the printer (staff must act on it)",
        lines_in_doubt,
    );

    let stock = Family::<ProductLabels, Gauge>::default();
    for m in crate::journal::counter::card_moves(
        conn,
        crate::journal::counter::BEGINNING,
        crate::journal::counter::END,
    )? {
        stock
            .get_or_create(&ProductLabels {
                product: m.product.clone(),
            })
            .set(m.loaded as i64 - m.used() as i64);
    }
    reg.register(
        "stock_remaining",
        "Blank cards remaining per card product: recorded loads minus blanks that left the feeder",
        stock,
    );
    Ok(reg)
}

/// What the running agent knows that the journal does not: the parts that stopped.
#[derive(Debug, Clone, Copy, Default)]
pub struct Live {
    /// Lines whose producer stopped.
    pub lines_down: usize,
    /// Other agent tasks that stopped.
    pub tasks_down: usize,
}

/// The metrics page, read from the journal at `path`, with the live figures.
pub fn scrape(path: &Path, live: Live) -> Result<String, MetricsError> {
    let conn = open_journal(path)?;
    let mut reg = registry(&conn).map_err(|source| MetricsError::Journal {
        path: path.display().to_string(),
        source,
    })?;
    let lines_down = Gauge::<i64>::default();
    lines_down.set(live.lines_down as i64);
    reg.register(
        "lines_down",
        "Production lines whose producer stopped (restart the agent)",
        lines_down,
    );
    let tasks_down = Gauge::<i64>::default();
    tasks_down.set(live.tasks_down as i64);
    reg.register(
        "tasks_down",
        "Agent tasks other than the lines that stopped (restart the agent)",
        tasks_down,
    );
    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, &reg).map_err(MetricsError::Encode)?;
    Ok(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_spoil_reason_names_its_printer_fault_code() {
        assert_eq!(
            printer_fault("PRN_CARD_JAM: Card jammed: open the cover.").as_deref(),
            Some("PRN_CARD_JAM")
        );
    }

    #[test]
    fn an_empty_feeder_counts_as_its_fault_code() {
        let msg = PrinterError::FeederEmpty.staff_message();
        assert_eq!(printer_fault(&msg).as_deref(), Some("PRN_FEEDER_EMPTY"));
    }

    #[test]
    fn a_chip_reason_is_no_printer_fault() {
        assert_eq!(
            printer_fault("ENC_CARD_MUTE: the chip did not answer"),
            None
        );
    }
}
