//! The Pismo client against the Pismo sandbox: every documented status code of
//! every endpoint, the idempotent create, retries, and the embosser bridge.

mod sandbox_common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use sandbox_common::{
    keyring_decrypt, pismo_file, TestHub, PISMO_CONFIG as CONFIG, PISMO_GROUP as GROUP, STATION,
};
use serde_json::{json, Value};
use station_agent::pismo::{
    AddOutcome, ConfigId, CreateOutcome, CreatePlasticCard, CustomerId, EmbossingGroup,
    PismoCardId, PismoClient, PismoClientConfig, PismoError, PismoSecret, PrintedName, RequestId,
};
use station_agent::sandbox::pismo::store::StoredEvent;
use station_agent::sandbox::pismo::{dev_client, PISMO_ISSUER_ID};

async fn hub() -> TestHub {
    TestHub::start_with(None, Some(pismo_file(300))).await
}

fn client_for(hub: &TestHub, secret: Option<&str>) -> PismoClient {
    let dev = dev_client(&hub.files).unwrap();
    let base = hub.handle.base_url();
    let mut cfg = PismoClientConfig::new(
        &base,
        &base,
        &dev.client_id,
        PismoSecret::new(secret.unwrap_or(&dev.client_secret).to_string()),
    );
    cfg.backoff_base = Duration::from_millis(10);
    PismoClient::new(cfg).unwrap()
}

fn plastic(name: &str) -> CreatePlasticCard {
    CreatePlasticCard::new(
        PrintedName::parse(name).unwrap(),
        EmbossingGroup::parse(GROUP).unwrap(),
        None,
    )
}

async fn create(client: &PismoClient, customer: i64) -> PismoCardId {
    client
        .create_card(
            CustomerId(customer),
            &RequestId::new(),
            &plastic("JANE DOE"),
        )
        .await
        .unwrap()
        .card()
        .id
}

