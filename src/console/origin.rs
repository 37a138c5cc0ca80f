//! Which requests the console answers: a defence against DNS rebinding and cross-site requests.
//!
//! A page on any web site can make the branch browser send requests to `127.0.0.1:8470`; if
//! its own host name resolves to 127.0.0.1 (DNS rebinding), the browser even lets it read the
//! answers. Such requests carry the attacker's name in `Host`, and cross-site ones an
//! `Origin` that is not the console's own, so both headers are checked before any handler.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{header, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;

/// Host names (with optional `:port`) the console answers to besides loopback ones.
#[derive(Debug, Clone, Default)]
pub struct ServerNames(Arc<Vec<String>>);

impl ServerNames {
    /// Loopback names only (`127.0.0.1`, `[::1]`, `localhost`).
    pub fn loopback() -> Self {
        Self::default()
    }

    /// Loopback names and the configured `console.server_names`.
    pub fn with(names: &[String]) -> Self {
        ServerNames(Arc::new(
            names
                .iter()
                .map(|n| n.trim().to_ascii_lowercase())
                .collect(),
        ))
    }

    /// Whether a `Host` header value names this console.
    pub fn allows(&self, host: &str) -> bool {
        let host = host.trim().to_ascii_lowercase();
        let name = host_name(&host);
        name == "localhost"
            || name
                .parse::<std::net::IpAddr>()
                .is_ok_and(|ip| ip.is_loopback())
            || self.0.iter().any(|n| *n == host || n == name)
    }
}

/// `example:8470` → `example`; `[::1]:8470` → `::1`.
fn host_name(host: &str) -> &str {
    match host.strip_prefix('[') {
        Some(v6) => v6.split(']').next().unwrap_or_default(),
        None => host.rsplit_once(':').map_or(host, |(h, _)| h),
    }
}

fn refuse(status: StatusCode, code: &str, words: &str) -> Response {
    (status, Json(json!({ "error": code, "message": words }))).into_response()
}

/// Middleware: 421 for a foreign `Host`; 403 for a state-changing request whose `Origin` is
/// not the console itself or whose body is not declared JSON.
pub async fn check(State(names): State<ServerNames>, request: Request, next: Next) -> Response {
    let headers = request.headers();
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or_default()
        .to_string();
    if !names.allows(&host) {
        return refuse(
            StatusCode::MISDIRECTED_REQUEST,
            "HOST_NOT_ALLOWED",
            "This console does not answer to that host name.",
        );
    }
    let changes_state = !matches!(*request.method(), Method::GET | Method::HEAD);
    if changes_state {
        let origin = headers.get(header::ORIGIN).and_then(|o| o.to_str().ok());
        let same_origin = origin.is_some_and(|o| {
            let o = o.to_ascii_lowercase();
            let h = host.to_ascii_lowercase();
            o == format!("http://{h}") || o == format!("https://{h}")
        });
        if !same_origin {
            return refuse(
                StatusCode::FORBIDDEN,
                "ORIGIN_NOT_ALLOWED",
                "Actions are accepted only from the console page itself.",
            );
        }
        let json_body = headers
            .get(header::CONTENT_TYPE)
            .and_then(|c| c.to_str().ok())
            .is_some_and(|c| {
                c.split(';')
                    .next()
                    .is_some_and(|m| m.trim().eq_ignore_ascii_case("application/json"))
            });
        if *request.method() == Method::POST && !json_body {
            return refuse(
                StatusCode::FORBIDDEN,
                "CONTENT_TYPE_NOT_ALLOWED",
                "Actions must be sent as application/json.",
            );
        }
    }
    next.run(request).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_hosts_are_allowed_on_any_port() {
        let n = ServerNames::loopback();
        for h in [
            "127.0.0.1:8470",
            "localhost:8470",
            "[::1]:8470",
            "LOCALHOST",
        ] {
            assert!(n.allows(h), "{h}");
        }
    }

    #[test]
    fn a_rebound_name_is_not_allowed() {
        let n = ServerNames::loopback();
        assert!(!n.allows("attacker.example:8470"));
        assert!(!n.allows("127.0.0.1.attacker.example:8470"));
        assert!(!n.allows(""));
    }

    #[test]
    fn a_configured_name_is_allowed() {
        let n = ServerNames::with(&["Branch-PC.bank.example:8470".into()]);
        assert!(n.allows("branch-pc.bank.example:8470"));
        assert!(!n.allows("other.bank.example:8470"));
    }
}
