//! The sandbox hub's HTTP API: D1 card order, production status, token
//! endpoint, the station link and the hub's public key.

use super::auth::{AuthBook, Principal};
use super::config::StationEntry;
use super::error::HubError;
use super::rules::OrderRules;
use super::store::{CreateRefusal, EventOutcome, HubStore, Operation, PENDING};
use crate::link::wire::{
    is_masked_pan, Heartbeat, StationOrder, StationOrders, StatusEvent, JWT_BEARER_GRANT,
};
use crate::link::OrderSigner;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, MethodRouter};
use axum::{Form, Json, Router};
use serde::Deserialize;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime};
use tokio::sync::Notify;

/// Longest long poll the hub holds (a larger `wait` is shortened to this).
pub const MAX_WAIT: Duration = Duration::from_secs(60);

/// Shared state of a running hub.
pub struct Hub {
    /// Persistent data.
    pub store: HubStore,
    /// Token issuing and checking.
    pub auth: AuthBook,
    /// The hub's public JWE key (JWK JSON).
    pub hub_public_jwk: String,
    /// Signs every order handed to a station.
    order_signer: OrderSigner,
    /// The order-signing public key (JWK JSON), published beside the JWE key.
    order_public_jwk: String,
    stations: HashMap<String, StationEntry>,
    wake: HashMap<String, Arc<Notify>>,
    rules: Arc<dyn OrderRules>,
    /// Woken when a notification is queued.
    pub notifications: Arc<Notify>,
}

impl Hub {
    /// A hub over `store` serving `stations`, signing orders with `order_signer`.
    pub fn new(
        store: HubStore,
        auth: AuthBook,
        hub_public_jwk: String,
        (order_signer, order_public_jwk): (OrderSigner, String),
        stations: Vec<StationEntry>,
        rules: Arc<dyn OrderRules>,
    ) -> Self {
        let wake = stations
            .iter()
            .map(|s| (s.perso_station.clone(), Arc::new(Notify::new())))
            .collect();
        Hub {
            store,
            auth,
            hub_public_jwk,
            order_signer,
            order_public_jwk,
            stations: stations
                .into_iter()
                .map(|s| (s.perso_station.clone(), s))
                .collect(),
            wake,
            rules,
            notifications: Arc::new(Notify::new()),
        }
    }

    fn bearer(&self, headers: &HeaderMap) -> Result<Principal, HubError> {
        let value = headers
            .get(axum::http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .ok_or_else(|| HubError::unauthorized("Authorization"))?;
        let token = value
            .strip_prefix("Bearer ")
            .ok_or_else(|| HubError::unauthorized("Authorization"))?;
        self.auth
            .principal(token.trim(), SystemTime::now())
            .ok_or_else(|| HubError::unauthorized("token"))
    }

    fn require_issuer(&self, headers: &HeaderMap, issuer_id: &str) -> Result<(), HubError> {
        match self.bearer(headers)? {
            Principal::Issuer(id) if id == issuer_id => Ok(()),
            _ => Err(HubError::forbidden("issuerId")),
        }
    }

    fn require_station(&self, headers: &HeaderMap, station: &str) -> Result<(), HubError> {
        match self.bearer(headers)? {
            Principal::Station(id) if id == station => Ok(()),
            _ => Err(HubError::forbidden("persoStation")),
        }
    }
}

// --- Pismo embosser bridge (issue 12): INSTANT orders made by the hub itself. ---
impl Hub {
    /// Queue an INSTANT order for `station` as if an issuer had posted `body`, with
    /// `card` sealed to the station's key; the same rules, re-order check and
    /// notifications as the D1 endpoint. Returns the new operationId.
    pub fn submit_instant(
        &self,
        issuer_id: &str,
        card_id: &str,
        station: &str,
        body: &Value,
        card: &super::rules::CardJson,
    ) -> Result<String, HubError> {
        let entry = self
            .stations
            .get(station)
            .ok_or_else(|| HubError::not_allowed("persoStation"))?;
        let jwk = entry
            .public_jwks
            .first()
            .ok_or_else(|| HubError::internal("station without key"))?;
        let mut order = body.clone();
        order["encryptedData"] = json!(self.rules.seal_card_data(jwk, card)?);
        self.rules.validate(&order)?;
        let operation_id = uuid::Uuid::new_v4().simple().to_string();
        let now = now_rfc3339();
        let op = Operation {
            operation_id: operation_id.clone(),
            issuer_id: issuer_id.to_string(),
            card_id: card_id.to_string(),
            channel: "INSTANT".into(),
            perso_station: Some(station.to_string()),
            status: PENDING.into(),
            details_status: "CARD_PROD_REQUESTED".into(),
            reason: None,
            start_time: now.clone(),
            end_time: None,
            issuer_request_id: body["issuerRequestId"].as_str().map(str::to_string),
        };
        let station_order = StationOrder {
            operation_id: operation_id.clone(),
            issuer_id: issuer_id.to_string(),
            card_id: card_id.to_string(),
            received_at: now,
            order,
            signature: None,
        };
        match self
            .store
            .create_operation(&op, Some(&station_order))
            .map_err(HubError::internal)?
        {
            Ok(()) => {}
            Err(CreateRefusal::CardBusy) => return Err(HubError::not_allowed("cardId")),
        }
        if let Some(w) = self.wake.get(station) {
            w.notify_waiters();
        }
        self.notifications.notify_one();
        Ok(operation_id)
    }

