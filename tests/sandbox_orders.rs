//! D1 card orders at the sandbox hub: accepted, stored, decrypted, re-order rule.

mod sandbox_common;

use sandbox_common::{instant_order, now_rfc3339, TestHub, STATION};
use serde_json::{json, Value};

#[tokio::test]
async fn an_instant_order_is_accepted_and_reported_pending() {
    let hub = TestHub::start().await;
    let token = hub.issuer_token().await;

    let (status, body) = hub
        .order(
            &token,
            "card-1",
            &instant_order(&hub.sealed_card(), STATION),
        )
        .await;

    assert_eq!(status, 202, "{body}");
    let op = body["operationId"]
        .as_str()
        .expect("operationId")
        .to_string();
    let (status, st) = hub.production_status(&token, "card-1").await;
    assert_eq!(status, 200);
    let ops = st["operations"].as_array().unwrap();
    assert_eq!(ops.len(), 1);
    assert_eq!(ops[0]["operationId"], op.as_str());
    assert_eq!(ops[0]["operation"], "PRODUCE");
    assert_eq!(ops[0]["status"], "PENDING");
    assert_eq!(ops[0]["cardId"], "card-1");
    assert_eq!(ops[0]["details"]["status"], "CARD_PROD_REQUESTED");
    assert_eq!(ops[0]["issuerRequestId"], "req-1");
    assert!(ops[0]["startTime"].is_string());
    assert!(ops[0].get("endTime").is_none());
}

#[tokio::test]
async fn the_colon_path_is_matched_literally() {
    let hub = TestHub::start().await;
    let token = hub.issuer_token().await;
    let resp = reqwest::Client::new()
        .post(hub.url("/banking/v1/issuers/SANDBOX-ISSUER/physicalCards/card-1/operations:cancel"))
        .bearer_auth(&token)
        .json(&instant_order(&hub.sealed_card(), STATION))
        .send()
        .await
        .unwrap();
    assert_eq!(
        resp.status().as_u16(),
        404,
        "only operations:production is a route"
    );
}

#[tokio::test]
async fn undecryptable_card_data_is_a_crypto_error() {
    let hub = TestHub::start().await;
    let token = hub.issuer_token().await;
    // Encrypted to the station key instead of the hub key.
    let wrong = sandbox_common::encrypt(&hub.station_jwe_public, b"{}");

    let (status, body) = hub
        .order(&token, "card-1", &instant_order(&wrong, STATION))
        .await;

    assert_eq!(status, 400);
    assert_eq!(body["errorCode"], "CRYPTO_ERROR");
}

#[tokio::test]
async fn card_data_that_is_not_json_is_a_parsing_error() {
    let hub = TestHub::start().await;
    let token = hub.issuer_token().await;
    let sealed = sandbox_common::encrypt(&hub.hub_public_jwk(), b"pan=4761739001010010");

    let (status, body) = hub
        .order(&token, "card-1", &instant_order(&sealed, STATION))
        .await;

    assert_eq!(status, 400);
    assert_eq!(body["errorCode"], "PARSING_ERROR");
}

#[tokio::test]
async fn a_body_that_is_not_json_is_an_invalid_format() {
    let hub = TestHub::start().await;
    let token = hub.issuer_token().await;
    let resp =
        reqwest::Client::new()
            .post(hub.url(
                "/banking/v1/issuers/SANDBOX-ISSUER/physicalCards/card-1/operations:production",
            ))
            .bearer_auth(&token)
            .body("not json")
            .send()
            .await
            .unwrap();
    assert_eq!(resp.status().as_u16(), 400);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["errorCode"], "FIELD_INVALID_FORMAT");
}

#[tokio::test]
async fn a_reorder_is_refused_while_the_last_produce_is_pending() {
    let hub = TestHub::start().await;
    let token = hub.issuer_token().await;
    let order = instant_order(&hub.sealed_card(), STATION);
    assert_eq!(hub.order(&token, "card-1", &order).await.0, 202);

    let (status, body) = hub.order(&token, "card-1", &order).await;

    assert_eq!(status, 403);
    assert_eq!(
        body,
        json!({"errorCode": "OPERATION_NOT_ALLOWED", "error": "cardId"})
    );
}

