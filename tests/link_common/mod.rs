//! A scripted upstream for link client tests: token endpoint plus station routes,
//! recording what it receives.

#![allow(dead_code)]

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::json;
use station_agent::link::outbox::{Outbox, OutboxError, OutboxEvent};
use station_agent::link::{
    ClientCredential, LinkClient, LinkConfig, OrderSigner, OrderVerifier, StationOrder,
    StatusEvent, TlsFiles,
};
use station_agent::sandbox::keys::generate_es256_jwk;
use std::collections::{HashSet, VecDeque};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

/// What the fake upstream saw and how it should answer.
#[derive(Default)]
pub struct Upstream {
    pub token_calls: Mutex<u32>,
    pub token_lifetime: Mutex<u64>,
    /// Tokens the upstream answers 401 to.
    pub refused_tokens: Mutex<HashSet<String>>,
    /// Refuse every token.
    pub refuse_all: Mutex<bool>,
    /// Statuses to answer event posts with, consumed one per post (then 204).
    pub event_script: Mutex<VecDeque<u16>>,
    /// (operationId, sequence) answered 404 forever.
    pub rejected: Mutex<HashSet<(String, u64)>>,
    /// Accepted events in arrival order: (operationId, sequence, token).
    pub events: Mutex<Vec<(String, u64, String)>>,
    pub heartbeats: Mutex<u32>,
}

/// The fake upstream's order-signing key pair (private, public), one per test process.
pub fn order_signing_keys() -> &'static (String, String) {
    static KEYS: OnceLock<(String, String)> = OnceLock::new();
    KEYS.get_or_init(|| {
        let (private, public) = generate_es256_jwk("test-hub-orders-1").unwrap();
        (private.to_string(), public)
    })
}

/// What a station configured with the fake upstream's key verifies orders with.
pub fn order_verifier() -> OrderVerifier {
    OrderVerifier::from_public_jwks(&[&order_signing_keys().1]).unwrap()
}

fn bearer(headers: &HeaderMap) -> String {
    headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or_default()
        .to_string()
}

impl Upstream {
    fn token_ok(&self, token: &str) -> bool {
        !token.is_empty()
            && !*self.refuse_all.lock().unwrap()
            && !self.refused_tokens.lock().unwrap().contains(token)
    }
}

pub fn router(up: Arc<Upstream>) -> Router {
    Router::new()
        .route(
            "/oauth2/token",
            post(|State(up): State<Arc<Upstream>>| async move {
                let mut n = up.token_calls.lock().unwrap();
                *n += 1;
                let life = *up.token_lifetime.lock().unwrap();
                Json(json!({
                    "access_token": format!("tok-{n}"),
                    "token_type": "Bearer",
                    "expires_in": if life == 0 { 900 } else { life },
                }))
            }),
        )
        .route(
            "/stations/{station}/orders/{op}/events",
            post(
                |State(up): State<Arc<Upstream>>,
                 Path((_station, op)): Path<(String, String)>,
                 headers: HeaderMap,
                 Json(ev): Json<StatusEvent>| async move {
                    let token = bearer(&headers);
                    if !up.token_ok(&token) {
                        return StatusCode::UNAUTHORIZED;
                    }
                    if let Some(code) = up.event_script.lock().unwrap().pop_front() {
                        return StatusCode::from_u16(code).unwrap();
                    }
                    if up
                        .rejected
                        .lock()
                        .unwrap()
                        .contains(&(op.clone(), ev.sequence))
                    {
                        return StatusCode::NOT_FOUND;
                    }
                    up.events.lock().unwrap().push((op, ev.sequence, token));
                    StatusCode::NO_CONTENT
                },
            ),
        )
        .route(
            "/stations/{station}/orders",
            get(
                |State(up): State<Arc<Upstream>>, headers: HeaderMap| async move {
                    if !up.token_ok(&bearer(&headers)) {
                        return (StatusCode::UNAUTHORIZED, Json(json!({})));
                    }
                    let order = StationOrder {
                        operation_id: "op-1".into(),
                        issuer_id: "ISS".into(),
                        card_id: "card-1".into(),
                        received_at: "2026-11-23T00:00:00Z".into(),
                        order: json!({"distributionChannel": "INSTANT", "persoStation": "ST-1"}),
                        signature: None,
                    };
                    let signed = OrderSigner::from_private_jwk(&order_signing_keys().0)
                        .unwrap()
                        .sign(&order)
                        .unwrap();
                    (StatusCode::OK, Json(json!({ "orders": [signed] })))
                },
            ),
        )
        .route(
            "/stations/{station}/heartbeat",
            post(|State(up): State<Arc<Upstream>>| async move {
                *up.heartbeats.lock().unwrap() += 1;
                StatusCode::NO_CONTENT
            }),
        )
        .with_state(up)
}

