//! The counter flow against the Pismo sandbox: create → wait for ingress → add to
//! next embossing → start the run; journaled, resumed after a restart, never a
//! second card; a spoiled card made again after a resend.

mod sandbox_common;

use std::sync::Arc;
use std::time::Duration;

use sandbox_common::{pismo_file, TestHub, PISMO_CONFIG as CONFIG, PISMO_GROUP as GROUP, STATION};
use serde_json::{json, Value};
use station_agent::journal::{Journal, JournalThread};
use station_agent::pismo::{
    ConfigId, CounterSettings, CreatePlasticCard, CustomerId, EmbossingGroup, PismoClient,
    PismoClientConfig, PismoDesk, PismoError, PismoSecret, PrintedName, RequestId, RequestStep,
    RequestStore,
};
use station_agent::sandbox::pismo::dev_client;

async fn hub(ready_millis: u64) -> TestHub {
    TestHub::start_with(None, Some(pismo_file(ready_millis))).await
}

fn client(base: &str, hub: &TestHub) -> PismoClient {
    let dev = dev_client(&hub.files).unwrap();
    let mut cfg = PismoClientConfig::new(
        base,
        base,
        &dev.client_id,
        PismoSecret::new(dev.client_secret.clone()),
    );
    cfg.backoff_base = Duration::from_millis(10);
    cfg.attempts = 2;
    PismoClient::new(cfg).unwrap()
}

fn settings(deadline: Duration) -> CounterSettings {
    CounterSettings {
        issuer_id: "PISMO".into(),
        group: EmbossingGroup::parse(GROUP).unwrap(),
        config_id: Some(ConfigId::parse(CONFIG).unwrap()),
        start_embossing: true,
        ingress_deadline: deadline,
        ingress_backoff: Duration::from_millis(50),
        products: vec![],
        run_deadline: Duration::from_secs(1800),
    }
}

/// A desk on the station journal in `dir` (a new desk = the agent after a restart).
fn desk(hub: &TestHub, dir: &std::path::Path, deadline: Duration) -> Arc<PismoDesk> {
    let store = RequestStore::open(&dir.join("journal.sqlite")).unwrap();
    Arc::new(PismoDesk::new(
        client(&hub.handle.base_url(), hub),
        store,
        settings(deadline),
    ))
}

async fn order_for(hub: &TestHub, card: i64, not_op: Option<&str>) -> Value {
    let token = hub.station_token().await;
    for _ in 0..50 {
        let orders = hub.poll(&token, 1).await;
        if let Some(o) = orders["orders"].as_array().unwrap().iter().find(|o| {
            o["cardId"].as_str() == Some(card.to_string().as_str())
                && Some(o["operationId"].as_str().unwrap()) != not_op
        }) {
            return o.clone();
        }
    }
    panic!("no order for card {card}");
}

#[tokio::test]
async fn a_counter_request_ends_as_an_order_at_the_station_for_the_pismo_card() {
    let hub = hub(200).await;
    let dir = tempfile::tempdir().unwrap();
    let desk = desk(&hub, dir.path(), Duration::from_secs(10));
    let r = desk.request("101", "JANE DOE", None, "anna").await.unwrap();
    assert_eq!(r.step, RequestStep::Requested, "journaled before any call");
    let r = desk.drive(&r.request_id).await.unwrap();
    assert_eq!(r.step, RequestStep::RunStarted);
    let card = r.card_id.unwrap();
    let order = order_for(&hub, card, None).await;
    assert_eq!(order["order"]["persoStation"], STATION);
    let steps = desk.store().steps(&r.request_id).await.unwrap();
    let names: Vec<_> = steps.iter().map(|s| s.step.as_str()).collect();
    assert_eq!(names, ["requested", "created", "queued", "run_started"]);
    assert!(steps[1..].iter().all(|s| s.card_id == Some(card)));
}

