//! Make again through the console for a card whose order came from a Pismo counter
//! request (policy `staff`): the spoiled order is given up and the card resent to
//! Pismo in one journal write, so a refusal leaves the card in the reject box with
//! nothing given up; the attempt limit is the station's; a journal or store failure is
//! an error, never a silent fall back to the station's own Make again; roles apply.

mod e2e;

use std::time::Duration;

use e2e::{branch, console_http, sign_in_as, wait_states, Branch, STATION};
use serde_json::{json, Value};
use station_agent::agent::Agent;
use station_agent::devkit::{
    DEV_AUDITOR_ID, DEV_AUDITOR_PIN, DEV_STAFF_ID, DEV_STAFF_PIN, DEV_SUPERVISOR_ID,
    DEV_SUPERVISOR_PIN,
};
use station_agent::job::state::JobState;
use station_agent::pismo::PismoSection;
use station_agent::sandbox::pismo::{
    dev_client, EmbossingGroupEntry, PismoSandboxFile, PISMO_ISSUER_ID,
};
use station_agent::sandbox::{self, SandboxConfig, SandboxFile, StateFiles};
use station_sim::printer::{Fault, Step};

const GROUP: &str = "BRANCH-EMB";
const CONFIG_ID: &str = "acde070d-8c4c-4f0d-9d8a-162843c10333";

/// A staff-policy branch whose hub runs the Pismo sandbox with this station's embossing
/// group, and whose station has a `[pismo]` section allowed to start runs.
async fn pismo_branch(attempts: u32) -> (tempfile::TempDir, Branch) {
    pismo_branch_for("staff", attempts, PISMO_ISSUER_ID).await
}

/// The same with start `policy`, the station taking `issuer` as the issuer of Pismo orders.
async fn pismo_branch_for(
    policy: &str,
    attempts: u32,
    issuer: &str,
) -> (tempfile::TempDir, Branch) {
    let (dir, mut b) = branch(policy).await;
    let files = StateFiles::in_dir(&b.hub_state);
    let mut file: SandboxFile = files.load_config().unwrap();
    file.pismo = Some(PismoSandboxFile {
        ready_millis: 100,
        groups: vec![EmbossingGroupEntry {
            name: GROUP.into(),
            config_id: CONFIG_ID.into(),
            perso_station: STATION.into(),
            schedule_seconds: 0,
        }],
        ..PismoSandboxFile::default()
    });
    std::fs::write(&files.config, file.to_toml().unwrap()).unwrap();
    // The hub reads its Pismo groups when it starts.
    let hub = sandbox::start(&SandboxConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        state_dir: b.hub_state.clone(),
    })
    .await
    .unwrap();
    std::mem::replace(&mut b.hub, hub).shutdown().await;
    b.config.upstream.url = b.hub.base_url();
    let dev = dev_client(&files).unwrap();
    let secret = b.config.resolve(std::path::Path::new("keys/pismo.secret"));
    station_agent::sandbox::keys::write_private(&secret, &dev.client_secret).unwrap();
    b.config.pismo = Some(PismoSection {
        api_url: b.hub.base_url(),
        pci_url: b.hub.base_url(),
        client_id: dev.client_id.clone(),
        client_secret_file: "keys/pismo.secret".into(),
        issuer_id: issuer.into(),
        embossing_group: GROUP.into(),
        config_id: Some(CONFIG_ID.into()),
        start_embossing: true,
        ingress_deadline_seconds: 20,
        products: vec![],
        run_deadline_minutes: 30,
    });
    b.config.policy.attempts = attempts;
    (dir, b)
}

/// A signed-in console on a running agent.
struct Counter {
    agent: Agent,
    base: String,
    http: reqwest::Client,
    token: String,
}

impl Counter {
    /// The agent of `b` started, its console signed in as the development staff member.
    async fn signed_in(b: &Branch) -> Self {
        let agent = b.agent().await;
        let base = format!("http://{}", agent.console_addr);
        let http = console_http(&base);
        let token = sign_in_as(&http, &base, DEV_STAFF_ID, DEV_STAFF_PIN).await;
        Counter {
            agent,
            base,
            http,
            token,
        }
    }

