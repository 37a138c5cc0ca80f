//! A line under faults (issue 13): a journal failure or a bug in the middle of a card,
//! a reject box that does not take the card, an empty feeder with automatic start, a
//! second agent on the same journal, card data past its retention, and the stripe
//! write and eject as journaled steps.

mod e2e;

use std::time::Duration;

use async_trait::async_trait;
use e2e::{branch, wait_states};
use station_agent::agent::Agent;
use station_agent::job::state::JobState;
use station_agent::journal::NewJob;
use station_hal::{CardPrinter, MagTracks, PanelImage, PrinterError, PrinterStatus};
use station_sim::printer::{Fault, Step};

/// Waits (bounded) until `f` holds.
async fn eventually(what: &str, within: Duration, mut f: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + within;
    while !f() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "not in time: {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn line_problem(agent: &Agent) -> Option<String> {
    agent
        .station
        .lines()
        .into_iter()
        .find(|(l, _)| l == "line-1")
        .and_then(|(_, p)| p)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_journal_failure_mid_card_sends_the_card_to_the_reject_box_and_marks_the_line_down() {
    let (_dir, b) = branch("automatic").await;
    let agent = b.agent().await;
    // The disk refuses the write that would record the personalization.
    rusqlite::Connection::open(b.journal_path())
        .unwrap()
        .execute_batch(
            "CREATE TRIGGER disk_full BEFORE UPDATE OF state ON jobs \
             WHEN NEW.state = 'personalizing' BEGIN SELECT RAISE(ABORT, 'disk full'); END;",
        )
        .unwrap();
    b.order(1).await;
    eventually(
        "the card reaches the reject box",
        Duration::from_secs(30),
        || b.printer.finished().iter().any(|c| c.rejected),
    )
    .await;
    let problem = line_problem(&agent).expect("the line is marked down");
    assert!(problem.contains("Line stopped"), "{problem}");
    agent.abort();
}

/// A printer whose print step hits a bug in the driver (a panic).
struct PanicsAtPrint(Box<dyn CardPrinter>);

#[async_trait]
impl CardPrinter for PanicsAtPrint {
    async fn status(&mut self) -> Result<PrinterStatus, PrinterError> {
        self.0.status().await
    }
    async fn feed(&mut self) -> Result<(), PrinterError> {
        self.0.feed().await
    }
    async fn park_at_chip_station(&mut self) -> Result<(), PrinterError> {
        self.0.park_at_chip_station().await
    }
    async fn print(&mut self, _panels: &[PanelImage]) -> Result<(), PrinterError> {
        panic!("driver bug while printing")
    }
    async fn write_magstripe(&mut self, tracks: &MagTracks) -> Result<(), PrinterError> {
        self.0.write_magstripe(tracks).await
    }
    async fn eject(&mut self) -> Result<(), PrinterError> {
        self.0.eject().await
    }
    async fn reject(&mut self) -> Result<(), PrinterError> {
        self.0.reject().await
    }
    async fn clear_fault(&mut self) -> Result<(), PrinterError> {
        self.0.clear_fault().await
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_panic_mid_card_spoils_the_card_into_the_reject_box_and_marks_the_line_down() {
    let (_dir, b) = branch("automatic").await;
    let mut devices = b.devices();
    let inner = std::mem::replace(
        &mut devices[0].printer,
        Box::new(PanicsAtPrint(Box::new(NoPrinter))),
    );
    devices[0].printer = Box::new(PanicsAtPrint(inner));
    let agent = Agent::start(&b.config, devices).await.unwrap();
    let op = b.order(1).await.remove(0).1;
    wait_states(
        &agent,
        std::slice::from_ref(&op),
        &[JobState::Spoiled],
        Duration::from_secs(30),
    )
    .await;
    assert!(
        b.printer.finished()[0].rejected,
        "the card is in the reject box"
    );
    let problem = line_problem(&agent).expect("the line is marked down");
    assert!(problem.contains("Line stopped"), "{problem}");
    agent.abort();
}

#[tokio::test(flavor = "multi_thread")]
async fn under_the_staff_policy_a_card_lost_to_a_line_failure_waits_in_the_reject_box_for_staff() {
    let (_dir, b) = branch("staff").await;
    let mut devices = b.devices();
    let inner = std::mem::replace(
        &mut devices[0].printer,
        Box::new(PanicsAtPrint(Box::new(NoPrinter))),
    );
    devices[0].printer = Box::new(PanicsAtPrint(inner));
    let agent = Agent::start(&b.config, devices).await.unwrap();
    let op = b.order(1).await.remove(0).1;
    wait_states(
        &agent,
        std::slice::from_ref(&op),
        &[JobState::WaitingForStaff],
        Duration::from_secs(30),
    )
    .await;
    agent.station.start(&op, "amartin").unwrap();
    wait_states(
        &agent,
        std::slice::from_ref(&op),
        &[JobState::Rejected, JobState::Spoiled],
        Duration::from_secs(30),
    )
    .await;
    let job = agent.station.journal.job(&op).unwrap().unwrap();
    assert_eq!(
        job.state,
        JobState::Rejected,
        "make again or give up, like any other spoil: {:?}",
        job.reason
    );
    assert!(b.printer.finished()[0].rejected);
    agent.abort();
}

/// Placeholder printer swapped out at once (never used).
struct NoPrinter;

#[async_trait]
impl CardPrinter for NoPrinter {
    async fn status(&mut self) -> Result<PrinterStatus, PrinterError> {
        Err(PrinterError::Busy)
    }
    async fn feed(&mut self) -> Result<(), PrinterError> {
        Err(PrinterError::Busy)
    }
    async fn park_at_chip_station(&mut self) -> Result<(), PrinterError> {
        Err(PrinterError::Busy)
    }
    async fn print(&mut self, _: &[PanelImage]) -> Result<(), PrinterError> {
        Err(PrinterError::Busy)
    }
    async fn write_magstripe(&mut self, _: &MagTracks) -> Result<(), PrinterError> {
        Err(PrinterError::Busy)
    }
    async fn eject(&mut self) -> Result<(), PrinterError> {
        Err(PrinterError::Busy)
    }
    async fn reject(&mut self) -> Result<(), PrinterError> {
        Err(PrinterError::Busy)
    }
    async fn clear_fault(&mut self) -> Result<(), PrinterError> {
        Err(PrinterError::Busy)
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_card_the_reject_box_did_not_take_stops_the_line_until_staff_confirm_its_removal() {
    let (_dir, b) = branch("automatic").await;
    b.printer.arm_fault(Step::Park, Fault::Jam);
    b.printer.arm_fault(Step::Reject, Fault::Jam);
    let agent = b.agent().await;
    let first = b.order(1).await.remove(0).1;
    eventually("the reject fails", Duration::from_secs(30), || {
        agent
            .station
            .journal
            .job(&first)
            .unwrap()
            .and_then(|j| j.reason)
            .is_some_and(|r| r.contains("reject box"))
    })
    .await;
    let second = b.order(1).await.remove(0).1;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let waiting = agent.station.journal.job(&second).unwrap().unwrap();
    assert_eq!(
        waiting.state,
        JobState::Validated,
        "no card is fed while a spoiled one may be inside"
    );
    assert_eq!(
        b.printer.finished().len(),
        0,
        "the stuck card is still inside"
    );
    // Staff open the printer, take the card out, clear the jam, and say so.
    let _ = b.printer.handle("Srs");
    b.printer.clear_fault();
    let removed = "removed".parse().expect("a console action");
    agent.station.act(&first, removed, "staff-1").unwrap();
    wait_states(
        &agent,
        std::slice::from_ref(&second),
        &[JobState::Ejected],
        Duration::from_secs(30),
    )
    .await;
    let j = agent.station.journal.job(&first).unwrap().unwrap();
    assert_eq!(j.state, JobState::Spoiled);
    let last = agent
        .station
        .journal
        .history(&first)
        .unwrap()
        .pop()
        .unwrap();
    assert_eq!(last.actor, "staff-1");
    agent.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn with_automatic_start_a_card_sent_back_by_an_empty_feeder_is_made_once_cards_are_loaded() {
    let (_dir, b) = branch("automatic").await;
    b.printer.arm_fault(Step::Feed, Fault::FeederEmpty);
    let agent = b.agent().await;
    let op = b.order(1).await.remove(0).1;
    wait_states(
        &agent,
        std::slice::from_ref(&op),
        &[JobState::WaitingForStaff],
        Duration::from_secs(30),
    )
    .await;
    // Staff load blank cards and clear the feeder alarm.
    b.printer.clear_fault();
    wait_states(
        &agent,
        std::slice::from_ref(&op),
        &[JobState::Ejected],
        Duration::from_secs(30),
    )
    .await;
    assert_eq!(
        b.printer.finished().iter().filter(|c| !c.rejected).count(),
        1
    );
    agent.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_second_agent_on_the_same_journal_is_refused_before_it_touches_the_live_card() {
    let (_dir, b) = branch("staff").await;
    let first = b.agent().await;
    // The live agent has a card in the printer.
    let j = &first.station.journal;
    j.insert_order(&NewJob {
        operation_id: "live-op".into(),
        issuer_id: "ISS".into(),
        card_id: "live-card".into(),
        perso_station: e2e::STATION.into(),
        order_json: serde_json::json!({}),
    })
    .unwrap();
    j.transition("live-op", JobState::Validated, None).unwrap();
    j.feed("live-op", "line-1", "agent").unwrap();

    let second = Agent::start(&b.config, b.devices()).await;

    let refused = second.err().expect("a second agent is refused");
    assert!(refused.to_string().contains("already running"), "{refused}");
    assert_eq!(
        j.job("live-op").unwrap().unwrap().state,
        JobState::Feeding,
        "the live agent's card is not put in doubt"
    );
    first.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn card_data_past_its_retention_is_purged_when_the_agent_starts() {
    let (_dir, mut b) = branch("staff").await;
    b.config.journal.retention_days = 1;
    let path = b.journal_path();
    {
        // Kept a day after the job ends, as the station is configured.
        let j = station_agent::journal::Journal::open_with(
            &path,
            station_agent::journal::JournalOptions {
                retention: Duration::from_secs(86_400),
            },
        )
        .unwrap();
        j.insert_order(&NewJob {
            operation_id: "old-op".into(),
            issuer_id: "ISS".into(),
            card_id: "old-card".into(),
            perso_station: e2e::STATION.into(),
            order_json: serde_json::json!({"encryptedData": "eyJ.old.jwe"}),
        })
        .unwrap();
        j.transition("old-op", JobState::Cancelled, None).unwrap();
    }
    rusqlite::Connection::open(&path)
        .unwrap()
        .execute(
            "UPDATE jobs SET updated_at = '2020-01-01T00:00:00Z' WHERE operation_id = 'old-op'",
            [],
        )
        .unwrap();
    assert!(
        !station_agent::journal::Journal::open(&path)
            .unwrap()
            .job("old-op")
            .unwrap()
            .unwrap()
            .order_json["encryptedData"]
            .is_null(),
        "kept until the agent purges it"
    );
    let agent = b.agent().await;
    eventually(
        "the old card data is purged",
        Duration::from_secs(10),
        || {
            agent
                .station
                .journal
                .job("old-op")
                .unwrap()
                .unwrap()
                .order_json["encryptedData"]
                .is_null()
        },
    )
    .await;
    agent.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn the_stripe_write_and_the_eject_are_journaled_before_they_happen() {
    let (_dir, b) = branch("automatic").await;
    let agent = b.agent().await;
    let op = b.order(1).await.remove(0).1;
    wait_states(
        &agent,
        std::slice::from_ref(&op),
        &[JobState::Ejected],
        Duration::from_secs(30),
    )
    .await;
    let steps: Vec<String> = agent
        .station
        .journal
        .history(&op)
        .unwrap()
        .into_iter()
        .map(|t| t.to)
        .collect();
    let tail: Vec<&str> = steps
        .iter()
        .rev()
        .take(4)
        .rev()
        .map(String::as_str)
        .collect();
    assert_eq!(tail, ["printing", "encoding_stripe", "ejecting", "ejected"]);
    agent.shutdown().await;
}
