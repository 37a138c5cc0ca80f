//! The Pismo client's reading of every status code each seed contract documents,
//! against a stub Pismo that answers one fixed status on every call. (The sandbox
//! tests in `pismo_sandbox.rs` produce the same codes from real situations; a 500
//! and a second 401 are only reachable with a stub.)

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::http::StatusCode;
use axum::routing::{post, put};
use serde_json::json;
use station_agent::pismo::{
    AddOutcome, CardCreated, ConfigId, CreateOutcome, CreatePlasticCard, CustomerId,
    EmbossingGroup, PismoCardId, PismoClient, PismoClientConfig, PismoError, PismoSecret,
    PrintedName, RequestId,
};

const CONFIG: &str = "acde070d-8c4c-4f0d-9d8a-162843c10333";

/// A stub Pismo whose four calls all answer `status` (with a card body for 200/201
/// and the embossing error body otherwise); returns its URL and the count of calls.
async fn stub(status: u16) -> (String, Arc<AtomicUsize>) {
    let calls = Arc::new(AtomicUsize::new(0));
    let answer = move |calls: Arc<AtomicUsize>| async move {
        calls.fetch_add(1, Ordering::SeqCst);
        let body = if status == 200 || status == 201 {
            json!({"id": 4242, "status": "CREATED", "type": "PLASTIC"})
        } else {
            json!({"message": format!("stub {status}"), "error": "e", "status": status, "error_code": ""})
        };
        (StatusCode::from_u16(status).unwrap(), axum::Json(body))
    };
    let (c1, c2, c3, c4) = (calls.clone(), calls.clone(), calls.clone(), calls.clone());
    let app = axum::Router::new()
        .route(
            "/passport/v2/oauth/token",
            post(|| async {
                axum::Json(json!({"access_token": "t", "token_type": "Bearer", "expires_in": 600}))
            }),
        )
        .route("/wallet/v2/cards", post(move || answer(c1.clone())))
        .route(
            "/embossing/v1/cards/{card}/embossing",
            put(move || answer(c2.clone())),
        )
        .route(
            "/embossing/v1/triggers/embossing",
            post(move || answer(c3.clone())),
        )
        .route(
            "/embossing/v1/cards/reembossing",
            post(move || answer(c4.clone())),
        );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (format!("http://{addr}"), calls)
}

fn client(base: &str) -> PismoClient {
    let mut cfg = PismoClientConfig::new(base, base, "c", PismoSecret::new("s".into()));
    cfg.backoff_base = Duration::from_millis(2);
    PismoClient::new(cfg).unwrap()
}

fn stub_message(status: u16) -> PismoError {
    PismoError::BadRequest {
        message: format!("stub {status}"),
    }
}

fn created() -> CardCreated {
    CardCreated {
        id: PismoCardId(4242),
        status: Some("CREATED".into()),
        card_type: Some("PLASTIC".into()),
    }
}

async fn create(status: u16) -> (Result<CreateOutcome, PismoError>, usize) {
    let (base, calls) = stub(status).await;
    let body = CreatePlasticCard::new(
        PrintedName::parse("JANE DOE").unwrap(),
        EmbossingGroup::parse("BRANCH-001-EMB").unwrap(),
        None,
    );
    let r = client(&base)
        .create_card(CustomerId(7), &RequestId::new(), &body)
        .await;
    (r, calls.load(Ordering::SeqCst))
}

async fn add(status: u16) -> (Result<AddOutcome, PismoError>, usize) {
    let (base, calls) = stub(status).await;
    let r = client(&base).add_to_embossing(PismoCardId(4242)).await;
    (r, calls.load(Ordering::SeqCst))
}

async fn start(status: u16) -> (Result<(), PismoError>, usize) {
    let (base, calls) = stub(status).await;
    let r = client(&base)
        .start_embossing(ConfigId::parse(CONFIG).unwrap(), &[PismoCardId(4242)])
        .await;
    (r, calls.load(Ordering::SeqCst))
}

async fn resend(status: u16) -> (Result<(), PismoError>, usize) {
    let (base, calls) = stub(status).await;
    let r = client(&base).resend(&[PismoCardId(4242)]).await;
    (r, calls.load(Ordering::SeqCst))
}

fn unreachable(r: &Result<impl std::fmt::Debug, PismoError>) -> bool {
    matches!(r, Err(PismoError::Unreachable { detail }) if detail.contains("500"))
}

#[tokio::test]
async fn create_card_reads_201_200_401_403_409_500_and_400() {
    assert_eq!(create(201).await.0, Ok(CreateOutcome::Created(created())));
    assert_eq!(create(200).await.0, Ok(CreateOutcome::Replayed(created())));
    assert_eq!(create(401).await, (Err(PismoError::Unauthorized), 2));
    assert_eq!(
        create(403).await.0,
        Err(PismoError::UnknownCustomer { customer: 7 })
    );
    assert_eq!(create(409).await, (Err(PismoError::Duplicate), 1));
    let (r, calls) = create(500).await;
    assert!(unreachable(&r), "{r:?}");
    assert!(calls > 1, "a 500 is retried");
    assert_eq!(create(400).await, (Err(stub_message(400)), 1));
}

#[tokio::test]
async fn add_to_embossing_reads_202_404_406_400_401_and_500() {
    assert_eq!(add(202).await.0, Ok(AddOutcome::Accepted));
    assert_eq!(add(404).await, (Ok(AddOutcome::NotReady), 1));
    assert_eq!(add(406).await.0, Ok(AddOutcome::AlreadyEmbossed));
    assert_eq!(add(400).await, (Err(stub_message(400)), 1));
    assert_eq!(add(401).await, (Err(PismoError::Unauthorized), 2));
    let (r, calls) = add(500).await;
    assert!(unreachable(&r), "{r:?}");
    assert!(calls > 1, "a 500 is retried");
}

#[tokio::test]
async fn start_embossing_reads_202_and_400() {
    assert_eq!(start(202).await, (Ok(()), 1));
    assert_eq!(start(400).await, (Err(stub_message(400)), 1));
}

#[tokio::test]
async fn resend_for_embossing_reads_202_400_401_and_500() {
    assert_eq!(resend(202).await, (Ok(()), 1));
    assert_eq!(resend(400).await, (Err(stub_message(400)), 1));
    assert_eq!(resend(401).await, (Err(PismoError::Unauthorized), 2));
    let (r, calls) = resend(500).await;
    assert!(unreachable(&r), "{r:?}");
    assert!(calls > 1, "a 500 is retried");
}

#[tokio::test]
async fn an_undocumented_status_is_unexpected_and_names_the_call() {
    let (r, _) = start(418).await;
    assert_eq!(
        r,
        Err(PismoError::Unexpected {
            call: "start embossing",
            status: 418
        })
    );
}
