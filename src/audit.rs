//! The audit export: one JSON line per audited action — time, actor, approver,
//! action, operation id, card id, masked PAN, line, outcome — read from the
//! append-only journal (job moves and stock loads). No full PAN is ever written: the
//! journal holds only masked PANs, and a reason is scrubbed of any long digit run.

use serde::Serialize;

use crate::journal::counter::AuditRow;
use crate::journal::state::JobState;
use crate::journal::{Journal, JournalError};

/// One exported line.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AuditLine {
    /// When (RFC 3339, UTC).
    pub time: String,
    /// Who did it (`agent` for the station itself).
    pub actor: String,
    /// Who approved it under dual control.
    pub approver: Option<String>,
    /// What was done.
    pub action: &'static str,
    /// Operation, for card actions.
    pub operation_id: Option<String>,
    /// Card, for card actions.
    pub card_id: Option<String>,
    /// Masked PAN, once known.
    pub masked_pan: Option<String>,
    /// Production line.
    pub line: Option<String>,
    /// The resulting state (or `recorded` for a stock load).
    pub outcome: String,
    /// Why, when given.
    pub reason: Option<String>,
    /// Card product.
    pub product: Option<String>,
    /// Blanks loaded, for a stock load.
    pub count: Option<u32>,
    /// Batch or lot, for a stock load.
    pub batch: Option<String>,
}

/// The action a job move stands for.
pub fn action(from: Option<JobState>, to: JobState) -> &'static str {
    use JobState::*;
    match (from, to) {
        (None, _) => "order_received",
        (_, Received) => "order_received",
        (_, Validated) => "order_validated",
        (Some(Rejected), WaitingForStaff) => "make_again",
        (Some(Feeding), WaitingForStaff) => "feeder_empty",
        (_, WaitingForStaff) => "ready_for_staff",
        (_, Feeding) => "start",
        (_, AtChipStation) => "card_at_chip_station",
        (_, Personalizing) => "personalize_chip",
        (_, Verifying) => "verify_chip",
        (_, Printing) => "print",
        (_, EncodingStripe) => "encode_stripe",
        (_, Ejecting) => "eject",
        (Some(InDoubt), Ejected) => "confirm_card_in_doubt",
        (_, Ejected) => "card_ejected",
        (_, HandedOver) => "hand_over",
        (_, Rejected) => "card_rejected",
        (Some(Rejected), Spoiled) => "give_up",
        (Some(InDoubt), Spoiled) => "spoil_card_in_doubt",
        (Some(AwaitingRemoval), Spoiled) => "stuck_card_removed",
        (_, AwaitingRemoval) => "card_stuck_in_printer",
        (_, Spoiled) => "card_spoiled",
        (_, Failed) => "order_refused",
        (_, Cancelled) => "cancel",
        (_, InDoubt) => "card_in_doubt_after_restart",
    }
}

/// Replaces any run of 7 or more digits (a possible PAN fragment) with `*`.
fn scrub(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut run = String::new();
    let flush = |run: &mut String, out: &mut String| {
        if run.len() >= 7 {
            out.extend(std::iter::repeat('*').take(run.len()));
        } else {
            out.push_str(run);
        }
        run.clear();
    };
    for c in s.chars() {
        if c.is_ascii_digit() {
            run.push(c);
        } else {
            flush(&mut run, &mut out);
            out.push(c);
        }
    }
    flush(&mut run, &mut out);
    out
}

fn from_row(r: AuditRow) -> AuditLine {
    AuditLine {
        action: action(r.from, r.to),
        outcome: r.to.as_str().to_string(),
        time: r.at,
        actor: r.actor,
        approver: r.approver,
        operation_id: Some(r.operation_id),
        card_id: Some(r.card_id),
        masked_pan: r.masked_pan.map(|m| scrub(&m)),
        line: r.line,
        reason: r.reason.map(|s| scrub(&s)),
        product: r.product,
        count: None,
        batch: None,
    }
}

