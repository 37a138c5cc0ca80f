//! The sandbox token endpoint follows D1's RFC 7523 flow.

mod sandbox_common;

use josekit::jwk::Jwk;
use josekit::jws::{JwsHeader, ES256};
use josekit::jwt::{self, JwtPayload};
use sandbox_common::TestHub;
use serde_json::Value;
use std::time::{Duration, SystemTime};

const GRANT: &str = "urn:ietf:params:oauth:grant-type:jwt-bearer";

async fn exchange(hub: &TestHub, assertion: &str) -> (u16, Value) {
    let resp = reqwest::Client::new()
        .post(hub.url("/oauth2/token"))
        .form(&[("grant_type", GRANT), ("assertion", assertion)])
        .send()
        .await
        .unwrap();
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

/// An assertion signed with the dev issuer key, with chosen kid and times.
fn assertion(hub: &TestHub, kid: &str, iat: SystemTime, exp: SystemTime) -> String {
    let aud = hub.url("/oauth2/token");
    assertion_with(
        hub,
        kid,
        iat,
        exp,
        Some(&aud),
        Some(uuid::Uuid::new_v4().to_string()),
    )
}

/// An assertion with a chosen `aud` and `jti` (either may be left out).
fn assertion_with(
    hub: &TestHub,
    kid: &str,
    iat: SystemTime,
    exp: SystemTime,
    aud: Option<&str>,
    jti: Option<String>,
) -> String {
    let dev = hub.files.load_dev_issuer().unwrap();
    let mut signer = ES256
        .signer_from_jwk(&Jwk::from_bytes(dev.private_jwk.as_bytes()).unwrap())
        .unwrap();
    // josekit writes the signer's kid into the header; make it the one under test.
    signer.set_key_id(kid);
    let mut header = JwsHeader::new();
    header.set_key_id(kid);
    let mut claims = JwtPayload::new();
    claims.set_issuer(dev.issuer_id.clone());
    claims.set_subject(dev.issuer_id.clone());
    claims.set_issued_at(&iat);
    claims.set_expires_at(&exp);
    if let Some(jti) = jti {
        claims.set_jwt_id(jti);
    }
    if let Some(aud) = aud {
        claims.set_audience(vec![aud.to_string()]);
    }
    jwt::encode_with_signer(&claims, &header, &signer).unwrap()
}

fn dev_kid(hub: &TestHub) -> String {
    hub.files.load_dev_issuer().unwrap().kid.clone()
}

#[tokio::test]
async fn a_good_assertion_gets_a_fifteen_minute_bearer_token() {
    let hub = TestHub::start().await;
    let now = SystemTime::now();
    let a = assertion(&hub, &dev_kid(&hub), now, now + Duration::from_secs(300));

    let (status, body) = exchange(&hub, &a).await;

    assert_eq!(status, 200, "{body}");
    assert_eq!(body["token_type"], "Bearer");
    assert_eq!(body["expires_in"], 900);
    assert!(body["access_token"].as_str().is_some_and(|t| t.len() >= 32));
}

#[tokio::test]
async fn an_unknown_kid_is_refused() {
    let hub = TestHub::start().await;
    let now = SystemTime::now();
    let a = assertion(&hub, "not-registered", now, now + Duration::from_secs(300));

    let (status, body) = exchange(&hub, &a).await;

    assert_eq!(status, 401);
    assert_eq!(body["errorCode"], "AUTHORIZER_UNAUTHORIZED");
}

#[tokio::test]
async fn an_expired_assertion_is_refused() {
    let hub = TestHub::start().await;
    let now = SystemTime::now();
    let a = assertion(
        &hub,
        &dev_kid(&hub),
        now - Duration::from_secs(1200),
        now - Duration::from_secs(600),
    );

    let (status, body) = exchange(&hub, &a).await;

    assert_eq!(status, 401);
    assert_eq!(body["errorCode"], "AUTHORIZER_UNAUTHORIZED");
}

#[tokio::test]
async fn an_assertion_expiring_more_than_fifteen_minutes_ahead_is_refused() {
    let hub = TestHub::start().await;
    let now = SystemTime::now();
    let a = assertion(&hub, &dev_kid(&hub), now, now + Duration::from_secs(3600));

    let (status, body) = exchange(&hub, &a).await;

    assert_eq!(status, 401);
    assert_eq!(body["errorCode"], "AUTHORIZER_UNAUTHORIZED");
}

#[tokio::test]
async fn a_replayed_assertion_is_refused() {
    let hub = TestHub::start().await;
    let now = SystemTime::now();
    let a = assertion(&hub, &dev_kid(&hub), now, now + Duration::from_secs(300));

    assert_eq!(exchange(&hub, &a).await.0, 200);
    assert_eq!(exchange(&hub, &a).await.0, 401);
}

#[tokio::test]
async fn an_assertion_without_an_audience_is_refused() {
    let hub = TestHub::start().await;
    let now = SystemTime::now();
    let jti = Some(uuid::Uuid::new_v4().to_string());
    let a = assertion_with(
        &hub,
        &dev_kid(&hub),
        now,
        now + Duration::from_secs(300),
        None,
        jti,
    );

    let (status, body) = exchange(&hub, &a).await;

    assert_eq!(status, 401);
    assert_eq!(body["errorCode"], "AUTHORIZER_UNAUTHORIZED");
}

#[tokio::test]
async fn an_assertion_made_for_another_server_is_refused() {
    let hub = TestHub::start().await;
    let now = SystemTime::now();
    let jti = Some(uuid::Uuid::new_v4().to_string());
    let aud = Some("https://other-hub.example/oauth2/token");
    let a = assertion_with(
        &hub,
        &dev_kid(&hub),
        now,
        now + Duration::from_secs(300),
        aud,
        jti,
    );

    assert_eq!(exchange(&hub, &a).await.0, 401);
}

#[tokio::test]
async fn an_assertion_without_a_jti_is_refused() {
    let hub = TestHub::start().await;
    let now = SystemTime::now();
    let aud = hub.url("/oauth2/token");
    let a = assertion_with(
        &hub,
        &dev_kid(&hub),
        now,
        now + Duration::from_secs(300),
        Some(&aud),
        None,
    );

    assert_eq!(exchange(&hub, &a).await.0, 401);
}

#[tokio::test]
async fn an_assertion_signed_by_another_key_under_a_registered_kid_is_refused() {
    let hub = TestHub::start().await;
    let (other, _) = station_agent::sandbox::keys::generate_es256_jwk(&dev_kid(&hub)).unwrap();
    let cred =
        station_agent::link::ClientCredential::from_private_jwk("SANDBOX-ISSUER", &other, None)
            .unwrap();
    let a = cred
        .assertion_for(
            &hub.url("/oauth2/token"),
            SystemTime::now(),
            Duration::from_secs(300),
        )
        .unwrap();

    let (status, _) = exchange(&hub, &a).await;

    assert_eq!(status, 401);
}

#[tokio::test]
async fn a_wrong_grant_type_is_a_bad_request() {
    let hub = TestHub::start().await;
    let resp = reqwest::Client::new()
        .post(hub.url("/oauth2/token"))
        .form(&[("grant_type", "client_credentials"), ("assertion", "x")])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 400);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["errorCode"], "FIELD_INVALID_VALUE");
    assert_eq!(body["error"], "grant_type");
}

#[tokio::test]
async fn tokens_are_scoped_to_their_principal() {
    let hub = TestHub::start().await;
    let station = hub.station_token().await;
    let issuer = hub.issuer_token().await;

    let (status, body) = hub.production_status(&station, "card-1").await;
    assert_eq!(status, 403, "a station token may not query the issuer API");
    assert_eq!(body["errorCode"], "AUTHORIZER_FORBIDDEN");

    let resp = reqwest::Client::new()
        .get(hub.url("/stations/BRANCH-001/orders"))
        .bearer_auth(&issuer)
        .send()
        .await
        .unwrap();
    assert_eq!(
        resp.status().as_u16(),
        403,
        "an issuer token may not poll a station queue"
    );
}

#[tokio::test]
async fn a_missing_or_unknown_bearer_is_unauthorized() {
    let hub = TestHub::start().await;
    let (status, body) = hub.production_status("not-a-token", "card-1").await;
    assert_eq!(status, 401);
    assert_eq!(body["errorCode"], "AUTHORIZER_UNAUTHORIZED");
}
