//! `stock.require_loaded` holds on an automatic line too: no card is fed for a product
//! with no blanks recorded as loaded, and the order is made once blanks are loaded.

mod e2e;

use std::time::Duration;

use e2e::{branch, wait_states};
use station_agent::job::state::JobState;

#[tokio::test(flavor = "multi_thread")]
async fn an_automatic_line_feeds_nothing_for_a_product_without_stock_until_blanks_are_loaded() {
    let (_dir, mut b) = branch("automatic").await;
    b.config.stock.require_loaded = true;
    let agent = b.agent().await;
    let posted = b.order(1).await;
    let op = posted[0].1.clone();
    wait_states(
        &agent,
        std::slice::from_ref(&op),
        &[JobState::Validated],
        Duration::from_secs(30),
    )
    .await;
    // Long enough for the line to have fed it several times over if it ignored the stock.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let job = agent.station.journal.job(&op).unwrap().unwrap();
    assert_eq!(job.state, JobState::Validated, "fed without stock");
    assert!(b.printer.finished().is_empty());

    let product = job
        .product
        .clone()
        .expect("the order names its card product");
    // The line asks again every 2 s when idle.
    station_agent::stock::load(&agent.station.journal, &product, 5, "LOT-1", "sup").unwrap();
    wait_states(&agent, &[op], &[JobState::Ejected], Duration::from_secs(60)).await;
    assert_eq!(b.printer.finished().len(), 1);
    agent.shutdown().await;
}
