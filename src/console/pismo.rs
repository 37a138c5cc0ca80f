//! The console's Pismo counter (issue 12): "New card for a customer", the requests
//! in the queue ("Requested at Pismo" until the order arrives), "Make again" for a
//! spoiled card and "Retry" for a request Pismo could not take yet.

use crate::roles::{self, Duty};
use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::{refusal, who, Console};
use crate::job::state::JobState;
use crate::journal::Job;
use crate::pismo::{
    latest_job, may_make_again, overdue_words, run_overdue, CounterRequest, PismoDesk, PismoError,
    RequestStep,
};

/// The routes, merged into the console router.
pub(super) fn routes() -> Router<Console> {
    Router::new()
        .route("/api/pismo", get(settings))
        .route("/api/pismo/requests", get(list).post(new_request))
        .route("/api/pismo/requests/{id}/{action}", post(act))
}

/// One counter request as the console shows it.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RequestView {
    request_id: String,
    customer_id: i64,
    printed_name: String,
    product: Option<String>,
    card_id: Option<i64>,
    step: RequestStep,
    state_label: String,
    message: Option<String>,
    resend_count: i64,
    /// The order this request became, once it reached the station.
    operation_id: Option<String>,
    masked_pan: Option<String>,
    actions: Vec<&'static str>,
}

/// The view of a request given the station's jobs.
pub fn view(
    r: CounterRequest,
    jobs: &[Job],
    issuer_id: &str,
    run_deadline: std::time::Duration,
) -> RequestView {
    let job = latest_job(jobs, &r, issuer_id);
    // A spoiled or cancelled order the request has moved past (Make again was chosen)
    // is history: the request is waiting again for its next order.
    let superseded = job.is_some_and(|j| {
        matches!(j.state, JobState::Spoiled | JobState::Cancelled) && !may_make_again(&r, Some(j))
    });
    let current = if superseded { None } else { job };
    let mut actions = Vec::new();
    if may_make_again(&r, job) {
        actions.push("again");
    }
    if r.step.has_work() && r.message.is_some() {
        actions.push("retry");
    }
    let overdue = run_overdue(&r, job, time::OffsetDateTime::now_utc(), run_deadline);
    if overdue {
        actions.push("retry");
    }
    let state_label = match (current, r.step) {
        (Some(j), RequestStep::Queued | RequestStep::RunStarted) => {
            format!("Order arrived — {}", j.state.label())
        }
        _ => r.step.label().to_string(),
    };
    RequestView {
        operation_id: current.map(|j| j.operation_id.clone()),
        masked_pan: current.and_then(|j| j.masked_pan.clone()),
        request_id: r.request_id,
        customer_id: r.customer_id,
        printed_name: r.printed_name,
        product: r.product,
        card_id: r.card_id,
        step: r.step,
        state_label,
        message: if overdue {
            Some(overdue_words(run_deadline))
        } else {
            r.message
        },
        resend_count: r.resend_count,
        actions,
    }
}

fn desk(c: &Console) -> Result<&Arc<PismoDesk>, Box<Response>> {
    c.pismo.as_ref().ok_or_else(|| {
        Box::new(
            (
                StatusCode::NOT_FOUND,
                Json(json!({"message": "this station has no [pismo] section: Pismo requests are off"})),
            )
                .into_response(),
        )
    })
}

fn pismo_refusal(e: &PismoError) -> Response {
    let status = match e {
        PismoError::Field(_) | PismoError::NotNow(_) => StatusCode::UNPROCESSABLE_ENTITY,
        PismoError::UnknownRequest(_) => StatusCode::NOT_FOUND,
        _ => StatusCode::BAD_GATEWAY,
    };
    (
        status,
        Json(json!({"code": e.code(), "message": e.to_string()})),
    )
        .into_response()
}

async fn settings(State(c): State<Console>, headers: HeaderMap) -> Response {
    if let Err(e) = who(&c, &headers) {
        return refusal(StatusCode::UNAUTHORIZED, &e);
    }
    match c.pismo.as_ref() {
        Some(d) => Json(json!({"enabled": true, "products": d.products()})).into_response(),
        None => Json(json!({"enabled": false, "products": []})).into_response(),
    }
}

async fn jobs_of(c: &Console) -> Vec<Job> {
    c.station
        .journal_thread()
        .call(|j| j.all_jobs(500).unwrap_or_default())
        .await
}

