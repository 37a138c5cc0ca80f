//! At the counter (staff start each card), the line puts the next card's panels into the
//! printer's memory while staff are still with the customer, so Start goes straight to
//! the feed; a staged panel is only ever printed on the card it was rendered for.

use std::time::Duration;

use station_agent::agent::Agent;
use station_agent::job::state::JobState;
use station_branch::{branch, wait_states, Branch};
use station_sim::printer::{Fault, Step, Timing};

const WITHIN: Duration = Duration::from_secs(60);

fn quick() -> Timing {
    Timing {
        scale: 0.01,
        baud: Some(115_200),
        ..Timing::default()
    }
}

async fn counter(
    dir: &std::path::Path,
    timing: Timing,
    cards: usize,
) -> (Branch, Agent, Vec<String>) {
    let b = branch(dir, "staff", timing).await;
    let agent = b.agent().await;
    let ops: Vec<String> = b.order(cards).await.into_iter().map(|(_, op)| op).collect();
    wait_states(&agent, &ops, &[JobState::WaitingForStaff], WITHIN).await;
    (b, agent, ops)
}

/// Waits (bounded) until `what` holds.
async fn until(what: &str, mut check: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + WITHIN;
    while !check() {
        assert!(tokio::time::Instant::now() < deadline, "never: {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// The card the line stages first: the oldest waiting for staff.
fn oldest_waiting(agent: &Agent) -> String {
    agent
        .station
        .journal
        .jobs(&[JobState::WaitingForStaff])
        .unwrap()[0]
        .operation_id
        .clone()
}

#[tokio::test(flavor = "multi_thread")]
async fn the_waiting_cards_panel_is_in_the_printer_before_start_and_printed_from_there() {
    let dir = tempfile::tempdir().unwrap();
    let (b, agent, ops) = counter(dir.path(), quick(), 1).await;
    until("the panel is staged", || b.printer.downloads().len() == 1).await;
    assert!(b.printer.finished().is_empty(), "no card moved for staging");
    agent.station.start(&ops[0], "amartin").unwrap();
    wait_states(&agent, &ops, &[JobState::Ejected], WITHIN).await;
    let card = &b.printer.finished()[0];
    assert_eq!(card.from_memory, [true]);
    assert_eq!(card.panel_digests, b.printer.downloads(), "downloaded once");
    agent.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn starting_another_card_than_the_staged_one_prints_that_cards_own_panel() {
    let dir = tempfile::tempdir().unwrap();
    let (b, agent, ops) = counter(dir.path(), quick(), 2).await;
    let staged = oldest_waiting(&agent);
    let other = ops.iter().find(|op| **op != staged).unwrap().clone();
    until("the oldest card is staged", || {
        b.printer.downloads().len() == 1
    })
    .await;
    let staged_face = b.printer.downloads()[0];

    agent.station.start(&other, "amartin").unwrap();
    wait_states(
        &agent,
        std::slice::from_ref(&other),
        &[JobState::Ejected],
        WITHIN,
    )
    .await;
    let first = b.printer.finished()[0].clone();
    assert_ne!(
        first.panel_digests,
        [staged_face],
        "never the staged card's face"
    );

    agent.station.start(&staged, "amartin").unwrap();
    wait_states(
        &agent,
        std::slice::from_ref(&staged),
        &[JobState::Ejected],
        WITHIN,
    )
    .await;
    let second = b.printer.finished()[1].clone();
    assert_eq!(second.panel_digests, [staged_face], "its own face");
    agent.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn start_during_the_download_feeds_after_it_and_prints_the_staged_panel() {
    let dir = tempfile::tempdir().unwrap();
    // A panel takes about three seconds on this link: Start comes in the middle of it.
    let slow = Timing {
        scale: 0.3,
        ..quick()
    };
    let (b, agent, ops) = counter(dir.path(), slow, 1).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        b.printer.downloads().is_empty(),
        "the download is still on the link"
    );
    agent.station.start(&ops[0], "amartin").unwrap();
    wait_states(&agent, &ops, &[JobState::Feeding], WITHIN).await;
    assert!(
        b.printer.downloads().is_empty(),
        "the line took the card before the download had crossed"
    );
    wait_states(&agent, &ops, &[JobState::Ejected], WITHIN).await;
    let card = &b.printer.finished()[0];
    assert!(!card.rejected, "the feed never cut into the download");
    assert_eq!(card.from_memory, [true]);
    assert_eq!(card.panel_digests, b.printer.downloads());
    agent.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_download_the_printer_refuses_while_staging_leaves_the_card_to_be_made_normally() {
    let dir = tempfile::tempdir().unwrap();
    let b = branch(dir.path(), "staff", quick()).await;
    b.printer.arm_fault(Step::Download, Fault::Jam);
    let agent = b.agent().await;
    let ops: Vec<String> = b.order(1).await.into_iter().map(|(_, op)| op).collect();
    wait_states(&agent, &ops, &[JobState::WaitingForStaff], WITHIN).await;
    until("the printer refused the download", || {
        !b.printer.is_armed(Step::Download)
    })
    .await;
    agent.station.start(&ops[0], "amartin").unwrap();
    wait_states(&agent, &ops, &[JobState::Ejected], WITHIN).await;
    let card = &b.printer.finished()[0];
    assert!(!card.rejected);
    assert_eq!(card.panel_digests.len(), 1);
    assert_eq!(
        card.panel_digests,
        b.printer.downloads(),
        "the panel downloaded again for this card, not a stale one"
    );
    agent.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_cancelled_cards_staged_panel_is_cleared_from_the_printer() {
    let dir = tempfile::tempdir().unwrap();
    let (b, agent, ops) = counter(dir.path(), quick(), 1).await;
    until("the panel is staged", || !b.printer.memory().is_empty()).await;
    agent.station.cancel(&ops[0], "amartin").unwrap();
    until("the printer's memory is empty", || {
        b.printer.memory().is_empty()
    })
    .await;
    assert!(b.printer.finished().is_empty());
    agent.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn an_automatic_line_stages_nothing_before_a_card_and_prints_each_its_own_face() {
    let dir = tempfile::tempdir().unwrap();
    let b = branch(dir.path(), "automatic", quick()).await;
    let agent = b.agent().await;
    let ops: Vec<String> = b.order(2).await.into_iter().map(|(_, op)| op).collect();
    wait_states(&agent, &ops, &[JobState::Ejected], WITHIN).await;
    let cards = b.printer.finished();
    let printed: Vec<u64> = cards.iter().flat_map(|c| c.panel_digests.clone()).collect();
    assert_eq!(
        printed,
        b.printer.downloads(),
        "one download per card, its own"
    );
    assert_ne!(printed[0], printed[1]);
    assert!(cards.iter().all(|c| !c.rejected));
    agent.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_staged_panel_is_cleared_from_the_printer_when_the_agent_stops() {
    let dir = tempfile::tempdir().unwrap();
    let (b, agent, _ops) = counter(dir.path(), quick(), 1).await;
    until("the panel is staged", || !b.printer.memory().is_empty()).await;
    agent.shutdown().await;
    assert!(
        b.printer.memory().is_empty(),
        "no face left in the printer's memory"
    );
    assert!(b.printer.finished().is_empty(), "no card moved");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_card_left_in_the_printer_is_not_reset_when_the_agent_stops() {
    // The staged card fails at the stripe and the reject box does not take it: staff are
    // told to take it out by hand. Stopping now must not reset the printer (`Srs`), which
    // would move the very card staff are looking for.
    let dir = tempfile::tempdir().unwrap();
    let (b, agent, ops) = counter(dir.path(), quick(), 1).await;
    until("the panel is staged", || !b.printer.memory().is_empty()).await;
    b.printer.arm_fault(Step::Mag, Fault::MagWrite);
    b.printer.arm_fault(Step::Reject, Fault::Jam);
    agent.station.start(&ops[0], "amartin").unwrap();
    wait_states(&agent, &ops, &[JobState::AwaitingRemoval], WITHIN).await;
    let resets_before = resets(&b);

    agent.shutdown().await;

    assert_eq!(
        resets(&b),
        resets_before,
        "no printer reset with a card inside"
    );
    assert!(
        b.printer.finished().is_empty(),
        "the card is still in the printer"
    );
}

/// How many printer resets (`Srs`) the printer has answered.
fn resets(b: &Branch) -> usize {
    b.printer
        .exchanges()
        .iter()
        .filter(|e| e.command == "Srs")
        .count()
}