/// Every audited action in `[from, until)` (RFC 3339 bounds), in time order.
pub fn lines(journal: &Journal, from: &str, until: &str) -> Result<Vec<AuditLine>, JournalError> {
    let mut all: Vec<AuditLine> = journal
        .audit_rows(from, until)?
        .into_iter()
        .map(from_row)
        .collect();
    all.extend(
        journal
            .stock_loads(from, until)?
            .into_iter()
            .map(|l| AuditLine {
                time: l.at,
                actor: l.actor,
                approver: l.approver,
                action: "stock_load",
                operation_id: None,
                card_id: None,
                masked_pan: None,
                line: None,
                outcome: "recorded".into(),
                reason: None,
                product: Some(l.product),
                count: Some(l.count),
                batch: Some(scrub(&l.batch)),
            }),
    );
    // Stable: moves of the same instant keep their journal order.
    all.sort_by(|a, b| a.time.cmp(&b.time));
    Ok(all)
}

/// The export as JSON lines.
pub fn to_json_lines(lines: &[AuditLine]) -> String {
    let mut out = String::new();
    for l in lines {
        out.push_str(&serde_json::to_string(l).expect("an audit line serializes"));
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::journal::counter::{BEGINNING, END};
    use crate::journal::NewJob;

    #[test]
    fn every_move_and_every_stock_load_is_one_line_with_its_actor() {
        let j = Journal::open_in_memory().unwrap();
        j.record_stock_load("VISA-DEBIT", 50, "LOT-9", "bnoor", None)
            .unwrap();
        j.insert_order(&NewJob {
            operation_id: "op1".into(),
            issuer_id: "iss".into(),
            card_id: "card-1".into(),
            perso_station: "st".into(),
            order_json: serde_json::json!({}),
        })
        .unwrap();
        j.transition("op1", JobState::Validated, None).unwrap();
        j.set_card_facts("op1", "476173******0010", "VISA-DEBIT", "JOHN DOE")
            .unwrap();
        j.transition("op1", JobState::WaitingForStaff, None)
            .unwrap();
        j.transition_by(
            "op1",
            JobState::Cancelled,
            Some("cancelled by staff"),
            "amartin",
        )
        .unwrap();
        let l = lines(&j, BEGINNING, END).unwrap();
        let actions: Vec<_> = l.iter().map(|l| l.action).collect();
        assert_eq!(
            actions,
            [
                "stock_load",
                "order_received",
                "order_validated",
                "ready_for_staff",
                "cancel"
            ]
        );
        let cancel = l.last().unwrap();
        assert_eq!(cancel.actor, "amartin");
        assert_eq!(cancel.masked_pan.as_deref(), Some("476173******0010"));
        let text = to_json_lines(&l);
        assert_eq!(text.lines().count(), 5);
        let first: serde_json::Value = serde_json::from_str(text.lines().next().unwrap()).unwrap();
        for key in [
            "time",
            "actor",
            "approver",
            "action",
            "operation_id",
            "card_id",
            "masked_pan",
            "line",
            "outcome",
        ] {
            assert!(first.get(key).is_some(), "{key} missing in {first}");
        }
    }

    #[test]
    fn a_digit_run_that_could_be_a_pan_never_leaves_in_a_reason() {
        assert_eq!(
            scrub("card 4761739001010010 jammed"),
            "card **************** jammed"
        );
        assert_eq!(scrub("PRN_CARD_JAM at 12:30"), "PRN_CARD_JAM at 12:30");
    }

    #[test]
    fn make_again_and_give_up_are_named() {
        assert_eq!(
            action(Some(JobState::Rejected), JobState::WaitingForStaff),
            "make_again"
        );
        assert_eq!(
            action(Some(JobState::Rejected), JobState::Spoiled),
            "give_up"
        );
        assert_eq!(
            action(Some(JobState::WaitingForStaff), JobState::Feeding),
            "start"
        );
    }
}
