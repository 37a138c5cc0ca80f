//! The Pismo sandbox: the four seed Pismo contracts (create card, add card to next
//! scheduled embossing, start card embossing, resend cards for embossing) and the
//! OAuth token endpoint, served on the D1 sandbox hub's listener, plus an event
//! feed in Pismo's envelope and the embosser bridge that turns an embossing run
//! into D1 INSTANT orders for the station registered for the group.
//!
//! Choices where Pismo's public contracts are silent (see `docs/pismo.md`):
//! create-card input errors answer 400 with the embossing endpoints' error body;
//! an unknown customer answers 403; the PCI data of a new card is ready after
//! `readyMillis` (until then add-to-embossing answers 404); unknown cards, cards
//! not ready and statuses that may not be resent make resend answer 400.

pub mod bridge;
pub mod cli;
pub mod store;
pub mod validate;

use crate::sandbox::hub::Hub;
use crate::sandbox::keys::{read_text, write_private};
use crate::sandbox::state::{random_token, StateFiles};
use crate::sandbox::SandboxError;
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use std::sync::Arc;
use std::time::Duration;
use store::{now_ms, now_rfc3339, CreateResult, NewCard, PismoStore, StoreThread, RESENDABLE};
use tokio::sync::{watch, Notify};
use zeroize::Zeroizing;

/// Lifetime of the sandbox's Pismo access tokens.
pub const TOKEN_LIFETIME: Duration = Duration::from_secs(15 * 60);
/// Issuer id of the D1 orders the bridge makes for Pismo cards.
pub const PISMO_ISSUER_ID: &str = "PISMO";
/// Longest event-feed long poll.
pub const MAX_FEED_WAIT: Duration = Duration::from_secs(30);

/// One embossing group of the sandbox org (`[[pismo.groups]]` in `sandbox.toml`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct EmbossingGroupEntry {
    /// Group name (`embossing_group` of create card).
    pub name: String,
    /// Embossing configuration id (UUID) of start embossing.
    pub config_id: String,
    /// The station this group's runs go to (the branch's embosser).
    pub perso_station: String,
    /// A scheduled run every N seconds; 0 = only when start embossing is called.
    #[serde(default)]
    pub schedule_seconds: u64,
}

/// `[pismo]` of `sandbox.toml`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct PismoSandboxFile {
    /// The org (tenant) id in events.
    #[serde(default = "default_org")]
    pub org_id: String,
    /// How long after creation a card's PCI data is ready (the ingress event).
    #[serde(default = "default_ready")]
    pub ready_millis: u64,
    /// Known customers; empty = every customer id.
    #[serde(default)]
    pub customers: Vec<i64>,
    /// Embossing groups; the first is the org's default embosser.
    #[serde(default)]
    pub groups: Vec<EmbossingGroupEntry>,
}

fn default_org() -> String {
    "TN-SANDBOX".into()
}

fn default_ready() -> u64 {
    500
}

impl Default for PismoSandboxFile {
    fn default() -> Self {
        PismoSandboxFile {
            org_id: default_org(),
            ready_millis: default_ready(),
            customers: Vec::new(),
            groups: Vec::new(),
        }
    }
}

impl PismoSandboxFile {
    /// Check group names, config ids and stations.
    pub fn check(&self, stations: &[String]) -> Result<(), SandboxError> {
        let mut seen = std::collections::HashSet::new();
        for g in &self.groups {
            if !(2..=32).contains(&g.name.chars().count()) {
                return Err(SandboxError::Config(format!(
                    "pismo group '{}': a name is 2 to 32 characters",
                    g.name
                )));
            }
            if !seen.insert(g.name.clone()) {
                return Err(SandboxError::Config(format!(
                    "pismo group '{}' listed twice",
                    g.name
                )));
            }
            if uuid::Uuid::parse_str(&g.config_id).is_err() {
                return Err(SandboxError::Config(format!(
                    "pismo group '{}': configId '{}' is not a UUID",
                    g.name, g.config_id
                )));
            }
            if !stations.contains(&g.perso_station) {
                return Err(SandboxError::Config(format!(
                    "pismo group '{}': station '{}' is not registered",
                    g.name, g.perso_station
                )));
            }
        }
        Ok(())
    }
}

