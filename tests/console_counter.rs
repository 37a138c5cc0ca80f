//! The counter through the console API, as branch staff use it: a card spoiled at the
//! stripe shows its reason and is made again under dual control (a second supervisor's
//! id and PIN), the order is never reported failed and ends as one good card; roles
//! decide who may act, load stock and download the reconciliation or the audit.

mod e2e;

use std::time::Duration;

use e2e::{branch, console_http, sign_in_as, wait_hub, wait_states};
use serde_json::{json, Value};
use station_agent::devkit::{
    DEV_AUDITOR_ID, DEV_AUDITOR_PIN, DEV_STAFF_ID, DEV_STAFF_PIN, DEV_SUPERVISOR_ID,
    DEV_SUPERVISOR_PIN,
};
use station_agent::job::state::JobState;
use station_sim::printer::{Fault, Step};

async fn post(
    http: &reqwest::Client,
    url: String,
    token: &str,
    body: Value,
) -> (reqwest::StatusCode, Value) {
    let r = http
        .post(url)
        .bearer_auth(token)
        .json(&body)
        .send()
        .await
        .unwrap();
    let status = r.status();
    (status, r.json().await.unwrap_or(Value::Null))
}

async fn job_view(http: &reqwest::Client, base: &str, token: &str, op: &str) -> Value {
    let jobs: Vec<Value> = http
        .get(format!("{base}/api/jobs"))
        .bearer_auth(token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    jobs.into_iter()
        .find(|j| j["operationId"] == op)
        .expect("the job is listed")
}

#[tokio::test(flavor = "multi_thread")]
async fn a_card_spoiled_at_the_stripe_is_made_again_under_dual_control_and_reported_once() {
    let (_dir, b) = branch("staff").await;
    b.printer.arm_fault(Step::Mag, Fault::MagWrite);
    let agent = b.agent().await;
    let base = format!("http://{}", agent.console_addr);
    let http = console_http(&base);
    let token = sign_in_as(&http, &base, DEV_STAFF_ID, DEV_STAFF_PIN).await;
    let (card, op) = b.order(1).await.remove(0);
    wait_states(
        &agent,
        std::slice::from_ref(&op),
        &[JobState::WaitingForStaff],
        Duration::from_secs(30),
    )
    .await;

    let queued = job_view(&http, &base, &token, &op).await;
    assert!(
        !queued["holder"].as_str().unwrap_or("").is_empty(),
        "{queued}"
    );
    assert!(queued["product"].is_string(), "{queued}");
    assert!(queued["createdAt"].is_string(), "{queued}");

    let (s, _) = post(
        &http,
        format!("{base}/api/jobs/{op}/start"),
        &token,
        json!({}),
    )
    .await;
    assert!(s.is_success());
    wait_states(
        &agent,
        std::slice::from_ref(&op),
        &[JobState::Rejected],
        Duration::from_secs(60),
    )
    .await;
    b.printer.clear_fault();

    let rejected = job_view(&http, &base, &token, &op).await;
    let reason = rejected["reason"].as_str().unwrap();
    assert!(
        !reason.starts_with("PRN_"),
        "plain words, no code: {reason}"
    );
    let again = rejected["actions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["action"] == "make-again")
        .expect("Make again is offered");
    assert_eq!(
        again["needsApproval"], true,
        "the chip was written before the stripe"
    );

    let url = format!("{base}/api/jobs/{op}/make-again");
    let (s, v) = post(&http, url.clone(), &token, json!({})).await;
    assert_eq!(s, 403, "{v}");
    assert_eq!(v["code"], "ROLE_APPROVAL_NEEDED");
    let own = json!({"approver": {"staff": DEV_STAFF_ID, "pin": DEV_STAFF_PIN}});
    let (s, v) = post(&http, url.clone(), &token, own).await;
    assert_eq!(
        (s.as_u16(), v["code"].as_str()),
        (403, Some("ROLE_BAD_APPROVER"))
    );
    let second = json!({"approver": {"staff": DEV_SUPERVISOR_ID, "pin": DEV_SUPERVISOR_PIN}});
    let (s, v) = post(&http, url, &token, second).await;
    assert!(s.is_success(), "{v}");

    wait_states(
        &agent,
        std::slice::from_ref(&op),
        &[JobState::Ejected],
        Duration::from_secs(60),
    )
    .await;
    let done = agent.station.journal.job(&op).unwrap().unwrap();
    assert_eq!(done.attempt, 2);
    wait_hub(
        &b,
        std::slice::from_ref(&card),
        "SUCCESSFUL",
        Duration::from_secs(30),
    )
    .await;
    let history = agent.station.journal.history(&op).unwrap();
    assert!(
        history.iter().all(|t| t.to != JobState::Spoiled.as_str()),
        "no exception was ever reported for a card made again"
    );
    let made_again = history
        .iter()
        .find(|t| t.from.as_deref() == Some("rejected"))
        .unwrap();
    assert_eq!(made_again.actor, DEV_STAFF_ID);
    assert_eq!(made_again.approver.as_deref(), Some(DEV_SUPERVISOR_ID));

    let day = time::OffsetDateTime::now_utc().date().to_string();
    let csv = http
        .get(format!("{base}/api/reports/reconciliation?day={day}"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let row = csv.lines().nth(1).expect("one product row");
    assert!(
        row.ends_with(",0,1,1,-2,0"),
        "no load recorded, 1 issued, 1 spoiled: {csv}"
    );
    assert!(
        csv.contains(&format!(",{DEV_STAFF_ID},{DEV_SUPERVISOR_ID}")),
        "{csv}"
    );
    agent.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn roles_decide_who_acts_loads_stock_and_reads_the_audit() {
    let (_dir, b) = branch("staff").await;
    let agent = b.agent().await;
    let base = format!("http://{}", agent.console_addr);
    let http = console_http(&base);
    let (_, op) = b.order(1).await.remove(0);
    wait_states(
        &agent,
        std::slice::from_ref(&op),
        &[JobState::WaitingForStaff],
        Duration::from_secs(30),
    )
    .await;
    let auditor = sign_in_as(&http, &base, DEV_AUDITOR_ID, DEV_AUDITOR_PIN).await;
    let supervisor = sign_in_as(&http, &base, DEV_SUPERVISOR_ID, DEV_SUPERVISOR_PIN).await;

    let view = job_view(&http, &base, &auditor, &op).await;
    assert_eq!(view["actions"], json!([]), "an auditor is offered nothing");
    let (s, v) = post(
        &http,
        format!("{base}/api/jobs/{op}/start"),
        &auditor,
        json!({}),
    )
    .await;
    assert_eq!(
        (s.as_u16(), v["code"].as_str()),
        (403, Some("ROLE_NOT_ALLOWED"))
    );
    let load = json!({"product": "DEV-VISA", "count": 100, "batch": "LOT-2026-11-A"});
    let (s, _) = post(&http, format!("{base}/api/stock"), &auditor, load.clone()).await;
    assert_eq!(s, 403);
    let (s, v) = post(&http, format!("{base}/api/stock"), &supervisor, load).await;
    assert!(s.is_success(), "{v}");
    let bad = json!({"product": "DEV-VISA", "count": 0, "batch": "LOT"});
    let (s, v) = post(&http, format!("{base}/api/stock"), &supervisor, bad).await;
    assert_eq!(
        (s.as_u16(), v["code"].as_str()),
        (422, Some("STOCK_BAD_COUNT"))
    );

    let day = time::OffsetDateTime::now_utc().date().to_string();
    let audit_url = format!("{base}/api/audit?day={day}");
    let refused = http
        .get(&audit_url)
        .bearer_auth(&supervisor)
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 403, "the audit is the auditor's");
    let audit = http
        .get(&audit_url)
        .bearer_auth(&auditor)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let lines: Vec<Value> = audit
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let load = lines
        .iter()
        .find(|l| l["action"] == "stock_load")
        .expect("{audit}");
    assert_eq!(load["actor"], DEV_SUPERVISOR_ID);
    assert_eq!(load["count"], 100);
    assert!(lines
        .iter()
        .any(|l| l["action"] == "order_received" && l["operation_id"] == op));
    let stock: Value = http
        .get(format!("{base}/api/stock"))
        .bearer_auth(&supervisor)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(stock["products"][0]["remaining"], 100, "{stock}");
    agent.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_card_jammed_before_its_chip_is_given_up_without_approval_and_only_then_reported() {
    let (_dir, b) = branch("staff").await;
    b.printer.arm_fault(Step::Park, Fault::Jam);
    let agent = b.agent().await;
    let base = format!("http://{}", agent.console_addr);
    let http = console_http(&base);
    let token = sign_in_as(&http, &base, DEV_STAFF_ID, DEV_STAFF_PIN).await;
    let (card, op) = b.order(1).await.remove(0);
    wait_states(
        &agent,
        std::slice::from_ref(&op),
        &[JobState::WaitingForStaff],
        Duration::from_secs(30),
    )
    .await;
    let (s, _) = post(
        &http,
        format!("{base}/api/jobs/{op}/start"),
        &token,
        json!({}),
    )
    .await;
    assert!(s.is_success());
    wait_states(
        &agent,
        std::slice::from_ref(&op),
        &[JobState::Rejected],
        Duration::from_secs(60),
    )
    .await;
    assert_ne!(
        b.hub_status(&card).await,
        "FAILED",
        "nothing reported while staff decide"
    );

    let view = job_view(&http, &base, &token, &op).await;
    let give_up = view["actions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["action"] == "give-up")
        .expect("Give up is offered");
    assert!(
        give_up.get("needsApproval").is_none(),
        "no chip was written: {give_up}"
    );
    let (s, v) = post(
        &http,
        format!("{base}/api/jobs/{op}/give-up"),
        &token,
        json!({}),
    )
    .await;
    assert!(s.is_success(), "{v}");
    wait_hub(
        &b,
        std::slice::from_ref(&card),
        "FAILED",
        Duration::from_secs(30),
    )
    .await;
    let job = agent.station.journal.job(&op).unwrap().unwrap();
    assert_eq!(job.state, JobState::Spoiled);
    assert!(job.reason.unwrap().contains("given up after 1 attempt"));
    agent.shutdown().await;
}
