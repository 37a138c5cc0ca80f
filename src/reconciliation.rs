//! End-of-day reconciliation: per card product, the blanks loaded that day, cards
//! issued and spoiled that day, blanks remaining at the end of the day, and the
//! difference — blanks that left the feeder but are neither issued nor spoiled (a card
//! still in the printer or in doubt) — which must be zero once every card is settled.
//! Then the spoiled cards of the day, with their reason and who moved them to the
//! spoiled box, for the destruction log.

use time::{Date, Duration};

use crate::journal::counter::{AuditRow, BEGINNING, END};
use crate::journal::state::JobState;
use crate::journal::{Journal, JournalError};

/// One product's line of the day.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProductDay {
    /// Card product.
    pub product: String,
    /// Blanks loaded during the day.
    pub loaded: u64,
    /// Cards issued during the day.
    pub issued: u64,
    /// Cards spoiled during the day.
    pub spoiled: u64,
    /// Blanks remaining at the end of the day.
    pub remaining: i64,
    /// Blanks out of the feeder, not issued nor spoiled, at the end of the day.
    pub difference: i64,
}

/// A card spoiled during the day.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpoiledCard {
    /// When it was spoiled (RFC 3339).
    pub at: String,
    /// Card product.
    pub product: String,
    /// Operation.
    pub operation_id: String,
    /// Card.
    pub card_id: String,
    /// Masked PAN.
    pub masked_pan: String,
    /// Why.
    pub reason: String,
    /// Who moved it to the spoiled box (empty when nobody has yet).
    pub moved_by: String,
    /// Who approved that (dual control), if anyone.
    pub approved_by: String,
}

/// The reconciliation of one day (UTC).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reconciliation {
    /// The day.
    pub day: Date,
    /// One line per product.
    pub products: Vec<ProductDay>,
    /// Spoiled cards of the day.
    pub spoiled: Vec<SpoiledCard>,
}

/// A day given on the command line or the console that is not `YYYY-MM-DD`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("day '{0}': a date as YYYY-MM-DD")]
pub struct BadDay(pub String);

/// Parses `YYYY-MM-DD`.
pub fn parse_day(s: &str) -> Result<Date, BadDay> {
    Date::parse(s, time::macros::format_description!("[year]-[month]-[day]"))
        .map_err(|_| BadDay(s.to_string()))
}

/// Today (UTC), the day a reconciliation is usually asked for.
pub fn today() -> Date {
    time::OffsetDateTime::now_utc().date()
}

/// The `[from, until)` bounds of a UTC day, as stored times compare.
pub fn day_bounds(day: Date) -> (String, String) {
    let next = day + Duration::days(1);
    (day.to_string(), next.to_string())
}

/// Whether this move put a card in the reject box or the spoiled pile (counted once).
pub fn is_spoil(from: Option<JobState>, to: JobState) -> bool {
    to == JobState::Rejected || (to == JobState::Spoiled && from != Some(JobState::Rejected))
}

/// Reconciles `day` from the journal.
pub fn reconcile(journal: &Journal, day: Date) -> Result<Reconciliation, JournalError> {
    let (from, until) = day_bounds(day);
    let during = journal.card_moves(&from, &until)?;
    let up_to_end = journal.card_moves(BEGINNING, &until)?;
    let products = up_to_end
        .iter()
        .map(|total| {
            let d = during.iter().find(|d| d.product == total.product);
            ProductDay {
                product: total.product.clone(),
                loaded: d.map_or(0, |d| d.loaded),
                issued: d.map_or(0, |d| d.issued),
                spoiled: d.map_or(0, |d| d.spoiled),
                remaining: total.loaded as i64 - total.used() as i64,
                difference: total.used() as i64 - total.issued as i64 - total.spoiled as i64,
            }
        })
        .collect();
    // Who moved a rejected card to the spoiled box may be known only after the day.
    let rows = journal.audit_rows(&from, END)?;
    let spoiled = rows
        .iter()
        .enumerate()
        .filter(|(_, r)| r.at < until && is_spoil(r.from, r.to))
        .map(|(i, r)| spoiled_card(r, &rows[i + 1..]))
        .collect();
    Ok(Reconciliation {
        day,
        products,
        spoiled,
    })
}

fn spoiled_card(r: &AuditRow, later: &[AuditRow]) -> SpoiledCard {
    let mover = if r.to == JobState::Rejected {
        later
            .iter()
            .find(|l| l.operation_id == r.operation_id && l.from == Some(JobState::Rejected))
    } else if r.actor != "agent" {
        // A card in doubt spoiled by staff: they put it in the spoiled box themselves.
        Some(r)
    } else {
        None
    };
    SpoiledCard {
        at: r.at.clone(),
        product: r.product.clone().unwrap_or_else(|| "unknown".into()),
        operation_id: r.operation_id.clone(),
        card_id: r.card_id.clone(),
        masked_pan: r.masked_pan.clone().unwrap_or_default(),
        // The report leaves the station: PANs masked, any other long digit run hidden.
        reason: station_emv::card_data::scrub_for_export(r.reason.as_deref().unwrap_or_default()),
        moved_by: mover.map(|m| m.actor.clone()).unwrap_or_default(),
        approved_by: mover.and_then(|m| m.approver.clone()).unwrap_or_default(),
    }
}

