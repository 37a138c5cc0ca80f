//! A station with two printer/encoder pairs: each line makes one card at a time, no
//! order is made twice, every card records the line that made it, and a card left in
//! doubt stops only its own line.

use std::time::Duration;

use station_agent::job::state::JobState;
use station_agent::journal::{Journal, NewJob, Resolution};
use station_branch::{branch_with_lines, wait_states, STATION};
use station_sim::printer::Timing;

fn timing() -> Timing {
    // A tenth of a second per card: both lines are busy at once.
    Timing {
        scale: 0.01,
        ..Timing::default()
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn two_lines_share_the_queue_and_each_card_names_its_line() {
    let dir = tempfile::tempdir().unwrap();
    let b = branch_with_lines(dir.path(), "automatic", timing(), 2).await;
    let agent = b.agent().await;
    let ops: Vec<String> = b.order(6).await.into_iter().map(|(_, op)| op).collect();
    wait_states(&agent, &ops, &[JobState::Ejected], Duration::from_secs(60)).await;

    let made_1 = b.printer.finished().len();
    let made_2 = b.more_lines[0].0.finished().len();
    assert_eq!(made_1 + made_2, 6, "one card per order, none twice");
    assert!(
        made_1 >= 1 && made_2 >= 1,
        "both lines worked: {made_1} + {made_2}"
    );
    let mut by_line = std::collections::HashMap::new();
    for op in &ops {
        let job = agent.station.journal.job(op).unwrap().unwrap();
        *by_line.entry(job.line.unwrap()).or_insert(0) += 1;
    }
    assert_eq!(by_line.get("line-1"), Some(&made_1));
    assert_eq!(by_line.get("line-2"), Some(&made_2));
    agent.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_card_in_doubt_stops_only_its_own_line() {
    let dir = tempfile::tempdir().unwrap();
    let b = branch_with_lines(dir.path(), "automatic", timing(), 2).await;
    {
        // The agent stopped while line-1 was feeding this card.
        let j = Journal::open(&b.journal_path()).unwrap();
        j.insert_order(&NewJob {
            operation_id: "op-in-doubt".into(),
            issuer_id: "SANDBOX-ISSUER".into(),
            card_id: "card-in-doubt".into(),
            perso_station: STATION.into(),
            order_json: serde_json::json!({"distributionChannel": "INSTANT"}),
        })
        .unwrap();
        j.transition("op-in-doubt", JobState::Validated, None)
            .unwrap();
        j.feed("op-in-doubt", "line-1", "agent").unwrap();
    }
    let agent = b.agent().await;
    let ops: Vec<String> = b.order(3).await.into_iter().map(|(_, op)| op).collect();
    wait_states(&agent, &ops, &[JobState::Ejected], Duration::from_secs(60)).await;
    assert!(b.printer.finished().is_empty(), "line-1 fed nothing");
    assert_eq!(b.more_lines[0].0.finished().len(), 3);
    let health = agent.station.lines();
    assert!(health[0].1.as_deref().unwrap_or("").contains("in doubt"));
    assert_eq!(health[1].1, None);

    agent
        .station
        .resolve("op-in-doubt", Resolution::Spoil, "amartin")
        .unwrap();
    let cleared = async {
        while agent.station.lines()[0].1.is_some() {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    };
    tokio::time::timeout(Duration::from_secs(10), cleared)
        .await
        .expect("line-1 goes on once the card is resolved");
    agent.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn an_order_cancelled_between_pick_and_feed_is_not_fed_and_the_line_goes_on() {
    let dir = tempfile::tempdir().unwrap();
    let b = branch_with_lines(dir.path(), "staff", timing(), 1).await;
    let agent = b.agent().await;
    let op = b.order(1).await.remove(0).1;
    wait_states(
        &agent,
        std::slice::from_ref(&op),
        &[JobState::WaitingForStaff],
        Duration::from_secs(30),
    )
    .await;
    let order = agent.station.journal.job(&op).unwrap().unwrap().order_json;
    let today = time::OffsetDateTime::now_utc().date();
    let prepared = agent.station.production.prepare(&order, today).unwrap();
    agent.station.cancel(&op, "amartin").unwrap();
    let feeder = b.printer.feeder();
    let mut line = b.devices().remove(0);
    agent
        .station
        .produce(&mut line, &op, &prepared, "amartin")
        .await
        .expect("a cancelled order is skipped, not a pipeline failure");
    assert_eq!(b.printer.feeder(), feeder, "no card left the feeder");
    assert_eq!(
        agent.station.journal.job(&op).unwrap().unwrap().state,
        JobState::Cancelled
    );
    agent.shutdown().await;
}
