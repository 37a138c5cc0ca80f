//! The audit export: one JSON line per audited action — time, actor, approver,
//! action, operation id, card id, masked PAN, line, outcome — read from the
//! append-only journal: job moves, stock loads, engineering runs with production keys
//! (`card perso`, `card issue`) and the steps of Pismo counter requests. No full PAN is ever written: the
//! journal holds only masked PANs; reasons and details go through
//! [`station_emv::card_data::scrub_for_export`] (PANs masked, any other run of 7 or more
//! digits hidden), batches and masked PANs through the PAN scrubber.

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
    /// Keys used, for an engineering run (transport key set or card product).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub keys: Option<String>,
    /// Reader used, for an engineering run.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reader: Option<String>,
    /// Pismo counter request, for its steps.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
}

/// The action a Pismo request step stands for: the call it records (`repeated`: an
/// outcome noted at the same step, e.g. Pismo unreachable, to be tried again).
pub fn pismo_action(step: &str, repeated: bool) -> &'static str {
    if repeated {
        return "pismo_call_not_done";
    }
    match step {
        "requested" => "pismo_request",
        "created" => "pismo_create_card",
        "queued" => "pismo_add_to_embossing",
        "run_started" => "pismo_start_embossing",
        "resending" => "pismo_resend",
        "refused" => "pismo_refused",
        _ => "pismo_step",
    }
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

/// Free text leaving the station: PANs masked, any other long digit run hidden.
fn scrub(s: &str) -> String {
    station_emv::card_data::scrub_for_export(s)
}

/// A field staff typed (batch, lot): PANs masked, the lot number kept.
fn scrub_entry(s: &str) -> String {
    station_emv::card_data::scrub_pans_text(s)
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
        masked_pan: r.masked_pan.map(|m| scrub_entry(&m)),
        line: r.line,
        reason: r.reason.map(|s| scrub(&s)),
        product: r.product,
        count: None,
        batch: None,
        keys: None,
        reader: None,
        request_id: None,
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
                batch: Some(scrub_entry(&l.batch)),
                keys: None,
                reader: None,
                request_id: None,
            }),
    );
    all.extend(
        journal
            .engineering_between(from, until)?
            .into_iter()
            .map(|e| AuditLine {
                time: e.at,
                actor: e.actor,
                approver: None,
                action: e.command.as_str(),
                operation_id: None,
                card_id: e.card_id,
                masked_pan: e.masked_pan.map(|m| scrub_entry(&m)),
                line: None,
                outcome: e.outcome.as_str().to_string(),
                reason: e.detail.map(|d| scrub(&d)),
                product: None,
                count: None,
                batch: None,
                keys: Some(e.keys),
                reader: Some(e.reader),
                request_id: None,
            }),
    );
    let steps = journal.with_connection(|c| crate::pismo::store::audit_steps(c, from, until))?;
    all.extend(steps.into_iter().map(|s| AuditLine {
        action: pismo_action(&s.step, s.repeated),
        time: s.at,
        actor: s.actor,
        approver: None,
        operation_id: None,
        card_id: s.card_id.map(|c| c.to_string()),
        masked_pan: None,
        line: None,
        outcome: s.step,
        reason: Some(scrub(&s.outcome)),
        product: s.product,
        count: None,
        batch: None,
        keys: None,
        reader: None,
        request_id: Some(s.request_id),
    }));
    // By instant, not by text (RFC 3339 fractions vary in length); stable: moves of the
    // same instant keep their journal order.
    all.sort_by_cached_key(|l| {
        time::OffsetDateTime::parse(&l.time, &time::format_description::well_known::Rfc3339).ok()
    });
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
            "card 476173******0010 jammed"
        );
        assert_eq!(
            scrub("card 4761 7390 0101 0010 jammed"),
            "card 4761 73** **** 0010 jammed"
        );
        assert_eq!(scrub("PRN_CARD_JAM at 12:30"), "PRN_CARD_JAM at 12:30");
        assert_eq!(
            scrub("track 4761739001010010251220112345 jammed"),
            format!("track {} jammed", "*".repeat(28))
        );
    }

    #[test]
    fn an_engineering_run_with_production_keys_is_a_line_with_its_engineer() {
        use crate::journal::engineering::{
            EngineeringCommand, EngineeringEntry, EngineeringOutcome,
        };
        let j = Journal::open_in_memory().unwrap();
        j.record_engineering(&EngineeringEntry {
            at: String::new(),
            actor: "fieldeng".into(),
            command: EngineeringCommand::CardPerso,
            card_id: Some("card-7".into()),
            masked_pan: Some("476173******0010".into()),
            reader: "vpcd".into(),
            keys: "DEV-VISA".into(),
            outcome: EngineeringOutcome::Failed,
            detail: Some("card 4761 7390 0101 0010 muted".into()),
        })
        .unwrap();
        let l = lines(&j, BEGINNING, END).unwrap();
        assert_eq!(l.len(), 1);
        let run = &l[0];
        assert_eq!(
            (run.action, run.actor.as_str(), run.outcome.as_str()),
            ("card_perso", "fieldeng", "failed")
        );
        assert_eq!(run.card_id.as_deref(), Some("card-7"));
        assert_eq!(run.masked_pan.as_deref(), Some("476173******0010"));
        assert_eq!(run.keys.as_deref(), Some("DEV-VISA"));
        assert_eq!(
            run.reason.as_deref(),
            Some("card 4761 73** **** 0010 muted")
        );
    }

    #[tokio::test]
    async fn every_step_of_a_pismo_request_is_a_line_with_its_actor() {
        use crate::pismo::{CustomerId, PismoCardId, PrintedName, RequestId, RequestStep};
        let j = std::sync::Arc::new(Journal::open_in_memory().unwrap());
        let store =
            crate::pismo::RequestStore::new(crate::journal::JournalThread::start(j.clone()));
        let id = RequestId::new();
        let name = PrintedName::parse("JANE DOE").unwrap();
        store
            .insert(&id, CustomerId(501), &name, Some("DEV-VISA"), "amartin")
            .await
            .unwrap();
        let id = id.to_string();
        let card = Some(PismoCardId(100001));
        store
            .advance(&id, RequestStep::Created, card, "card created", "agent")
            .await
            .unwrap();
        store
            .note(&id, "Pismo cannot be reached", "agent")
            .await
            .unwrap();
        store
            .advance(&id, RequestStep::Queued, None, "added", "agent")
            .await
            .unwrap();
        store
            .begin_resend(&id, PismoCardId(100001), "bnoor")
            .await
            .unwrap();
        let l = lines(&j, BEGINNING, END).unwrap();
        let seen: Vec<_> = l.iter().map(|l| (l.action, l.actor.as_str())).collect();
        assert_eq!(
            seen,
            [
                ("pismo_request", "amartin"),
                ("pismo_create_card", "agent"),
                ("pismo_call_not_done", "agent"),
                ("pismo_add_to_embossing", "agent"),
                ("pismo_resend", "bnoor"),
            ]
        );
        assert!(l
            .iter()
            .all(|l| l.request_id.as_deref() == Some(id.as_str())));
        assert_eq!(l[4].card_id.as_deref(), Some("100001"));
        assert_eq!(l[4].product.as_deref(), Some("DEV-VISA"));
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