#[tokio::test]
async fn an_invalid_printed_name_is_refused_before_anything_is_journaled_or_sent() {
    let hub = hub(200).await;
    let dir = tempfile::tempdir().unwrap();
    let desk = desk(&hub, dir.path(), Duration::from_secs(10));
    let e = desk
        .request("101", "JOSÉ D'ARC", None, "anna")
        .await
        .unwrap_err();
    assert_eq!(e.code(), "PISMO_FIELD");
    assert!(e.to_string().contains("printed name"));
    assert!(desk.store().recent(10).await.unwrap().is_empty());
    assert!(hub
        .handle
        .pismo()
        .store
        .blocking()
        .cards()
        .unwrap()
        .is_empty());
}

#[tokio::test]
async fn a_restart_between_create_and_add_completes_the_request_with_the_same_card() {
    let hub = hub(200).await;
    let dir = tempfile::tempdir().unwrap();
    let before = desk(&hub, dir.path(), Duration::from_secs(10));
    let r = before
        .request("102", "JOHN DOE", None, "anna")
        .await
        .unwrap();
    // The create reached Pismo, then the agent died before journaling the answer.
    let created = client(&hub.handle.base_url(), &hub)
        .create_card(
            CustomerId(102),
            &RequestId::parse(&r.request_id).unwrap(),
            &CreatePlasticCard::new(
                PrintedName::parse("JOHN DOE").unwrap(),
                EmbossingGroup::parse(GROUP).unwrap(),
                None,
            ),
        )
        .await
        .unwrap();
    drop(before);
    let after = desk(&hub, dir.path(), Duration::from_secs(10));
    assert_eq!(after.resume_all().await.unwrap(), 1);
    let mut done = None;
    for _ in 0..100 {
        let now = after.store().get(&r.request_id).await.unwrap().unwrap();
        if now.step == RequestStep::RunStarted {
            done = Some(now);
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let done = done.expect("request completed after the restart");
    assert_eq!(done.card_id, Some(created.card().id.0));
    assert_eq!(
        hub.handle.pismo().store.blocking().cards().unwrap().len(),
        1,
        "never a second card"
    );
}

#[tokio::test]
async fn a_card_not_ready_by_the_deadline_leaves_the_request_retryable_and_a_later_retry_completes_it(
) {
    let hub = hub(1500).await;
    let dir = tempfile::tempdir().unwrap();
    let impatient = desk(&hub, dir.path(), Duration::from_millis(200));
    let r = impatient
        .request("103", "MEI CHEN", None, "anna")
        .await
        .unwrap();
    let e = impatient.drive(&r.request_id).await.unwrap_err();
    assert!(matches!(e, PismoError::IngressTimeout { .. }), "{e:?}");
    let stuck = impatient.store().get(&r.request_id).await.unwrap().unwrap();
    assert_eq!(stuck.step, RequestStep::Created);
    assert!(stuck.message.unwrap().contains("not made card"));
    let patient = desk(&hub, dir.path(), Duration::from_secs(10));
    let done = patient.drive(&r.request_id).await.unwrap();
    assert_eq!(done.step, RequestStep::RunStarted);
    assert_eq!(
        hub.handle.pismo().store.blocking().cards().unwrap().len(),
        1
    );
}

#[tokio::test]
async fn a_second_request_for_a_customer_with_an_active_card_is_refused_with_words_for_staff() {
    let hub = hub(200).await;
    let dir = tempfile::tempdir().unwrap();
    let desk = desk(&hub, dir.path(), Duration::from_secs(10));
    let first = desk
        .request("104", "OMAR HASSAN", None, "anna")
        .await
        .unwrap();
    desk.drive(&first.request_id).await.unwrap();
    let second = desk
        .request("104", "OMAR HASSAN", None, "anna")
        .await
        .unwrap();
    assert_eq!(
        desk.drive(&second.request_id).await.unwrap_err(),
        PismoError::Duplicate
    );
    let r = desk.store().get(&second.request_id).await.unwrap().unwrap();
    assert_eq!(r.step, RequestStep::Refused);
    assert!(r
        .message
        .unwrap()
        .contains("already has an active plastic card"));
}

#[tokio::test]
async fn pismo_unreachable_leaves_the_request_journaled_and_retryable() {
    let hub = hub(200).await;
    let dir = tempfile::tempdir().unwrap();
    let store = RequestStore::open(&dir.path().join("journal.sqlite")).unwrap();
    let offline = PismoDesk::new(
        client("http://127.0.0.1:9", &hub),
        store,
        settings(Duration::from_secs(5)),
    );
    let r = offline
        .request("105", "SOFIA SILVA", None, "anna")
        .await
        .unwrap();
    let e = offline.drive(&r.request_id).await.unwrap_err();
    assert!(matches!(e, PismoError::Unreachable { .. }), "{e:?}");
    let kept = offline.store().get(&r.request_id).await.unwrap().unwrap();
    assert_eq!(kept.step, RequestStep::Requested);
    assert!(kept.message.unwrap().contains("will be tried again"));
    let online = desk(&hub, dir.path(), Duration::from_secs(10));
    assert_eq!(
        online.drive(&r.request_id).await.unwrap().step,
        RequestStep::RunStarted
    );
}

#[tokio::test]
async fn a_spoiled_card_is_made_again_after_a_resend_as_a_new_order_for_the_same_card() {
    let hub = hub(200).await;
    let dir = tempfile::tempdir().unwrap();
    let desk = desk(&hub, dir.path(), Duration::from_secs(10));
    let r = desk
        .request("106", "LUCAS NOWAK", None, "anna")
        .await
        .unwrap();
    let card = desk.drive(&r.request_id).await.unwrap().card_id.unwrap();
    let first = order_for(&hub, card, None).await;
    let op = first["operationId"].as_str().unwrap();
    let token = hub.station_token().await;
    let ev = |seq: u64, status: &str| json!({"sequence": seq, "status": status, "time": sandbox_common::now_rfc3339(), "reason": "printer jam"});
    assert_eq!(
        hub.event(&token, op, &ev(1, "CARD_PROD_EXCEPTION")).await,
        204
    );

    let again = desk.make_again(&r.request_id, "anna").await.unwrap();
    assert_eq!(again.step, RequestStep::Resending);
    assert_eq!(again.resend_count, 1);
    let done = desk.drive(&r.request_id).await.unwrap();
    assert_eq!(done.step, RequestStep::RunStarted, "waiting again");

    let second = order_for(&hub, card, Some(op)).await;
    let op2 = second["operationId"].as_str().unwrap();
    assert_eq!(hub.event(&token, op2, &ev(1, "CARD_PROD_DONE")).await, 204);
    let ops = hub
        .handle
        .hub()
        .store
        .operations_for_card("PISMO", &card.to_string())
        .unwrap();
    let statuses: Vec<_> = ops.iter().map(|o| o.status.as_str()).collect();
    assert_eq!(statuses, ["FAILED", "SUCCESSFUL"]);
}

#[tokio::test]
async fn make_again_is_refused_for_a_request_not_yet_sent_for_embossing() {
    let hub = hub(200).await;
    let dir = tempfile::tempdir().unwrap();
    let desk = desk(&hub, dir.path(), Duration::from_secs(10));
    let r = desk
        .request("107", "KOFI MENSAH", None, "anna")
        .await
        .unwrap();
    let e = desk.make_again(&r.request_id, "anna").await.unwrap_err();
    assert_eq!(e.code(), "PISMO_NOT_NOW");
}

#[tokio::test]
async fn make_again_from_staff_is_refused_while_the_stations_card_is_not_spoiled() {
    let hub = hub(200).await;
    let dir = tempfile::tempdir().unwrap();
    let desk = desk(&hub, dir.path(), Duration::from_secs(10));
    let r = desk.request("108", "MEI CHEN", None, "anna").await.unwrap();
    assert_eq!(
        desk.drive(&r.request_id).await.unwrap().step,
        RequestStep::RunStarted
    );
    // The station's journal has no spoiled or cancelled job for the card.
    let journal = JournalThread::start(Arc::new(
        Journal::open(&dir.path().join("journal.sqlite")).unwrap(),
    ));
    let e = desk
        .make_again_spoiled(&journal, &r.request_id, "anna")
        .await
        .unwrap_err();
    assert_eq!(e.code(), "PISMO_NOT_NOW");
    let kept = desk.store().get(&r.request_id).await.unwrap().unwrap();
    assert_eq!((kept.step, kept.resend_count), (RequestStep::RunStarted, 0));
}