async fn list(State(c): State<Console>, headers: HeaderMap) -> Response {
    if let Err(e) = who(&c, &headers) {
        return refusal(StatusCode::UNAUTHORIZED, &e);
    }
    let d = match desk(&c) {
        Ok(d) => d.clone(),
        Err(r) => return *r,
    };
    let requests = d.store().recent(100).await;
    let jobs = jobs_of(&c).await;
    match requests {
        Ok(list) => Json(
            list.into_iter()
                .map(|r| view(r, &jobs, d.issuer_id(), d.run_deadline()))
                .collect::<Vec<_>>(),
        )
        .into_response(),
        Err(e) => pismo_refusal(&e),
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct NewRequest {
    customer_id: String,
    printed_name: String,
    #[serde(default)]
    product: Option<String>,
}

async fn new_request(
    State(c): State<Console>,
    headers: HeaderMap,
    Json(req): Json<NewRequest>,
) -> Response {
    let member = match who(&c, &headers) {
        Ok(m) => m,
        Err(e) => return refusal(StatusCode::UNAUTHORIZED, &e),
    };
    if let Err(e) = roles::check(member.role, Duty::Issue, "request a new card at Pismo") {
        return super::role_refusal(&e);
    }
    let d = match desk(&c) {
        Ok(d) => d.clone(),
        Err(r) => return *r,
    };
    match d
        .request(
            &req.customer_id,
            &req.printed_name,
            req.product.as_deref(),
            &member.id,
        )
        .await
    {
        Ok(r) => {
            tracing::info!(staff = %member.id, request_id = %r.request_id, "console: Pismo card requested");
            d.spawn_drive(&r.request_id);
            (
                StatusCode::CREATED,
                Json(json!({"message": "Requested at Pismo", "request": view(r, &[], d.issuer_id(), d.run_deadline())})),
            )
                .into_response()
        }
        Err(e) => pismo_refusal(&e),
    }
}

async fn act(
    State(c): State<Console>,
    headers: HeaderMap,
    Path((id, action)): Path<(String, String)>,
) -> Response {
    let member = match who(&c, &headers) {
        Ok(m) => m,
        Err(e) => return refusal(StatusCode::UNAUTHORIZED, &e),
    };
    if let Err(e) = roles::check(
        member.role,
        Duty::MakeAgain,
        "send a card again to Pismo or retry a request",
    ) {
        return super::role_refusal(&e);
    }
    let d = match desk(&c) {
        Ok(d) => d.clone(),
        Err(r) => return *r,
    };
    let r = match action.parse::<CounterAction>() {
        Ok(CounterAction::MakeAgain) => {
            if let Err(r) = attempt_left(&c, &d, &id).await {
                return r;
            }
            d.make_again_spoiled(c.station.journal_thread(), &id, &member.id)
                .await
                .map(|_| "Sent again to Pismo for embossing")
        }
        Ok(CounterAction::Retry) => {
            d.spawn_drive(&id);
            Ok("Trying again")
        }
        Err(e) => Err(e),
    };
    tracing::info!(staff = %member.id, request_id = %id, action = %action, ok = r.is_ok(), "console: Pismo action");
    match r {
        Ok(m) => Json(json!({"message": m})).into_response(),
        Err(e) => pismo_refusal(&e),
    }
}

/// The station's attempt rule for a request's card: the attempts of its newest order
/// plus the resends so far (as for Make again on the order itself).
async fn attempt_left(c: &Console, d: &PismoDesk, id: &str) -> Result<(), Response> {
    let request = match d.store().get(id).await {
        Ok(Some(r)) => r,
        Ok(None) => return Err(pismo_refusal(&PismoError::UnknownRequest(id.to_string()))),
        Err(e) => return Err(pismo_refusal(&e)),
    };
    let jobs = jobs_of(c).await;
    let attempt = latest_job(&jobs, &request, d.issuer_id()).map_or(1, |j| j.attempt);
    c.station
        .attempt_left(super::with_resends(attempt, request.resend_count))
        .map_err(|e| {
            (
                StatusCode::CONFLICT,
                Json(json!({"code": "COUNTER_NO_ATTEMPT_LEFT", "message": e.to_string()})),
            )
                .into_response()
        })
}

/// What staff may do to a counter request from the console.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum CounterAction {
    /// "Make again": resend a spoiled card for embossing (`again`).
    MakeAgain,
    /// "Retry": take an unfinished request further (`retry`).
    Retry,
}

impl std::str::FromStr for CounterAction {
    type Err = PismoError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "again" => Ok(CounterAction::MakeAgain),
            "retry" => Ok(CounterAction::Retry),
            other => Err(PismoError::NotNow(format!("unknown action '{other}'"))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn request(step: RequestStep, at: &str) -> CounterRequest {
        CounterRequest {
            request_id: "r".into(),
            customer_id: 1,
            printed_name: "JANE DOE".into(),
            product: None,
            card_id: Some(100001),
            step,
            message: None,
            resend_count: 0,
            requested_by: "anna".into(),
            created_at: at.into(),
            updated_at: at.into(),
        }
    }

    fn job(state: JobState, at: &str) -> Job {
        Job {
            operation_id: "op".into(),
            issuer_id: "PISMO".into(),
            card_id: "100001".into(),
            perso_station: "S".into(),
            state,
            order_json: serde_json::Value::Null,
            reason: None,
            masked_pan: Some("476173******0010".into()),
            apdu_count: 0,
            seconds: None,
            line: None,
            product: None,
            holder: None,
            attempt: 1,
            created_at: at.into(),
            updated_at: at.into(),
        }
    }

    const EARLY: &str = "2026-11-30T10:00:00Z";
    const LATE: &str = "2026-11-30T10:05:00Z";
    const DAY: Duration = Duration::from_secs(86_400);

    #[test]
    fn a_spoiled_card_offers_make_again() {
        let v = view(
            request(RequestStep::RunStarted, EARLY),
            &[job(JobState::Spoiled, LATE)],
            "PISMO",
            DAY,
        );
        assert_eq!(v.actions, ["again"]);
        assert!(v.state_label.starts_with("Order arrived"));
    }

    #[test]
    fn after_make_again_the_request_shows_waiting_again_not_the_spoiled_order() {
        let v = view(
            request(RequestStep::RunStarted, LATE),
            &[job(JobState::Spoiled, EARLY)],
            "PISMO",
            DAY,
        );
        assert!(v.actions.is_empty());
        assert_eq!(v.operation_id, None);
        assert_eq!(v.state_label, "Requested at Pismo — embossing run started");
    }

    #[test]
    fn an_arrived_order_shows_its_job_state() {
        let v = view(
            request(RequestStep::RunStarted, EARLY),
            &[job(JobState::Ejected, LATE)],
            "PISMO",
            DAY,
        );
        assert_eq!(v.operation_id.as_deref(), Some("op"));
        assert!(v.state_label.starts_with("Order arrived"));
    }
}
