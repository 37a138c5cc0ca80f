//! Resilience of the station: the hub away, orders repeated, the agent killed at
//! each step of a card, bad orders. No order lost, no card issued twice, every
//! card accounted for.

mod e2e;

use std::time::Duration;

use e2e::{branch, wait_hub, wait_states, STATION};
use station_agent::agent::Agent;
use station_agent::job::state::JobState;
use station_agent::journal::{InsertOutcome, NewJob, Resolution};
use station_agent::sandbox::{self, SandboxConfig};

#[tokio::test(flavor = "multi_thread")]
async fn cards_are_produced_while_the_hub_is_down_and_reports_drain_once_it_is_back() {
    let (_dir, mut b) = branch("automatic").await;
    let addr = b.hub.local_addr();
    let agent = b.agent().await;
    // Stop production until the hub is down, so every card is made during the outage.
    let posted = b.order(2).await;
    let ops: Vec<String> = posted.iter().map(|(_, o)| o.clone()).collect();
    let cards: Vec<String> = posted.iter().map(|(c, _)| c.clone()).collect();
    wait_states(
        &agent,
        &ops,
        &[
            JobState::Received,
            JobState::Validated,
            JobState::Feeding,
            JobState::AtChipStation,
            JobState::Personalizing,
            JobState::Verifying,
            JobState::Printing,
            JobState::Ejected,
        ],
        Duration::from_secs(30),
    )
    .await;
    b.hub.shutdown().await;
    wait_states(&agent, &ops, &[JobState::Ejected], Duration::from_secs(60)).await;
    assert!(
        !agent
            .station
            .journal
            .pending_events(100)
            .unwrap()
            .is_empty(),
        "reports wait for the hub"
    );
    b.hub = sandbox::start(&SandboxConfig {
        listen: addr,
        state_dir: b.hub_state.clone(),
    })
    .await
    .unwrap();
    wait_hub(&b, &cards, "SUCCESSFUL", Duration::from_secs(90)).await;
    for op in &ops {
        let events = b.hub.hub().store.events(op).unwrap();
        let mut seqs: Vec<u64> = events.iter().map(|e| e.sequence).collect();
        let n = seqs.len();
        seqs.dedup();
        assert_eq!(seqs.len(), n, "each report recorded once");
        assert_eq!(events.last().unwrap().status, "CARD_PROD_DONE");
    }
    assert_eq!(b.printer.finished().len(), 2);
    agent.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn an_order_delivered_twice_makes_one_card() {
    let (_dir, b) = branch("automatic").await;
    let agent = b.agent().await;
    let posted = b.order(1).await;
    let op = posted[0].1.clone();
    wait_states(
        &agent,
        std::slice::from_ref(&op),
        &[JobState::Ejected],
        Duration::from_secs(60),
    )
    .await;
    let job = agent.station.journal.job(&op).unwrap().unwrap();
    let again = agent
        .station
        .intake(NewJob {
            operation_id: op.clone(),
            issuer_id: job.issuer_id.clone(),
            card_id: job.card_id.clone(),
            perso_station: STATION.into(),
            order_json: job.order_json.clone(),
        })
        .unwrap();
    assert!(matches!(again, InsertOutcome::Duplicate { .. }));
    let same_card = agent
        .station
        .intake(NewJob {
            operation_id: "another-operation".into(),
            issuer_id: job.issuer_id.clone(),
            card_id: job.card_id.clone(),
            perso_station: STATION.into(),
            order_json: job.order_json.clone(),
        })
        .unwrap();
    assert!(matches!(same_card, InsertOutcome::Duplicate { .. }));
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(b.printer.finished().len(), 1);
    agent.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_orders_never_reach_a_device() {
    let (_dir, b) = branch("automatic").await;
    let agent = b.agent().await;
    let feeder = b.printer.feeder();
    let good = b.order(1).await;
    wait_states(
        &agent,
        &[good[0].1.clone()],
        &[JobState::Ejected],
        Duration::from_secs(60),
    )
    .await;
    let template = agent
        .station
        .journal
        .job(&good[0].1)
        .unwrap()
        .unwrap()
        .order_json;
    let mut wrong_station = template.clone();
    wrong_station["persoStation"] = "BR-ELSEWHERE".into();
    wrong_station["encryptedData"] = "x.y.z.w.v".into();
    let mut bad_crypto = template.clone();
    bad_crypto["encryptedData"] = "eyJhbGciOiJFQ0RILUVTIn0.a.b.c.d".into();
    let mut bad_schema = template.clone();
    bad_schema["paymentApplication"]["derivationKeyIndex"] = "0g".into();
    bad_schema["encryptedData"] = "x.y.z.w.v".into();
    let cases = [
        ("bad-station", wrong_station, "OPERATION_NOT_ALLOWED"),
        ("bad-crypto", bad_crypto, "CRYPTO_ERROR"),
        ("bad-schema", bad_schema, "FIELD_INVALID_FORMAT"),
    ];
    for (op, order, _) in &cases {
        agent
            .station
            .intake(NewJob {
                operation_id: op.to_string(),
                issuer_id: "SANDBOX-ISSUER".into(),
                card_id: format!("card-{op}"),
                perso_station: STATION.into(),
                order_json: order.clone(),
            })
            .unwrap();
    }
    let ops: Vec<String> = cases.iter().map(|c| c.0.to_string()).collect();
    wait_states(&agent, &ops, &[JobState::Failed], Duration::from_secs(30)).await;
    for (op, _, code) in &cases {
        let j = agent.station.journal.job(op).unwrap().unwrap();
        assert!(
            j.reason.as_deref().unwrap_or("").starts_with(code),
            "{op}: {:?}",
            j.reason
        );
    }
    assert_eq!(
        b.printer.finished().len(),
        1,
        "only the good order made a card"
    );
    assert_eq!(b.printer.feeder(), feeder - 1);
    agent.shutdown().await;
}

/// Kills the agent as soon as the card enters `step`, restarts it, and checks the
/// card is surfaced in doubt, never produced twice, and the next order still made.
async fn killed_at(step: JobState) {
    let (_dir, b) = branch("automatic").await;
    let agent = b.agent().await;
    let mut progress = agent.station.subscribe();
    let posted = b.order(1).await;
    let first = posted[0].1.clone();
    loop {
        let p = tokio::time::timeout(Duration::from_secs(30), progress.recv())
            .await
            .expect("progress")
            .unwrap();
        if p.operation_id == first && p.state == step {
            break;
        }
    }
    agent.abort();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let started_before = b.printer.finished().len();
    // Restart on the same journal; a second order arrives meanwhile.
    let agent = Agent::start(&b.config, b.devices()).await.unwrap();
    let second = b.order(1).await[0].1.clone();
    let j = agent.station.journal.job(&first).unwrap().unwrap();
    assert_eq!(j.state, JobState::InDoubt, "{step:?}");
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        b.printer.finished().len(),
        started_before,
        "nothing fed while a card is in doubt"
    );
    // Staff look in the printer, take the card out, and spoil it.
    let _ = b.printer.handle("Srs");
    agent
        .station
        .resolve(&first, Resolution::Spoil, "staff-1")
        .unwrap();
    wait_states(
        &agent,
        std::slice::from_ref(&second),
        &[JobState::Ejected],
        Duration::from_secs(60),
    )
    .await;
    let first_job = agent.station.journal.job(&first).unwrap().unwrap();
    assert_eq!(first_job.state, JobState::Spoiled);
    let done: Vec<_> = b
        .printer
        .finished()
        .into_iter()
        .filter(|c| !c.rejected)
        .collect();
    assert_eq!(
        done.len(),
        1,
        "{step:?}: exactly one good card (the second order)"
    );
    agent.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn killed_while_feeding() {
    killed_at(JobState::Feeding).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn killed_at_the_chip_station() {
    killed_at(JobState::AtChipStation).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn killed_while_personalizing() {
    killed_at(JobState::Personalizing).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn killed_while_verifying() {
    killed_at(JobState::Verifying).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn killed_while_printing() {
    killed_at(JobState::Printing).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_jam_spoils_the_card_reports_it_and_the_next_card_is_made() {
    let (_dir, b) = branch("automatic").await;
    b.printer.arm_fault(
        station_sim::printer::Step::Park,
        station_sim::printer::Fault::Jam,
    );
    let agent = b.agent().await;
    let first = b.order(1).await.remove(0);
    wait_states(
        &agent,
        std::slice::from_ref(&first.1),
        &[JobState::Spoiled],
        Duration::from_secs(30),
    )
    .await;
    let j = agent.station.journal.job(&first.1).unwrap().unwrap();
    assert!(
        j.reason.as_deref().unwrap().starts_with("PRN_CARD_JAM"),
        "{:?}",
        j.reason
    );
    assert!(
        b.printer.finished()[0].rejected,
        "the jammed card went to the reject box"
    );
    wait_hub(
        &b,
        std::slice::from_ref(&first.0),
        "FAILED",
        Duration::from_secs(30),
    )
    .await;
    b.printer.clear_fault();
    let second = b.order(1).await.remove(0);
    wait_states(
        &agent,
        std::slice::from_ref(&second.1),
        &[JobState::Ejected],
        Duration::from_secs(60),
    )
    .await;
    agent.shutdown().await;
}

/// Makes one order's chip misbehave with `faults`; returns the spoiled job's reason
/// after checking the card went to the reject box and the next card is still made.
async fn chip_fault_spoils_one_card(faults: station_sim::card::Faults) -> String {
    let (_dir, b) = branch("automatic").await;
    b.chips.queue_faults(faults);
    let agent = b.agent().await;
    let first = b.order(1).await.remove(0);
    wait_states(
        &agent,
        std::slice::from_ref(&first.1),
        &[JobState::Spoiled],
        Duration::from_secs(30),
    )
    .await;
    let reason = agent
        .station
        .journal
        .job(&first.1)
        .unwrap()
        .unwrap()
        .reason
        .unwrap_or_default();
    assert!(
        b.printer.finished()[0].rejected,
        "the card is in the reject box"
    );
    let second = b.order(1).await.remove(0);
    wait_states(
        &agent,
        std::slice::from_ref(&second.1),
        &[JobState::Ejected],
        Duration::from_secs(60),
    )
    .await;
    agent.shutdown().await;
    reason
}

#[tokio::test(flavor = "multi_thread")]
async fn a_card_pulled_during_encoding_is_spoiled_as_such() {
    let reason = chip_fault_spoils_one_card(station_sim::card::Faults {
        drop_at: Some(5),
        ..Default::default()
    })
    .await;
    assert!(reason.contains("card removed during encoding"), "{reason}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_mute_chip_is_spoiled_as_card_mute_and_the_next_card_is_made() {
    use station_hal::{StaffFacing, TransportError};
    let reason = chip_fault_spoils_one_card(station_sim::card::Faults {
        mute: true,
        ..Default::default()
    })
    .await;
    let mute = TransportError::CardMute;
    assert_eq!(reason, format!("{}: {}", mute.code(), mute.staff_message()));
}