/// The development Pismo client credential (`pismo-client.json`, 0600).
#[derive(Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DevClient {
    /// OAuth client id.
    pub client_id: String,
    /// OAuth client secret.
    pub client_secret: String,
}

impl std::fmt::Debug for DevClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DevClient")
            .field("client_id", &self.client_id)
            .field("client_secret", &"<redacted>")
            .finish()
    }
}

impl Drop for DevClient {
    fn drop(&mut self) {
        zeroize::Zeroize::zeroize(&mut self.client_secret);
    }
}

/// Path of the development Pismo client credential in a state directory.
pub fn dev_client_path(files: &StateFiles) -> std::path::PathBuf {
    files.dir.join("pismo-client.json")
}

/// Path of the Pismo sandbox database in a state directory.
pub fn database_path(files: &StateFiles) -> std::path::PathBuf {
    files.dir.join("pismo.sqlite")
}

/// Read the development client, creating it on first use.
pub fn dev_client(files: &StateFiles) -> Result<DevClient, SandboxError> {
    let path = dev_client_path(files);
    if !path.exists() {
        let c = DevClient {
            client_id: "sandbox-pismo-client".into(),
            client_secret: random_token(),
        };
        let text = Zeroizing::new(
            serde_json::to_string_pretty(&c).map_err(|e| SandboxError::Keys(e.to_string()))?,
        );
        write_private(&path, &text)?;
    }
    let text = Zeroizing::new(read_text(&path)?);
    serde_json::from_str(&text).map_err(|e| SandboxError::state(&path, e))
}

/// The running Pismo sandbox.
pub struct PismoSandbox {
    /// Persistent data, on its own thread.
    pub store: StoreThread,
    /// The D1 hub the bridge orders through.
    pub hub: Arc<Hub>,
    /// `[pismo]` of `sandbox.toml`.
    pub file: PismoSandboxFile,
    client: DevClient,
    /// Woken when an event is stored.
    pub events: Arc<Notify>,
    /// Woken when a trigger is stored.
    pub work: Arc<Notify>,
}

fn sha256_hex(s: &str) -> String {
    hex::encode(openssl::sha::sha256(s.as_bytes()))
}

/// A Pismo event in the documented envelope.
pub fn envelope(org_id: &str, domain: &str, event_type: &str, cid: &str, data: Value) -> Value {
    json!({
        "event_id": uuid::Uuid::new_v4().to_string(),
        "domain": domain,
        "event_type": event_type,
        "schema_version": 1,
        "org_id": org_id,
        "cid": cid,
        "timestamp": now_rfc3339(),
        "data": data,
    })
}

/// A Pismo error answer (`message`, `error`, `status`, `error_code`).
pub fn pismo_error(status: StatusCode, error: &str, message: impl Into<String>) -> Response {
    (
        status,
        Json(json!({
            "message": message.into(),
            "error": error,
            "status": status.as_u16(),
            "error_code": "",
        })),
    )
        .into_response()
}

fn bad_request(message: impl Into<String>) -> Response {
    pismo_error(StatusCode::BAD_REQUEST, "bad_request", message)
}

fn unauthorized() -> Response {
    pismo_error(
        StatusCode::UNAUTHORIZED,
        "unauthorized",
        "Access token is missing or invalid",
    )
}

fn internal(e: impl std::fmt::Display) -> Response {
    tracing::error!(code = "PISMO_SANDBOX_INTERNAL", "{e}");
    pismo_error(
        StatusCode::INTERNAL_SERVER_ERROR,
        "internal_error",
        "Internal server error",
    )
}