/// Serve `up` on `listener` in the current runtime.
pub fn serve(listener: tokio::net::TcpListener, up: Arc<Upstream>) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        axum::serve(listener, router(up)).await.unwrap();
    })
}

pub async fn start(up: Arc<Upstream>) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    serve(listener, up);
    addr
}

pub fn station_credential() -> ClientCredential {
    let (private, _public) = generate_es256_jwk("station-key-1").unwrap();
    ClientCredential::from_private_jwk("station-ST-1", &private, None).unwrap()
}

pub fn client(addr: SocketAddr) -> LinkClient {
    LinkClient::new(LinkConfig {
        base_url: format!("http://{addr}"),
        token_url: format!("http://{addr}/oauth2/token"),
        station_id: "ST-1".into(),
        credential: station_credential(),
        tls: TlsFiles::default(),
        request_timeout: Duration::from_secs(5),
        order_keys: order_verifier(),
    })
    .unwrap()
}

pub fn event(seq: u64, status: &str) -> StatusEvent {
    StatusEvent {
        sequence: seq,
        status: status.into(),
        reason: None,
        time: "2026-11-23T00:00:00Z".into(),
        masked_pan: None,
        apdu_count: None,
    }
}

/// An in-memory outbox with the journal's contract.
#[derive(Default)]
pub struct MemOutbox {
    pub pending: Mutex<Vec<OutboxEvent>>,
    pub delivered: Mutex<Vec<(String, u64)>>,
    pub parked: Mutex<Vec<(String, u64, String)>>,
}

impl MemOutbox {
    pub fn with(events: &[(&str, u64, &str)]) -> Self {
        let out = MemOutbox::default();
        for (op, seq, status) in events {
            out.pending.lock().unwrap().push(OutboxEvent {
                operation_id: op.to_string(),
                event: event(*seq, status),
            });
        }
        out
    }

    pub fn pending_count(&self) -> usize {
        self.pending.lock().unwrap().len()
    }
}

impl Outbox for MemOutbox {
    fn pending_events(&self, limit: usize) -> Result<Vec<OutboxEvent>, OutboxError> {
        // As the journal: nothing of an operation at or after one of its parked events.
        let parked = self.parked.lock().unwrap().clone();
        Ok(self
            .pending
            .lock()
            .unwrap()
            .iter()
            .filter(|e| {
                !parked
                    .iter()
                    .any(|p| p.0 == e.operation_id && p.1 <= e.event.sequence)
            })
            .take(limit)
            .cloned()
            .collect())
    }

    fn mark_delivered(&self, op: &str, seq: u64) -> Result<(), OutboxError> {
        self.pending
            .lock()
            .unwrap()
            .retain(|e| !(e.operation_id == op && e.event.sequence == seq));
        self.delivered.lock().unwrap().push((op.to_string(), seq));
        Ok(())
    }

    fn mark_parked(&self, op: &str, seq: u64, error: &str) -> Result<(), OutboxError> {
        self.pending
            .lock()
            .unwrap()
            .retain(|e| !(e.operation_id == op && e.event.sequence == seq));
        self.parked
            .lock()
            .unwrap()
            .push((op.to_string(), seq, error.to_string()));
        Ok(())
    }
}
