//! The console's Pismo counter: "New card for a customer" journals the request and
//! shows it in the queue as requested at Pismo at once; bad input is refused with
//! words naming the field; nothing without a session.

mod e2e;

use std::time::Duration;

use e2e::{branch, console_http, sign_in};
use serde_json::{json, Value};
use station_agent::devkit::DEV_STAFF_ID;
use station_agent::pismo::PismoSection;
use station_agent::sandbox::pismo::dev_client;
use station_agent::sandbox::StateFiles;

/// A branch whose station has a `[pismo]` section pointing at the sandbox.
async fn pismo_branch() -> (tempfile::TempDir, e2e::Branch) {
    let (dir, mut b) = branch("staff").await;
    let dev = dev_client(&StateFiles::in_dir(&b.hub_state)).unwrap();
    let secret = b.config.resolve(std::path::Path::new("keys/pismo.secret"));
    station_agent::sandbox::keys::write_private(&secret, &dev.client_secret).unwrap();
    b.config.pismo = Some(PismoSection {
        api_url: b.hub.base_url(),
        pci_url: b.hub.base_url(),
        client_id: dev.client_id.clone(),
        client_secret_file: "keys/pismo.secret".into(),
        issuer_id: "PISMO".into(),
        embossing_group: "BRANCH-EMB".into(),
        config_id: None,
        start_embossing: false,
        ingress_deadline_seconds: 20,
        products: vec!["DEV-VISA".into()],
        run_deadline_minutes: 30,
    });
    (dir, b)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_new_card_for_a_customer_shows_as_requested_at_pismo_at_once_then_waits_for_the_run() {
    let (_dir, b) = pismo_branch().await;
    let agent = b.agent().await;
    let base = format!("http://{}", agent.console_addr);
    let http = console_http(&base);
    let token = sign_in(&http, &base).await;
    let settings: Value = http
        .get(format!("{base}/api/pismo"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(settings, json!({"enabled": true, "products": ["DEV-VISA"]}));

    let r = http
        .post(format!("{base}/api/pismo/requests"))
        .bearer_auth(&token)
        .json(&json!({"customerId": "501", "printedName": "JANE DOE", "product": "DEV-VISA"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let body: Value = r.json().await.unwrap();
    assert!(body["request"]["stateLabel"]
        .as_str()
        .unwrap()
        .starts_with("Requested at Pismo"));
    let id = body["request"]["requestId"].as_str().unwrap().to_string();

    let mut last = Value::Null;
    for _ in 0..100 {
        let list: Value = http
            .get(format!("{base}/api/pismo/requests"))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        last = list
            .as_array()
            .unwrap()
            .iter()
            .find(|q| q["requestId"] == id.as_str())
            .cloned()
            .unwrap();
        if last["step"] == "queued" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(last["step"], "queued", "{last}");
    assert_eq!(
        last["stateLabel"],
        "Requested at Pismo — waiting for the embossing run"
    );
    assert!(last["cardId"].as_i64().is_some());
    let steps = agent
        .pismo
        .as_ref()
        .unwrap()
        .store()
        .steps(&id)
        .await
        .unwrap();
    assert_eq!(steps[0].actor, DEV_STAFF_ID, "journaled under the staff id");
}

#[tokio::test(flavor = "multi_thread")]
async fn an_invalid_printed_name_is_refused_with_words_naming_the_field() {
    let (_dir, b) = pismo_branch().await;
    let agent = b.agent().await;
    let base = format!("http://{}", agent.console_addr);
    let http = console_http(&base);
    let token = sign_in(&http, &base).await;
    let r = http
        .post(format!("{base}/api/pismo/requests"))
        .bearer_auth(&token)
        .json(&json!({"customerId": "501", "printedName": "JOSÉ 2"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 422);
    let body: Value = r.json().await.unwrap();
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .starts_with("printed name"),
        "{body}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn pismo_requests_need_a_signed_in_member() {
    let (_dir, b) = pismo_branch().await;
    let agent = b.agent().await;
    let base = format!("http://{}", agent.console_addr);
    let r = console_http(&base)
        .post(format!("{base}/api/pismo/requests"))
        .json(&json!({"customerId": "501", "printedName": "JANE DOE"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_pismo_request_from_a_foreign_origin_is_refused_even_when_signed_in() {
    let (_dir, b) = pismo_branch().await;
    let agent = b.agent().await;
    let base = format!("http://{}", agent.console_addr);
    let token = sign_in(&console_http(&base), &base).await;
    let r = console_http("http://evil.example")
        .post(format!("{base}/api/pismo/requests"))
        .bearer_auth(&token)
        .json(&json!({"customerId": "501", "printedName": "JANE DOE"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    let requests = agent
        .pismo
        .as_ref()
        .unwrap()
        .store()
        .recent(10)
        .await
        .unwrap();
    assert!(requests.is_empty(), "nothing journaled: {requests:?}");
}