impl PismoSandbox {
    /// The sandbox over the state directory's `pismo.sqlite`, bridged to `hub`.
    pub fn open(
        files: &StateFiles,
        hub: Arc<Hub>,
        file: PismoSandboxFile,
    ) -> Result<Self, SandboxError> {
        let client = dev_client(files)?;
        Ok(PismoSandbox {
            store: StoreThread::start(
                "pismo-sandbox-store",
                Arc::new(PismoStore::open(&database_path(files))?),
            ),
            hub,
            file,
            client,
            events: Arc::new(Notify::new()),
            work: Arc::new(Notify::new()),
        })
    }

    async fn authorized(&self, headers: &HeaderMap) -> bool {
        let Some(token) = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
        else {
            return false;
        };
        let hash = sha256_hex(token.trim());
        self.store
            .call(move |s| s.token_valid(&hash, now_ms()))
            .await
            .unwrap_or(false)
    }

    /// Issue a token for the development client (the CLI's `pismo token` asks over HTTP).
    pub async fn issue_token(&self) -> Result<Zeroizing<String>, SandboxError> {
        let token = Zeroizing::new(random_token());
        let hash = sha256_hex(&token);
        let expires = now_ms() + TOKEN_LIFETIME.as_millis() as i64;
        self.store
            .call(move |s| s.add_token(&hash, expires))
            .await?;
        Ok(token)
    }

    fn group(&self, name: &str) -> Option<&EmbossingGroupEntry> {
        self.file.groups.iter().find(|g| g.name == name)
    }

    fn emit(&self) {
        self.events.notify_waiters();
    }
}

type Sb = State<Arc<PismoSandbox>>;

/// The Pismo routes, to merge into the hub's router.
pub fn router(sandbox: Arc<PismoSandbox>) -> Router {
    Router::new()
        .route(crate::pismo::client::TOKEN_PATH, post(token))
        .route(crate::pismo::client::CREATE_CARD_PATH, post(create_card))
        .route(
            "/embossing/v1/cards/{cardId}/embossing",
            put(add_to_embossing),
        )
        .route(
            crate::pismo::client::START_EMBOSSING_PATH,
            post(start_embossing),
        )
        .route(crate::pismo::client::RESEND_PATH, post(resend))
        .route("/sandbox/pismo/v1/events", get(events))
        .with_state(sandbox)
}

#[derive(Deserialize, Default)]
struct TokenForm {
    grant_type: Option<String>,
    client_id: Option<String>,
    client_secret: Option<String>,
}

fn basic_credentials(headers: &HeaderMap) -> Option<(String, Zeroizing<String>)> {
    use base64::Engine;
    let v = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let raw = Zeroizing::new(
        base64::engine::general_purpose::STANDARD
            .decode(v.strip_prefix("Basic ")?.trim())
            .ok()?,
    );
    let text = std::str::from_utf8(&raw).ok()?;
    let (id, secret) = text.split_once(':')?;
    Some((id.to_string(), Zeroizing::new(secret.to_string())))
}

async fn token(
    State(sb): Sb,
    headers: HeaderMap,
    form: Result<axum::Form<TokenForm>, axum::extract::rejection::FormRejection>,
) -> Response {
    let form = form.map(|f| f.0).unwrap_or_default();
    if form.grant_type.as_deref() != Some("client_credentials") {
        return (
            StatusCode::BAD_REQUEST,
            Json(json!({"error": "unsupported_grant_type"})),
        )
            .into_response();
    }
    let (id, secret) = match basic_credentials(&headers) {
        Some(c) => c,
        None => (
            form.client_id.clone().unwrap_or_default(),
            Zeroizing::new(form.client_secret.clone().unwrap_or_default()),
        ),
    };
    let ok = id == sb.client.client_id
        && openssl::memcmp::eq(
            sha256_hex(&secret).as_bytes(),
            sha256_hex(&sb.client.client_secret).as_bytes(),
        );
    if !ok {
        return (
            StatusCode::UNAUTHORIZED,
            Json(json!({"error": "invalid_client"})),
        )
            .into_response();
    }
    match sb.issue_token().await {
        Ok(t) => Json(json!({
            "access_token": t.as_str(),
            "token_type": "Bearer",
            "expires_in": TOKEN_LIFETIME.as_secs(),
        }))
        .into_response(),
        Err(e) => internal(e),
    }
}

