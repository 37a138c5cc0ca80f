//! Staff policy through the console API: the card waits for Start, is produced, then
//! handed over; the page itself is served.

mod e2e;

use std::time::Duration;

use e2e::{branch, wait_hub, wait_states};
use serde_json::Value;
use station_agent::job::state::JobState;

#[tokio::test(flavor = "multi_thread")]
async fn a_card_waits_for_staff_start_and_is_handed_over() {
    let (_dir, b) = branch("staff").await;
    let agent = b.agent().await;
    let base = format!("http://{}", agent.console_addr);
    let http = reqwest::Client::new();
    let page = http.get(&base).send().await.unwrap().text().await.unwrap();
    assert!(page.contains("Card issuance"));

    let posted = b.order(1).await;
    let (card, op) = posted[0].clone();
    wait_states(
        &agent,
        std::slice::from_ref(&op),
        &[JobState::WaitingForStaff],
        Duration::from_secs(30),
    )
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        b.printer.finished().is_empty(),
        "nothing printed before Start"
    );

    let jobs: Vec<Value> = http
        .get(format!("{base}/api/jobs"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let job = jobs
        .iter()
        .find(|j| j["operationId"] == op.as_str())
        .unwrap();
    assert!(job["maskedPan"].as_str().unwrap().contains("******"));
    assert!(job["actions"]
        .as_array()
        .unwrap()
        .iter()
        .any(|a| a["action"] == "start"));

    let r = http
        .post(format!("{base}/api/jobs/{op}/start"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    wait_states(
        &agent,
        std::slice::from_ref(&op),
        &[JobState::Ejected],
        Duration::from_secs(60),
    )
    .await;
    wait_hub(
        &b,
        std::slice::from_ref(&card),
        "SUCCESSFUL",
        Duration::from_secs(30),
    )
    .await;

    let r = http
        .post(format!("{base}/api/jobs/{op}/handover"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(
        agent.station.journal.job(&op).unwrap().unwrap().state,
        JobState::HandedOver
    );
    let again = http
        .post(format!("{base}/api/jobs/{op}/start"))
        .send()
        .await
        .unwrap();
    assert_eq!(
        again.status(),
        409,
        "a finished card cannot be started again"
    );
    let status: Value = http
        .get(format!("{base}/api/status"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(status["persoStation"], e2e::STATION);
    agent.shutdown().await;
}
