//! A console given its own certificate (`[console.tls]`) serves HTTPS: the page and the
//! sign-in answer over TLS with a test certificate, and plain HTTP gets no page.

mod e2e;

use e2e::branch;
use serde_json::Value;
use station_agent::config::ConsoleTls;
use station_agent::devkit::{DEV_STAFF_ID, DEV_STAFF_PIN};

/// Writes a self-signed test certificate for 127.0.0.1; returns its PEM.
fn test_certificate(dir: &std::path::Path) -> (String, ConsoleTls) {
    let c = rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_string()]).unwrap();
    let tls = ConsoleTls {
        certificate: dir.join("console.crt"),
        key: dir.join("console.key"),
    };
    std::fs::write(&tls.certificate, c.cert.pem()).unwrap();
    std::fs::write(&tls.key, c.key_pair.serialize_pem()).unwrap();
    (c.cert.pem(), tls)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_console_with_its_own_certificate_answers_over_https() {
    let (dir, mut b) = branch("staff").await;
    let (pem, tls) = test_certificate(dir.path());
    b.config.console.tls = Some(tls);
    let agent = b.agent().await;
    let base = format!("https://{}", agent.console_addr);
    let mut h = reqwest::header::HeaderMap::new();
    h.insert(reqwest::header::ORIGIN, base.parse().unwrap());
    let https = reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(pem.as_bytes()).unwrap())
        .default_headers(h)
        .build()
        .unwrap();

    let page = https.get(&base).send().await.unwrap();
    assert_eq!(page.status(), 200);
    assert_eq!(
        page.headers()["strict-transport-security"],
        "max-age=31536000"
    );
    assert!(page.text().await.unwrap().contains("Card issuance"));
    let signed_in: Value = https
        .post(format!("{base}/api/session"))
        .json(&serde_json::json!({"staff": DEV_STAFF_ID, "pin": DEV_STAFF_PIN}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(signed_in["member"]["id"], DEV_STAFF_ID);
    agent.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_tls_console_tells_the_browser_to_stay_on_https() {
    let (dir, mut b) = branch("staff").await;
    let (pem, tls) = test_certificate(dir.path());
    b.config.console.tls = Some(tls);
    let agent = b.agent().await;
    let https = reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(pem.as_bytes()).unwrap())
        .build()
        .unwrap();
    let page = https
        .get(format!("https://{}/", agent.console_addr))
        .send()
        .await
        .unwrap();
    assert_eq!(
        page.headers()["strict-transport-security"],
        "max-age=31536000"
    );
    agent.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_tls_console_gives_plain_http_no_page() {
    let (dir, mut b) = branch("staff").await;
    let (_, tls) = test_certificate(dir.path());
    b.config.console.tls = Some(tls);
    let agent = b.agent().await;
    let plain = reqwest::Client::builder()
        .timeout(std::time::Duration::from_secs(15))
        .build()
        .unwrap();
    let answer = plain
        .get(format!("http://{}/", agent.console_addr))
        .send()
        .await;
    assert!(answer.is_err(), "plain HTTP was answered: {answer:?}");
    agent.shutdown().await;
}
