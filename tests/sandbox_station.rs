//! The station link served by the sandbox hub: long poll, re-encryption to the
//! station key, idempotent events, heartbeat.

mod sandbox_common;

use sandbox_common::{
    card_data, decrypt, instant_order, keyring_decrypt, now_rfc3339, TestHub, STATION,
};
use serde_json::{json, Value};
use std::time::Duration;

async fn ordered(hub: &TestHub, card: &str) -> String {
    let token = hub.issuer_token().await;
    let (status, body) = hub
        .order(&token, card, &instant_order(&hub.sealed_card(), STATION))
        .await;
    assert_eq!(status, 202, "{body}");
    body["operationId"].as_str().unwrap().to_string()
}

#[tokio::test]
async fn the_station_receives_the_order_re_encrypted_to_its_own_key() {
    let hub = TestHub::start().await;
    let op = ordered(&hub, "card-1").await;

    let polled = hub.poll(&hub.station_token().await, 0).await;

    let orders = polled["orders"].as_array().unwrap();
    assert_eq!(orders.len(), 1);
    let o = &orders[0];
    assert_eq!(o["operationId"], op.as_str());
    assert_eq!(o["issuerId"], "SANDBOX-ISSUER");
    assert_eq!(o["cardId"], "card-1");
    assert!(o["receivedAt"].is_string());
    assert_eq!(o["order"]["persoStation"], STATION);
    let jwe = o["order"]["encryptedData"].as_str().unwrap();
    let clear =
        keyring_decrypt(&hub.station_jwe_private, jwe).expect("decryptable with the station key");
    assert_eq!(
        serde_json::from_slice::<Value>(&clear).unwrap(),
        card_data()
    );
    assert!(
        decrypt(&hub.hub_private_jwk(), jwe).is_none(),
        "not decryptable with the hub key"
    );
    let header = josekit::jwt::decode_header(jwe).unwrap();
    assert_eq!(header.claim("kid"), Some(&json!("station-jwe-1")));
}

#[tokio::test]
async fn a_long_poll_is_answered_as_soon_as_an_order_arrives() {
    let hub = TestHub::start().await;
    let station = hub.station_token().await;
    let url = hub.url(&format!("/stations/{STATION}/orders?wait=30"));
    let poll = tokio::spawn(async move {
        reqwest::Client::new()
            .get(url)
            .bearer_auth(station)
            .send()
            .await
            .unwrap()
            .json::<Value>()
            .await
            .unwrap()
    });
    tokio::time::sleep(Duration::from_millis(200)).await;
    let op = ordered(&hub, "card-1").await;

    let polled = tokio::time::timeout(Duration::from_secs(10), poll)
        .await
        .expect("poll answered before its wait elapsed")
        .unwrap();
    assert_eq!(polled["orders"][0]["operationId"], op.as_str());
}

#[tokio::test]
async fn an_empty_long_poll_returns_no_orders_after_the_wait() {
    let hub = TestHub::start().await;
    let polled = hub.poll(&hub.station_token().await, 1).await;
    assert_eq!(polled, json!({"orders": []}));
}

#[tokio::test]
async fn events_are_idempotent_on_operation_and_sequence() {
    let hub = TestHub::start().await;
    let op = ordered(&hub, "card-1").await;
    let station = hub.station_token().await;
    let ready = json!({"sequence": 1, "status": "CARD_PROD_READY", "time": now_rfc3339(), "maskedPan": "476173******0010"});

    assert_eq!(hub.event(&station, &op, &ready).await, 204);
    assert_eq!(hub.event(&station, &op, &ready).await, 204);

    let events = hub.handle.hub().store.events(&op).unwrap();
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].masked_pan.as_deref(), Some("476173******0010"));
    assert_eq!(
        hub.poll(&station, 0).await,
        json!({"orders": []}),
        "the first event acknowledges the order"
    );
}

#[tokio::test]
async fn card_prod_done_makes_the_operation_successful_with_an_end_time() {
    let hub = TestHub::start().await;
    let op = ordered(&hub, "card-1").await;
    let station = hub.station_token().await;
    let t = now_rfc3339();
    assert_eq!(
        hub.event(
            &station,
            &op,
            &json!({"sequence": 1, "status": "CARD_PROD_READY", "time": t})
        )
        .await,
        204
    );
    assert_eq!(
        hub.event(
            &station,
            &op,
            &json!({"sequence": 2, "status": "CARD_PROD_DONE", "time": t, "apduCount": 41})
        )
        .await,
        204
    );

    let (_, st) = hub
        .production_status(&hub.issuer_token().await, "card-1")
        .await;
    let o = &st["operations"][0];
    assert_eq!(o["status"], "SUCCESSFUL");
    assert_eq!(o["details"]["status"], "CARD_PROD_DONE");
    assert_eq!(o["endTime"], t.as_str());
}

