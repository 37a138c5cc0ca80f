//! A whole branch on one machine for the end-to-end tests (see `station_branch`).

#![allow(dead_code, unused_imports)]

pub use station_branch::{wait_hub, wait_states, Branch, STATION};

/// A branch in a fresh temporary folder; keep the folder guard alive with it.
pub async fn branch(policy: &str) -> (tempfile::TempDir, Branch) {
    let dir = tempfile::tempdir().unwrap();
    let b = station_branch::branch(dir.path(), policy, Default::default()).await;
    (dir, b)
}

/// A client that behaves like the console page: same Origin, JSON bodies.
pub fn console_http(base: &str) -> reqwest::Client {
    let mut h = reqwest::header::HeaderMap::new();
    h.insert(reqwest::header::ORIGIN, base.parse().unwrap());
    h.insert(
        reqwest::header::CONTENT_TYPE,
        "application/json".parse().unwrap(),
    );
    reqwest::Client::builder()
        .default_headers(h)
        .build()
        .unwrap()
}

/// Signs `id` in at the console with `pin`; returns the session token.
pub async fn sign_in_as(http: &reqwest::Client, base: &str, id: &str, pin: &str) -> String {
    let r: serde_json::Value = http
        .post(format!("{base}/api/session"))
        .json(&serde_json::json!({"staff": id, "pin": pin}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(r["member"]["id"], id, "{r}");
    r["token"].as_str().expect("signed in").to_string()
}

/// Signs the development account in; returns the session token.
pub async fn sign_in(http: &reqwest::Client, base: &str) -> String {
    use station_agent::devkit::{DEV_STAFF_ID, DEV_STAFF_PIN};
    sign_in_as(http, base, DEV_STAFF_ID, DEV_STAFF_PIN).await
}