fn parse_json(body: &[u8]) -> Result<Value, Box<Response>> {
    serde_json::from_slice(body)
        .map_err(|_| Box::new(bad_request("the request body is not valid JSON")))
}

async fn create_card(State(sb): Sb, headers: HeaderMap, body: axum::body::Bytes) -> Response {
    if !sb.authorized(&headers).await {
        return unauthorized();
    }
    let customer = match headers.get("x-customer-id").map(|v| v.to_str()) {
        None => return bad_request("the header x-customer-id is required"),
        Some(Ok(v)) => match v.trim().parse::<i64>() {
            Ok(c) => c,
            Err(_) => return bad_request("the header x-customer-id must be an integer"),
        },
        Some(Err(_)) => return bad_request("the header x-customer-id must be an integer"),
    };
    let key = match headers.get("x-idempotency-key").map(|v| v.to_str()) {
        None => None,
        Some(Ok(k)) if k.chars().count() <= 36 => Some(k.to_string()),
        Some(_) => {
            return bad_request("the header x-idempotency-key must be at most 36 characters")
        }
    };
    let body = match parse_json(&body) {
        Ok(b) => b,
        Err(r) => return *r,
    };
    let req = match validate::check_create(&body) {
        Ok(r) => r,
        Err(m) => return bad_request(m),
    };
    let known = sb.file.customers.is_empty() || sb.file.customers.contains(&customer);
    if !known {
        return pismo_error(
            StatusCode::FORBIDDEN,
            "forbidden",
            format!("customer {customer} does not belong to this org"),
        );
    }
    let group = match req.embossing_group.clone() {
        Some(g) => {
            if req.card_type == "PLASTIC" && !sb.file.groups.is_empty() && sb.group(&g).is_none() {
                return bad_request(format!("the embossing_group {g} is not configured"));
            }
            g
        }
        None => sb
            .file
            .groups
            .first()
            .map(|g| g.name.clone())
            .unwrap_or_else(|| "DEFAULT".into()),
    };
    let ready_at_ms = now_ms() + sb.file.ready_millis as i64;
    let org = sb.file.org_id.clone();
    let cid = key
        .clone()
        .unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
    let created = sb
        .store
        .call(move |s| {
            let new = NewCard {
                customer_id: customer,
                card_type: &req.card_type,
                name: &req.name,
                printed_name: req.printed_name.as_deref(),
                embossing_group: &group,
                product: req.product.as_deref(),
                ready_at_ms,
                idempotency_key: key.as_deref(),
            };
            let response = |id: i64| {
                let mut r = json!({
                    "id": id,
                    "name": req.name,
                    "status": "CREATED",
                    "type": req.card_type,
                    "contactless_enabled": req.contactless_enabled,
                });
                for (k, v) in &req.echo {
                    r[k] = v.clone();
                }
                r
            };
            let event = |c: &store::SandboxCard| {
                envelope(
                    &org,
                    "card",
                    "card-created",
                    &cid,
                    json!({"card_id": c.id, "customer_id": c.customer_id, "type": c.card_type, "status": c.status}),
                )
            };
            s.create_card(&new, response, event)
        })
        .await;
    match created {
        Ok(CreateResult::Created(c)) => {
            sb.emit();
            tracing::info!(card_id = c.id, "pismo sandbox: card created");
            (StatusCode::CREATED, Json(c.response)).into_response()
        }
        Ok(CreateResult::Replayed(c)) => (StatusCode::OK, Json(c.response)).into_response(),
        Ok(CreateResult::Conflict) => pismo_error(
            StatusCode::CONFLICT,
            "conflict",
            "You already have a card with this type and name active",
        ),
        Err(e) => internal(e),
    }
}

