//! Staff console (a page at `/`) and the admin API under `/api`.
//!
//! Staff sign in with their id and PIN (`staff`); every action is journaled under
//! their id. It listens on loopback by default: branch staff use it on the
//! workstation itself. Anything wider needs TLS: its own certificate (`[console.tls]`,
//! served by [`tls`]) or a reverse proxy with TLS in front (`console.behind_tls_proxy`),
//! and its name in `console.server_names` ([`origin`]).

mod counter;
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
use crate::journal::Job;
use crate::roles::{self, Duty, Role, RoleRefusal};

const PAGE: &str = include_str!("index.html");
/// The page's script, served from the console itself so the policy allows no inline script.
const SCRIPT: &str = include_str!("console.js");
/// The Pismo counter's script (issue 12).
const PISMO_SCRIPT: &str = include_str!("pismo.js");

/// One action a staff member can take on a job.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct Action {
    action: &'static str,
    label: &'static str,
    style: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    confirm: Option<&'static str>,
    /// A second supervisor must sign in to approve (dual control).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    needs_approval: bool,
}

/// Where a card is on its way to the tray, for the queue's progress bar.
#[derive(Debug, Serialize)]
struct Step {
    n: u8,
    of: u8,
}

fn step(state: JobState) -> Option<Step> {
    let n = match state {
        JobState::Feeding => 1,
        JobState::AtChipStation => 2,
        JobState::Personalizing => 3,
        JobState::Verifying => 4,
        JobState::Printing => 5,
        JobState::EncodingStripe => 6,
        JobState::Ejecting => 7,
        JobState::Ejected => 8,
        _ => return None,
    };
    Some(Step { n, of: 8 })
}

