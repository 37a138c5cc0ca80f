//! Staff console (a page at `/`) and the admin API under `/api`.
//!
//! Staff sign in with their id and PIN (`staff`); every action is journaled under
//! their id. It listens on loopback by default: branch staff use it on the
//! workstation itself. Anything wider needs TLS: its own certificate (`[console.tls]`,
//! served by [`tls`]) or a reverse proxy with TLS in front (`console.behind_tls_proxy`),
//! and its name in `console.server_names` ([`origin`]).

pub mod lockout;
pub mod origin;
pub mod pismo;
pub mod staff;
pub mod tls;

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use serde_json::json;

use staff::{StaffDesk, StaffError, StaffMember};

use crate::job::pipeline::StaffAction;
use crate::job::pipeline::Station;
use crate::journal::state::JobState;

const PAGE: &str = include_str!("index.html");
/// The page's script, served from the console itself so the policy allows no inline script.
const SCRIPT: &str = include_str!("console.js");
/// The Pismo counter's script (issue 12).
const PISMO_SCRIPT: &str = include_str!("pismo.js");

/// One action a staff member can take on a job.
#[derive(Debug, Serialize)]
struct Action {
    action: &'static str,
    label: &'static str,
    style: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    confirm: Option<&'static str>,
}

/// A job as the console shows it (never card data beyond the masked PAN).
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct JobView {
    operation_id: String,
    card_id: String,
    masked_pan: Option<String>,
    state: JobState,
    state_label: &'static str,
    hint: Option<String>,
    reason: Option<String>,
    seconds: Option<f64>,
    apdu_count: u32,
    line: Option<String>,
    updated_at: String,
    actions: Vec<Action>,
}

fn actions(state: JobState) -> Vec<Action> {
    let a = |action, label, style, confirm| Action {
        action,
        label,
        style,
        confirm,
    };
    match state {
        JobState::WaitingForStaff => vec![
            a("start", "Start", "primary", None),
            a("cancel", "Cancel", "", Some("Cancel this card order?")),
        ],
        JobState::Received | JobState::Validated => {
            vec![a("cancel", "Cancel", "", Some("Cancel this card order?"))]
        }
        JobState::Ejected => vec![a("handover", "Handed over", "primary", None)],
        JobState::InDoubt => vec![
            a(
                "confirm",
                "Card is good",
                "primary",
                Some("Is the card in the output tray, printed and complete?"),
            ),
            a(
                "spoil",
                "Spoil card",
                "danger",
                Some("Put the card in the spoiled box and record it as spoiled?"),
            ),
        ],
        _ => vec![],
    }
}

fn hint(state: JobState) -> Option<String> {
    match state {
        JobState::WaitingForStaff => Some("Start when the customer is at the counter.".into()),
        JobState::Ejected => Some("Check the card and hand it over.".into()),
        JobState::InDoubt => Some(
            "The agent restarted during this card: look in the printer and output tray.".into(),
        ),
        JobState::Spoiled => Some("Put the card from the reject box in the spoiled box.".into()),
        _ => None,
    }
}

/// Who may act on the console.
pub enum Access {
    /// Staff sign in with id and PIN; actions carry their id.
    Staff(StaffDesk),
    /// No sign-in (explicitly configured, loopback only): actions carry "console".
    Anonymous,
}

#[derive(Clone)]
struct Console {
    station: Arc<Station>,
    access: Arc<Access>,
    pismo: Option<Arc<crate::pismo::PismoDesk>>,
}

/// Builds the console router over a station; it answers only to loopback names and `names`.
pub fn router(station: Arc<Station>, access: Access, names: origin::ServerNames) -> Router {
    router_with_pismo(station, access, names, None)
}