    /// A Pismo card requested at the counter; returns the request id and the operation
    /// id of the order it brought to the station.
    async fn request_card(&self, customer: &str, name: &str) -> (String, String) {
        let (s, v) = self
            .post(
                "/api/pismo/requests",
                &self.token,
                json!({"customerId": customer, "printedName": name}),
            )
            .await;
        assert_eq!(s, 201, "{v}");
        let id = v["request"]["requestId"].as_str().unwrap().to_string();
        let op = order_for_request(self, &id, None).await;
        (id, op)
    }

    async fn post(&self, path: &str, token: &str, body: Value) -> (u16, Value) {
        let r = self
            .http
            .post(format!("{}{path}", self.base))
            .bearer_auth(token)
            .json(&body)
            .send()
            .await
            .unwrap();
        let status = r.status().as_u16();
        (status, r.json().await.unwrap_or(Value::Null))
    }
}

/// A Pismo card requested at the counter, embossed, its order spoiled at the stripe
/// (after the chip was written) and waiting in the reject box. Returns the counter,
/// the request id and the order's operation id.
async fn rejected_pismo_card(b: &Branch) -> (Counter, String, String) {
    b.printer.arm_fault(Step::Mag, Fault::MagWrite);
    let c = Counter::signed_in(b).await;
    let (id, op) = c.request_card("501", "JANE DOE").await;
    wait_states(
        &c.agent,
        std::slice::from_ref(&op),
        &[JobState::WaitingForStaff],
        Duration::from_secs(30),
    )
    .await;
    let (s, v) = c
        .post(&format!("/api/jobs/{op}/start"), &c.token, json!({}))
        .await;
    assert_eq!(s, 200, "{v}");
    wait_states(
        &c.agent,
        std::slice::from_ref(&op),
        &[JobState::Rejected],
        Duration::from_secs(60),
    )
    .await;
    b.printer.clear_fault();
    (c, id, op)
}

