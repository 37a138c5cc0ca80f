//! Blank-card stock per card product: blanks loaded (staff record count and batch),
//! used, issued, spoiled and remaining, all counted from the append-only journal so the
//! figures cannot drift from what the printer did. Below a threshold the console warns;
//! when the configuration requires it, a card whose product has no stock recorded is
//! not started.

use serde::{Deserialize, Serialize};

use crate::journal::counter::{CardMoves, StockLoad, BEGINNING, END};
use crate::journal::{Journal, JournalError};

/// `[stock]` in the station configuration.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct StockPolicy {
    /// Refuse to start a card of a product with no blanks remaining as recorded.
    #[serde(default)]
    pub require_loaded: bool,
    /// Warn when a product has fewer blanks than this remaining.
    #[serde(default = "default_warn_below")]
    pub warn_below: u32,
}

impl Default for StockPolicy {
    fn default() -> Self {
        StockPolicy {
            require_loaded: false,
            warn_below: default_warn_below(),
        }
    }
}

fn default_warn_below() -> u32 {
    20
}

/// Largest single load accepted (a typo guard: feeders and boxes hold hundreds).
pub const MAX_LOAD: u32 = 10_000;

/// Why a stock entry or a start was refused.
#[derive(Debug, thiserror::Error)]
pub enum StockError {
    /// The count is zero or implausibly large.
    #[error("count: a number of blanks from 1 to {MAX_LOAD}")]
    BadCount,
    /// The product name is empty or malformed.
    #[error("product: 1 to 64 letters, digits, '.', '_' or '-'")]
    BadProduct,
    /// The batch/lot is empty or too long.
    #[error("batch: the batch or lot number on the box (1 to 64 characters)")]
    BadBatch,
    /// No blanks of this product are recorded as remaining.
    #[error("no blank cards of product '{0}' are recorded as loaded: a supervisor records the blanks loaded first")]
    NoStock(String),
    /// The journal failed.
    #[error(transparent)]
    Journal(#[from] JournalError),
}

impl StockError {
    /// Stable code for logs and the console.
    pub fn code(&self) -> &'static str {
        match self {
            StockError::BadCount => "STOCK_BAD_COUNT",
            StockError::BadProduct => "STOCK_BAD_PRODUCT",
            StockError::BadBatch => "STOCK_BAD_BATCH",
            StockError::NoStock(_) => "STOCK_NONE",
            StockError::Journal(e) => e.code(),
        }
    }
}

/// Stock of one card product now.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct StockLevel {
    /// Card product.
    pub product: String,
    /// Blanks loaded, all time.
    pub loaded: u64,
    /// Blanks that left the feeder.
    pub used: u64,
    /// Cards issued (reached the output tray).
    pub issued: u64,
    /// Cards spoiled.
    pub spoiled: u64,
    /// Loaded minus used (negative when cards were made without their blanks recorded).
    pub remaining: i64,
    /// Remaining is below the warning threshold.
    pub low: bool,
}

impl StockLevel {
    fn from_moves(m: &CardMoves, policy: &StockPolicy) -> Self {
        let remaining = m.loaded as i64 - m.used() as i64;
        StockLevel {
            product: m.product.clone(),
            loaded: m.loaded,
            used: m.used(),
            issued: m.issued,
            spoiled: m.spoiled,
            remaining,
            low: remaining < policy.warn_below as i64,
        }
    }
}

fn valid_product(p: &str) -> bool {
    (1..=64).contains(&p.len())
        && p.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
}

/// Records `count` blanks of `product` from `batch`, loaded by `actor`.
pub fn load(
    journal: &Journal,
    product: &str,
    count: u32,
    batch: &str,
    actor: &str,
) -> Result<StockLoad, StockError> {
    if !valid_product(product) {
        return Err(StockError::BadProduct);
    }
    if count == 0 || count > MAX_LOAD {
        return Err(StockError::BadCount);
    }
    let batch = batch.trim();
    if batch.is_empty() || batch.chars().count() > 64 || batch.chars().any(char::is_control) {
        return Err(StockError::BadBatch);
    }
    Ok(journal.record_stock_load(product, count, batch, actor, None)?)
}

