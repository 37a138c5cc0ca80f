//! D1 notifications from the sandbox hub to a local issuer backend.

mod sandbox_common;

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use axum::{Json, Router};
use sandbox_common::{instant_order, now_rfc3339, TestHub, STATION};
use serde_json::{json, Value};
use std::sync::{Arc, Mutex};
use std::time::Duration;

#[derive(Default)]
struct Issuer {
    /// Answers to give, one per call, then 204.
    script: Mutex<Vec<u16>>,
    /// (issuerId, x-correlation-id, Authorization, body) of every call.
    calls: Mutex<Vec<(String, String, String, Value)>>,
}

async fn issuer_server(issuer: Arc<Issuer>) -> String {
    let app = Router::new()
        .route(
            "/notifications/d1/v2/issuers/{issuerId}/cards",
            post(
                |State(i): State<Arc<Issuer>>,
                 Path(issuer_id): Path<String>,
                 headers: HeaderMap,
                 Json(body): Json<Value>| async move {
                    let h = |n: &str| {
                        headers
                            .get(n)
                            .and_then(|v| v.to_str().ok())
                            .unwrap_or_default()
                            .to_string()
                    };
                    i.calls.lock().unwrap().push((
                        issuer_id,
                        h("x-correlation-id"),
                        h("authorization"),
                        body,
                    ));
                    let mut script = i.script.lock().unwrap();
                    let code = if script.is_empty() {
                        204
                    } else {
                        script.remove(0)
                    };
                    StatusCode::from_u16(code).unwrap()
                },
            ),
        )
        .with_state(issuer);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    format!("http://{addr}")
}

async fn wait_for(issuer: &Issuer, calls: usize) {
    tokio::time::timeout(Duration::from_secs(20), async {
        while issuer.calls.lock().unwrap().len() < calls {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("issuer called in time");
}

#[tokio::test]
async fn a_notification_is_retried_after_a_500_until_the_issuer_answers_204() {
    let issuer = Arc::new(Issuer::default());
    issuer.script.lock().unwrap().push(500);
    let hub = TestHub::start_with_issuer(Some(issuer_server(issuer.clone()).await)).await;
    let token = hub.issuer_token().await;

    let (_, body) = hub
        .order(
            &token,
            "card-1",
            &instant_order(&hub.sealed_card(), STATION),
        )
        .await;
    let op = body["operationId"].as_str().unwrap().to_string();
    wait_for(&issuer, 2).await;

    let calls = issuer.calls.lock().unwrap().clone();
    let expected_bearer = format!(
        "Bearer {}",
        std::fs::read_to_string(&hub.files.notification_token).unwrap()
    );
    for (issuer_id, correlation, auth, body) in &calls[..2] {
        assert_eq!(issuer_id, "SANDBOX-ISSUER");
        assert_eq!(auth, &expected_bearer);
        assert!(!correlation.is_empty());
        let o = &body["operations"][0];
        assert_eq!(o["operationId"], op.as_str());
        assert_eq!(o["status"], "PENDING");
        assert_eq!(o["details"]["status"], "CARD_PROD_REQUESTED");
    }
    assert_eq!(calls[0].1, calls[1].1, "a retry keeps its correlation id");
    // The issuer records the call before its 204 reaches the hub: wait for the hub to
    // mark the notification delivered.
    tokio::time::timeout(Duration::from_secs(20), async {
        while !hub
            .handle
            .hub()
            .store
            .pending_notifications(10)
            .unwrap()
            .is_empty()
        {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("the delivered notification leaves the queue");
}

#[tokio::test]
async fn each_status_change_is_notified_once() {
    let issuer = Arc::new(Issuer::default());
    let hub = TestHub::start_with_issuer(Some(issuer_server(issuer.clone()).await)).await;
    let token = hub.issuer_token().await;
    let station = hub.station_token().await;
    let (_, body) = hub
        .order(
            &token,
            "card-1",
            &instant_order(&hub.sealed_card(), STATION),
        )
        .await;
    let op = body["operationId"].as_str().unwrap().to_string();
    wait_for(&issuer, 1).await;

    let done = json!({"sequence": 1, "status": "CARD_PROD_DONE", "time": now_rfc3339()});
    assert_eq!(hub.event(&station, &op, &done).await, 204);
    assert_eq!(hub.event(&station, &op, &done).await, 204);
    wait_for(&issuer, 2).await;
    tokio::time::sleep(Duration::from_millis(300)).await;

    let calls = issuer.calls.lock().unwrap().clone();
    assert_eq!(calls.len(), 2, "a repeated event is not notified again");
    let o = &calls[1].3["operations"][0];
    assert_eq!(o["status"], "SUCCESSFUL");
    assert!(o["endTime"].is_string());
}