/// The operation id of the (newest) order at the station for the request's card, other
/// than `not`.
async fn order_for_request(c: &Counter, id: &str, not: Option<&str>) -> String {
    let desk = c.agent.pismo.clone().unwrap();
    for _ in 0..300 {
        if let Some(card) = desk.store().get(id).await.unwrap().and_then(|r| r.card_id) {
            let jobs = c.agent.station.journal.all_jobs(50).unwrap();
            if let Some(j) = jobs
                .iter()
                .find(|j| j.card_id == card.to_string() && Some(j.operation_id.as_str()) != not)
            {
                assert_eq!(j.issuer_id, PISMO_ISSUER_ID);
                return j.operation_id.clone();
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("no order reached the station for request {id}");
}

fn approval() -> Value {
    json!({"approver": {"staff": DEV_SUPERVISOR_ID, "pin": DEV_SUPERVISOR_PIN}})
}

fn state(c: &Counter, op: &str) -> JobState {
    c.agent.station.journal.job(op).unwrap().unwrap().state
}

#[tokio::test(flavor = "multi_thread")]
async fn make_again_on_a_pismo_order_gives_it_up_and_resends_the_card_which_comes_back_as_a_new_order(
) {
    let (_dir, b) = pismo_branch(3).await;
    let (c, id, op) = rejected_pismo_card(&b).await;

    let (s, v) = c
        .post(&format!("/api/jobs/{op}/make-again"), &c.token, approval())
        .await;
    assert_eq!(s, 200, "{v}");
    assert!(v["message"].as_str().unwrap().contains("Pismo"), "{v}");
    assert_eq!(
        state(&c, &op),
        JobState::Spoiled,
        "the old order is given up"
    );
    let again = order_for_request(&c, &id, Some(&op)).await;
    assert_ne!(again, op);
    let r = c
        .agent
        .pismo
        .as_ref()
        .unwrap()
        .store()
        .get(&id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(r.resend_count, 1);
    let given_up = c.agent.station.journal.history(&op).unwrap().pop().unwrap();
    assert_eq!(
        (given_up.actor.as_str(), given_up.approver.as_deref()),
        (DEV_STAFF_ID, Some(DEV_SUPERVISOR_ID))
    );
    c.agent.abort();
}

#[tokio::test(flavor = "multi_thread")]
async fn an_auditor_cannot_make_a_pismo_order_again() {
    let (_dir, b) = pismo_branch(3).await;
    let (c, id, op) = rejected_pismo_card(&b).await;
    let auditor = sign_in_as(&c.http, &c.base, DEV_AUDITOR_ID, DEV_AUDITOR_PIN).await;

    let (s, v) = c
        .post(&format!("/api/jobs/{op}/make-again"), &auditor, approval())
        .await;

    assert_eq!(
        (s, v["code"].as_str()),
        (403, Some("ROLE_NOT_ALLOWED")),
        "{v}"
    );
    assert_eq!(state(&c, &op), JobState::Rejected);
    let r = c.agent.pismo.as_ref().unwrap().store().get(&id).await;
    assert_eq!(r.unwrap().unwrap().resend_count, 0);
    c.agent.abort();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_resend_that_cannot_be_recorded_gives_nothing_up() {
    let (_dir, b) = pismo_branch(3).await;
    let (c, id, op) = rejected_pismo_card(&b).await;
    // The request is already being sent again (e.g. from the Pismo queue): the resend
    // the console asks for is refused.
    let desk = c.agent.pismo.clone().unwrap();
    desk.make_again(&id, DEV_STAFF_ID).await.unwrap();

    let (s, v) = c
        .post(&format!("/api/jobs/{op}/make-again"), &c.token, approval())
        .await;

    assert_eq!((s, v["code"].as_str()), (409, Some("PISMO_NOT_NOW")), "{v}");
    assert_eq!(
        state(&c, &op),
        JobState::Rejected,
        "still in the reject box, not reported"
    );
    let r = desk.store().get(&id).await.unwrap().unwrap();
    assert_eq!(r.resend_count, 1, "only the resend already asked for");
    c.agent.abort();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_pismo_card_is_not_sent_again_past_the_attempt_limit() {
    let (_dir, b) = pismo_branch(1).await;
    let (c, id, op) = rejected_pismo_card(&b).await;

    let (s, v) = c
        .post(&format!("/api/jobs/{op}/make-again"), &c.token, approval())
        .await;

    assert_eq!(s, 409, "{v}");
    assert!(
        v["message"].as_str().unwrap().contains("the most allowed"),
        "{v}"
    );
    assert_eq!(state(&c, &op), JobState::Rejected);
    let r = c.agent.pismo.as_ref().unwrap().store().get(&id).await;
    assert_eq!(r.unwrap().unwrap().resend_count, 0);
    c.agent.abort();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_pismo_store_failure_is_an_error_not_the_stations_own_make_again() {
    let (_dir, b) = pismo_branch(3).await;
    let (c, _id, op) = rejected_pismo_card(&b).await;
    rusqlite::Connection::open(b.journal_path())
        .unwrap()
        .execute_batch("ALTER TABLE pismo_requests RENAME TO pismo_requests_lost;")
        .unwrap();

    let (s, v) = c
        .post(&format!("/api/jobs/{op}/make-again"), &c.token, approval())
        .await;

    assert_eq!((s, v["code"].as_str()), (503, Some("PISMO_JOURNAL")), "{v}");
    assert_eq!(
        state(&c, &op),
        JobState::Rejected,
        "not made again at this station"
    );
    c.agent.abort();
}

#[tokio::test(flavor = "multi_thread")]
async fn an_order_of_another_issuer_is_made_again_at_the_station_even_when_a_pismo_request_has_its_card_id(
) {
    // The station's Pismo issuer is another one than the hub's: the order, whose card id
    // a counter request has, is not a Pismo order here.
    let (_dir, b) = pismo_branch_for("staff", 3, "OTHER-ISSUER").await;
    let (c, id, op) = rejected_pismo_card(&b).await;

    let (s, v) = c
        .post(&format!("/api/jobs/{op}/make-again"), &c.token, approval())
        .await;

    assert_eq!(s, 200, "{v}");
    let job = c.agent.station.journal.job(&op).unwrap().unwrap();
    assert_eq!(job.attempt, 2, "made again at the station: {:?}", job.state);
    let r = c.agent.pismo.as_ref().unwrap().store().get(&id).await;
    assert_eq!(
        r.unwrap().unwrap().resend_count,
        0,
        "nothing resent to Pismo"
    );
    c.agent.abort();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_pismo_card_resent_once_counts_that_attempt_in_the_queue_and_at_make_again() {
    let (_dir, b) = pismo_branch(2).await;
    let (c, id, first) = rejected_pismo_card(&b).await;
    let (s, v) = c
        .post(
            &format!("/api/jobs/{first}/make-again"),
            &c.token,
            approval(),
        )
        .await;
    assert_eq!(s, 200, "{v}");
    let second = order_for_request(&c, &id, Some(&first)).await;
    wait_states(
        &c.agent,
        std::slice::from_ref(&second),
        &[JobState::WaitingForStaff],
        Duration::from_secs(30),
    )
    .await;
    b.printer.arm_fault(Step::Mag, Fault::MagWrite);
    let (s, v) = c
        .post(&format!("/api/jobs/{second}/start"), &c.token, json!({}))
        .await;
    assert_eq!(s, 200, "{v}");
    wait_states(
        &c.agent,
        std::slice::from_ref(&second),
        &[JobState::Rejected],
        Duration::from_secs(60),
    )
    .await;
    b.printer.clear_fault();

    let jobs: Vec<Value> = c
        .http
        .get(format!("{}/api/jobs", c.base))
        .bearer_auth(&c.token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let view = jobs.iter().find(|j| j["operationId"] == second).unwrap();
    assert_eq!(
        (view["attempt"].as_u64(), view["attempts"].as_u64()),
        (Some(2), Some(2))
    );
    let offered: Vec<_> = view["actions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["action"].as_str().unwrap())
        .collect();
    assert_eq!(offered, ["give-up"], "{view}");
    let (s, v) = c
        .post(
            &format!("/api/jobs/{second}/make-again"),
            &c.token,
            approval(),
        )
        .await;
    assert_eq!(s, 409, "{v}");
    assert_eq!(state(&c, &second), JobState::Rejected);
    let r = c.agent.pismo.as_ref().unwrap().store().get(&id).await;
    assert_eq!(r.unwrap().unwrap().resend_count, 1);
    c.agent.abort();
}

#[tokio::test(flavor = "multi_thread")]
async fn make_again_from_the_pismo_queue_keeps_to_the_attempt_limit_too() {
    // Automatic start: a spoiled card is reported at once and offered again in the
    // Pismo queue.
    let (_dir, b) = pismo_branch_for("automatic", 1, PISMO_ISSUER_ID).await;
    b.printer.arm_fault(Step::Mag, Fault::MagWrite);
    let c = Counter::signed_in(&b).await;
    let (id, op) = c.request_card("502", "JOHN DOE").await;
    wait_states(
        &c.agent,
        std::slice::from_ref(&op),
        &[JobState::Spoiled],
        Duration::from_secs(60),
    )
    .await;

    let (s, v) = c
        .post(
            &format!("/api/pismo/requests/{id}/again"),
            &c.token,
            json!({}),
        )
        .await;

    assert_eq!(
        (s, v["code"].as_str()),
        (409, Some("COUNTER_NO_ATTEMPT_LEFT")),
        "{v}"
    );
    let r = c.agent.pismo.as_ref().unwrap().store().get(&id).await;
    assert_eq!(r.unwrap().unwrap().resend_count, 0);
    c.agent.abort();
}

#[tokio::test(flavor = "multi_thread")]
async fn the_pismo_queue_does_not_resend_a_card_for_another_issuers_spoiled_order_with_its_card_id()
{
    // The station's Pismo issuer is another one than the hub's: the spoiled order that
    // carries the request's card id is not the request's card, so Pismo must not emboss
    // that card again.
    let (_dir, b) = pismo_branch_for("staff", 3, "OTHER-ISSUER").await;
    let (c, id, op) = rejected_pismo_card(&b).await;
    let (s, v) = c
        .post(&format!("/api/jobs/{op}/give-up"), &c.token, approval())
        .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(state(&c, &op), JobState::Spoiled);

    let (s, v) = c
        .post(
            &format!("/api/pismo/requests/{id}/again"),
            &c.token,
            json!({}),
        )
        .await;

    assert_eq!((s, v["code"].as_str()), (422, Some("PISMO_NOT_NOW")), "{v}");
    let r = c.agent.pismo.as_ref().unwrap().store().get(&id).await;
    assert_eq!(
        r.unwrap().unwrap().resend_count,
        0,
        "nothing resent to Pismo"
    );
    c.agent.abort();
}