async fn until_ready(client: &PismoClient, card: PismoCardId) {
    for _ in 0..100 {
        if client.add_to_embossing(card).await.unwrap() == AddOutcome::Accepted {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("card {card} never became ready");
}

async fn raw(
    hub: &TestHub,
    method: reqwest::Method,
    path: &str,
    token: Option<&str>,
    headers: &[(&str, &str)],
    body: Option<Value>,
) -> (u16, Value) {
    let mut rb = reqwest::Client::new().request(method, hub.url(path));
    if let Some(t) = token {
        rb = rb.bearer_auth(t);
    }
    for (k, v) in headers {
        rb = rb.header(*k, *v);
    }
    if let Some(b) = body {
        rb = rb.json(&b);
    }
    let resp = rb.send().await.unwrap();
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

/// A request with a fresh bearer token of the sandbox's development client.
async fn authorized(
    hub: &TestHub,
    method: reqwest::Method,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<Value>,
) -> (u16, Value) {
    let token = client_for(hub, None).token().await.unwrap();
    raw(hub, method, path, Some(token.expose()), headers, body).await
}

/// Every event of the sandbox's feed, oldest first.
fn feed(hub: &TestHub) -> Vec<StoredEvent> {
    hub.handle
        .pismo()
        .store
        .blocking()
        .events_after(0, 100)
        .unwrap()
}

/// The `embossing` events of the feed (one per card a run carried), oldest first.
fn embossing_events(hub: &TestHub) -> Vec<Value> {
    feed(hub)
        .into_iter()
        .map(|e| e.envelope)
        .filter(|e| e["event_type"] == "embossing")
        .collect()
}

/// One page of `GET /sandbox/pismo/v1/events` after feed position `after`.
async fn feed_page(hub: &TestHub, token: &PismoSecret, after: i64) -> (u16, Value) {
    let path = format!("/sandbox/pismo/v1/events?after={after}");
    let get = reqwest::Method::GET;
    raw(hub, get, &path, Some(token.expose()), &[], None).await
}

/// A card for `customer`, ready and carried by a run: its client, the card, its D1 order.
async fn embossed_card(hub: &TestHub, customer: i64) -> (PismoClient, PismoCardId, Value) {
    let client = client_for(hub, None);
    let card = create(&client, customer).await;
    until_ready(&client, card).await;
    let order = run_and_wait_for_order(hub, &client, card).await;
    (client, card, order)
}

async fn run_and_wait_for_order(hub: &TestHub, client: &PismoClient, card: PismoCardId) -> Value {
    client
        .start_embossing(ConfigId::parse(CONFIG).unwrap(), &[card])
        .await
        .unwrap();
    let token = hub.station_token().await;
    for _ in 0..100 {
        let orders = hub.poll(&token, 1).await;
        if let Some(o) = orders["orders"]
            .as_array()
            .unwrap()
            .iter()
            .find(|o| o["cardId"].as_str() == Some(card.to_string().as_str()))
        {
            return o.clone();
        }
    }
    panic!("no order for card {card}");
}

// ---- token ----

#[tokio::test]
async fn the_token_endpoint_refuses_a_wrong_secret() {
    let hub = hub().await;
    let client = client_for(&hub, Some("wrong"));
    assert_eq!(client.token().await.unwrap_err(), PismoError::Unauthorized);
}

#[tokio::test]
async fn calls_without_a_bearer_token_answer_401() {
    let hub = hub().await;
    for (method, path) in [
        (reqwest::Method::POST, "/wallet/v2/cards"),
        (reqwest::Method::PUT, "/embossing/v1/cards/100001/embossing"),
        (reqwest::Method::POST, "/embossing/v1/triggers/embossing"),
        (reqwest::Method::POST, "/embossing/v1/cards/reembossing"),
    ] {
        let (status, _) = raw(&hub, method, path, None, &[], Some(json!({}))).await;
        assert_eq!(status, 401, "{path}");
    }
}

#[tokio::test]
async fn a_token_outlives_a_sandbox_restart() {
    let hub = hub().await;
    let token = client_for(&hub, None).token().await.unwrap();
    let hub = hub.restart().await;
    let (status, _) = raw(
        &hub,
        reqwest::Method::PUT,
        "/embossing/v1/cards/999/embossing",
        Some(token.expose()),
        &[],
        None,
    )
    .await;
    assert_eq!(status, 404);
}

// ---- create card ----

#[tokio::test]
async fn create_card_answers_201_with_a_created_plastic_card() {
    let hub = hub().await;
    let out = client_for(&hub, None)
        .create_card(CustomerId(7), &RequestId::new(), &plastic("JANE DOE"))
        .await
        .unwrap();
    let CreateOutcome::Created(card) = out else {
        panic!("expected 201, got {out:?}");
    };
    assert_eq!(card.status.as_deref(), Some("CREATED"));
    assert_eq!(card.card_type.as_deref(), Some("PLASTIC"));
}

#[tokio::test]
async fn create_card_with_the_same_idempotency_key_answers_200_with_the_same_card() {
    let hub = hub().await;
    let client = client_for(&hub, None);
    let key = RequestId::new();
    let first = client
        .create_card(CustomerId(8), &key, &plastic("JANE DOE"))
        .await
        .unwrap();
    let again = client
        .create_card(CustomerId(8), &key, &plastic("JANE DOE"))
        .await
        .unwrap();
    assert!(matches!(again, CreateOutcome::Replayed(_)));
    assert_eq!(first.card().id, again.card().id);
    assert_eq!(
        hub.handle.pismo().store.blocking().cards().unwrap().len(),
        1,
        "one card only"
    );
}

#[tokio::test]
async fn a_second_plastic_card_for_the_same_customer_answers_409() {
    let hub = hub().await;
    let client = client_for(&hub, None);
    create(&client, 9).await;
    let e = client
        .create_card(CustomerId(9), &RequestId::new(), &plastic("JANE DOE"))
        .await
        .unwrap_err();
    assert_eq!(e, PismoError::Duplicate);
}

#[tokio::test]
async fn create_card_refuses_an_invalid_printed_name_with_400_naming_the_field() {
    let hub = hub().await;
    let (status, body) = authorized(
        &hub,
        reqwest::Method::POST,
        "/wallet/v2/cards",
        &[("x-customer-id", "10")],
        Some(json!({"name": "PLASTIC", "type": "PLASTIC", "printed_name": "JOSÉ 2"})),
    )
    .await;
    assert_eq!(status, 400);
    assert!(body["message"].as_str().unwrap().contains("printed_name"));
}

#[tokio::test]
async fn create_card_without_a_customer_header_answers_400() {
    let hub = hub().await;
    let (status, body) = authorized(
        &hub,
        reqwest::Method::POST,
        "/wallet/v2/cards",
        &[],
        Some(json!({"name": "P", "type": "PLASTIC"})),
    )
    .await;
    assert_eq!(status, 400);
    assert!(body["message"].as_str().unwrap().contains("x-customer-id"));
}

#[tokio::test]
async fn create_card_for_an_unknown_customer_answers_403() {
    let mut file = pismo_file(300);
    file.customers = vec![1, 2, 3];
    let hub = TestHub::start_with(None, Some(file)).await;
    let e = client_for(&hub, None)
        .create_card(CustomerId(99), &RequestId::new(), &plastic("JANE DOE"))
        .await
        .unwrap_err();
    assert_eq!(e, PismoError::UnknownCustomer { customer: 99 });
}

// ---- add card to next embossing ----

#[tokio::test]
async fn add_to_embossing_answers_404_until_the_card_is_ready_then_202() {
    let hub = hub().await;
    let client = client_for(&hub, None);
    let card = create(&client, 11).await;
    assert_eq!(
        client.add_to_embossing(card).await.unwrap(),
        AddOutcome::NotReady
    );
    until_ready(&client, card).await;
    let feed = feed(&hub);
    assert!(feed
        .iter()
        .any(|e| e.envelope["event_type"] == "embossing_card_ingress"
            && e.envelope["data"]["card_id"] == card.0));
}

#[tokio::test]
async fn add_to_embossing_of_an_unknown_card_answers_404() {
    let hub = hub().await;
    let client = client_for(&hub, None);
    assert_eq!(
        client.add_to_embossing(PismoCardId(4242)).await.unwrap(),
        AddOutcome::NotReady
    );
}

#[tokio::test]
async fn add_to_embossing_of_an_embossed_card_answers_406() {
    let hub = hub().await;
    let (client, card, _) = embossed_card(&hub, 12).await;
    assert_eq!(
        client.add_to_embossing(card).await.unwrap(),
        AddOutcome::AlreadyEmbossed
    );
}

#[tokio::test]
async fn add_to_embossing_with_a_card_id_that_is_not_a_number_answers_404() {
    let hub = hub().await;
    let (status, body) = authorized(
        &hub,
        reqwest::Method::PUT,
        "/embossing/v1/cards/abc/embossing",
        &[],
        None,
    )
    .await;
    assert_eq!(status, 404);
    assert_eq!(body["message"], "card not found");
}

#[tokio::test]
async fn add_to_embossing_of_a_virtual_card_answers_400() {
    let hub = hub().await;
    let client = client_for(&hub, None);
    let (status, body) = authorized(
        &hub,
        reqwest::Method::POST,
        "/wallet/v2/cards",
        &[("x-customer-id", "16")],
        Some(json!({"name": "online", "type": "VIRTUAL"})),
    )
    .await;
    assert_eq!(status, 201);
    let card = PismoCardId(body["id"].as_i64().unwrap());
    tokio::time::sleep(Duration::from_millis(600)).await;
    let e = client.add_to_embossing(card).await.unwrap_err();
    assert!(matches!(e, PismoError::BadRequest { .. }), "{e:?}");
}

// ---- start embossing ----

#[tokio::test]
async fn start_embossing_without_config_id_answers_400() {
    let hub = hub().await;
    let (status, body) = authorized(
        &hub,
        reqwest::Method::POST,
        "/embossing/v1/triggers/embossing",
        &[],
        Some(json!({"cards": [1]})),
    )
    .await;
    assert_eq!(status, 400);
    assert_eq!(body["message"], "Field config_id is required");
}

#[tokio::test]
async fn start_embossing_for_an_unknown_configuration_answers_400() {
    let hub = hub().await;
    let e = client_for(&hub, None)
        .start_embossing(
            ConfigId::parse("00000000-0000-4000-8000-000000000000").unwrap(),
            &[],
        )
        .await
        .unwrap_err();
    assert!(matches!(e, PismoError::BadRequest { .. }), "{e:?}");
}

#[tokio::test]
async fn start_embossing_answers_202_and_the_run_becomes_a_d1_order_for_the_groups_station() {
    let hub = hub().await;
    let (_, _, order) = embossed_card(&hub, 13).await;
    assert_eq!(order["issuerId"], PISMO_ISSUER_ID);
    assert_eq!(order["order"]["distributionChannel"], "INSTANT");
    assert_eq!(order["order"]["persoStation"], STATION);
    let sealed = order["order"]["encryptedData"].as_str().unwrap();
    let clear =
        keyring_decrypt(&hub.station_jwe_private, sealed).expect("sealed to the station key");
    let data: Value = serde_json::from_slice(&clear).unwrap();
    assert_eq!(data["encodedName"], "JANE DOE");
    assert!(data["pan"].as_str().unwrap().starts_with("476173"));
    let emb = &embossing_events(&hub)[0];
    assert_eq!(emb["data"]["reembossing"], false);
    assert_eq!(emb["data"]["reembossing_counter"], 0);
    for k in [
        "event_id",
        "domain",
        "event_type",
        "schema_version",
        "org_id",
        "cid",
        "timestamp",
        "data",
    ] {
        assert!(!emb[k].is_null(), "envelope field {k}");
    }
}

// ---- resend ----

#[tokio::test]
async fn resend_without_cards_answers_400() {
    let hub = hub().await;
    let (status, body) = authorized(
        &hub,
        reqwest::Method::POST,
        "/embossing/v1/cards/reembossing",
        &[],
        Some(json!({})),
    )
    .await;
    assert_eq!(status, 400);
    assert_eq!(
        body["message"],
        "Invalid payload to reembossing, cards is required"
    );
}

#[tokio::test]
async fn resend_of_an_unknown_card_answers_400() {
    let hub = hub().await;
    let e = client_for(&hub, None)
        .resend(&[PismoCardId(5)])
        .await
        .unwrap_err();
    assert!(matches!(e, PismoError::BadRequest { .. }), "{e:?}");
}

#[tokio::test]
async fn a_resent_card_whose_order_failed_becomes_a_new_order_flagged_reembossing() {
    let hub = hub().await;
    let (client, card, first) = embossed_card(&hub, 14).await;
    let token = hub.station_token().await;
    let op = first["operationId"].as_str().unwrap();
    let ev = |seq: u64, status: &str| json!({"sequence": seq, "status": status, "time": sandbox_common::now_rfc3339(), "reason": "printer jam"});
    assert_eq!(
        hub.event(&token, op, &ev(1, "CARD_PROD_REQUESTED")).await,
        204
    );
    assert_eq!(
        hub.event(&token, op, &ev(2, "CARD_PROD_EXCEPTION")).await,
        204
    );
    client.resend(&[card]).await.unwrap();
    let second = run_and_wait_for_order(&hub, &client, card).await;
    assert_ne!(second["operationId"], first["operationId"]);
    let last = embossing_events(&hub).pop().unwrap();
    assert_eq!(last["data"]["reembossing"], true);
    assert_eq!(last["data"]["reembossing_counter"], 1);
}

// ---- persistence ----

#[tokio::test]
async fn a_sandbox_restart_keeps_cards_and_idempotency_keys() {
    let hub = hub().await;
    let key = RequestId::new();
    let first = client_for(&hub, None)
        .create_card(CustomerId(15), &key, &plastic("JANE DOE"))
        .await
        .unwrap();
    let hub = hub.restart().await;
    let again = client_for(&hub, None)
        .create_card(CustomerId(15), &key, &plastic("JANE DOE"))
        .await
        .unwrap();
    assert_eq!(again, CreateOutcome::Replayed(first.card().clone()));
}

// ---- retries (a small test server) ----

async fn flaky_server(status_sequence: Vec<u16>) -> (String, Arc<AtomicUsize>) {
    use axum::routing::post;
    let calls = Arc::new(AtomicUsize::new(0));
    let c = calls.clone();
    let seq = Arc::new(status_sequence);
    let app = axum::Router::new()
        .route(
            "/passport/v2/oauth/token",
            post(|| async {
                axum::Json(json!({"access_token": "t", "token_type": "Bearer", "expires_in": 600}))
            }),
        )
        .route(
            "/embossing/v1/cards/reembossing",
            post(move || {
                let n = c.fetch_add(1, Ordering::SeqCst);
                let seq = seq.clone();
                async move {
                    let s = seq.get(n).copied().unwrap_or(202);
                    (
                        axum::http::StatusCode::from_u16(s).unwrap(),
                        axum::Json(json!({"message": "m", "error": "e", "status": s})),
                    )
                }
            }),
        );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (format!("http://{addr}"), calls)
}

fn plain_client(base: &str) -> PismoClient {
    let mut cfg = PismoClientConfig::new(base, base, "c", PismoSecret::new("s".into()));
    cfg.backoff_base = Duration::from_millis(5);
    PismoClient::new(cfg).unwrap()
}

#[tokio::test]
async fn a_5xx_answer_is_retried_with_backoff() {
    let (base, calls) = flaky_server(vec![503, 500, 202]).await;
    plain_client(&base).resend(&[PismoCardId(1)]).await.unwrap();
    assert_eq!(calls.load(Ordering::SeqCst), 3);
}

#[tokio::test]
async fn a_400_answer_is_not_retried() {
    let (base, calls) = flaky_server(vec![400]).await;
    let e = plain_client(&base)
        .resend(&[PismoCardId(1)])
        .await
        .unwrap_err();
    assert_eq!(
        e,
        PismoError::BadRequest {
            message: "m".into()
        }
    );
    assert_eq!(calls.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn pismo_unreachable_after_every_retry_says_so() {
    let e = plain_client("http://127.0.0.1:9")
        .resend(&[PismoCardId(1)])
        .await
        .unwrap_err();
    assert!(matches!(e, PismoError::Unreachable { .. }), "{e:?}");
    assert!(e.is_retryable());
}

#[tokio::test]
async fn an_expired_token_is_renewed_once_and_the_call_goes_through() {
    use axum::routing::post;
    let tokens = Arc::new(AtomicUsize::new(0));
    let t = tokens.clone();
    let app = axum::Router::new()
        .route(
            "/passport/v2/oauth/token",
            post(move || {
                let n = t.fetch_add(1, Ordering::SeqCst);
                async move { axum::Json(json!({"access_token": format!("t{n}"), "token_type": "Bearer", "expires_in": 600})) }
            }),
        )
        .route(
            "/embossing/v1/cards/reembossing",
            post(|headers: axum::http::HeaderMap| async move {
                // The first token "expired" at the server.
                if headers["authorization"] == "Bearer t0" {
                    axum::http::StatusCode::UNAUTHORIZED
                } else {
                    axum::http::StatusCode::ACCEPTED
                }
            }),
        );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    plain_client(&format!("http://{addr}"))
        .resend(&[PismoCardId(1)])
        .await
        .unwrap();
    assert_eq!(tokens.load(Ordering::SeqCst), 2, "one renewal");
}

// ---- event feed ----

#[tokio::test]
async fn the_event_feed_serves_the_documented_envelope_after_a_position() {
    let hub = hub().await;
    let client = client_for(&hub, None);
    let card = create(&client, 17).await;
    until_ready(&client, card).await;
    let token = client.token().await.unwrap();
    let (status, first) = feed_page(&hub, &token, 0).await;
    assert_eq!(status, 200);
    let events = first["events"].as_array().unwrap();
    let types: Vec<_> = events
        .iter()
        .map(|e| e["event_type"].as_str().unwrap())
        .collect();
    assert_eq!(types, ["card-created", "embossing_card_ingress"]);
    assert!(events
        .iter()
        .all(|e| e["data"]["card_id"] == card.0 && e["schema_version"] == 1));
    let next = first["next"].as_i64().unwrap();
    let (_, rest) = feed_page(&hub, &token, next).await;
    assert!(
        rest["events"].as_array().unwrap().is_empty(),
        "nothing after the last position"
    );
}

#[tokio::test]
async fn a_scheduled_run_sends_queued_cards_without_start_embossing() {
    let mut file = pismo_file(300);
    file.groups[0].schedule_seconds = 1;
    let hub = TestHub::start_with(None, Some(file)).await;
    let client = client_for(&hub, None);
    let card = create(&client, 18).await;
    until_ready(&client, card).await;
    let token = hub.station_token().await;
    for _ in 0..50 {
        let orders = hub.poll(&token, 1).await;
        if orders["orders"]
            .as_array()
            .unwrap()
            .iter()
            .any(|o| o["cardId"].as_str() == Some(card.to_string().as_str()))
        {
            return;
        }
    }
    panic!("the scheduled run never brought card {card}");
}