    /// The hub's order rules (card data JWE), for the Pismo sandbox's sealed card data.
    pub fn rules(&self) -> &Arc<dyn OrderRules> {
        &self.rules
    }
}
// --- end Pismo embosser bridge ---

type HubState = State<Arc<Hub>>;

/// Every route the hub serves: (method, path, handler). The router and the
/// OpenAPI document test are both built from this one table.
pub fn route_table() -> Vec<(Method, &'static str, MethodRouter<Arc<Hub>>)> {
    vec![
        (Method::POST, "/oauth2/token", post(token)),
        (
            Method::POST,
            "/banking/v1/issuers/{issuerId}/physicalCards/{cardId}/operations:production",
            post(order_card),
        ),
        (
            Method::GET,
            "/banking/v1/issuers/{issuerId}/physicalCards/{cardId}/productionStatus",
            get(production_status),
        ),
        (
            Method::GET,
            "/stations/{persoStation}/orders",
            get(station_orders),
        ),
        (
            Method::POST,
            "/stations/{persoStation}/orders/{operationId}/events",
            post(station_event),
        ),
        (
            Method::POST,
            "/stations/{persoStation}/heartbeat",
            post(station_heartbeat),
        ),
        (Method::GET, "/sandbox/v1/keys", get(hub_keys)),
    ]
}

/// (method, path) of every route served, for documentation checks.
pub fn served_routes() -> Vec<(Method, &'static str)> {
    route_table().into_iter().map(|(m, p, _)| (m, p)).collect()
}

/// The hub's axum router.
pub fn router(hub: Arc<Hub>) -> Router {
    route_table()
        .into_iter()
        .fold(Router::new(), |r, (_, path, handler)| {
            r.route(path, handler)
        })
        .with_state(hub)
}

#[derive(Deserialize)]
struct TokenForm {
    grant_type: Option<String>,
    assertion: Option<String>,
}

async fn token(
    State(hub): HubState,
    headers: axum::http::HeaderMap,
    Form(form): Form<TokenForm>,
) -> Response {
    if form.grant_type.as_deref() != Some(JWT_BEARER_GRANT) {
        return HubError::invalid_value("grant_type").into_response();
    }
    let Some(assertion) = form.assertion else {
        return HubError::invalid_format("assertion").into_response();
    };
    let host = headers
        .get(axum::http::header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or_default();
    match hub.auth.exchange(&assertion, host, SystemTime::now()) {
        Ok(t) => Json(serde_json::to_value(t).unwrap_or_default()).into_response(),
        Err(e) => e.into_response(),
    }
}

fn valid_id(value: &str, max: usize) -> bool {
    !value.is_empty()
        && value.len() <= max
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

fn now_rfc3339() -> String {
    time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

async fn order_card(
    State(hub): HubState,
    Path((issuer_id, card_id)): Path<(String, String)>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Result<(StatusCode, Json<Value>), HubError> {
    hub.require_issuer(&headers, &issuer_id)?;
    if !valid_id(&card_id, 64) {
        return Err(HubError::invalid_format("cardId"));
    }
    let body: Value =
        serde_json::from_slice(&body).map_err(|_| HubError::invalid_format("body"))?;
    hub.rules.validate(&body)?;
    let channel = body["distributionChannel"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let encrypted = body["encryptedData"]
        .as_str()
        .ok_or_else(|| HubError::invalid_format("encryptedData"))?;
    let card = hub.rules.open_card_data(encrypted)?;

    let operation_id = uuid::Uuid::new_v4().simple().to_string();
    let now = now_rfc3339();
    let perso_station = if channel == "INSTANT" {
        body["persoStation"].as_str().map(str::to_string)
    } else {
        None
    };
    let station_order = match &perso_station {
        Some(station) => {
            let entry = hub
                .stations
                .get(station)
                .ok_or_else(|| HubError::not_allowed("persoStation"))?;
            let jwk = entry
                .public_jwks
                .first()
                .ok_or_else(|| HubError::internal("station without key"))?;
            let sealed = hub.rules.seal_card_data(jwk, &card)?;
            let mut order = body.clone();
            order["encryptedData"] = json!(sealed);
            Some(StationOrder {
                operation_id: operation_id.clone(),
                issuer_id: issuer_id.clone(),
                card_id: card_id.clone(),
                received_at: now.clone(),
                order,
                signature: None,
            })
        }
        None => None,
    };
    drop(card);
    let op = Operation {
        operation_id: operation_id.clone(),
        issuer_id,
        card_id,
        channel,
        perso_station: perso_station.clone(),
        status: PENDING.into(),
        details_status: "CARD_PROD_REQUESTED".into(),
        reason: None,
        start_time: now,
        end_time: None,
        issuer_request_id: body["issuerRequestId"].as_str().map(str::to_string),
    };
    match hub
        .store
        .create_operation(&op, station_order.as_ref())
        .map_err(HubError::internal)?
    {
        Ok(()) => {}
        Err(CreateRefusal::CardBusy) => return Err(HubError::not_allowed("cardId")),
    }
    if let Some(station) = &perso_station {
        if let Some(w) = hub.wake.get(station) {
            w.notify_waiters();
        }
    }
    hub.notifications.notify_one();
    tracing::info!(operation_id = %op.operation_id, channel = %op.channel, "card order accepted");
    Ok((
        StatusCode::ACCEPTED,
        Json(json!({ "operationId": operation_id })),
    ))
}

async fn production_status(
    State(hub): HubState,
    Path((issuer_id, card_id)): Path<(String, String)>,
    headers: HeaderMap,
) -> Result<Json<Value>, HubError> {
    hub.require_issuer(&headers, &issuer_id)?;
    let ops = hub
        .store
        .operations_for_card(&issuer_id, &card_id)
        .map_err(HubError::internal)?;
    if ops.is_empty() {
        return Err(HubError::not_found("cardId"));
    }
    Ok(Json(json!({
        "operations": ops.iter().map(Operation::to_d1).collect::<Vec<_>>()
    })))
}

#[derive(Deserialize)]
struct WaitQuery {
    wait: Option<u64>,
}

async fn station_orders(
    State(hub): HubState,
    Path(station): Path<String>,
    Query(q): Query<WaitQuery>,
    headers: HeaderMap,
) -> Result<Json<StationOrders>, HubError> {
    hub.require_station(&headers, &station)?;
    let wake = hub
        .wake
        .get(&station)
        .cloned()
        .ok_or_else(|| HubError::not_found("persoStation"))?;
    let wait = Duration::from_secs(q.wait.unwrap_or(0)).min(MAX_WAIT);
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        // Register interest before looking, so an order queued in between is not missed.
        let notified = wake.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        let orders = hub
            .store
            .pending_station_orders(&station)
            .map_err(HubError::internal)?;
        if !orders.is_empty() || tokio::time::Instant::now() >= deadline {
            let orders = orders
                .iter()
                .map(|o| hub.order_signer.sign(o))
                .collect::<Result<_, _>>()
                .map_err(HubError::internal)?;
            return Ok(Json(StationOrders { orders }));
        }
        if tokio::time::timeout_at(deadline, notified).await.is_err() {
            return Ok(Json(StationOrders::default()));
        }
    }
}

fn check_event(event: &StatusEvent) -> Result<(), HubError> {
    if event.sequence == 0 {
        return Err(HubError::invalid_value("sequence"));
    }
    let status_ok = !event.status.is_empty()
        && event.status.len() <= 64
        && event
            .status
            .bytes()
            .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'_');
    if !status_ok {
        return Err(HubError::invalid_format("status"));
    }
    if time::OffsetDateTime::parse(&event.time, &time::format_description::well_known::Rfc3339)
        .is_err()
    {
        return Err(HubError::invalid_format("time"));
    }
    if event
        .reason
        .as_ref()
        .is_some_and(|r| r.chars().count() > 256)
    {
        return Err(HubError::invalid_format("reason"));
    }
    if event
        .masked_pan
        .as_deref()
        .is_some_and(|p| !is_masked_pan(p))
    {
        // A clear PAN must never be stored by the hub: refuse it outright.
        return Err(HubError::invalid_format("maskedPan"));
    }
    Ok(())
}

async fn station_event(
    State(hub): HubState,
    Path((station, operation_id)): Path<(String, String)>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Result<StatusCode, HubError> {
    hub.require_station(&headers, &station)?;
    let event: StatusEvent =
        serde_json::from_slice(&body).map_err(|_| HubError::invalid_format("body"))?;
    check_event(&event)?;
    match hub
        .store
        .record_event(&station, &operation_id, &event)
        .map_err(HubError::internal)?
    {
        EventOutcome::Recorded(op) => {
            tracing::info!(
                operation_id = %operation_id,
                sequence = event.sequence,
                status = %op.status,
                details = %op.details_status,
                "station event recorded"
            );
            hub.notifications.notify_one();
            Ok(StatusCode::NO_CONTENT)
        }
        EventOutcome::Duplicate => Ok(StatusCode::NO_CONTENT),
        EventOutcome::UnknownOperation => Err(HubError::not_found("operationId")),
    }
}

async fn station_heartbeat(
    State(hub): HubState,
    Path(station): Path<String>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Result<StatusCode, HubError> {
    hub.require_station(&headers, &station)?;
    let beat: Heartbeat =
        serde_json::from_slice(&body).map_err(|_| HubError::invalid_format("body"))?;
    let value = serde_json::to_value(&beat).map_err(HubError::internal)?;
    hub.store
        .record_heartbeat(&station, &value)
        .map_err(HubError::internal)?;
    Ok(StatusCode::NO_CONTENT)
}

async fn hub_keys(State(hub): HubState) -> Result<Json<Value>, HubError> {
    let key: Value = serde_json::from_str(&hub.hub_public_jwk).map_err(HubError::internal)?;
    let signing: Value = serde_json::from_str(&hub.order_public_jwk).map_err(HubError::internal)?;
    Ok(Json(
        json!({ "keys": [key], "orderSigningKeys": [signing] }),
    ))
}
