//! Every agent task is supervised (issue 13, item 1): a line whose producer stops is
//! shown down on `/ready` and `/metrics`, and a journal failure makes the agent stop
//! so the service manager restarts it and recovery surfaces the card in doubt.

mod e2e;

use std::time::Duration;

use e2e::branch;
use station_agent::agent::Agent;
use station_agent::job::state::JobState;

#[tokio::test(flavor = "multi_thread")]
async fn a_journal_failure_stops_the_agent_and_the_restart_surfaces_the_card_in_doubt() {
    let (_dir, b) = branch("automatic").await;
    let mut agent = b.agent().await;
    let disk = rusqlite::Connection::open(b.journal_path()).unwrap();
    disk.execute_batch(
        "CREATE TRIGGER disk_full BEFORE UPDATE OF state ON jobs \
         WHEN NEW.state = 'personalizing' BEGIN SELECT RAISE(ABORT, 'disk full'); END;",
    )
    .unwrap();
    let op = b.order(1).await.remove(0).1;

    let why = tokio::time::timeout(Duration::from_secs(30), agent.failed())
        .await
        .expect("the agent reports a fatal failure");

    assert!(why.contains("JRN_DB"), "{why}");
    let base = format!("http://{}", agent.admin_addr);
    let metrics = reqwest::get(format!("{base}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(metrics.contains("station_lines_down 1"), "{metrics}");
    let ready = reqwest::get(format!("{base}/ready")).await.unwrap();
    assert_eq!(ready.status(), 503);
    agent.abort();

    // The disk has room again; the service manager restarts the agent.
    disk.execute_batch("DROP TRIGGER disk_full;").unwrap();
    let agent = Agent::start(&b.config, b.devices()).await.unwrap();
    assert_eq!(
        agent.station.journal.job(&op).unwrap().unwrap().state,
        JobState::InDoubt
    );
    agent.shutdown().await;
}
