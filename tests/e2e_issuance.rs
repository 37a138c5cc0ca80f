//! Orders through the real D1 Card order endpoint of the sandbox hub, produced on the
//! simulated line, reported back: the hub says SUCCESSFUL for every card.

mod e2e;

use std::time::Duration;

use e2e::{branch, wait_hub, wait_states};
use station_agent::job::state::JobState;

#[tokio::test(flavor = "multi_thread")]
async fn orders_posted_to_the_hub_come_out_as_cards_and_are_reported_done() {
    let (_dir, b) = branch("automatic").await;
    let agent = b.agent().await;
    let posted = b.order(3).await;
    let ops: Vec<String> = posted.iter().map(|(_, op)| op.clone()).collect();
    let cards: Vec<String> = posted.iter().map(|(c, _)| c.clone()).collect();
    wait_states(&agent, &ops, &[JobState::Ejected], Duration::from_secs(60)).await;
    wait_hub(&b, &cards, "SUCCESSFUL", Duration::from_secs(30)).await;
    let finished = b.printer.finished();
    assert_eq!(finished.len(), 3);
    assert!(finished
        .iter()
        .all(|c| !c.rejected && c.tracks.contains_key(&2)));
    for op in &ops {
        let j = agent.station.journal.job(op).unwrap().unwrap();
        assert!(j.masked_pan.unwrap().contains("******"));
        assert!(j.apdu_count > 4);
        assert!(j.order_json["encryptedData"].is_null(), "card data purged");
    }
    agent.shutdown().await;
}