#[tokio::test]
async fn an_older_sequence_arriving_late_does_not_roll_the_status_back() {
    let hub = TestHub::start().await;
    let op = ordered(&hub, "card-1").await;
    let station = hub.station_token().await;
    let t = now_rfc3339();
    assert_eq!(
        hub.event(
            &station,
            &op,
            &json!({"sequence": 2, "status": "CARD_PROD_DONE", "time": t})
        )
        .await,
        204
    );
    assert_eq!(
        hub.event(
            &station,
            &op,
            &json!({"sequence": 1, "status": "CARD_PROD_READY", "time": t})
        )
        .await,
        204
    );

    let (_, st) = hub
        .production_status(&hub.issuer_token().await, "card-1")
        .await;
    assert_eq!(st["operations"][0]["status"], "SUCCESSFUL");
}

#[tokio::test]
async fn an_exception_makes_the_operation_failed_with_its_reason() {
    let hub = TestHub::start().await;
    let op = ordered(&hub, "card-1").await;
    let station = hub.station_token().await;
    let ev = json!({"sequence": 1, "status": "DATA_EXCEPTION", "reason": "track 2 disagrees with chip", "time": now_rfc3339()});
    assert_eq!(hub.event(&station, &op, &ev).await, 204);

    let (_, st) = hub
        .production_status(&hub.issuer_token().await, "card-1")
        .await;
    let o = &st["operations"][0];
    assert_eq!(o["status"], "FAILED");
    assert_eq!(
        o["details"],
        json!({"status": "DATA_EXCEPTION", "reason": "track 2 disagrees with chip"})
    );
}

#[tokio::test]
async fn an_unknown_status_is_tolerated_and_leaves_the_top_level_status() {
    let hub = TestHub::start().await;
    let op = ordered(&hub, "card-1").await;
    let station = hub.station_token().await;
    let ev = json!({"sequence": 1, "status": "CARD_PROD_QUALITY_CHECK", "time": now_rfc3339()});
    assert_eq!(hub.event(&station, &op, &ev).await, 204);

    let (_, st) = hub
        .production_status(&hub.issuer_token().await, "card-1")
        .await;
    assert_eq!(st["operations"][0]["status"], "PENDING");
    assert_eq!(
        st["operations"][0]["details"]["status"],
        "CARD_PROD_QUALITY_CHECK"
    );
}

#[tokio::test]
async fn a_clear_pan_in_an_event_is_refused() {
    let hub = TestHub::start().await;
    let op = ordered(&hub, "card-1").await;
    let ev = json!({"sequence": 1, "status": "CARD_PROD_READY", "time": now_rfc3339(), "maskedPan": "4761739001010010"});

    let resp = reqwest::Client::new()
        .post(hub.url(&format!("/stations/{STATION}/orders/{op}/events")))
        .bearer_auth(hub.station_token().await)
        .json(&ev)
        .send()
        .await
        .unwrap();

    assert_eq!(resp.status().as_u16(), 400);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(
        body,
        json!({"errorCode": "FIELD_INVALID_FORMAT", "error": "maskedPan"})
    );
    assert!(hub.handle.hub().store.events(&op).unwrap().is_empty());
}

#[tokio::test]
async fn an_event_for_an_unknown_operation_is_not_found() {
    let hub = TestHub::start().await;
    let ev = json!({"sequence": 1, "status": "CARD_PROD_READY", "time": now_rfc3339()});
    assert_eq!(
        hub.event(&hub.station_token().await, "no-such-op", &ev)
            .await,
        404
    );
}

#[tokio::test]
async fn the_latest_heartbeat_is_stored() {
    let hub = TestHub::start().await;
    let beat = json!({
        "time": now_rfc3339(), "agentVersion": "0.1.0", "cardStock": 87,
        "devices": [{"kind": "printer", "name": "evolis-1", "status": "OK", "faults": []}]
    });
    let resp = reqwest::Client::new()
        .post(hub.url(&format!("/stations/{STATION}/heartbeat")))
        .bearer_auth(hub.station_token().await)
        .json(&beat)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 204);
    let stored = hub.handle.hub().store.heartbeat(STATION).unwrap().unwrap();
    assert_eq!(stored["cardStock"], 87);
    assert_eq!(stored["devices"][0]["name"], "evolis-1");
}

#[tokio::test]
async fn the_hub_key_is_published_with_its_kid() {
    let hub = TestHub::start().await;
    let keys: Value = reqwest::get(hub.url("/sandbox/v1/keys"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let key = &keys["keys"][0];
    assert_eq!(key["kty"], "EC");
    assert_eq!(key["crv"], "P-256");
    assert!(key["kid"].as_str().is_some_and(|k| k.starts_with("hub-")));
    assert!(key.get("d").is_none(), "no private part");
}