/// A job as the console shows it (never card data beyond the masked PAN).
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct JobView {
    operation_id: String,
    card_id: String,
    masked_pan: Option<String>,
    holder: Option<String>,
    product: Option<String>,
    created_at: String,
    step: Option<Step>,
    attempt: u32,
    attempts: u32,
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

/// Which duty an action needs.
fn duty(action: StaffAction) -> (Duty, &'static str) {
    match action {
        StaffAction::Start | StaffAction::HandOver | StaffAction::Cancel => {
            (Duty::Issue, "start, hand over or cancel cards")
        }
        StaffAction::MakeAgain | StaffAction::GiveUp => {
            (Duty::MakeAgain, "make a card again or give up on it")
        }
        StaffAction::Resolve(_) => (Duty::ResolveInDoubt, "confirm or spoil a card in doubt"),
        StaffAction::CardRemoved => (
            Duty::ResolveInDoubt,
            "record a card stuck in the printer as removed",
        ),
    }
}

/// Whether the action destroys a card whose chip may hold live card data.
fn spoils_a_card(action: StaffAction) -> bool {
    matches!(
        action,
        StaffAction::MakeAgain
            | StaffAction::GiveUp
            | StaffAction::CardRemoved
            | StaffAction::Resolve(crate::journal::Resolution::Spoil)
    )
}

/// What `role` may do to `job` (`chip_written`: dual control applies to spoils).
/// `attempt_left`: the station's attempt rule allows another attempt at this card.
fn actions(job: &Job, role: Role, attempt_left: bool, chip_written: bool) -> Vec<Action> {
    all_actions(job, attempt_left)
        .into_iter()
        .filter(|a| {
            a.action
                .parse::<StaffAction>()
                .is_ok_and(|sa| role.may(duty(sa).0))
        })
        .map(|mut a| {
            a.needs_approval =
                chip_written && a.action.parse::<StaffAction>().is_ok_and(spoils_a_card);
            a
        })
        .collect()
}

fn all_actions(job: &Job, attempt_left: bool) -> Vec<Action> {
    let a = |action, label, style, confirm| Action {
        action,
        label,
        style,
        confirm,
        needs_approval: false,
    };
    match job.state {
        JobState::Rejected => {
            let mut v = Vec::new();
            if attempt_left {
                v.push(a(
                    "make-again",
                    "Make again",
                    "primary",
                    Some("Put the card from the reject box in the spoiled box, then make this card again on a new blank?"),
                ));
            }
            v.push(a(
                "give-up",
                "Give up",
                "danger",
                Some("Put the card from the reject box in the spoiled box and report this card as not produced?"),
            ));
            v
        }
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
        JobState::AwaitingRemoval => vec![a(
            "removed",
            "Card removed",
            "danger",
            Some("Did you take the card out of the printer and put it in the spoiled box?"),
        )],
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
        JobState::AwaitingRemoval => Some(
            "The printer could not reject this card: open it, take the card out, then press Card removed."
                .into(),
        ),
        JobState::Rejected => Some(
            "Put the card from the reject box in the spoiled box, then make it again or give up."
                .into(),
        ),
        _ => None,
    }
}

/// The reason in plain words: without the leading error code (`PRN_MAG_WRITE: …`).
fn plain_reason(reason: &str) -> String {
    match reason.split_once(": ") {
        Some((code, rest))
            if !code.is_empty()
                && code
                    .bytes()
                    .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'_') =>
        {
            rest.to_string()
        }
        _ => reason.to_string(),
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
        .route("/api/stock", get(counter::stock).post(counter::load_stock))
        .route("/api/reports/reconciliation", get(counter::reconciliation))
        .route("/api/audit", get(counter::audit))
        .route("/api/staff", get(staff_list))
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
            // Explicitly configured, loopback only: the workstation's own user decides;
            // dual control still needs signed-in staff.
            role: crate::roles::Role::Supervisor,
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

/// How staff accounts are changed, for the admin's page: not from the console (see
/// [`staff_list`]).
const STAFF_MANAGED_WITH: &str = "Accounts are added, given a role or removed by IT on the workstation with \
`station-agent staff add ID --name NAME --role ROLE` (the PIN is typed by the member), `staff remove ID` and \
`staff list`; a change takes effect here within a second.";

/// The staff accounts, for the admin role: read-only. Accounts are changed with the
/// command line on the workstation, not here: a new PIN is then typed by its member
/// and never crosses the network, and a console session (one admin alone) cannot make
/// the second supervisor that dual control relies on.
async fn staff_list(State(c): State<Console>, headers: HeaderMap) -> Response {
    let member = match who(&c, &headers) {
        Ok(m) => m,
        Err(e) => return refusal(StatusCode::UNAUTHORIZED, &e),
    };
    if let Err(e) = roles::check(member.role, Duty::ManageStaff, "see the staff accounts") {
        return role_refusal(&e);
    }
    match c.access.as_ref() {
        Access::Staff(desk) => Json(json!({
            "accounts": desk.roster(),
            "managedWith": STAFF_MANAGED_WITH,
        }))
        .into_response(),
        Access::Anonymous => (
            StatusCode::NOT_FOUND,
            Json(json!({"message": "this console has no staff sign-in"})),
        )
            .into_response(),
    }
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
    devices.extend(s.tasks_down().into_iter().map(|(task, why)| {
        json!({"name": format!("Agent {task}"), "ok": false,
               "message": format!("Stopped ({why}): restart the station agent and call IT")})
    }));
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
    let member = match who(&c, &headers) {
        Ok(m) => m,
        Err(e) => return refusal(StatusCode::UNAUTHORIZED, &e),
    };
    let attempts = c.station.counter.attempts;
    let listed = c.station.journal_thread().call(|j| j.queue(200)).await;
    let resends = pismo_resends(&c).await;
    match listed {
        Ok(list) => Json(
            list.into_iter()
                .map(|(j, chip_written)| (attempts_made(&c, &resends, &j), j, chip_written))
                .map(|(made, j, chip_written)| JobView {
                    actions: actions(
                        &j,
                        member.role,
                        c.station.attempt_left(made).is_ok(),
                        chip_written,
                    ),
                    hint: hint(j.state),
                    state_label: j.state.label(),
                    step: step(j.state),
                    operation_id: j.operation_id,
                    card_id: j.card_id,
                    masked_pan: j.masked_pan,
                    holder: j.holder,
                    product: j.product,
                    created_at: j.created_at,
                    attempt: made,
                    attempts,
                    state: j.state,
                    reason: j.reason.as_deref().map(plain_reason),
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

/// Resends so far of the newest counter request of each Pismo card (one read per
/// poll; empty without a Pismo desk or when the requests cannot be read — Make again
/// itself checks again).
async fn pismo_resends(c: &Console) -> std::collections::HashMap<i64, i64> {
    let mut resends = std::collections::HashMap::new();
    let Some(desk) = c.pismo.as_ref() else {
        return resends;
    };
    // Newest first: the first request seen for a card is its newest.
    for r in desk.store().recent(500).await.unwrap_or_default() {
        if let Some(card) = r.card_id {
            resends.entry(card).or_insert(r.resend_count);
        }
    }
    resends
}

/// Attempts made at a job's card: its own, plus the resends of its Pismo request when it
/// is a Pismo order (each resend made the card again as a new order).
fn attempts_made(c: &Console, resends: &std::collections::HashMap<i64, i64>, job: &Job) -> u32 {
    let resent = c
        .pismo
        .as_ref()
        .filter(|d| job.issuer_id == d.issuer_id())
        .and_then(|_| job.card_id.parse::<i64>().ok())
        .and_then(|card| resends.get(&card).copied())
        .unwrap_or(0);
    with_resends(job.attempt, resent)
}

/// A job's own attempts plus its Pismo request's resends.
fn with_resends(attempt: u32, resends: i64) -> u32 {
    attempt.saturating_add(u32::try_from(resends.max(0)).unwrap_or(u32::MAX))
}

/// Why Make again through Pismo did not happen (nothing was given up or resent).
#[derive(Debug, thiserror::Error)]
enum PismoAgainError {
    /// The station refused (not in the reject box, no attempt left, journal).
    #[error(transparent)]
    Station(#[from] crate::job::pipeline::ActionRefused),
    /// The request could not be sent again.
    #[error(transparent)]
    Pismo(#[from] crate::pismo::PismoError),
}

impl From<crate::journal::JournalError> for PismoAgainError {
    fn from(e: crate::journal::JournalError) -> Self {
        PismoAgainError::Station(e.into())
    }
}

fn unavailable(what: &str, code: &str, e: impl std::fmt::Display) -> Response {
    (
        StatusCode::SERVICE_UNAVAILABLE,
        Json(json!({"code": code, "message": format!("{what} unavailable: {e}; nothing was changed, try again or call IT")})),
    )
        .into_response()
}

/// Make again for a card whose order came from a Pismo counter request: the order is
/// given up (reported, so the hub takes a new one for the card) and the card is resent
/// to Pismo for embossing, both in one journal write, so neither happens alone; the
/// resend call itself is then driven (and retried) from the journaled step. `None` when
/// the order is not a Pismo request's (another issuer, or no request for its card):
/// the station's own Make again applies.
async fn make_again_through_pismo(
    c: &Console,
    op: &str,
    by: &str,
    approver: Option<&str>,
) -> Option<Response> {
    let desk = c.pismo.as_ref()?;
    let o = op.to_string();
    let job = match c.station.journal_thread().call(move |j| j.job(&o)).await {
        Ok(Some(job)) => job,
        // The station's answer ("No such card") applies.
        Ok(None) => return None,
        Err(e) => return Some(unavailable("journal", e.code(), e)),
    };
    if job.issuer_id != desk.issuer_id() {
        return None;
    }
    let Ok(card) = job.card_id.parse::<i64>().map(crate::pismo::PismoCardId) else {
        return None;
    };
    let request = match desk.request_for_card(card).await {
        Ok(Some(r)) => r,
        Ok(None) => return None,
        Err(e) => return Some(unavailable("Pismo requests", e.code(), e)),
    };
    let jobs = match c.station.journal_thread().call(|j| j.all_jobs(500)).await {
        Ok(jobs) => jobs,
        Err(e) => return Some(unavailable("journal", e.code(), e)),
    };
    if let Err(why) = crate::pismo::order_of_request(&request, &job, &jobs) {
        tracing::info!(staff = %by, operation_id = %op, request_id = %request.request_id, "console: make again through Pismo refused: {why}");
        return Some(
            (
                StatusCode::CONFLICT,
                Json(json!({"code": "PISMO_NOT_THIS_ORDER", "message": why})),
            )
                .into_response(),
        );
    }
    let made = with_resends(job.attempt, request.resend_count);
    let (s, o, b, ap, id) = (
        c.station.clone(),
        op.to_string(),
        by.to_string(),
        approver.map(str::to_string),
        request.request_id.clone(),
    );
    let done = tokio::task::spawn_blocking(move || {
        s.attempt_left(made)?;
        s.give_up_with(&o, &b, ap.as_deref(), |tx| {
            crate::pismo::store::begin_resend_in(tx, &id, card, &b).map_err(PismoAgainError::from)
        })
    })
    .await;
    tracing::info!(staff = %by, operation_id = %op, request_id = %request.request_id, ok = matches!(done, Ok(Ok(_))), "console: make again through Pismo");
    Some(match done {
        Ok(Ok(_)) => {
            desk.changed.notify_waiters();
            desk.spawn_drive(&request.request_id);
            Json(json!({"message": "Sent again to Pismo for embossing: the card comes back as a new order."}))
                .into_response()
        }
        Ok(Err(PismoAgainError::Pismo(e))) => (
            StatusCode::CONFLICT,
            Json(json!({"code": e.code(), "message": format!("Not sent again to Pismo, nothing given up: {e}")})),
        )
            .into_response(),
        Ok(Err(PismoAgainError::Station(e))) => {
            (StatusCode::CONFLICT, Json(json!({ "message": e.to_string() }))).into_response()
        }
        Err(e) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            Json(json!({ "message": format!("the action did not complete: {e}") })),
        )
            .into_response(),
    })
}

/// A second supervisor's id and PIN, sent with a spoil under dual control.
#[derive(Deserialize, zeroize::Zeroize, zeroize::ZeroizeOnDrop)]
#[serde(deny_unknown_fields)]
struct Approval {
    staff: String,
    pin: String,
}

/// The body of an action: empty, or an approval.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct ActBody {
    #[serde(default)]
    approver: Option<Approval>,
}

fn role_refusal(e: &RoleRefusal) -> Response {
    (
        StatusCode::FORBIDDEN,
        Json(json!({"code": e.code(), "message": e.to_string()})),
    )
        .into_response()
}

/// Checks the approver's id and PIN (a sign-in that opens no session: the lockout
/// after wrong PINs applies as for any sign-in) and that they may approve.
async fn approve(c: &Console, actor: &str, approval: Option<Approval>) -> Result<String, Response> {
    let Some(approval) = approval else {
        return Err(role_refusal(&RoleRefusal::ApprovalNeeded));
    };
    // The desk's own sign-in: lockout, check slots and Argon2 off the async workers.
    let checked = match c.access.as_ref() {
        Access::Staff(desk) => desk
            .sign_in(&approval.staff, &approval.pin)
            .await
            .map(|(t, m)| {
                desk.sign_out(&t);
                m
            }),
        Access::Anonymous => Err(StaffError::NotSignedIn),
    };
    let approver = match checked {
        Ok(m) => m,
        Err(e @ StaffError::Locked { .. }) => {
            return Err(refusal(StatusCode::TOO_MANY_REQUESTS, &e))
        }
        Err(e) => return Err(refusal(StatusCode::FORBIDDEN, &e)),
    };
    roles::check_approver(actor, Some((&approver.id, approver.role)))
        .map(|a| a.unwrap_or_default())
        .map_err(|e| role_refusal(&e))
}

async fn act(
    State(c): State<Console>,
    headers: HeaderMap,
    Path((op, action)): Path<(String, String)>,
    body: axum::body::Bytes,
) -> Response {
    let member = match who(&c, &headers) {
        Ok(m) => m,
        Err(e) => return refusal(StatusCode::UNAUTHORIZED, &e),
    };
    let by = member.id.clone();
    let a = match action.parse::<StaffAction>() {
        Ok(a) => a,
        Err(e) => {
            return (
                StatusCode::NOT_FOUND,
                Json(json!({ "message": e.to_string() })),
            )
                .into_response()
        }
    };
    let body: ActBody = if body.is_empty() {
        ActBody::default()
    } else {
        match serde_json::from_slice(&body) {
            Ok(b) => b,
            Err(e) => {
                return (
                    StatusCode::BAD_REQUEST,
                    Json(json!({ "message": format!("request body: {e}") })),
                )
                    .into_response()
            }
        }
    };
    let (needed, what) = duty(a);
    if let Err(e) = roles::check(member.role, needed, what) {
        return role_refusal(&e);
    }
    let o = op.clone();
    let chip_written = c
        .station
        .journal_thread()
        .call(move |j| j.chip_written(&o))
        .await
        .unwrap_or(true);
    let approver = if spoils_a_card(a) && chip_written {
        let ActBody { approver } = body;
        match approve(&c, &by, approver).await {
            Ok(id) => Some(id),
            Err(r) => {
                tracing::info!(staff = %by, operation_id = %op, action = %action, "console action refused: approval");
                return r;
            }
        }
    } else {
        None
    };
    if a == StaffAction::MakeAgain {
        if let Some(r) = make_again_through_pismo(&c, &op, &by, approver.as_deref()).await {
            return r;
        }
    }
    // Journal writes: on the blocking pool, not on a tokio worker.
    let (s, o, b, ap) = (c.station.clone(), op.clone(), by.clone(), approver.clone());
    let r: Result<&'static str, String> =
        match tokio::task::spawn_blocking(move || s.act_approved(&o, a, &b, ap.as_deref())).await {
            Ok(r) => r.map_err(|e| e.to_string()),
            Err(e) => Err(format!("the action did not complete: {e}")),
        };
    tracing::info!(staff = %by, approver = ?approver, operation_id = %op, action = %action, ok = r.is_ok(), "console action");
    match r {
        Ok(m) => (StatusCode::OK, Json(json!({ "message": m }))).into_response(),
        Err(m) => (StatusCode::CONFLICT, Json(json!({ "message": m }))).into_response(),
    }
}
