//! A mute chip at the encoder: the job is spoiled with the staff cause "card mute" (the
//! encoder's code and words, as the PC/SC encoder reports it), and the next card is made.

mod e2e;

use std::time::Duration;

use e2e::{branch, wait_states};
use station_agent::job::state::JobState;
use station_hal::{StaffFacing, TransportError};

#[tokio::test(flavor = "multi_thread")]
async fn a_mute_chip_is_spoiled_as_card_mute_and_the_next_card_is_made() {
    let (_dir, b) = branch("automatic").await;
    b.chips.queue_faults(station_sim::card::Faults {
        mute: true,
        ..Default::default()
    });
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
    let mute = TransportError::CardMute;
    assert_eq!(
        j.reason.as_deref(),
        Some(format!("{}: {}", mute.code(), mute.staff_message()).as_str())
    );
    assert!(b.printer.finished()[0].rejected);

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
