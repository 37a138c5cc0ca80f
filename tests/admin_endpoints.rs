//! Admin endpoints of a running agent: `/live` answers, `/ready` gives each reason
//! (503 when a line cannot produce), `/metrics` is Prometheus text whose `station_`
//! families carry the journal's numbers.

mod e2e;

use std::time::Duration;

use e2e::{branch, wait_hub, wait_states};
use prometheus_parse::{Scrape, Value as Sample};
use serde_json::Value;
use station_agent::job::state::JobState;
use station_sim::printer::{Fault, Step};

async fn scrape(base: &str) -> Scrape {
    let text = reqwest::get(format!("{base}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    Scrape::parse(text.lines().map(|l| Ok(l.to_string()))).unwrap()
}

/// The value of the sample `name` whose labels include `labels`.
fn sample(s: &Scrape, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    s.samples
        .iter()
        .find(|x| x.metric == name && labels.iter().all(|(k, v)| x.labels.get(k) == Some(*v)))
        .map(|x| match &x.value {
            Sample::Counter(v) | Sample::Gauge(v) | Sample::Untyped(v) => *v,
            Sample::Histogram(_) | Sample::Summary(_) => f64::NAN,
        })
}

/// Observation count of the histogram `name` whose labels include `labels`.
fn histogram_count(s: &Scrape, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    s.samples
        .iter()
        .find(|x| x.metric == name && labels.iter().all(|(k, v)| x.labels.get(k) == Some(*v)))
        .and_then(|x| match &x.value {
            Sample::Histogram(buckets) => buckets.last().map(|b| b.count),
            _ => None,
        })
}

async fn ready(base: &str) -> (u16, Value) {
    let r = reqwest::get(format!("{base}/ready")).await.unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap())
}

fn reason<'a>(body: &'a Value, check: &str) -> (&'a Value, &'a str) {
    let c = body["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["check"] == check)
        .unwrap_or_else(|| panic!("no {check} check in {body}"));
    (&c["ok"], c["reason"].as_str().unwrap())
}

#[tokio::test(flavor = "multi_thread")]
async fn a_running_agent_is_live_ready_and_counts_its_cards() {
    let (_dir, b) = branch("automatic").await;
    let agent = b.agent().await;
    let base = format!("http://{}", agent.admin_addr);
    assert_ne!(agent.admin_addr.port(), agent.console_addr.port());

    let live = reqwest::get(format!("{base}/live")).await.unwrap();
    assert_eq!(live.status(), 200);
    assert_eq!(live.json::<Value>().await.unwrap()["live"], true);

    let posted = b.order(1).await;
    let (card, op) = posted[0].clone();
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

    let (status, body) = ready(&base).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["ready"], true);
    assert_eq!(
        reason(&body, "journal"),
        (&Value::Bool(true), "journal open")
    );
    assert_eq!(
        reason(&body, "line line-1"),
        (&Value::Bool(true), "printer and encoder answering")
    );
    let (ok, why) = reason(&body, "upstream");
    assert_eq!(ok, &Value::Bool(true));
    assert!(why.contains("reachable"), "{why}");

    // The delivered mark follows the hub's acknowledgement: wait for the outbox to empty.
    let mut m = scrape(&base).await;
    for _ in 0..50 {
        if sample(&m, "station_outbox_depth", &[]) == Some(0.0) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
        m = scrape(&base).await;
    }
    assert_eq!(
        sample(
            &m,
            "station_cards_total",
            &[("status", "ejected"), ("line", "line-1")]
        ),
        Some(1.0)
    );
    assert_eq!(
        histogram_count(&m, "station_apdus_per_card", &[]),
        Some(1.0)
    );
    let apdus = agent.station.journal.job(&op).unwrap().unwrap().apdu_count as f64;
    assert!(apdus > 0.0);
    assert_eq!(sample(&m, "station_apdus_per_card_sum", &[]), Some(apdus));
    for state in ["personalizing", "printing", "feeding"] {
        assert_eq!(
            histogram_count(&m, "station_state_seconds", &[("state", state)]),
            Some(1.0),
            "one card left {state}"
        );
    }
    assert_eq!(sample(&m, "station_outbox_depth", &[]), Some(0.0));
    assert_eq!(
        sample(&m, "station_outbox_oldest_age_seconds", &[]),
        Some(0.0)
    );
    assert_eq!(sample(&m, "station_lines_in_doubt", &[]), Some(0.0));
    for family in [
        "station_printer_faults",
        "station_upstream_errors",
        "station_cards",
    ] {
        assert!(
            m.docs.contains_key(family),
            "{family} is described: {:?}",
            m.docs.keys()
        );
    }
    agent.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn an_empty_feeder_makes_the_station_not_ready_and_is_counted_by_code() {
    let (_dir, b) = branch("automatic").await;
    b.printer.arm_fault(Step::Feed, Fault::FeederEmpty);
    let agent = b.agent().await;
    let base = format!("http://{}", agent.admin_addr);
    let op = b.order(1).await.remove(0).1;
    wait_states(
        &agent,
        std::slice::from_ref(&op),
        &[JobState::WaitingForStaff],
        Duration::from_secs(30),
    )
    .await;

    let (status, body) = ready(&base).await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["ready"], false);
    let (ok, why) = reason(&body, "line line-1");
    assert_eq!(ok, &Value::Bool(false));
    assert!(why.contains("Feeder empty"), "{why}");
    assert_eq!(reason(&body, "journal").0, &Value::Bool(true));

    let m = scrape(&base).await;
    assert_eq!(
        sample(
            &m,
            "station_printer_faults_total",
            &[("code", "PRN_FEEDER_EMPTY")]
        ),
        Some(1.0)
    );
    agent.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_hub_that_refuses_reports_is_counted_as_upstream_errors() {
    let (_dir, b) = branch("automatic").await;
    let mut cfg = b.config.clone();
    cfg.upstream.url = "http://127.0.0.1:1".into();
    let agent = station_agent::agent::Agent::start(&cfg, b.devices())
        .await
        .unwrap();
    let base = format!("http://{}", agent.admin_addr);
    let mut m = scrape(&base).await;
    for _ in 0..50 {
        if m.samples
            .iter()
            .any(|x| x.metric == "station_upstream_errors_total")
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
        m = scrape(&base).await;
    }
    let errors: f64 = m
        .samples
        .iter()
        .filter(|x| x.metric == "station_upstream_errors_total")
        .map(|x| match x.value {
            Sample::Counter(v) | Sample::Untyped(v) => v,
            _ => f64::NAN,
        })
        .sum();
    assert!(
        errors >= 1.0,
        "the failed order poll is counted: {:?}",
        m.samples
    );
    let (status, body) = ready(&base).await;
    let (ok, why) = reason(&body, "upstream");
    assert_eq!(
        ok,
        &Value::Bool(true),
        "nothing waits in the outbox: {body}"
    );
    assert!(why.contains("not reachable"), "{why}");
    assert_eq!(status, 200);
    agent.shutdown().await;
}
