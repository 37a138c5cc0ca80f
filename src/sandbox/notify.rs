//! Delivery of D1 notifications to the issuer backend: at least once, retried
//! with backoff until the issuer answers 2xx; the issuer de-duplicates on
//! operationId + status.

use super::hub::Hub;
use crate::link::backoff::Backoff;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;
use zeroize::Zeroizing;

/// Where and how notifications are sent.
pub struct NotifierConfig {
    /// Issuer backend base URL.
    pub issuer_url: String,
    /// Bearer token presented to the issuer.
    pub bearer: Zeroizing<String>,
    /// Retry delays.
    pub backoff: Backoff,
    /// Poll interval when nothing is queued and nobody wakes the notifier.
    pub idle: Duration,
}

/// Deliver queued notifications until `shutdown` turns true.
pub async fn run_notifier(
    hub: Arc<Hub>,
    config: NotifierConfig,
    mut shutdown: watch::Receiver<bool>,
) {
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap_or_default();
    let base = config.issuer_url.trim_end_matches('/').to_string();
    let mut backoff = config.backoff.clone();
    loop {
        if *shutdown.borrow() {
            return;
        }
        let mut failed = false;
        let pending = match hub.store.pending_notifications(50) {
            Ok(p) => p,
            Err(e) => {
                tracing::error!(code = e.code(), "notification outbox: {e}");
                failed = true;
                Vec::new()
            }
        };
        let had_work = !pending.is_empty();
        for n in pending {
            let url = format!("{base}/notifications/d1/v2/issuers/{}/cards", n.issuer_id);
            let result = http
                .post(&url)
                .header("x-correlation-id", &n.correlation_id)
                .bearer_auth(config.bearer.as_str())
                .json(&n.body)
                .send()
                .await;
            match result {
                Ok(resp) if resp.status().is_success() => {
                    if let Err(e) = hub.store.mark_notified(n.id) {
                        tracing::error!(code = e.code(), "notification outbox: {e}");
                    }
                }
                other => {
                    let why = match other {
                        Ok(resp) => format!("HTTP {}", resp.status().as_u16()),
                        Err(e) => e.without_url().to_string(),
                    };
                    tracing::info!(correlation_id = %n.correlation_id, "issuer notification not delivered: {why}; will retry");
                    let _ = hub.store.note_notification_attempt(n.id);
                    failed = true;
                    // Keep per-issuer order: stop this pass at the first failure.
                    break;
                }
            }
        }
        let pause = if failed {
            backoff.next_delay()
        } else {
            backoff.reset();
            if had_work {
                continue;
            }
            config.idle
        };
        tokio::select! {
            _ = tokio::time::sleep(pause) => {}
            _ = hub.notifications.notified(), if !failed => {}
            _ = shutdown.changed() => {}
        }
    }
}
