use super::*;
use crate::journal::state::{JobState::*, ALL_STATES};
use proptest::prelude::*;

fn order(op: &str, card: &str) -> NewJob {
    NewJob {
        operation_id: op.into(),
        issuer_id: "ISS".into(),
        card_id: card.into(),
        perso_station: "BR-1".into(),
        order_json: serde_json::json!({"distributionChannel": "INSTANT", "encryptedData": "eyJ.jwe"}),
    }
}

/// A card's way from validation to the printer's last step.
const UP_TO_EJECTING: [JobState; 8] = [
    Validated,
    Feeding,
    AtChipStation,
    Personalizing,
    Verifying,
    Printing,
    EncodingStripe,
    Ejecting,
];

fn walk(j: &Journal, op: &str, states: &[JobState]) {
    for s in states {
        j.transition(op, *s, None).unwrap();
    }
}

#[test]
fn wal_and_synchronous_full_are_in_force() {
    let dir = tempfile::tempdir().unwrap();
    let j = Journal::open(&dir.path().join("j.db")).unwrap();
    assert_eq!(j.pragma("journal_mode").unwrap(), "wal");
    assert_eq!(j.pragma("synchronous").unwrap(), "2"); // 2 = FULL
}

#[test]
fn an_empty_database_migrates_to_the_latest_version() {
    let j = Journal::open_in_memory().unwrap();
    assert_eq!(
        j.pragma("user_version").unwrap(),
        migrations::LATEST.to_string()
    );
}

#[test]
fn a_database_from_a_newer_agent_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("j.db");
    Connection::open(&path)
        .unwrap()
        .pragma_update(None, "user_version", 99)
        .unwrap();
    assert!(matches!(
        Journal::open(&path),
        Err(JournalError::TooNew { found: 99, .. })
    ));
}

#[test]
fn the_same_operation_id_never_creates_a_second_job() {
    let j = Journal::open_in_memory().unwrap();
    assert_eq!(
        j.insert_order(&order("op1", "c1")).unwrap(),
        InsertOutcome::Created
    );
    assert_eq!(
        j.insert_order(&order("op1", "c1")).unwrap(),
        InsertOutcome::Duplicate {
            existing_operation_id: "op1".into(),
            state: Received
        }
    );
    assert_eq!(j.all_jobs(10).unwrap().len(), 1);
}

#[test]
fn the_same_card_while_pending_is_a_duplicate() {
    let j = Journal::open_in_memory().unwrap();
    j.insert_order(&order("op1", "c1")).unwrap();
    assert!(matches!(
        j.insert_order(&order("op2", "c1")).unwrap(),
        InsertOutcome::Duplicate { existing_operation_id, .. } if existing_operation_id == "op1"
    ));
}

#[test]
fn the_same_card_once_done_is_a_duplicate() {
    let j = Journal::open_in_memory().unwrap();
    j.insert_order(&order("op1", "c1")).unwrap();
    walk(&j, "op1", &UP_TO_EJECTING);
    walk(&j, "op1", &[Ejected]);
    assert!(matches!(
        j.insert_order(&order("op2", "c1")).unwrap(),
        InsertOutcome::Duplicate { .. }
    ));
}

#[test]
fn a_reorder_is_allowed_after_the_card_failed() {
    let j = Journal::open_in_memory().unwrap();
    j.insert_order(&order("op1", "c1")).unwrap();
    j.transition("op1", Failed, Some("bad data")).unwrap();
    assert_eq!(
        j.insert_order(&order("op2", "c1")).unwrap(),
        InsertOutcome::Created
    );
}

#[test]
fn an_illegal_transition_names_both_states_and_changes_nothing() {
    let j = Journal::open_in_memory().unwrap();
    j.insert_order(&order("op1", "c1")).unwrap();
    let e = j.transition("op1", Printing, None).unwrap_err();
    assert!(e.to_string().contains("received") && e.to_string().contains("printing"));
    assert_eq!(j.job("op1").unwrap().unwrap().state, Received);
    assert_eq!(j.history("op1").unwrap().len(), 1);
}