/// The console router, with the Pismo counter when the station has a `[pismo]` section.
pub fn router_with_pismo(
    station: Arc<Station>,
    access: Access,
    names: origin::ServerNames,
    pismo: Option<Arc<crate::pismo::PismoDesk>>,
) -> Router {
    Router::new()
        .merge(pismo::routes())
        .route(
            "/pismo.js",
            get(|| async {
                (
                    [(header::CONTENT_TYPE, "text/javascript; charset=utf-8")],
                    PISMO_SCRIPT,
                )
            }),
        )
        .route("/", get(|| async { Html(PAGE) }))
        .route(
            "/console.js",
            get(|| async {
                (
                    [(header::CONTENT_TYPE, "text/javascript; charset=utf-8")],
                    SCRIPT,
                )
            }),
        )
        .route("/api/session", get(session).delete(sign_out))
        .route("/api/session", post(sign_in))
        .route("/api/status", get(status))
        .route("/api/jobs", get(jobs))
        .route("/api/jobs/{op}/{action}", post(act))
        .layer(axum::middleware::map_response(guard_headers))
        .layer(axum::middleware::from_fn_with_state(names, origin::check))
        .with_state(Console {
            station,
            access: Arc::new(access),
            pismo,
        })
}

/// The page may not be framed by another site (a click on "Spoil card" must be the
/// member's own), nothing it shows is cached, and it loads nothing from elsewhere.
async fn guard_headers(mut r: Response) -> Response {
    let h = r.headers_mut();
    let set = |h: &mut HeaderMap, name: header::HeaderName, value: &'static str| {
        h.insert(name, header::HeaderValue::from_static(value));
    };
    set(h, header::X_FRAME_OPTIONS, "DENY");
    set(
        h,
        header::CONTENT_SECURITY_POLICY,
        "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; frame-ancestors 'none'",
    );
    set(h, header::CACHE_CONTROL, "no-store");
    set(h, header::REFERRER_POLICY, "no-referrer");
    set(h, header::X_CONTENT_TYPE_OPTIONS, "nosniff");
    r
}

fn refusal(status: StatusCode, e: &StaffError) -> Response {
    (
        status,
        Json(json!({"code": e.code(), "message": e.to_string()})),
    )
        .into_response()
}

fn bearer(headers: &HeaderMap) -> Option<&str> {
    headers
        .get(header::AUTHORIZATION)?
        .to_str()
        .ok()?
        .strip_prefix("Bearer ")
}

/// The signed-in member (a fixed "console" member when there is no sign-in).
fn who(c: &Console, headers: &HeaderMap) -> Result<StaffMember, StaffError> {
    match c.access.as_ref() {
        Access::Anonymous => Ok(StaffMember {
            id: "console".into(),
            name: "Console".into(),
        }),
        Access::Staff(desk) => bearer(headers)
            .ok_or(StaffError::NotSignedIn)
            .and_then(|t| desk.member(t)),
    }
}

#[derive(Deserialize, zeroize::Zeroize, zeroize::ZeroizeOnDrop)]
#[serde(deny_unknown_fields)]
struct SignIn {
    staff: String,
    pin: String,
}

/// Whether sign-in is needed, and who is signed in with this token.
async fn session(State(c): State<Console>, headers: HeaderMap) -> Response {
    let needed = matches!(c.access.as_ref(), Access::Staff(_));
    let member = who(&c, &headers).ok();
    Json(json!({"signInRequired": needed, "member": member})).into_response()
}

async fn sign_in(State(c): State<Console>, Json(req): Json<SignIn>) -> Response {
    if !matches!(c.access.as_ref(), Access::Staff(_)) {
        return (
            StatusCode::NOT_FOUND,
            Json(json!({"message": "this console has no staff sign-in"})),
        )
            .into_response();
    }
    let attempt = match c.access.as_ref() {
        Access::Staff(desk) => desk.sign_in(&req.staff, &req.pin).await,
        Access::Anonymous => Err(StaffError::NotSignedIn),
    };
    match attempt {
        Ok((token, member)) => {
            Json(json!({"token": token.as_str(), "member": member})).into_response()
        }
        Err(e @ (StaffError::Locked { .. } | StaffError::Busy)) => {
            refusal(StatusCode::TOO_MANY_REQUESTS, &e)
        }
        Err(e) => refusal(StatusCode::UNAUTHORIZED, &e),
    }
}

