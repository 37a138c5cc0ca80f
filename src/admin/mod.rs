//! Admin endpoints for monitoring, on a port of their own with no sign-in: `/live`
//! (the process answers), `/ready` (the station can take and report cards, each
//! reason in the JSON body, 503 when not) and `/metrics` (Prometheus text, `station_`
//! prefix). Nothing here shows card data, staff or keys.

pub mod metrics;
pub mod ready;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::config::StationConfig;
use crate::job::pipeline::Station;

/// Why the admin endpoints could not be served.
#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    /// The configured address could not be bound.
    #[error("admin.listen {address}: cannot listen there ({source}); pick a free loopback port")]
    Listen {
        /// Configured address.
        address: String,
        /// Cause.
        source: std::io::Error,
    },
}

impl AdminError {
    /// Stable code.
    pub fn code(&self) -> &'static str {
        match self {
            AdminError::Listen { .. } => "ADMIN_LISTEN",
        }
    }
}

/// What the endpoints read: the station's live line health, the journal file (read
/// through a connection of their own) and the upstream address.
pub struct Monitor {
    station: Arc<Station>,
    journal: PathBuf,
    lines: Vec<String>,
    upstream: String,
}

impl Monitor {
    /// A monitor of `station` as `cfg` configures it.
    pub fn new(cfg: &StationConfig, station: Arc<Station>) -> Self {
        Monitor {
            station,
            journal: cfg.resolve(&cfg.journal.path),
            lines: cfg.devices.line.iter().map(|l| l.name.clone()).collect(),
            upstream: cfg.upstream.url.clone(),
        }
    }
}

/// The admin routes over a monitor.
pub fn router(monitor: Arc<Monitor>) -> Router {
    Router::new()
        .route("/live", get(live))
        .route("/ready", get(ready_handler))
        .route("/metrics", get(metrics_handler))
        .with_state(monitor)
}

/// Binds `[admin] listen` and serves until `shutdown` turns true.
pub async fn serve(
    cfg: &StationConfig,
    station: Arc<Station>,
    mut shutdown: watch::Receiver<bool>,
) -> Result<(SocketAddr, JoinHandle<()>), AdminError> {
    let listen_err = |source| AdminError::Listen {
        address: cfg.admin.listen.clone(),
        source,
    };
    let listener = tokio::net::TcpListener::bind(&cfg.admin.listen)
        .await
        .map_err(listen_err)?;
    let addr = listener.local_addr().map_err(listen_err)?;
    let app = router(Arc::new(Monitor::new(cfg, station)));
    let task = tokio::spawn(async move {
        let _ = axum::serve(listener, app)
            .with_graceful_shutdown(async move {
                let _ = shutdown.wait_for(|s| *s).await;
            })
            .await;
    });
    Ok((addr, task))
}

async fn live() -> Json<serde_json::Value> {
    Json(serde_json::json!({ "live": true, "version": env!("CARGO_PKG_VERSION") }))
}

async fn ready_handler(State(m): State<Arc<Monitor>>) -> Response {
    let report = ready::check_all(&m).await;
    let status = if report.ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, Json(report)).into_response()
}

async fn metrics_handler(State(m): State<Arc<Monitor>>) -> Response {
    let path = m.journal.clone();
    let live = metrics::Live {
        lines_down: m.station.lines_down(),
        tasks_down: m.station.tasks_down().len(),
    };
    match tokio::task::spawn_blocking(move || metrics::scrape(&path, live)).await {
        Ok(Ok(text)) => (
            [(
                header::CONTENT_TYPE,
                "application/openmetrics-text; version=1.0.0; charset=utf-8",
            )],
            text,
        )
            .into_response(),
        Ok(Err(e)) => {
            tracing::warn!(code = e.code(), "metrics not available: {e}");
            (
                StatusCode::SERVICE_UNAVAILABLE,
                format!("{}: {e}\n", e.code()),
            )
                .into_response()
        }
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, format!("metrics: {e}\n")).into_response(),
    }
}