/// One CSV field, quoted when it needs to be (RFC 4180).
fn field(s: &str) -> String {
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

impl Reconciliation {
    /// The report as CSV: the product table, a blank line, then the spoiled cards.
    pub fn to_csv(&self) -> String {
        let mut out = String::from("product,loaded,issued,spoiled,remaining,difference\n");
        for p in &self.products {
            out.push_str(&format!(
                "{},{},{},{},{},{}\n",
                field(&p.product),
                p.loaded,
                p.issued,
                p.spoiled,
                p.remaining,
                p.difference
            ));
        }
        out.push_str(
            "\nspoiled_at,product,operation_id,card_id,masked_pan,reason,moved_by,approved_by\n",
        );
        for s in &self.spoiled {
            let cells = [
                &s.at,
                &s.product,
                &s.operation_id,
                &s.card_id,
                &s.masked_pan,
                &s.reason,
                &s.moved_by,
                &s.approved_by,
            ];
            let line: Vec<String> = cells.iter().map(|c| field(c)).collect();
            out.push_str(&line.join(","));
            out.push('\n');
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::journal::NewJob;

    fn fed(j: &Journal, op: &str) {
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
        j.feed(op, "line-1", "amartin").unwrap();
        j.transition(op, JobState::AtChipStation, None).unwrap();
    }

    fn today() -> Date {
        time::OffsetDateTime::now_utc().date()
    }

    #[test]
    fn the_day_balances_loaded_issued_spoiled_and_remaining() {
        let j = Journal::open_in_memory().unwrap();
        j.record_stock_load("VISA-DEBIT", 10, "LOT-1", "sup", None)
            .unwrap();
        fed(&j, "op1");
        j.transition(
            "op1",
            JobState::Rejected,
            Some("PRN_MAG_WRITE: Magnetic stripe could not be encoded"),
        )
        .unwrap();
        j.make_again("op1", "make again", "amartin", Some("bnoor"))
            .unwrap();
        let r = reconcile(&j, today()).unwrap();
        assert_eq!(
            r.products,
            vec![ProductDay {
                product: "VISA-DEBIT".into(),
                loaded: 10,
                issued: 0,
                spoiled: 1,
                remaining: 9,
                difference: 0,
            }]
        );
        let s = &r.spoiled[0];
        assert_eq!(
            (s.moved_by.as_str(), s.approved_by.as_str()),
            ("amartin", "bnoor")
        );
        assert!(s.reason.contains("Magnetic stripe"));
    }

    #[test]
    fn a_pan_in_a_spoiled_cards_reason_is_masked_in_the_report() {
        let j = Journal::open_in_memory().unwrap();
        fed(&j, "op1");
        j.transition(
            "op1",
            JobState::Spoiled,
            Some("driver said: card 4761 7390 0101 0010 jammed"),
        )
        .unwrap();
        let r = reconcile(&j, today()).unwrap();
        assert_eq!(
            r.spoiled[0].reason,
            "driver said: card 4761 73** **** 0010 jammed"
        );
    }

    #[test]
    fn a_card_still_in_the_printer_shows_as_a_difference() {
        let j = Journal::open_in_memory().unwrap();
        j.record_stock_load("VISA-DEBIT", 10, "LOT-1", "sup", None)
            .unwrap();
        fed(&j, "op1");
        let r = reconcile(&j, today()).unwrap();
        assert_eq!(r.products[0].difference, 1);
    }

    #[test]
    fn another_day_shows_nothing_moved_but_the_stock_left() {
        let j = Journal::open_in_memory().unwrap();
        j.record_stock_load("VISA-DEBIT", 10, "LOT-1", "sup", None)
            .unwrap();
        let r = reconcile(&j, today() + Duration::days(1)).unwrap();
        assert_eq!((r.products[0].loaded, r.products[0].remaining), (0, 10));
        let before = reconcile(&j, today() - Duration::days(1)).unwrap();
        assert!(before.products.is_empty());
    }

    #[test]
    fn the_csv_starts_with_the_agreed_header_and_quotes_reasons() {
        let j = Journal::open_in_memory().unwrap();
        fed(&j, "op1");
        j.transition("op1", JobState::Rejected, Some("jam, at the chip station"))
            .unwrap();
        let csv = reconcile(&j, today()).unwrap().to_csv();
        assert!(
            csv.starts_with("product,loaded,issued,spoiled,remaining,difference\n"),
            "{csv}"
        );
        assert!(csv.contains("\"jam, at the chip station\""), "{csv}");
    }

    #[test]
    fn a_day_is_yyyy_mm_dd() {
        assert_eq!(parse_day("2026-11-30").unwrap().to_string(), "2026-11-30");
        assert!(parse_day("30/11/2026").is_err());
    }
}