/// Stock of every product the journal knows (loaded or made), by product name.
pub fn levels(journal: &Journal, policy: &StockPolicy) -> Result<Vec<StockLevel>, StockError> {
    Ok(journal
        .card_moves(BEGINNING, END)?
        .iter()
        .map(|m| StockLevel::from_moves(m, policy))
        .collect())
}

/// Whether a card of `product` may start: always, unless the configuration requires
/// recorded stock and none of that product remains.
pub fn check_can_start(
    journal: &Journal,
    policy: &StockPolicy,
    product: Option<&str>,
) -> Result<(), StockError> {
    if !policy.require_loaded {
        return Ok(());
    }
    let product = product.unwrap_or("unknown");
    let remaining = levels(journal, policy)?
        .into_iter()
        .find(|l| l.product == product)
        .map_or(0, |l| l.remaining);
    if remaining > 0 {
        Ok(())
    } else {
        Err(StockError::NoStock(product.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::journal::state::JobState;
    use crate::journal::NewJob;

    fn fed_and_issued(j: &Journal, op: &str) {
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
        j.feed(op, "line-1", "agent").unwrap();
        for s in [
            JobState::AtChipStation,
            JobState::Personalizing,
            JobState::Verifying,
            JobState::Printing,
            JobState::EncodingStripe,
            JobState::Ejecting,
        ] {
            j.transition(op, s, None).unwrap();
        }
        j.eject(op, 1, 1.0).unwrap();
    }

    #[test]
    fn remaining_is_loaded_minus_used_and_warns_below_the_threshold() {
        let j = Journal::open_in_memory().unwrap();
        load(&j, "VISA-DEBIT", 3, "LOT-2026-11", "sup").unwrap();
        fed_and_issued(&j, "op1");
        let policy = StockPolicy {
            require_loaded: false,
            warn_below: 3,
        };
        let l = &levels(&j, &policy).unwrap()[0];
        assert_eq!((l.loaded, l.used, l.issued, l.remaining), (3, 1, 1, 2));
        assert!(l.low);
    }

    #[test]
    fn a_load_without_count_or_batch_is_refused_and_names_the_field() {
        let j = Journal::open_in_memory().unwrap();
        assert!(matches!(
            load(&j, "VISA", 0, "L1", "s"),
            Err(StockError::BadCount)
        ));
        assert!(matches!(
            load(&j, "VISA", 5, "  ", "s"),
            Err(StockError::BadBatch)
        ));
        assert!(matches!(
            load(&j, "VI SA", 5, "L1", "s"),
            Err(StockError::BadProduct)
        ));
        assert!(load(&j, "VISA", 5, "  ", "s")
            .unwrap_err()
            .to_string()
            .starts_with("batch:"));
    }

    #[test]
    fn with_stock_required_a_product_never_loaded_cannot_start() {
        let j = Journal::open_in_memory().unwrap();
        let policy = StockPolicy {
            require_loaded: true,
            warn_below: 1,
        };
        let e = check_can_start(&j, &policy, Some("VISA-DEBIT")).unwrap_err();
        assert_eq!(e.code(), "STOCK_NONE");
        load(&j, "VISA-DEBIT", 1, "LOT-1", "sup").unwrap();
        check_can_start(&j, &policy, Some("VISA-DEBIT")).unwrap();
        fed_and_issued(&j, "op1");
        assert!(
            check_can_start(&j, &policy, Some("VISA-DEBIT")).is_err(),
            "the one blank is used"
        );
    }

    #[test]
    fn without_the_requirement_any_product_starts() {
        let j = Journal::open_in_memory().unwrap();
        check_can_start(&j, &StockPolicy::default(), Some("VISA-DEBIT")).unwrap();
    }
}