#[test]
fn each_reported_status_becomes_the_next_outbox_sequence() {
    let j = Journal::open_in_memory().unwrap();
    j.insert_order(&order("op1", "c1")).unwrap();
    walk(&j, "op1", &[Validated, Feeding, AtChipStation]);
    j.transition("op1", Spoiled, Some("card jam")).unwrap();
    let ev = j.pending_events(10).unwrap();
    let seq: Vec<_> = ev
        .iter()
        .map(|e| (e.sequence, e.status.as_str().to_string()))
        .collect();
    assert_eq!(
        seq,
        vec![
            (1, "CARD_PROD_REQUESTED".into()),
            (2, "CARD_PROD_READY".into()),
            (3, "CARD_PROD_EXCEPTION".into())
        ]
    );
    assert_eq!(ev[2].reason.as_deref(), Some("card jam"));
}

#[test]
fn mark_delivered_is_idempotent() {
    let j = Journal::open_in_memory().unwrap();
    j.insert_order(&order("op1", "c1")).unwrap();
    j.mark_delivered("op1", 1).unwrap();
    j.mark_delivered("op1", 1).unwrap();
    assert!(j.pending_events(10).unwrap().is_empty());
}

#[test]
fn a_parked_event_holds_back_the_later_events_of_its_operation_only() {
    let j = Journal::open_in_memory().unwrap();
    j.insert_order(&order("op1", "c1")).unwrap();
    j.insert_order(&order("op2", "c2")).unwrap();
    j.transition("op1", Validated, None).unwrap();
    j.mark_parked("op1", 1, "400 FIELD_INVALID_FORMAT").unwrap();
    let ev = j.pending_events(10).unwrap();
    assert_eq!(ev.len(), 1);
    assert_eq!(ev[0].operation_id, "op2");
    assert_eq!(j.parked_count().unwrap(), 1);
    j.unpark("op1").unwrap();
    assert_eq!(j.pending_events(10).unwrap().len(), 3);
}

#[test]
fn a_clear_pan_is_never_stored() {
    let j = Journal::open_in_memory().unwrap();
    j.insert_order(&order("op1", "c1")).unwrap();
    assert!(matches!(
        j.set_masked_pan("op1", "4761739001010010"),
        Err(JournalError::Refused(_))
    ));
    assert!(j.set_masked_pan("op1", "4761739*****0010").is_err());
    assert!(
        j.set_masked_pan("op1", "476173***1010").is_err(),
        "shows 10 of 13"
    );
    j.set_masked_pan("op1", "476173******0010").unwrap();
}

#[test]
fn ending_a_job_purges_its_encrypted_card_data_with_zero_retention() {
    let j = Journal::open_in_memory().unwrap();
    j.insert_order(&order("op1", "c1")).unwrap();
    j.transition("op1", Failed, Some("CRYPTO_ERROR")).unwrap();
    let job = j.job("op1").unwrap().unwrap();
    assert!(job.order_json["encryptedData"].is_null());
    assert_eq!(job.order_json["distributionChannel"], "INSTANT");
}

#[test]
fn with_retention_card_data_stays_until_purged_after_the_period() {
    let dir = tempfile::tempdir().unwrap();
    let j = Journal::open_with(
        &dir.path().join("j.db"),
        JournalOptions {
            retention: Duration::from_secs(3600),
        },
    )
    .unwrap();
    j.insert_order(&order("op1", "c1")).unwrap();
    j.transition("op1", Cancelled, None).unwrap();
    assert!(!j.job("op1").unwrap().unwrap().order_json["encryptedData"].is_null());
    assert_eq!(j.purge_card_data(OffsetDateTime::now_utc()).unwrap(), 0);
    let later = OffsetDateTime::now_utc() + time::Duration::hours(2);
    assert_eq!(j.purge_card_data(later).unwrap(), 1);
    assert!(j.job("op1").unwrap().unwrap().order_json["encryptedData"].is_null());
}

#[test]
fn restart_recovery_puts_cards_in_the_printer_in_doubt_and_leaves_the_queue() {
    let j = Journal::open_in_memory().unwrap();
    j.insert_order(&order("queued", "c1")).unwrap();
    j.insert_order(&order("mid", "c2")).unwrap();
    walk(
        &j,
        "mid",
        &[Validated, Feeding, AtChipStation, Personalizing],
    );
    let doubt = j.recover_after_restart().unwrap();
    assert_eq!(doubt.len(), 1);
    assert_eq!(doubt[0].operation_id, "mid");
    assert_eq!(doubt[0].state, InDoubt);
    assert_eq!(j.job("queued").unwrap().unwrap().state, Received);
}

