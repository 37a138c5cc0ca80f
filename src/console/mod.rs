//! Staff console (a page at `/`) and the admin API under `/api`.
//!
//! It listens on loopback by default: branch staff use it on the workstation itself.
//! Anything wider needs a reverse proxy with TLS and staff authentication in front.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Serialize;
use serde_json::json;

use crate::job::pipeline::Station;
use crate::job::state::JobState;
use crate::journal::Resolution;

const PAGE: &str = include_str!("index.html");

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

/// Builds the console router over a station.
pub fn router(station: Arc<Station>) -> Router {
    Router::new()
        .route("/", get(|| async { Html(PAGE) }))
        .route("/api/status", get(status))
        .route("/api/jobs", get(jobs))
        .route("/api/jobs/{op}/{action}", post(act))
        .with_state(station)
}

async fn status(State(s): State<Arc<Station>>) -> impl IntoResponse {
    let printer = match s.printer_problem() {
        Some(p) => json!({"name": "Card printer", "ok": false, "message": p}),
        None => json!({"name": "Card printer", "ok": true, "message": "Ready"}),
    };
    let parked = s.journal.parked_count().unwrap_or(0);
    let link = if parked == 0 {
        json!({"name": "Order hub", "ok": true, "message": "Reports up to date"})
    } else {
        json!({"name": "Order hub", "ok": false,
               "message": format!("{parked} report(s) refused by the hub: call IT")})
    };
    Json(json!({
        "persoStation": s.production.station_id,
        "devices": [printer, link],
    }))
}

async fn jobs(State(s): State<Arc<Station>>) -> impl IntoResponse {
    match s.journal.all_jobs(200) {
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
    State(s): State<Arc<Station>>,
    Path((op, action)): Path<(String, String)>,
) -> impl IntoResponse {
    let r = match action.as_str() {
        "start" => s.start(&op),
        "handover" => s.hand_over(&op),
        "cancel" => s.cancel(&op),
        "confirm" => s.resolve(&op, Resolution::Confirm, "console"),
        "spoil" => s.resolve(&op, Resolution::Spoil, "console"),
        _ => Err(format!("unknown action '{action}'")),
    };
    match r {
        Ok(m) => (StatusCode::OK, Json(json!({ "message": m }))),
        Err(m) => (StatusCode::CONFLICT, Json(json!({ "message": m }))),
    }
}
