//! The console's counter pages: stock (read, and loading blanks for supervisors), the
//! end-of-day reconciliation as a CSV download, and the audit export as JSON lines for
//! auditors — the same reports the command line prints.

use axum::extract::{Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use serde_json::json;

use super::{refusal, role_refusal, who, Console};
use crate::reconciliation::{day_bounds, parse_day};
use crate::roles::{self, Duty};
use crate::staff::Role;

/// The member may do `duty`, or the refusal to send.
fn allowed(
    c: &Console,
    headers: &HeaderMap,
    duty: Duty,
    what: &'static str,
) -> Result<(String, Role), Box<Response>> {
    let member = who(c, headers).map_err(|e| Box::new(refusal(StatusCode::UNAUTHORIZED, &e)))?;
    roles::check(member.role, duty, what).map_err(|e| Box::new(role_refusal(&e)))?;
    Ok((member.id, member.role))
}

fn bad_request(message: impl std::fmt::Display) -> Response {
    (
        StatusCode::BAD_REQUEST,
        Json(json!({ "message": message.to_string() })),
    )
        .into_response()
}

fn unavailable(e: impl std::fmt::Display) -> Response {
    (
        StatusCode::INTERNAL_SERVER_ERROR,
        Json(json!({"message": format!("journal unavailable: {e}")})),
    )
        .into_response()
}

/// Stock per product, with the warning threshold applied.
pub(super) async fn stock(State(c): State<Console>, headers: HeaderMap) -> Response {
    if let Err(r) = allowed(&c, &headers, Duty::ReadReports, "read the stock") {
        return *r;
    }
    let policy = c.station.counter.stock.clone();
    match c
        .station
        .journal_thread()
        .call(move |j| crate::stock::levels(j, &policy))
        .await
    {
        Ok(levels) => Json(json!({
            "warnBelow": c.station.counter.stock.warn_below,
            "products": levels,
        }))
        .into_response(),
        Err(e) => unavailable(e),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct Load {
    product: String,
    count: u32,
    batch: String,
}

/// A supervisor records blanks loaded.
pub(super) async fn load_stock(
    State(c): State<Console>,
    headers: HeaderMap,
    Json(load): Json<Load>,
) -> Response {
    let (by, _) = match allowed(&c, &headers, Duty::LoadStock, "record blanks loaded") {
        Ok(m) => m,
        Err(r) => return *r,
    };
    let actor = by.clone();
    let r = c
        .station
        .journal_thread()
        .call(move |j| crate::stock::load(j, &load.product, load.count, &load.batch, &actor))
        .await;
    match r {
        Ok(l) => {
            tracing::info!(staff = %by, product = %l.product, count = l.count, "stock loaded");
            Json(json!({"message": format!("{} blank(s) of {} recorded.", l.count, l.product)}))
                .into_response()
        }
        Err(e @ crate::stock::StockError::Journal(_)) => unavailable(e),
        Err(e) => (
            StatusCode::UNPROCESSABLE_ENTITY,
            Json(json!({"code": e.code(), "message": e.to_string()})),
        )
            .into_response(),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct Period {
    day: Option<String>,
    from: Option<String>,
    to: Option<String>,
}

/// The reconciliation of `?day=YYYY-MM-DD` as a CSV download.
pub(super) async fn reconciliation(
    State(c): State<Console>,
    headers: HeaderMap,
    Query(p): Query<Period>,
) -> Response {
    if let Err(r) = allowed(&c, &headers, Duty::ReadReports, "read the reconciliation") {
        return *r;
    }
    let Some(day) = p.day.as_deref() else {
        return bad_request("day: a date as YYYY-MM-DD");
    };
    let day = match parse_day(day) {
        Ok(d) => d,
        Err(e) => return bad_request(e),
    };
    match c
        .station
        .journal_thread()
        .call(move |j| crate::reconciliation::reconcile(j, day))
        .await
    {
        Ok(r) => (
            [
                (header::CONTENT_TYPE, "text/csv; charset=utf-8".to_string()),
                (
                    header::CONTENT_DISPOSITION,
                    format!("attachment; filename=\"reconciliation-{day}.csv\""),
                ),
            ],
            r.to_csv(),
        )
            .into_response(),
        Err(e) => unavailable(e),
    }
}

/// The audit of `?day=` or `?from=&to=` (days, `to` included) as JSON lines, for auditors.
pub(super) async fn audit(
    State(c): State<Console>,
    headers: HeaderMap,
    Query(p): Query<Period>,
) -> Response {
    if let Err(r) = allowed(&c, &headers, Duty::ReadAudit, "export the audit") {
        return *r;
    }
    let (from, until, name) = match period(&p) {
        Ok(b) => b,
        Err(r) => return r,
    };
    match c
        .station
        .journal_thread()
        .call(move |j| crate::audit::lines(j, &from, &until))
        .await
    {
        Ok(lines) => (
            [
                (header::CONTENT_TYPE, "application/x-ndjson".to_string()),
                (
                    header::CONTENT_DISPOSITION,
                    format!("attachment; filename=\"audit-{name}.jsonl\""),
                ),
            ],
            crate::audit::to_json_lines(&lines),
        )
            .into_response(),
        Err(e) => unavailable(e),
    }
}

/// `[from, until)` bounds and a file-name tag from `day`, or `from` and `to` (days).
#[allow(clippy::result_large_err)]
fn period(p: &Period) -> Result<(String, String, String), Response> {
    match (&p.day, &p.from, &p.to) {
        (Some(d), None, None) => {
            let day = parse_day(d).map_err(bad_request)?;
            let (f, u) = day_bounds(day);
            Ok((f, u, day.to_string()))
        }
        (None, Some(f), Some(t)) => {
            let from = parse_day(f).map_err(bad_request)?;
            let to = parse_day(t).map_err(bad_request)?;
            if to < from {
                return Err(bad_request("to: a day on or after from"));
            }
            Ok((
                day_bounds(from).0,
                day_bounds(to).1,
                format!("{from}-to-{to}"),
            ))
        }
        _ => Err(bad_request(
            "give day=YYYY-MM-DD, or from=YYYY-MM-DD and to=YYYY-MM-DD",
        )),
    }
}