#[tokio::test]
async fn a_reorder_is_refused_after_success_and_allowed_after_failure() {
    let hub = TestHub::start().await;
    let token = hub.issuer_token().await;
    let station = hub.station_token().await;
    let order = instant_order(&hub.sealed_card(), STATION);

    let (_, first) = hub.order(&token, "card-ok", &order).await;
    let op = first["operationId"].as_str().unwrap();
    let done = json!({"sequence": 1, "status": "CARD_PROD_DONE", "time": now_rfc3339()});
    assert_eq!(hub.event(&station, op, &done).await, 204);
    assert_eq!(
        hub.order(&token, "card-ok", &order).await.0,
        403,
        "SUCCESSFUL blocks a re-order"
    );

    let (_, second) = hub.order(&token, "card-ko", &order).await;
    let op = second["operationId"].as_str().unwrap();
    let failed = json!({"sequence": 1, "status": "CARD_PROD_EXCEPTION", "reason": "chip write failed", "time": now_rfc3339()});
    assert_eq!(hub.event(&station, op, &failed).await, 204);
    let (status, again) = hub.order(&token, "card-ko", &order).await;
    assert_eq!(status, 202, "FAILED allows a new order: {again}");
    assert_ne!(again["operationId"], second["operationId"]);

    let (_, st) = hub.production_status(&token, "card-ko").await;
    let statuses: Vec<&str> = st["operations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["status"].as_str().unwrap())
        .collect();
    assert_eq!(statuses, vec!["FAILED", "PENDING"]);
}

#[tokio::test]
async fn an_order_for_an_unregistered_station_is_not_allowed() {
    let hub = TestHub::start().await;
    let token = hub.issuer_token().await;

    let (status, body) = hub
        .order(
            &token,
            "card-1",
            &instant_order(&hub.sealed_card(), "NOWHERE"),
        )
        .await;

    assert_eq!(status, 403);
    assert_eq!(
        body,
        json!({"errorCode": "OPERATION_NOT_ALLOWED", "error": "persoStation"})
    );
}

#[tokio::test]
async fn a_thales_order_is_recorded_but_not_routed_to_a_station() {
    let hub = TestHub::start().await;
    let token = hub.issuer_token().await;
    let order = json!({
        "distributionChannel": "THALES",
        "services": {"issuance": "CREATION"},
        "encryptedData": hub.sealed_card(),
        "paymentApplication": {"config": "VIS16"},
        "shipment": {"type": "INDIVIDUAL", "deliveryAddress": {
            "lastName": "Doe", "line1": "1 Rue de la Paix", "zipCode": "75002",
            "city": "Paris", "countryCode": "FR"
        }}
    });

    let (status, _) = hub.order(&token, "card-1", &order).await;

    assert_eq!(status, 202);
    assert_eq!(
        hub.production_status(&token, "card-1").await.1["operations"][0]["status"],
        "PENDING"
    );
    let polled = hub.poll(&hub.station_token().await, 0).await;
    assert_eq!(polled["orders"], json!([]));
}

#[tokio::test]
async fn an_unknown_card_has_no_production_status() {
    let hub = TestHub::start().await;
    let (status, _) = hub
        .production_status(&hub.issuer_token().await, "never-ordered")
        .await;
    assert_eq!(status, 404);
}

#[tokio::test]
async fn orders_and_keys_survive_a_hub_restart() {
    let hub = TestHub::start().await;
    let token = hub.issuer_token().await;
    let (_, body) = hub
        .order(
            &token,
            "card-1",
            &instant_order(&hub.sealed_card(), STATION),
        )
        .await;
    let hub_key = hub.hub_public_jwk();

    let hub = hub.restart().await;

    assert_eq!(
        hub.hub_public_jwk(),
        hub_key,
        "keys are not rotated by a restart"
    );
    let polled = hub.poll(&hub.station_token().await, 0).await;
    assert_eq!(polled["orders"][0]["operationId"], body["operationId"]);
    let (_, st) = hub
        .production_status(&hub.issuer_token().await, "card-1")
        .await;
    assert_eq!(st["operations"][0]["status"], "PENDING");
}

#[tokio::test]
async fn an_order_breaking_the_d1_contract_is_a_400_with_the_d1_body() {
    let hub = TestHub::start().await;
    let token = hub.issuer_token().await;
    let mut order = instant_order(&hub.sealed_card(), STATION);
    order["paymentApplication"]["derivationKeyIndex"] = json!("1");

    let (status, body) = hub.order(&token, "card-1", &order).await;

    assert_eq!(status, 400);
    assert_eq!(
        body,
        json!({"errorCode": "FIELD_INVALID_FORMAT", "error": "paymentApplication.derivationKeyIndex"})
    );
}

#[tokio::test]
async fn an_unknown_distribution_channel_is_an_invalid_value() {
    let hub = TestHub::start().await;
    let token = hub.issuer_token().await;
    let mut order = instant_order(&hub.sealed_card(), STATION);
    order["distributionChannel"] = json!("DRONE");

    let (status, body) = hub.order(&token, "card-1", &order).await;

    assert_eq!(status, 400);
    assert_eq!(body["errorCode"], "FIELD_INVALID_VALUE");
    assert_eq!(body["error"], "distributionChannel");
}

#[tokio::test]
async fn expired_card_data_is_refused_before_reaching_a_station() {
    let hub = TestHub::start().await;
    let token = hub.issuer_token().await;
    let card = json!({"pan": "4761739001010010", "exp": "2001", "encodedName": "DOE/JANE"});
    let sealed = sandbox_common::encrypt(&hub.hub_public_jwk(), card.to_string().as_bytes());

    let (status, body) = hub
        .order(&token, "card-1", &instant_order(&sealed, STATION))
        .await;

    assert_eq!(status, 400);
    assert!(
        body["error"].as_str().unwrap().starts_with("encryptedData"),
        "{body}"
    );
    assert_eq!(
        hub.poll(&hub.station_token().await, 0).await["orders"],
        json!([])
    );
}