async fn sign_out(State(c): State<Console>, headers: HeaderMap) -> Response {
    if let (Access::Staff(desk), Some(token)) = (c.access.as_ref(), bearer(&headers)) {
        desk.sign_out(token);
    }
    StatusCode::NO_CONTENT.into_response()
}

async fn status(State(c): State<Console>, headers: HeaderMap) -> Response {
    if let Err(e) = who(&c, &headers) {
        return refusal(StatusCode::UNAUTHORIZED, &e);
    }
    let s = &c.station;
    let mut devices: Vec<serde_json::Value> = s
        .lines()
        .into_iter()
        .map(|(line, problem)| {
            let name = format!("Card printer {line}");
            match problem {
                Some(p) => json!({"name": name, "ok": false, "message": p}),
                None => json!({"name": name, "ok": true, "message": "Ready"}),
            }
        })
        .collect();
    let parked = s
        .journal_thread()
        .call(|j| j.parked_count())
        .await
        .unwrap_or(0);
    let link = if parked == 0 {
        json!({"name": "Order hub", "ok": true, "message": "Reports up to date"})
    } else {
        json!({"name": "Order hub", "ok": false,
               "message": format!("{parked} report(s) refused by the hub: call IT")})
    };
    devices.push(link);
    Json(json!({
        "persoStation": s.production.station_id,
        "devices": devices,
    }))
    .into_response()
}

async fn jobs(State(c): State<Console>, headers: HeaderMap) -> Response {
    if let Err(e) = who(&c, &headers) {
        return refusal(StatusCode::UNAUTHORIZED, &e);
    }
    match c.station.journal_thread().call(|j| j.all_jobs(200)).await {
        Ok(list) => Json(
            list.into_iter()
                .map(|j| JobView {
                    actions: actions(j.state),
                    hint: hint(j.state),
                    state_label: j.state.label(),
                    operation_id: j.operation_id,
                    card_id: j.card_id,
                    masked_pan: j.masked_pan,
                    state: j.state,
                    reason: j.reason,
                    seconds: j.seconds,
                    apdu_count: j.apdu_count,
                    line: j.line,
                    updated_at: j.updated_at,
                })
                .collect::<Vec<_>>(),
        )
        .into_response(),
        Err(e) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            Json(json!({"message": format!("journal unavailable: {e}")})),
        )
            .into_response(),
    }
}

async fn act(
    State(c): State<Console>,
    headers: HeaderMap,
    Path((op, action)): Path<(String, String)>,
) -> Response {
    let member = match who(&c, &headers) {
        Ok(m) => m,
        Err(e) => return refusal(StatusCode::UNAUTHORIZED, &e),
    };
    let by = member.id.clone();
    let r: Result<&'static str, String> = match action.parse::<StaffAction>() {
        // One durable journal write: on the blocking pool, not on a tokio worker.
        Ok(a) => {
            let (s, op, by) = (c.station.clone(), op.clone(), by.clone());
            match tokio::task::spawn_blocking(move || s.act(&op, a, &by)).await {
                Ok(r) => r.map_err(|e| e.to_string()),
                Err(e) => Err(format!("the action did not complete: {e}")),
            }
        }
        Err(e) => Err(e.to_string()),
    };
    tracing::info!(staff = %by, operation_id = %op, action = %action, ok = r.is_ok(), "console action");
    match r {
        Ok(m) => (StatusCode::OK, Json(json!({ "message": m }))).into_response(),
        Err(m) => (StatusCode::CONFLICT, Json(json!({ "message": m }))).into_response(),
    }
}