#[test]
fn staff_resolve_a_job_in_doubt_and_the_resolution_is_audited() {
    let j = Journal::open_in_memory().unwrap();
    j.insert_order(&order("mid", "c2")).unwrap();
    walk(&j, "mid", &[Validated, Feeding]);
    j.recover_after_restart().unwrap();
    let job = j
        .resolve_in_doubt("mid", Resolution::Spoil, "staff-17")
        .unwrap();
    assert_eq!(job.state, Spoiled);
    let last = j.history("mid").unwrap().pop().unwrap();
    assert_eq!(last.actor, "staff-17");
    assert!(j
        .resolve_in_doubt("mid", Resolution::Confirm, "staff-17")
        .is_err());
}

proptest! {
    #[test]
    fn no_illegal_transition_is_ever_accepted(targets in proptest::collection::vec(0usize..ALL_STATES.len(), 1..40)) {
        let j = Journal::open_in_memory().unwrap();
        j.insert_order(&order("op", "c")).unwrap();
        let mut current = Received;
        for t in targets {
            let to = ALL_STATES[t];
            let before = j.history("op").unwrap().len();
            match j.transition("op", to, None) {
                Ok(job) => {
                    prop_assert!(current.can_go_to(to), "{current} -> {to} accepted");
                    prop_assert_eq!(job.state, to);
                    current = to;
                }
                Err(JournalError::IllegalTransition { from, .. }) => {
                    prop_assert!(!current.can_go_to(to));
                    prop_assert_eq!(from, current);
                    prop_assert_eq!(j.history("op").unwrap().len(), before);
                }
                Err(e) => prop_assert!(false, "unexpected {e}"),
            }
            prop_assert_eq!(j.job("op").unwrap().unwrap().state, current);
        }
    }
}

#[test]
fn only_a_card_caught_after_its_stripe_was_read_back_can_be_confirmed_as_good() {
    let j = Journal::open_in_memory().unwrap();
    j.insert_order(&order("early", "c1")).unwrap();
    walk(
        &j,
        "early",
        &[Validated, Feeding, AtChipStation, Personalizing],
    );
    j.insert_order(&order("late", "c2")).unwrap();
    walk(&j, "late", &UP_TO_EJECTING);
    j.recover_after_restart().unwrap();
    assert!(matches!(
        j.resolve_in_doubt("early", Resolution::Confirm, "staff-1"),
        Err(JournalError::Refused(_))
    ));
    let late = j
        .resolve_in_doubt("late", Resolution::Confirm, "staff-1")
        .unwrap();
    assert_eq!(late.state, Ejected);
}

#[test]
fn a_card_caught_while_printing_cannot_be_confirmed_its_stripe_may_be_blank() {
    let j = Journal::open_in_memory().unwrap();
    for (op, card) in [("printing", "c1"), ("stripe", "c2")] {
        j.insert_order(&order(op, card)).unwrap();
        walk(&j, op, &UP_TO_EJECTING[..6]);
    }
    j.transition("stripe", EncodingStripe, None).unwrap();
    j.recover_after_restart().unwrap();
    for op in ["printing", "stripe"] {
        assert!(
            matches!(
                j.resolve_in_doubt(op, Resolution::Confirm, "staff-1"),
                Err(JournalError::Refused(_))
            ),
            "{op}"
        );
    }
}

#[test]
fn the_audit_trail_cannot_be_rewritten() {
    let j = Journal::open_in_memory().unwrap();
    j.insert_order(&order("op1", "c1")).unwrap();
    let conn = j.lock();
    assert!(conn
        .execute("UPDATE transitions SET to_state = 'ejected'", [])
        .is_err());
    assert!(conn.execute("DELETE FROM transitions", []).is_err());
}

#[test]
fn jobs_by_state_are_only_those_states_oldest_first() {
    let j = Journal::open_in_memory().unwrap();
    for (op, card) in [("op1", "c1"), ("op2", "c2"), ("op3", "c3")] {
        j.insert_order(&order(op, card)).unwrap();
    }
    walk(&j, "op2", &[Validated]);
    let received: Vec<String> = j
        .jobs(&[Received])
        .unwrap()
        .into_iter()
        .map(|job| job.operation_id)
        .collect();
    assert_eq!(received, ["op1", "op3"]);
    assert!(j.jobs(&[]).unwrap().is_empty());
}