fn card_id_of(s: &str) -> Option<i64> {
    if s.is_empty() || s.len() > 18 || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

async fn add_to_embossing(
    State(sb): Sb,
    Path(card_id): Path<String>,
    headers: HeaderMap,
) -> Response {
    if !sb.authorized(&headers).await {
        return unauthorized();
    }
    let not_found = || pismo_error(StatusCode::NOT_FOUND, "not_found", "card not found");
    // The path parameter is any string: one that is no card id names no card.
    let Some(id) = card_id_of(&card_id) else {
        return not_found();
    };
    let card = match sb.store.call(move |s| s.card(id)).await {
        Ok(c) => c,
        Err(e) => return internal(e),
    };
    let Some(card) = card else {
        return not_found();
    };
    // Before the ingress event the card's PCI data does not exist: Pismo answers 404.
    if !card.ingress_done {
        return not_found();
    }
    if card.card_type != "PLASTIC" {
        return bad_request(format!("card {id} is not a PLASTIC card"));
    }
    if card.embossed_count > 0 && !card.reembossing_pending {
        return pismo_error(
            StatusCode::NOT_ACCEPTABLE,
            "StatusNotAcceptable",
            "Card already embossed",
        );
    }
    if !RESENDABLE.contains(&card.status.as_str()) {
        return bad_request(format!("card {id} has status {}", card.status));
    }
    match sb.store.call(move |s| s.queue(id)).await {
        Ok(()) => StatusCode::ACCEPTED.into_response(),
        Err(e) => internal(e),
    }
}

async fn start_embossing(State(sb): Sb, headers: HeaderMap, body: axum::body::Bytes) -> Response {
    if !sb.authorized(&headers).await {
        return unauthorized();
    }
    let body = match parse_json(&body) {
        Ok(b) => b,
        Err(r) => return *r,
    };
    let Some(o) = body.as_object() else {
        return bad_request("Field config_id is required");
    };
    let config_id = match o.get("config_id") {
        None => return bad_request("Field config_id is required"),
        Some(Value::String(s)) => match uuid::Uuid::parse_str(s) {
            Ok(u) => u,
            Err(_) => return bad_request("Field config_id must be a UUID"),
        },
        Some(_) => return bad_request("Field config_id must be a UUID"),
    };
    let cards = match validate::int_array(o, "cards") {
        Ok(c) => c.unwrap_or_default(),
        Err(m) => return bad_request(m),
    };
    let programs = match validate::int_array(o, "programs") {
        Ok(p) => p.unwrap_or_default(),
        Err(m) => return bad_request(m),
    };
    let known = sb
        .file
        .groups
        .iter()
        .any(|g| uuid::Uuid::parse_str(&g.config_id).ok() == Some(config_id));
    if !known {
        return bad_request(format!("no embossing configuration {config_id}"));
    }
    match sb
        .store
        .call(move |s| s.add_trigger(&config_id.to_string(), &cards, &programs))
        .await
    {
        Ok(()) => {
            sb.work.notify_one();
            StatusCode::ACCEPTED.into_response()
        }
        Err(e) => internal(e),
    }
}

async fn resend(State(sb): Sb, headers: HeaderMap, body: axum::body::Bytes) -> Response {
    if !sb.authorized(&headers).await {
        return unauthorized();
    }
    let body = match parse_json(&body) {
        Ok(b) => b,
        Err(r) => return *r,
    };
    let required = "Invalid payload to reembossing, cards is required";
    let Some(o) = body.as_object() else {
        return bad_request(required);
    };
    let cards = match validate::int_array(o, "cards") {
        Ok(Some(c)) if !c.is_empty() => c,
        Ok(_) => return bad_request(required),
        Err(m) => return bad_request(m),
    };
    let ids = cards.clone();
    let found = sb
        .store
        .call(move |s| {
            ids.iter()
                .map(|id| s.card(*id).map(|c| (*id, c)))
                .collect::<Result<Vec<_>, _>>()
        })
        .await;
    let found = match found {
        Ok(f) => f,
        Err(e) => return internal(e),
    };
    for (id, card) in found {
        match card {
            Some(c) if c.card_type != "PLASTIC" => {
                return bad_request(format!("card {id} is not a PLASTIC card"))
            }
            Some(c) if !RESENDABLE.contains(&c.status.as_str()) => {
                return bad_request(format!(
                    "card {id} has status {}; only {} cards can be resent",
                    c.status,
                    RESENDABLE.join(", ")
                ))
            }
            Some(c) if !c.ingress_done => {
                return bad_request(format!("card {id} is not ready for embossing yet"))
            }
            Some(_) => {}
            None => return bad_request(format!("card {id} not found")),
        }
    }
    let org = sb.file.org_id.clone();
    let resent = sb
        .store
        .call(move |s| {
            let event = |c: &store::SandboxCard| {
                envelope(
                    &org,
                    "embossing",
                    "reembossing",
                    &uuid::Uuid::new_v4().to_string(),
                    json!({"card_id": c.id, "reembossing_counter": c.reembossing_counter}),
                )
            };
            s.resend(&cards, event)
        })
        .await;
    match resent {
        Ok(()) => {
            sb.emit();
            StatusCode::ACCEPTED.into_response()
        }
        Err(e) => internal(e),
    }
}

#[derive(Deserialize)]
struct FeedQuery {
    after: Option<i64>,
    wait: Option<u64>,
}

/// `GET /sandbox/pismo/v1/events?after=SEQ&wait=S`: events after a feed position,
/// in Pismo's envelope, long-polled up to `wait` seconds; at-least-once, so
/// readers deduplicate on `event_id`.
async fn events(State(sb): Sb, headers: HeaderMap, Query(q): Query<FeedQuery>) -> Response {
    if !sb.authorized(&headers).await {
        return unauthorized();
    }
    let after = q.after.unwrap_or(0);
    let deadline =
        tokio::time::Instant::now() + Duration::from_secs(q.wait.unwrap_or(0)).min(MAX_FEED_WAIT);
    loop {
        let notified = sb.events.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        let list = match sb.store.call(move |s| s.events_after(after, 100)).await {
            Ok(l) => l,
            Err(e) => return internal(e),
        };
        if !list.is_empty() || tokio::time::Instant::now() >= deadline {
            let next = list.last().map(|e| e.seq).unwrap_or(after);
            return Json(json!({
                "events": list.into_iter().map(|e| e.envelope).collect::<Vec<_>>(),
                "next": next,
            }))
            .into_response();
        }
        if tokio::time::timeout_at(deadline, notified).await.is_err() {
            return Json(json!({"events": [], "next": after})).into_response();
        }
    }
}

/// The background worker: PCI data and ingress events when due, start-embossing
/// triggers, scheduled runs per group. Every step is in the database first, so a
/// restart resumes where it stopped.
pub async fn run_worker(sb: Arc<PismoSandbox>, mut stop: watch::Receiver<bool>) {
    let mut tick = tokio::time::interval(Duration::from_millis(50));
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = sb.work.notified() => {}
            _ = stop.wait_for(|s| *s) => return,
        }
        // A pass writes the database, asks the hub and seals card data: blocking work.
        let pass = sb.clone();
        match tokio::task::spawn_blocking(move || bridge::work_once(&pass)).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::error!(code = e.code(), error = %e, "pismo sandbox worker"),
            Err(e) => {
                tracing::error!(code = "PISMO_SANDBOX_INTERNAL", error = %e, "pismo sandbox worker pass ended abnormally")
            }
        }
    }
}