#[test]
fn an_eject_records_the_figures_with_the_state_in_one_write() {
    let j = Journal::open_in_memory().unwrap();
    j.insert_order(&order("op1", "c1")).unwrap();
    walk(&j, "op1", &UP_TO_EJECTING);
    let job = j.eject("op1", 7, 9.5).unwrap();
    assert_eq!((job.state, job.apdu_count), (Ejected, 7));
    assert_eq!(job.seconds, Some(9.5));
}

#[test]
fn a_fed_job_records_its_line_and_a_second_line_cannot_take_it() {
    let j = Journal::open_in_memory().unwrap();
    j.insert_order(&order("op1", "c1")).unwrap();
    walk(&j, "op1", &[Validated]);
    let fed = j.feed("op1", "counter-1", "amartin").unwrap();
    assert_eq!(fed.state, Feeding);
    assert_eq!(fed.line.as_deref(), Some("counter-1"));
    assert!(matches!(
        j.feed("op1", "counter-2", "agent"),
        Err(JournalError::IllegalTransition { .. })
    ));
    assert_eq!(
        j.job("op1").unwrap().unwrap().line.as_deref(),
        Some("counter-1")
    );
    let fed_by = j.history("op1").unwrap().pop().unwrap().actor;
    assert_eq!(fed_by, "amartin");
}

#[test]
fn deleted_rows_are_overwritten_not_left_in_free_pages() {
    let j = Journal::open_in_memory().unwrap();
    assert_eq!(j.pragma("secure_delete").unwrap(), "1");
}

#[test]
fn upkeep_purges_card_data_past_its_retention_and_empties_the_write_ahead_log() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("journal.db");
    let j = Journal::open_with(
        &path,
        JournalOptions {
            retention: Duration::from_secs(3600),
        },
    )
    .unwrap();
    j.insert_order(&order("op1", "c1")).unwrap();
    j.transition("op1", Cancelled, None).unwrap();
    let wal = dir.path().join("journal.db-wal");
    assert!(std::fs::metadata(&wal).unwrap().len() > 0);
    let later = OffsetDateTime::now_utc() + time::Duration::hours(2);

    let done = super::upkeep::upkeep(&j, later).unwrap();

    assert_eq!(done.purged, 1);
    assert!(done.wal_emptied);
    assert_eq!(std::fs::metadata(&wal).unwrap().len(), 0);
    assert!(j.job("op1").unwrap().unwrap().order_json["encryptedData"].is_null());
}

#[test]
fn staff_confirm_removal_only_of_a_card_awaiting_it() {
    let j = Journal::open_in_memory().unwrap();
    j.insert_order(&order("stuck", "c1")).unwrap();
    walk(&j, "stuck", &[Validated, Feeding, AtChipStation]);
    assert!(matches!(
        j.card_removed("stuck", "staff-1", None),
        Err(JournalError::IllegalTransition { .. })
    ));
    j.transition(
        "stuck",
        AwaitingRemoval,
        Some("PRN_CARD_JAM; reject failed"),
    )
    .unwrap();
    assert!(
        j.recover_after_restart().unwrap().is_empty(),
        "not put in doubt"
    );

    let job = j.card_removed("stuck", "staff-1", None).unwrap();

    assert_eq!(job.state, Spoiled);
    let last = j.history("stuck").unwrap().pop().unwrap();
    assert_eq!(
        (last.from.as_deref(), last.actor.as_str()),
        (Some("awaiting_removal"), "staff-1")
    );
}

#[test]
fn a_move_and_the_writes_that_go_with_it_are_durable_together_or_not_at_all() {
    let j = Journal::open_in_memory().unwrap();
    j.insert_order(&order("op1", "card-1")).unwrap();
    walk(&j, "op1", &[Validated, Feeding]);
    j.transition("op1", Rejected, Some("jam")).unwrap();
    let events_before = j.pending_events(100).unwrap().len();

    let refused: Result<(Job, ()), JournalError> =
        j.transition_approved_with("op1", Spoiled, Some("given up"), "amartin", None, |tx| {
            tx.execute("INSERT INTO stock_loads (at, product, count, batch, actor) VALUES ('t', 'P', 1, 'B', 'a')", [])?;
            Err(JournalError::Refused("the write that goes with the move"))
        });

    assert!(refused.is_err());
    assert_eq!(j.job("op1").unwrap().unwrap().state, Rejected);
    assert_eq!(
        j.pending_events(100).unwrap().len(),
        events_before,
        "nothing reported"
    );
    assert!(j.stock_loads("", "9999").unwrap().is_empty());
}
